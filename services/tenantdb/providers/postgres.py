"""The tenant-data provider on PostgreSQL (psycopg 3, async pool).

The registry lives in schema `registry`; the gRPC facade reads it with its
own SQL, so its tables and columns are a contract. Each tenant gets a schema
`tenant_<id>`, dumped with pg_dump for its backup, and a role of the same
name that may use that schema and nothing else (its password is set as a
SCRAM verifier, so it never reaches the server). The worker connects as its
own role (services/tenantdb/migrate.py). Identifiers are composed only with
`sql.Identifier`; values only travel as parameters (or, in role DDL, which
takes none, as `sql.Literal` of a verifier).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import IO, Any

from psycopg import AsyncConnection, errors, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from libs import tracing
from libs.lifecycle import REGISTRY_CHANGES_CHANNEL
from libs.postgres import advisory_lock, connection_pool, open_pool, role_password
from services.tenantdb.migrate import TENANT_GROUP
from services.tenantdb.providers import (
    ACTIVE,
    ACTIVE_FROM,
    CREDENTIALS_KIND,
    DEPROVISION_FAILED,
    DEPROVISION_FAILED_FROM,
    DEPROVISIONED,
    DEPROVISIONED_FROM,
    DEPROVISIONING,
    DEPROVISIONING_FROM,
    DOMAIN_HOLDING,
    PROVISION_FAILED,
    PROVISION_FAILED_FROM,
    PROVISIONING,
    REPROVISION_FROM,
    REPROVISION_SAME_WORKFLOW_FROM,
    RESTORABLE,
    RESUMED_FROM,
    RESUMING,
    RESUMING_FROM,
    SUSPENDED,
    SUSPENDED_FROM,
    SUSPENDING,
    SUSPENDING_FROM,
    BackupRecord,
    Conflict,
    EventRecord,
    LeftoverRecord,
    NotFound,
    OperationRecord,
    Rejected,
    ResourceRecord,
    RunStepsRecord,
    TenantRecord,
    TenantSpec,
    pgdump,
    role_name,
    schema_name,
)

log = logging.getLogger(__name__)

# Advisory-lock keys are hashed from names so they cannot collide by accident
# with another component's numbers.
_MIGRATION_LOCK = "tenantry.tenantdb.migrate"
_SCHEMA_LOCK = "tenantry.tenantdb.schema:"
_RESOURCE_LOCK = "tenantry.tenantdb.resource:"
_DOMAIN_LOCK = "tenantry.tenantdb.domain:"

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
    # Added with failure-proof runs: the run that owns the record (its first
    # mark wrote it), what a failed run could not remove, the last run and
    # how it ended (Tenant.last_operation as proto JSON), and the state an
    # undelete of a deletion that stopped puts back.
    "ALTER TABLE registry.tenants ADD COLUMN IF NOT EXISTS run_id text NOT NULL DEFAULT ''",
    "ALTER TABLE registry.tenants ADD COLUMN IF NOT EXISTS leftover_resources jsonb NOT NULL DEFAULT '[]'",
    "ALTER TABLE registry.tenants ADD COLUMN IF NOT EXISTS last_operation jsonb",
    "ALTER TABLE registry.tenants ADD COLUMN IF NOT EXISTS state_before_deletion text NOT NULL DEFAULT ''",
    # Added with pushed watches: the step progress of the latest run that
    # appended events (providers.RunStepsRecord as JSON), so that reading a
    # tenant never asks its workflow.
    "ALTER TABLE registry.tenants ADD COLUMN IF NOT EXISTS run_steps jsonb",
    # Every change of what a tenant shows is announced on
    # REGISTRY_CHANGES_CHANNEL with the tenant id, at commit (identical notices
    # of one transaction fold into one); the facade LISTENs, once per process,
    # instead of polling. Created once, never replaced (replacing needs its
    # owner, who may be an administrator's role): a change gets a new name.
    f"""
    DO $do$ BEGIN
      IF to_regprocedure('registry.announce_tenant_change_v1()') IS NULL THEN
        CREATE FUNCTION registry.announce_tenant_change_v1() RETURNS trigger
        LANGUAGE plpgsql AS $fn$
        BEGIN
          IF TG_OP = 'DELETE' THEN
            PERFORM pg_notify('{REGISTRY_CHANGES_CHANNEL}', OLD.tenant_id);
          ELSE
            PERFORM pg_notify('{REGISTRY_CHANGES_CHANNEL}', NEW.tenant_id);
          END IF;
          RETURN NULL;
        END $fn$;
      END IF;
    END $do$
    """,
    *(
        f"CREATE OR REPLACE TRIGGER {table}_announce AFTER INSERT OR UPDATE OR DELETE ON registry.{table}"
        " FOR EACH ROW EXECUTE FUNCTION registry.announce_tenant_change_v1()"
        for table in ("tenants", "tenant_events", "tenant_resources", "tenant_backups")
    ),
    # -- Added for a registry of 100,000 tenants (issue 11) ------------------
    # ListTenants pages by keyset in each order it offers, and by state or
    # plan tier, so each of them ends in tenant_id (the tiebreaker).
    # tests/bench/registry_scale.py prints the plans.
    "CREATE INDEX IF NOT EXISTS tenants_create_time ON registry.tenants (create_time, tenant_id)",
    "CREATE INDEX IF NOT EXISTS tenants_update_time ON registry.tenants (update_time, tenant_id)",
    "CREATE INDEX IF NOT EXISTS tenants_state ON registry.tenants (state, tenant_id)",
    "CREATE INDEX IF NOT EXISTS tenants_plan_tier ON registry.tenants (plan_tier, tenant_id)",
    # Event retention deletes the oldest events first, in batches.
    'CREATE INDEX IF NOT EXISTS tenant_events_time ON registry.tenant_events ("time")',
    # -- end of issue 11 -----------------------------------------------------
)

# Operation kinds and outcomes, by their proto value names (Tenant.Operation).
PROVISION, DEPROVISION, SUSPEND, RESUME, UNDELETE, CLEAN_UP = (
    "KIND_PROVISION",
    "KIND_DEPROVISION",
    "KIND_SUSPEND",
    "KIND_RESUME",
    "KIND_UNDELETE",
    "KIND_CLEAN_UP",
)
RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "OUTCOME_RUNNING",
    "OUTCOME_SUCCEEDED",
    "OUTCOME_FAILED",
    "OUTCOME_CANCELLED",
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

    async def mark_provisioning(
        self, spec: TenantSpec, workflow_id: str, run_id: str = ""
    ) -> tuple[LeftoverRecord, ...]:
        """See the protocol; returns what an earlier failed run left (the run owes its undos)."""
        fields = {
            **_spec_fields(spec),
            "state": PROVISIONING,
            "workflow_id": workflow_id,
            "run_id": run_id,
        }
        async with self._pool.connection() as conn, conn.transaction():
            await _claim_domains(conn, spec.tenant_id, spec.domains)
            operation = _operation(PROVISION, RUNNING, workflow_id, run_id)
            if await _insert(conn, spec.tenant_id, {**fields, "last_operation": operation}):
                log.info("tenant %s registered as %s by %s", spec.tenant_id, PROVISIONING, workflow_id)
                return ()
            state, current_workflow, current_op, left, updated = await _locked_row(
                conn,
                spec.tenant_id,
                "state",
                "workflow_id",
                "last_operation",
                "leftover_resources",
                "update_time",
            )
            if state == DEPROVISIONED:
                # Never reused: the deleted tenant's audit log and backups stay
                # its own. Also when a run was started past the API's check.
                raise Conflict(
                    f"tenant {spec.tenant_id} was deleted ({DEPROVISIONED})"
                    f" on {_deleted_on(current_op, updated)}; the id of a deleted tenant"
                    " cannot be reused: choose another tenant id"
                )
            retry = state in REPROVISION_FROM
            repeat = current_workflow == workflow_id and state in REPROVISION_SAME_WORKFLOW_FROM
            if not (retry or repeat):
                raise Conflict(
                    f"tenant {spec.tenant_id} already exists in {state} (workflow {current_workflow!r}); "
                    f"only a tenant in {PROVISION_FAILED} can be provisioned again"
                )
            fields.update(
                current_step="",
                failed_step="",
                failure_reason="",
                last_operation=_operation(PROVISION, RUNNING, workflow_id, run_id, since=current_op),
            )
            if await _update(conn, spec.tenant_id, fields):
                log.info("tenant %s set to %s again by %s", spec.tenant_id, PROVISIONING, workflow_id)
        return tuple(_leftover(item) for item in left)

    async def mark_provision_failed(
        self,
        tenant_id: str,
        failed_step: str,
        reason: str,
        *,
        run_id: str = "",
        spec: TenantSpec | None = None,
        leftovers: Sequence[LeftoverRecord] = (),
        cancelled: bool = False,
        failure_type: str = "",
    ) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            row = await _locked_row_or_none(
                conn, tenant_id, "state", "run_id", "workflow_id", "last_operation"
            )
            fields: dict[str, object] = {
                "failed_step": failed_step,
                "failure_reason": reason,
                "current_step": "",
                "leftover_resources": Jsonb([asdict(left) for left in leftovers]),
            }
            if row is None:
                if spec is None:
                    raise NotFound(f"tenant {tenant_id} is not in the registry")
                # The run failed before MarkProvisioning wrote the record: the
                # record is made now, to say why.
                operation = _operation(
                    PROVISION,
                    CANCELLED if cancelled else FAILED,
                    "",
                    run_id,
                    failure=(failed_step, reason, failure_type),
                )
                await _insert(
                    conn,
                    tenant_id,
                    {
                        **_spec_fields(spec),
                        **fields,
                        "state": PROVISION_FAILED,
                        "run_id": run_id,
                        "last_operation": operation,
                    },
                )
                log.info(
                    "tenant %s registered as %s (%s: %s)", tenant_id, PROVISION_FAILED, failed_step, reason
                )
                return
            state, current_run, workflow_id, current_op = row
            ours = not (run_id and current_run) or run_id == current_run
            if state == ACTIVE:
                # Only the run that made it ACTIVE takes it back (its MarkActive
                # did its work and then failed, or a cancel came meanwhile).
                ours = bool(run_id) and run_id == current_run
            elif state not in PROVISION_FAILED_FROM:
                ours = False
            if not ours:
                raise Conflict(
                    f"tenant {tenant_id} is {state} under another run ({workflow_id!r}); "
                    "this run's failure does not change it"
                )
            fields.update(
                state=PROVISION_FAILED,
                last_operation=_operation(
                    PROVISION,
                    CANCELLED if cancelled else FAILED,
                    workflow_id,
                    run_id or current_run,
                    since=current_op,
                    failure=(failed_step, reason, failure_type),
                ),
            )
            if await _update(conn, tenant_id, fields):
                log.info("tenant %s: %s -> %s at %s", tenant_id, state, PROVISION_FAILED, failed_step)

    async def mark_active(self, tenant_id: str, run_id: str = "") -> None:
        async with self._pool.connection() as conn, conn.transaction():
            state, current_run, workflow_id, current_op = await _locked_row(
                conn, tenant_id, "state", "run_id", "workflow_id", "last_operation"
            )
            if state == PROVISIONING and run_id and current_run and run_id != current_run:
                raise Conflict(f"tenant {tenant_id} is being provisioned by another run")
            fields: dict[str, object] = {
                "current_step": "",
                # What an earlier failed run left was taken over by this one.
                "leftover_resources": Jsonb([]),
                "last_operation": _operation(
                    PROVISION, SUCCEEDED, workflow_id, current_run, since=current_op
                ),
            }
            await self._transition_in(conn, tenant_id, ACTIVE, ACTIVE_FROM, fields, state=state)

    async def mark_deprovisioning(
        self,
        tenant_id: str,
        workflow_id: str,
        purge_time: datetime | None = None,
        run_id: str = "",
        *,
        expected_state: str | None = None,
    ) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            state, before, current_op, current_run = await _locked_row(
                conn, tenant_id, "state", "state_before_deletion", "last_operation", "run_id"
            )
            marked_by_us = state == DEPROVISIONING and bool(run_id) and current_run == run_id
            if expected_state and state != expected_state and not marked_by_us:
                # Another operation (a suspend, say) changed the tenant since the caller looked.
                raise Conflict(f"tenant {tenant_id} is {state}, no longer {expected_state}")
            if state not in (DEPROVISIONING, DEPROVISION_FAILED):
                before = state
            fields: dict[str, object] = {
                "workflow_id": workflow_id,
                "run_id": run_id,
                "purge_time": purge_time,
                "state_before_deletion": before,
                "last_operation": _operation(DEPROVISION, RUNNING, workflow_id, run_id, since=current_op),
            }
            await self._transition_in(
                conn, tenant_id, DEPROVISIONING, DEPROVISIONING_FROM, fields, state=state
            )

    async def mark_deprovision_failed(
        self,
        tenant_id: str,
        run_id: str,
        failed_step: str,
        reason: str,
        *,
        failure_type: str = "",
        backups: Sequence[BackupRecord] = (),
        purge_begun: bool = False,
    ) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            state, current_run, workflow_id, current_op = await _locked_row(
                conn, tenant_id, "state", "run_id", "workflow_id", "last_operation"
            )
            if state == DEPROVISIONING and current_run and run_id != current_run:
                raise Conflict(f"tenant {tenant_id} is being deprovisioned by another run")
            fields: dict[str, object] = {
                "failed_step": failed_step,
                "failure_reason": reason,
                "current_step": "",
                "last_operation": _operation(
                    DEPROVISION,
                    FAILED,
                    workflow_id,
                    run_id,
                    since=current_op,
                    failure=(failed_step, reason, failure_type),
                ),
            }
            if purge_begun:
                fields["purge_time"] = None  # a resumed deletion does not wait again
            await self._transition_in(
                conn, tenant_id, DEPROVISION_FAILED, DEPROVISION_FAILED_FROM, fields, state=state
            )
            await _keep_backups(conn, tenant_id, backups)

    async def mark_access_changing(
        self, tenant_id: str, *, suspend: bool, workflow_id: str, run_id: str
    ) -> tuple[TenantRecord | None, bool]:
        source, changing, allowed = (
            (ACTIVE, SUSPENDING, SUSPENDING_FROM) if suspend else (SUSPENDED, RESUMING, RESUMING_FROM)
        )
        kind = SUSPEND if suspend else RESUME
        claimed = False
        async with self._pool.connection() as conn, conn.transaction():
            row = await _locked_row_or_none(conn, tenant_id, "state", "workflow_id", "last_operation")
            if row is not None:
                state, current_workflow, current_op = row
                # The same workflow id (suspend and resume share one) takes over
                # from a run of it that ended half-way.
                if state == source or (state in allowed and current_workflow == workflow_id):
                    claimed = True
                    fields = {
                        "state": changing,
                        "workflow_id": workflow_id,
                        "run_id": run_id,
                        "last_operation": _operation(kind, RUNNING, workflow_id, run_id, since=current_op),
                    }
                    if await _update(conn, tenant_id, fields):
                        log.info("tenant %s: %s -> %s", tenant_id, state, changing)
        return await self.get_tenant(tenant_id), claimed

    async def mark_access_change_failed(
        self, tenant_id: str, run_id: str, failed_step: str, reason: str, failure_type: str = ""
    ) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            state, current_run, workflow_id, current_op = await _locked_row(
                conn, tenant_id, "state", "run_id", "workflow_id", "last_operation"
            )
            back = {SUSPENDING: ACTIVE, RESUMING: SUSPENDED}.get(state)
            if back is None or (current_run and run_id != current_run):
                if current_run == run_id and state in (ACTIVE, SUSPENDED):
                    return  # marked already (a repeated activity)
                raise Conflict(f"tenant {tenant_id} is {state}; no change of access of this run to undo")
            kind = SUSPEND if state == SUSPENDING else RESUME
            fields = {
                "state": back,
                "last_operation": _operation(
                    kind,
                    FAILED,
                    workflow_id,
                    run_id,
                    since=current_op,
                    failure=(failed_step, reason, failure_type),
                ),
            }
            if await _update(conn, tenant_id, fields):
                log.info("tenant %s: %s -> %s (%s failed)", tenant_id, state, back, failed_step)

    async def record_leftovers(
        self, tenant_id: str, workflow_id: str, run_id: str, leftovers: Sequence[LeftoverRecord]
    ) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            (state,) = await _locked_row(conn, tenant_id, "state")
            if state != PROVISION_FAILED:
                raise Conflict(
                    f"tenant {tenant_id} is {state}; only a {PROVISION_FAILED} tenant has leftovers"
                )
            shown = ", ".join(f"{left.kind} {left.resource_id}".strip() for left in leftovers)
            operation = _operation(
                CLEAN_UP,
                FAILED if leftovers else SUCCEEDED,
                workflow_id,
                run_id,
                failure=(leftovers[0].step, f"could not remove {shown}", "") if leftovers else None,
                start=datetime.now(UTC),
            )
            fields = {
                "leftover_resources": Jsonb([asdict(left) for left in leftovers]),
                "last_operation": operation,
            }
            await _update(conn, tenant_id, fields)
        log.info("tenant %s: %d leftover resource(s) after clean-up", tenant_id, len(leftovers))

    async def record_failed_operation(self, tenant_id: str, operation: OperationRecord) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await _locked_row(conn, tenant_id, "state")
            await _update(conn, tenant_id, {"last_operation": Jsonb(_operation_json(operation))})

    async def mark_deprovisioned(self, tenant_id: str, backups: Sequence[BackupRecord] = ()) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            state, workflow_id, run_id, current_op = await _locked_row(
                conn, tenant_id, "state", "workflow_id", "run_id", "last_operation"
            )
            fields = {
                "current_step": "",
                "purge_time": None,
                "last_operation": _operation(DEPROVISION, SUCCEEDED, workflow_id, run_id, since=current_op),
            }
            await self._transition_in(conn, tenant_id, DEPROVISIONED, DEPROVISIONED_FROM, fields, state=state)
            await _keep_backups(conn, tenant_id, backups)

    async def mark_suspended(self, tenant_id: str) -> None:
        await self._access_changed(tenant_id, SUSPENDED, SUSPENDED_FROM, SUSPEND)

    async def mark_resumed(self, tenant_id: str) -> None:
        await self._access_changed(tenant_id, ACTIVE, RESUMED_FROM, RESUME)

    async def _access_changed(self, tenant_id: str, target: str, allowed: frozenset[str], kind: str) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            state, workflow_id, run_id, current_op = await _locked_row(
                conn, tenant_id, "state", "workflow_id", "run_id", "last_operation"
            )
            if state == target:
                return  # a repeated activity: the last operation is recorded already
            operation = _operation(kind, SUCCEEDED, workflow_id, run_id, since=current_op)
            await self._transition_in(
                conn, tenant_id, target, allowed, {"last_operation": operation}, state=state
            )

    async def mark_restored(self, tenant_id: str, state: str) -> None:
        if state not in RESTORABLE:
            raise Rejected(f"a tenant can be restored to {', '.join(sorted(RESTORABLE))}, not {state}")
        async with self._pool.connection() as conn, conn.transaction():
            current, workflow_id, run_id = await _locked_row(
                conn, tenant_id, "state", "workflow_id", "run_id"
            )
            fields: dict[str, object] = {"current_step": "", "purge_time": None, "state_before_deletion": ""}
            if current != state:
                fields["last_operation"] = _operation(
                    UNDELETE, SUCCEEDED, workflow_id, run_id, start=datetime.now(UTC)
                )
            await self._transition_in(
                conn, tenant_id, state, frozenset({DEPROVISIONING, state}), fields, state=current
            )

    async def _transition_in(
        self,
        conn: AsyncConnection,
        tenant_id: str,
        target: str,
        allowed_from: frozenset[str],
        extra: Mapping[str, object],
        *,
        state: str,
    ) -> None:
        """Moves the tenant, locked by the caller in its transaction and found in `state`, to `target`."""
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
            run_id=row["run_id"],
            leftovers=tuple(_leftover(item) for item in row["leftover_resources"]),
            last_operation=_operation_record(row["last_operation"]),
            state_before_deletion=row["state_before_deletion"],
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

    async def create_schema(self, tenant_id: str, *, role_password: str, credentials: str) -> str:
        name = schema_name(tenant_id)
        schema = sql.Identifier(name)
        async with self._pool.connection() as conn, conn.transaction():
            display_name, plan_tier, admin_email = await _locked_row(
                conn, tenant_id, "display_name", "plan_tier", "admin_email", share=True
            )
            # CREATE ... IF NOT EXISTS is not safe against a concurrent twin.
            await advisory_lock(conn, _SCHEMA_LOCK + name)
            role = await _tenant_role(conn, role_name(tenant_id), role_password)
            for statement in _seed_ddl(schema):
                await conn.execute(statement)
            for statement in _tenant_grants(schema, role):
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
            await conn.execute(
                "INSERT INTO registry.tenant_resources (tenant_id, kind, resource_id, domain)"
                " VALUES (%s, %s, %s, 'tenantdb') ON CONFLICT DO NOTHING",
                [tenant_id, CREDENTIALS_KIND, credentials],
            )
        log.info("tenant %s: schema %s and its role ready", tenant_id, name)
        return name

    async def drop_schema(self, tenant_id: str) -> None:
        name = schema_name(tenant_id)
        async with self._pool.connection() as conn, conn.transaction():
            await advisory_lock(conn, _SCHEMA_LOCK + name)
            await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
            await _drop_tenant_role(conn, role_name(tenant_id))
            await conn.execute(
                "DELETE FROM registry.tenant_resources WHERE tenant_id = %s AND kind = %s",
                [tenant_id, CREDENTIALS_KIND],
            )
        log.info("tenant %s: schema %s and its role dropped (if they existed)", tenant_id, name)

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

    async def append_events(
        self, tenant_id: str, events: Sequence[EventRecord], progress: RunStepsRecord | None = None
    ) -> int:
        if not events and progress is None:
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
            if rows:
                await cur.executemany(
                    "INSERT INTO registry.tenant_events"
                    ' (tenant_id, "time", kind, step, state, actor, workflow_id, run_id, detail, sequence)'
                    " VALUES (%s, coalesce(%s, now()), %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (run_id, sequence) DO NOTHING",
                    rows,
                )
            added = max(cur.rowcount, 0) if rows else 0
            if progress is not None:
                # A retried older batch of the same run never overwrites a newer
                # one, and the same progress again changes nothing (nor announces).
                # A deleted tenant shows its deletion's steps: a run refused on its
                # id (its events are kept, as an attempt on it) does not replace them.
                await cur.execute(
                    "UPDATE registry.tenants SET run_steps = %(steps)s WHERE tenant_id = %(tenant)s"
                    " AND run_steps IS DISTINCT FROM %(steps)s AND (run_steps IS NULL"
                    " OR run_steps->>'run_id' IS DISTINCT FROM %(run)s"
                    " OR (run_steps->>'sequence')::int <= %(seq)s)"
                    " AND (state <> %(deleted)s OR workflow_id = %(workflow)s)",
                    {
                        "steps": Jsonb(progress.as_json()),
                        "tenant": tenant_id,
                        "run": progress.run_id,
                        "seq": progress.sequence,
                        "deleted": DEPROVISIONED,
                        "workflow": progress.workflow_id,
                    },
                )
        log.info("tenant %s: %d event(s) appended, %d new", tenant_id, len(rows), added)
        return added

    async def delete_events_before(self, cutoff: datetime, *, limit: int) -> int:
        """Deletes up to `limit` of the oldest events older than `cutoff`; returns how many.

        Rows another deletion holds are skipped, so replicas share the work,
        and appends (new rows) never wait for it.
        """
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM registry.tenant_events WHERE event_id IN ("
                ' SELECT event_id FROM registry.tenant_events WHERE "time" < %s'
                ' ORDER BY "time" LIMIT %s FOR UPDATE SKIP LOCKED)',
                [cutoff, limit],
            )
            return max(cur.rowcount, 0)


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


async def _tenant_role(conn: AsyncConnection, name: str, password: str) -> sql.Identifier:
    """Creates the tenant's role, or takes over the one an earlier attempt made, with `password`.

    The worker becomes a member of it: it reads (backs up), ends the sessions
    of and drops what the role makes. A role of that name that the worker
    did not make is refused by PostgreSQL (CREATEROLE covers only the roles
    one made, since 16) and is a Conflict.
    """
    role = sql.Identifier(name)
    cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name])
    exists = await cur.fetchone() is not None
    try:
        async with conn.transaction():
            if exists:
                await conn.execute(sql.SQL("ALTER ROLE {} LOGIN {}").format(role, role_password(password)))
            else:
                await conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN NOINHERIT {}").format(role, role_password(password))
                )
            await conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(role))
    except errors.InsufficientPrivilege:
        if exists:
            raise Conflict(
                f"database role {name} exists and was not made by the tenant-data worker"
            ) from None
        raise Rejected(
            "the tenant-data worker's database role may not create roles (run services.tenantdb.migrate)"
        ) from None
    return role


def _tenant_grants(schema: sql.Identifier, role: sql.Identifier) -> list[sql.Composed]:
    """The tenant's role may connect (as a member of the tenants' group) and use
    its own schema: nothing else is granted to it."""
    return [
        sql.SQL("GRANT {} TO {} WITH INHERIT TRUE").format(sql.Identifier(TENANT_GROUP), role),
        sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(schema, role),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(schema, role),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(schema, role),
    ]


async def _drop_tenant_role(conn: AsyncConnection, name: str) -> None:
    """Ends the role's sessions, revokes what it was granted and drops it; absent is fine."""
    cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name])
    if await cur.fetchone() is None:
        return
    role = sql.Identifier(name)
    try:
        async with conn.transaction():
            await conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(role))
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name]
            )
            # Its grants and anything it made outside its schema.
            await conn.execute(sql.SQL("DROP OWNED BY {}").format(role))
            await conn.execute(sql.SQL("DROP ROLE {}").format(role))
    except errors.InsufficientPrivilege:
        raise Conflict(
            f"database role {name} was not made by the tenant-data worker; left in place"
        ) from None
    except errors.DependentObjectsStillExist:
        raise Conflict(f"database role {name} still owns objects in another database") from None


async def _locked_row(conn: AsyncConnection, tenant_id: str, *columns: str, share: bool = False) -> tuple:
    """Locks the tenant's registry row and returns `columns`; NotFound if there is none."""
    row = await _locked_row_or_none(conn, tenant_id, *columns, share=share)
    if row is None:
        raise NotFound(f"tenant {tenant_id} is not in the registry")
    return row


async def _locked_row_or_none(
    conn: AsyncConnection, tenant_id: str, *columns: str, share: bool = False
) -> tuple | None:
    query = sql.SQL("SELECT {} FROM registry.tenants WHERE tenant_id = %s FOR {}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL("SHARE" if share else "UPDATE")
    )
    cur = await conn.execute(query, [tenant_id])
    row = await cur.fetchone()
    return tuple(row) if row is not None else None


async def _insert(conn: AsyncConnection, tenant_id: str, fields: dict[str, object]) -> bool:
    """Creates the tenant's record with `fields`; False when there is one already."""
    columns = ["tenant_id", *fields]
    insert = sql.SQL(
        "INSERT INTO registry.tenants ({}) VALUES ({}) ON CONFLICT (tenant_id) DO NOTHING RETURNING 1"
    ).format(
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
    )
    cur = await conn.execute(insert, [tenant_id, *fields.values()])
    return await cur.fetchone() is not None


def _spec_fields(spec: TenantSpec) -> dict[str, object]:
    return {
        "display_name": spec.display_name,
        "plan_tier": spec.plan_tier,
        "domains": list(spec.domains),
        "admin_email": spec.admin_email,
        "admin_given_name": spec.admin_given_name,
        "admin_family_name": spec.admin_family_name,
    }


async def _claim_domains(conn: AsyncConnection, tenant_id: str, domains: Sequence[str]) -> None:
    """Conflict if another live tenant holds one of `domains`; the locks (held
    to the end of the transaction) make two tenants racing for one domain
    take turns, so exactly one gets it."""
    wanted = sorted({d.strip().lower().rstrip(".") for d in domains})
    for domain in wanted:
        await advisory_lock(conn, _DOMAIN_LOCK + domain)
    if not wanted:
        return
    cur = await conn.execute(
        "SELECT t.tenant_id, d FROM registry.tenants t, unnest(t.domains) AS d"
        " WHERE t.tenant_id <> %s AND lower(rtrim(d, '.')) = ANY(%s) AND t.state = ANY(%s)"
        " ORDER BY d LIMIT 1",
        [tenant_id, wanted, sorted(DOMAIN_HOLDING)],
    )
    taken = await cur.fetchone()
    if taken:
        raise Conflict(f"a domain of this tenant is already used by tenant {taken[0]}")


async def _keep_backups(conn: AsyncConnection, tenant_id: str, backups: Sequence[BackupRecord]) -> None:
    """Records the backup objects with the tenant, one per object (a later entry for a uri wins)."""
    unique = sorted({b.uri: b for b in backups}.values(), key=lambda b: b.uri)
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


def _deleted_on(operation: dict[str, Any] | None, updated: datetime) -> str:
    """When a DEPROVISIONED tenant was deleted: its deletion run's end, else its last change."""
    ended = (operation or {}).get("end_time") if (operation or {}).get("kind") == DEPROVISION else None
    when = datetime.fromisoformat(ended) if ended else updated
    return f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _json_time(value: datetime | None) -> str | None:
    """A timestamp as proto JSON writes it (RFC 3339, UTC, Z)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None


def _operation(
    kind: str,
    outcome: str,
    workflow_id: str,
    run_id: str,
    *,
    since: dict[str, Any] | None = None,
    failure: tuple[str, str, str] | None = None,
    start: datetime | None = None,
) -> Jsonb:
    """The last_operation column: Tenant.Operation as proto JSON (field names as in proto).

    `since` is the current value: the same run keeps its start time, so a
    repeated activity writes the same value (and update_time stays).
    """
    now = datetime.now(UTC)
    since = since or {}
    same_run = (since.get("kind"), since.get("workflow_id", ""), since.get("run_id", "")) == (
        kind,
        workflow_id,
        run_id,
    )
    started = since.get("start_time") if same_run else None
    # The run's trace (its activities run in it); a mark outside any kept the one recorded.
    trace_id = tracing.current_trace_id() or (since.get("trace_id", "") if same_run else "")
    record = OperationRecord(
        kind=kind,
        outcome=outcome,
        workflow_id=workflow_id,
        run_id=run_id,
        failed_step=failure[0] if failure else "",
        failure_reason=failure[1] if failure else "",
        failure_type=failure[2] if failure else "",
        trace_id=trace_id,
        start_time=start or (datetime.fromisoformat(started) if started else now),
        end_time=None if outcome == RUNNING else now,
    )
    value = _operation_json(record)
    if same_run and outcome != RUNNING and since.get("outcome") == outcome and since.get("end_time"):
        value["end_time"] = since["end_time"]  # repeated: the first end stands
    return Jsonb(value)


def _operation_json(record: OperationRecord) -> dict[str, Any]:
    value = {k: v for k, v in asdict(record).items() if v not in ("", None)}
    for key in ("start_time", "end_time"):
        if record.__dict__[key] is not None:
            value[key] = _json_time(record.__dict__[key])
    return value


def _operation_record(value: dict[str, Any] | None) -> OperationRecord | None:
    if not value:
        return None

    def time(key: str) -> datetime | None:
        return datetime.fromisoformat(value[key]) if value.get(key) else None

    text = {
        k: str(value.get(k, ""))
        for k in ("workflow_id", "run_id", "failed_step", "failure_reason", "failure_type")
    }
    return OperationRecord(
        kind=value["kind"],
        outcome=value["outcome"],
        start_time=time("start_time"),
        end_time=time("end_time"),
        **text,
    )


def _leftover(item: dict[str, Any]) -> LeftoverRecord:
    return LeftoverRecord(**item)


async def _update(conn: AsyncConnection, tenant_id: str, fields: Mapping[str, object]) -> bool:
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
