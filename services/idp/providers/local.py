"""The `local` identity provider: an identity store in the registry database.

It keeps what a real IdP would keep, in schema `idp_local`: one realm per
tenant, the tenant application's confidential client and the tenant's users.
A realm's `enabled` flag says whether its users may sign in; it is set by
`disable_access` / `enable_access` only (a new realm starts enabled).
The client secret is generated here with `secrets` and stored only as its
SHA-256 hash; the plaintext lives in one local variable until it is hashed
and is never returned, logged or put in an error. The admin gets no password
at all, only a marker no password matches (`UNUSABLE_PASSWORD`).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from libs.postgres import advisory_lock, connection_pool, open_pool
from services.idp.providers import (
    ADMIN_ROLE,
    UPDATE_PASSWORD,
    AdminUser,
    Conflict,
    IdentityExport,
    NotFound,
)

log = logging.getLogger(__name__)

_MIGRATION_LOCK = "tenantry.idp.local.migrate"
_DOMAIN_LOCK = "tenantry.idp.local.domain:"

_DDL = (
    # The migration (services/tenantdb/migrate.py) makes the schema, owned by
    # this store's role, which may not create schemas: CREATE SCHEMA IF NOT
    # EXISTS would be refused even when the schema exists. Without the
    # migration (an administrator's DSN) the schema is made here.
    """
    DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'idp_local') THEN
        CREATE SCHEMA idp_local;
      END IF;
    END $$
    """,
    """
    CREATE TABLE IF NOT EXISTS idp_local.realms (
      tenant_id text PRIMARY KEY,
      realm_id text NOT NULL UNIQUE,
      display_name text NOT NULL,
      domains text[] NOT NULL DEFAULT '{}',
      enabled boolean NOT NULL DEFAULT true,
      created timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS idp_local.clients (
      tenant_id text PRIMARY KEY REFERENCES idp_local.realms ON DELETE CASCADE,
      client_id text NOT NULL UNIQUE,
      secret_hash text NOT NULL,
      redirect_uris text[] NOT NULL DEFAULT '{}',
      web_origins text[] NOT NULL DEFAULT '{}',
      created timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS idp_local.users (
      tenant_id text NOT NULL REFERENCES idp_local.realms ON DELETE CASCADE,
      email text NOT NULL,
      user_id uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
      given_name text NOT NULL DEFAULT '',
      family_name text NOT NULL DEFAULT '',
      password_hash text NOT NULL,
      required_actions text[] NOT NULL DEFAULT '{}',
      roles text[] NOT NULL DEFAULT '{}',
      created timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (tenant_id, email)
    )
    """,
)

# Entropy of generated secrets, in bytes (token_urlsafe makes ~1.3 characters per byte).
_CLIENT_SECRET_BYTES = 32
# The stored password of a user without one (see create_admin_user): no hash
# format starts with `!` (PHC strings start with `$`), so no password
# matches it, as with `!` in /etc/shadow.
UNUSABLE_PASSWORD = "!unusable"


def realm_id_of(tenant_id: str) -> str:
    return f"tenant-{tenant_id}"


def client_id_of(tenant_id: str) -> str:
    return f"{tenant_id}-app"


class LocalIdentityStore:
    """Realms, clients and users in PostgreSQL, schema `idp_local`."""

    sends_set_password_link = False  # no sign-in, nothing is sent

    def __init__(self, dsn: str, *, max_connections: int = 10, open_timeout: float = 30.0) -> None:
        self._pool = connection_pool(dsn, name="idp-local", max_connections=max_connections)
        self._open_timeout = open_timeout
        self._closed = False

    async def open(self) -> None:
        await open_pool(self._pool, open_timeout=self._open_timeout, migration_lock=_MIGRATION_LOCK, ddl=_DDL)
        log.info("idp_local schema ready")

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._pool.close()

    # -- realms -------------------------------------------------------------

    async def create_realm(self, tenant_id: str, display_name: str, domains: Sequence[str]) -> str:
        realm_id = realm_id_of(tenant_id)
        wanted = list(dict.fromkeys(domains))
        async with self._pool.connection() as conn, conn.transaction():
            # Sorted, so that two calls lock domains in the same order and cannot deadlock.
            for domain in sorted(wanted):
                await advisory_lock(conn, _DOMAIN_LOCK + domain)
            cur = await conn.execute(
                "SELECT tenant_id, d FROM idp_local.realms, unnest(domains) AS d"
                " WHERE tenant_id <> %s AND d = ANY(%s) LIMIT 1",
                [tenant_id, wanted],
            )
            taken = await cur.fetchone()
            if taken:
                raise Conflict(f"a domain of this tenant already belongs to the realm of tenant {taken[0]}")
            cur = await conn.execute(
                "INSERT INTO idp_local.realms (tenant_id, realm_id, display_name, domains)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id) DO NOTHING",
                [tenant_id, realm_id, display_name, wanted],
            )
            if cur.rowcount:
                log.info("tenant %s: realm %s created", tenant_id, realm_id)
                return realm_id
            cur = await conn.execute(
                "SELECT realm_id FROM idp_local.realms WHERE tenant_id = %s FOR UPDATE", [tenant_id]
            )
            row = await cur.fetchone()
            if row is None or row[0] != realm_id:
                raise Conflict(f"tenant {tenant_id} has a realm under another id")
            # `enabled` stays as it is: a suspended tenant stays suspended.
            cur = await conn.execute(
                "UPDATE idp_local.realms SET display_name = %s, domains = %s"
                " WHERE tenant_id = %s AND (display_name, domains) IS DISTINCT FROM (%s, %s)",
                [display_name, wanted, tenant_id, display_name, wanted],
            )
        log.info("tenant %s: realm %s exists%s", tenant_id, realm_id, ", updated" if cur.rowcount else "")
        return realm_id

    async def delete_realm(self, tenant_id: str) -> None:
        async with self._pool.connection() as conn:
            cur = await conn.execute("DELETE FROM idp_local.realms WHERE tenant_id = %s", [tenant_id])
        log.info("tenant %s: realm %s", tenant_id, "deleted" if cur.rowcount else "already gone")

    # -- access -------------------------------------------------------------

    async def disable_access(self, tenant_id: str) -> None:
        await self._set_enabled(tenant_id, False)

    async def enable_access(self, tenant_id: str) -> None:
        await self._set_enabled(tenant_id, True)

    async def _set_enabled(self, tenant_id: str, enabled: bool) -> None:
        done = "enabled" if enabled else "disabled"
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT enabled FROM idp_local.realms WHERE tenant_id = %s FOR UPDATE", [tenant_id]
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"tenant {tenant_id} has no realm")
            if row[0] == enabled:
                log.info("tenant %s: realm already %s", tenant_id, done)
                return
            await conn.execute(
                "UPDATE idp_local.realms SET enabled = %s WHERE tenant_id = %s", [enabled, tenant_id]
            )
        log.info("tenant %s: realm %s", tenant_id, done)

    # -- export ---------------------------------------------------------------

    async def export(self, tenant_id: str) -> IdentityExport:
        # Columns by name: the hashes are never even read.
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT realm_id, display_name, domains, enabled, created"
                " FROM idp_local.realms WHERE tenant_id = %s FOR SHARE",
                [tenant_id],
            )
            realm = await cur.fetchone()
            if realm is None:
                raise NotFound(f"tenant {tenant_id} has no realm")
            await cur.execute(
                "SELECT client_id, redirect_uris, web_origins, created"
                " FROM idp_local.clients WHERE tenant_id = %s",
                [tenant_id],
            )
            clients = await cur.fetchall()
            await cur.execute(
                "SELECT user_id, email, given_name, family_name, required_actions, roles, created"
                " FROM idp_local.users WHERE tenant_id = %s ORDER BY email",
                [tenant_id],
            )
            users = await cur.fetchall()
        return IdentityExport(
            provider="local",
            realm={
                "id": realm["realm_id"],
                "name": realm["realm_id"],
                "display_name": realm["display_name"],
                "domains": sorted(realm["domains"]),
                "enabled": realm["enabled"],
                "attributes": {},
                "created": _iso(realm["created"]),
            },
            clients=[
                {
                    "id": c["client_id"],
                    "client_id": c["client_id"],
                    "name": c["client_id"],
                    "enabled": True,
                    "protocol": "openid-connect",
                    "redirect_uris": sorted(c["redirect_uris"]),
                    "web_origins": sorted(c["web_origins"]),
                    "settings": {"public_client": False},
                    "created": _iso(c["created"]),
                }
                for c in clients
            ],
            users=[
                {
                    "id": str(u["user_id"]),
                    "username": u["email"],
                    "email": u["email"],
                    "given_name": u["given_name"],
                    "family_name": u["family_name"],
                    # The local store has no per-user switch (the realm's `enabled` is
                    # the one) and does not track verified emails.
                    "enabled": True,
                    "email_verified": None,
                    "attributes": {},
                    "required_actions": sorted(u["required_actions"]),
                    "groups": [],
                    "roles": {"realm": sorted(u["roles"]), "clients": {}},
                    "created": _iso(u["created"]),
                }
                for u in users
            ],
        )

    # -- the tenant application's client -------------------------------------

    async def create_client(
        self, tenant_id: str, redirect_uris: Sequence[str], web_origins: Sequence[str]
    ) -> str:
        client_id = client_id_of(tenant_id)
        uris, origins = list(redirect_uris), list(web_origins)
        # Made on every call (a SHA-256, microseconds), kept by the one that inserts.
        secret_hash = client_secret_hash(secrets.token_urlsafe(_CLIENT_SECRET_BYTES))
        async with self._pool.connection() as conn, conn.transaction():
            await _realm_exists(conn, tenant_id)
            await conn.execute(
                "INSERT INTO idp_local.clients"
                " (tenant_id, client_id, secret_hash, redirect_uris, web_origins)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant_id) DO NOTHING",
                [tenant_id, client_id, secret_hash, uris, origins],
            )
            cur = await conn.execute(
                "SELECT client_id FROM idp_local.clients WHERE tenant_id = %s FOR UPDATE", [tenant_id]
            )
            row = await cur.fetchone()
            if row is None or row[0] != client_id:
                raise Conflict(f"tenant {tenant_id} has a client under another id")
            await conn.execute(
                "UPDATE idp_local.clients SET redirect_uris = %s, web_origins = %s"
                " WHERE tenant_id = %s AND (redirect_uris, web_origins) IS DISTINCT FROM (%s, %s)",
                [uris, origins, tenant_id, uris, origins],
            )
        log.info("tenant %s: client %s ready", tenant_id, client_id)
        return client_id

    async def delete_client(self, tenant_id: str) -> None:
        async with self._pool.connection() as conn:
            cur = await conn.execute("DELETE FROM idp_local.clients WHERE tenant_id = %s", [tenant_id])
        log.info("tenant %s: client %s", tenant_id, "deleted" if cur.rowcount else "already gone")

    # -- the first admin ----------------------------------------------------

    async def create_admin_user(self, tenant_id: str, admin: AdminUser) -> str:
        email = _normal_email(admin.email)
        async with self._pool.connection() as conn, conn.transaction():
            await _realm_exists(conn, tenant_id)
            # No temporary password: the local store checks none (it has no
            # sign-in), and one made here would be shown to nobody (never
            # returned or mailed). Its argon2 hash cost ~20 ms of CPU on every
            # tenant's critical path to guard a secret nobody could use; no
            # password leaves nothing to steal or crack. The admin sets a
            # first one through UPDATE_PASSWORD, as after Keycloak's
            # set-password email.
            await conn.execute(
                "INSERT INTO idp_local.users (tenant_id, email, given_name, family_name,"
                " password_hash, required_actions, roles) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (tenant_id, email) DO NOTHING",
                [
                    tenant_id,
                    email,
                    admin.given_name,
                    admin.family_name,
                    UNUSABLE_PASSWORD,
                    [UPDATE_PASSWORD],
                    [ADMIN_ROLE],
                ],
            )
            # An existing user is reused: its password and pending actions
            # stay; it gets the admin role and the names asked for.
            cur = await conn.execute(
                "UPDATE idp_local.users SET given_name = %s, family_name = %s,"
                " roles = CASE WHEN %s = ANY(roles) THEN roles ELSE array_append(roles, %s) END"
                " WHERE tenant_id = %s AND email = %s RETURNING user_id",
                [admin.given_name, admin.family_name, ADMIN_ROLE, ADMIN_ROLE, tenant_id, email],
            )
            row = await cur.fetchone()
        assert row is not None  # inserted or there, and locked by this transaction
        log.info("tenant %s: admin user %s ready", tenant_id, row[0])
        return str(row[0])

    async def delete_admin_user(self, tenant_id: str, email: str) -> None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM idp_local.users WHERE tenant_id = %s AND email = %s RETURNING user_id",
                [tenant_id, _normal_email(email)],
            )
            row = await cur.fetchone()
        log.info("tenant %s: admin user %s", tenant_id, f"{row[0]} deleted" if row else "already gone")


def client_secret_hash(secret: str) -> str:
    """A client secret's stored form. The secret is 256 random bits, so a fast
    hash cannot be brute-forced; slow password hashing is for passwords."""
    return "sha256$" + hashlib.sha256(secret.encode()).hexdigest()


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def _normal_email(email: str) -> str:
    """Emails are user names, compared case-insensitively (as Keycloak and Auth0 do)."""
    return email.strip().lower()


async def _realm_exists(conn: AsyncConnection, tenant_id: str) -> None:
    """Locks the tenant's realm against deletion for this transaction; NotFound if there is none."""
    cur = await conn.execute("SELECT 1 FROM idp_local.realms WHERE tenant_id = %s FOR SHARE", [tenant_id])
    if await cur.fetchone() is None:
        raise NotFound(f"tenant {tenant_id} has no realm; create the realm first")
