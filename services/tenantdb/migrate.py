"""The database's roles, schemas and grants: one role per process that uses PostgreSQL.

Run once per release, before the processes start, with an administrator's
DSN (`python -m services.tenantdb.migrate`; in production a pre-install or
pre-upgrade Job). It is idempotent and takes an advisory lock, so running it
twice, or two at once, ends in the same state.

- `tenantry_tenantdb` (the tenant-data worker) owns schema `registry` and
  every tenant schema, may create schemas and roles (one per tenant, see
  services/tenantdb/providers/postgres.py), and creates its tables itself when
  it starts.
- `tenantry_api` (the gRPC facade) may read the registry and nothing else: no
  write, no identity store, no tenant schema.
- `tenantry_idp` (the local identity store) owns schema `idp_local` and sees
  nothing else.

The orchestrator and the other workers get no role: they never connect.
PUBLIC loses CONNECT and TEMPORARY on the database and every right on schema
`public`, so a role has only what is granted here (or, for a tenant's role,
by the tenant-data worker). The tables stay in the named schemas they were
already in; none lives in `public`.

Passwords come from the environment (a secret store in production, files
under `.state/secrets/` in dev, see libs/devstack/database_roles.py) and are
set as SCRAM verifiers on every run, so changing one rotates it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
from psycopg import AsyncConnection, sql

from libs import config
from libs.config import ConfigError
from libs.lifecycle import tenant_id_naming
from libs.postgres import advisory_lock, role_password

log = logging.getLogger(__name__)

ADMIN_URL = "TENANTRY_DATABASE_ADMIN_URL"
_LOCK = "tenantry.database.migrate"
# CREATEROLE before PostgreSQL 16 may change any role but superusers, so the
# per-tenant roles would not be contained.
MIN_SERVER_VERSION = 160000

REGISTRY_SCHEMA = "registry"
IDENTITY_SCHEMA = "idp_local"


@dataclass(frozen=True)
class Role:
    """A process's role: its name and the variable that holds its password for the migration."""

    process: str
    name: str
    password_variable: str


TENANTDB = Role("tenantdb", "tenantry_tenantdb", "TENANTRY_DATABASE_PASSWORD_TENANTDB")
TENANT_API = Role("tenant_api", "tenantry_api", "TENANTRY_DATABASE_PASSWORD_TENANT_API")
IDP = Role("idp", "tenantry_idp", "TENANTRY_DATABASE_PASSWORD_IDP")
ROLES = (TENANTDB, TENANT_API, IDP)
# Every tenant's role is a member of this one, which may connect: granting
# CONNECT to each tenant role would rewrite the database's one catalog row per
# tenant, and concurrent provisionings then fail with "tuple concurrently updated".
TENANT_GROUP = "tenantry_tenants"


async def migrate(admin_dsn: str, passwords: Mapping[str, str]) -> None:
    """Creates or updates the roles, their schemas and grants; `passwords` by role name."""
    missing = [role.name for role in ROLES if not passwords.get(role.name)]
    if missing:
        raise ConfigError(f"no password for the database role(s) {', '.join(missing)}")
    async with await AsyncConnection.connect(admin_dsn, autocommit=True) as conn:
        if conn.info.server_version < MIN_SERVER_VERSION:
            raise ConfigError(
                f"PostgreSQL {conn.info.server_version} is too old for per-tenant roles: 16 or newer"
            )
        async with conn.transaction():
            await advisory_lock(conn, _LOCK)
            for role in ROLES:
                await _login_role(conn, role.name, passwords[role.name])
            await _grants(conn)
    log.info("database roles ready: %s", ", ".join(role.name for role in ROLES))


async def _login_role(conn: AsyncConnection, name: str, password: str) -> None:
    role = sql.Identifier(name)
    cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name])
    if await cur.fetchone() is None:
        await conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
    # Whatever the role had, it gets exactly these attributes (CREATEROLE is the tenant-data worker's).
    attributes = "NOSUPERUSER NOCREATEDB NOREPLICATION NOBYPASSRLS LOGIN INHERIT"
    attributes += " CREATEROLE" if name == TENANTDB.name else " NOCREATEROLE"
    await conn.execute(
        sql.SQL("ALTER ROLE {} {} {}").format(role, sql.SQL(attributes), role_password(password))
    )


async def _grants(conn: AsyncConnection) -> None:
    cur = await conn.execute("SELECT current_database()")
    row = await cur.fetchone()
    assert row is not None
    database = sql.Identifier(row[0])
    tenantdb, api, idp = (sql.Identifier(r.name) for r in (TENANTDB, TENANT_API, IDP))
    tenants = sql.Identifier(TENANT_GROUP)
    cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [TENANT_GROUP])
    if await cur.fetchone() is None:
        await conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(tenants))
    statements: list[sql.SQL | sql.Composed] = [
        # Nobody but the roles granted below connects; nobody gets `public`.
        sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(database),
        sql.SQL("REVOKE ALL ON SCHEMA public FROM PUBLIC"),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(database, api, idp),
        # CREATE for the tenant schemas; the grant option to let each tenant's role connect.
        sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(database, tenantdb),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, tenants),
        # The worker adds each tenant's role to the group (and removes it), nothing more.
        sql.SQL("GRANT {} TO {} WITH ADMIN TRUE, INHERIT FALSE, SET FALSE").format(tenants, tenantdb),
        *_owned_schema(REGISTRY_SCHEMA, tenantdb),
        *_owned_schema(IDENTITY_SCHEMA, idp),
        sql.SQL("GRANT USAGE ON SCHEMA registry TO {}").format(api),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA registry TO {}").format(api),
        # The tables the worker adds in later releases are readable by the facade too.
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA registry GRANT SELECT ON TABLES TO {}"
        ).format(tenantdb, api),
    ]
    for statement in statements:
        await conn.execute(statement)
    # Tables made before the roles existed (by an administrator's DSN) pass to their schema's owner.
    await _reassign_tables(conn, REGISTRY_SCHEMA, TENANTDB.name)
    await _reassign_functions(conn, REGISTRY_SCHEMA, TENANTDB.name)
    await _reassign_tables(conn, IDENTITY_SCHEMA, IDP.name)
    cur = await conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'tenant\\_%%' AND nspowner <> %s::regrole",
        [TENANTDB.name],
    )
    for (schema,) in await cur.fetchall():
        if tenant_id_naming(schema.replace("_", "-"), prefix="tenant-") is None:
            continue  # not a tenant's schema: not ours to take
        await conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(sql.Identifier(schema), tenantdb))
        await _reassign_tables(conn, schema, TENANTDB.name)


def _owned_schema(schema: str, owner: sql.Identifier) -> list[sql.Composed]:
    name = sql.Identifier(schema)
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(name, owner),
        sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(name, owner),
    ]


async def _reassign_tables(conn: AsyncConnection, schema: str, owner: str) -> None:
    # A table's indexes and owned sequences follow it.
    cur = await conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm') AND c.relowner <> %s::regrole",
        [schema, owner],
    )
    for (table,) in await cur.fetchall():
        await conn.execute(
            sql.SQL("ALTER TABLE {}.{} OWNER TO {}").format(
                sql.Identifier(schema), sql.Identifier(table), sql.Identifier(owner)
            )
        )


async def _reassign_functions(conn: AsyncConnection, schema: str, owner: str) -> None:
    # The registry's trigger functions, should an administrator's DSN have made them.
    cur = await conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = %s AND p.proowner <> %s::regrole",
        [schema, owner],
    )
    for (signature,) in await cur.fetchall():
        await conn.execute(
            sql.SQL("ALTER FUNCTION {} OWNER TO {}").format(sql.SQL(signature), sql.Identifier(owner))
        )


def passwords_from_env() -> dict[str, str]:
    """Each role's password from its variable (TENANTRY_DATABASE_PASSWORD_<PROCESS>)."""
    return {role.name: config.required(role.password_variable) for role in ROLES}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    admin = config.required(ADMIN_URL)
    try:
        asyncio.run(migrate(admin, passwords_from_env()))
    except psycopg.OperationalError as err:
        # The DSN may hold a password: name the setting, not its value.
        raise SystemExit(f"cannot migrate the database in {ADMIN_URL}: {type(err).__name__}") from None


if __name__ == "__main__":
    main()
