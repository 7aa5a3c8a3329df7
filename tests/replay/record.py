"""Records the workflow histories that tests/replay replays.

`python -m tests.replay.record` runs each kind of lifecycle run on a fresh
Temporal dev server with fake activities (the same fakes as the workflow
tests) and writes its history to tests/replay/histories/<name>.json. Record
the new kinds of run after a workflow change is released: existing files are
kept, never re-recorded to make a replay pass, as they stand for runs
already in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from google.protobuf.duration_pb2 import Duration
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError

from libs import contracts, lifecycle
from libs.devstack.embedded import temporal_server
from libs.devstack.processes import free_port
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2
from tests.workflows.support import FakeDomains, running, tenant_spec

HISTORIES = Path(__file__).parent / "histories"


async def provision(
    client: Client, name: str, tier: int, fail: str | None = None, *, also: tuple[str, ...] = ()
) -> None:
    """A provisioning run; `fail` fails a step, `also` fails more rpcs (an undo, say)."""
    fakes = FakeDomains()
    if fail:
        fakes.fail.add(fail)
    fakes.fail.update(also)
    rpc = contracts.WORKFLOWS.rpc("ProvisionTenant")
    tenant_id = f"r{uuid.uuid4().hex[:10]}"
    async with running(client, fakes):
        handle = await client.start_workflow(
            rpc.name,
            orchestrator_pb2.ProvisionTenantRequest(
                tenant=tenant_spec(tenant_id, tier), requested_by="recorder"
            ),
            id=lifecycle.provision_workflow_id(tenant_id),
            task_queue=rpc.task_queue,
        )
        try:
            await handle.result()
        except WorkflowFailureError:
            assert fail, "only a run with an injected failure may fail"
    await save(client, name, handle.id)


async def provision_cancelled(
    client: Client, name: str, tier: int, *, signal_first: bool = False, by_update: bool = False
) -> None:
    fakes = FakeDomains()
    fakes.slow["CreateBucket"] = 1.0
    rpc = contracts.WORKFLOWS.rpc("ProvisionTenant")
    tenant_id = f"r{uuid.uuid4().hex[:10]}"
    async with running(client, fakes):
        handle = await client.start_workflow(
            rpc.name,
            orchestrator_pb2.ProvisionTenantRequest(
                tenant=tenant_spec(tenant_id, tier), requested_by="recorder"
            ),
            id=lifecycle.provision_workflow_id(tenant_id),
            task_queue=rpc.task_queue,
        )
        await asyncio.wait_for(fakes.started["CreateBucket"].wait(), timeout=10)
        if signal_first:  # as the API did: who cancels, then the cancel
            await handle.signal(
                lifecycle.CANCEL_REQUESTED_SIGNAL, orchestrator_pb2.CancelRequested(requested_by="recorder")
            )
        if by_update:  # as the API does since failure-proof runs: the run accepts, then the cancel
            await handle.execute_update(
                lifecycle.CANCEL_UPDATE,
                orchestrator_pb2.CancelRequested(requested_by="recorder"),
                result_type=orchestrator_pb2.CancelResponse,
            )
        await handle.cancel()
        with contextlib.suppress(WorkflowFailureError):  # ends cancelled
            await handle.result()
    await save(client, name, handle.id)


async def deprovision(
    client: Client,
    name: str,
    tier: int,
    *,
    grace: timedelta = timedelta(0),
    update: str | None = None,
    fail: tuple[str, ...] = (),
    state: int = tenant_pb2.Tenant.STATE_ACTIVE,
) -> None:
    """A deprovisioning run of a tenant in `state`; with `update`, sent once
    the run waits out its grace period; `fail` fails those rpcs."""
    fakes = FakeDomains(record_tier=tier)
    fakes.record_state = state
    fakes.fail.update(fail)
    rpc = contracts.WORKFLOWS.rpc("DeprovisionTenant")
    tenant_id = f"r{uuid.uuid4().hex[:10]}"
    period = Duration()
    period.FromTimedelta(grace)
    async with running(client, fakes):
        handle = await client.start_workflow(
            rpc.name,
            orchestrator_pb2.DeprovisionTenantRequest(
                tenant_id=tenant_id, requested_by="recorder", grace_period=period
            ),
            id=lifecycle.deprovision_workflow_id(tenant_id),
            task_queue=rpc.task_queue,
        )
        if update is not None:
            await asyncio.wait_for(fakes.started["SendNotice"].wait(), timeout=10)
            argument = (
                orchestrator_pb2.UndeleteRequest(requested_by="recorder")
                if update == lifecycle.UNDELETE_UPDATE
                else orchestrator_pb2.DeleteNowRequest(requested_by="recorder")
            )
            with contextlib.suppress(WorkflowUpdateFailedError):  # an undelete that fails
                await handle.execute_update(update, argument)
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()
    await save(client, name, handle.id)


async def change_access(
    client: Client, name: str, method: str, state: int, *, fail: tuple[str, ...] = ()
) -> None:
    fakes = FakeDomains(record_tier=tenant_pb2.PLAN_TIER_BRIDGE)
    fakes.record_state = state
    fakes.fail.update(fail)
    rpc = contracts.WORKFLOWS.rpc(method)
    tenant_id = f"r{uuid.uuid4().hex[:10]}"
    async with running(client, fakes):
        handle = await client.start_workflow(
            rpc.name,
            rpc.input_type(tenant_id=tenant_id, requested_by="recorder"),
            id=lifecycle.access_workflow_id(tenant_id),
            task_queue=rpc.task_queue,
        )
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()
    await save(client, name, handle.id)


async def clean_up(client: Client, name: str) -> None:
    fakes = FakeDomains()
    fakes.record_state = tenant_pb2.Tenant.STATE_PROVISION_FAILED
    fakes.record_leftovers = [
        tenant_pb2.LeftoverResource(step="create_bucket", kind="s3_bucket", id="tenantry-x", domain="infra"),
        tenant_pb2.LeftoverResource(step="create_realm", kind="idp_realm", id="tenant-x", domain="idp"),
    ]
    rpc = contracts.WORKFLOWS.rpc("CleanUpTenant")
    tenant_id = f"r{uuid.uuid4().hex[:10]}"
    async with running(client, fakes):
        handle = await client.start_workflow(
            rpc.name,
            orchestrator_pb2.CleanUpTenantRequest(tenant_id=tenant_id, requested_by="recorder"),
            id=lifecycle.provision_workflow_id(tenant_id),
            task_queue=rpc.task_queue,
        )
        await handle.result()
    await save(client, name, handle.id)


async def save(client: Client, name: str, workflow_id: str) -> None:
    target = HISTORIES / f"{name}.json"
    if target.exists():
        # A recorded history stands for runs already in flight: keep it.
        print(f"kept {name} (delete the file to record it again)")
        return
    history: Any = await client.get_workflow_handle(workflow_id).fetch_history()
    target.write_text(history.to_json())
    print(f"recorded {name}")


async def record() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = temporal_server(Path(tmp), port=port, ui_port=None, log_dir=Path(tmp))
        server.start().wait_ready()
        try:
            client = await Client.connect(f"127.0.0.1:{port}")
            HISTORIES.mkdir(exist_ok=True)
            await provision(client, "provision_pooled_succeeded", tenant_pb2.PLAN_TIER_POOLED)
            await provision(client, "provision_silo_succeeded", tenant_pb2.PLAN_TIER_SILO)
            await provision(
                client, "provision_silo_compensated", tenant_pb2.PLAN_TIER_SILO, fail="CreateDeployment"
            )
            await provision_cancelled(client, "provision_bridge_cancelled", tenant_pb2.PLAN_TIER_BRIDGE)
            await deprovision(client, "deprovision_bridge_succeeded", tenant_pb2.PLAN_TIER_BRIDGE)
            # Since the audit log, the grace period and backup, suspend / resume:
            await provision(client, "provision_pooled_audited", tenant_pb2.PLAN_TIER_POOLED)
            await provision(
                client,
                "provision_bridge_audited_compensated",
                tenant_pb2.PLAN_TIER_BRIDGE,
                fail="UpsertDnsRecords",
            )
            await provision_cancelled(
                client, "provision_pooled_cancelled_by_caller", tenant_pb2.PLAN_TIER_POOLED, signal_first=True
            )
            await deprovision(
                client,
                "deprovision_pooled_grace_elapsed_backed_up",
                tenant_pb2.PLAN_TIER_POOLED,
                grace=timedelta(seconds=1),
            )
            await deprovision(
                client,
                "deprovision_bridge_grace_cancelled_by_undelete",
                tenant_pb2.PLAN_TIER_BRIDGE,
                grace=timedelta(hours=1),
                update=lifecycle.UNDELETE_UPDATE,
            )
            await deprovision(
                client,
                "deprovision_silo_grace_ended_by_delete_now",
                tenant_pb2.PLAN_TIER_SILO,
                grace=timedelta(hours=1),
                update=lifecycle.DELETE_NOW_UPDATE,
            )
            await deprovision(client, "deprovision_silo_hard_delete_backed_up", tenant_pb2.PLAN_TIER_SILO)
            await change_access(
                client, "suspend_bridge_succeeded", "SuspendTenant", tenant_pb2.Tenant.STATE_ACTIVE
            )
            await change_access(
                client, "resume_bridge_succeeded", "ResumeTenant", tenant_pb2.Tenant.STATE_SUSPENDED
            )
            # Since failure-proof runs (orchestrator.run.FAILURE_PROOF_PATCH):
            await provision(client, "provision_bridge_failure_proof_succeeded", tenant_pb2.PLAN_TIER_BRIDGE)
            await provision(
                client,
                "provision_silo_undone_from_the_start",
                tenant_pb2.PLAN_TIER_SILO,
                fail="CreateDeployment",
            )
            await provision(
                client,
                "provision_bridge_undo_failed_leftovers",
                tenant_pb2.PLAN_TIER_BRIDGE,
                fail="UpsertDnsRecords",
                also=("DeleteBucket",),
            )
            await provision(
                client, "provision_pooled_claim_failed", tenant_pb2.PLAN_TIER_POOLED, fail="MarkProvisioning"
            )
            await provision_cancelled(
                client, "provision_pooled_cancelled_by_update", tenant_pb2.PLAN_TIER_POOLED, by_update=True
            )
            await deprovision(
                client,
                "deprovision_bridge_failed_at_removal",
                tenant_pb2.PLAN_TIER_BRIDGE,
                grace=timedelta(seconds=1),
                fail=("DeleteBucket",),
            )
            await deprovision(
                client,
                "deprovision_silo_resumed_after_a_failure",
                tenant_pb2.PLAN_TIER_SILO,
                state=tenant_pb2.Tenant.STATE_DEPROVISION_FAILED,
            )
            await deprovision(
                client,
                "deprovision_bridge_undelete_failed_then_elapsed",
                tenant_pb2.PLAN_TIER_BRIDGE,
                grace=timedelta(seconds=3),
                update=lifecycle.UNDELETE_UPDATE,
                fail=("EnableTenantAccess",),
            )
            await deprovision(
                client,
                "deprovision_pooled_backup_failed",
                tenant_pb2.PLAN_TIER_POOLED,
                grace=timedelta(seconds=1),
                fail=("ExportIdentity",),
            )
            await change_access(
                client,
                "suspend_bridge_failed_switched_back",
                "SuspendTenant",
                tenant_pb2.Tenant.STATE_ACTIVE,
                fail=("SuspendDeployment",),
            )
            await change_access(
                client, "resume_bridge_claimed", "ResumeTenant", tenant_pb2.Tenant.STATE_SUSPENDED
            )
            await clean_up(client, "clean_up_pooled_succeeded")
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(record())
