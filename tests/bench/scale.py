"""Scale-out per task queue: does a second and a fourth worker of one domain
do twice and four times the work of one?

`python -m tests.bench.scale` (`make bench-scale`) starts one stack and gives
every activity of one domain (`--domain`, idp by default) a fixed latency
(`--latency`, 500 ms) with a fault rule for every tenant and attempt
(libs/faults.py, `"*"`). That domain's workers get few activity slots
(`--slots`, TENANTRY_MAX_CONCURRENT_ACTIVITIES), so its work is bound by the
latency, not by the machine's CPU; the other workers keep their defaults,
one replica each. It then, in one run:

1. provisions `--tenants` pooled tenants through the API at `--concurrency`
   (enough to keep the slots of every replica busy) with 1, 2 and 4 replicas
   of the slow domain's worker; prints tenants/s, the ratio to one replica,
   and how busy the machine's CPUs were (well below 100%: latency-bound);
2. during the 1-replica run samples every queue's approximate backlog
   (DescribeTaskQueue with stats, the number KEDA's temporal trigger reads)
   every 0.5 s: only the slow domain's queue should back up;
3. with 2 replicas under a steady load, SIGKILLs one, starts it again after
   `--window` seconds, and prints tenants/s before, while one runs, and after;
   every tenant started must end ACTIVE.

The `bound` column is what the latency allows: slots x replicas over the
domain's steps x latency (idp: 3 steps, so 1.67 tenants/s per replica at
200 ms). A pooled tenant costs the whole stack about 0.4 CPU seconds, so two
cores carry some 4-5 tenants/s: at 200 ms the 4-replica bound (6.67/s) is
above that, and that run is CPU-bound however idle the machine is; a larger
`--latency` (0.5: 2.67/s with 4) keeps every run latency-bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
from temporalio.api.enums.v1 import DescribeTaskQueueMode, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from libs import lifecycle
from libs.contracts import IDENTITY, INFRASTRUCTURE, NOTIFICATION, TENANT_DATA, WORKFLOWS, Contract
from libs.devstack.stack import Stack
from libs.faults import EVERY_TENANT
from orchestrator.plan import STEPS, plan_for
from tenantry.orchestrator.v1 import orchestrator_pb2  # noqa: F401 (decodes run results)
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.bench.cpu import CpuMeter
from tests.bench.provision import embedded_pids, pids_of

DOMAINS: dict[str, Contract] = {
    "idp": IDENTITY,
    "tenantdb": TENANT_DATA,
    "infra": INFRASTRUCTURE,
    "notification": NOTIFICATION,
}
# Queue -> (the process that polls it, the kind of task it holds).
QUEUES: dict[str, tuple[str, TaskQueueType.ValueType]] = {
    WORKFLOWS.task_queue: ("orchestrator", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
    **{c.task_queue: (name, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY) for name, c in DOMAINS.items()},
}
REPLICAS = (1, 2, 4)
GOALS = {2: 1.8, 4: 3.2}
SAMPLE_EVERY = 0.5


def slow_steps(contract: Contract) -> int:
    """How many of a pooled run's steps run on the domain's queue (one after the other)."""
    steps = plan_for(tenant_pb2.PLAN_TIER_POOLED).provision_steps
    return sum(1 for step in steps if STEPS[step].rpc.task_queue == contract.task_queue)


def latency_rules(contract: Contract, seconds: float) -> dict[str, object]:
    """The fault rules that make every attempt of every rpc of the domain `seconds` slower."""
    return {
        EVERY_TENANT: [
            {"rpc": rpc.method, "mode": "delay_before", "seconds": seconds, "once": False}
            for rpc in contract.rpcs.values()
        ]
    }


async def backlog(client: Client, queue: str, kind: TaskQueueType.ValueType) -> int:
    """The queue's approximate backlog, as DescribeTaskQueue with stats reports it."""
    name = TaskQueue(name=queue)
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace, task_queue=name, task_queue_type=kind, report_stats=True
        )
    )
    if answer.HasField("stats"):
        return int(answer.stats.approximate_backlog_count)
    # Servers before the stats of the classic mode: the enhanced mode's unversioned queue.
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=name,
            api_mode=DescribeTaskQueueMode.DESCRIBE_TASK_QUEUE_MODE_ENHANCED,
            task_queue_types=[kind],
            report_stats=True,
        )
    )
    return sum(
        int(info.stats.approximate_backlog_count)
        for version in answer.versions_info.values()
        for info in version.types_info.values()
    )


@dataclass
class BacklogSamples:
    by_queue: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    async def sample(self, client: Client, stop: asyncio.Event) -> None:
        while not stop.is_set():
            counts = await asyncio.gather(*(backlog(client, q, kind) for q, (_, kind) in QUEUES.items()))
            for queue, count in zip(QUEUES, counts, strict=True):
                self.by_queue[queue].append(count)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)


class Load:
    """Pooled tenants through the API, `concurrency` at a time; remembers when each became ACTIVE."""

    def __init__(self, stack: Stack, client: Client, api: tenant_service_pb2_grpc.TenantServiceStub) -> None:
        assert stack.postgres is not None
        self.stack = stack
        self.client = client
        self.api = api
        self.run = uuid.uuid4().hex[:6]
        self.started: list[str] = []
        # Tenant -> when the registry marked it ACTIVE (epoch seconds).
        self.active_at: dict[str, float] = {}
        self._count = 0
        self._db: psycopg.AsyncConnection[tuple[Any, ...]] | None = None

    async def one(self, label: str) -> None:
        tid = f"s{self.run}-{label}-{self._count}"
        self._count += 1
        self.started.append(tid)
        spec = tenant_pb2.Tenant(
            display_name="Scale",
            plan_tier=tenant_pb2.PLAN_TIER_POOLED,
            domains=[f"{tid}.example.com"],
            admin=tenant_pb2.AdminContact(email=f"admin@{tid}.example.com"),
        )
        await self.api.CreateTenant(tenant_service_pb2.CreateTenantRequest(tenant_id=tid, tenant=spec))
        handle = self.client.get_workflow_handle(lifecycle.provision_workflow_id(tid))
        await handle.result(rpc_timeout=timedelta(seconds=120))
        [(state, at)] = await self.registry([tid])
        if state != "STATE_ACTIVE":
            raise RuntimeError(f"{tid} ended {state}")
        self.active_at[tid] = at

    async def registry(self, tids: list[str]) -> list[tuple[str, float]]:
        """(state, last update in epoch seconds) of the tenants in the registry."""
        if self._db is None:
            assert self.stack.postgres is not None
            self._db = await psycopg.AsyncConnection.connect(self.stack.postgres.url, autocommit=True)
        rows = await self._db.execute(
            "SELECT state, extract(epoch FROM update_time)::float FROM registry.tenants"
            " WHERE tenant_id = ANY(%s)",
            (tids,),
        )
        return [(str(s), float(t)) for s, t in await rows.fetchall()]

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()

    async def fixed(self, n: int, concurrency: int, label: str) -> float:
        """Provisions n tenants; returns tenants/s between the first completion and the
        last (the ramp-up, when nothing can have ended yet, left out)."""
        gate = asyncio.Semaphore(concurrency)
        first = len(self.started)

        async def guarded() -> None:
            async with gate:
                await self.one(label)

        await asyncio.gather(*(guarded() for _ in range(n)))
        ended = sorted(self.active_at[tid] for tid in self.started[first:])
        return (len(ended) - 1) / (ended[-1] - ended[0])

    async def steady(self, concurrency: int, label: str, stop: asyncio.Event, ramped: asyncio.Event) -> None:
        """Keeps `concurrency` tenants in flight until `stop`; returns when the last has ended.
        Sets `ramped` once as many have ended as are kept in flight (a steady state)."""
        first = len(self.started)

        async def lane() -> None:
            while not stop.is_set():
                await self.one(label)
                if sum(1 for tid in self.started[first:] if tid in self.active_at) >= concurrency:
                    ramped.set()

        await asyncio.gather(*(lane() for _ in range(concurrency)))

    def rate(self, since: float, until: float) -> float:
        done = sum(1 for at in self.active_at.values() if since <= at < until)
        return done / (until - since)


def scale_to(stack: Stack, domain: str, replicas: int, env: dict[str, str]) -> None:
    """Runs exactly `replicas` workers of the domain (the stack's own is replica 0)."""
    for i in range(1, max(REPLICAS)):
        key = f"{domain}-{i}"
        running = key in stack.services and stack.services[key].running
        if i < replicas and not running:
            stack.start_service(domain, replica=i, env=env)
        elif i >= replicas and running:
            stack.services[key].stop()


@dataclass
class Results:
    domain: str
    latency: float
    slots: int
    n: int
    concurrency: int
    steps: int = 0
    rates: dict[int, float] = field(default_factory=dict)
    # Replicas -> share of the machine's CPUs busy (everything on it), and
    # cores the stack's own processes kept busy, during that run.
    cpu_busy: dict[int, float] = field(default_factory=dict)
    stack_cores: dict[int, float] = field(default_factory=dict)
    backlog: dict[str, list[int]] = field(default_factory=dict)
    # Window -> (tenants/s, seconds long)
    kill: dict[str, tuple[float, float]] = field(default_factory=dict)
    kill_started: int = 0
    kill_active: int = 0


async def bench(domain: str, latency: float, slots: int, n: int, concurrency: int, window: float) -> Results:
    contract = DOMAINS[domain]
    results = Results(domain, latency, slots, n, concurrency, steps=slow_steps(contract))
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-scale-") as tmp:
        rules = Path(tmp) / "faults.json"
        rules.write_text("{}")  # no latency while the stack starts and warms up
        env = {
            "TENANTRY_MUTATIONS_PER_MINUTE": "600000",
            "TENANTRY_MUTATION_BURST": "10000",
            "TENANTRY_FAULT_INJECTION_FILE": str(rules),
        }
        slow_env = {"TENANTRY_MAX_CONCURRENT_ACTIVITIES": str(slots)}
        stack = Stack(Path(tmp) / "stack", extra_env=env).start()
        try:
            stack.services[domain].stop()
            stack.start_service(domain, env=slow_env)
            client = await Client.connect(stack.temporal_address, data_converter=stack.data_converter())
            async with stack.aio_channel() as channel:
                load = Load(stack, client, tenant_service_pb2_grpc.TenantServiceStub(channel))
                try:
                    await load.fixed(4, 4, "warm")  # pools, caches, first workflow tasks
                    rules.write_text(json.dumps(latency_rules(contract, latency)))
                    for replicas in REPLICAS:
                        scale_to(stack, domain, replicas, slow_env)
                        samples, stop = BacklogSamples(), asyncio.Event()
                        sampler = asyncio.create_task(samples.sample(client, stop)) if replicas == 1 else None
                        psutil.cpu_percent()
                        meter = CpuMeter(embedded_pids(stack) | pids_of(stack.services)).start()
                        began = time.perf_counter()
                        results.rates[replicas] = await load.fixed(n, concurrency, f"r{replicas}")
                        results.stack_cores[replicas] = sum(meter.stop().values()) / (
                            time.perf_counter() - began
                        )
                        results.cpu_busy[replicas] = psutil.cpu_percent()
                        if sampler is not None:
                            stop.set()
                            await sampler
                            results.backlog = dict(samples.by_queue)
                    scale_to(stack, domain, 2, slow_env)
                    await kill_one_of_two(stack, load, domain, slow_env, concurrency, window, results)
                finally:
                    await load.close()
        finally:
            stack.stop()
    return results


async def kill_one_of_two(
    stack: Stack,
    load: Load,
    domain: str,
    env: dict[str, str],
    concurrency: int,
    window: float,
    results: Results,
) -> None:
    stop, ramped = asyncio.Event(), asyncio.Event()
    first = len(load.started)
    steady = asyncio.create_task(load.steady(concurrency, "kill", stop, ramped))
    await ramped.wait()
    # The windows are what is measured: a fixed length each.
    began = time.time()
    await asyncio.sleep(window)
    killed = time.time()
    stack.services[f"{domain}-1"].kill()
    await asyncio.sleep(window)
    await asyncio.to_thread(stack.start_service, domain, replica=1, env=env)
    back = time.time()
    await asyncio.sleep(window)
    ended = time.time()
    stop.set()
    await steady
    results.kill = {
        "2 replicas, before the kill": (load.rate(began, killed), killed - began),
        "1 replica, killed one (incl. its restart)": (load.rate(killed, back), back - killed),
        "2 replicas, after it is back": (load.rate(back, ended), ended - back),
    }
    tids = load.started[first:]
    results.kill_started = len(tids)
    results.kill_active = sum(1 for state, _ in await load.registry(tids) if state == "STATE_ACTIVE")


def report(r: Results) -> None:
    print(
        f"\nscale-out of the {r.domain} worker: {r.latency * 1000:.0f} ms added to every {r.domain} activity"
        f" (fault rule for every tenant), {r.slots} activity slot(s) per {r.domain} replica"
        f" (TENANTRY_MAX_CONCURRENT_ACTIVITIES) so the work is latency-bound;"
        f" {r.n} pooled tenants per run at c={r.concurrency}; other workers 1 replica each"
    )
    print(
        f"latency bound: {r.slots} slot(s) x replicas / ({r.steps} {r.domain} steps x {r.latency:g} s);"
        f" CPU: the machine's (everything on it) and the stack's own processes' in cores"
    )
    print(
        f"{'replicas':<10} {'tenants/s':>10} {'ratio':>8} {'goal':>8} {'bound':>8}"
        f" {'machine CPU':>12} {'stack cores':>12}"
    )
    base = r.rates[1]
    for replicas, rate in r.rates.items():
        goal = f">= {GOALS[replicas]}x" if replicas in GOALS else ""
        bound = r.slots * replicas / (r.steps * r.latency)
        print(
            f"{replicas:<10} {rate:>10.2f} {rate / base:>7.2f}x {goal:>8} {bound:>8.2f}"
            f" {r.cpu_busy[replicas]:>11.0f}% {r.stack_cores[replicas]:>12.2f}"
        )
    print(f"\napproximate backlog during the 1-replica run, sampled every {SAMPLE_EVERY:g} s")
    print(f"{'queue':<24} {'polled by':<14} {'samples':>8} {'max':>6} {'mean':>7}")
    for queue, counts in r.backlog.items():
        process, _ = QUEUES[queue]
        print(f"{queue:<24} {process:<14} {len(counts):>8} {max(counts):>6} {statistics.mean(counts):>7.1f}")
    print(f"\nkill one of two {r.domain} replicas (SIGKILL) under a steady load at c={r.concurrency}")
    print(f"{'window':<44} {'seconds':>8} {'tenants/s':>10}")
    for name, (rate, seconds) in r.kill.items():
        print(f"{name:<44} {seconds:>8.1f} {rate:>10.2f}")
    print(f"(1 replica alone above: {r.rates[1]:.2f} tenants/s)")
    lost = r.kill_started - r.kill_active
    print(f"tenants started in this run: {r.kill_started}; ACTIVE: {r.kill_active}; lost: {lost}")
    if lost:
        raise SystemExit(f"{lost} tenants did not end ACTIVE")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--domain", choices=sorted(DOMAINS), default="idp")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds added to each of its activities")
    parser.add_argument("--slots", type=int, default=1, help="max concurrent activities per replica")
    parser.add_argument("--tenants", type=int, default=40, help="per replica count")
    parser.add_argument(
        "--concurrency", type=int, help="tenants in flight (default: 3 per slot of 4 replicas)"
    )
    parser.add_argument("--window", type=float, default=8.0, help="seconds of each kill-run window")
    args = parser.parse_args()
    concurrency = args.concurrency or 3 * args.slots * max(REPLICAS)
    report(asyncio.run(bench(args.domain, args.latency, args.slots, args.tenants, concurrency, args.window)))


if __name__ == "__main__":
    main()
