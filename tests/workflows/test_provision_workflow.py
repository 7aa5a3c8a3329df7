"""The provisioning and plain deprovisioning runs on a real Temporal dev
server, with fake activities."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from temporalio.client import Client, WorkflowFailureError

from libs import contracts, lifecycle
from orchestrator.plan import plan_for
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2
from tests.support.steps import STEP_RPC
from tests.workflows.support import (
    BRIDGE,
    POOLED,
    SILO,
    TIER_ONLY,
    UNDO,
    FakeDomains,
    activity_order,
    running,
    start_provision,
)


@pytest.mark.parametrize("tier", [POOLED, BRIDGE, SILO])
async def test_provision_runs_every_step_of_the_tier_and_reports_progress(client: Client, tier: int) -> None:
    fakes = FakeDomains()
    async with running(client, fakes):
        _, handle = await start_provision(client, tier)
        result = await handle.result()
        progress = await handle.query(lifecycle.PROGRESS_QUERY, result_type=orchestrator_pb2.RunProgress)
    assert result.state == tenant_pb2.Tenant.STATE_ACTIVE
    assert tuple(s.step for s in progress.steps) == plan_for(tier).provision_steps
    assert {s.status for s in progress.steps} == {tenant_pb2.STEP_STATUS_COMPLETED}
    assert progress.state == tenant_pb2.Tenant.STATE_ACTIVE
    for step, method in STEP_RPC.items():
        expected = 1 if tier in TIER_ONLY.get(step, {tier}) else 0
        assert len(fakes.called(method)) == expected, method
    assert not any(fakes.called(undo) for undo in UNDO.values())
    kinds = {r.kind for r in fakes.called("RecordResources")[0].resources}
    assert {"idp_realm", "idp_client", "idp_user", "db_schema", "s3_bucket", "dns_record"} <= kinds
    assert ("ecs_service" in kinds) == (tier != POOLED)
    assert ("iac_stack" in kinds) == (tier == SILO)
    if tier == SILO:
        # The deployment runs on what the dedicated infrastructure put out.
        [deploy] = fakes.called("CreateDeployment")
        assert dict(deploy.infrastructure) == {"cluster": "tenantry-x"}
    [welcome] = fakes.called("SendNotice")
    assert welcome.recipient == "admin@acme.example.com"


@pytest.mark.parametrize("failing", ["", "CreateBucket"])
async def test_every_append_carries_the_steps_and_the_last_says_the_run_ended(
    client: Client, failing: str
) -> None:
    """The registry keeps the steps of each append (reads never query the
    run): they are the run's own progress, newer with each append, and the
    last append, whatever the outcome, says the run has ended."""
    fakes = FakeDomains()
    if failing:
        fakes.fail.add(failing)
    async with running(client, fakes):
        _, handle = await start_provision(client)
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()
        progress = await handle.query(lifecycle.PROGRESS_QUERY, result_type=orchestrator_pb2.RunProgress)
    assert len(fakes.progress) >= 2
    assert [p.ended for p in fakes.progress] == [False] * (len(fakes.progress) - 1) + [True]
    sequences = [p.sequence for p in fakes.progress]
    assert sequences == sorted(sequences) and sequences[-1] == max(e.sequence for e in fakes.events)
    last = fakes.progress[-1]
    assert list(last.steps) == list(progress.steps)
    assert last.run_id == handle.result_run_id and not last.current_steps
    if failing:
        assert any(s.status == tenant_pb2.STEP_STATUS_FAILED for s in last.steps)
    else:
        assert {s.status for s in last.steps} == {tenant_pb2.STEP_STATUS_COMPLETED}


async def test_independent_steps_run_concurrently(client: Client) -> None:
    fakes = FakeDomains()
    async with running(client, fakes):
        _, handle = await start_provision(client)
        await handle.result()
        _, scheduled = await activity_order(handle)
    # Realm, schema, bucket and DNS are scheduled together, right after the mark.
    assert scheduled[0] == "MarkProvisioning"
    assert set(scheduled[1:5]) == {"CreateRealm", "CreateTenantSchema", "CreateBucket", "UpsertDnsRecords"}


@pytest.mark.parametrize("failing_step", [s for s in STEP_RPC if s != "mark_provisioning"])
async def test_failure_at_any_silo_step_compensates_completed_steps_in_reverse(
    client: Client, failing_step: str
) -> None:
    fakes = FakeDomains()
    failing = STEP_RPC[failing_step]
    fakes.fail.add(failing)
    async with running(client, fakes):
        tenant_id, handle = await start_provision(client, SILO)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        completed, scheduled = await activity_order(handle)
        progress = await handle.query(lifecycle.PROGRESS_QUERY, result_type=orchestrator_pb2.RunProgress)

    assert "injected failure" in str(failed.value.cause)
    # Every started step is undone, the failed one too (it may have done its
    # work before it failed), latest started first.
    started = [name for name in scheduled if name in UNDO]
    compensations = [name for name in scheduled if name in UNDO.values()]
    assert compensations == [UNDO[name] for name in reversed(started)]
    assert failing in started or failing not in UNDO
    assert set(completed) >= set(compensations)
    assert not fakes.called("MarkActive") or failing_step == "mark_active"
    [marked] = fakes.called("MarkProvisionFailed")
    assert (marked.tenant_id, marked.failed_step) == (tenant_id, failing_step)
    assert "injected failure" in marked.reason
    assert marked.run_id == handle.result_run_id and not marked.leftover_resources
    [notice] = fakes.called("SendNotice")
    assert notice.kind == 2  # NOTICE_KIND_PROVISION_FAILED
    status = {s.step: s.status for s in progress.steps}
    assert status[failing_step] == tenant_pb2.STEP_STATUS_FAILED
    assert progress.state == tenant_pb2.Tenant.STATE_PROVISION_FAILED


async def test_failure_at_first_step_touches_nothing_else(client: Client) -> None:
    fakes = FakeDomains()
    fakes.fail.add("MarkProvisioning")
    async with running(client, fakes):
        _, handle = await start_provision(client)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    # Nothing else started, so nothing is undone; the record says why (made
    # from the spec if the mark never wrote it), and the admin is told.
    assert [name for name, _ in fakes.calls] == ["MarkProvisioning", "MarkProvisionFailed", "SendNotice"]
    [marked] = fakes.called("MarkProvisionFailed")
    assert (marked.failed_step, marked.tenant.display_name) == ("mark_provisioning", "Acme")


async def test_failed_welcome_email_never_fails_the_tenant(client: Client) -> None:
    fakes = FakeDomains()
    fakes.fail.add("SendNotice")
    async with running(client, fakes):
        _, handle = await start_provision(client)
        result = await handle.result()
        progress = await handle.query(lifecycle.PROGRESS_QUERY, result_type=orchestrator_pb2.RunProgress)
    assert result.state == tenant_pb2.Tenant.STATE_ACTIVE
    assert {s.step: s.status for s in progress.steps}["send_welcome"] == tenant_pb2.STEP_STATUS_FAILED
    assert not any(fakes.called(undo) for undo in UNDO.values())


@pytest.mark.parametrize("tier", [POOLED, BRIDGE, SILO])
async def test_deprovision_removes_everything_the_tier_has_and_ends_deprovisioned(
    client: Client, tier: int
) -> None:
    fakes = FakeDomains(record_tier=tier)
    rpc = contracts.WORKFLOWS.rpc("DeprovisionTenant")
    async with running(client, fakes):
        handle = await client.start_workflow(
            rpc.name,
            orchestrator_pb2.DeprovisionTenantRequest(tenant_id="x", requested_by="test"),
            id=lifecycle.deprovision_workflow_id(f"x-{uuid.uuid4().hex[:8]}"),
            task_queue=rpc.task_queue,
            result_type=rpc.output_type,
        )
        result = await handle.result()
        progress = await handle.query(lifecycle.PROGRESS_QUERY, result_type=orchestrator_pb2.RunProgress)
    assert result.state == tenant_pb2.Tenant.STATE_DEPROVISIONED
    assert tuple(s.step for s in progress.steps) == plan_for(tier).deprovision_steps
    # What the tier's provisioning would have made is exactly what is removed.
    undone = {
        UNDO[method]
        for step, method in STEP_RPC.items()
        if method in UNDO and tier in TIER_ONLY.get(step, {tier})
    }
    for undo in UNDO.values():
        assert len(fakes.called(undo)) == (1 if undo in undone else 0), undo
    methods = [name for name, _ in fakes.calls]
    assert (
        methods.index("MarkDeprovisioning")
        < methods.index("DeleteBucket")
        < methods.index("MarkDeprovisioned")
    )
    assert methods.index("DeleteAdminUser") < methods.index("DeleteOidcClient") < methods.index("DeleteRealm")
    if tier == SILO:
        assert methods.index("DeleteDeployment") < methods.index("DestroyInfrastructure")


async def test_cancel_waits_for_steps_in_flight_then_undoes_them_and_what_completed(client: Client) -> None:
    fakes = FakeDomains()
    fakes.slow["CreateBucket"] = 2.0
    async with running(client, fakes):
        tenant_id, handle = await start_provision(client)

        await asyncio.wait_for(fakes.started["CreateBucket"].wait(), timeout=10)
        await asyncio.sleep(0.3)  # the quick siblings complete meanwhile
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as ended:
            await handle.result()
        completed, scheduled = await activity_order(handle)
    assert "cancel" in str(ended.value.cause).lower()
    # The slow bucket step was waited for, then undone with everything else
    # started, latest started first.
    assert "CreateBucket" in completed
    started = [name for name in scheduled if name in UNDO]
    compensations = [name for name in scheduled if name in UNDO.values()]
    assert compensations == [UNDO[name] for name in reversed(started)]
    assert "DeleteBucket" in compensations
    [marked] = fakes.called("MarkProvisionFailed")
    assert (marked.tenant_id, marked.reason) == (tenant_id, "cancelled")
    assert not fakes.called("MarkActive")
