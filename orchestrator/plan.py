"""The steps of every lifecycle run, in one place: each step's activity, its
timeouts and retries, and its undo.

`STEPS` is the step table the workflows, the progress view and the tests
read; `TierPlan` says which steps a tier's runs show, in order. Whole-run
limits (execution timeouts) are set by whoever starts a run, so they live in
libs/lifecycle.py.

Every activity heartbeats about once a second while it runs
(libs.contracts), so every step has a short heartbeat timeout: an activity
held by a worker that died is retried on another within about
`HEARTBEAT` seconds, not after its whole start-to-close timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from google.protobuf.message import Message
from temporalio.common import RetryPolicy

from libs.contracts import IDENTITY, INFRASTRUCTURE, NOTIFICATION, TENANT_DATA, Rpc, StepOptions
from libs.errors import NON_RETRYABLE_TYPES
from tenantry.idp.v1 import idp_pb2 as idp
from tenantry.infra.v1 import infra_pb2 as infra
from tenantry.tenant.v1 import tenant_pb2
from tenantry.tenantdb.v1 import tenantdb_pb2 as tenantdb

Tier = tenant_pb2.PlanTier

# Missing heartbeats for this long mean the worker is gone: retry elsewhere.
HEARTBEAT = timedelta(seconds=5)


def _retry(
    maximum: timedelta, *, attempts: int = 0, initial: timedelta = timedelta(seconds=1)
) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=initial,
        backoff_coefficient=2.0,
        maximum_interval=maximum,
        maximum_attempts=attempts,
        non_retryable_error_types=[str(t) for t in NON_RETRYABLE_TYPES],
    )


# A provisioning step: a few provider calls. A domain that stays down for
# half an hour fails the run, which then compensates.
PROVISION_STEP = StepOptions(
    start_to_close=timedelta(seconds=20),
    schedule_to_close=timedelta(minutes=30),
    heartbeat=HEARTBEAT,
    retry=_retry(timedelta(seconds=30)),
)

# Deploying waits until the service is stable (bounded by the infra worker).
DEPLOY_STEP = StepOptions(
    start_to_close=timedelta(minutes=10),
    schedule_to_close=timedelta(minutes=40),
    heartbeat=HEARTBEAT,
    retry=_retry(timedelta(seconds=30)),
)

# Infrastructure as code can take many minutes (plan, apply or destroy).
IAC_STEP = StepOptions(
    start_to_close=timedelta(minutes=45),
    schedule_to_close=timedelta(hours=2),
    heartbeat=HEARTBEAT,
    retry=_retry(timedelta(seconds=30)),
)

# An undo: retried with backoff while a provider is down, and given up after
# a bounded time, so that one undo that cannot succeed never keeps the
# others, the failed mark and the notice from running. What it could not
# remove is listed on the tenant (leftover_resources) for CleanUpTenant.
COMPENSATION_STEP = StepOptions(
    start_to_close=timedelta(seconds=60),
    schedule_to_close=timedelta(minutes=30),
    heartbeat=HEARTBEAT,
    retry=_retry(timedelta(seconds=60)),
)

# An undo that can take long: emptying a bucket, removing a deployment,
# destroying infrastructure.
LONG_COMPENSATION_STEP = StepOptions(
    start_to_close=timedelta(minutes=45),
    schedule_to_close=timedelta(hours=2),
    heartbeat=HEARTBEAT,
    retry=_retry(timedelta(seconds=60)),
)

# Teardown and marks must finish however long a provider is down, within
# reason: retried with backoff to once a minute for half a day, then the
# run says where it stopped (DEPROVISION_FAILED) and DeleteTenant resumes it.
CLEANUP_STEP = StepOptions(
    start_to_close=timedelta(seconds=60),
    schedule_to_close=timedelta(hours=12),
    heartbeat=HEARTBEAT,
    retry=_retry(timedelta(seconds=60)),
)

# Teardown that can take long (a deployment, infrastructure, a large bucket).
LONG_CLEANUP_STEP = StepOptions(
    start_to_close=timedelta(minutes=45),
    schedule_to_close=timedelta(hours=12),
    heartbeat=HEARTBEAT,
    retry=_retry(timedelta(seconds=60)),
)

# A notice is worth a few tries, never a failed tenant.
NOTICE_STEP = StepOptions(
    start_to_close=timedelta(seconds=30),
    schedule_to_close=timedelta(minutes=10),
    heartbeat=HEARTBEAT,
    retry=_retry(timedelta(seconds=60), attempts=5, initial=timedelta(seconds=2)),
)

# Appending audit events: a registry insert. Retried without limit, because
# events must not be lost; a run waits for its last append before it ends.
EVENT_STEP = StepOptions(
    start_to_close=timedelta(seconds=20),
    heartbeat=HEARTBEAT,
    retry=_retry(timedelta(seconds=30)),
)

# Switching sign-in or a deployment off or on (suspend, resume, grace
# period): a few provider calls; resuming a deployment waits until it is
# stable. A switch that cannot be made within two hours fails the run, which
# then switches back what it had switched.
ACCESS_STEP = StepOptions(
    start_to_close=timedelta(minutes=10),
    schedule_to_close=timedelta(hours=2),
    heartbeat=HEARTBEAT,
    retry=_retry(timedelta(seconds=60)),
)

# Switching back after a failed suspend, resume or undelete: longer, as
# stopping half-way leaves a tenant half-suspended.
ACCESS_UNDO_STEP = StepOptions(
    start_to_close=timedelta(minutes=10),
    schedule_to_close=timedelta(hours=6),
    heartbeat=HEARTBEAT,
    retry=_retry(timedelta(seconds=60)),
)

# A backup streams the tenant's schema or identity to storage: minutes for a
# large tenant. A backup that cannot be taken (a permanent error, or half a
# day of faults) stops the run before anything is destroyed.
BACKUP_STEP = StepOptions(
    start_to_close=timedelta(hours=2),
    schedule_to_close=timedelta(hours=12),
    heartbeat=HEARTBEAT,
    retry=_retry(timedelta(seconds=60)),
)


@dataclass(frozen=True)
class Undo:
    """What undoes a step, and what may be left when the undo fails for good."""

    rpc: Rpc
    # The undo's request, from the tenant as requested (or as recorded).
    request: Callable[[tenant_pb2.Tenant], Message]
    options: StepOptions
    # The resource the step makes (as in Tenant.resources), left if the undo fails.
    kind: str
    domain: str


@dataclass(frozen=True)
class Step:
    """One step of a lifecycle run: the activity it runs, with what options, and its undo."""

    name: str
    rpc: Rpc
    options: StepOptions
    undo: Undo | None = None


def _tid(tenant: tenant_pb2.Tenant) -> str:
    return tenant.tenant_id


def _steps(*steps: Step) -> dict[str, Step]:
    return {s.name: s for s in steps}


_ENABLE_ACCESS = Undo(
    IDENTITY.rpc("EnableTenantAccess"),
    lambda t: idp.EnableTenantAccessRequest(tenant_id=_tid(t)),
    ACCESS_UNDO_STEP,
    "idp_access",
    "idp",
)
_DISABLE_ACCESS = Undo(
    IDENTITY.rpc("DisableTenantAccess"),
    lambda t: idp.DisableTenantAccessRequest(tenant_id=_tid(t)),
    ACCESS_UNDO_STEP,
    "idp_access",
    "idp",
)
_RESUME_DEPLOYMENT = Undo(
    INFRASTRUCTURE.rpc("ResumeDeployment"),
    lambda t: infra.ResumeDeploymentRequest(tenant_id=_tid(t)),
    ACCESS_UNDO_STEP,
    "ecs_service_scale",
    "infra",
)
_SUSPEND_DEPLOYMENT = Undo(
    INFRASTRUCTURE.rpc("SuspendDeployment"),
    lambda t: infra.SuspendDeploymentRequest(tenant_id=_tid(t)),
    ACCESS_UNDO_STEP,
    "ecs_service_scale",
    "infra",
)

# Every step of every run, by the name its progress shows.
STEPS = _steps(
    # -- provisioning -------------------------------------------------------
    # Its undo is the run's last mark, MarkProvisionFailed, not an entry here.
    Step("mark_provisioning", TENANT_DATA.rpc("MarkProvisioning"), PROVISION_STEP),
    Step(
        "create_realm",
        IDENTITY.rpc("CreateRealm"),
        PROVISION_STEP,
        Undo(
            IDENTITY.rpc("DeleteRealm"),
            lambda t: idp.DeleteRealmRequest(tenant_id=_tid(t)),
            COMPENSATION_STEP,
            "idp_realm",
            "idp",
        ),
    ),
    Step(
        "create_oidc_client",
        IDENTITY.rpc("CreateOidcClient"),
        PROVISION_STEP,
        Undo(
            IDENTITY.rpc("DeleteOidcClient"),
            lambda t: idp.DeleteOidcClientRequest(tenant_id=_tid(t)),
            COMPENSATION_STEP,
            "idp_client",
            "idp",
        ),
    ),
    Step(
        "create_admin_user",
        IDENTITY.rpc("CreateAdminUser"),
        PROVISION_STEP,
        Undo(
            IDENTITY.rpc("DeleteAdminUser"),
            lambda t: idp.DeleteAdminUserRequest(tenant_id=_tid(t), email=t.admin.email),
            COMPENSATION_STEP,
            "idp_user",
            "idp",
        ),
    ),
    Step(
        "create_schema",
        TENANT_DATA.rpc("CreateTenantSchema"),
        PROVISION_STEP,
        Undo(
            TENANT_DATA.rpc("DropTenantSchema"),
            lambda t: tenantdb.DropTenantSchemaRequest(tenant_id=_tid(t)),
            COMPENSATION_STEP,
            "db_schema",
            "tenantdb",
        ),
    ),
    Step(
        "create_bucket",
        INFRASTRUCTURE.rpc("CreateBucket"),
        PROVISION_STEP,
        Undo(
            INFRASTRUCTURE.rpc("DeleteBucket"),
            lambda t: infra.DeleteBucketRequest(tenant_id=_tid(t)),
            LONG_COMPENSATION_STEP,
            "s3_bucket",
            "infra",
        ),
    ),
    Step(
        "create_dns_records",
        INFRASTRUCTURE.rpc("UpsertDnsRecords"),
        PROVISION_STEP,
        Undo(
            INFRASTRUCTURE.rpc("DeleteDnsRecords"),
            lambda t: infra.DeleteDnsRecordsRequest(tenant_id=_tid(t), domains=t.domains),
            COMPENSATION_STEP,
            "dns_record",
            "infra",
        ),
    ),
    Step(
        "apply_infrastructure",
        INFRASTRUCTURE.rpc("ApplyInfrastructure"),
        IAC_STEP,
        # The apply may never have written state: none is nothing to destroy.
        Undo(
            INFRASTRUCTURE.rpc("DestroyInfrastructure"),
            lambda t: infra.DestroyInfrastructureRequest(tenant_id=_tid(t)),
            LONG_COMPENSATION_STEP,
            "iac_stack",
            "infra",
        ),
    ),
    Step(
        "deploy_application",
        INFRASTRUCTURE.rpc("CreateDeployment"),
        DEPLOY_STEP,
        Undo(
            INFRASTRUCTURE.rpc("DeleteDeployment"),
            lambda t: infra.DeleteDeploymentRequest(tenant_id=_tid(t)),
            LONG_COMPENSATION_STEP,
            "ecs_service",
            "infra",
        ),
    ),
    Step(
        "record_resources",
        TENANT_DATA.rpc("RecordResources"),
        PROVISION_STEP,
        Undo(
            TENANT_DATA.rpc("DeleteResourceRecords"),
            lambda t: tenantdb.DeleteResourceRecordsRequest(tenant_id=_tid(t)),
            COMPENSATION_STEP,
            "resource_records",
            "tenantdb",
        ),
    ),
    # Its undo, too, is MarkProvisionFailed (allowed from ACTIVE for the run that marked it).
    Step("mark_active", TENANT_DATA.rpc("MarkActive"), PROVISION_STEP),
    Step("send_welcome", NOTIFICATION.rpc("SendNotice"), NOTICE_STEP),
    Step("mark_provision_failed", TENANT_DATA.rpc("MarkProvisionFailed"), CLEANUP_STEP),
    Step("send_failure_notice", NOTIFICATION.rpc("SendNotice"), NOTICE_STEP),
    Step("record_leftovers", TENANT_DATA.rpc("RecordLeftovers"), CLEANUP_STEP),
    # -- deprovisioning -----------------------------------------------------
    Step("read_record", TENANT_DATA.rpc("GetTenantRecord"), CLEANUP_STEP),
    Step("mark_deprovisioning", TENANT_DATA.rpc("MarkDeprovisioning"), CLEANUP_STEP),
    Step("send_deletion_notice", NOTIFICATION.rpc("SendNotice"), NOTICE_STEP),
    Step("backup_schema", TENANT_DATA.rpc("BackupTenantSchema"), BACKUP_STEP),
    Step("export_identity", IDENTITY.rpc("ExportIdentity"), BACKUP_STEP),
    Step("delete_admin_user", IDENTITY.rpc("DeleteAdminUser"), CLEANUP_STEP),
    Step("delete_oidc_client", IDENTITY.rpc("DeleteOidcClient"), CLEANUP_STEP),
    Step("delete_realm", IDENTITY.rpc("DeleteRealm"), CLEANUP_STEP),
    Step("drop_schema", TENANT_DATA.rpc("DropTenantSchema"), CLEANUP_STEP),
    # Emptying a large bucket takes a while.
    Step("delete_bucket", INFRASTRUCTURE.rpc("DeleteBucket"), LONG_CLEANUP_STEP),
    Step("delete_dns_records", INFRASTRUCTURE.rpc("DeleteDnsRecords"), CLEANUP_STEP),
    Step("delete_deployment", INFRASTRUCTURE.rpc("DeleteDeployment"), LONG_CLEANUP_STEP),
    Step("destroy_infrastructure", INFRASTRUCTURE.rpc("DestroyInfrastructure"), LONG_CLEANUP_STEP),
    Step("delete_resource_records", TENANT_DATA.rpc("DeleteResourceRecords"), CLEANUP_STEP),
    Step("mark_deprovisioned", TENANT_DATA.rpc("MarkDeprovisioned"), CLEANUP_STEP),
    Step("send_deprovisioned", NOTIFICATION.rpc("SendNotice"), NOTICE_STEP),
    Step("mark_deprovision_failed", TENANT_DATA.rpc("MarkDeprovisionFailed"), CLEANUP_STEP),
    # -- access: suspend, resume, the grace period and undelete ----------------
    Step("mark_suspending", TENANT_DATA.rpc("MarkAccessChanging"), CLEANUP_STEP),
    Step("mark_resuming", TENANT_DATA.rpc("MarkAccessChanging"), CLEANUP_STEP),
    Step("disable_access", IDENTITY.rpc("DisableTenantAccess"), ACCESS_STEP, _ENABLE_ACCESS),
    Step("enable_access", IDENTITY.rpc("EnableTenantAccess"), ACCESS_STEP, _DISABLE_ACCESS),
    Step("suspend_deployment", INFRASTRUCTURE.rpc("SuspendDeployment"), ACCESS_STEP, _RESUME_DEPLOYMENT),
    Step("resume_deployment", INFRASTRUCTURE.rpc("ResumeDeployment"), ACCESS_STEP, _SUSPEND_DEPLOYMENT),
    Step("mark_suspended", TENANT_DATA.rpc("MarkSuspended"), CLEANUP_STEP),
    Step("mark_resumed", TENANT_DATA.rpc("MarkResumed"), CLEANUP_STEP),
    Step("mark_access_change_failed", TENANT_DATA.rpc("MarkAccessChangeFailed"), CLEANUP_STEP),
    Step("send_suspended", NOTIFICATION.rpc("SendNotice"), NOTICE_STEP),
    Step("send_resumed", NOTIFICATION.rpc("SendNotice"), NOTICE_STEP),
    Step("mark_restored", TENANT_DATA.rpc("MarkRestored"), CLEANUP_STEP),
    Step("send_restored", NOTIFICATION.rpc("SendNotice"), NOTICE_STEP),
    Step("record_failed_operation", TENANT_DATA.rpc("RecordFailedOperation"), CLEANUP_STEP),
)


@dataclass(frozen=True)
class TierPlan:
    """What a plan tier gets, and so the steps its runs show, in order.

    Pooled tenants share the application: schema, identity, bucket and DNS.
    Bridge adds a deployment of the application of their own; silo adds
    dedicated infrastructure (IaC) that the deployment then runs on.
    """

    own_deployment: bool
    dedicated_infrastructure: bool

    @property
    def provision_steps(self) -> tuple[str, ...]:
        return (
            "mark_provisioning",
            "create_realm",
            "create_oidc_client",
            "create_admin_user",
            "create_schema",
            "create_bucket",
            "create_dns_records",
            *(("apply_infrastructure",) if self.dedicated_infrastructure else ()),
            *(("deploy_application",) if self.own_deployment else ()),
            "record_resources",
            "mark_active",
            "send_welcome",
        )

    @property
    def deprovision_steps(self) -> tuple[str, ...]:
        """Deprovisioning as first shipped: no grace period, no backup."""
        return self.teardown_steps(grace=False, backup=False)

    def teardown_steps(self, *, grace: bool, backup: bool) -> tuple[str, ...]:
        """Deprovisioning: a grace period (access off, notice, wait), a backup, removal."""
        return (
            "read_record",
            "mark_deprovisioning",
            *(("disable_access",) if grace else ()),
            *(("suspend_deployment",) if grace and self.own_deployment else ()),
            *(("send_deletion_notice", "grace_period") if grace else ()),
            *(("backup_schema", "export_identity") if backup else ()),
            *self.removal_steps,
            "mark_deprovisioned",
            "send_deprovisioned",
        )

    @property
    def removal_steps(self) -> tuple[str, ...]:
        return (
            "delete_admin_user",
            "delete_oidc_client",
            "delete_realm",
            "drop_schema",
            "delete_bucket",
            "delete_dns_records",
            *(("delete_deployment",) if self.own_deployment else ()),
            *(("destroy_infrastructure",) if self.dedicated_infrastructure else ()),
            "delete_resource_records",
        )

    def suspend_steps(self, *, claim: bool = False) -> tuple[str, ...]:
        return (
            "mark_suspending" if claim else "read_record",
            "disable_access",
            *(("suspend_deployment",) if self.own_deployment else ()),
            "mark_suspended",
            "send_suspended",
        )

    def resume_steps(self, *, claim: bool = False) -> tuple[str, ...]:
        return (
            "mark_resuming" if claim else "read_record",
            *(("resume_deployment",) if self.own_deployment else ()),
            "enable_access",
            "mark_resumed",
            "send_resumed",
        )

    def restore_steps(self, *, access_on: bool) -> tuple[str, ...]:
        """What an undelete during the grace period runs, after the wait."""
        return (
            *(("resume_deployment",) if access_on and self.own_deployment else ()),
            *(("enable_access",) if access_on else ()),
            "mark_restored",
            "send_restored",
        )


PLANS = {
    Tier.PLAN_TIER_POOLED: TierPlan(own_deployment=False, dedicated_infrastructure=False),
    Tier.PLAN_TIER_BRIDGE: TierPlan(own_deployment=True, dedicated_infrastructure=False),
    Tier.PLAN_TIER_SILO: TierPlan(own_deployment=True, dedicated_infrastructure=True),
}


def plan_for(tier: int) -> TierPlan:
    """The plan of a tier; an unknown tier is a bug upstream (the API checks)."""
    return PLANS[tier]  # type: ignore[index]


# Shown before a run has read the tenant's tier.
UNKNOWN_TIER_STEPS = ("read_record",)
