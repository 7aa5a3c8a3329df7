"""The benchmark's baseline (tests/bench/baseline.py) schedules what a real
pooled ProvisionTenant run schedules: the same activities, on the same
queues, with the same options, as many times. A plan or audit change that
the baseline does not follow fails here."""

from __future__ import annotations

import uuid
from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from libs import contracts
from libs.temporal import SANDBOX_RUNNER
from orchestrator.plan import plan_for
from tests.bench import baseline
from tests.workflows.support import POOLED, FakeDomains, running, start_provision

Scheduled = tuple[str, str, tuple[float, float, float], bytes]


async def scheduled(handle: WorkflowHandle[Any, Any]) -> Counter[Scheduled]:
    """Each activity the run scheduled: name, queue, timeouts and retry policy."""
    found: Counter[Scheduled] = Counter()
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = event.activity_task_scheduled_event_attributes
            timeouts = (
                a.start_to_close_timeout.ToTimedelta().total_seconds(),
                a.schedule_to_close_timeout.ToTimedelta().total_seconds(),
                a.heartbeat_timeout.ToTimedelta().total_seconds(),
            )
            retry = a.retry_policy.SerializeToString()
            found[(a.activity_type.name, a.task_queue.name, timeouts, retry)] += 1
    return found


def by_queue(counts: Counter[Scheduled]) -> Counter[tuple[str, str]]:
    return Counter({(name, queue): n for (name, queue, _, _), n in counts.items()})


async def test_the_baseline_schedules_what_a_pooled_run_schedules(client: Client) -> None:
    async with running(client, FakeDomains()):
        _, handle = await start_provision(client, POOLED)
        await handle.result()
        real = await scheduled(handle)

    async with AsyncExitStack() as stack:
        for contract in contracts.ACTIVITY_CONTRACTS:
            worker = Worker(client, task_queue=contract.task_queue, activities=baseline.noops(contract))
            await stack.enter_async_context(worker)
        await stack.enter_async_context(
            Worker(
                client,
                task_queue=contracts.WORKFLOWS.task_queue,
                workflows=[baseline.BaselineProvision],
                workflow_runner=SANDBOX_RUNNER,
            )
        )
        handle = await client.start_workflow(
            baseline.WORKFLOW_NAME,
            "t",
            id=f"bench/{uuid.uuid4().hex}",
            task_queue=contracts.WORKFLOWS.task_queue,
        )
        await handle.result()
        bench = await scheduled(handle)

    assert bench == real
    # What the baseline says of itself, too: 10 steps and 3 audit appends.
    assert by_queue(real) == Counter(baseline.activities(plan_for(POOLED)))
    assert sum(real.values()) == len(plan_for(POOLED).provision_steps) + 3
    append = (baseline.APPEND_RPC.name, baseline.APPEND_RPC.task_queue)
    assert by_queue(real)[append] == 3
