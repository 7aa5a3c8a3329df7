"""The steps of each lifecycle run and the timeouts and retries of each kind
of step, in one place.

Whole-run limits (execution timeouts) are set by whoever starts a run, so
they live in libs/lifecycle.py: provisioning 6 h, deprovisioning 7 days
after its grace period, suspend/resume 1 day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.common import RetryPolicy

from libs.contracts import StepOptions
from libs.errors import NON_RETRYABLE_TYPES
from tenantry.tenant.v1 import tenant_pb2

Tier = tenant_pb2.PlanTier


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
            "delete_admin_user",
            "delete_oidc_client",
            "delete_realm",
            "drop_schema",
            "delete_bucket",
            "delete_dns_records",
            *(("delete_deployment",) if self.own_deployment else ()),
            *(("destroy_infrastructure",) if self.dedicated_infrastructure else ()),
            "delete_resource_records",
            "mark_deprovisioned",
            "send_deprovisioned",
        )

    @property
    def suspend_steps(self) -> tuple[str, ...]:
        return (
            "read_record",
            "disable_access",
            *(("suspend_deployment",) if self.own_deployment else ()),
            "mark_suspended",
            "send_suspended",
        )

    @property
    def resume_steps(self) -> tuple[str, ...]:
        return (
            "read_record",
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

_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[str(t) for t in NON_RETRYABLE_TYPES],
)

# A provisioning step: a few provider calls. A worker that dies mid-step is
# noticed at start-to-close; a domain that stays down for half an hour fails
# the run, which then compensates.
PROVISION_STEP = StepOptions(
    start_to_close=timedelta(seconds=20),
    schedule_to_close=timedelta(minutes=30),
    retry=_RETRY,
)

# Undo and teardown must finish however long a provider is down: retried
# without limit, backing off to once a minute.
CLEANUP_STEP = StepOptions(
    start_to_close=timedelta(seconds=60),
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=60),
        non_retryable_error_types=[str(t) for t in NON_RETRYABLE_TYPES],
    ),
)

# A notice is worth a few tries, never a failed tenant.
NOTICE_STEP = StepOptions(
    start_to_close=timedelta(seconds=30),
    schedule_to_close=timedelta(minutes=10),
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=2),
        maximum_interval=timedelta(seconds=60),
        maximum_attempts=5,
        non_retryable_error_types=[str(t) for t in NON_RETRYABLE_TYPES],
    ),
)

# Deploying waits until the service is stable (bounded by the infra worker);
# the heartbeat notices a dead worker within seconds, not at the timeout.
DEPLOY_STEP = StepOptions(
    start_to_close=timedelta(minutes=10),
    schedule_to_close=timedelta(minutes=40),
    heartbeat=timedelta(seconds=30),
    retry=_RETRY,
)

# Infrastructure as code can take many minutes (plan, apply or destroy).
IAC_STEP = StepOptions(
    start_to_close=timedelta(minutes=45),
    schedule_to_close=timedelta(hours=2),
    heartbeat=timedelta(seconds=30),
    retry=_RETRY,
)

# Teardown that can take long (a deployment, infrastructure, a large bucket)
# and heartbeats, and compensation as a whole: retried without limit like
# every cleanup; a dead worker is noticed at the heartbeat timeout.
LONG_CLEANUP_STEP = StepOptions(
    start_to_close=timedelta(minutes=45),
    heartbeat=timedelta(seconds=30),
    retry=CLEANUP_STEP.retry,
)

# Appending audit events: a registry insert. Retried without limit, because
# events must not be lost; a run waits for its last append before it ends.
EVENT_STEP = StepOptions(
    start_to_close=timedelta(seconds=20),
    retry=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        non_retryable_error_types=[str(t) for t in NON_RETRYABLE_TYPES],
    ),
)

# Switching sign-in or a deployment off or on (suspend, resume, grace
# period): a few provider calls, retried without limit like cleanup, since
# stopping half-way would leave a tenant half-suspended. Resuming a
# deployment waits until it is stable, so it heartbeats.
ACCESS_STEP = StepOptions(
    start_to_close=timedelta(minutes=10),
    heartbeat=timedelta(seconds=30),
    retry=CLEANUP_STEP.retry,
)

# A backup streams the tenant's schema or identity to storage: minutes for a
# large tenant, heartbeating. Retried without limit: nothing is removed
# until the backup is taken, and a backup that cannot be taken (a permanent
# error) stops the run before anything is destroyed.
BACKUP_STEP = StepOptions(
    start_to_close=timedelta(hours=2),
    heartbeat=timedelta(seconds=60),
    retry=CLEANUP_STEP.retry,
)
