"""What observability costs a provisioning run: pooled tenants through the
API with one signal on and off, on one stack in the same run, alternating so
that drift of a shared machine hits both alike.

- `tracing`: every process exports every span to Jaeger (sampler always on),
  against OTEL_SDK_DISABLED.
- `metrics`: every process serves Prometheus metrics (TENANTRY_METRICS_ADDRESS)
  and is scraped every second, ten times Prometheus' usual interval, against
  no endpoint.

Prints tenants/s, p50/p95 of CreateTenant -> ACTIVE and the CPU per tenant
of all processes (Jaeger's included when tracing is on), and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from temporalio.client import Client

from libs.devstack.stack import SERVICES, Stack
from tests.bench.cpu import CpuMeter
from tests.bench.provision import embedded_pids, pids_of, tenantry

MODES = ("on", "off")
# The settings each process gets on top of the stack's, per signal and mode
# (an empty TENANTRY_METRICS_ADDRESS: no endpoint; absent: the stack's port).
SWITCHES: dict[str, dict[str, Mapping[str, str]]] = {
    "tracing": {"on": {}, "off": {"OTEL_SDK_DISABLED": "true"}},
    "metrics": {"on": {}, "off": {"TENANTRY_METRICS_ADDRESS": ""}},
}
SCRAPE_INTERVAL = 1.0


def switch(stack: Stack, signal: str, mode: str) -> None:
    """Restarts the six processes with the signal on or off (in order, each ready before the next)."""
    for name in SERVICES:
        stack.services[name].stop()
    for name in SERVICES:
        stack.start_service(name, env=SWITCHES[signal][mode])


@contextmanager
def scraping(stack: Stack) -> Iterator[None]:
    """Reads every process's metrics endpoint every SCRAPE_INTERVAL, as Prometheus would."""
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(SCRAPE_INTERVAL):
            for address in list(stack.metrics_addresses.values()):
                with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as answer:
                    answer.read()

    scraper = threading.Thread(target=scrape, name="scraper", daemon=True)
    scraper.start()
    try:
        yield
    finally:
        stop.set()
        scraper.join(timeout=10)


def start_stack(tmp: Path, signal: str) -> Stack:
    env = {"TENANTRY_MUTATIONS_PER_MINUTE": "600000", "TENANTRY_MUTATION_BURST": "10000"}
    if signal == "tracing":
        return Stack(tmp, extra_env=env | {"OTEL_TRACES_SAMPLER": "always_on"}, traces=True).start()
    return Stack(tmp, extra_env=env, metrics=True).start()


async def bench(signal: str, n: int, concurrency: int, rounds: int) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix=f"tenantry-bench-{signal}-") as tmp:
        stack = start_stack(Path(tmp), signal)
        try:
            client = await Client.connect(stack.temporal_address, data_converter=stack.data_converter())
            for _ in range(rounds):
                for mode in MODES:
                    switch(stack, signal, mode)
                    await tenantry(stack, client, 5, 5)  # warm-up: pools, caches, first tasks
                    with scraping(stack):
                        meter = CpuMeter(embedded_pids(stack) | pids_of(stack.services)).start()
                        figures = await tenantry(stack, client, n, concurrency)
                        spent = meter.stop()
                    figures["cpu_ms"] = sum(spent.values()) * 1000 / n
                    figures["jaeger_ms"] = spent.get("jaeger", 0.0) * 1000 / n
                    results[mode].append(figures)
        finally:
            stack.stop()
    return results


def report(signal: str, results: dict[str, list[dict[str, float]]], n: int, concurrency: int) -> None:
    what = (
        "every span to Jaeger"
        if signal == "tracing"
        else f"every process scraped every {SCRAPE_INTERVAL:g} s"
    )
    print(f"\n{signal} on ({what}) and off, {n} pooled tenants per round at c={concurrency}")
    print(f"{signal:<10} {'per s':>8} {'p50 ms':>8} {'p95 ms':>8} {'CPU ms/tenant':>14} {'of it Jaeger':>13}")
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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--signal", choices=sorted(SWITCHES), action="append", help="default: both")
    parser.add_argument("--tenants", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="on/off pairs, alternating")
    args = parser.parse_args()
    for signal in args.signal or sorted(SWITCHES):
        results = asyncio.run(bench(signal, args.tenants, args.concurrency, args.rounds))
        report(signal, results, args.tenants, args.concurrency)


if __name__ == "__main__":
    main()
