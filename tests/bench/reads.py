"""`make bench`: watchers and reads at scale, on the embedded stack.

One stack, two facade processes on one address (SO_REUSEPORT). It
provisions tenants, puts some in a one-day grace period (a run under way that
waits: the watch stays open), then measures:

- GetTenant and ListTenants (page 50) at 50 and 200 callers, of settled
  tenants; GetTenant of tenants under way (bounded looks at their runs) with
  the orchestrator queue's backlog meanwhile; the settled reads again with
  the Temporal server frozen (SIGSTOP);
- 1,000 open watchers on the waiting tenants: CPU of every process and
  Temporal requests/s while they are idle, against the same with none;
- how soon a state change reaches every watcher (undelete of watched
  tenants: the record's update_time to the update's arrival);
- CreateTenant -> ACTIVE p50 with the watchers open against none.

`--facade-tree DIR` runs the facade processes from another checkout (for
example the commit before this issue, in a git worktree) against the same
stack: the "before" column of the same run.

Prints one table of `| figure | value | goal | command |`; `rows()` returns it.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import psutil
from google.protobuf import duration_pb2
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from libs.contracts import WORKFLOWS
from libs.devstack.processes import free_port
from libs.devstack.stack import SERVICES, Ports, Stack
from tenantry.orchestrator.v1 import orchestrator_pb2  # noqa: F401 (decodes run results)
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc

State = tenant_pb2.Tenant.State
COMMAND = "python -m tests.bench.reads"
Stub = tenant_service_pb2_grpc.TenantServiceStub


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def load(
    stubs: list[Stub], callers: int, seconds: float, call: Callable[[Stub, int], Awaitable[Any]]
) -> dict[str, float]:
    """`callers` loops calling `call` for `seconds`; rate, p50, p99 (ms) and errors."""
    latencies: list[float] = []
    failures = 0
    stop = time.perf_counter() + seconds

    async def caller(i: int) -> None:
        nonlocal failures
        stub = stubs[i % len(stubs)]
        n = 0
        while time.perf_counter() < stop:
            started = time.perf_counter()
            try:
                await call(stub, i * 100_000 + n)
            except grpc.aio.AioRpcError:
                failures += 1
            latencies.append(time.perf_counter() - started)
            n += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    elapsed = time.perf_counter() - started
    return {
        "rate": len(latencies) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "errors": failures,
    }


def temporal_requests(metrics_port: int) -> Counter[str]:
    """Requests the Temporal frontend has served so far, by operation (its Prometheus counter)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    served: Counter[str] = Counter()
    for line in text.splitlines():
        if (
            line.startswith(("service_requests{", "service_requests_total{"))
            and 'service_name="frontend"' in line
        ):
            operation = re.search(r'operation="([^"]*)"', line)
            served[operation.group(1) if operation else "?"] += float(line.rsplit(" ", 1)[1])
    return served


# The workers' own calls (long polls end every minute whatever else happens).
WORKER_OPERATIONS = ("Poll", "RecordWorkerHeartbeat", "ShutdownWorker", "DescribeNamespace", "GetSystemInfo")


def request_rate(before: Counter[str], after: Counter[str], seconds: float) -> tuple[float, str]:
    """Requests/s between two readings, but the workers' own, and the busiest operations."""
    delta = {
        op: after[op] - before.get(op, 0)
        for op in after
        if after[op] - before.get(op, 0) > 0 and not op.startswith(WORKER_OPERATIONS)
    }
    top = ", ".join(f"{op} {n / seconds:.2f}/s" for op, n in sorted(delta.items(), key=lambda kv: -kv[1])[:3])
    return sum(delta.values()) / seconds, top


def stack_processes(stack: Stack) -> dict[str, psutil.Process]:
    found: dict[str, psutil.Process] = {}
    for name, managed in [*stack.services.items(), *stack.embedded.items()]:
        if managed.popen is not None:
            found[name] = psutil.Process(managed.popen.pid)
    assert stack.postgres is not None
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if proc.info.get("name") == "postgres" and str(stack.state_dir) in cmdline:
            found["postgres"] = proc
    return found


def cpu_seconds(processes: dict[str, psutil.Process]) -> dict[str, float]:
    """CPU seconds so far of each process with its children (postgres backends)."""
    totals: dict[str, float] = {}
    for name, proc in processes.items():
        try:
            members = [proc, *proc.children(recursive=True)]
            totals[name] = sum(sum(p.cpu_times()[:2]) for p in members if p.is_running())
        except psutil.Error:
            totals[name] = 0.0
    return totals


async def idle_cost(
    stack: Stack, metrics_port: int, seconds: float
) -> tuple[float, tuple[float, str], dict[str, float]]:
    """(% of one core used by all stack processes, Temporal requests/s and the
    busiest operations, per process %) over `seconds`."""
    processes = stack_processes(stack)
    before, requests = cpu_seconds(processes), temporal_requests(metrics_port)
    started = time.perf_counter()
    await asyncio.sleep(seconds)  # the measuring window
    elapsed = time.perf_counter() - started
    after, served = cpu_seconds(processes), temporal_requests(metrics_port)
    per = {name: 100 * (after[name] - before.get(name, 0.0)) / elapsed for name in after}
    return sum(per.values()), request_rate(requests, served, elapsed), per


async def backlog(client: Client) -> int:
    """The orchestrator queue's approximate workflow-task backlog."""
    reply = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=WORKFLOWS.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            report_stats=True,
        )
    )
    return int(reply.stats.approximate_backlog_count) if reply.HasField("stats") else 0


@contextmanager
def frozen(stack: Stack) -> Iterator[None]:
    managed = stack.embedded["temporal"]
    assert managed.popen is not None
    top = psutil.Process(managed.popen.pid)
    members = [top, *top.children(recursive=True)]
    for proc in members:
        proc.suspend()
    try:
        yield
    finally:
        for proc in members:
            proc.resume()


class Bench:
    def __init__(self, stack: Stack, client: Client, channels: list[grpc.aio.Channel]) -> None:
        self.stack = stack
        self.client = client
        self.stubs = [Stub(c) for c in channels]
        self.run = uuid.uuid4().hex[:6]

    async def provision(self, count: int, concurrency: int, prefix: str) -> tuple[list[str], list[float]]:
        """Creates tenants and waits until each is ACTIVE (watching it); returns ids and latencies."""
        gate = asyncio.Semaphore(concurrency)
        ids = [f"r{self.run}-{prefix}-{i}" for i in range(count)]
        latencies: list[float] = []

        async def one(i: int, tid: str) -> None:
            async with gate:
                stub = self.stubs[i % len(self.stubs)]
                spec = tenant_pb2.Tenant(
                    display_name=f"Bench {i}",
                    plan_tier=tenant_pb2.PLAN_TIER_POOLED,
                    admin=tenant_pb2.AdminContact(email=f"admin@{tid}.example.com"),
                )
                started = time.perf_counter()
                await stub.CreateTenant(tenant_service_pb2.CreateTenantRequest(tenant_id=tid, tenant=spec))
                state = State.STATE_UNSPECIFIED
                while state not in (State.STATE_ACTIVE, State.STATE_PROVISION_FAILED):
                    call = stub.WatchTenant(tenant_service_pb2.WatchTenantRequest(name=f"tenants/{tid}"))
                    async for update in call:
                        state = update.tenant.state
                        if state == State.STATE_ACTIVE:
                            latencies.append(time.perf_counter() - started)
                            break
                if state != State.STATE_ACTIVE:
                    raise RuntimeError(f"{tid} ended {State.Name(state)}")

        await asyncio.gather(*(one(i, tid) for i, tid in enumerate(ids)))
        return ids, latencies

    async def grace(self, ids: list[str]) -> None:
        period = duration_pb2.Duration()
        period.FromTimedelta(timedelta(days=1))
        for i, tid in enumerate(ids):
            await self.stubs[i % len(self.stubs)].DeleteTenant(
                tenant_service_pb2.DeleteTenantRequest(name=f"tenants/{tid}", grace_period=period)
            )

    async def watchers(
        self, ids: list[str], per_tenant: int
    ) -> tuple[list[asyncio.Task[None]], list[asyncio.Queue]]:
        """per_tenant watchers on each tenant; each puts (receive time, update) in its queue."""
        tasks, queues = [], []
        opened = 0
        ready = asyncio.Event()
        total = len(ids) * per_tenant

        async def watch(stub: Stub, tid: str, queue: asyncio.Queue) -> None:
            nonlocal opened
            call = stub.WatchTenant(tenant_service_pb2.WatchTenantRequest(name=f"tenants/{tid}"))
            first = True
            async for update in call:
                if first:
                    first = False
                    opened += 1
                    if opened == total:
                        ready.set()
                    continue
                await queue.put((time.time(), update))

        n = 0
        for tid in ids:
            for _ in range(per_tenant):
                queue: asyncio.Queue = asyncio.Queue()
                tasks.append(asyncio.create_task(watch(self.stubs[n % len(self.stubs)], tid, queue)))
                queues.append(queue)
                n += 1
        await asyncio.wait_for(ready.wait(), 120)
        return tasks, queues


async def measure(args: argparse.Namespace) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []

    def add(figure: str, value: str, goal: str = "report", command: str = COMMAND) -> None:
        rows.append({"figure": figure, "value": value, "goal": goal, "command": command})
        print(f"| {figure} | {value} | {goal} |", flush=True)

    metrics_port = free_port()
    with tempfile.TemporaryDirectory(prefix="tenantry-reads-") as tmp:
        stack = Stack(
            Path(tmp),
            Ports(temporal_metrics=metrics_port),
            extra_env={
                "TENANTRY_MUTATIONS_PER_MINUTE": "6000000",
                "TENANTRY_MUTATION_BURST": "100000",
                "TENANTRY_MAX_WATCH_STREAMS": "100000",
                "TENANTRY_GRPC_REUSE_PORT": "on",
            },
        )
        facade_env = _tree_env(args.facade_tree)
        stack.start_embedded()
        try:
            for name in SERVICES:
                stack.start_service(name, env=facade_env if name == "tenant_api" else None)
            if args.facades > 1:
                for replica in range(1, args.facades):
                    stack.start_service("tenant_api", replica=replica, env=facade_env)
            client = await Client.connect(stack.temporal_address, data_converter=stack.data_converter())
            channels = [stack.aio_channel() for _ in range(args.channels)]
            bench = Bench(stack, client, channels)
            label = f" ({args.facades} facade processes)"

            ids, _ = await bench.provision(args.tenants, 10, "t")
            waiting, settled = ids[: args.grace], ids[args.grace :]
            await bench.grace(waiting)
            _, quiet = await bench.provision(args.latency_tenants, 1, "q")
            add(
                "CreateTenant -> ACTIVE p50, no watchers",
                f"{statistics.median(quiet) * 1000:.0f} ms",
            )

            async def get(stub: Stub, i: int, pool: list[str] = settled) -> None:
                tid = pool[i % len(pool)]
                await stub.GetTenant(tenant_service_pb2.GetTenantRequest(name=f"tenants/{tid}"), timeout=30)

            async def list_page(stub: Stub, i: int) -> None:
                await stub.ListTenants(tenant_service_pb2.ListTenantsRequest(page_size=50), timeout=30)

            for callers in (50, 200):
                g = await load(bench.stubs, callers, args.seconds, get)
                add(
                    f"GetTenant settled, {callers} callers{label}",
                    _figures(g),
                    ">= 3x before, p99 <= 40 ms" if callers == 50 else "report",
                )
                page = await load(bench.stubs, callers, args.seconds, list_page)
                add(
                    f"ListTenants page 50, {callers} callers{label}",
                    _figures(page),
                    ">= 3x before, p99 <= 60 ms" if callers == 50 else "report",
                )

            # Tenants under way: bounded looks; the orchestrator's backlog meanwhile.
            backlogs: list[int] = []

            async def sample_backlog() -> None:
                while True:
                    backlogs.append(await backlog(client))
                    await asyncio.sleep(0.5)  # the sampling period

            sampler = asyncio.create_task(sample_backlog())
            requests = temporal_requests(metrics_port)
            started = time.perf_counter()
            g = await load(bench.stubs, 200, args.seconds, lambda s, i: get(s, i, waiting))
            served, top = request_rate(
                requests, temporal_requests(metrics_port), time.perf_counter() - started
            )
            sampler.cancel()
            add(
                f"GetTenant under way (grace period), 200 callers{label}",
                f"{g['rate']:.0f}/s p99 {g['p99']:.1f} ms; Temporal {served:.0f} req/s ({top});"
                f" orchestrator backlog max {max(backlogs or [0])}",
                "backlog near 0",
            )

            with frozen(stack):
                g = await load(bench.stubs, 50, args.seconds, get)
                page = await load(bench.stubs, 50, args.seconds, list_page)
            add(
                "GetTenant settled, 50 callers, Temporal frozen",
                f"{g['rate']:.0f}/s p99 {g['p99']:.1f} ms ({g['errors']} errors)",
                "as fast as with it running",
            )
            add(
                "ListTenants page 50, 50 callers, Temporal frozen",
                f"{page['rate']:.0f}/s p99 {page['p99']:.1f} ms ({page['errors']} errors)",
                "as fast as with it running",
            )

            cpu0, rps0, _ = await idle_cost(stack, metrics_port, args.idle_seconds)
            per_tenant = max(1, args.watchers // len(waiting))
            tasks, queues = await bench.watchers(waiting, per_tenant)
            # Each feed asks once whether its run still runs, when it meets it: not idle cost.
            await asyncio.sleep(5)  # let the watchers' start settle before measuring
            cpu1, rps1, per = await idle_cost(stack, metrics_port, args.idle_seconds)
            busiest = ", ".join(f"{k} {v:.1f}%" for k, v in sorted(per.items(), key=lambda kv: -kv[1])[:4])
            add(
                f"{len(tasks)} idle watchers: CPU of all processes above idle",
                f"{cpu1 - cpu0:.1f}% of one core ({cpu0:.1f}% -> {cpu1:.1f}%; {busiest})",
                "< 5% of one core",
            )
            add(
                f"{len(tasks)} idle watchers: Temporal requests/s above idle (but the workers' polls)",
                f"{rps1[0] - rps0[0]:.2f}/s ({rps0[0]:.2f} -> {rps1[0]:.2f}: {rps1[1]})",
                "0/s",
            )
            _, busy = await bench.provision(args.latency_tenants, 1, "w")
            add(
                f"CreateTenant -> ACTIVE p50, {len(tasks)} watchers open",
                f"{statistics.median(busy) * 1000:.0f} ms"
                f" ({statistics.median(busy) / statistics.median(quiet):.2f}x)",
                "within 10% of none",
            )
            # A state change of watched tenants: undelete brings them back to ACTIVE.
            changed = waiting[: args.changes]
            for q in queues:
                while not q.empty():
                    q.get_nowait()
            for i, tid in enumerate(changed):
                await bench.stubs[i % len(bench.stubs)].UndeleteTenant(
                    tenant_service_pb2.UndeleteTenantRequest(name=f"tenants/{tid}")
                )
            delays: list[float] = []
            for q in queues[: len(changed) * per_tenant]:
                while True:
                    received, update = await asyncio.wait_for(q.get(), 60)
                    if update.tenant.state == State.STATE_ACTIVE and not update.heartbeat:
                        # update_time is the commit's transaction time, on this machine's clock.
                        delays.append(received - _epoch(update.tenant.update_time))
                        break
            add(
                f"state change to every watcher ({len(delays)} watchers of {len(changed)} tenants)",
                f"p50 {statistics.median(delays) * 1000:.0f} ms p99 {percentile(delays, 99) * 1000:.0f} ms",
                "p99 <= 100 ms",
            )
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for channel in channels:
                await channel.close()
        finally:
            stack.stop()
    return rows


def _tree_env(tree: str) -> dict[str, str]:
    """The facade's code from another checkout, ahead of this one's."""
    if not tree:
        return {}
    root = Path(tree).resolve()
    return {"PYTHONPATH": f"{root}:{root / 'libs' / 'gen'}"}


def _figures(f: dict[str, float]) -> str:
    return f"{f['rate']:.0f}/s p50 {f['p50']:.1f} ms p99 {f['p99']:.1f} ms ({f['errors']:.0f} errors)"


def _epoch(stamp: Any) -> float:
    return float(stamp.seconds) + stamp.nanos / 1e9


async def rows(**options: Any) -> list[dict[str, str]]:
    return await measure(parse([f"--{k.replace('_', '-')}={v}" for k, v in options.items()]))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=300)
    parser.add_argument("--grace", type=int, default=200, help="of them waiting out a grace period")
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=20, help="watched tenants undeleted for the latency")
    parser.add_argument("--latency-tenants", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--facades", type=int, default=2)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--facade-tree", default="", help="run the facade from this checkout")
    return parser.parse_args(argv)


def main() -> None:
    args = parse()
    print("| figure | value | goal |\n|---|---|---|")
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
