"""Every process's Prometheus endpoint (TENANTRY_METRICS_ADDRESS), scraped
before and after a provisioned tenant and a failed one: the lifecycle
counters, the facade's rpcs and the Temporal SDK's per-queue metrics move as
those runs say; every metric the alert rules and the dashboard name exists."""

from __future__ import annotations

import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from libs import contracts
from libs.devstack.stack import SERVICES, Stack
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import create, eventually, inject_failure, settle
from tests.support.monitoring import dashboard_expressions, metric_names, rule_expressions

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
State = tenant_pb2.Tenant.State
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Labels = frozenset[tuple[str, str]]


@dataclass
class Scrape:
    """The samples of every process's endpoint, by process."""

    samples: dict[str, dict[tuple[str, Labels], float]]

    def total(self, name: str, process: str | None = None, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels`."""
        wanted = set(labels.items())
        return sum(
            value
            for proc, samples in self.samples.items()
            if process in (None, proc)
            for (metric, have), value in samples.items()
            if metric == name and wanted <= have
        )

    def families(self) -> set[str]:
        """Every metric name served, with histograms' and counters' base names too."""
        names = {metric for samples in self.samples.values() for metric, _ in samples}
        return names | {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def scrape(stack: Stack) -> Scrape:
    samples: dict[str, dict[tuple[str, Labels], float]] = {}
    for process, address in stack.metrics_addresses.items():
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        found = samples[process] = {}
        for line in text.splitlines():
            matched = _SAMPLE.match(line)
            if matched and not line.startswith("#"):
                name, labels, value = matched.groups()
                found[(name, frozenset(_LABEL.findall(labels or "")))] = float(value)
    return Scrape(samples)


@dataclass
class Runs:
    before: Scrape
    after: Scrape
    ok: str
    failed: str

    def delta(self, name: str, process: str | None = None, **labels: str) -> float:
        return self.after.total(name, process, **labels) - self.before.total(name, process, **labels)


@pytest.fixture(scope="module")
def runs(stack: Stack, api: tenant_service_pb2_grpc.TenantServiceStub, fault_rules: Path) -> Iterator[Runs]:
    """A pooled tenant provisioned, and one whose DNS step fails and whose
    bucket's undo is refused for good (leaving the bucket), between two scrapes."""
    assert set(stack.metrics_addresses) >= set(SERVICES), stack.metrics_addresses
    before = scrape(stack)
    ok, failed = (f"e2e-{uuid.uuid4().hex[:10]}" for _ in range(2))
    inject_failure(
        fault_rules,
        failed,
        [{"rpc": "UpsertDnsRecords", "mode": "before"}, {"rpc": "DeleteBucket", "mode": "before"}],
    )
    try:
        create(api, ok, plan_tier=tenant_pb2.PLAN_TIER_POOLED)
        create(api, failed, plan_tier=tenant_pb2.PLAN_TIER_POOLED)
        assert settle(api, ok).state == State.STATE_ACTIVE
        assert settle(api, failed).state == State.STATE_PROVISION_FAILED
    finally:
        inject_failure(fault_rules, failed, None)
    # The SDK's exporter answers from what it has aggregated: the last runs'
    # counters are there once the workflow task that recorded them is done.
    provisioned = "tenantry_runs_finished_total"
    eventually(
        lambda: (
            scrape(stack).total(provisioned, kind="provision") - before.total(provisioned, kind="provision")
            >= 2
        ),
        what="both provisioning runs counted",
    )
    yield Runs(before, scrape(stack), ok, failed)
    # What the failed run left (its bucket) is removed, now that the undo is allowed.
    api.CleanUpTenant(tenant_service_pb2.CleanUpTenantRequest(name=f"tenants/{failed}"))


def test_runs_are_counted_by_kind_tier_and_outcome(runs: Runs) -> None:
    pooled = {"kind": "provision", "tier": "pooled"}
    assert runs.delta("tenantry_runs_started_total", "orchestrator", **pooled) >= 2
    assert runs.delta("tenantry_runs_finished_total", "orchestrator", outcome="completed", **pooled) >= 1
    assert (
        runs.delta(
            "tenantry_runs_finished_total",
            "orchestrator",
            outcome="failed",
            error_type="ProvisionFailed",
            **pooled,
        )
        >= 1
    )
    assert runs.delta("tenantry_run_duration_seconds_count", "orchestrator", outcome="failed", **pooled) >= 1


def test_the_failed_step_and_the_failed_undo_are_counted(runs: Runs) -> None:
    failures = runs.delta(
        "tenantry_step_failures_total", step="create_dns_records", error_type="InjectedFault"
    )
    assert failures >= 1
    assert (
        runs.delta("tenantry_step_duration_seconds_count", step="create_dns_records", outcome="failed") >= 1
    )
    assert runs.delta("tenantry_step_duration_seconds_count", step="create_bucket", outcome="completed") >= 2
    assert runs.delta("tenantry_compensations_total", step="create_bucket", outcome="failed") >= 1
    assert runs.delta("tenantry_compensations_total", step="create_realm", outcome="completed") >= 1
    assert (
        runs.delta("tenantry_leftover_resources_total", step="create_bucket", resource_kind="s3_bucket") >= 1
    )
    # The provisioned tenant's steps all completed: none of them failed.
    assert runs.delta("tenantry_step_failures_total", step="create_bucket") == 0


def test_the_facade_counts_its_rpcs_and_watch_streams(runs: Runs) -> None:
    assert runs.delta("tenantry_api_requests_total", "tenant_api", method="CreateTenant", code="OK") >= 2
    assert runs.delta("tenantry_api_request_duration_seconds_count", "tenant_api", method="CreateTenant") >= 2
    # settle() watched each tenant to its end: the streams closed.
    assert runs.delta("tenantry_api_requests_total", "tenant_api", method="WatchTenant") >= 2


def test_open_watch_streams_are_a_gauge(
    stack: Stack, api: tenant_service_pb2_grpc.TenantServiceStub, fault_rules: Path
) -> None:
    """A watch of a run that takes a few seconds (its bucket step waits) shows while it is open."""
    tid = f"e2e-{uuid.uuid4().hex[:10]}"
    open_before = scrape(stack).total("tenantry_api_watch_streams", "tenant_api")
    inject_failure(fault_rules, tid, [{"rpc": "CreateBucket", "mode": "delay_before", "seconds": 4}])
    try:
        create(api, tid)
        with ThreadPoolExecutor(1) as pool:
            watched = pool.submit(settle, api, tid)
            eventually(
                lambda: scrape(stack).total("tenantry_api_watch_streams", "tenant_api") == open_before + 1,
                what="the open stream shown",
            )
            assert watched.result(timeout=60).state == State.STATE_ACTIVE
    finally:
        inject_failure(fault_rules, tid, None)
    eventually(
        lambda: scrape(stack).total("tenantry_api_watch_streams", "tenant_api") == open_before,
        what="the closed stream gone",
    )


def test_a_refused_rpc_is_counted_with_its_code(
    stack: Stack, api: tenant_service_pb2_grpc.TenantServiceStub, runs: Runs
) -> None:
    def refused() -> float:
        return scrape(stack).total(
            "tenantry_api_requests_total", "tenant_api", method="GetTenant", code="NOT_FOUND"
        )

    before = refused()
    with pytest.raises(grpc.RpcError) as raised:
        api.GetTenant(tenant_service_pb2.GetTenantRequest(name=f"tenants/e2e-{uuid.uuid4().hex[:10]}"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    eventually(lambda: refused() == before + 1, what="the NOT_FOUND counted")


def test_every_worker_reports_task_slots_for_its_queue(runs: Runs) -> None:
    queues = {
        "orchestrator": (contracts.WORKFLOWS.task_queue, "WorkflowWorker"),
        "idp": (contracts.IDENTITY.task_queue, "ActivityWorker"),
        "infra": (contracts.INFRASTRUCTURE.task_queue, "ActivityWorker"),
        "notification": (contracts.NOTIFICATION.task_queue, "ActivityWorker"),
        "tenantdb": (contracts.TENANT_DATA.task_queue, "ActivityWorker"),
    }
    for process, (queue, worker_type) in queues.items():
        slots = {"task_queue": queue, "worker_type": worker_type}
        assert runs.after.total("temporal_worker_task_slots_available", process, **slots) > 0, process
        # Each worker ran tasks of these runs, and waited for them to be handed over.
        latency = (
            "temporal_workflow_task_schedule_to_start_latency_count"
            if worker_type == "WorkflowWorker"
            else "temporal_activity_schedule_to_start_latency_count"
        )
        assert runs.delta(latency, process, task_queue=queue) >= 1, process


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_the_dashboard_and_the_rules_name_only_metrics_that_exist(
    stack: Stack, runs: Runs, source: str
) -> None:
    expressions = dashboard_expressions() if source == "dashboard" else rule_expressions()
    named = set().union(*map(metric_names, expressions))
    assert len(named) >= 5, f"too few metric names found in the {source}: {sorted(named)}"
    # The SDK exports a metric once it is first recorded: empty polls only once
    # a long poll came back empty, up to a minute after a worker started.
    deadline = time.monotonic() + 90
    while (missing := sorted(named - scrape(stack).families())) and time.monotonic() < deadline:
        time.sleep(1)
    assert not missing, f"the {source} names metrics no process serves: {missing}"
