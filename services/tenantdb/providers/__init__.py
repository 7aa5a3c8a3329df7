"""The tenant-data provider: the tenant registry, the per-tenant schemas and
the tenants' audit log.

Activities talk to a `TenantDataProvider`; `from_env` picks the adapter. The
only adapter is PostgreSQL (any PostgreSQL by DSN, embedded in dev and tests).

The lifecycle rules live here, not in an adapter, so that every adapter
applies the same state machine. States and plan tiers are stored by their
proto value names (`STATE_ACTIVE`, `PLAN_TIER_POOLED`), which is what the
gRPC facade reads back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Protocol

from libs import config

# The shared provider errors, re-exported for this domain's adapters.
from libs.errors import Conflict as Conflict
from libs.errors import NotFound as NotFound
from libs.errors import Rejected as Rejected
from tenantry.tenant.v1 import tenant_pb2

_State = tenant_pb2.Tenant.State

PENDING = _State.Name(tenant_pb2.Tenant.STATE_PENDING)
PROVISIONING = _State.Name(tenant_pb2.Tenant.STATE_PROVISIONING)
ACTIVE = _State.Name(tenant_pb2.Tenant.STATE_ACTIVE)
PROVISION_FAILED = _State.Name(tenant_pb2.Tenant.STATE_PROVISION_FAILED)
SUSPENDED = _State.Name(tenant_pb2.Tenant.STATE_SUSPENDED)
DEPROVISIONING = _State.Name(tenant_pb2.Tenant.STATE_DEPROVISIONING)
DEPROVISIONED = _State.Name(tenant_pb2.Tenant.STATE_DEPROVISIONED)
DEPROVISION_FAILED = _State.Name(tenant_pb2.Tenant.STATE_DEPROVISION_FAILED)
SUSPENDING = _State.Name(tenant_pb2.Tenant.STATE_SUSPENDING)
RESUMING = _State.Name(tenant_pb2.Tenant.STATE_RESUMING)

# The states each transition may start from. Reaching a state the tenant is
# already in is always allowed (a repeated activity is a no-op), so the
# target itself is listed too. Where a run owns the record (its run id is on
# it since its first mark), the transitions out of the run's own state check
# the run id as well (see the adapter).
PROVISION_FAILED_FROM = frozenset({PENDING, PROVISIONING, PROVISION_FAILED})
ACTIVE_FROM = frozenset({PROVISIONING, ACTIVE})
DEPROVISIONING_FROM = frozenset({ACTIVE, PROVISION_FAILED, SUSPENDED, DEPROVISIONING, DEPROVISION_FAILED})
DEPROVISIONED_FROM = frozenset({DEPROVISIONING, DEPROVISIONED})
DEPROVISION_FAILED_FROM = frozenset({DEPROVISIONING, DEPROVISION_FAILED})
# Runs before the claim (SUSPENDING, RESUMING) went straight from the source state.
SUSPENDED_FROM = frozenset({SUSPENDING, ACTIVE, SUSPENDED})
# Resuming has its own rule: MarkActive (ACTIVE_FROM) ends a provisioning run.
RESUMED_FROM = frozenset({RESUMING, SUSPENDED, ACTIVE})
# A suspend or resume run takes the tenant over from its source state.
SUSPENDING_FROM = frozenset({ACTIVE, SUSPENDING})
RESUMING_FROM = frozenset({SUSPENDED, RESUMING})
# States that hold their domains: no other tenant may provision them.
DOMAIN_HOLDING = frozenset(
    {PROVISIONING, ACTIVE, SUSPENDING, SUSPENDED, RESUMING, DEPROVISIONING, DEPROVISION_FAILED}
)
# Undeleting puts a tenant in its grace period back in the settled state it
# had before; the allowed start is DEPROVISIONING or that state itself.
RESTORABLE = frozenset({ACTIVE, SUSPENDED, PROVISION_FAILED})
# MarkProvisioning on an existing record: any workflow may retry a failed
# tenant; the same workflow may repeat itself while it is still provisioning.
# A tenant that went live is never moved back, not even by a late (zombie)
# attempt of the workflow that provisioned it.
REPROVISION_FROM = frozenset({PROVISION_FAILED})
REPROVISION_SAME_WORKFLOW_FROM = frozenset({PENDING, PROVISIONING, PROVISION_FAILED})


@dataclass(frozen=True)
class TenantSpec:
    """What the caller asked for when provisioning."""

    tenant_id: str
    display_name: str
    plan_tier: str
    domains: tuple[str, ...]
    admin_email: str
    admin_given_name: str = ""
    admin_family_name: str = ""


@dataclass(frozen=True)
class ResourceRecord:
    """Something provisioning created, as recorded in the registry."""

    kind: str
    resource_id: str
    domain: str
    create_time: datetime | None = None


@dataclass(frozen=True)
class BackupRecord:
    """One object of the backup taken before deprovisioning; kept with the record."""

    kind: str
    uri: str
    size_bytes: int
    sha256: str
    create_time: datetime | None = None


@dataclass(frozen=True)
class EventRecord:
    """One audit-log entry. Enums are stored by name; `state` is empty when unset.

    `(run_id, sequence)` identifies the event: appending it again keeps one.
    """

    run_id: str
    sequence: int
    kind: str
    time: datetime | None = None
    step: str = ""
    state: str = ""
    actor: str = ""
    workflow_id: str = ""
    detail: str = ""


@dataclass(frozen=True)
class RunStepsRecord:
    """A run's step progress as its latest append saw it, kept on the tenant's
    record (`run_steps`). Statuses are stored by their proto value names."""

    workflow_id: str
    run_id: str
    sequence: int
    steps: tuple[tuple[str, str, str], ...]  # (step, status, error)
    current_steps: tuple[str, ...] = ()
    ended: bool = False

    def as_json(self) -> dict[str, object]:
        return {
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "sequence": self.sequence,
            "ended": self.ended,
            "steps": [{"step": s, "status": status, "error": e} for s, status, e in self.steps],
            "current_steps": list(self.current_steps),
        }


@dataclass(frozen=True)
class LeftoverRecord:
    """Something a failed run could not remove (Tenant.leftover_resources)."""

    step: str
    kind: str
    resource_id: str
    domain: str
    reason: str


@dataclass(frozen=True)
class OperationRecord:
    """The tenant's last run (Tenant.last_operation); enums by their proto value names."""

    kind: str
    outcome: str
    workflow_id: str = ""
    run_id: str = ""
    failed_step: str = ""
    failure_reason: str = ""
    failure_type: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None
    trace_id: str = ""


@dataclass(frozen=True)
class TenantRecord:
    """A registry record with its resources and the backups kept with it."""

    spec: TenantSpec
    state: str
    current_step: str
    failed_step: str
    failure_reason: str
    workflow_id: str
    create_time: datetime
    update_time: datetime
    resources: tuple[ResourceRecord, ...] = field(default=())
    purge_time: datetime | None = None
    backups: tuple[BackupRecord, ...] = field(default=())
    # The run that owns the record now (or last did).
    run_id: str = ""
    leftovers: tuple[LeftoverRecord, ...] = field(default=())
    last_operation: OperationRecord | None = None
    # While a deletion runs or after it failed: the state an undelete restores.
    state_before_deletion: str = ""


class TenantDataProvider(Protocol):
    """The registry store, the schema manager and the audit log.

    Every method is idempotent. Methods raise `NotFound`, `Conflict` or
    `Rejected` for what retrying cannot fix, `Unavailable` for a fault a
    retry may fix, and let connection errors propagate.
    Tenant ids reach the provider already validated.
    """

    async def open(self) -> None:
        """Connects and creates what the provider owns (idempotent, safe with N replicas)."""

    async def close(self) -> None:
        """Releases connections; safe to call twice."""

    async def mark_provisioning(
        self, spec: TenantSpec, workflow_id: str, run_id: str = ""
    ) -> Sequence[LeftoverRecord]:
        """Creates the record in PROVISIONING, or moves a retried one back to it,
        claiming its domains: one held by another live tenant is a Conflict.
        Returns what an earlier failed run left (the new run owes its undos)."""

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
        """Moves the tenant to PROVISION_FAILED with the failed step, reason and
        leftovers; creates the record from `spec` when there is none. An
        ACTIVE record only the run that made it ACTIVE may mark; a record
        another run owns is a Conflict."""

    async def mark_active(self, tenant_id: str, run_id: str = "") -> None:
        """Moves the tenant from PROVISIONING to ACTIVE."""

    async def mark_deprovisioning(
        self,
        tenant_id: str,
        workflow_id: str,
        purge_time: datetime | None = None,
        run_id: str = "",
        *,
        expected_state: str | None = None,
    ) -> None:
        """Moves the tenant to DEPROVISIONING under `workflow_id`, with the end
        of its grace period; with `expected_state`, only from that state (a
        Conflict otherwise, unless run `run_id` marked it already)."""

    async def mark_deprovisioned(self, tenant_id: str, backups: Sequence[BackupRecord] = ()) -> None:
        """Moves the tenant from DEPROVISIONING to DEPROVISIONED, keeping `backups` with the record."""

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
        """Moves the tenant from DEPROVISIONING (owned by `run_id`) to
        DEPROVISION_FAILED, keeping the backup taken so far; with
        `purge_begun` the grace period is over (purge_time cleared)."""

    async def mark_access_changing(
        self, tenant_id: str, *, suspend: bool, workflow_id: str, run_id: str
    ) -> tuple[TenantRecord | None, bool]:
        """Takes the tenant to SUSPENDING (from ACTIVE) or RESUMING (from
        SUSPENDED) for the run; returns the record as it was and whether it
        was taken (False, with nothing changed, in any other state)."""

    async def mark_access_change_failed(
        self, tenant_id: str, run_id: str, failed_step: str, reason: str, failure_type: str = ""
    ) -> None:
        """Puts a SUSPENDING tenant back to ACTIVE, or a RESUMING one back to
        SUSPENDED, with the failure as its last operation."""

    async def record_leftovers(
        self, tenant_id: str, workflow_id: str, run_id: str, leftovers: Sequence[LeftoverRecord]
    ) -> None:
        """Replaces a PROVISION_FAILED tenant's leftovers after a clean-up run."""

    async def record_failed_operation(self, tenant_id: str, operation: OperationRecord) -> None:
        """Records a failed run as the tenant's last operation, changing nothing else."""

    async def mark_suspended(self, tenant_id: str) -> None:
        """Moves the tenant from ACTIVE to SUSPENDED."""

    async def mark_resumed(self, tenant_id: str) -> None:
        """Moves the tenant from SUSPENDED to ACTIVE."""

    async def mark_restored(self, tenant_id: str, state: str) -> None:
        """Moves the tenant from DEPROVISIONING back to `state` (one of RESTORABLE)."""

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        """The record with its resources, or None."""

    async def create_schema(self, tenant_id: str, *, role_password: str, credentials: str) -> str:
        """Creates the tenant's schema with its seed data and the tenant's role
        (`role_name`), limited to that schema, whose password it sets to
        `role_password`; records `credentials` (the secret's reference) as a
        resource of kind CREDENTIALS_KIND. Returns the schema name."""

    async def drop_schema(self, tenant_id: str) -> None:
        """Drops the tenant's schema and everything in it, its role and the
        record of its credentials; absent is fine."""

    async def record_resources(self, tenant_id: str, resources: Sequence[ResourceRecord]) -> None:
        """Records resources once each; a resource recorded for another tenant is a Conflict."""

    async def delete_resources(self, tenant_id: str) -> None:
        """Deletes the tenant's resource records; none is fine. Backup records stay."""

    async def dump_schema(self, tenant_id: str, out: IO[bytes]) -> None:
        """Writes a gzip-compressed plain-SQL dump of the tenant's schema to `out`.

        NotFound when the schema does not exist; `Unavailable` when the dump fails.
        """

    async def append_events(
        self, tenant_id: str, events: Sequence[EventRecord], progress: RunStepsRecord | None = None
    ) -> int:
        """Appends events to the tenant's audit log, each once, and keeps
        `progress` on the record unless a newer one of the same run is there;
        returns how many events were new.

        The tenant need not be in the registry yet.
        """

    async def delete_events_before(self, cutoff: datetime, *, limit: int) -> int:
        """Deletes up to `limit` events older than `cutoff` (oldest first); returns how many."""


def schema_name(tenant_id: str) -> str:
    """The tenant's schema: `tenant_<id>` with hyphens as underscores (ids have no underscores)."""
    return "tenant_" + tenant_id.replace("-", "_")


def role_name(tenant_id: str) -> str:
    """The tenant's database role, named as its schema: no platform role (`tenantry_*`) has such a name."""
    return schema_name(tenant_id)


# The resource kind of the reference to the tenant's database credentials (a secret's ARN).
CREDENTIALS_KIND = "db_credentials"

PROVIDERS = ("postgres",)


def from_env() -> TenantDataProvider:
    """The adapter named by TENANTRY_TENANTDB_PROVIDER (default `postgres`), not yet opened."""
    name = config.choice("TENANTRY_TENANTDB_PROVIDER", "postgres", PROVIDERS)
    if name == "postgres":
        from services.tenantdb.providers.postgres import PostgresTenantData

        return PostgresTenantData(
            config.database_url(),
            max_connections=config.integer("TENANTRY_DATABASE_POOL_SIZE", 10),
        )
    raise AssertionError(name)  # unreachable: config.choice checked it
