"""The API does what its proto comments and the README say, over gRPC: the
steps a settled tenant shows, what a watch's first update carries, a
deletion's purge time and current steps in its grace period, heartbeats of a
quiet watch, and the ErrorInfo of a failed run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration

from libs import lifecycle
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import WATCH_HEARTBEAT, create, eventually, inject_failure, settle

State = tenant_pb2.Tenant.State
Status = tenant_pb2.StepStatus
Operation = tenant_pb2.Operation
Stub = tenant_service_pb2_grpc.TenantServiceStub
pytestmark = pytest.mark.timeout(240)


def get(api: Stub, tid: str) -> tenant_pb2.Tenant:
    return api.GetTenant(tenant_service_pb2.GetTenantRequest(name=f"tenants/{tid}")).tenant


def watch(api: Stub, tid: str) -> Iterator[tenant_service_pb2.WatchTenantResponse]:
    return iter(api.WatchTenant(tenant_service_pb2.WatchTenantRequest(name=f"tenants/{tid}"), timeout=90))


def run_of(operation: tenant_pb2.Operation) -> tuple[str, str]:
    return operation.workflow_id, operation.run_id


def events_runs(update: tenant_service_pb2.WatchTenantResponse) -> set[tuple[str, str]]:
    return {(e.workflow_id, e.run_id) for e in update.events}


def assert_completed_steps(tenant: tenant_pb2.Tenant, *expected: str) -> None:
    """The last run's steps, each COMPLETED, and nothing running."""
    statuses = {s.step: s.status for s in tenant.steps}
    assert set(expected) <= set(statuses), statuses
    assert set(statuses.values()) == {Status.STEP_STATUS_COMPLETED}, statuses
    assert list(tenant.current_steps) == [] and tenant.current_step == ""


def test_a_settled_tenant_shows_its_last_runs_steps_and_a_watch_starts_with_that_runs_events(
    api: Stub, new_id: Callable[[], str]
) -> None:
    tid = new_id()
    create(api, tid)
    assert settle(api, tid).state == State.STATE_ACTIVE
    active = get(api, tid)
    assert active.state == State.STATE_ACTIVE
    assert_completed_steps(active, "create_bucket", "create_schema", "mark_active")
    provisioned = run_of(active.last_operation)
    # A run that succeeded carries no error.
    assert active.last_operation.outcome == Operation.OUTCOME_SUCCEEDED
    assert not active.last_operation.HasField("error")

    suspended = api.SuspendTenant(tenant_service_pb2.SuspendTenantRequest(name=f"tenants/{tid}")).tenant
    assert suspended.state == State.STATE_SUSPENDED
    got = get(api, tid)
    assert got.state == State.STATE_SUSPENDED and got.last_operation.kind == Operation.KIND_SUSPEND
    assert_completed_steps(got, "disable_access")
    suspension = run_of(got.last_operation)

    resumed = api.ResumeTenant(tenant_service_pb2.ResumeTenantRequest(name=f"tenants/{tid}")).tenant
    assert resumed.state == State.STATE_ACTIVE
    got = get(api, tid)
    assert got.last_operation.kind == Operation.KIND_RESUME
    assert_completed_steps(got, "enable_access")
    resumption = run_of(got.last_operation)
    assert len({provisioned, suspension, resumption}) == 3

    # The tenant is settled: the stream's one update carries the last run's events only.
    updates = list(watch(api, tid))
    first = updates[0]
    assert not first.heartbeat and first.tenant.state == State.STATE_ACTIVE
    assert first.events and events_runs(first) == {resumption}, events_runs(first)
    assert all(not u.events for u in updates[1:])


def test_a_deletion_in_its_grace_period_shows_purge_time_current_steps_and_its_watch_heartbeats(
    api: Stub, new_id: Callable[[], str]
) -> None:
    tid = new_id()
    create(api, tid)
    assert settle(api, tid).state == State.STATE_ACTIVE

    before = datetime.now(UTC)
    request = tenant_service_pb2.DeleteTenantRequest(
        name=f"tenants/{tid}", grace_period=Duration(seconds=3600)
    )
    deleting = api.DeleteTenant(request).tenant
    assert deleting.state == State.STATE_DEPROVISIONING
    assert deleting.HasField("purge_time"), "DeleteTenant answers without purge_time"
    purge = deleting.purge_time.ToDatetime(tzinfo=UTC)
    assert before + timedelta(minutes=59) < purge <= datetime.now(UTC) + timedelta(hours=1)

    # GetTenant, mid-run: the purge time, and the run held in its grace period.
    def waiting() -> bool:
        return list(get(api, tid).current_steps) == ["grace_period"]

    eventually(waiting, what="GetTenant showing current_steps ['grace_period']")
    got = get(api, tid)
    assert got.state == State.STATE_DEPROVISIONING and got.purge_time == deleting.purge_time
    assert got.current_step == "grace_period"
    assert {s.step: s.status for s in got.steps}["grace_period"] == Status.STEP_STATUS_RUNNING
    deletion = run_of(got.last_operation)
    assert deletion[0] == lifecycle.deprovision_workflow_id(tid) and deletion[1]

    updates = watch(api, tid)
    try:
        first = next(updates)
        assert not first.heartbeat
        # The run under way's events only, never the provisioning's.
        assert first.events and events_runs(first) == {deletion}, events_runs(first)
        shown = first
        while list(shown.tenant.current_steps) != ["grace_period"]:
            shown = next(updates)  # the grace period's mark may follow the first update
            assert not shown.heartbeat, "a heartbeat while the run still moves"
        assert shown.tenant.current_step == "grace_period"
        assert shown.tenant.purge_time == deleting.purge_time
        # Quiet from here on: a heartbeat every interval, the stream still open.
        since = time.monotonic()
        for _ in range(2):
            beat = next(updates)
            assert beat.heartbeat and not beat.events and beat.tenant == shown.tenant
            now = time.monotonic()
            assert WATCH_HEARTBEAT * 0.5 <= now - since <= WATCH_HEARTBEAT * 3, now - since
            since = now
    finally:
        updates.cancel()  # type: ignore[attr-defined]  # a grpc call: ends the stream

    restored = api.UndeleteTenant(tenant_service_pb2.UndeleteTenantRequest(name=f"tenants/{tid}")).tenant
    assert restored.state == State.STATE_ACTIVE and not restored.HasField("purge_time")


def test_a_failed_provisioning_carries_its_error_info_in_last_operation(
    api: Stub, fault_rules: Path, new_id: Callable[[], str]
) -> None:
    tid = new_id()
    inject_failure(fault_rules, tid, [{"rpc": "CreateBucket", "mode": "before"}])
    try:
        create(api, tid)
        assert settle(api, tid).state == State.STATE_PROVISION_FAILED
    finally:
        inject_failure(fault_rules, tid, None)
    got = get(api, tid)
    operation = got.last_operation
    assert (operation.kind, operation.outcome) == (Operation.KIND_PROVISION, Operation.OUTCOME_FAILED)
    assert operation.HasField("error")
    assert (operation.error.reason, operation.error.domain) == ("OPERATION_FAILED", "tenantry.dev")
    assert dict(operation.error.metadata) == {
        "tenant_id": tid,
        "operation": "provision",
        "failed_step": "create_bucket",
        "failure_type": operation.failure_type,
    }
    assert operation.failure_type == "InjectedFault" and got.failed_step == "create_bucket"
    # The steps of the failed run, as it left them.
    statuses = {s.step: s.status for s in got.steps}
    assert statuses["create_bucket"] == Status.STEP_STATUS_FAILED, statuses
    # ListTenants shows it too.
    [listed] = [t for t in list_all(api, "state = PROVISION_FAILED") if t.tenant_id == tid]
    assert listed.last_operation.error == operation.error


def list_all(api: Stub, query: str) -> list[tenant_pb2.Tenant]:
    found, token = [], ""
    while True:
        reply = api.ListTenants(
            tenant_service_pb2.ListTenantsRequest(filter=query, page_size=1000, page_token=token)
        )
        found += list(reply.tenants)
        token = reply.next_page_token
        if not token:
            return found
