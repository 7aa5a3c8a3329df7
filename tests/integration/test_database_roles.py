"""Least privilege in PostgreSQL: each process's role is refused what it does not need.

The roles are the ones the dev stack makes (services/tenantdb/migrate.py
through libs/devstack/database_roles.py), on the session's real server,
which asks every role but the superuser for its password.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict
from temporalio.exceptions import ApplicationError

from libs.backup import BackupStore
from libs.contracts import IDENTITY, TENANT_DATA
from libs.devstack import database_roles
from services.idp.activities import IdentityActivities
from services.idp.providers.local import LocalIdentityStore
from services.tenantdb import migrate
from services.tenantdb.activities import TenantDataActivities
from services.tenantdb.providers.postgres import PostgresTenantData
from services.tenantdb.providers.secrets import TenantCredentials, secret_name
from tenantry.tenantdb.v1 import tenantdb_pb2 as pb
from tests.integration.conftest import Activities, assert_permanent, fetch, new_id, provision_identity
from tests.integration.test_tenantdb import tenant

REGISTRY_TABLES = ("tenants", "tenant_resources", "tenant_backups", "tenant_events")
IDENTITY_TABLES = ("realms", "clients", "users")


@pytest.fixture(scope="module")
async def tenantdb(database_urls: dict[str, str]) -> AsyncIterator[PostgresTenantData]:
    store = PostgresTenantData(database_urls["tenantdb"], max_connections=4)
    await store.open()
    yield store
    await store.close()


@pytest.fixture(scope="module")
def acts(tenantdb: PostgresTenantData, backups: BackupStore, database_urls: dict[str, str]) -> Activities:
    credentials = TenantCredentials(database_urls["tenantdb"])
    return Activities(TENANT_DATA, TenantDataActivities(tenantdb, backups=backups, credentials=credentials))


@pytest.fixture(scope="module")
async def identity(database_urls: dict[str, str]) -> AsyncIterator[Activities]:
    store = LocalIdentityStore(database_urls["idp"], max_connections=2)
    await store.open()
    yield Activities(IDENTITY, IdentityActivities(store))
    await store.close()


async def connect(dsn: str) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=True)


async def refused(dsn: str, query: str | sql.Composed, *params: object) -> None:
    """`query` on a fresh session of `dsn` is refused for want of a privilege."""
    async with await connect(dsn) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            await conn.execute(query, params or None)


async def with_schema(acts: Activities, tid: str) -> str:
    await acts.mark_provisioning(pb.MarkProvisioningRequest(tenant=tenant(tid), workflow_id=f"p-{tid}"))
    return (await acts.create_tenant_schema(pb.CreateTenantSchemaRequest(tenant_id=tid))).schema


def stored_credentials(tid: str) -> dict[str, object]:
    value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_name(tid))["SecretString"]
    return dict(json.loads(value))


def tenant_dsn(credentials: dict[str, object], admin_url: str) -> str:
    """The DSN the tenant's application builds from its secret (here the server's socket stands in)."""
    assert credentials["host"] == conninfo_to_dict(admin_url)["host"]
    return database_roles.role_url(admin_url, str(credentials["username"]), str(credentials["password"]))


async def test_the_facade_reads_the_registry_and_cannot_change_it(
    acts: Activities, database_urls: dict[str, str]
) -> None:
    tid = new_id()
    await with_schema(acts, tid)
    api = database_urls["tenant_api"]
    async with await connect(api) as conn:
        for table in REGISTRY_TABLES:  # made by the worker's role after the migration
            await conn.execute(sql.SQL("SELECT * FROM registry.{} LIMIT 1").format(sql.Identifier(table)))
        assert await fetch(conn, "SELECT state FROM registry.tenants WHERE tenant_id = %s", tid)
    await refused(
        api,
        "INSERT INTO registry.tenant_events (tenant_id, kind, run_id, sequence) VALUES ('x', 'k', 'r', 1)",
    )
    await refused(api, "UPDATE registry.tenants SET state = 'STATE_ACTIVE' WHERE tenant_id = %s", tid)
    await refused(api, "DELETE FROM registry.tenant_resources WHERE tenant_id = %s", tid)
    await refused(api, "CREATE TABLE registry.mine (x int)")
    await refused(api, "CREATE TABLE public.mine (x int)")
    await refused(api, "CREATE SCHEMA mine")


async def test_the_facade_cannot_read_the_identity_store_or_a_tenant_schema(
    acts: Activities, identity: Activities, database_urls: dict[str, str]
) -> None:
    tid = new_id()
    schema = await with_schema(acts, tid)
    await provision_identity(identity, tid)
    for table in IDENTITY_TABLES:
        await refused(database_urls["tenant_api"], f"SELECT * FROM idp_local.{table}")
    await refused(database_urls["tenant_api"], f'SELECT * FROM "{schema}".settings')
    await refused(database_urls["tenant_api"], f'SELECT * FROM "{schema}".users')


async def test_the_identity_store_sees_only_its_own_schema(
    acts: Activities, identity: Activities, database_urls: dict[str, str]
) -> None:
    tid = new_id()
    schema = await with_schema(acts, tid)
    idp = database_urls["idp"]
    for table in REGISTRY_TABLES:
        await refused(idp, f"SELECT * FROM registry.{table}")
    await refused(idp, f'SELECT * FROM "{schema}".settings')
    await refused(idp, "CREATE SCHEMA mine")
    # Nor does the tenant-data worker read the identity store's hashes.
    await provision_identity(identity, tid)
    await refused(database_urls["tenantdb"], "SELECT password_hash FROM idp_local.users")


async def test_the_worker_may_not_change_the_platform_roles(database_urls: dict[str, str]) -> None:
    """CREATEROLE covers only the roles it made: the tenants'."""
    for role in ("tenantry_api", "tenantry_idp", "postgres"):
        await refused(
            database_urls["tenantdb"], sql.SQL("ALTER ROLE {} PASSWORD NULL").format(sql.Identifier(role))
        )
        await refused(database_urls["tenantdb"], sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def test_a_tenant_role_uses_its_own_schema_and_nothing_else(
    acts: Activities, identity: Activities, tenantdb: PostgresTenantData, postgres_url: str
) -> None:
    tid, other = new_id(), new_id()
    schema, other_schema = await with_schema(acts, tid), await with_schema(acts, other)
    await provision_identity(identity, tid)
    credentials = stored_credentials(tid)
    assert credentials["username"] == schema and credentials["schema"] == schema
    own = tenant_dsn(credentials, postgres_url)
    async with await connect(own) as conn:
        assert dict(await fetch(conn, f'SELECT key, value FROM "{schema}".settings'))["tenant_id"] == tid
        await conn.execute(f'CREATE TABLE "{schema}".orders (id serial PRIMARY KEY, item text NOT NULL)')
        await conn.execute(f"INSERT INTO \"{schema}\".orders (item) VALUES ('tea')")
        await conn.execute(f"INSERT INTO \"{schema}\".users (email) VALUES ('new@acme.example')")
        assert await fetch(conn, f'SELECT item FROM "{schema}".orders') == [("tea",)]
    for query in (
        f'SELECT * FROM "{other_schema}".settings',
        f'CREATE TABLE "{other_schema}".mine (x int)',
        "SELECT * FROM registry.tenants",
        "SELECT * FROM registry.tenant_events",
        "SELECT * FROM idp_local.users",
        "CREATE TABLE public.mine (x int)",
        "CREATE TEMPORARY TABLE mine (x int)",
        "CREATE SCHEMA mine",
        f'ALTER TABLE "{schema}".settings ADD COLUMN x int',  # the seed is the worker's
    ):
        await refused(own, query)
    # The server checks the password: the name alone opens nothing.
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        await connect(database_roles.role_url(postgres_url, schema, "not-the-password"))

    # The backup (pg_dump as the worker, a member of the tenant's role) holds what the tenant made.
    dump = io.BytesIO()
    await tenantdb.dump_schema(tid, dump)
    text = gzip.decompress(dump.getvalue()).decode()
    assert f'"{schema}".orders' in text or f"{schema}.orders" in text
    assert "tea" in text


async def test_dropping_the_schema_drops_the_role_and_its_secret(
    acts: Activities, db: psycopg.AsyncConnection, postgres_url: str
) -> None:
    tid = new_id()
    schema = await with_schema(acts, tid)
    own = tenant_dsn(stored_credentials(tid), postgres_url)
    session = await connect(own)  # an application still connected
    await session.execute(f'CREATE TABLE "{schema}".orders (id int)')
    assert await fetch(db, "SELECT kind FROM registry.tenant_resources WHERE tenant_id = %s", tid) == [
        ("db_credentials",)
    ]
    for _ in range(2):  # idempotent
        await acts.drop_tenant_schema(pb.DropTenantSchemaRequest(tenant_id=tid))
    assert await fetch(db, "SELECT 1 FROM pg_roles WHERE rolname = %s", schema) == []
    assert await fetch(db, "SELECT 1 FROM registry.tenant_resources WHERE tenant_id = %s", tid) == []
    names = [s["Name"] for s in boto3.client("secretsmanager").list_secrets()["SecretList"]]
    assert secret_name(tid) not in names
    with pytest.raises(psycopg.OperationalError):
        await session.execute("SELECT 1")  # its session was ended
    await session.close()
    with pytest.raises(psycopg.OperationalError):
        await connect(own)


async def test_a_retried_schema_creation_keeps_one_role_and_the_stored_password(
    acts: Activities, db: psycopg.AsyncConnection, postgres_url: str
) -> None:
    tid = new_id()
    schema = await with_schema(acts, tid)
    first = stored_credentials(tid)
    results = await asyncio.gather(
        *(acts.create_tenant_schema(pb.CreateTenantSchemaRequest(tenant_id=tid)) for _ in range(3))
    )
    assert {r.schema for r in results} == {schema}
    assert stored_credentials(tid) == first
    assert len(await fetch(db, "SELECT 1 FROM pg_roles WHERE rolname = %s", schema)) == 1
    tagged = boto3.client("secretsmanager").describe_secret(SecretId=secret_name(tid))["Tags"]
    assert {"Key": "tenantry:tenant-id", "Value": tid} in tagged
    async with await connect(tenant_dsn(first, postgres_url)) as conn:
        assert await fetch(conn, "SELECT current_user") == [(schema,)]
    # Neither the password nor its verifier is in what the activity returns.
    assert str(first["password"]) not in str(results)


async def test_many_tenants_made_and_removed_at_once_never_contend(
    acts: Activities, postgres_url: str
) -> None:
    # Each tenant's role joins the tenants' group instead of being granted
    # CONNECT itself: no shared catalog row is rewritten per tenant, so
    # concurrent provisionings never fail with "tuple concurrently updated".
    tids = [new_id() for _ in range(8)]
    for tid in tids:
        await acts.mark_provisioning(pb.MarkProvisioningRequest(tenant=tenant(tid), workflow_id=f"p-{tid}"))
    await asyncio.gather(
        *(acts.create_tenant_schema(pb.CreateTenantSchemaRequest(tenant_id=tid)) for tid in tids)
    )
    roles = []
    for tid in tids:
        async with await connect(tenant_dsn(stored_credentials(tid), postgres_url)) as conn:
            [(role,)] = await fetch(conn, "SELECT current_user")
            roles.append(role)
    await asyncio.gather(
        *(acts.drop_tenant_schema(pb.DropTenantSchemaRequest(tenant_id=tid)) for tid in tids)
    )
    async with await connect(postgres_url) as conn:
        assert await fetch(conn, "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", roles) == []


async def test_a_role_of_that_name_not_made_by_the_worker_is_a_conflict(
    acts: Activities, db: psycopg.AsyncConnection
) -> None:
    tid = new_id()
    schema = "tenant_" + tid.replace("-", "_")
    await db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(schema)))
    try:
        await acts.mark_provisioning(pb.MarkProvisioningRequest(tenant=tenant(tid), workflow_id=f"p-{tid}"))
        with pytest.raises(ApplicationError) as err:
            await acts.create_tenant_schema(pb.CreateTenantSchemaRequest(tenant_id=tid))
        assert_permanent(err, "Conflict")
        with pytest.raises(ApplicationError) as err:
            await acts.drop_tenant_schema(pb.DropTenantSchemaRequest(tenant_id=tid))
        assert_permanent(err, "Conflict")
        assert await fetch(db, "SELECT 1 FROM pg_roles WHERE rolname = %s", schema) == [(1,)]
    finally:
        await db.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(schema)))


async def test_the_migration_is_idempotent_and_safe_when_several_run_at_once(
    database_urls: dict[str, str], postgres_url: str, state_dir: Path, db: psycopg.AsyncConnection
) -> None:
    """On a database of its own (the roles are the cluster's, so the same passwords)."""
    name = f"migrate_{uuid.uuid4().hex[:8]}"
    await db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin = str(postgres_url).replace("/postgres?", f"/{name}?")
    passwords = {
        role: database_roles.password(state_dir / "secrets", role) for role in database_roles.ROLES.values()
    }
    try:
        await asyncio.gather(*(migrate.migrate(admin, passwords) for _ in range(3)))
        await migrate.migrate(admin, passwords)
        urls = {p: database_roles.role_url(admin, r, passwords[r]) for p, r in database_roles.ROLES.items()}
        store = PostgresTenantData(urls["tenantdb"], max_connections=1)
        await store.open()
        await store.close()
        await migrate.migrate(admin, passwords)  # with the tables there
        async with await connect(urls["tenant_api"]) as conn:
            assert await fetch(conn, "SELECT count(*) FROM registry.tenants") == [(0,)]
        await refused(urls["tenant_api"], "DELETE FROM registry.tenants")
        async with await connect(admin) as conn:
            owners = await fetch(
                conn,
                "SELECT nspname, nspowner::regrole::text FROM pg_namespace"
                " WHERE nspname IN ('registry', 'idp_local') ORDER BY 1",
            )
        assert owners == [("idp_local", "tenantry_idp"), ("registry", "tenantry_tenantdb")]
        assert await fetch(
            db, "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'tenantry\\_%%' ORDER BY 1"
        ) == [
            ("tenantry_api", True),
            ("tenantry_idp", True),
            ("tenantry_tenantdb", True),
            ("tenantry_tenants", False),  # the group every tenant's role connects through
        ]
    finally:
        await db.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
