"""The facade's registry reads at scale: GetTenant and ListTenants pages over N tenants.

`python -m tests.bench.registry_scale --tenants 100000` starts an embedded
PostgreSQL of its own, creates the registry with the tenant-data provider's
DDL (tables and indexes as the worker makes them), fills it with N tenants
in one INSERT ... SELECT over generate_series (states, tiers and times
varied, three resource records per tenant, backups for the deprovisioned,
events for one tenant in ten), and measures through the facade's Registry
(the code path of GetTenant and ListTenants, without gRPC):

- GetTenant: `Registry.get` of random ids from 50 concurrent readers;
- ListTenants: pages of 1000, walked with keyset positions as the servicer
  makes them, for the default order, a state filter, a create_time range and
  `order_by create_time desc`;
- the plan nodes of each page query (EXPLAIN), to show which index it reads.

`run(n)` returns the figures as rows for `make bench`'s table.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import psycopg

from libs.devstack.embedded import Postgres
from services.tenant_api import filters
from services.tenant_api.registry import Registry, page_sql
from services.tenantdb.providers.postgres import PostgresTenantData

PAGE = 1000
PAGES = 15
GETS = 5000
CONCURRENCY = 50
COMMAND = "python -m tests.bench.registry_scale --tenants {n}"
# Every query ListTenants is measured with: (label, filter, order_by).
QUERIES = (
    ("default order", "", ""),
    ("state filter", "state = SUSPENDED", ""),
    (
        "create_time range",
        'create_time >= "2026-03-01T00:00:00Z" AND create_time < "2026-06-01T00:00:00Z"',
        "",
    ),
    ("order_by create_time desc", "", "create_time desc"),
)
# The registry's "now" for the generated times: fixed, so runs compare.
NOW = "2026-12-01T00:00:00Z"

# Weighted states (ACTIVE most), tiers, a year of create times, an update
# after it; ids `bench-0000001`...
_FILL = """
INSERT INTO registry.tenants (tenant_id, display_name, plan_tier, domains, admin_email,
    admin_given_name, admin_family_name, state, current_step, failed_step, failure_reason,
    workflow_id, run_id, create_time, update_time, purge_time, leftover_resources, last_operation)
SELECT id, 'Tenant ' || i, tier, ARRAY[id || '.example.com'], 'admin@' || id || '.example.com',
    'Ada', 'Admin', state, '', failed, CASE WHEN failed = '' THEN '' ELSE 'quota exceeded' END,
    'provision-' || id, 'run-' || i, created, created + (random() * interval '30 days'),
    CASE WHEN state = 'STATE_DEPROVISIONING' THEN %(now)s::timestamptz + interval '30 days' END,
    CASE WHEN failed = '' THEN '[]'::jsonb ELSE jsonb_build_array(jsonb_build_object('step', failed,
        'kind', 'bucket', 'resource_id', id, 'domain', 'infra', 'reason', 'access denied')) END,
    jsonb_build_object('kind', 'KIND_PROVISION',
        'outcome', CASE WHEN failed = '' THEN 'OUTCOME_SUCCEEDED' ELSE 'OUTCOME_FAILED' END,
        'workflow_id', 'provision-' || id, 'run_id', 'run-' || i,
        'start_time', to_char(created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'end_time', to_char((created + interval '40 seconds') AT TIME ZONE 'UTC',
                            'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
FROM (
    SELECT i, 'bench-' || lpad(i::text, 7, '0') AS id,
        (ARRAY['PLAN_TIER_POOLED', 'PLAN_TIER_POOLED', 'PLAN_TIER_BRIDGE', 'PLAN_TIER_SILO'])[1 + i %% 4]
            AS tier,
        CASE WHEN r < 0.80 THEN 'STATE_ACTIVE' WHEN r < 0.88 THEN 'STATE_SUSPENDED'
             WHEN r < 0.93 THEN 'STATE_DEPROVISIONED' WHEN r < 0.96 THEN 'STATE_PROVISION_FAILED'
             WHEN r < 0.98 THEN 'STATE_PROVISIONING' ELSE 'STATE_DEPROVISIONING' END AS state,
        CASE WHEN r >= 0.93 AND r < 0.96 THEN 'create_bucket' ELSE '' END AS failed,
        %(now)s::timestamptz - random() * interval '365 days' AS created
    FROM (SELECT i, random() AS r FROM generate_series(1, %(n)s) AS i) AS draws
) AS tenants
"""
_RESOURCES = """
INSERT INTO registry.tenant_resources (tenant_id, kind, resource_id, domain)
SELECT t.tenant_id, k.kind, k.kind || '-' || t.tenant_id, k.domain
FROM registry.tenants t,
    (VALUES ('realm', 'idp'), ('schema', 'tenantdb'), ('bucket', 'infra')) AS k (kind, domain)
WHERE t.state NOT IN ('STATE_DEPROVISIONED', 'STATE_PROVISION_FAILED')
"""
_BACKUPS = """
INSERT INTO registry.tenant_backups (tenant_id, kind, uri, size_bytes, sha256)
SELECT t.tenant_id, k.kind, 's3://backups/' || t.tenant_id || '/' || k.kind, 4096, repeat('ab', 32)
FROM registry.tenants t, (VALUES ('db_schema'), ('identity')) AS k (kind)
WHERE t.state = 'STATE_DEPROVISIONED'
"""
_EVENTS = """
INSERT INTO registry.tenant_events (tenant_id, "time", kind, step, state, run_id, sequence)
SELECT t.tenant_id, t.create_time + s * interval '1 second', 'KIND_STEP_COMPLETED', 'step-' || s, '',
    t.run_id, s
FROM registry.tenants t, generate_series(1, 10) AS s
WHERE right(t.tenant_id, 1) = '0'
"""


def percentile(seconds: list[float], fraction: float) -> float:
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def row(figure: str, value: str, goal: str, n: int) -> dict[str, str]:
    return {"figure": figure, "value": value, "goal": goal, "command": COMMAND.format(n=n)}


def latency_rows(label: str, seconds: list[float], n: int) -> list[dict[str, str]]:
    return [
        row(f"{label} p50", f"{statistics.median(seconds) * 1e3:.2f} ms", "report", n),
        row(f"{label} p99", f"{percentile(seconds, 0.99) * 1e3:.2f} ms", "none fixed; report", n),
    ]


async def fill(url: str, n: int) -> float:
    start = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT setseed(0.42)")
        await conn.execute(_FILL, {"n": n, "now": NOW})
        for statement in (_RESOURCES, _BACKUPS, _EVENTS):
            await conn.execute(statement)
        await conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - start


async def plan_nodes(url: str, query: filters.Query) -> str:
    """The node types (with index names) of the first page's plan."""
    statement, params = page_sql(query, after=None, limit=PAGE + 1)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(psycopg.sql.SQL("EXPLAIN (FORMAT JSON) {}").format(statement), params)
        found = await cur.fetchone()
    assert found is not None
    return " > ".join(nodes(found[0][0]["Plan"]))  # psycopg parses the json


def nodes(plan: dict[str, Any]) -> list[str]:
    name = plan["Node Type"] + (" Backward" if plan.get("Scan Direction") == "Backward" else "")
    name += f" {plan['Index Name']}" if "Index Name" in plan else ""
    return [name, *(n for child in plan.get("Plans", []) for n in nodes(child))]


async def timed(read: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await read()
    return time.perf_counter() - start


async def measure_gets(registry: Registry, n: int) -> list[float]:
    ids = [f"bench-{random.randint(1, n):07d}" for _ in range(GETS)]

    async def reader(part: list[str]) -> list[float]:
        return [await timed(lambda tid=tid: registry.get(tid)) for tid in part]  # type: ignore[misc]

    parts = [ids[i::CONCURRENCY] for i in range(CONCURRENCY)]
    return [s for part in await asyncio.gather(*(reader(p) for p in parts)) for s in part]


async def measure_pages(registry: Registry, query: filters.Query) -> list[float]:
    """PAGES consecutive pages of PAGE, each continued after the last row as the servicer's token says."""
    seconds: list[float] = []
    after: tuple[Any, str] | None = None
    for _ in range(PAGES):
        start = time.perf_counter()
        page = await registry.page(query=query, after=after, limit=PAGE + 1)
        seconds.append(time.perf_counter() - start)
        if len(page) <= PAGE:
            break
        last = page[PAGE - 1]
        field = query.order.field
        key = None if field == "tenant_id" else getattr(last, field).ToDatetime(tzinfo=UTC)
        after = (key, last.tenant_id)
    return seconds


async def run(n: int) -> list[dict[str, str]]:
    """Starts a database of its own, fills it with `n` tenants, and returns the figures as rows."""
    database = Postgres.start(Path(tempfile.mkdtemp()) / "pgdata", delete_on_stop=True)
    try:
        store = PostgresTenantData(database.url, max_connections=1)
        await store.open()  # the registry's tables and indexes, as the worker creates them
        await store.close()
        filled = await fill(database.url, n)
        rows = [row(f"fill {n} tenants (INSERT ... SELECT, VACUUM ANALYZE)", f"{filled:.1f} s", "report", n)]
        registry = Registry(database.url)
        await registry.open()
        try:
            for _ in range(200):  # warm the pool and the caches
                await registry.get("bench-0000001")
            rows += latency_rows(
                f"GetTenant (Registry.get, concurrency {CONCURRENCY})", await measure_gets(registry, n), n
            )
            for label, filter_text, order_by in QUERIES:
                query = filters.parse(filter_text, order_by)
                await measure_pages(registry, query)  # warm
                rows += latency_rows(
                    f"ListTenants page {PAGE}, {label}", await measure_pages(registry, query), n
                )
                rows.append(row(f"plan, {label}", await plan_nodes(database.url, query), "index scan", n))
        finally:
            await registry.close()
    finally:
        database.stop()
    return rows


def table(rows: list[dict[str, str]]) -> str:
    lines = ["| figure | value | goal | command |", "|---|---|---|---|"]
    lines += [f"| {r['figure']} | {r['value']} | {r['goal']} | `{r['command']}` |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=100_000)
    arguments = parser.parse_args()
    print(table(asyncio.run(run(arguments.tenants))))
