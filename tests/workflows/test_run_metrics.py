"""Lifecycle metrics recorded from workflow code (libs/metrics.py,
orchestrator/run.py), read from the SDK's metric buffer: every run, step, undo
and leftover counted once, also when every workflow task replays the whole
history (a worker without a workflow cache). Real dev server, fake activities."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.runtime import MetricBuffer, MetricBufferDurationFormat, Runtime, TelemetryConfig
from temporalio.worker import Worker

from libs import contracts, metrics
from libs.temporal import SANDBOX_RUNNER
from orchestrator.worker import WORKFLOWS
from tenantry.tenant.v1 import tenant_pb2
from tests.workflows.support import FakeDomains, start_provision

pytestmark = pytest.mark.timeout(120)


@asynccontextmanager
async def uncached(client: Client, fakes: FakeDomains) -> AsyncIterator[None]:
    """The fakes' workers and an orchestrator that replays the history on every task."""
    async with AsyncExitStack() as stack:
        for contract in contracts.ACTIVITY_CONTRACTS:
            worker = Worker(client, task_queue=contract.task_queue, activities=fakes.activities(contract))
            await stack.enter_async_context(worker)
        orchestrator = Worker(
            client,
            task_queue=contracts.WORKFLOWS.task_queue,
            workflows=list(WORKFLOWS),
            workflow_runner=SANDBOX_RUNNER,
            interceptors=[metrics.WorkflowMetrics()],
            max_cached_workflows=0,
        )
        await stack.enter_async_context(orchestrator)
        yield


class Recorded:
    """The buffer's updates: counters summed, histograms counted, by name and labels."""

    def __init__(self, buffer: MetricBuffer) -> None:
        self.updates = [
            (u.metric.name, dict(u.attributes), u.value)
            for u in buffer.retrieve_updates()
            if u.metric.name.startswith("tenantry_")
        ]

    def sum(self, name: str, **labels: str) -> float:
        return sum(v for n, attrs, v in self.updates if n == name and labels.items() <= attrs.items())

    def count(self, name: str, **labels: str) -> int:
        return sum(1 for n, attrs, _ in self.updates if n == name and labels.items() <= attrs.items())


async def test_a_provisioned_and_a_failed_run_are_counted_once_each_despite_replays(
    temporal_address: str,
) -> None:
    buffer = MetricBuffer(100_000, MetricBufferDurationFormat.SECONDS)
    client = await Client.connect(
        temporal_address, runtime=Runtime(telemetry=TelemetryConfig(metrics=buffer))
    )
    fakes = FakeDomains()
    async with uncached(client, fakes):
        _, ok = await start_provision(client)
        assert (await ok.result()).state == tenant_pb2.Tenant.STATE_ACTIVE
        # DNS fails for good; the bucket's undo too, leaving the bucket.
        fakes.fail = {"UpsertDnsRecords", "DeleteBucket"}
        _, failed = await start_provision(client)
        with pytest.raises(WorkflowFailureError):
            await failed.result()
    seen = Recorded(buffer)
    pooled = {"kind": "provision", "tier": "pooled"}

    assert seen.sum(metrics.RUNS_STARTED, **pooled) == 2
    assert seen.sum(metrics.RUNS_FINISHED, outcome="completed", **pooled) == 1
    assert seen.sum(metrics.RUNS_FINISHED, outcome="failed", error_type="ProvisionFailed", **pooled) == 1
    assert seen.count(metrics.RUN_DURATION, **pooled) == 2
    # The workflow meter names the queue and the workflow type too.
    [(_, labels, _)] = [
        u for u in seen.updates if u[0] == metrics.RUNS_FINISHED and u[1]["outcome"] == "failed"
    ]
    assert labels["task_queue"] == contracts.WORKFLOWS.task_queue
    assert labels["workflow_type"] == contracts.WORKFLOWS.rpc("ProvisionTenant").name

    # Each step once per run, however many times its workflow task replayed.
    assert seen.count(metrics.STEP_DURATION, step="create_bucket", outcome="completed") == 2
    assert seen.count(metrics.STEP_DURATION, step="mark_active") == 1
    assert seen.count(metrics.STEP_DURATION, step="create_dns_records", outcome="failed") == 1
    assert seen.sum(metrics.STEP_FAILURES, step="create_dns_records", error_type="Conflict") == 1
    assert seen.sum(metrics.STEP_FAILURES) == 1
    assert seen.sum(metrics.COMPENSATIONS, step="create_bucket", outcome="failed") == 1
    assert seen.sum(metrics.COMPENSATIONS, step="create_realm", outcome="completed") == 1
    assert seen.sum(metrics.LEFTOVER_RESOURCES, step="create_bucket", resource_kind="s3_bucket") == 1
    assert seen.sum(metrics.LEFTOVER_RESOURCES) == 1


def test_kinds_and_tiers_are_short_label_values() -> None:
    assert metrics.kind_of(contracts.WORKFLOWS.rpc("CleanUpTenant").name) == "cleanup"
    assert metrics.kind_of(contracts.WORKFLOWS.rpc("DeprovisionTenant").name) == "deprovision"
    request = contracts.WORKFLOWS.rpc("SuspendTenant").input_type(plan_tier=tenant_pb2.PLAN_TIER_SILO)
    assert metrics.tier_of([request]) == "silo"
    assert metrics.tier_of([contracts.WORKFLOWS.rpc("CleanUpTenant").input_type()]) == "unspecified"
    assert metrics.tier_of([]) == "unspecified"
