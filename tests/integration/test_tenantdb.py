"""The tenant-data activities against a real (embedded) PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from temporalio.exceptions import ApplicationError

from libs.backup import BackupStore
from libs.config import ConfigError
from libs.contracts import TENANT_DATA
from services.tenantdb import worker
from services.tenantdb.activities import TenantDataActivities
from services.tenantdb.providers import EventRecord, RunStepsRecord
from services.tenantdb.providers.postgres import PostgresTenantData
from services.tenantdb.providers.secrets import TenantCredentials
from tenantry.tenant.v1 import tenant_pb2
from tenantry.tenantdb.v1 import tenantdb_pb2 as pb
from tests.integration.conftest import Activities, assert_permanent, fetch, new_id

REPO = Path(__file__).resolve().parents[2]
INJECTION = 'a"; drop schema registry; --'


@pytest.fixture(scope="module")
async def provider(database_urls: dict[str, str]) -> AsyncIterator[PostgresTenantData]:
    store = PostgresTenantData(database_urls["tenantdb"], max_connections=4)
    await store.open()
    yield store
    await store.close()


@pytest.fixture(scope="module")
def acts(provider: PostgresTenantData, backups: BackupStore, database_urls: dict[str, str]) -> Activities:
    credentials = TenantCredentials(database_urls["tenantdb"])
    return Activities(TENANT_DATA, TenantDataActivities(provider, backups=backups, credentials=credentials))


def secret_arn(tenant_id: str) -> str:
    client = boto3.client("secretsmanager")
    return str(client.describe_secret(SecretId=f"tenantry/tenants/{tenant_id}/database")["ARN"])


def tenant(tenant_id: str, **overrides: Any) -> tenant_pb2.Tenant:
    fields: dict[str, Any] = {
        "tenant_id": tenant_id,
        "display_name": "Acme Corp",
        "plan_tier": tenant_pb2.PLAN_TIER_POOLED,
        "domains": [f"{tenant_id}.example.com", f"{tenant_id}.acme.example"],
        "admin": tenant_pb2.AdminContact(email="boss@acme.example", given_name="Ada", family_name="Boss"),
    }
    fields.update(overrides)
    return tenant_pb2.Tenant(**fields)


async def registry_row(db: psycopg.AsyncConnection, tenant_id: str) -> dict[str, Any] | None:
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    await cur.execute("SELECT * FROM registry.tenants WHERE tenant_id = %s", [tenant_id])
    return await cur.fetchone()


async def snapshot(db: psycopg.AsyncConnection) -> tuple:
    """Everything an activity could change, to compare before and after."""
    tenants = await fetch(db, "SELECT * FROM registry.tenants ORDER BY tenant_id")
    resources = await fetch(db, "SELECT * FROM registry.tenant_resources ORDER BY 1, 2, 3")
    schemas = await fetch(db, "SELECT nspname FROM pg_namespace ORDER BY 1")
    backup_records = await fetch(db, "SELECT * FROM registry.tenant_backups ORDER BY 1, 3")
    events = await fetch(db, "SELECT * FROM registry.tenant_events ORDER BY event_id")
    return tenants, resources, schemas, backup_records, events


async def provisioning(acts: Activities, tenant_id: str, workflow_id: str = "provision-1") -> None:
    await acts.mark_provisioning(
        pb.MarkProvisioningRequest(tenant=tenant(tenant_id), workflow_id=workflow_id)
    )


async def in_state(acts: Activities, tenant_id: str, state: str) -> None:
    """Drives a fresh tenant to `state` through the activities."""
    await provisioning(acts, tenant_id)
    if state == "STATE_PROVISIONING":
        return
    if state == "STATE_PROVISION_FAILED":
        await acts.mark_provision_failed(pb.MarkProvisionFailedRequest(tenant_id=tenant_id, failed_step="x"))
        return
    await acts.mark_active(pb.MarkActiveRequest(tenant_id=tenant_id))
    if state == "STATE_ACTIVE":
        return
    if state == "STATE_SUSPENDED":
        await acts.mark_suspended(pb.MarkSuspendedRequest(tenant_id=tenant_id))
        return
    await acts.mark_deprovisioning(pb.MarkDeprovisioningRequest(tenant_id=tenant_id, workflow_id="deprov-1"))
    if state == "STATE_DEPROVISIONING":
        return
    await acts.mark_deprovisioned(pb.MarkDeprovisionedRequest(tenant_id=tenant_id))
    assert state == "STATE_DEPROVISIONED"


def test_every_rpc_is_bound_with_its_declared_name(acts: Activities) -> None:
    assert set(acts.fns) == {rpc.python_name for rpc in TENANT_DATA.rpcs.values()}
    names = {fn.__temporal_activity_definition.name for fn in acts.fns.values()}  # type: ignore[attr-defined]
    assert names == {rpc.name for rpc in TENANT_DATA.rpcs.values()}
    assert TENANT_DATA.task_queue == "tenantry-tenantdb"


async def test_mark_provisioning_inserts_the_record(acts: Activities, db: psycopg.AsyncConnection) -> None:
    tid = new_id()
    await provisioning(acts, tid, "wf-a")
    row = await registry_row(db, tid)
    assert row is not None
    assert row["state"] == "STATE_PROVISIONING"
    assert row["plan_tier"] == "PLAN_TIER_POOLED"
    assert row["display_name"] == "Acme Corp"
    assert row["domains"] == [f"{tid}.example.com", f"{tid}.acme.example"]
    assert (row["admin_email"], row["admin_given_name"], row["admin_family_name"]) == (
        "boss@acme.example",
        "Ada",
        "Boss",
    )
    assert row["workflow_id"] == "wf-a"

    before = await snapshot(db)
    await provisioning(acts, tid, "wf-a")  # the same workflow again: nothing changes
    assert await snapshot(db) == before


async def test_full_lifecycle_and_every_step_twice(acts: Activities, db: psycopg.AsyncConnection) -> None:
    tid = new_id()
    schema = "tenant_" + tid.replace("-", "_")
    resources = [
        tenant_pb2.Resource(kind="idp_realm", id=f"tenant-{tid}", domain="idp"),
        tenant_pb2.Resource(kind="s3_bucket", id=f"bucket-{tid}", domain="infra"),
    ]
    steps: list[tuple[str, Any, str | None]] = [
        (
            "mark_provisioning",
            pb.MarkProvisioningRequest(tenant=tenant(tid), workflow_id="p"),
            "STATE_PROVISIONING",
        ),
        ("create_tenant_schema", pb.CreateTenantSchemaRequest(tenant_id=tid), None),
        ("record_resources", pb.RecordResourcesRequest(tenant_id=tid, resources=resources), None),
        ("mark_active", pb.MarkActiveRequest(tenant_id=tid), "STATE_ACTIVE"),
        (
            "mark_deprovisioning",
            pb.MarkDeprovisioningRequest(tenant_id=tid, workflow_id="d"),
            "STATE_DEPROVISIONING",
        ),
        ("drop_tenant_schema", pb.DropTenantSchemaRequest(tenant_id=tid), None),
        ("delete_resource_records", pb.DeleteResourceRecordsRequest(tenant_id=tid), None),
        ("mark_deprovisioned", pb.MarkDeprovisionedRequest(tenant_id=tid), "STATE_DEPROVISIONED"),
    ]
    for name, request, state in steps:
        first = await getattr(acts, name)(request)
        after_first = await snapshot(db)
        second = await getattr(acts, name)(request)
        assert await snapshot(db) == after_first, f"{name} changed something when repeated"
        assert first == second
        row = await registry_row(db, tid)
        assert row is not None
        if state:
            assert row["state"] == state
        if name == "create_tenant_schema":
            assert first.schema == schema
            assert (schema,) in after_first[2]
        if name == "record_resources":
            rows = await fetch(
                db,
                "SELECT kind, resource_id, domain FROM registry.tenant_resources WHERE tenant_id = %s",
                tid,
            )
            # With the reference to the tenant's database credentials, which CreateTenantSchema recorded.
            assert sorted(rows) == [
                ("db_credentials", secret_arn(tid), "tenantdb"),
                ("idp_realm", f"tenant-{tid}", "idp"),
                ("s3_bucket", f"bucket-{tid}", "infra"),
            ]
        if name == "drop_tenant_schema":
            assert (schema,) not in after_first[2]
        if name == "delete_resource_records":
            assert await fetch(db, "SELECT 1 FROM registry.tenant_resources WHERE tenant_id = %s", tid) == []
    row = await registry_row(db, tid)
    assert row is not None and row["workflow_id"] == "d"
    assert row["update_time"] >= row["create_time"]


async def test_get_tenant_record_returns_everything(acts: Activities, db: psycopg.AsyncConnection) -> None:
    tid = new_id()
    await provisioning(acts, tid, "wf-get")
    await acts.record_resources(
        pb.RecordResourcesRequest(
            tenant_id=tid,
            resources=[tenant_pb2.Resource(kind="dns_record", id=f"{tid}.example.com", domain="infra")],
        )
    )
    await acts.mark_provision_failed(
        pb.MarkProvisionFailedRequest(tenant_id=tid, failed_step="create_bucket", reason="bucket name taken")
    )
    got = await acts.get_tenant_record(pb.GetTenantRecordRequest(tenant_id=tid))
    assert got.found
    t = got.tenant
    assert t.name == f"tenants/{tid}"
    assert t.tenant_id == tid
    assert t.display_name == "Acme Corp"
    assert t.plan_tier == tenant_pb2.PLAN_TIER_POOLED
    assert list(t.domains) == [f"{tid}.example.com", f"{tid}.acme.example"]
    assert t.admin == tenant_pb2.AdminContact(email="boss@acme.example", given_name="Ada", family_name="Boss")
    assert t.state == tenant_pb2.Tenant.STATE_PROVISION_FAILED
    assert (t.failed_step, t.failure_reason) == ("create_bucket", "bucket name taken")
    assert list(t.resources) == [
        tenant_pb2.Resource(kind="dns_record", id=f"{tid}.example.com", domain="infra")
    ]
    row = await registry_row(db, tid)
    assert row is not None
    assert t.create_time.ToDatetime(tzinfo=row["create_time"].tzinfo) == row["create_time"]
    assert t.update_time.ToDatetime(tzinfo=row["update_time"].tzinfo) == row["update_time"]
    assert t.update_time.ToNanoseconds() > 0

    missing = await acts.get_tenant_record(pb.GetTenantRecordRequest(tenant_id=new_id()))
    assert missing.found is False
    assert not missing.HasField("tenant")


async def test_a_failed_tenant_can_be_provisioned_again(
    acts: Activities, db: psycopg.AsyncConnection
) -> None:
    tid = new_id()
    await provisioning(acts, tid, "wf-1")
    await acts.mark_provision_failed(
        pb.MarkProvisionFailedRequest(tenant_id=tid, failed_step="create_realm", reason="idp down")
    )
    row = await registry_row(db, tid)
    assert row is not None
    assert (row["state"], row["failed_step"], row["failure_reason"]) == (
        "STATE_PROVISION_FAILED",
        "create_realm",
        "idp down",
    )
    before = await snapshot(db)
    await acts.mark_provision_failed(
        pb.MarkProvisionFailedRequest(tenant_id=tid, failed_step="create_realm", reason="idp down")
    )
    assert await snapshot(db) == before
    failed = row

    retried = tenant(tid, display_name="Acme Corporation", plan_tier=tenant_pb2.PLAN_TIER_SILO)
    await acts.mark_provisioning(pb.MarkProvisioningRequest(tenant=retried, workflow_id="wf-2"))
    row = await registry_row(db, tid)
    assert row is not None
    assert row["state"] == "STATE_PROVISIONING"
    assert row["workflow_id"] == "wf-2"
    assert (row["failed_step"], row["failure_reason"]) == ("", "")
    assert (row["display_name"], row["plan_tier"]) == ("Acme Corporation", "PLAN_TIER_SILO")
    assert row["update_time"] > failed["update_time"]


@pytest.mark.parametrize(
    ("state", "workflow_id"),
    [
        ("STATE_PROVISIONING", "another-workflow"),
        ("STATE_ACTIVE", "another-workflow"),
        # Even a late attempt of the workflow that provisioned it never moves a live tenant back.
        ("STATE_ACTIVE", "provision-1"),
        ("STATE_DEPROVISIONED", "provision-1"),
    ],
)
async def test_mark_provisioning_conflicts_with_an_existing_tenant(
    acts: Activities, db: psycopg.AsyncConnection, state: str, workflow_id: str
) -> None:
    tid = new_id()
    await in_state(acts, tid, state)
    before = await snapshot(db)
    with pytest.raises(ApplicationError) as err:
        await provisioning(acts, tid, workflow_id)
    assert_permanent(err, "Conflict")
    assert tid in str(err.value)
    assert await snapshot(db) == before


async def test_a_deleted_tenants_id_is_never_provisioned_again_and_its_record_stays(
    acts: Activities, provider: PostgresTenantData, db: psycopg.AsyncConnection
) -> None:
    tid = new_id()
    await in_state(acts, tid, "STATE_DEPROVISIONED")
    deletion = RunStepsRecord("deprov-1", "run-d", 1, (("drop_tenant_schema", "STEP_STATUS_COMPLETED", ""),))
    await provider.append_events(tid, [], replace(deletion, ended=True))
    before = await snapshot(db)
    row = await registry_row(db, tid)
    assert row is not None
    deleted_on = datetime.fromisoformat(row["last_operation"]["end_time"])
    # Whatever the settings, and whichever workflow: a run that got past the API's check.
    for workflow_id in ("provision-1", "provision-2"):
        with pytest.raises(ApplicationError) as err:
            await acts.mark_provisioning(
                pb.MarkProvisioningRequest(
                    tenant=tenant(tid, display_name="Someone Else"), workflow_id=workflow_id, run_id="run-n"
                )
            )
        assert_permanent(err, "Conflict")
        assert f"tenant {tid} was deleted" in str(err.value)
        assert f"on {deleted_on:%Y-%m-%d %H:%M:%S} UTC" in str(err.value)
        assert "cannot be reused" in str(err.value)
        assert await snapshot(db) == before
    # The refused run's failure marks nothing either.
    with pytest.raises(ApplicationError) as failed:
        await acts.mark_provision_failed(
            pb.MarkProvisionFailedRequest(
                tenant_id=tid, failed_step="mark_provisioning", reason="x", run_id="run-n", tenant=tenant(tid)
            )
        )
    assert_permanent(failed, "Conflict")
    assert await snapshot(db) == before
    # Its events are kept (an attempt on the id); its steps do not replace the deletion's.
    attempt = RunStepsRecord("provision-2", "run-n", 1, (("mark_provisioning", "STEP_STATUS_FAILED", "x"),))
    requested = EventRecord(run_id="run-n", sequence=1, kind="KIND_REQUESTED", step="provision")
    assert await provider.append_events(tid, [requested], replace(attempt, ended=True)) == 1
    row = await registry_row(db, tid)
    assert row is not None and row["run_steps"]["workflow_id"] == "deprov-1"
    # The deletion's own later appends still land.
    await provider.append_events(tid, [], replace(deletion, sequence=2, ended=True))
    row = await registry_row(db, tid)
    assert row is not None and row["run_steps"]["sequence"] == 2


@pytest.mark.parametrize(
    ("state", "rpc", "request_factory"),
    [
        ("STATE_DEPROVISIONING", "mark_active", lambda t: pb.MarkActiveRequest(tenant_id=t)),
        ("STATE_PROVISION_FAILED", "mark_active", lambda t: pb.MarkActiveRequest(tenant_id=t)),
        ("STATE_ACTIVE", "mark_deprovisioned", lambda t: pb.MarkDeprovisionedRequest(tenant_id=t)),
        (
            "STATE_PROVISIONING",
            "mark_deprovisioning",
            lambda t: pb.MarkDeprovisioningRequest(tenant_id=t, workflow_id="d"),
        ),
        (
            "STATE_DEPROVISIONED",
            "mark_deprovisioning",
            lambda t: pb.MarkDeprovisioningRequest(tenant_id=t, workflow_id="d"),
        ),
        ("STATE_ACTIVE", "mark_provision_failed", lambda t: pb.MarkProvisionFailedRequest(tenant_id=t)),
    ],
)
async def test_illegal_transitions_conflict_and_change_nothing(
    acts: Activities, db: psycopg.AsyncConnection, state: str, rpc: str, request_factory: Callable[[str], Any]
) -> None:
    tid = new_id()
    await in_state(acts, tid, state)
    before = await snapshot(db)
    with pytest.raises(ApplicationError) as err:
        await getattr(acts, rpc)(request_factory(tid))
    assert_permanent(err, "Conflict")
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    "state", ["STATE_ACTIVE", "STATE_SUSPENDED", "STATE_PROVISION_FAILED", "STATE_DEPROVISIONING"]
)
async def test_deprovisioning_starts_from_every_allowed_state(
    acts: Activities, db: psycopg.AsyncConnection, state: str
) -> None:
    tid = new_id()
    await in_state(acts, tid, state)
    await acts.mark_deprovisioning(pb.MarkDeprovisioningRequest(tenant_id=tid, workflow_id="deprov-2"))
    row = await registry_row(db, tid)
    assert row is not None
    assert (row["state"], row["workflow_id"]) == ("STATE_DEPROVISIONING", "deprov-2")


async def test_a_deletion_takes_the_tenant_only_from_the_state_its_caller_saw(
    acts: Activities, db: psycopg.AsyncConnection
) -> None:
    tid = new_id()
    await in_state(acts, tid, "STATE_SUSPENDED")  # a suspend landed after the caller saw ACTIVE
    before = await snapshot(db)
    seen_active = pb.MarkDeprovisioningRequest(
        tenant_id=tid, workflow_id="deprov-4", run_id="run-4", expected_state=tenant_pb2.Tenant.STATE_ACTIVE
    )
    with pytest.raises(ApplicationError) as err:
        await acts.mark_deprovisioning(seen_active)
    assert_permanent(err, "Conflict")
    assert await snapshot(db) == before
    # From the state it saw, it goes; the same run marking again (a retry after
    # the mark was written) is not a conflict, another run's mark is.
    seen_suspended = pb.MarkDeprovisioningRequest(
        tenant_id=tid,
        workflow_id="deprov-4",
        run_id="run-4",
        expected_state=tenant_pb2.Tenant.STATE_SUSPENDED,
    )
    await acts.mark_deprovisioning(seen_suspended)
    await acts.mark_deprovisioning(seen_suspended)
    row = await registry_row(db, tid)
    assert row is not None and row["state"] == "STATE_DEPROVISIONING"
    seen_suspended.run_id = "run-5"
    with pytest.raises(ApplicationError) as err:
        await acts.mark_deprovisioning(seen_suspended)
    assert_permanent(err, "Conflict")


async def test_a_pending_tenant_cannot_be_deprovisioned(
    acts: Activities, db: psycopg.AsyncConnection
) -> None:
    tid = new_id()
    await in_state(acts, tid, "STATE_PROVISIONING")
    # No activity sets PENDING (the facade's accepted-but-not-started view); set it directly.
    await db.execute("UPDATE registry.tenants SET state = 'STATE_PENDING' WHERE tenant_id = %s", [tid])
    with pytest.raises(ApplicationError) as err:
        await acts.mark_deprovisioning(pb.MarkDeprovisioningRequest(tenant_id=tid, workflow_id="deprov-3"))
    assert_permanent(err, "Conflict")
    assert "STATE_PENDING" in str(err.value)


@pytest.mark.parametrize(
    ("rpc", "request_factory"),
    [
        ("mark_provision_failed", lambda t: pb.MarkProvisionFailedRequest(tenant_id=t, failed_step="s")),
        ("mark_active", lambda t: pb.MarkActiveRequest(tenant_id=t)),
        ("mark_deprovisioning", lambda t: pb.MarkDeprovisioningRequest(tenant_id=t, workflow_id="d")),
        ("mark_deprovisioned", lambda t: pb.MarkDeprovisionedRequest(tenant_id=t)),
        ("mark_suspended", lambda t: pb.MarkSuspendedRequest(tenant_id=t)),
        ("mark_resumed", lambda t: pb.MarkResumedRequest(tenant_id=t)),
        (
            "mark_restored",
            lambda t: pb.MarkRestoredRequest(tenant_id=t, state=tenant_pb2.Tenant.STATE_ACTIVE),
        ),
        ("create_tenant_schema", lambda t: pb.CreateTenantSchemaRequest(tenant_id=t)),
        ("backup_tenant_schema", lambda t: pb.BackupTenantSchemaRequest(tenant_id=t, backup_id="b1")),
        (
            "record_resources",
            lambda t: pb.RecordResourcesRequest(
                tenant_id=t, resources=[tenant_pb2.Resource(kind="k", id="i", domain="d")]
            ),
        ),
    ],
)
async def test_unknown_tenant_is_not_found(
    acts: Activities, db: psycopg.AsyncConnection, rpc: str, request_factory: Callable[[str], Any]
) -> None:
    before = await snapshot(db)
    with pytest.raises(ApplicationError) as err:
        await getattr(acts, rpc)(request_factory(new_id()))
    assert_permanent(err, "NotFound")
    assert await snapshot(db) == before


async def test_deleting_what_is_gone_succeeds(acts: Activities, db: psycopg.AsyncConnection) -> None:
    tid = new_id()
    before = await snapshot(db)
    await acts.drop_tenant_schema(pb.DropTenantSchemaRequest(tenant_id=tid))
    await acts.delete_resource_records(pb.DeleteResourceRecordsRequest(tenant_id=tid))
    assert await snapshot(db) == before


@pytest.mark.parametrize("bad_id", [INJECTION, "Upper", "ab", "a" * 33, "-abc", "abc-", "a_bc", ""])
async def test_bad_tenant_ids_are_rejected_by_every_rpc(
    acts: Activities, db: psycopg.AsyncConnection, bad_id: str
) -> None:
    requests = {
        "mark_provisioning": pb.MarkProvisioningRequest(tenant=tenant(bad_id), workflow_id="p"),
        "mark_provision_failed": pb.MarkProvisionFailedRequest(tenant_id=bad_id),
        "mark_active": pb.MarkActiveRequest(tenant_id=bad_id),
        "mark_deprovisioning": pb.MarkDeprovisioningRequest(tenant_id=bad_id, workflow_id="d"),
        "mark_deprovisioned": pb.MarkDeprovisionedRequest(tenant_id=bad_id),
        "get_tenant_record": pb.GetTenantRecordRequest(tenant_id=bad_id),
        "create_tenant_schema": pb.CreateTenantSchemaRequest(tenant_id=bad_id),
        "drop_tenant_schema": pb.DropTenantSchemaRequest(tenant_id=bad_id),
        "record_resources": pb.RecordResourcesRequest(
            tenant_id=bad_id, resources=[tenant_pb2.Resource(kind="k", id="i", domain="d")]
        ),
        "delete_resource_records": pb.DeleteResourceRecordsRequest(tenant_id=bad_id),
        "mark_suspended": pb.MarkSuspendedRequest(tenant_id=bad_id),
        "mark_resumed": pb.MarkResumedRequest(tenant_id=bad_id),
        "mark_restored": pb.MarkRestoredRequest(tenant_id=bad_id, state=tenant_pb2.Tenant.STATE_ACTIVE),
        "backup_tenant_schema": pb.BackupTenantSchemaRequest(tenant_id=bad_id, backup_id="b1"),
        "append_tenant_events": pb.AppendTenantEventsRequest(
            tenant_id=bad_id,
            events=[
                tenant_pb2.TenantEvent(kind=tenant_pb2.TenantEvent.KIND_REQUESTED, run_id="r", sequence=1)
            ],
        ),
        "mark_deprovision_failed": pb.MarkDeprovisionFailedRequest(tenant_id=bad_id, run_id="r"),
        "mark_access_changing": pb.MarkAccessChangingRequest(
            tenant_id=bad_id, suspend=True, workflow_id="a", run_id="r"
        ),
        "mark_access_change_failed": pb.MarkAccessChangeFailedRequest(tenant_id=bad_id, run_id="r"),
        "record_leftovers": pb.RecordLeftoversRequest(tenant_id=bad_id, workflow_id="c", run_id="r"),
        "record_failed_operation": pb.RecordFailedOperationRequest(
            tenant_id=bad_id,
            operation=tenant_pb2.Operation(
                kind=tenant_pb2.Operation.KIND_UNDELETE, outcome=tenant_pb2.Operation.OUTCOME_FAILED
            ),
        ),
    }
    assert set(requests) == set(acts.fns)
    before = await snapshot(db)
    for rpc, request in requests.items():
        with pytest.raises(ApplicationError) as err:
            await getattr(acts, rpc)(request)
        assert_permanent(err, "InvalidArgument")
    assert await snapshot(db) == before
    assert ("registry",) in before[2]


@pytest.mark.parametrize(
    "bad",
    [
        {"plan_tier": tenant_pb2.PLAN_TIER_UNSPECIFIED},
        {"display_name": ""},
        {"display_name": "x" * 201},
        {"admin": tenant_pb2.AdminContact(email="not-an-email")},
    ],
)
async def test_mark_provisioning_validates_the_tenant(
    acts: Activities, db: psycopg.AsyncConnection, bad: dict[str, Any]
) -> None:
    tid = new_id()
    with pytest.raises(ApplicationError) as err:
        await acts.mark_provisioning(pb.MarkProvisioningRequest(tenant=tenant(tid, **bad), workflow_id="p"))
    assert_permanent(err, "InvalidArgument")
    assert await registry_row(db, tid) is None


async def test_tenant_schema_has_its_seed(acts: Activities, db: psycopg.AsyncConnection) -> None:
    tid = new_id()
    await provisioning(acts, tid)
    schema = (await acts.create_tenant_schema(pb.CreateTenantSchemaRequest(tenant_id=tid))).schema
    assert schema == "tenant_" + tid.replace("-", "_")
    tables = await fetch(
        db, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", schema
    )
    assert {t for (t,) in tables} >= {"settings", "users", "schema_migrations", "audit_log"}
    settings = dict(await fetch(db, f'SELECT key, value FROM "{schema}".settings'))
    assert settings == {"tenant_id": tid, "display_name": "Acme Corp", "plan_tier": "PLAN_TIER_POOLED"}
    users = await fetch(db, f'SELECT email, role FROM "{schema}".users')
    assert users == [("boss@acme.example", "admin")]
    assert await fetch(db, f'SELECT version FROM "{schema}".schema_migrations') == [(1,)]

    async def seed() -> list[list[tuple]]:
        return [await fetch(db, f'SELECT * FROM "{schema}".{t} ORDER BY 1') for t in ("settings", "users")]

    seeded = await seed()
    before = await snapshot(db)
    assert (await acts.create_tenant_schema(pb.CreateTenantSchemaRequest(tenant_id=tid))).schema == schema
    assert await seed() == seeded
    assert await snapshot(db) == before
    # The users table generates its own ids.
    await db.execute(f"INSERT INTO \"{schema}\".users (email) VALUES ('x@acme.example')")

    await acts.drop_tenant_schema(pb.DropTenantSchemaRequest(tenant_id=tid))
    assert await fetch(db, "SELECT 1 FROM pg_namespace WHERE nspname = %s", schema) == []


async def test_concurrent_schema_creation_ends_with_one_schema(
    acts: Activities, db: psycopg.AsyncConnection
) -> None:
    tid = new_id()
    await provisioning(acts, tid)
    request = pb.CreateTenantSchemaRequest(tenant_id=tid)
    results = await asyncio.gather(*(acts.create_tenant_schema(request) for _ in range(4)))
    assert {r.schema for r in results} == {"tenant_" + tid.replace("-", "_")}
    assert len(await fetch(db, f'SELECT 1 FROM "{results[0].schema}".settings')) == 3


async def test_a_resource_recorded_for_another_tenant_conflicts(
    acts: Activities, db: psycopg.AsyncConnection
) -> None:
    owner, other = new_id(), new_id()
    await provisioning(acts, owner)
    await provisioning(acts, other)
    bucket = tenant_pb2.Resource(kind="s3_bucket", id=f"bucket-{owner}", domain="infra")
    duplicate = [bucket, tenant_pb2.Resource(kind="s3_bucket", id=f"bucket-{owner}", domain="infra")]
    await acts.record_resources(pb.RecordResourcesRequest(tenant_id=owner, resources=duplicate))
    assert len(await fetch(db, "SELECT 1 FROM registry.tenant_resources WHERE tenant_id = %s", owner)) == 1
    before = await snapshot(db)
    with pytest.raises(ApplicationError) as err:
        await acts.record_resources(pb.RecordResourcesRequest(tenant_id=other, resources=[bucket]))
    assert_permanent(err, "Conflict")
    assert await snapshot(db) == before

    with pytest.raises(ApplicationError) as err:
        await acts.record_resources(
            pb.RecordResourcesRequest(tenant_id=owner, resources=[tenant_pb2.Resource(kind="s3_bucket")])
        )
    assert_permanent(err, "InvalidArgument")


async def test_replicas_can_start_together(
    database_urls: dict[str, str], db: psycopg.AsyncConnection
) -> None:
    stores = [PostgresTenantData(database_urls["tenantdb"], max_connections=1) for _ in range(3)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    tables = await fetch(
        db, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'registry'"
    )
    assert {t for (t,) in tables} == {"tenants", "tenant_resources", "tenant_backups", "tenant_events"}


async def test_worker_needs_a_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TENANTRY_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="TENANTRY_DATABASE_URL"):
        await worker.run()
    monkeypatch.setenv("TENANTRY_DATABASE_URL", "mysql://nope")
    with pytest.raises(ConfigError, match="postgresql://"):
        await worker.run()


def test_worker_process_exits_clearly_without_a_database_url() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TENANTRY_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "services.tenantdb"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "TENANTRY_DATABASE_URL is not set" in done.stderr
