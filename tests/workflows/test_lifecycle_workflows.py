"""Grace-period deletion, undelete, suspend / resume and the audit log, on a
real Temporal dev server with fake activities."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError

from libs import contracts, lifecycle
from tenantry.notification.v1 import notification_pb2
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2
from tests.workflows.support import BRIDGE, POOLED, UNDO, FakeDomains, running, start_provision

State = tenant_pb2.Tenant.State
Kind = tenant_pb2.TenantEvent.Kind
REMOVALS = set(UNDO.values())


async def start_deprovision(
    client: Client, grace: timedelta = timedelta(0), *, skip_backup: bool = False
) -> WorkflowHandle[Any, Any]:
    rpc = contracts.WORKFLOWS.rpc("DeprovisionTenant")
    period = Duration()
    period.FromTimedelta(grace)
    return await client.start_workflow(
        rpc.name,
        orchestrator_pb2.DeprovisionTenantRequest(
            tenant_id="x", requested_by="ops@test", grace_period=period, skip_backup=skip_backup
        ),
        id=lifecycle.deprovision_workflow_id(f"x-{uuid.uuid4().hex[:8]}"),
        task_queue=rpc.task_queue,
        result_type=rpc.output_type,
    )


async def waiting_out_grace(handle: WorkflowHandle[Any, Any]) -> None:
    """Returns once the run is in its grace period."""
    for _ in range(200):
        progress = await handle.query(lifecycle.PROGRESS_QUERY, result_type=orchestrator_pb2.RunProgress)
        status = {s.step: s.status for s in progress.steps}
        if status.get("grace_period") == tenant_pb2.STEP_STATUS_RUNNING:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the run never reached its grace period")


async def timers(handle: WorkflowHandle[Any, Any]) -> list[timedelta]:
    return [
        event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]


def methods(fakes: FakeDomains) -> list[str]:
    return [name for name, _ in fakes.calls]


async def test_grace_period_elapses_then_backup_comes_before_any_removal(client: Client) -> None:
    fakes = FakeDomains(record_tier=BRIDGE)
    fakes.record_state = State.STATE_ACTIVE
    async with running(client, fakes):
        handle = await start_deprovision(client, timedelta(seconds=1))
        result = await handle.result()
        # A durable timer, not a sleep, ending at the purge time the record announces.
        [wait] = await timers(handle)
        assert timedelta(0) < wait <= timedelta(seconds=1)
    assert result.state == State.STATE_DEPROVISIONED
    calls = methods(fakes)
    [marking] = fakes.called("MarkDeprovisioning")
    assert marking.HasField("purge_time")
    # Access off and the admin told before the wait; backup before removal.
    first_removal = min(calls.index(m) for m in calls if m in REMOVALS)
    assert calls.index("DisableTenantAccess") < first_removal
    assert calls.index("SuspendDeployment") < first_removal
    assert calls.index("BackupTenantSchema") < first_removal
    assert calls.index("ExportIdentity") < first_removal
    scheduled = fakes.called("SendNotice")[0]
    assert scheduled.kind == notification_pb2.NOTICE_KIND_DELETION_SCHEDULED
    assert scheduled.purge_time == marking.purge_time
    [done] = fakes.called("MarkDeprovisioned")
    assert len(done.backups) == 2 and list(result.backups) == list(done.backups)
    # Both backups are named by the run, so a retried activity overwrites its own object.
    assert {r.backup_id for r in fakes.called("BackupTenantSchema") + fakes.called("ExportIdentity")} == {
        handle.result_run_id
    }


async def test_undelete_during_the_grace_period_restores_without_removing_anything(client: Client) -> None:
    fakes = FakeDomains(record_tier=BRIDGE)
    fakes.record_state = State.STATE_ACTIVE
    async with running(client, fakes):
        handle = await start_deprovision(client, timedelta(hours=1))
        await waiting_out_grace(handle)
        await handle.execute_update(
            lifecycle.UNDELETE_UPDATE,
            orchestrator_pb2.UndeleteRequest(requested_by="support@test"),
            result_type=orchestrator_pb2.DeletionUpdateResponse,
        )
        result = await handle.result()
        progress = await handle.query(lifecycle.PROGRESS_QUERY, result_type=orchestrator_pb2.RunProgress)
    assert result.state == State.STATE_ACTIVE
    calls = methods(fakes)
    assert not REMOVALS & set(calls)
    assert "BackupTenantSchema" not in calls
    # Deployment back before sign-in returns.
    assert calls.index("ResumeDeployment") < calls.index("EnableTenantAccess") < calls.index("MarkRestored")
    [restored] = fakes.called("MarkRestored")
    assert restored.state == State.STATE_ACTIVE
    assert fakes.called("SendNotice")[-1].kind == notification_pb2.NOTICE_KIND_RESTORED
    status = {s.step: s.status for s in progress.steps}
    assert status["delete_realm"] == tenant_pb2.STEP_STATUS_SKIPPED
    assert status["mark_restored"] == tenant_pb2.STEP_STATUS_COMPLETED
    undelete = [e for e in fakes.events if e.kind == Kind.KIND_REQUESTED and e.step == "undelete"]
    assert [e.actor for e in undelete] == ["support@test"]


async def test_a_suspended_tenant_is_restored_suspended_and_its_access_left_off(client: Client) -> None:
    fakes = FakeDomains(record_tier=POOLED)
    fakes.record_state = State.STATE_SUSPENDED
    async with running(client, fakes):
        handle = await start_deprovision(client, timedelta(hours=1))
        await waiting_out_grace(handle)
        await handle.execute_update(
            lifecycle.UNDELETE_UPDATE,
            orchestrator_pb2.UndeleteRequest(requested_by="support@test"),
            result_type=orchestrator_pb2.DeletionUpdateResponse,
        )
        result = await handle.result()
    assert result.state == State.STATE_SUSPENDED
    calls = methods(fakes)
    assert "DisableTenantAccess" not in calls and "EnableTenantAccess" not in calls
    assert fakes.called("MarkRestored")[0].state == State.STATE_SUSPENDED


async def test_delete_now_ends_the_grace_period_and_undelete_is_then_refused(client: Client) -> None:
    fakes = FakeDomains()
    fakes.record_state = State.STATE_ACTIVE
    fakes.slow["BackupTenantSchema"] = 1.0
    async with running(client, fakes):
        handle = await start_deprovision(client, timedelta(days=30))
        await waiting_out_grace(handle)
        await handle.execute_update(
            lifecycle.DELETE_NOW_UPDATE,
            orchestrator_pb2.DeleteNowRequest(requested_by="ops@test"),
            result_type=orchestrator_pb2.DeletionUpdateResponse,
        )
        await asyncio.wait_for(fakes.started["BackupTenantSchema"].wait(), timeout=10)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                lifecycle.UNDELETE_UPDATE,
                orchestrator_pb2.UndeleteRequest(requested_by="support@test"),
                result_type=orchestrator_pb2.DeletionUpdateResponse,
            )
        result = await handle.result()
    assert "grace period is over" in str(refused.value.cause)
    assert result.state == State.STATE_DEPROVISIONED
    assert "DeleteRealm" in methods(fakes)


async def test_hard_delete_still_backs_up_unless_told_not_to(client: Client) -> None:
    fakes = FakeDomains()
    fakes.record_state = State.STATE_ACTIVE
    fakes.slow["BackupTenantSchema"] = 1.0
    async with running(client, fakes):
        hard = await start_deprovision(client)
        await asyncio.wait_for(fakes.started["BackupTenantSchema"].wait(), timeout=10)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await hard.execute_update(
                lifecycle.UNDELETE_UPDATE,
                orchestrator_pb2.UndeleteRequest(requested_by="support@test"),
                result_type=orchestrator_pb2.DeletionUpdateResponse,
            )
        await hard.result()
        assert "no grace period" in str(refused.value.cause)
        assert await timers(hard) == []
        assert len(fakes.called("BackupTenantSchema")) == 1
        assert "DisableTenantAccess" not in methods(fakes)  # no grace period: nothing to switch off
        fakes.calls.clear()
        bare = await start_deprovision(client, skip_backup=True)
        result = await bare.result()
    assert not fakes.called("BackupTenantSchema") and not fakes.called("ExportIdentity")
    assert result.state == State.STATE_DEPROVISIONED and not result.backups


async def start_access_change(client: Client, method: str) -> WorkflowHandle[Any, Any]:
    rpc = contracts.WORKFLOWS.rpc(method)
    return await client.start_workflow(
        rpc.name,
        rpc.input_type(tenant_id="x", requested_by="billing@test"),
        id=lifecycle.access_workflow_id(f"x-{uuid.uuid4().hex[:8]}"),
        task_queue=rpc.task_queue,
        result_type=rpc.output_type,
    )


async def test_suspend_then_resume_switch_identity_and_deployment(client: Client) -> None:
    fakes = FakeDomains(record_tier=BRIDGE)
    fakes.record_state = State.STATE_ACTIVE
    async with running(client, fakes):
        suspended = await (await start_access_change(client, "SuspendTenant")).result()
        calls = methods(fakes)
        assert (
            calls.index("DisableTenantAccess")
            < calls.index("SuspendDeployment")
            < calls.index("MarkSuspended")
        )
        fakes.calls.clear()
        fakes.record_state = State.STATE_SUSPENDED
        resumed = await (await start_access_change(client, "ResumeTenant")).result()
        calls = methods(fakes)
        assert (
            calls.index("ResumeDeployment") < calls.index("EnableTenantAccess") < calls.index("MarkResumed")
        )
        fakes.calls.clear()
        fakes.record_state = State.STATE_ACTIVE
        # Already where the request wants it: the run's claim changes nothing and it stops.
        again = await (await start_access_change(client, "ResumeTenant")).result()
    assert (suspended.state, resumed.state, again.state) == (
        State.STATE_SUSPENDED,
        State.STATE_ACTIVE,
        State.STATE_ACTIVE,
    )
    assert methods(fakes) == ["MarkAccessChanging"]
    states = [e.state for e in fakes.events if e.kind == Kind.KIND_STATE_CHANGED]
    assert states == [State.STATE_SUSPENDING, State.STATE_SUSPENDED, State.STATE_RESUMING, State.STATE_ACTIVE]


@pytest.mark.parametrize("kind", ["DeprovisionTenant", "SuspendTenant"])
async def test_a_run_on_a_settled_tenant_says_it_is_under_way_before_its_first_step(
    client: Client, kind: str
) -> None:
    """Its opening append (the request, with the run's steps, not ended) comes
    before it reads or marks the record: a watcher of the settled tenant then
    follows the run even while that first step is held up."""
    fakes = FakeDomains()
    fakes.record_state = State.STATE_ACTIVE
    async with running(client, fakes):
        if kind == "DeprovisionTenant":
            handle = await start_deprovision(client)
        else:
            handle = await start_access_change(client, kind)
        await handle.result()
    assert fakes.calls_before_append[0] == 0, methods(fakes)
    opening = fakes.progress[0]
    assert (opening.run_id, opening.ended) == (handle.result_run_id, False)
    assert fakes.events[0].kind == Kind.KIND_REQUESTED
    assert fakes.progress[-1].ended


async def test_suspending_a_tenant_that_is_not_active_fails_without_touching_it(client: Client) -> None:
    fakes = FakeDomains()
    fakes.record_state = State.STATE_PROVISION_FAILED
    async with running(client, fakes):
        handle = await start_access_change(client, "SuspendTenant")
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert "only a STATE_ACTIVE tenant" in str(failed.value.cause)
    assert methods(fakes) == ["MarkAccessChanging"]


async def test_audit_log_of_a_compensated_run(client: Client) -> None:
    fakes = FakeDomains()
    fakes.fail.add("UpsertDnsRecords")
    async with running(client, fakes):
        tenant_id, handle = await start_provision(client)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    events = fakes.events
    # Numbered 1..n within the run, each once, all naming the run and who asked.
    assert sorted(e.sequence for e in events) == list(range(1, len(events) + 1))
    assert {(e.workflow_id, e.run_id, e.actor) for e in events} == {
        (lifecycle.provision_workflow_id(tenant_id), handle.result_run_id, "test")
    }
    ordered = sorted(events, key=lambda e: e.sequence)
    assert (ordered[0].kind, ordered[0].step) == (Kind.KIND_REQUESTED, "provision")
    seen = {(e.kind, e.step) for e in ordered}
    assert (Kind.KIND_STEP_STARTED, "create_bucket") in seen
    assert (Kind.KIND_STEP_COMPLETED, "create_bucket") in seen
    assert (Kind.KIND_STEP_COMPENSATED, "create_bucket") in seen
    [failed] = [e for e in ordered if e.kind == Kind.KIND_STEP_FAILED]
    assert failed.step == "create_dns_records" and "injected failure" in failed.detail
    states = [e.state for e in ordered if e.kind == Kind.KIND_STATE_CHANGED]
    assert states == [State.STATE_PROVISIONING, State.STATE_PROVISION_FAILED]
    # Times never go backwards along the sequence.
    times = [e.time.ToDatetime() for e in ordered]
    assert times == sorted(times)


async def test_audit_log_names_who_cancelled(client: Client) -> None:
    fakes = FakeDomains()
    fakes.slow["CreateBucket"] = 1.0
    async with running(client, fakes):
        _, handle = await start_provision(client)
        await asyncio.wait_for(fakes.started["CreateBucket"].wait(), timeout=10)
        await handle.signal(
            lifecycle.CANCEL_REQUESTED_SIGNAL, orchestrator_pb2.CancelRequested(requested_by="ops@test")
        )
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    cancel = [e for e in fakes.events if (e.kind, e.step) == (Kind.KIND_REQUESTED, "cancel")]
    assert [e.actor for e in cancel] == ["ops@test"]
    states = [e.state for e in fakes.events if e.kind == Kind.KIND_STATE_CHANGED]
    assert states[-1] == State.STATE_PROVISION_FAILED
