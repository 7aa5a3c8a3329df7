"""The facade's registry reads against psycopg_pool's `check` on checkout:
what a read costs, and the first reads after a PostgreSQL restart.

`python -m tests.bench.registry_pool` starts an embedded PostgreSQL of its
own and prints, for the Registry (no check; a read that meets a dead
connection is repeated on a new one) and for a pool that checks every
connection it hands out, the latency of sequential and concurrent reads and
of the reads right after a restart (the pool holds dead connections then).
The Registry reads a whole tenant record, the checked pool one column: the
per-read figures favour the check.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from psycopg_pool import AsyncConnectionPool

from libs.devstack.embedded import Postgres
from services.tenant_api.registry import Registry
from services.tenantdb.providers import TenantSpec
from services.tenantdb.providers.postgres import PostgresTenantData

TENANT = "bench-tenant"
SQL = "SELECT tenant_id FROM registry.tenants WHERE tenant_id = %s"
Read = Callable[[], Awaitable[object]]


def figures(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    p50 = statistics.median(ordered)
    return f"p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms, max {ordered[-1] * 1e3:.1f} ms"


async def timed(read: Read) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        await read()
        outcome = "ok"
    except Exception as err:  # how the read ends is the figure
        outcome = type(err).__name__
    return time.perf_counter() - start, outcome


async def measure(label: str, read: Read, database: Postgres, *, reads: int, concurrency: int) -> None:
    for _ in range(200):
        await read()
    sequential = [(await timed(read))[0] for _ in range(reads)]

    async def worker() -> list[float]:
        return [(await timed(read))[0] for _ in range(reads // concurrency)]

    concurrent = [s for part in await asyncio.gather(*(worker() for _ in range(concurrency))) for s in part]
    await asyncio.to_thread(database.restart)
    after = [await timed(read) for _ in range(concurrency)]
    print(f"{label}:")
    print(f"  sequential reads: {figures(sequential)}")
    print(f"  {concurrency} concurrent readers: {figures(concurrent)}")
    print(
        "  first reads one by one after a restart: "
        + ", ".join(f"{s * 1e3:.0f} ms {outcome}" for s, outcome in after)
    )


async def main(reads: int, concurrency: int) -> None:
    database = Postgres.start(Path(tempfile.mkdtemp()) / "pgdata", delete_on_stop=True)
    try:
        store = PostgresTenantData(database.url, max_connections=2)
        await store.open()
        spec = TenantSpec(TENANT, "Bench", "PLAN_TIER_POOLED", (f"{TENANT}.example.com",), "a@b.example.com")
        await store.mark_provisioning(spec, "bench")
        await store.close()

        registry = Registry(database.url)
        await registry.open()
        await measure(
            "Registry (no check, one retry on a new connection)",
            lambda: registry.get(TENANT),
            database,
            reads=reads,
            concurrency=concurrency,
        )
        await registry.close()

        pool = AsyncConnectionPool(
            database.url, max_size=10, timeout=2, check=AsyncConnectionPool.check_connection, open=False
        )
        await pool.open(wait=True)

        async def checked() -> object:
            async with pool.connection() as conn:
                return await (await conn.execute(SQL, (TENANT,))).fetchall()

        await measure(
            "pool with check=check_connection (no retry)",
            checked,
            database,
            reads=reads,
            concurrency=concurrency,
        )
        await pool.close()
    finally:
        database.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.reads, arguments.concurrency))
