"""The facade's gateway to Temporal (services/tenant_api/runs.py) against real
runs: how an update to a run that has ended, a refused update and a failed
run are answered."""

from __future__ import annotations

import uuid
from datetime import timedelta
from types import SimpleNamespace

import grpc
import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy

from libs import lifecycle
from services.tenant_api.errors import ApiError
from services.tenant_api.runs import Runs
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2
from tests.workflows.support import FakeDomains, running, start_provision

State = tenant_pb2.Tenant.State


async def test_a_cancel_of_a_run_that_has_ended_is_failed_precondition(client: Client) -> None:
    fakes = FakeDomains()
    async with running(client, fakes):
        tid, handle = await start_provision(client)
        await handle.result()
        with pytest.raises(ApiError) as refused:
            await Runs(client).update(
                tid,
                handle.id,
                lifecycle.CANCEL_UPDATE,
                orchestrator_pb2.CancelRequested(requested_by="test"),
                orchestrator_pb2.CancelResponse,
                state=State.STATE_PROVISIONING,
            )
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_cancel_of_an_active_run_is_refused_by_the_run(client: Client) -> None:
    fakes = FakeDomains()
    fakes.slow["SendNotice"] = 3.0  # the run is ACTIVE and still sending its welcome
    async with running(client, fakes):
        tid, handle = await start_provision(client)
        await fakes.started["SendNotice"].wait()
        with pytest.raises(ApiError) as refused:
            await Runs(client).update(
                tid,
                handle.id,
                lifecycle.CANCEL_UPDATE,
                orchestrator_pb2.CancelRequested(requested_by="test"),
                orchestrator_pb2.CancelResponse,
                state=State.STATE_PROVISIONING,
            )
        result = await handle.result()
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "ACTIVE" in refused.value.message
    assert result.state == State.STATE_ACTIVE


async def test_a_failed_run_is_read_with_its_type_and_step(client: Client) -> None:
    fakes = FakeDomains()
    fakes.fail.add("UpsertDnsRecords")
    async with running(client, fakes):
        _, handle = await start_provision(client)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        ended = await Runs(client).ended(handle.id)
    assert ended is not None and ended.failed
    # The failed step's own type, not the run's (ProvisionFailed).
    assert (ended.failure_type, ended.failed_step) == ("Conflict", "create_dns_records")
    assert "injected failure" in ended.message


async def test_a_claim_is_answered_once_the_run_has_the_tenant(client: Client) -> None:
    fakes = FakeDomains()
    fakes.slow["MarkProvisioning"] = 1.0
    async with running(client, fakes):
        tid, handle = await start_provision(client)
        claim = await Runs(client).update(
            tid,
            handle.id,
            lifecycle.CLAIMED_UPDATE,
            orchestrator_pb2.ClaimRequest(),
            orchestrator_pb2.ClaimResponse,
            state=State.STATE_PENDING,
            wait=30,
        )
        await handle.result()
    assert isinstance(claim, orchestrator_pb2.ClaimResponse)
    assert (claim.claimed, claim.state) == (True, State.STATE_PROVISIONING)
    assert fakes.called("MarkProvisioning")


async def test_a_start_knows_whether_it_made_the_run_or_met_one(client: Client) -> None:
    """CreateTenant skips the spec check (a describe) only for a run its own start made."""
    runs = Runs(client)
    # A queue nobody polls: the first run stays open, so the second start meets it.
    rpc = SimpleNamespace(name="test.NobodyRunsThis", task_queue=f"nobody-{uuid.uuid4()}")
    workflow_id = f"test/started-now/{uuid.uuid4()}"

    async def start() -> WorkflowHandle:
        return await runs.start(
            rpc,  # type: ignore[arg-type]
            orchestrator_pb2.ClaimRequest(),
            workflow_id,
            reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            execution_timeout=timedelta(minutes=1),
        )

    first, second = await start(), await start()
    try:
        assert Runs.started_now(first)
        assert not Runs.started_now(second)
    finally:
        await client.get_workflow_handle(workflow_id).terminate("test")
