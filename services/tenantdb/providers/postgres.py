"""The tenant-data provider on PostgreSQL (psycopg 3, async pool).

The registry lives in schema `registry`; the gRPC facade reads it with its
own SQL, so its tables and columns are a contract. Each tenant gets a schema
`tenant_<id>`, dumped with pg_dump for its backup. Identifiers are composed
only with `sql.Identifier`; values only travel as parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import IO

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from libs.postgres import advisory_lock, connection_pool, open_pool
from services.tenantdb.providers import (
    ACTIVE,
    ACTIVE_FROM,
    DEPROVISIONED,
    DEPROVISIONED_FROM,
    DEPROVISIONING,
    DEPROVISIONING_FROM,
    PROVISION_FAILED,
    PROVISION_FAILED_FROM,
    PROVISIONING,
    REPROVISION_FROM,
    REPROVISION_SAME_WORKFLOW_FROM,
    RESTORABLE,
    RESUMED_FROM,
    SUSPENDED,
    SUSPENDED_FROM,
    BackupRecord,
    Conflict,
    EventRecord,
    NotFound,
    Rejected,
    ResourceRecord,
    TenantRecord,
    TenantSpec,
    pgdump,
    schema_name,
)

log = logging.getLogger(__name__)

# Advisory-lock keys are hashed from names so they cannot collide by accident
# with another component's numbers.
_MIGRATION_LOCK = "tenantry.tenantdb.migrate"
_SCHEMA_LOCK = "tenantry.tenantdb.schema:"
_RESOURCE_LOCK = "tenantry.tenantdb.resource:"

_REGISTRY_DDL = (
    "CREATE SCHEMA IF NOT EXISTS registry",
    """
    CREATE TABLE IF NOT EXISTS registry.tenants (
      tenant_id text PRIMARY KEY,
      display_name text NOT NULL,
      plan_tier text NOT NULL,
      domains text[] NOT NULL DEFAULT '{}',
      admin_email text NOT NULL,
      admin_given_name text NOT NULL DEFAULT '',
      admin_family_name text NOT NULL DEFAULT '',
      state text NOT NULL,
      current_step text NOT NULL DEFAULT '',
      failed_step text NOT NULL DEFAULT '',
      failure_reason text NOT NULL DEFAULT '',
      workflow_id text NOT NULL DEFAULT '',
      create_time timestamptz NOT NULL DEFAULT now(),
      update_time timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS registry.tenant_resources (
      tenant_id text NOT NULL REFERENCES registry.tenants ON DELETE CASCADE,
      kind text NOT NULL,
      resource_id text NOT NULL,
      domain text NOT NULL,
      create_time timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (tenant_id, kind, resource_id)
    )
    """,
    # RecordResources looks up who else holds a resource.
    "CREATE INDEX IF NOT EXISTS tenant_resources_kind_id ON registry.tenant_resources (kind, resource_id)",
    # Added with the grace period: set while a deletion waits, NULL otherwise.
    "ALTER TABLE registry.tenants ADD COLUMN IF NOT EXISTS purge_time timestamptz",
    # The backup taken before deprovisioning; kept when the resource records go.
    """
    CREATE TABLE IF NOT EXISTS registry.tenant_backups (
      tenant_id text NOT NULL REFERENCES registry.tenants ON DELETE CASCADE,
      kind text NOT NULL,
      uri text NOT NULL,
      size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
      sha256 text NOT NULL,
      create_time timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (tenant_id, uri)
    )
    """,
    # The audit log. No foreign key: a run's first events may be appended
    # before its MarkProvisioning creates the record.
    """
    CREATE TABLE IF NOT EXISTS registry.tenant_events (
      event_id bigserial PRIMARY KEY,
      tenant_id text NOT NULL,
      "time" timestamptz NOT NULL DEFAULT now(),
      kind text NOT NULL,
      step text NOT NULL DEFAULT '',
      state text NOT NULL DEFAULT '',
      actor text NOT NULL DEFAULT '',
      workflow_id text NOT NULL DEFAULT '',
      run_id text NOT NULL,
      detail text NOT NULL DEFAULT '',
      sequence integer NOT NULL CHECK (sequence >= 1),
      UNIQUE (run_id, sequence)
    )
    """,
    # The facade pages a tenant's events by event id.
    "CREATE INDEX IF NOT EXISTS tenant_events_tenant ON registry.tenant_events (tenant_id, event_id)",
)

# Version of the seed below; bump it with a new idempotent step when the seed grows.
SEED_VERSION = 1


class PostgresTenantData:
    """Registry and per-tenant schemas in one PostgreSQL database."""

    def __init__(self, dsn: str, *, max_connections: int = 10, open_timeout: float = 30.0) -> None:
        self._dsn = dsn
        self._pool = connection_pool(dsn, name="tenantdb", max_connections=max_connections)
        self._open_timeout = open_timeout
        self._closed = False

    async def open(self) -> None:
        await open_pool(
            self._pool, open_timeout=self._open_timeout, migration_lock=_MIGRATION_LOCK, ddl=_REGISTRY_DDL
        )
        log.info("registry schema ready")

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._pool.close()

    # -- registry -----------------------------------------------------------

    async def mark_provisioning(self, spec: TenantSpec, workflow_id: str) -> None:
        fields = {
            "display_name": spec.display_name,
            "plan_tier": spec.plan_tier,
            "domains": list(spec.domains),
            "admin_email": spec.admin_email,
            "admin_given_name": spec.admin_given_name,
            "admin_family_name": spec.admin_family_name,
            "state": PROVISIONING,
            "workflow_id": workflow_id,
        }
        async with self._pool.connection() as conn, conn.transaction():
            columns = ["tenant_id", *fields]
            insert = sql.SQL(
                "INSERT INTO registry.tenants ({}) VALUES ({}) ON CONFLICT (tenant_id) DO NOTHING RETURNING 1"
            ).format(
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            )
            cur = await conn.execute(insert, [spec.tenant_id, *fields.values()])
            if await cur.fetchone():
                log.info("tenant %s registered as %s by %s", spec.tenant_id, PROVISIONING, workflow_id)
                return
            state, current_workflow = await _locked_row(conn, spec.tenant_id, "state", "workflow_id")
            retry = state in REPROVISION_FROM
            repeat = current_workflow == workflow_id and state in REPROVISION_SAME_WORKFLOW_FROM
            if not (retry or repeat):
                raise Conflict(
                    f"tenant {spec.tenant_id} already exists in {state} (workflow {current_workflow!r}); "
                    f"only a tenant in {PROVISION_FAILED} can be provisioned again"
                )
            fields.update(current_step="", failed_step="", failure_reason="")
            if await _update(conn, spec.tenant_id, fields):
                log.info("tenant %s set to %s again by %s", spec.tenant_id, PROVISIONING, workflow_id)

    async def mark_provision_failed(self, tenant_id: str, failed_step: str, reason: str) -> None:
        await self._transition(
            tenant_id,
            PROVISION_FAILED,
            PROVISION_FAILED_FROM,
            {"failed_step": failed_step, "failure_reason": reason, "current_step": ""},
        )

    async def mark_active(self, tenant_id: str) -> None:
        await self._transition(tenant_id, ACTIVE, ACTIVE_FROM, {"current_step": ""})

    async def mark_deprovisioning(
        self, tenant_id: str, workflow_id: str, purge_time: datetime | None = None
    ) -> None:
        await self._transition(
            tenant_id,
            DEPROVISIONING,
            DEPROVISIONING_FROM,
            {"workflow_id": workflow_id, "purge_time": purge_time},
        )

    async def mark_deprovisioned(self, tenant_id: str, backups: Sequence[BackupRecord] = ()) -> None:
        # One record per object: a later entry for the same uri wins.
        unique = sorted({b.uri: b for b in backups}.values(), key=lambda b: b.uri)
        async with self._pool.connection() as conn, conn.transaction():
            await self._transition_in(
                conn, tenant_id, DEPROVISIONED, DEPROVISIONED_FROM, {"current_step": "", "purge_time": None}
            )
            added = 0
            for backup in unique:
                # A retried backup overwrites its object: the record follows the object.
                cur = await conn.execute(
                    "INSERT INTO registry.tenant_backups AS b (tenant_id, kind, uri, size_bytes, sha256)"
                    " VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (tenant_id, uri) DO UPDATE"
                    " SET kind = excluded.kind, size_bytes = excluded.size_bytes, sha256 = excluded.sha256,"
                    " create_time = now()"
                    " WHERE (b.kind, b.size_bytes, b.sha256)"
                    " IS DISTINCT FROM (excluded.kind, excluded.size_bytes, excluded.sha256)",
                    [tenant_id, backup.kind, backup.uri, backup.size_bytes, backup.sha256],
                )
                added += cur.rowcount
        if unique:
            log.info("tenant %s: %d backup object(s) kept, %d new or changed", tenant_id, len(unique), added)

    async def mark_suspended(self, tenant_id: str) -> None:
        await self._transition(tenant_id, SUSPENDED, SUSPENDED_FROM, {})

    async def mark_resumed(self, tenant_id: str) -> None:
        await self._transition(tenant_id, ACTIVE, RESUMED_FROM, {})

    async def mark_restored(self, tenant_id: str, state: str) -> None:
        if state not in RESTORABLE:
            raise Rejected(f"a tenant can be restored to {', '.join(sorted(RESTORABLE))}, not {state}")
        await self._transition(
            tenant_id, state, frozenset({DEPROVISIONING, state}), {"current_step": "", "purge_time": None}
        )

    async def _transition(
        self, tenant_id: str, target: str, allowed_from: frozenset[str], extra: dict[str, object]
    ) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await self._transition_in(conn, tenant_id, target, allowed_from, extra)

    async def _transition_in(
        self,
        conn: AsyncConnection,
        tenant_id: str,
        target: str,
        allowed_from: frozenset[str],
        extra: dict[str, object],
    ) -> None:
        """Moves the tenant to `target` inside the caller's transaction."""
        (state,) = await _locked_row(conn, tenant_id, "state")
        if state not in allowed_from:
            allowed = ", ".join(sorted(allowed_from - {target}))
            raise Conflict(f"tenant {tenant_id} is {state}; it can become {target} only from {allowed}")
        if await _update(conn, tenant_id, {"state": target, **extra}):
            log.info("tenant %s: %s -> %s", tenant_id, state, target)

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute("SELECT * FROM registry.tenants WHERE tenant_id = %s", [tenant_id])
            row = await cur.fetchone()
            if row is None:
                return None
            await cur.execute(
                "SELECT kind, resource_id, domain, create_time FROM registry.tenant_resources"
                " WHERE tenant_id = %s ORDER BY create_time, kind, resource_id",
                [tenant_id],
            )
            resources = tuple(ResourceRecord(**r) for r in await cur.fetchall())
            await cur.execute(
                "SELECT kind, uri, size_bytes, sha256, create_time FROM registry.tenant_backups"
                " WHERE tenant_id = %s ORDER BY kind, uri",
                [tenant_id],
            )
            backups = tuple(BackupRecord(**b) for b in await cur.fetchall())
        return TenantRecord(
            spec=TenantSpec(
                tenant_id=row["tenant_id"],
                display_name=row["display_name"],
                plan_tier=row["plan_tier"],
                domains=tuple(row["domains"]),
                admin_email=row["admin_email"],
                admin_given_name=row["admin_given_name"],
                admin_family_name=row["admin_family_name"],
            ),
            state=row["state"],
            current_step=row["current_step"],
            failed_step=row["failed_step"],
            failure_reason=row["failure_reason"],
            workflow_id=row["workflow_id"],
            create_time=row["create_time"],
            update_time=row["update_time"],
            resources=resources,
            purge_time=row["purge_time"],
            backups=backups,
        )

    async def record_resources(self, tenant_id: str, resources: Sequence[ResourceRecord]) -> None:
        # Sorted, so that two calls lock resources in the same order and cannot deadlock.
        unique = sorted({(r.kind, r.resource_id): r.domain for r in resources}.items())
        async with self._pool.connection() as conn, conn.transaction():
            await _locked_row(conn, tenant_id, "state", share=True)
            added = 0
            for (kind, resource_id), domain in unique:
                await advisory_lock(conn, f"{_RESOURCE_LOCK}{kind}/{resource_id}")
                cur = await conn.execute(
                    "SELECT tenant_id FROM registry.tenant_resources"
                    " WHERE kind = %s AND resource_id = %s AND tenant_id <> %s LIMIT 1",
                    [kind, resource_id, tenant_id],
                )
                owner = await cur.fetchone()
                if owner:
                    raise Conflict(f"{kind} {resource_id!r} is already recorded for tenant {owner[0]}")
                cur = await conn.execute(
                    "INSERT INTO registry.tenant_resources (tenant_id, kind, resource_id, domain)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [tenant_id, kind, resource_id, domain],
                )
                added += cur.rowcount
        log.info("tenant %s: %d resource(s) recorded, %d new", tenant_id, len(unique), added)

    async def delete_resources(self, tenant_id: str) -> None:
        # Only the resource records: the backup records outlive the tenant's resources.
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM registry.tenant_resources WHERE tenant_id = %s", [tenant_id]
            )
        log.info("tenant %s: %d resource record(s) deleted", tenant_id, cur.rowcount)

    # -- per-tenant schema --------------------------------------------------

    async def create_schema(self, tenant_id: str) -> str:
        name = schema_name(tenant_id)
        schema = sql.Identifier(name)
        async with self._pool.connection() as conn, conn.transaction():
            display_name, plan_tier, admin_email = await _locked_row(
                conn, tenant_id, "display_name", "plan_tier", "admin_email", share=True
            )
            # CREATE ... IF NOT EXISTS is not safe against a concurrent twin.
            await advisory_lock(conn, _SCHEMA_LOCK + name)
            for statement in _seed_ddl(schema):
                await conn.execute(statement)
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {}.settings (key, value) VALUES"
                    " ('tenant_id', %s), ('display_name', %s), ('plan_tier', %s)"
                    " ON CONFLICT (key) DO NOTHING"
                ).format(schema),
                [tenant_id, display_name, plan_tier],
            )
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {}.users (email, role) VALUES (%s, 'admin') ON CONFLICT (email) DO NOTHING"
                ).format(schema),
                [admin_email],
            )
            await conn.execute(
                sql.SQL(
                    "INSERT INTO {}.schema_migrations (version) VALUES (%s) ON CONFLICT DO NOTHING"
                ).format(schema),
                [SEED_VERSION],
            )
        log.info("tenant %s: schema %s ready", tenant_id, name)
        return name

    async def drop_schema(self, tenant_id: str) -> None:
        name = schema_name(tenant_id)
        async with self._pool.connection() as conn, conn.transaction():
            await advisory_lock(conn, _SCHEMA_LOCK + name)
            await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        log.info("tenant %s: schema %s dropped (if it existed)", tenant_id, name)

    async def dump_schema(self, tenant_id: str, out: IO[bytes]) -> None:
        name = schema_name(tenant_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [name])
            exists = await cur.fetchone() is not None
            server_version = conn.info.server_version
        if not exists:
            raise NotFound(f"tenant {tenant_id} has no schema {name} to back up")
        await pgdump.dump_schema(self._dsn, name, out, server_version=server_version)

    # -- audit log ----------------------------------------------------------

    async def append_events(self, tenant_id: str, events: Sequence[EventRecord]) -> int:
        if not events:
            return 0
        rows = [
            (
                tenant_id,
                e.time,
                e.kind,
                e.step,
                e.state,
                e.actor,
                e.workflow_id,
                e.run_id,
                e.detail,
                e.sequence,
            )
            for e in events
        ]
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            # In order, so event ids follow the batch; a retried batch adds nothing.
            await cur.executemany(
                "INSERT INTO registry.tenant_events"
                ' (tenant_id, "time", kind, step, state, actor, workflow_id, run_id, detail, sequence)'
                " VALUES (%s, coalesce(%s, now()), %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (run_id, sequence) DO NOTHING",
                rows,
            )
            added = max(cur.rowcount, 0)
        log.info("tenant %s: %d event(s) appended, %d new", tenant_id, len(rows), added)
        return added


def _seed_ddl(schema: sql.Identifier) -> list[sql.Composed]:
    """The minimal application schema every tenant starts with."""
    statements = [
        "CREATE SCHEMA IF NOT EXISTS {s}",
        """CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now())""",
        """CREATE TABLE IF NOT EXISTS {s}.settings (
             key text PRIMARY KEY,
             value text NOT NULL,
             update_time timestamptz NOT NULL DEFAULT now())""",
        """CREATE TABLE IF NOT EXISTS {s}.users (
             id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
             email text NOT NULL UNIQUE,
             role text NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
             created_at timestamptz NOT NULL DEFAULT now())""",
        """CREATE TABLE IF NOT EXISTS {s}.audit_log (
             id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
             at timestamptz NOT NULL DEFAULT now(),
             actor text NOT NULL,
             action text NOT NULL,
             detail jsonb NOT NULL DEFAULT '{{}}')""",
    ]
    return [sql.SQL(s).format(s=schema) for s in statements]


async def _locked_row(conn: AsyncConnection, tenant_id: str, *columns: str, share: bool = False) -> tuple:
    """Locks the tenant's registry row and returns `columns`; NotFound if there is none."""
    query = sql.SQL("SELECT {} FROM registry.tenants WHERE tenant_id = %s FOR {}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL("SHARE" if share else "UPDATE")
    )
    cur = await conn.execute(query, [tenant_id])
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"tenant {tenant_id} is not in the registry")
    return tuple(row)


async def _update(conn: AsyncConnection, tenant_id: str, fields: dict[str, object]) -> bool:
    """Sets `fields`, touching update_time only when a value really changes."""
    names = [sql.Identifier(k) for k in fields]
    query = sql.SQL(
        "UPDATE registry.tenants SET {sets}, update_time = now()"
        " WHERE tenant_id = %s AND ({cols}) IS DISTINCT FROM ({vals})"
    ).format(
        sets=sql.SQL(", ").join(sql.SQL("{} = {}").format(n, sql.Placeholder()) for n in names),
        cols=sql.SQL(", ").join(names),
        vals=sql.SQL(", ").join(sql.Placeholder() * len(names)),
    )
    values = list(fields.values())
    cur = await conn.execute(query, [*values, tenant_id, *values])
    return cur.rowcount > 0
