"""A run's plan is whole from its first update: deletion, suspend and resume
plan from the tier the caller saw, and replan from the record only when it
says otherwise. (Each audit append carries the run's progress; FakeDomains
keeps what every append carried.)"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.client import Client

from libs import contracts, lifecycle
from orchestrator.plan import plan_for
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2
from tests.workflows.support import BRIDGE, POOLED, SILO, FakeDomains, running

State = tenant_pb2.Tenant.State
Status = tenant_pb2.StepStatus
pytestmark = pytest.mark.timeout(60)


def plans(fakes: FakeDomains) -> list[tuple[str, ...]]:
    """The plan each append showed: its steps, in order."""
    return [tuple(s.step for s in p.steps) for p in fakes.progress]


async def deprovision(client: Client, tier: int, grace: timedelta = timedelta(0)) -> Any:
    rpc = contracts.WORKFLOWS.rpc("DeprovisionTenant")
    period = Duration()
    period.FromTimedelta(grace)
    handle = await client.start_workflow(
        rpc.name,
        orchestrator_pb2.DeprovisionTenantRequest(
            tenant_id="x",
            requested_by="ops@test",
            grace_period=period,
            expected_state=State.STATE_ACTIVE,
            plan_tier=tier,  # type: ignore[arg-type]
        ),
        id=lifecycle.deprovision_workflow_id(f"x-{uuid.uuid4().hex[:8]}"),
        task_queue=rpc.task_queue,
        result_type=rpc.output_type,
    )
    return await handle.result()


@pytest.mark.parametrize(("tier", "grace"), [(POOLED, timedelta(0)), (SILO, timedelta(seconds=1))])
async def test_a_deletion_shows_its_whole_plan_from_the_first_update(
    client: Client, tier: int, grace: timedelta
) -> None:
    fakes = FakeDomains(record_tier=tier)
    fakes.record_state = State.STATE_ACTIVE
    async with running(client, fakes):
        result = await deprovision(client, tier, grace)
    assert result.state == State.STATE_DEPROVISIONED
    whole = plan_for(tier).teardown_steps(grace=grace > timedelta(0), backup=True)
    # The opening append (before the record is read) already has every step.
    assert plans(fakes)[0] == whole
    assert set(plans(fakes)) == {whole}, "the plan changed during the run"
    assert fakes.progress[0].steps[0].status == Status.STEP_STATUS_PENDING
    assert all(s.status == Status.STEP_STATUS_COMPLETED for s in fakes.progress[-1].steps)


async def test_the_record_decides_when_it_says_another_tier(client: Client) -> None:
    """The caller saw bridge, the record says pooled: the run replans from the
    record, and no step of the first plan (delete_deployment) is left pending."""
    fakes = FakeDomains(record_tier=POOLED)
    fakes.record_state = State.STATE_ACTIVE
    async with running(client, fakes):
        await deprovision(client, BRIDGE)
    assert plans(fakes)[0] == plan_for(BRIDGE).teardown_steps(grace=False, backup=True)
    assert plans(fakes)[-1] == plan_for(POOLED).teardown_steps(grace=False, backup=True)
    assert all(s.status == Status.STEP_STATUS_COMPLETED for s in fakes.progress[-1].steps)


async def test_a_deletion_started_without_a_tier_plans_once_it_has_read_the_record(client: Client) -> None:
    """As a facade from before the field starts it: the first update shows
    only the record's read, and the run still ends with the whole plan."""
    fakes = FakeDomains(record_tier=POOLED)
    fakes.record_state = State.STATE_ACTIVE
    async with running(client, fakes):
        await deprovision(client, tenant_pb2.PLAN_TIER_UNSPECIFIED)
    assert plans(fakes)[0] == ("read_record",)
    assert plans(fakes)[-1] == plan_for(POOLED).teardown_steps(grace=False, backup=True)


@pytest.mark.parametrize("kind", ["SuspendTenant", "ResumeTenant"])
async def test_suspend_and_resume_show_their_whole_plan_from_the_first_update(
    client: Client, kind: str
) -> None:
    suspend = kind == "SuspendTenant"
    fakes = FakeDomains(record_tier=BRIDGE)
    fakes.record_state = State.STATE_ACTIVE if suspend else State.STATE_SUSPENDED
    rpc = contracts.WORKFLOWS.rpc(kind)
    async with running(client, fakes):
        handle = await client.start_workflow(
            rpc.name,
            rpc.input_type(tenant_id="x", requested_by="billing@test", plan_tier=BRIDGE),
            id=lifecycle.access_workflow_id(f"x-{uuid.uuid4().hex[:8]}"),
            task_queue=rpc.task_queue,
            result_type=rpc.output_type,
        )
        result = await handle.result()
    assert result.state == (State.STATE_SUSPENDED if suspend else State.STATE_ACTIVE)
    plan = plan_for(BRIDGE)
    whole = plan.suspend_steps(claim=True) if suspend else plan.resume_steps(claim=True)
    assert plans(fakes)[0] == whole
    assert set(plans(fakes)) == {whole}
    assert all(s.status == Status.STEP_STATUS_COMPLETED for s in fakes.progress[-1].steps)
