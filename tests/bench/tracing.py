"""What tracing costs a provisioning run: pooled tenants through the API with
every process exporting every span to Jaeger (sampler always on), and with
tracing off (OTEL_SDK_DISABLED), on one stack in the same run, alternating
so that drift of a shared machine hits both alike.

Prints tenants/s, p50/p95 of CreateTenant -> ACTIVE and the CPU per tenant
of all processes (Jaeger's included when on), and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from temporalio.client import Client

from libs.devstack.stack import SERVICES, Stack
from tests.bench.cpu import CpuMeter
from tests.bench.provision import embedded_pids, pids_of, tenantry

MODES = ("on", "off")


def switch(stack: Stack, mode: str) -> None:
    """Restarts the six processes with tracing on or off (in order, each ready before the next)."""
    env = {} if mode == "on" else {"OTEL_SDK_DISABLED": "true"}
    for name in SERVICES:
        stack.services[name].stop()
    for name in SERVICES:
        stack.start_service(name, env=env)


async def bench(n: int, concurrency: int, rounds: int) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="tenantry-bench-tracing-") as tmp:
        env = {
            "TENANTRY_MUTATIONS_PER_MINUTE": "600000",
            "TENANTRY_MUTATION_BURST": "10000",
            "OTEL_TRACES_SAMPLER": "always_on",
        }
        stack = Stack(Path(tmp), extra_env=env, traces=True).start()
        try:
            client = await Client.connect(stack.temporal_address, data_converter=stack.data_converter())
            for _ in range(rounds):
                for mode in MODES:
                    switch(stack, mode)
                    await tenantry(stack, client, 5, 5)  # warm-up: pools, caches, first tasks
                    meter = CpuMeter(embedded_pids(stack) | pids_of(stack.services)).start()
                    figures = await tenantry(stack, client, n, concurrency)
                    spent = meter.stop()
                    figures["cpu_ms"] = sum(spent.values()) * 1000 / n
                    figures["jaeger_ms"] = spent.get("jaeger", 0.0) * 1000 / n
                    results[mode].append(figures)
        finally:
            stack.stop()
    return results


def report(results: dict[str, list[dict[str, float]]], n: int, concurrency: int) -> None:
    print(f"\ntracing on (every span to Jaeger) and off, {n} pooled tenants per round at c={concurrency}")
    print(
        f"{'tracing':<10} {'per s':>8} {'p50 ms':>8} {'p95 ms':>8} {'CPU ms/tenant':>14} {'of it Jaeger':>13}"
    )
    summary = {}
    for mode, rounds in results.items():
        figures = {
            k: statistics.mean(r[k] for r in rounds) for k in ("rate", "p50", "p95", "cpu_ms", "jaeger_ms")
        }
        summary[mode] = figures
        print(
            f"{mode:<10} {figures['rate']:>8.2f} {figures['p50'] * 1000:>8.0f} "
            f"{figures['p95'] * 1000:>8.0f} {figures['cpu_ms']:>14.0f} {figures['jaeger_ms']:>13.0f}"
        )
    on, off = summary["on"], summary["off"]
    print(
        f"on / off: throughput {on['rate'] / off['rate']:.2f}x, p50 {on['p50'] / off['p50']:.2f}x, "
        f"CPU per tenant {on['cpu_ms'] / off['cpu_ms']:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="on/off pairs, alternating")
    args = parser.parse_args()
    report(asyncio.run(bench(args.tenants, args.concurrency, args.rounds)), args.tenants, args.concurrency)


if __name__ == "__main__":
    main()
