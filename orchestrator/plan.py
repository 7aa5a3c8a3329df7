"""The steps of each lifecycle run and the timeouts and retries of each kind
of step, in one place."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from libs.contracts import StepOptions
from libs.errors import NON_RETRYABLE_TYPES

# Provisioning, pooled tier, in the order shown to users. The dependency graph
# (which steps run together) is in workflows.ProvisionTenantWorkflow.
PROVISION_STEPS = (
    "mark_provisioning",
    "create_realm",
    "create_oidc_client",
    "create_admin_user",
    "create_schema",
    "create_bucket",
    "create_dns_records",
    "record_resources",
    "mark_active",
    "send_welcome",
)

DEPROVISION_STEPS = (
    "read_record",
    "mark_deprovisioning",
    "delete_admin_user",
    "delete_oidc_client",
    "delete_realm",
    "drop_schema",
    "delete_bucket",
    "delete_dns_records",
    "delete_resource_records",
    "mark_deprovisioned",
    "send_deprovisioned",
)

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

PROVISION_TIMEOUT = timedelta(hours=2)
DEPROVISION_TIMEOUT = timedelta(days=7)
