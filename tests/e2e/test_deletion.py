"""Deleting a tenant through the gRPC API: a grace period the caller can end
by undeleting or by a hard delete, a backup of the tenant's schema and
identity before anything is removed, and the audit log of it all."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import Providers, create, details, eventually, principal, settle

State = tenant_pb2.Tenant.State
Kind = tenant_pb2.TenantEvent.Kind
BACKUP_BUCKET = "tenantry-backups"


def delete(
    api: tenant_service_pb2_grpc.TenantServiceStub,
    tid: str,
    *,
    grace: timedelta | None = None,
    hard: bool = False,
    skip_backup: bool = False,
) -> tenant_pb2.Tenant:
    request = tenant_service_pb2.DeleteTenantRequest(
        name=f"tenants/{tid}", hard_delete=hard, skip_backup=skip_backup
    )
    if grace is not None:
        period = Duration()
        period.FromTimedelta(grace)
        request.grace_period.CopyFrom(period)
    return api.DeleteTenant(request).tenant


def events(
    api: tenant_service_pb2_grpc.TenantServiceStub, tid: str, page_size: int = 0
) -> list[tenant_pb2.TenantEvent]:
    found, token = [], ""
    while True:
        reply = api.ListTenantEvents(
            tenant_service_pb2.ListTenantEventsRequest(
                parent=f"tenants/{tid}", page_size=page_size, page_token=token
            )
        )
        found += list(reply.events)
        token = reply.next_page_token
        if not token:
            return found


def realm_enabled(providers: Providers, tid: str) -> bool:
    [(enabled,)] = providers.sql("SELECT enabled FROM idp_local.realms WHERE tenant_id = %s", tid)
    return bool(enabled)


def mail_subjects(providers: Providers, tid: str) -> list[str]:
    subjects = []
    for path in (providers.maildir / "new").glob("*"):
        text = path.read_text(errors="replace")
        if tid in text:
            subjects += [
                line[len("Subject: ") :] for line in text.splitlines() if line.startswith("Subject: ")
            ]
    return subjects


@pytest.fixture(scope="module")
def active_tenant(api: tenant_service_pb2_grpc.TenantServiceStub) -> str:
    tid = f"e2e-{uuid.uuid4().hex[:10]}"
    create(api, tid)
    assert settle(api, tid).state == State.STATE_ACTIVE
    return tid


def backup_object(providers: Providers, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bytes(providers.s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_undelete_in_the_grace_period_restores_the_tenant_with_everything_it_had(
    api: tenant_service_pb2_grpc.TenantServiceStub,
    callers: Callable[[str], tenant_service_pb2_grpc.TenantServiceStub],
    providers: Providers,
    new_id: Callable[[], str],
) -> None:
    tid = new_id()
    create(api, tid)
    assert settle(api, tid).state == State.STATE_ACTIVE
    before = providers.orphans(tid)

    deleting = delete(callers("offboarding"), tid, grace=timedelta(hours=1))
    assert deleting.state == State.STATE_DEPROVISIONING
    eventually(lambda: not realm_enabled(providers, tid), what="sign-in disabled in the grace period")
    got = api.GetTenant(tenant_service_pb2.GetTenantRequest(name=f"tenants/{tid}")).tenant
    assert got.state == State.STATE_DEPROVISIONING
    purge = got.purge_time.ToDatetime(tzinfo=UTC)
    assert timedelta(minutes=59) < purge - datetime.now(UTC) <= timedelta(hours=1)
    eventually(
        lambda: any("will be deleted on" in s for s in mail_subjects(providers, tid)),
        what="deletion notice",
    )
    # Nothing is removed while the grace period runs.
    assert providers.orphans(tid) == before

    # What the caller writes about itself is not what the audit log records.
    restored = (
        callers("support")
        .UndeleteTenant(
            tenant_service_pb2.UndeleteTenantRequest(name=f"tenants/{tid}"),
            metadata=(("x-tenantry-caller", "mallory@elsewhere"),),
        )
        .tenant
    )
    assert restored.state == State.STATE_ACTIVE
    assert not restored.HasField("purge_time")
    assert realm_enabled(providers, tid)
    assert providers.orphans(tid) == before
    [(state, purge_time)] = providers.sql(
        "SELECT state, purge_time FROM registry.tenants WHERE tenant_id = %s", tid
    )
    assert (state, purge_time) == ("STATE_ACTIVE", None)

    with pytest.raises(grpc.RpcError) as again:
        api.UndeleteTenant(tenant_service_pb2.UndeleteTenantRequest(name=f"tenants/{tid}"))
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    log = events(api, tid)
    requested = [(e.step, e.actor) for e in log if e.kind == Kind.KIND_REQUESTED]
    assert ("deprovision", principal("offboarding")) in requested
    assert ("undelete", principal("support")) in requested
    assert not any("mallory" in e.actor for e in log)
    states = [e.state for e in log if e.kind == Kind.KIND_STATE_CHANGED]
    assert states[-2:] == [State.STATE_DEPROVISIONING, State.STATE_ACTIVE]
    steps = {(e.kind, e.step) for e in log}
    assert (Kind.KIND_STEP_COMPLETED, "disable_access") in steps
    assert (Kind.KIND_STEP_COMPLETED, "enable_access") in steps
    assert not any(e.step.startswith("delete_") for e in log)

    # A restored tenant can be deleted again: a new run under the same id.
    delete(api, tid, hard=True, skip_backup=True)
    assert settle(api, tid).state == State.STATE_DEPROVISIONED
    assert providers.orphans(tid) == {}


def test_after_the_grace_period_the_tenant_is_backed_up_then_removed(
    api: tenant_service_pb2_grpc.TenantServiceStub, providers: Providers, new_id: Callable[[], str]
) -> None:
    tid = new_id()
    create(api, tid)
    assert settle(api, tid).state == State.STATE_ACTIVE
    schema = f"tenant_{tid.replace('-', '_')}"
    providers.sql(
        f"INSERT INTO {schema}.settings (key, value) VALUES ('favourite_colour', 'teal') RETURNING key"
    )

    delete(api, tid, grace=timedelta(seconds=2))
    watched: list[tenant_pb2.TenantEvent] = []
    last = None
    for update in api.WatchTenant(tenant_service_pb2.WatchTenantRequest(name=f"tenants/{tid}"), timeout=120):
        last = update.tenant
        watched += list(update.events)
    assert last is not None and last.state == State.STATE_DEPROVISIONED
    assert providers.orphans(tid) == {}

    # The backup is kept with the record and outlives the tenant.
    backups = {b.kind: b for b in last.backups}
    assert set(backups) == {"db_schema", "identity"}
    for backup in backups.values():
        assert backup.uri.startswith(f"s3://{BACKUP_BUCKET}/tenants/{tid}/")
        assert len(backup_object(providers, backup.uri)) == backup.size_bytes
    dump = gzip.decompress(backup_object(providers, backups["db_schema"].uri)).decode()
    assert f"CREATE TABLE {schema}.settings" in dump and "favourite_colour" in dump
    identity = json.loads(backup_object(providers, backups["identity"].uri))
    assert "ada@acme.example.com" in json.dumps(identity)
    assert "argon2" not in json.dumps(identity)

    # The audit log, paged, is the whole story in order; Watch streamed the same events.
    log = events(api, tid)
    assert [e.name for e in events(api, tid, page_size=3)] == [e.name for e in log]
    assert {e.name for e in log if e.workflow_id.endswith("/deprovision")} <= {e.name for e in watched}
    order = [(e.kind, e.step) for e in log]
    completed = [step for kind, step in order if kind == Kind.KIND_STEP_COMPLETED]
    assert completed.index("grace_period") < completed.index("backup_schema") < completed.index("drop_schema")
    assert completed.index("export_identity") < completed.index("delete_realm")
    states = [e.state for e in log if e.kind == Kind.KIND_STATE_CHANGED]
    assert states == [
        State.STATE_PROVISIONING,
        State.STATE_ACTIVE,
        State.STATE_DEPROVISIONING,
        State.STATE_DEPROVISIONED,
    ]
    times = [e.time.ToDatetime() for e in log]
    assert times == sorted(times)


def test_hard_delete_ends_a_grace_period_at_once_and_still_backs_up(
    api: tenant_service_pb2_grpc.TenantServiceStub,
    callers: Callable[[str], tenant_service_pb2_grpc.TenantServiceStub],
    providers: Providers,
    new_id: Callable[[], str],
) -> None:
    tid = new_id()
    create(api, tid)
    assert settle(api, tid).state == State.STATE_ACTIVE
    delete(api, tid, grace=timedelta(days=30))
    eventually(lambda: not realm_enabled(providers, tid), what="grace period under way")
    delete(callers("cleanup"), tid, hard=True)
    gone = settle(api, tid)
    assert gone.state == State.STATE_DEPROVISIONED
    assert {b.kind for b in gone.backups} == {"db_schema", "identity"}
    assert providers.orphans(tid) == {}
    log = events(api, tid)
    assert ("delete_now", principal("cleanup")) in [
        (e.step, e.actor) for e in log if e.kind == Kind.KIND_REQUESTED
    ]
    [ended] = [e for e in log if (e.kind, e.step) == (Kind.KIND_STEP_COMPLETED, "grace_period")]
    assert "hard delete" in ended.detail


def test_only_an_explicit_skip_backup_removes_without_a_backup(
    api: tenant_service_pb2_grpc.TenantServiceStub, providers: Providers, new_id: Callable[[], str]
) -> None:
    tid = new_id()
    create(api, tid)
    assert settle(api, tid).state == State.STATE_ACTIVE
    delete(api, tid, hard=True, skip_backup=True)
    gone = settle(api, tid)
    assert gone.state == State.STATE_DEPROVISIONED
    assert list(gone.backups) == []
    listed = providers.s3.list_objects_v2(Bucket=BACKUP_BUCKET, Prefix=f"tenants/{tid}/")
    assert listed.get("KeyCount", 0) == 0
    assert providers.orphans(tid) == {}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hard_delete": True, "grace_period": Duration(seconds=60)}, "grace_period"),
        ({"grace_period": Duration(nanos=500_000_000)}, "grace_period"),
        ({"grace_period": Duration(seconds=400 * 86400)}, "grace_period"),
        ({"grace_period": Duration(seconds=-5)}, "grace_period"),
        ({"name": "tenant/x"}, "name"),
    ],
)
def test_bad_delete_requests_are_invalid_argument_and_start_nothing(
    api: tenant_service_pb2_grpc.TenantServiceStub, active_tenant: str, changes: dict[str, object], field: str
) -> None:
    request = tenant_service_pb2.DeleteTenantRequest(name=f"tenants/{active_tenant}")
    for key, value in changes.items():
        if isinstance(value, Duration):
            request.grace_period.CopyFrom(value)
        else:
            setattr(request, key, value)
    with pytest.raises(grpc.RpcError) as refused:
        api.DeleteTenant(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details(refused.value)[1]
    got = api.GetTenant(tenant_service_pb2.GetTenantRequest(name=f"tenants/{active_tenant}")).tenant
    assert got.state == State.STATE_ACTIVE


def test_events_of_an_unknown_tenant_or_with_a_forged_token_are_refused(
    api: tenant_service_pb2_grpc.TenantServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as unknown:
        api.ListTenantEvents(tenant_service_pb2.ListTenantEventsRequest(parent="tenants/nobody-here"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as forged:
        api.ListTenantEvents(
            tenant_service_pb2.ListTenantEventsRequest(
                parent="tenants/nobody-here", page_token="bm90LWEtdG9rZW4="
            )
        )
    assert forged.value.code() == grpc.StatusCode.INVALID_ARGUMENT
