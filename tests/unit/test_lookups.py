"""runs.Lookups: the bounds on looks at runs under way (a fake gateway that counts)."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import WorkflowExecutionStatus

from services.tenant_api import errors
from services.tenant_api.runs import Lookups
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2


class Description:
    status = WorkflowExecutionStatus.RUNNING


class FakeRuns:
    """Counts describes and queries; each waits until `release` is set."""

    def __init__(self) -> None:
        self.describes = 0
        self.queries = 0
        self.release = asyncio.Event()
        self.down = False

    async def describe(self, workflow_id: str, run_id: str | None = None) -> Any:
        self.describes += 1
        await self.release.wait()
        if self.down:
            raise errors.unavailable("temporal")
        return Description()

    async def progress(self, workflow_id: str) -> orchestrator_pb2.RunProgress:
        self.queries += 1
        step = tenant_pb2.StepProgress(step="create_bucket", status=tenant_pb2.STEP_STATUS_RUNNING)
        return orchestrator_pb2.RunProgress(steps=[step], current_steps=["create_bucket"])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_reads_of_one_run_share_one_look_and_then_its_answer() -> None:
    runs, clock = FakeRuns(), Clock()
    lookups = Lookups(runs, ttl=1.0, concurrency=4, per_second=20, clock=clock)  # type: ignore[arg-type]
    reads = [asyncio.ensure_future(lookups.look("tenant/a/provision", "r1")) for _ in range(50)]
    await asyncio.sleep(0)
    runs.release.set()
    looks = await asyncio.gather(*reads)
    assert all(look is not None and look.running for look in looks)
    assert (runs.describes, runs.queries) == (1, 1)
    assert lookups.counts["shared"] == 49
    assert await lookups.look("tenant/a/provision", "r1") is looks[0]  # kept for the ttl
    clock.now = 1.5
    await lookups.look("tenant/a/provision", "r1")
    assert runs.describes == 2


async def test_looks_beyond_the_concurrency_or_the_rate_are_shed_not_queued() -> None:
    runs, clock = FakeRuns(), Clock()
    lookups = Lookups(runs, ttl=1.0, concurrency=2, per_second=3, clock=clock)  # type: ignore[arg-type]
    first = [asyncio.ensure_future(lookups.look(f"tenant/t{i}/provision")) for i in range(5)]
    await asyncio.sleep(0)
    # Two run, three are answered at once with nothing: the caller keeps the registry's view.
    done = [f for f in first if f.done()]
    assert len(done) == 3 and all(f.result() is None for f in done)
    runs.release.set()
    await asyncio.gather(*first)
    assert runs.describes == 2
    # The rate: 3 a second at most, on average; one more token per third of a second.
    answered = [await lookups.look(f"tenant/u{i}/provision") for i in range(5)]
    assert sum(a is not None for a in answered) == 1
    clock.now = 1.0
    assert await lookups.look("tenant/v/provision") is not None


async def test_a_temporal_that_does_not_answer_is_no_error_for_a_read() -> None:
    runs = FakeRuns()
    runs.down = True
    runs.release.set()
    lookups = Lookups(runs)  # type: ignore[arg-type]
    assert await lookups.look("tenant/a/provision") is None
    assert lookups.counts["failed"] == 1
