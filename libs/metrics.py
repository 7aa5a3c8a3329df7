"""Prometheus metrics: one `/metrics` endpoint per process, at
TENANTRY_METRICS_ADDRESS (host:port; unset, no endpoint and no cost).

Everything goes through the Temporal SDK's runtime, whose Prometheus exporter
serves the endpoint: the SDK's own metrics (`temporal_*`: task slots used and
available, poll results, schedule-to-start latency, each labelled with its
task queue) and Tenantry's (`tenantry_*`, named below). One exporter, so a
process that also has metrics of its own (the facade's rpcs) still has one
endpoint, and nothing else to install.

Lifecycle metrics are recorded from workflow code through
`workflow.metric_meter()`, which records nothing while a workflow replays: a
run's counters move once, whichever worker later replays its history. The
workflow meter adds `namespace`, `task_queue` and `workflow_type` labels.
Durations are seconds (the SDK's too: `durations_as_seconds`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError, FailureError
from temporalio.exceptions import CancelledError as TemporalCancelledError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from libs import config, logs
from tenantry.tenant.v1 import tenant_pb2

ADDRESS_SETTING = "TENANTRY_METRICS_ADDRESS"

# Lifecycle runs (recorded by WorkflowMetrics): labels kind, tier, outcome (and error_type).
RUNS_STARTED = "tenantry_runs_started_total"
RUNS_FINISHED = "tenantry_runs_finished_total"
RUN_DURATION = "tenantry_run_duration_seconds"
# Steps (recorded by orchestrator/run.py): labels step, outcome / error_type.
STEP_DURATION = "tenantry_step_duration_seconds"
STEP_FAILURES = "tenantry_step_failures_total"
COMPENSATIONS = "tenantry_compensations_total"
LEFTOVER_RESOURCES = "tenantry_leftover_resources_total"
# The facade (services/tenant_api/metrics.py): labels method, code.
API_REQUESTS = "tenantry_api_requests_total"
API_DURATION = "tenantry_api_request_duration_seconds"
WATCH_STREAMS = "tenantry_api_watch_streams"

# Outcomes of a run or a step.
COMPLETED, FAILED, CANCELLED, CONTINUED = "completed", "failed", "cancelled", "continued_as_new"

# Every tier's budget for a provisioning run (deploy/prometheus/tenantry-rules.yaml)
# must be a bucket boundary of RUN_DURATION: the alert counts runs above it.
RUN_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400, 604800, 2592000)
BUCKETS: Mapping[str, Sequence[float]] = {
    RUN_DURATION: RUN_BUCKETS,
    STEP_DURATION: (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
    API_DURATION: (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
}

_runtime: Runtime | None = None


def runtime() -> Runtime | None:
    """The process's Temporal runtime exporting to TENANTRY_METRICS_ADDRESS, made
    (and the endpoint opened) on first use; None when the setting is unset."""
    global _runtime
    if _runtime is None and config.optional(ADDRESS_SETTING):
        address = config.address(ADDRESS_SETTING)
        try:
            _runtime = Runtime(
                telemetry=TelemetryConfig(
                    # The SDK core's lines go to Python logging here too (JSON lines).
                    logging=logs.core_logging(),
                    metrics=PrometheusConfig(
                        bind_address=address, durations_as_seconds=True, histogram_bucket_overrides=BUCKETS
                    ),
                )
            )
        except Exception as err:  # the exporter's bind failed (port taken, bad host)
            raise config.ConfigError(f"{ADDRESS_SETTING}: cannot serve metrics on {address}: {err}") from err
    return _runtime


def meter() -> MetricMeter:
    """The process's meter (outside workflows); a no-op without an endpoint."""
    made = runtime()
    return made.metric_meter if made else MetricMeter.noop


# -- lifecycle runs (workflow code) ---------------------------------------------


class WorkflowMetrics(Interceptor):
    """Counts each lifecycle run's start and end, and times it, by kind
    (`provision`, `deprovision`, `suspend`, ...), tier and outcome."""

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _RunMetrics


class _RunMetrics(WorkflowInboundInterceptor):
    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        info = workflow.info()
        labels = {"kind": kind_of(info.workflow_type), "tier": tier_of(input.args)}
        runs = workflow.metric_meter().with_additional_attributes(labels)
        runs.create_counter(RUNS_STARTED, "lifecycle runs started").add(1)
        outcome: str | None = COMPLETED
        error_type = ""
        try:
            return await super().execute_workflow(input)
        except (asyncio.CancelledError, TemporalCancelledError):
            outcome = CANCELLED
            raise
        except workflow.ContinueAsNewError:
            outcome = CONTINUED
            raise
        except FailureError as err:
            outcome = FAILED
            error_type = (err.type or "") if isinstance(err, ApplicationError) else type(err).__name__
            raise
        except BaseException:
            # Any other error fails the workflow task, which Temporal retries:
            # the run has not ended.
            outcome = None
            raise
        finally:
            if outcome is not None:
                seconds = (workflow.now() - info.start_time).total_seconds()
                ended = {"outcome": outcome, "error_type": error_type}
                runs.create_counter(RUNS_FINISHED, "lifecycle runs finished").add(1, ended)
                runs.create_histogram_float(RUN_DURATION, "lifecycle run duration", "s").record(
                    seconds, {"outcome": outcome}
                )


def kind_of(workflow_type: str) -> str:
    """`tenantry.orchestrator.v1.TenantWorkflows.ProvisionTenant` -> `provision`."""
    name = workflow_type.rsplit(".", 1)[-1]
    return name.removesuffix("Tenant").lower() or name.lower()


def tier_of(args: Sequence[Any]) -> str:
    """The plan tier a run's request names (`pooled`, `bridge`, `silo`), or `unspecified`."""
    request = args[0] if args else None
    tier = getattr(getattr(request, "tenant", None), "plan_tier", 0) or getattr(request, "plan_tier", 0)
    try:
        return tenant_pb2.PlanTier.Name(tier).removeprefix("PLAN_TIER_").lower()
    except ValueError:  # a number this code does not know
        return "unspecified"


# -- steps (orchestrator/run.py, workflow code) ----------------------------------


def step_finished(step: str, seconds: float, outcome: str, error_type: str = "") -> None:
    """A step's activity (with its retries) ended: timed, and counted if it failed."""
    meter = workflow.metric_meter()
    meter.create_histogram_float(STEP_DURATION, "lifecycle step duration, retries included", "s").record(
        seconds, {"step": step, "outcome": outcome}
    )
    if outcome == FAILED:
        meter.create_counter(STEP_FAILURES, "lifecycle steps failed for good").add(
            1, {"step": step, "error_type": error_type}
        )


def compensated(step: str, *, undone: bool) -> None:
    """A step's undo ran: undone, or failed for good (what it made is left over)."""
    workflow.metric_meter().create_counter(COMPENSATIONS, "undos of started steps").add(
        1, {"step": step, "outcome": COMPLETED if undone else FAILED}
    )


def left_over(step: str, resource_kind: str, count: int) -> None:
    """Resources a failed undo may have left (listed on the tenant for CleanUpTenant)."""
    if count:
        workflow.metric_meter().create_counter(LEFTOVER_RESOURCES, "resources an undo could not remove").add(
            count, {"step": step, "resource_kind": resource_kind}
        )
