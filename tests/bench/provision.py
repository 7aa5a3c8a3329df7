"""`make bench`: tenants provisioned through the gRPC API against a raw
Temporal baseline, on the same dev server, in the same run.

Prints tenants/s and p50/p95/p99 of CreateTenant -> ACTIVE (seen in the
registry) at c=1 and c=10, then the same for baseline workflows with the same
graph of no-op activities on the same queues, and the ratio; and the CPU
each process spends per tenant at c=10, next to the baseline's per run.
`rows(n)` gives the same figures as table rows for a report.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import psycopg
from temporalio.client import Client

from libs import lifecycle
from libs.contracts import IDENTITY, INFRASTRUCTURE, NOTIFICATION, TENANT_DATA, WORKFLOWS
from libs.devstack.processes import ManagedProcess, free_port, grpc_serving, python_module
from libs.devstack.stack import SERVICES, Stack
from tenantry.orchestrator.v1 import orchestrator_pb2  # noqa: F401 (decodes run results)
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.bench.baseline import QUEUES, WORKFLOW_NAME
from tests.bench.cpu import CpuMeter
from tests.bench.cpu import table as cpu_table


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def measure(n: int, concurrency: int, one: Callable[[int], Awaitable[float]]) -> dict[str, float]:
    """Runs `one` n times, `concurrency` at a time; returns rate and latency percentiles."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def guarded(i: int) -> None:
        async with gate:
            latencies.append(await one(i))

    started = time.perf_counter()
    await asyncio.gather(*(guarded(i) for i in range(n)))
    elapsed = time.perf_counter() - started
    return {
        "rate": n / elapsed,
        "p50": statistics.median(latencies),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "n": n,
    }


async def tenantry(
    stack: Stack, client: Client, n: int, concurrency: int, tier: int = tenant_pb2.PLAN_TIER_POOLED
) -> dict[str, float]:
    """CreateTenant through the API, then wait for the run to end (a long
    poll, not a busy loop that would steal CPU from what is measured); the
    latency ends when the registry marked the tenant ACTIVE."""
    assert stack.postgres is not None
    run = uuid.uuid4().hex[:6]
    async with stack.aio_channel() as channel:
        api = tenant_service_pb2_grpc.TenantServiceStub(channel)
        db = await psycopg.AsyncConnection.connect(stack.postgres.url, autocommit=True)

        async def one(i: int) -> float:
            tid = f"b{run}-t{tier}-c{concurrency}-{i}"
            spec = tenant_pb2.Tenant(
                display_name=f"Bench {i}",
                plan_tier=tier,  # type: ignore[arg-type]
                domains=[f"{tid}.example.com"],
                admin=tenant_pb2.AdminContact(email=f"admin@{tid}.example.com"),
            )
            started = time.time()
            await api.CreateTenant(tenant_service_pb2.CreateTenantRequest(tenant_id=tid, tenant=spec))
            handle = client.get_workflow_handle(lifecycle.provision_workflow_id(tid))
            await handle.result(rpc_timeout=timedelta(seconds=60))
            async with db.cursor() as cur:
                await cur.execute(
                    "SELECT state, extract(epoch FROM update_time) FROM registry.tenants"
                    " WHERE tenant_id = %s",
                    (tid,),
                )
                state, active_at = await cur.fetchone()  # type: ignore[misc]
            if state != "STATE_ACTIVE":
                raise RuntimeError(f"{tid} ended {state}")
            return float(active_at) - started

        try:
            return await measure(n, concurrency, one)
        finally:
            await db.close()


async def baseline(client: Client, n: int, concurrency: int) -> dict[str, float]:
    run = uuid.uuid4().hex[:6]

    async def one(i: int) -> float:
        started = time.perf_counter()
        await client.execute_workflow(
            WORKFLOW_NAME, f"{run}-{i}", id=f"bench/{run}/c{concurrency}/{i}", task_queue=WORKFLOWS.task_queue
        )
        return time.perf_counter() - started

    return await measure(n, concurrency, one)


def start_baseline_workers(stack: Stack) -> dict[str, ManagedProcess]:
    """One worker process per queue, named as the process it stands in for."""
    workers = {}
    for queue in QUEUES:
        health = f"127.0.0.1:{free_port()}"
        process = ManagedProcess(
            f"baseline-{queue}",
            [*python_module("tests.bench.baseline"), "--queue", queue],
            log_dir=stack.log_dir,
            env={**stack.env(), "TENANTRY_HEALTH_ADDRESS": health},
            ready=lambda health=health: grpc_serving(health),  # type: ignore[misc]
        )
        workers[PROCESS_OF_QUEUE[queue]] = process.start()
    return {name: w.wait_ready() for name, w in workers.items()}


PROCESS_OF_QUEUE = {
    WORKFLOWS.task_queue: "orchestrator",
    TENANT_DATA.task_queue: "tenantdb",
    IDENTITY.task_queue: "idp",
    INFRASTRUCTURE.task_queue: "infra",
    NOTIFICATION.task_queue: "notification",
}


def embedded_pids(stack: Stack) -> dict[str, int]:
    """The stack's servers and this process (the bench client), by name."""
    assert stack.postgres is not None
    pids = {name: p.popen.pid for name, p in stack.embedded.items() if p.popen is not None}
    pids["postgres"] = stack.postgres.server.get_pid()  # type: ignore[attr-defined]
    pids["bench client"] = os.getpid()
    return pids


def pids_of(processes: dict[str, ManagedProcess]) -> dict[str, int]:
    return {name: p.popen.pid for name, p in processes.items() if p.popen is not None}


def row(label: str, figures: dict[str, float]) -> str:
    return (
        f"{label:<26} {figures['rate']:>8.2f} {figures['p50'] * 1000:>8.0f} "
        f"{figures['p95'] * 1000:>8.0f} {figures['p99'] * 1000:>8.0f}"
    )


@dataclass
class Results:
    n: int
    runs: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)
    tiers: dict[str, dict[str, float]] = field(default_factory=dict)
    # Phase ("tenantry", "baseline") -> process -> CPU seconds spent during its c=CPU_PHASE runs.
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)

    def ratio(self, c: int) -> float:
        return self.runs[("tenantry", c)]["rate"] / self.runs[("baseline", c)]["rate"]

    def cpu_ms(self, phase: str) -> float:
        return sum(self.cpu[phase].values()) * 1000 / self.n


# The phase whose CPU is measured: the one where the machine is the limit.
CPU_PHASE = 10


async def bench(
    n: int, concurrencies: list[int], tier_tenants: int, profile: Path | None = None, *, metrics: bool = False
) -> Results:
    """`profile`: an absolute directory where every process writes its cProfile when it stops;
    `metrics`: every process serves Prometheus metrics (libs/metrics.py), to measure what they cost."""
    results = Results(n)
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-") as tmp:
        # As many tenants as fast as they go, from one caller: no rate limit in the way.
        env = {"TENANTRY_MUTATIONS_PER_MINUTE": "600000", "TENANTRY_MUTATION_BURST": "10000"}
        if profile is not None:
            env["TENANTRY_PROFILE_DIR"] = str(profile)
        stack = Stack(Path(tmp), extra_env=env, metrics=metrics).start()
        try:
            client = await Client.connect(stack.temporal_address, data_converter=stack.data_converter())
            await tenantry(stack, client, 5, 5)  # warm-up: pools, caches, first workflow tasks
            for c in concurrencies:
                meter = CpuMeter(embedded_pids(stack) | pids_of(stack.services)).start()
                results.runs[("tenantry", c)] = await tenantry(stack, client, n, c)
                if c == CPU_PHASE:
                    results.cpu["tenantry"] = meter.stop()
            for name, tier in (
                ("pooled", tenant_pb2.PLAN_TIER_POOLED),
                ("bridge", tenant_pb2.PLAN_TIER_BRIDGE),
                ("silo", tenant_pb2.PLAN_TIER_SILO),
            ):
                if tier_tenants:
                    results.tiers[name] = await tenantry(stack, client, tier_tenants, 1, tier)
            # The baseline gets the same queues to itself.
            for name in SERVICES:
                stack.services[name].stop()
            workers = start_baseline_workers(stack)
            await baseline(client, 5, 5)
            for c in concurrencies:
                meter = CpuMeter(embedded_pids(stack) | pids_of(workers)).start()
                results.runs[("baseline", c)] = await baseline(client, n, c)
                if c == CPU_PHASE:
                    results.cpu["baseline"] = meter.stop()
            for worker in workers.values():
                worker.stop()
        finally:
            stack.stop()
    return results


def report(results: Results, concurrencies: list[int]) -> None:
    n = results.n
    print(f"\n{n} tenants per run; latency CreateTenant -> ACTIVE in ms (baseline: start -> completed)")
    print(f"{'run':<26} {'per s':>8} {'p50':>8} {'p95':>8} {'p99':>8}")
    for c in concurrencies:
        print(row(f"tenantry c={c}", results.runs[("tenantry", c)]))
        print(row(f"raw temporal c={c}", results.runs[("baseline", c)]))
        goal = RATIO_GOAL.get(c, 0.6)
        print(f"{'throughput ratio c=' + str(c):<26} {results.ratio(c):>8.2f}x   (target >= {goal}x)")
    if 1 in concurrencies:
        print(f"p50 at c=1: {results.runs[('tenantry', 1)]['p50'] * 1000:.0f} ms (target <= 500 ms)")
    if results.cpu:
        print(f"\nCPU per pooled tenant (baseline: per run) at c={CPU_PHASE}, by process, {n} runs each")
        print(cpu_table(results.cpu, dict.fromkeys(results.cpu, n)))
    if results.tiers:
        tier_tenants = round(next(iter(results.tiers.values()))["n"])
        print(f"\nper plan tier, {tier_tenants} tenants each at c=1; CreateTenant -> ACTIVE in ms")
        print(f"{'tier':<26} {'per s':>8} {'p50':>8} {'p95':>8} {'p99':>8}")
        for name, figures in results.tiers.items():
            print(row(name, figures))


RATIO_GOAL = {1: 0.6, 10: 0.65}


async def rows(n: int = 100, *, tier_tenants: int = 0) -> list[dict[str, str]]:
    """The provisioning figures as rows `figure | value | goal | command`, for a report."""
    results = await bench(n, [1, CPU_PHASE], tier_tenants)
    command = f".venv/bin/python -m tests.bench.provision --tenants {n} --tier-tenants {tier_tenants}"
    out = []

    def add(figure: str, value: str, goal: str = "") -> None:
        out.append({"figure": figure, "value": value, "goal": goal, "command": command})

    for c in (1, CPU_PHASE):
        mine, theirs = results.runs[("tenantry", c)], results.runs[("baseline", c)]
        add(f"pooled tenants/s at c={c}", f"{mine['rate']:.2f} (baseline {theirs['rate']:.2f})")
        add(f"throughput ratio at c={c}", f"{results.ratio(c):.2f}x", f">= {RATIO_GOAL[c]}x")
    add(
        "p50 CreateTenant -> ACTIVE at c=1",
        f"{results.runs[('tenantry', 1)]['p50'] * 1000:.0f} ms",
        "<= 500 ms",
    )
    add(
        f"CPU per pooled tenant at c={CPU_PHASE}, all processes",
        f"{results.cpu_ms('tenantry'):.0f} ms (baseline {results.cpu_ms('baseline'):.0f} ms)",
    )
    # Steadier than the throughput ratio on a shared machine: what the rate would be if CPU were the limit.
    add(
        "CPU ratio at c=10 (baseline / Tenantry)",
        f"{results.cpu_ms('baseline') / results.cpu_ms('tenantry'):.2f}x",
    )
    for name, spent in results.cpu["tenantry"].items():
        base = results.cpu["baseline"].get(name)
        add(
            f"CPU per pooled tenant at c={CPU_PHASE}: {name}",
            f"{spent * 1000 / n:.1f} ms"
            + (f" (baseline {base * 1000 / n:.1f} ms)" if base is not None else ""),
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10])
    parser.add_argument(
        "--tier-tenants", type=int, default=10, help="tenants per tier for the per-tier figures"
    )
    parser.add_argument(
        "--profile", type=Path, help="a directory for each process's cProfile (slows every process)"
    )
    parser.add_argument(
        "--metrics", action="store_true", help="every process serves metrics (TENANTRY_METRICS_ADDRESS)"
    )
    args = parser.parse_args()
    results = asyncio.run(
        bench(
            args.tenants,
            args.concurrency,
            args.tier_tenants,
            args.profile and args.profile.absolute(),
            metrics=args.metrics,
        )
    )
    report(results, args.concurrency)


if __name__ == "__main__":
    main()
