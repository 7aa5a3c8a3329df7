"""Names every process agrees on for a tenant's lifecycle runs."""

from __future__ import annotations

import re
from datetime import timedelta

from libs import errors
from libs.errors import ErrorType
from tenantry.tenant.v1 import tenant_pb2

# A tenant id is a DNS label: it names the schema, the bucket and a hostname.
TENANT_ID_PATTERN = re.compile(r"[a-z][a-z0-9-]{1,30}[a-z0-9]")
TENANT_ID_RULE = (
    "3 to 32 lowercase letters, digits or hyphens, starting with a letter, not ending with a hyphen"
)

# Ids no tenant may have, because its names would be the platform's or read
# as the platform's: `<bucket prefix>-<id>` is the tenant's bucket (and
# `tenantry-backups` the backup bucket), `<id>.<zone>` the tenant's host name
# (where a platform serves its web, API, sign-in, status and mail hosts), and
# `tenants/<id>` its name in the API. Names of two letters (ns, mx, id) need
# no entry: a tenant id has at least three.
RESERVED_TENANT_IDS = frozenset(
    {
        # Resources and roles of the platform itself.
        "backups",
        "backup",
        "tenantry",
        "tenants",
        "tenant",
        "platform",
        "system",
        "internal",
        "shared",
        "registry",
        "audit",
        "root",
        "admin",
        "administrator",
        "master",  # Keycloak's administration realm
        "default",  # Temporal's namespace, ECS's cluster
        "public",  # PostgreSQL's schema
        # Host names a platform serves in its own zone.
        "www",
        "api",
        "app",
        "auth",
        "login",
        "sso",
        "oauth",
        "account",
        "accounts",
        "console",
        "dashboard",
        "portal",
        "status",
        "static",
        "assets",
        "cdn",
        "docs",
        "help",
        "support",
        "billing",
        # Mail and DNS.
        "mail",
        "email",
        "smtp",
        "imap",
        "pop3",
        "autoconfig",
        "autodiscover",
        "dns",
        "ns1",
        "ns2",
        "ns3",
        "ns4",
        "localhost",
    }
)

# The query every lifecycle workflow answers with a RunProgress message.
PROGRESS_QUERY = "progress"
# Updates of the deprovisioning run (orchestrator.v1 UndeleteRequest,
# DeleteNowRequest -> DeletionUpdateResponse) and the signal the API sends
# to a provisioning run just before cancelling it (CancelRequested).
UNDELETE_UPDATE = "undelete"
DELETE_NOW_UPDATE = "delete_now"
CANCEL_REQUESTED_SIGNAL = "cancel_requested"
# Updates of the provisioning run: `cancel` (CancelRequested -> CancelResponse),
# and of the provisioning and deprovisioning runs: `claimed` (ClaimRequest ->
# ClaimResponse), answered once the run has taken the tenant over or failed to.
CANCEL_UPDATE = "cancel"
CLAIMED_UPDATE = "claimed"
# The ApplicationError type of an update refused because of the run's state.
UPDATE_REFUSED = "UpdateRefused"
# The PostgreSQL NOTIFY channel on which the registry announces every change
# of a tenant (payload: the tenant id): the tenant-data worker's triggers
# raise it, the facade listens.
REGISTRY_CHANGES_CHANNEL = "tenantry_registry_changes"

State = tenant_pb2.Tenant.State
# States in which no run is under way for the tenant.
SETTLED_STATES = frozenset(
    {
        State.STATE_ACTIVE,
        State.STATE_PROVISION_FAILED,
        State.STATE_SUSPENDED,
        State.STATE_DEPROVISIONED,
        State.STATE_DEPROVISION_FAILED,
    }
)
# States a run is under way in, and the workflow id of the run that has the tenant.
IN_FLIGHT_STATES = frozenset(
    {
        State.STATE_PENDING,
        State.STATE_PROVISIONING,
        State.STATE_DEPROVISIONING,
        State.STATE_SUSPENDING,
        State.STATE_RESUMING,
    }
)


# Whole-run limits, set by whoever starts a run, a safety net well beyond
# what the steps' own limits (orchestrator/plan.py) add up to: provisioning
# with dedicated infrastructure and then a full compensation, each step
# retried to its limit, stays within two days; teardown waits out outages.
PROVISION_TIMEOUT = timedelta(days=2)
DEPROVISION_TIMEOUT = timedelta(days=7)  # after the grace period
ACCESS_TIMEOUT = timedelta(days=1)  # suspend or resume

# The wait between a deletion request and the backup and removal.
DEFAULT_GRACE_PERIOD = timedelta(days=30)
MAX_GRACE_PERIOD = timedelta(days=365)


def valid_tenant_id(tenant_id: str) -> bool:
    """Whether `tenant_id` has the form of a tenant id (reserved ones included)."""
    return TENANT_ID_PATTERN.fullmatch(tenant_id) is not None


def reserved_tenant_id(tenant_id: str) -> bool:
    return tenant_id in RESERVED_TENANT_IDS


def checked_tenant_id(value: str) -> str:
    """`value` if it is a valid tenant id a tenant may have, else a non-retryable InvalidArgument.

    Workers check again what the API checked: not every caller goes through it.
    """
    shown = value if len(value) <= 40 else value[:40] + "..."
    if not valid_tenant_id(value):
        raise errors.permanent(
            ErrorType.INVALID_ARGUMENT, f"tenant id {shown!r} is not a DNS label of {TENANT_ID_RULE}"
        )
    if reserved_tenant_id(value):
        raise errors.permanent(
            ErrorType.INVALID_ARGUMENT, f"tenant id {shown!r} is reserved for the platform"
        )
    return value


def tenant_id_naming(name: str, *, prefix: str = "", suffix: str = "") -> str | None:
    """The tenant whose resource `prefix + id + suffix` would be called `name`, if any.

    A platform resource named in a tenant namespace (the backup bucket among
    the `<prefix>-<id>` buckets, say) must get None here: else that tenant
    could create, adopt or delete it.
    """
    if len(name) < len(prefix) + len(suffix) or not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    candidate = name[len(prefix) : len(name) - len(suffix)]
    if valid_tenant_id(candidate) and not reserved_tenant_id(candidate):
        return candidate
    return None


# Every lifecycle workflow id starts so.
TENANT_WORKFLOW_PREFIX = "tenant/"


def provision_workflow_id(tenant_id: str) -> str:
    return f"tenant/{tenant_id}/provision"


def deprovision_workflow_id(tenant_id: str) -> str:
    return f"tenant/{tenant_id}/deprovision"


def access_workflow_id(tenant_id: str) -> str:
    """Suspend and resume share one id, so the two never run at once."""
    return f"tenant/{tenant_id}/access"


def tenant_of_workflow(workflow_id: str) -> str | None:
    """The tenant whose lifecycle run has this workflow id (`tenant/<id>/...`), if any."""
    if not workflow_id.startswith(TENANT_WORKFLOW_PREFIX):
        return None
    candidate = workflow_id[len(TENANT_WORKFLOW_PREFIX) :].split("/", 1)[0]
    return candidate if valid_tenant_id(candidate) else None


def tenant_name(tenant_id: str) -> str:
    return f"tenants/{tenant_id}"
