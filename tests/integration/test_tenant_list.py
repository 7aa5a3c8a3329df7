"""ListTenants with filter and order_by over a real registry: every order walks
the whole list by keyset tokens bound to the query, the page queries read
indexes, and the tenant-data worker's event retention deletes only old events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from services.tenant_api import auth, filters
from services.tenant_api.errors import ApiError
from services.tenant_api.page_tokens import PageTokens
from services.tenant_api.registry import Registry
from services.tenant_api.servicer import TenantService
from services.tenantdb import retention
from services.tenantdb.providers import EventRecord
from services.tenantdb.providers.postgres import PostgresTenantData
from tenantry.tenant.v1 import tenant_service_pb2 as pb
from tests.bench import registry_scale

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STATES = ("STATE_ACTIVE", "STATE_SUSPENDED", "STATE_DEPROVISIONED")
TIERS = ("PLAN_TIER_POOLED", "PLAN_TIER_SILO")
COUNT = 60


async def new_database(admin_url: str) -> str:
    """A database of the test's own: other tests' tenants do not show in its lists."""
    name = f"list_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return make_conninfo(admin_url, dbname=name)


@pytest.fixture(scope="module")
async def registry_url(postgres_url: str) -> AsyncIterator[str]:
    url = await new_database(postgres_url)
    store = PostgresTenantData(url, max_connections=1)
    await store.open()  # the tables and indexes, as the worker makes them
    await store.close()
    # Tenant i: create_time in steps of 5 (ties of 5 across page boundaries), update_time falling.
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for i in range(COUNT):
            await conn.execute(
                "INSERT INTO registry.tenants (tenant_id, display_name, plan_tier, admin_email, state,"
                " create_time, update_time) VALUES (%s, 'T', %s, 'a@b.example', %s, %s, %s)",
                [
                    f"t-{(i * 37) % COUNT:03d}",
                    TIERS[i % 2],
                    STATES[i % 3],
                    T0 + timedelta(minutes=i // 5),
                    T0 + timedelta(days=1, seconds=-i),
                ],
            )
    yield url


@pytest.fixture(scope="module")
async def service(registry_url: str) -> AsyncIterator[TenantService]:
    registry = Registry(registry_url)
    await registry.open()
    # ListTenants reads only the registry: no Temporal client.
    yield TenantService(None, registry, page_tokens=PageTokens(b"k" * 32))  # type: ignore[arg-type]
    await registry.close()


async def rows(url: str) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        cur = await conn.execute(
            "SELECT tenant_id, state, plan_tier, create_time, update_time FROM registry.tenants"
        )
        return await cur.fetchall()


async def walk(service: TenantService, size: int, **request: str) -> list[str]:
    seen: list[str] = []
    token = ""
    for _ in range(COUNT + 1):
        page = await service.ListTenants(
            pb.ListTenantsRequest(page_size=size, page_token=token, **request), None
        )  # type: ignore[arg-type]
        assert len(page.tenants) <= size
        seen.extend(t.tenant_id for t in page.tenants)
        token = page.next_page_token
        if not token:
            return seen
    raise AssertionError("the pages did not end")


async def refused(service: TenantService, **request: Any) -> list[tuple[str, str]]:
    with pytest.raises(ApiError) as err:
        await service.ListTenants(pb.ListTenantsRequest(**request), None)  # type: ignore[arg-type]
    assert err.value.reason == "INVALID_ARGUMENT"
    return err.value.violations


CASES = [
    ("", "", lambda r: True),
    ("state = ACTIVE", "", lambda r: r["state"] == "STATE_ACTIVE"),
    ("state != STATE_ACTIVE AND plan_tier = SILO", "create_time desc",
     lambda r: r["state"] != "STATE_ACTIVE" and r["plan_tier"] == "PLAN_TIER_SILO"),
    ("(state = ACTIVE OR state = DEPROVISIONED)", "update_time", lambda r: r["state"] != "STATE_SUSPENDED"),
    ('create_time >= "2026-01-01T00:03:00Z" AND create_time < "2026-01-01T09:00:00+09:00"', "create_time",
     lambda r: T0 + timedelta(minutes=3) <= r["create_time"] < T0 + timedelta(minutes=0)),
    ('create_time >= "2026-01-01T00:03:00Z" AND create_time < "2026-01-01T00:09:00Z"', "create_time",
     lambda r: T0 + timedelta(minutes=3) <= r["create_time"] < T0 + timedelta(minutes=9)),
    ('update_time <= "2026-01-01T23:59:30Z"', "tenant_id desc",
     lambda r: r["update_time"] <= T0 + timedelta(days=1, seconds=-30)),
]  # fmt: skip
ORDERS = {
    "": lambda r: r["tenant_id"],
    "tenant_id desc": lambda r: r["tenant_id"],
    "create_time": lambda r: (r["create_time"], r["tenant_id"]),
    "create_time desc": lambda r: (r["create_time"], r["tenant_id"]),
    "update_time": lambda r: (r["update_time"], r["tenant_id"]),
}


@pytest.mark.parametrize(("text", "order_by", "keep"), CASES)
@pytest.mark.parametrize("size", [1, 7, 1000])
async def test_every_filter_and_order_walks_the_whole_list_once(
    service: TenantService, registry_url: str, text: str, order_by: str, keep: Any, size: int
) -> None:
    expected = sorted(
        (r for r in await rows(registry_url) if keep(r)),
        key=ORDERS[order_by],
        reverse=order_by.endswith("desc"),
    )
    assert await walk(service, size, filter=text, order_by=order_by) == [r["tenant_id"] for r in expected]


async def test_a_token_continues_only_its_own_query(service: TenantService) -> None:
    first = await service.ListTenants(
        pb.ListTenantsRequest(page_size=5, filter="state = ACTIVE", order_by="create_time"), None
    )  # type: ignore[arg-type]
    token = first.next_page_token
    assert token
    # Another spelling of the same query continues it.
    same = await service.ListTenants(
        pb.ListTenantsRequest(
            page_size=5, filter="state=STATE_ACTIVE", order_by=" create_time asc", page_token=token
        ),
        None,  # type: ignore[arg-type]
    )
    assert same.tenants and same.tenants[0].tenant_id not in {t.tenant_id for t in first.tenants}
    for other in (
        {"filter": "state = SUSPENDED", "order_by": "create_time"},
        {"filter": "state = ACTIVE", "order_by": "create_time desc"},
        {"filter": "state = ACTIVE"},
        {"order_by": "create_time"},
        {},
    ):
        violations = await refused(service, page_token=token, **other)
        assert violations == [
            ("page_token", "not a token returned by ListTenants for this filter and order_by")
        ]
    # An unfiltered token in id order is still the one made before filters existed.
    plain = await service.ListTenants(pb.ListTenantsRequest(page_size=2), None)  # type: ignore[arg-type]
    assert (
        PageTokens(b"k" * 32).decode(plain.next_page_token, scope="ListTenants")
        == plain.tenants[-1].tenant_id
    )


async def test_a_bad_filter_or_order_by_is_a_field_violation(service: TenantService) -> None:
    [(field, problem)] = await refused(service, filter="state = FOO")
    assert field == "filter" and problem.startswith("state is one of PENDING, PROVISIONING, ACTIVE,")
    assert await refused(service, order_by="display_name") == [
        ("order_by", "must be tenant_id, create_time or update_time, optionally followed by desc")
    ]
    both = await refused(service, filter="name = x", order_by="x", page_size=-1, page_token="garbage")
    assert [f for f, _ in both] == ["page_size", "filter", "order_by"]


async def test_a_tenant_scoped_caller_sees_only_its_tenants_with_a_filter(service: TenantService) -> None:
    mine = frozenset({"t-001", "t-002", "t-003", "t-004", "t-010"})
    token = auth._VIEW_SCOPE.set(mine)
    try:
        seen = await walk(service, 2, filter="plan_tier = SILO", order_by="update_time desc")
    finally:
        auth._VIEW_SCOPE.reset(token)
    everyone = await walk(service, 100, filter="plan_tier = SILO", order_by="update_time desc")
    assert seen == [t for t in everyone if t in mine] and seen


async def test_the_page_queries_read_indexes_at_scale(postgres_url: str) -> None:
    """The planner's own choice on 20,000 tenants (ANALYZEd), no planner
    setting forced: at that size it picks a sequential scan and a sort
    where no index fits (it did for create_time desc before the indexes),
    so these plans are the ones production gets. The resource and backup
    lists are index scans per row."""
    url = await new_database(postgres_url)
    store = PostgresTenantData(url, max_connections=1)
    await store.open()
    await store.close()
    await registry_scale.fill(url, 20_000)
    plans = {}
    for label, text, order_by in registry_scale.QUERIES:
        plans[label] = await registry_scale.plan_nodes(url, filters.parse(text, order_by))
    # Each page finds its ids by walking an index in the page's order (or the
    # filter's) and stops at the limit, then fetches those rows by primary
    # key: no sequential scan anywhere, no sort of all the matches.
    for label, plan in plans.items():
        assert "Seq Scan" not in plan, (label, plan)
        assert "Limit > Index" in plan, (label, plan)
        assert "Index Scan tenants_pkey" in plan, (label, plan)
    assert "Limit > Index Only Scan tenants_state" in plans["state filter"]
    assert "Limit > Index Only Scan Backward tenants_create_time" in plans["order_by create_time desc"]


async def test_event_retention_deletes_old_events_and_keeps_recent_ones(postgres_url: str) -> None:
    url = await new_database(postgres_url)
    store = PostgresTenantData(url, max_connections=2)
    await store.open()
    try:
        now = datetime.now(UTC)

        def event(run_id: str, sequence: int, age: timedelta) -> EventRecord:
            return EventRecord(run_id=run_id, sequence=sequence, kind="KIND_STEP_COMPLETED", time=now - age)

        old = [event("r-old", s, timedelta(days=40, seconds=s)) for s in range(1, 26)]
        recent = [event("r-new", s, timedelta(days=29, seconds=s)) for s in range(1, 6)]
        await store.append_events("acme", old + recent)
        assert await retention.prune(store, 0) == 0  # 0 keeps them for ever
        # In batches of 10: three batches, the last one short.
        assert await retention.prune(store, 30, batch=10) == 25
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute("SELECT run_id, count(*) FROM registry.tenant_events GROUP BY run_id")
            assert await cur.fetchall() == [("r-new", 5)]
        assert await retention.prune(store, 30, batch=10) == 0
    finally:
        await store.close()


def test_the_retention_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(retention.VARIABLE, raising=False)
    assert retention.retention_days() == 365
    monkeypatch.setenv(retention.VARIABLE, "0")
    assert retention.retention_days() == 0
    for bad in ("-1", "ten", "99999"):
        monkeypatch.setenv(retention.VARIABLE, bad)
        with pytest.raises(retention.ConfigError):
            retention.retention_days()
