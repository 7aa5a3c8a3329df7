"""The identity activities on the `local` provider, against a real (embedded) PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import argon2
import psycopg
import pytest
from temporalio.exceptions import ApplicationError

from libs.backup import BackupStore
from libs.config import ConfigError
from libs.contracts import IDENTITY
from services.idp import export, providers, worker
from services.idp.activities import IdentityActivities
from services.idp.providers import IdentityExport, local
from services.idp.providers.local import LocalIdentityStore
from tenantry.idp.v1 import idp_pb2 as pb
from tenantry.tenant.v1 import tenant_pb2
from tests.integration.conftest import Activities, assert_permanent, fetch, new_id
from tests.support.identity_export import forbidden_keys, read_export

REPO = Path(__file__).resolve().parents[2]
INJECTION = 'a"; drop schema registry; --'
TABLES = ("realms", "clients", "users")


@pytest.fixture(scope="module")
async def provider(database_urls: dict[str, str]) -> AsyncIterator[LocalIdentityStore]:
    store = LocalIdentityStore(database_urls["idp"], max_connections=4)
    await store.open()
    yield store
    await store.close()


@pytest.fixture(scope="module")
def acts(provider: LocalIdentityStore) -> Activities:
    return Activities(IDENTITY, IdentityActivities(provider))


def admin(email: str = "boss@acme.example") -> tenant_pb2.AdminContact:
    return tenant_pb2.AdminContact(email=email, given_name="Ada", family_name="Boss")


async def one(db: psycopg.AsyncConnection, table: str, tenant_id: str) -> dict[str, Any] | None:
    assert table in TABLES
    cur = db.cursor(row_factory=psycopg.rows.dict_row)
    await cur.execute(f"SELECT * FROM idp_local.{table} WHERE tenant_id = %s", [tenant_id])
    rows = await cur.fetchall()
    assert len(rows) <= 1
    return rows[0] if rows else None


async def snapshot(db: psycopg.AsyncConnection) -> tuple:
    """Every row of the identity store, and the database's schemas."""
    tables = [await fetch(db, f"SELECT * FROM idp_local.{t} ORDER BY tenant_id") for t in TABLES]
    schemas = await fetch(db, "SELECT nspname FROM pg_namespace ORDER BY 1")
    return (*tables, schemas)


async def with_realm(acts: Activities, tenant_id: str) -> str:
    response = await acts.create_realm(
        pb.CreateRealmRequest(
            tenant_id=tenant_id, display_name="Acme Corp", domains=[f"{tenant_id}.example.com"]
        )
    )
    return response.realm_id


def test_every_rpc_is_bound_with_its_declared_name(acts: Activities) -> None:
    assert set(acts.fns) == {rpc.python_name for rpc in IDENTITY.rpcs.values()}
    names = {fn.__temporal_activity_definition.name for fn in acts.fns.values()}  # type: ignore[attr-defined]
    assert names == {rpc.name for rpc in IDENTITY.rpcs.values()}
    assert IDENTITY.task_queue == "tenantry-idp"


async def test_create_realm_is_idempotent_and_converges(
    acts: Activities, db: psycopg.AsyncConnection
) -> None:
    tid = new_id()
    request = pb.CreateRealmRequest(
        tenant_id=tid, display_name="Acme Corp", domains=["acme.example", "acme.test"]
    )
    first = await acts.create_realm(request)
    assert first.realm_id == f"tenant-{tid}"
    row = await one(db, "realms", tid)
    assert row is not None
    assert (row["realm_id"], row["display_name"], row["domains"], row["enabled"]) == (
        f"tenant-{tid}",
        "Acme Corp",
        ["acme.example", "acme.test"],
        True,
    )
    before = await snapshot(db)
    assert await acts.create_realm(request) == first
    assert await snapshot(db) == before

    renamed = pb.CreateRealmRequest(tenant_id=tid, display_name="Acme Corporation", domains=["acme.example"])
    assert (await acts.create_realm(renamed)).realm_id == first.realm_id
    row = await one(db, "realms", tid)
    assert row is not None and (row["display_name"], row["domains"]) == ("Acme Corporation", ["acme.example"])


async def test_a_domain_of_another_tenant_conflicts(acts: Activities, db: psycopg.AsyncConnection) -> None:
    owner, other = new_id(), new_id()
    await with_realm(acts, owner)
    before = await snapshot(db)
    with pytest.raises(ApplicationError) as err:
        await acts.create_realm(pb.CreateRealmRequest(tenant_id=other, domains=[f"{owner}.example.com"]))
    assert_permanent(err, "Conflict")
    assert await snapshot(db) == before


async def test_create_oidc_client(acts: Activities, db: psycopg.AsyncConnection) -> None:
    tid = new_id()
    request = pb.CreateOidcClientRequest(
        tenant_id=tid,
        redirect_uris=[f"https://{tid}.example.com/callback"],
        web_origins=[f"https://{tid}.example.com"],
    )
    with pytest.raises(ApplicationError) as err:
        await acts.create_oidc_client(request)
    assert_permanent(err, "NotFound")
    assert await one(db, "clients", tid) is None

    await with_realm(acts, tid)
    first = await acts.create_oidc_client(request)
    assert first.client_id == f"{tid}-app"
    row = await one(db, "clients", tid)
    assert row is not None
    assert row["client_id"] == f"{tid}-app"
    assert row["secret_hash"].startswith("sha256$")
    assert row["redirect_uris"] == [f"https://{tid}.example.com/callback"]
    assert row["web_origins"] == [f"https://{tid}.example.com"]

    before = await snapshot(db)
    assert await acts.create_oidc_client(request) == first
    assert await snapshot(db) == before  # the secret was not replaced

    changed = pb.CreateOidcClientRequest(tenant_id=tid, redirect_uris=["https://new.example/cb"])
    assert await acts.create_oidc_client(changed) == first
    row2 = await one(db, "clients", tid)
    assert row2 is not None
    assert (row2["redirect_uris"], row2["web_origins"]) == (["https://new.example/cb"], [])
    assert row2["secret_hash"] == row["secret_hash"]


async def test_create_admin_user(acts: Activities, db: psycopg.AsyncConnection) -> None:
    tid = new_id()
    request = pb.CreateAdminUserRequest(tenant_id=tid, admin=admin())
    with pytest.raises(ApplicationError) as err:
        await acts.create_admin_user(request)
    assert_permanent(err, "NotFound")
    assert await one(db, "users", tid) is None

    await with_realm(acts, tid)
    first = await acts.create_admin_user(request)
    row = await one(db, "users", tid)
    assert row is not None
    assert str(row["user_id"]) == first.user_id
    assert uuid.UUID(first.user_id)
    # The local store sends no set-password link: the welcome notice must not promise one.
    assert first.admin_setup == pb.ADMIN_SETUP_NO_SIGN_IN
    assert (row["email"], row["given_name"], row["family_name"]) == ("boss@acme.example", "Ada", "Boss")
    assert "realm-admin" in row["roles"]
    assert "UPDATE_PASSWORD" in row["required_actions"]
    # No password at all, only a marker no password matches: nobody was ever told one.
    assert row["password_hash"] == local.UNUSABLE_PASSWORD
    with pytest.raises(argon2.exceptions.InvalidHashError):
        argon2.PasswordHasher().verify(row["password_hash"], "")

    before = await snapshot(db)
    assert await acts.create_admin_user(request) == first
    # The email is the user name and compared without case.
    again = pb.CreateAdminUserRequest(tenant_id=tid, admin=admin("  Boss@ACME.example"))
    assert await acts.create_admin_user(again) == first
    assert await snapshot(db) == before


async def test_concurrent_creates_make_one_of_each(acts: Activities, db: psycopg.AsyncConnection) -> None:
    tid = new_id()
    realms = await asyncio.gather(*(with_realm(acts, tid) for _ in range(3)))
    clients = await asyncio.gather(
        *(acts.create_oidc_client(pb.CreateOidcClientRequest(tenant_id=tid)) for _ in range(3))
    )
    users = await asyncio.gather(
        *(acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=tid, admin=admin())) for _ in range(3))
    )
    assert len(set(realms)) == len({c.client_id for c in clients}) == len({u.user_id for u in users}) == 1
    for table in TABLES:
        assert len(await fetch(db, f"SELECT 1 FROM idp_local.{table} WHERE tenant_id = %s", tid)) == 1


async def test_deletes_are_idempotent_and_the_realm_takes_everything(
    acts: Activities, db: psycopg.AsyncConnection
) -> None:
    tid = new_id()
    await with_realm(acts, tid)
    await acts.create_oidc_client(pb.CreateOidcClientRequest(tenant_id=tid))
    await acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=tid, admin=admin()))
    await acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=tid, admin=admin("second@acme.example")))

    for _ in range(2):
        await acts.delete_admin_user(pb.DeleteAdminUserRequest(tenant_id=tid, email="BOSS@acme.example"))
        emails = await fetch(db, "SELECT email FROM idp_local.users WHERE tenant_id = %s", tid)
        assert emails == [("second@acme.example",)]
    for _ in range(2):
        await acts.delete_oidc_client(pb.DeleteOidcClientRequest(tenant_id=tid))
        assert await one(db, "clients", tid) is None
    await acts.create_oidc_client(pb.CreateOidcClientRequest(tenant_id=tid))
    for _ in range(2):
        await acts.delete_realm(pb.DeleteRealmRequest(tenant_id=tid))
        for table in TABLES:
            assert await one(db, table, tid) is None, table

    before = await snapshot(db)
    never = new_id()
    await acts.delete_admin_user(pb.DeleteAdminUserRequest(tenant_id=never, email="boss@acme.example"))
    await acts.delete_oidc_client(pb.DeleteOidcClientRequest(tenant_id=never))
    await acts.delete_realm(pb.DeleteRealmRequest(tenant_id=never))
    assert await snapshot(db) == before


async def test_secrets_are_never_stored_logged_or_returned(
    acts: Activities,
    db: psycopg.AsyncConnection,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    generated: list[str] = []
    real = local.secrets.token_urlsafe

    def recording(nbytes: int | None = None) -> str:
        value = real(nbytes)
        generated.append(value)
        return value

    monkeypatch.setattr(local.secrets, "token_urlsafe", recording)
    caplog.set_level(logging.DEBUG)
    tid = new_id()
    responses = [
        await with_realm(acts, tid),
        await acts.create_oidc_client(pb.CreateOidcClientRequest(tenant_id=tid)),
        await acts.create_oidc_client(pb.CreateOidcClientRequest(tenant_id=tid)),
        await acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=tid, admin=admin())),
        await acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=tid, admin=admin())),
    ]
    # A client secret per client call (the first one's is kept), long enough to
    # be a secret; the admin gets no password, so none is generated for it.
    assert len(generated) == 2
    assert all(len(value) >= 40 for value in generated)

    cells = await fetch(
        db,
        "SELECT row_to_json(r)::text FROM idp_local.realms r WHERE tenant_id = %s"
        " UNION ALL SELECT row_to_json(c)::text FROM idp_local.clients c WHERE tenant_id = %s"
        " UNION ALL SELECT row_to_json(u)::text FROM idp_local.users u WHERE tenant_id = %s",
        tid,
        tid,
        tid,
    )
    assert len(cells) == 3
    stored = "\n".join(text for (text,) in cells)
    assert caplog.records, "the activities log what they do"
    for value in generated:
        assert value not in stored
        assert value not in caplog.text
        assert all(value not in str(r) for r in responses)

    # What is stored is a hash of exactly what was generated.
    client, user = await one(db, "clients", tid), await one(db, "users", tid)
    assert client is not None and user is not None
    assert client["secret_hash"] == local.client_secret_hash(generated[0])
    assert user["password_hash"] == local.UNUSABLE_PASSWORD


async def test_access_is_switched_off_and_on_only_by_its_rpcs(
    acts: Activities, db: psycopg.AsyncConnection
) -> None:
    tid, neighbour = new_id(), new_id()
    await with_realm(acts, tid)
    await with_realm(acts, neighbour)
    states = []
    for _ in range(2):
        await acts.disable_tenant_access(pb.DisableTenantAccessRequest(tenant_id=tid))
        row = await one(db, "realms", tid)
        assert row is not None and row["enabled"] is False
        states.append(await snapshot(db))
    disabled = states[0]
    assert states[1] == disabled, "disabling twice is disabling once"
    # A repeated CreateRealm (a retried provisioning step) does not lift it.
    await with_realm(acts, tid)
    assert await snapshot(db) == disabled
    neighbours = await one(db, "realms", neighbour)
    assert neighbours is not None and neighbours["enabled"] is True
    states = []
    for _ in range(2):
        await acts.enable_tenant_access(pb.EnableTenantAccessRequest(tenant_id=tid))
        row = await one(db, "realms", tid)
        assert row is not None and row["enabled"] is True
        states.append(await snapshot(db))
    assert states[0] == states[1], "enabling twice is enabling once"


@pytest.fixture(scope="module")
def exporting(provider: LocalIdentityStore, backups: BackupStore) -> Activities:
    return Activities(IDENTITY, IdentityActivities(provider, backups=backups))


async def test_access_and_export_need_the_realm(exporting: Activities, db: psycopg.AsyncConnection) -> None:
    never = new_id()
    before = await snapshot(db)
    for rpc, request in (
        ("disable_tenant_access", pb.DisableTenantAccessRequest(tenant_id=never)),
        ("enable_tenant_access", pb.EnableTenantAccessRequest(tenant_id=never)),
        ("export_identity", pb.ExportIdentityRequest(tenant_id=never, backup_id="run-1")),
    ):
        with pytest.raises(ApplicationError) as err:
            await getattr(exporting, rpc)(request)
        assert_permanent(err, "NotFound")
    with pytest.raises(ApplicationError) as err:
        await exporting.export_identity(pb.ExportIdentityRequest(tenant_id=never, backup_id="../.."))
    assert_permanent(err, "InvalidArgument")
    assert await snapshot(db) == before


async def test_export_holds_the_realm_client_and_users_without_hashes(
    acts: Activities, exporting: Activities, db: psycopg.AsyncConnection, backups: BackupStore
) -> None:
    tid = new_id()
    await with_realm(acts, tid)
    await acts.create_oidc_client(
        pb.CreateOidcClientRequest(
            tenant_id=tid,
            redirect_uris=["https://b.example/cb", "https://a.example/cb"],
            web_origins=["https://a.example"],
        )
    )
    first = await acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=tid, admin=admin()))
    await acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=tid, admin=admin("second@acme.example")))
    await acts.disable_tenant_access(pb.DisableTenantAccessRequest(tenant_id=tid))

    response = await exporting.export_identity(pb.ExportIdentityRequest(tenant_id=tid, backup_id="run-1"))
    assert response.backup.uri == f"s3://{backups.settings.bucket}/tenants/{tid}/run-1/identity.json"
    text, document = read_export(response.backup, tid, "local")
    realm = document["realm"]
    assert (realm["id"], realm["display_name"], realm["domains"], realm["enabled"]) == (
        f"tenant-{tid}",
        "Acme Corp",
        [f"{tid}.example.com"],
        False,
    )
    [client] = document["clients"]
    assert client["client_id"] == f"{tid}-app"
    assert client["redirect_uris"] == ["https://a.example/cb", "https://b.example/cb"]
    assert client["web_origins"] == ["https://a.example"]
    assert [u["email"] for u in document["users"]] == ["boss@acme.example", "second@acme.example"]
    boss = document["users"][0]
    assert boss["id"] == first.user_id
    assert (boss["given_name"], boss["family_name"]) == ("Ada", "Boss")
    assert boss["required_actions"] == ["UPDATE_PASSWORD"]
    assert boss["roles"]["realm"] == ["realm-admin"]
    hashes = await fetch(
        db,
        "SELECT secret_hash FROM idp_local.clients WHERE tenant_id = %s"
        " UNION ALL SELECT password_hash FROM idp_local.users WHERE tenant_id = %s",
        tid,
        tid,
    )
    assert len(hashes) == 3
    for (value,) in hashes:
        assert value not in text
        assert value.split("$")[-1] not in text

    # The same backup id writes the same object again, with the same content but the time.
    again = await exporting.export_identity(pb.ExportIdentityRequest(tenant_id=tid, backup_id="run-1"))
    assert again.backup.uri == response.backup.uri
    _, second = read_export(again.backup, tid, "local")
    assert {**second, "exported_at": None} == {**document, "exported_at": None}


def test_an_export_drops_every_secret_like_key_a_provider_returns() -> None:
    leaky = IdentityExport(
        provider="test",
        realm={"id": "r", "attributes": {"smtp": {"password": "p1", "host": "h"}}},
        clients=[
            {"client_id": "b", "secret": "s1", "clientSecret": "s2", "attributes": {"client.secret.x": "s3"}},
            {"client_id": "a", "settings": {"client_secret": "s4", "keystorePassword": "s5"}},
        ],
        users=[
            {
                "username": "u",
                "credentials": [{"type": "password", "hashedSaltedValue": "s6", "salt": "s7"}],
                "identities": [{"access_token": "s8", "refresh_token": "s9", "connection": "c"}],
            }
        ],
        source={"components": [{"config": {"privateKey": ["s10"], "certificate": ["public"]}}]},
    )
    data = export.document("t-1", leaky, exported_at=datetime(2030, 1, 2, tzinfo=UTC))
    document = json.loads(data)
    assert forbidden_keys(document) == []
    for n in range(1, 11):
        assert f'"s{n}"' not in data.decode()
    assert [c["client_id"] for c in document["clients"]] == ["a", "b"]
    assert document["source"]["components"][0]["config"] == {"certificate": ["public"]}
    assert document["realm"]["attributes"] == {"smtp": {"host": "h"}}
    assert document["users"][0]["identities"] == [{"connection": "c"}]
    assert document["exported_at"] == "2030-01-02T00:00:00+00:00"


@pytest.mark.parametrize("bad_id", [INJECTION, "Upper", "ab", "a" * 33, "-abc", "abc-", "a_bc", ""])
async def test_bad_tenant_ids_are_rejected_by_every_rpc(
    acts: Activities, db: psycopg.AsyncConnection, bad_id: str
) -> None:
    requests = {
        "create_realm": pb.CreateRealmRequest(tenant_id=bad_id, display_name="x", domains=["x.example"]),
        "delete_realm": pb.DeleteRealmRequest(tenant_id=bad_id),
        "create_oidc_client": pb.CreateOidcClientRequest(tenant_id=bad_id),
        "delete_oidc_client": pb.DeleteOidcClientRequest(tenant_id=bad_id),
        "create_admin_user": pb.CreateAdminUserRequest(tenant_id=bad_id, admin=admin()),
        "delete_admin_user": pb.DeleteAdminUserRequest(tenant_id=bad_id, email="boss@acme.example"),
        "disable_tenant_access": pb.DisableTenantAccessRequest(tenant_id=bad_id),
        "enable_tenant_access": pb.EnableTenantAccessRequest(tenant_id=bad_id),
        "export_identity": pb.ExportIdentityRequest(tenant_id=bad_id, backup_id="run-1"),
    }
    assert set(requests) == set(acts.fns)
    before = await snapshot(db)
    for rpc, request in requests.items():
        with pytest.raises(ApplicationError) as err:
            await getattr(acts, rpc)(request)
        assert_permanent(err, "InvalidArgument")
    assert await snapshot(db) == before
    assert ("idp_local",) in before[-1]


async def test_admin_email_is_validated(acts: Activities, db: psycopg.AsyncConnection) -> None:
    tid = new_id()
    await with_realm(acts, tid)
    for email in ("", "no-at-sign", "@acme.example", "boss@"):
        with pytest.raises(ApplicationError) as err:
            await acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=tid, admin=admin(email)))
        assert_permanent(err, "InvalidArgument")
    assert await one(db, "users", tid) is None


async def test_replicas_can_start_together(
    database_urls: dict[str, str], db: psycopg.AsyncConnection
) -> None:
    stores = [LocalIdentityStore(database_urls["idp"], max_connections=1) for _ in range(3)]
    try:
        await asyncio.gather(*(s.open() for s in stores))
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    tables = await fetch(
        db, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'idp_local'"
    )
    assert {t for (t,) in tables} == set(TABLES)


async def test_worker_refuses_an_unknown_provider(monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> None:
    monkeypatch.setenv("TENANTRY_DATABASE_URL", postgres_url)
    monkeypatch.setenv("TENANTRY_IDP_PROVIDER", "bogus")
    with pytest.raises(ConfigError, match=r"TENANTRY_IDP_PROVIDER='bogus' is not one of local"):
        await worker.run()
    monkeypatch.delenv("TENANTRY_IDP_PROVIDER")
    assert isinstance(providers.from_env(), LocalIdentityStore)


def test_worker_process_exits_clearly_on_an_unknown_provider() -> None:
    env = {**os.environ, "TENANTRY_IDP_PROVIDER": "bogus", "TENANTRY_DATABASE_URL": "postgresql://unused/x"}
    done = subprocess.run(
        [sys.executable, "-m", "services.idp"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "TENANTRY_IDP_PROVIDER='bogus' is not one of local" in done.stderr
