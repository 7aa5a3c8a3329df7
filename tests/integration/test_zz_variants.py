"""The facade while its registry database restarts or is down: every call
answers UNAVAILABLE (ErrorInfo DEPENDENCY_UNAVAILABLE with a RetryInfo) within
a bound, never INTERNAL, and the calls succeed again as soon as the database
is back.

The module runs its own embedded PostgreSQL (the session one is shared and
must not be restarted), the real gRPC server on a free port, and a Temporal
client of the session's dev server.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from temporalio.client import Client

from libs.devstack.embedded import Postgres
from services.tenant_api.registry import Registry
from services.tenant_api.server import create_server
from services.tenantdb.providers import EventRecord, TenantSpec
from services.tenantdb.providers.postgres import PostgresTenantData
from tenantry.tenant.v1 import tenant_service_pb2, tenant_service_pb2_grpc

ACTIVE = "outage-active"
GONE = "outage-gone"
THREADS = 8
# What a call may take while the database is down, and how soon after it is
# back every call must succeed again.
OUTAGE_BOUND = 3.0
RECOVERY_BOUND = 2.0
import os, psycopg
from services.tenant_api import errors
OUTAGE = float(os.environ.get("OUTAGE", "4"))


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = Postgres.start(tmp_path_factory.mktemp("outage") / "pgdata", delete_on_stop=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def records(database: Postgres) -> None:
    """The registry tables, an ACTIVE tenant with a few events and a
    DEPROVISIONED one, written by the tenant-data provider."""
    store = PostgresTenantData(database.url, max_connections=2)
    await store.open()
    try:
        for tid in (ACTIVE, GONE):
            spec = TenantSpec(
                tenant_id=tid,
                display_name="Outage Corp",
                plan_tier="PLAN_TIER_POOLED",
                domains=(f"{tid}.example.com",),
                admin_email=f"ada@{tid}.example.com",
            )
            await store.mark_provisioning(spec, f"provision-{tid}")
            await store.mark_active(tid)
        await store.mark_deprovisioning(GONE, f"deprovision-{GONE}")
        await store.mark_deprovisioned(GONE)
        events = [
            EventRecord(run_id=f"run-{ACTIVE}", sequence=i, kind="KIND_STEP_COMPLETED", step=f"step-{i}")
            for i in range(1, 4)
        ]
        await store.append_events(ACTIVE, events)
    finally:
        await store.close()


@pytest.fixture
async def address(database: Postgres, records: None, temporal_address: str) -> AsyncIterator[str]:
    """The real facade on a free port, reading the module's database."""
    database.start_server()  # in case an earlier test failed while it was down
    client = await Client.connect(temporal_address)
    import os
    from psycopg_pool import AsyncConnectionPool
    from services.tenant_api import registry as registry_module
    variant = os.environ.get("VARIANT", "retry")
    registry_module.RECONNECT_TIMEOUT = float(os.environ.get("RECONNECT", "1"))
    registry = Registry(database.url)
    if "check" in variant:
        registry._pool._check = AsyncConnectionPool.check_connection
    if "noretry" in variant:
        async def _query(sql, params, registry=registry):
            try:
                async with registry._pool.connection() as conn:
                    cursor = await conn.execute(sql, params)
                    return await cursor.fetchall()
            except psycopg.OperationalError:
                raise errors.unavailable("registry") from None
        registry._query = _query
    print("VARIANT", variant, registry_module.RECONNECT_TIMEOUT)
    await registry.open()
    server, port, _ = create_server("127.0.0.1:0", client, registry)
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(grace=None)
    await registry.close()
    database.start_server()


@dataclass(frozen=True)
class Answer:
    method: str
    start: float
    seconds: float
    code: grpc.StatusCode
    reason: str = ""
    dependency: str = ""
    retry_delay: float | None = None


def answer(method: str, call: Callable[[], object]) -> Answer:
    """Makes one call and describes how it ended."""
    start = time.monotonic()
    try:
        call()
    except grpc.RpcError as err:
        seconds = time.monotonic() - start
        info, retry = error_details(err)
        return Answer(
            method,
            start,
            seconds,
            err.code(),  # type: ignore[attr-defined]
            reason=info.reason if info else "",
            dependency=info.metadata.get("dependency", "") if info else "",
            retry_delay=retry.retry_delay.ToTimedelta().total_seconds() if retry else None,
        )
    return Answer(method, start, time.monotonic() - start, grpc.StatusCode.OK)


def error_details(
    err: grpc.RpcError,
) -> tuple[error_details_pb2.ErrorInfo | None, error_details_pb2.RetryInfo | None]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    info = retry = None
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
    return info, retry


def calls(stub: tenant_service_pb2_grpc.TenantServiceStub) -> list[tuple[str, Callable[[], object]]]:
    """The reads a client makes, in turn; each with a deadline well past the bounds."""
    return [
        ("GetTenant", lambda: stub.GetTenant(tenant_service_pb2.GetTenantRequest(name=f"tenants/{ACTIVE}"), timeout=30)),
        ("GetTenant", lambda: stub.GetTenant(tenant_service_pb2.GetTenantRequest(name=f"tenants/{GONE}"), timeout=30)),
        ("ListTenants", lambda: stub.ListTenants(tenant_service_pb2.ListTenantsRequest(page_size=10), timeout=30)),
        (
            "ListTenantEvents",
            lambda: stub.ListTenantEvents(
                tenant_service_pb2.ListTenantEventsRequest(parent=f"tenants/{ACTIVE}"), timeout=30
            ),
        ),
    ]


@dataclass
class Clients:
    """THREADS client threads calling in a loop, each on its own channel."""

    address: str
    answers: list[list[Answer]] = field(default_factory=lambda: [[] for _ in range(THREADS)])
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    async def __aenter__(self) -> Clients:
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(THREADS)]
        for thread in self.threads:
            thread.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        self.stop.set()
        # Joined off the event loop: the server answering their last calls runs on it.
        await asyncio.to_thread(self._join)

    def _join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=40)
        assert not any(t.is_alive() for t in self.threads), "a client thread did not end"

    def _run(self, index: int) -> None:
        with grpc.insecure_channel(self.address) as channel:
            turns = calls(tenant_service_pb2_grpc.TenantServiceStub(channel))
            n = index
            while not self.stop.is_set():
                method, call = turns[n % len(turns)]
                self.answers[index].append(answer(method, call))
                n += 1

    def all(self) -> list[Answer]:
        return sorted((a for mine in self.answers for a in list(mine)), key=lambda a: a.start)

    def each_has(self, check: Callable[[Answer], bool], count: int = 1) -> bool:
        return all(sum(1 for a in list(mine) if check(a)) >= count for mine in self.answers)


async def until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        await asyncio.sleep(0.05)


def summary(label: str, answers: list[Answer]) -> str:
    codes = Counter(a.code.name for a in answers)
    if not answers:
        return f"{label}: no calls"
    seconds = sorted(a.seconds for a in answers)
    p99 = seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))]
    return (
        f"{label}: {len(answers)} calls {dict(codes)}"
        f" p50 {statistics.median(seconds) * 1000:.1f} ms p99 {p99 * 1000:.1f} ms max {seconds[-1] * 1000:.1f} ms"
    )


def assert_unavailable(a: Answer) -> None:
    assert (a.code, a.reason, a.dependency) == (
        grpc.StatusCode.UNAVAILABLE,
        "DEPENDENCY_UNAVAILABLE",
        "registry",
    ), a
    assert a.retry_delay is not None and a.retry_delay > 0, a


async def test_a_restart_under_load_is_unavailable_then_recovers_at_once(
    address: str, database: Postgres
) -> None:
    async with Clients(address) as clients:
        await until(lambda: clients.each_has(lambda a: a.code == grpc.StatusCode.OK, 20), timeout=30, what="warm-up")
        stopped = time.monotonic()
        await asyncio.to_thread(database.stop_server)
        await until(
            lambda: clients.each_has(lambda a: a.start > stopped and a.code != grpc.StatusCode.OK, 2),
            timeout=40,
            what="errors during the outage",
        )
        # Long enough for the pool's reconnection attempts to back off.
        await asyncio.sleep(max(0.0, stopped + OUTAGE - time.monotonic()))
        starting = time.monotonic()
        await asyncio.to_thread(database.start_server)
        back = time.monotonic()
        await until(
            lambda: clients.each_has(lambda a: a.start > back + RECOVERY_BOUND and a.code == grpc.StatusCode.OK, 20),
            timeout=30,
            what="recovery",
        )
    answers = clients.all()
    before = [a for a in answers if a.start < stopped]
    during = [a for a in answers if stopped <= a.start < back]
    after = [a for a in answers if a.start >= back]
    print()
    print(f"PostgreSQL down {starting - stopped:.2f} s, start took {back - starting:.2f} s")
    for label, part in (("before", before), ("during", during), ("after", after)):
        print(summary(label, part))
    first_ok = min((a.start + a.seconds for a in after if a.code == grpc.StatusCode.OK), default=None)
    print(f"first success {first_ok - back if first_ok else float('nan'):.3f} s after the restart")
    late = [a for a in after if a.code != grpc.StatusCode.OK]
    if late:
        print(f"last error answered {max(a.start + a.seconds for a in late) - back:.3f} s after the restart")

    assert not [a for a in answers if a.code == grpc.StatusCode.INTERNAL], "INTERNAL answers"
    for a in answers:
        if a.code != grpc.StatusCode.OK:
            assert_unavailable(a)
    assert all(a.seconds <= OUTAGE_BOUND for a in answers if a.start + a.seconds >= stopped), max(
        a.seconds for a in answers
    )
    assert all(a.code == grpc.StatusCode.OK for a in after if a.start > back + RECOVERY_BOUND)
    assert all(a.code == grpc.StatusCode.OK for a in before if a.start + a.seconds < stopped)
