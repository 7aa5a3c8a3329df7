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

# The states each transition may start from. Reaching a state the tenant is
# already in is always allowed (a repeated activity is a no-op), so the
# target itself is listed too.
PROVISION_FAILED_FROM = frozenset({PENDING, PROVISIONING, PROVISION_FAILED})
ACTIVE_FROM = frozenset({PROVISIONING, ACTIVE})
DEPROVISIONING_FROM = frozenset({ACTIVE, PROVISION_FAILED, SUSPENDED, DEPROVISIONING})
DEPROVISIONED_FROM = frozenset({DEPROVISIONING, DEPROVISIONED})
SUSPENDED_FROM = frozenset({ACTIVE, SUSPENDED})
# Resuming has its own rule: MarkActive (ACTIVE_FROM) ends a provisioning run.
RESUMED_FROM = frozenset({SUSPENDED, ACTIVE})
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

    async def mark_provisioning(self, spec: TenantSpec, workflow_id: str) -> None:
        """Creates the record in PROVISIONING, or moves a retried one back to it."""

    async def mark_provision_failed(self, tenant_id: str, failed_step: str, reason: str) -> None:
        """Moves the tenant to PROVISION_FAILED with the failed step and reason."""

    async def mark_active(self, tenant_id: str) -> None:
        """Moves the tenant from PROVISIONING to ACTIVE."""

    async def mark_deprovisioning(
        self, tenant_id: str, workflow_id: str, purge_time: datetime | None = None
    ) -> None:
        """Moves the tenant to DEPROVISIONING under `workflow_id`, with the end of its grace period."""

    async def mark_deprovisioned(self, tenant_id: str, backups: Sequence[BackupRecord] = ()) -> None:
        """Moves the tenant from DEPROVISIONING to DEPROVISIONED, keeping `backups` with the record."""

    async def mark_suspended(self, tenant_id: str) -> None:
        """Moves the tenant from ACTIVE to SUSPENDED."""

    async def mark_resumed(self, tenant_id: str) -> None:
        """Moves the tenant from SUSPENDED to ACTIVE."""

    async def mark_restored(self, tenant_id: str, state: str) -> None:
        """Moves the tenant from DEPROVISIONING back to `state` (one of RESTORABLE)."""

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        """The record with its resources, or None."""

    async def create_schema(self, tenant_id: str) -> str:
        """Creates the tenant's schema with its seed data; returns the schema name."""

    async def drop_schema(self, tenant_id: str) -> None:
        """Drops the tenant's schema and everything in it; absent is fine."""

    async def record_resources(self, tenant_id: str, resources: Sequence[ResourceRecord]) -> None:
        """Records resources once each; a resource recorded for another tenant is a Conflict."""

    async def delete_resources(self, tenant_id: str) -> None:
        """Deletes the tenant's resource records; none is fine. Backup records stay."""

    async def dump_schema(self, tenant_id: str, out: IO[bytes]) -> None:
        """Writes a gzip-compressed plain-SQL dump of the tenant's schema to `out`.

        NotFound when the schema does not exist; `Unavailable` when the dump fails.
        """

    async def append_events(self, tenant_id: str, events: Sequence[EventRecord]) -> int:
        """Appends events to the tenant's audit log, each once; returns how many were new.

        The tenant need not be in the registry yet.
        """


def schema_name(tenant_id: str) -> str:
    """The tenant's schema: `tenant_<id>` with hyphens as underscores (ids have no underscores)."""
    return "tenant_" + tenant_id.replace("-", "_")


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
