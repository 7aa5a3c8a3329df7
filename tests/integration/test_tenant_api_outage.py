"""The facade while its registry database restarts, is down, hangs or is
slow: every call answers UNAVAILABLE (ErrorInfo DEPENDENCY_UNAVAILABLE with a
RetryInfo) within a bound, never INTERNAL, and calls succeed again as soon as
the database is back.

The module runs its own embedded PostgreSQL (the session one is shared and
must not be restarted), the real gRPC server on a free port, and a Temporal
client of the session's dev server.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import psutil
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from temporalio.client import Client

from libs.devstack.embedded import Postgres
from services.tenant_api.auth import Access
from services.tenant_api.changes import TRUSTED_FOR
from services.tenant_api.registry import Registry
from services.tenant_api.server import create_server
from services.tenant_api.servicer import TenantService
from services.tenantdb.providers import EventRecord, TenantSpec
from services.tenantdb.providers.postgres import PostgresTenantData
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc

ACTIVE = "outage-active"
GONE = "outage-gone"
THREADS = 8
# What a call may take while the database is down (the pool waits 2 s at
# most for a connection), and how soon after it is back every call must succeed.
OUTAGE_BOUND = 3.0
RECOVERY_BOUND = 2.0
# Long enough for the pool's reconnection attempts to back off (1 s, 2 s, ...).
OUTAGE = 4.0
# A deadline far past the bounds, so the server's answer is what is measured.
CALL_DEADLINE = 30.0
Stub = tenant_service_pb2_grpc.TenantServiceStub


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


@pytest.fixture(scope="module")
async def temporal(temporal_address: str) -> Client:
    return await Client.connect(temporal_address)


@asynccontextmanager
async def facade(database: Postgres, client: Client, **options: Any) -> AsyncIterator[str]:
    """The real facade on a free port, reading the module's database with
    the Registry `options`; yields its address."""
    database.start_server()  # should an earlier test have failed while it was down
    registry = Registry(database.url, **options)
    await registry.open()
    service = TenantService(client, registry)
    server, port, _ = create_server(
        "127.0.0.1:0", client, registry, access=Access(unauthenticated=True), service=service
    )
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await service.close()
        await server.stop(grace=None)
        await registry.close()
        database.start_server()


@pytest.fixture
async def address(database: Postgres, records: None, temporal: Client) -> AsyncIterator[str]:
    async with facade(database, temporal) as running:
        yield running


@dataclass(frozen=True)
class Answer:
    method: str
    start: float
    seconds: float
    code: grpc.StatusCode
    reason: str = ""
    dependency: str = ""
    retry_delay: float | None = None

    @property
    def end(self) -> float:
        return self.start + self.seconds


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


def reads(stub: Stub) -> list[tuple[str, Callable[[], object]]]:
    """The reads a client makes, in turn: an ACTIVE tenant (its record and a
    Temporal describe), a DEPROVISIONED one (its record only), a page of
    tenants, a tenant's events."""
    get = tenant_service_pb2.GetTenantRequest
    return [
        ("GetTenant", lambda: stub.GetTenant(get(name=f"tenants/{ACTIVE}"), timeout=CALL_DEADLINE)),
        ("GetTenant", lambda: stub.GetTenant(get(name=f"tenants/{GONE}"), timeout=CALL_DEADLINE)),
        (
            "ListTenants",
            lambda: stub.ListTenants(
                tenant_service_pb2.ListTenantsRequest(page_size=10), timeout=CALL_DEADLINE
            ),
        ),
        (
            "ListTenantEvents",
            lambda: stub.ListTenantEvents(
                tenant_service_pb2.ListTenantEventsRequest(parent=f"tenants/{ACTIVE}"), timeout=CALL_DEADLINE
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
            thread.join(timeout=CALL_DEADLINE + 10)
        assert not any(t.is_alive() for t in self.threads), "a client thread did not end"

    def _run(self, index: int) -> None:
        with grpc.insecure_channel(self.address) as channel:
            turns = reads(Stub(channel))
            n = index
            while not self.stop.is_set():
                method, call = turns[n % len(turns)]
                self.answers[index].append(answer(method, call))
                n += 1

    def all(self) -> list[Answer]:
        return sorted((a for mine in self.answers for a in list(mine)), key=lambda a: a.start)

    def each_has(self, check: Callable[[Answer], bool], count: int = 1) -> bool:
        return all(sum(1 for a in list(mine) if check(a)) >= count for mine in self.answers)


async def until(check: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {within}s"
        await asyncio.sleep(0.05)


def summary(label: str, answers: list[Answer]) -> str:
    if not answers:
        return f"{label}: no calls"
    codes = Counter(a.code.name for a in answers)
    seconds = sorted(a.seconds for a in answers)
    p99 = seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))]
    return (
        f"{label}: {len(answers)} calls {dict(codes)} p50 {statistics.median(seconds) * 1000:.1f} ms"
        f" p99 {p99 * 1000:.1f} ms max {seconds[-1] * 1000:.1f} ms"
    )


def assert_unavailable(a: Answer, dependency: str = "registry") -> None:
    assert (a.code, a.reason, a.dependency) == (
        grpc.StatusCode.UNAVAILABLE,
        "DEPENDENCY_UNAVAILABLE",
        dependency,
    ), a
    assert a.retry_delay is not None and a.retry_delay > 0, a


def ok(a: Answer) -> bool:
    return a.code == grpc.StatusCode.OK


async def test_a_restart_under_load_is_unavailable_then_recovers_at_once(
    address: str, database: Postgres
) -> None:
    async with Clients(address) as clients:
        await until(lambda: clients.each_has(ok, 20), within=30, what="warm-up")
        stopped = time.monotonic()
        await asyncio.to_thread(database.stop_server)
        await until(
            lambda: clients.each_has(lambda a: a.start > stopped and not ok(a), 2),
            within=OUTAGE_BOUND * 3,
            what="errors during the outage",
        )
        await asyncio.sleep(max(0.0, stopped + OUTAGE - time.monotonic()))
        starting = time.monotonic()
        await asyncio.to_thread(database.start_server)
        back = time.monotonic()
        await until(
            lambda: clients.each_has(lambda a: a.start > back + RECOVERY_BOUND and ok(a), 20),
            within=30,
            what="recovery",
        )
    answers = clients.all()
    before = [a for a in answers if a.start < stopped]
    during = [a for a in answers if stopped <= a.start < back]
    after = [a for a in answers if a.start >= back]
    print(f"\nPostgreSQL down {starting - stopped:.2f} s (its start took {back - starting:.2f} s)")
    for label, part in (("before", before), ("during", during), ("after", after)):
        print(summary(label, part))
    first_ok = min(a.end for a in after if ok(a)) - back
    last_error = max((a.end for a in answers if not ok(a)), default=back) - back
    print(f"first success {first_ok:.3f} s, last error {last_error:.3f} s after PostgreSQL was back")

    assert not [a for a in answers if a.code == grpc.StatusCode.INTERNAL], "INTERNAL answers"
    for a in answers:
        if not ok(a):
            assert_unavailable(a)
    slow = [a for a in answers if a.end >= stopped and a.seconds > OUTAGE_BOUND]
    assert not slow, f"calls slower than {OUTAGE_BOUND}s during the outage: {slow}"
    # Most are answered at once, without waiting for the pool.
    assert statistics.median(a.seconds for a in during) < 0.5
    assert all(ok(a) for a in after if a.start > back + RECOVERY_BOUND)
    assert first_ok < RECOVERY_BOUND
    assert all(ok(a) for a in before if a.end < stopped)


async def test_a_restart_between_calls_is_not_seen(address: str, database: Postgres) -> None:
    """Every pooled connection dies in a restart; each read that meets one is
    answered again on a new connection."""
    with grpc.insecure_channel(address) as channel:
        stub = Stub(channel)
        turns = reads(stub)

        def burst() -> list[Answer]:
            results: list[Answer] = []
            lock = threading.Lock()

            def one(i: int) -> None:
                method, call = turns[i % len(turns)]
                result = answer(method, call)
                with lock:
                    results.append(result)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=CALL_DEADLINE + 10)
            return results

        warm = await asyncio.to_thread(burst)  # the pool holds several connections now
        assert all(ok(a) for a in warm), warm
        await asyncio.to_thread(database.restart)
        concurrent = await asyncio.to_thread(burst)
        one_by_one = [await asyncio.to_thread(answer, *turns[i % len(turns)]) for i in range(THREADS * 2)]
    print("\n" + summary("concurrent after a restart", concurrent))
    print(summary("one by one after it", one_by_one))
    assert all(ok(a) for a in concurrent + one_by_one), [a for a in concurrent + one_by_one if not ok(a)]


async def test_writes_and_reads_during_an_outage_are_unavailable(address: str, database: Postgres) -> None:
    await asyncio.to_thread(database.stop_server)
    name = f"tenants/{ACTIVE}"
    spec = tenant_pb2.Tenant(
        display_name="Outage Corp",
        plan_tier=tenant_pb2.PLAN_TIER_POOLED,
        domains=["outage-new.example.com"],
        admin=tenant_pb2.AdminContact(email="ada@outage-new.example.com"),
    )
    with grpc.insecure_channel(address) as channel:
        stub = Stub(channel)
        calls: list[tuple[str, Callable[[], object]]] = [
            ("GetTenant", lambda: stub.GetTenant(tenant_service_pb2.GetTenantRequest(name=name), timeout=30)),
            (
                "DeleteTenant",
                lambda: stub.DeleteTenant(tenant_service_pb2.DeleteTenantRequest(name=name), timeout=30),
            ),
            (
                "CreateTenant",
                lambda: stub.CreateTenant(
                    tenant_service_pb2.CreateTenantRequest(tenant_id="outage-new", tenant=spec), timeout=30
                ),
            ),
            (
                "ListTenants",
                lambda: stub.ListTenants(tenant_service_pb2.ListTenantsRequest(), timeout=30),
            ),
        ]
        # Twice: the pooled connections die first, then there are none.
        down = [await asyncio.to_thread(answer, *call) for call in calls * 2]
        await asyncio.to_thread(database.start_server)
        back = await asyncio.to_thread(answer, *calls[0])
    print("\n" + summary("during the outage", down))
    for a in down:
        assert_unavailable(a)
        # Once connecting has failed, no call waits for the pool.
        assert a.seconds < 1.0, a
    assert ok(back), back


async def test_a_statement_timeout_is_unavailable(
    database: Postgres, records: None, temporal: Client
) -> None:
    """A read that waits on a lock longer than the statement timeout."""
    async with facade(database, temporal, statement_timeout=1) as running:
        lock = await psycopg.AsyncConnection.connect(database.url)
        try:
            await lock.execute("LOCK TABLE registry.tenants IN ACCESS EXCLUSIVE MODE")
            with grpc.insecure_channel(running) as channel:
                stub = Stub(channel)
                request = tenant_service_pb2.GetTenantRequest(name=f"tenants/{GONE}")
                blocked = await asyncio.to_thread(
                    answer, "GetTenant", lambda: stub.GetTenant(request, timeout=30)
                )
                await lock.rollback()
                free = await asyncio.to_thread(
                    answer, "GetTenant", lambda: stub.GetTenant(request, timeout=30)
                )
        finally:
            await lock.close()
    assert_unavailable(blocked)
    assert 1.0 <= blocked.seconds < 2.5, blocked
    assert ok(free), free


@contextmanager
def frozen(database: Postgres) -> Iterator[None]:
    """Every PostgreSQL process stopped (SIGSTOP): the server keeps its
    sockets but answers nothing, like a host cut off by the network."""
    server: Any = database.server
    postmaster = psutil.Process(server.get_pid())
    processes = [postmaster, *postmaster.children(recursive=True)]
    for process in processes:
        process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for process in processes:
            process.send_signal(signal.SIGCONT)


async def test_a_database_that_does_not_answer_is_unavailable_in_bounded_time(
    database: Postgres, records: None, temporal: Client
) -> None:
    # A read gives up after pool wait + statement timeout + 1 s: here 3 s.
    async with facade(database, temporal, pool_timeout=1, statement_timeout=1) as running:
        with grpc.insecure_channel(running) as channel:
            stub = Stub(channel)
            turns = reads(stub)
            for i in range(THREADS):  # a few pooled connections
                assert ok(await asyncio.to_thread(answer, *turns[1 + i % 3]))
            with frozen(database):
                frozen_at = time.monotonic()
                hung = await asyncio.gather(
                    *(asyncio.to_thread(answer, *turns[1 + i % 3]) for i in range(THREADS))
                )
                # Once the memory is no longer trusted, a read of it waits on the database too.
                hung.append(await asyncio.to_thread(answer, *turns[1]))
            thawed = time.monotonic()
            while not ok(await asyncio.to_thread(answer, *turns[1])):
                assert time.monotonic() < thawed + RECOVERY_BOUND * 3, "no answer once thawed"
            recovered = time.monotonic() - thawed
    print("\n" + summary("frozen", hung) + f"; answered again {recovered:.3f} s after it was thawed")
    for a in hung:
        if a.method in ("GetTenant", "ListTenants") and ok(a):
            # A settled tenant or a page from the facade's memory: trusted only while
            # the registry's listener has proved alive in the last TRUSTED_FOR s.
            assert a.end - frozen_at < TRUSTED_FOR + 0.5, a
            continue
        assert_unavailable(a)
        assert a.seconds < 3.5, a
    assert any(not ok(a) for a in hung if a.method == "GetTenant")


class Link:
    """A TCP proxy to `target` that can be cut: while cut it drops every
    connection, open or new, as a network failure would."""

    def __init__(self, target: str) -> None:
        self._host, port = target.rsplit(":", 1)
        self._port = int(port)
        self._cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self._server:
            self._server.close()
        self.cut()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def cut(self) -> None:
        self._cut = True
        for writer in list(self._writers):
            writer.close()

    def mend(self) -> None:
        self._cut = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.close()
            return
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        upstream_reader, upstream_writer = await asyncio.open_connection(self._host, self._port)
        self._writers |= {writer, upstream_writer}
        try:
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        except asyncio.CancelledError:
            pass  # the link is stopped: this handler ends with it
        finally:
            self._writers -= {writer, upstream_writer}
            self._handlers.discard(handler)
            writer.close()
            upstream_writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def test_a_temporal_outage_is_unavailable_to_changes_and_unseen_by_reads(
    database: Postgres, records: None, temporal_address: str
) -> None:
    """Cut off from Temporal, a DeleteTenant (which must start a run) answers
    UNAVAILABLE (temporal) within a bound, while GetTenant of the ACTIVE tenant
    and ListTenants, which read only the registry, answer as before; the
    delete works again once the link is mended."""
    link = Link(temporal_address)
    client = await Client.connect(await link.start())
    name = f"tenants/{ACTIVE}"
    try:
        async with facade(database, client) as running:
            with grpc.insecure_channel(running) as channel:
                stub = Stub(channel)
                get = (
                    "GetTenant",
                    lambda: stub.GetTenant(tenant_service_pb2.GetTenantRequest(name=name), timeout=30),
                )
                # A hard delete of a tenant that is DEPROVISIONED already is a no-op
                # once Temporal answers; a delete of the ACTIVE one must start a run.
                delete = (
                    "DeleteTenant",
                    lambda: stub.DeleteTenant(tenant_service_pb2.DeleteTenantRequest(name=name), timeout=30),
                )
                assert ok(await asyncio.to_thread(answer, *get))
                link.cut()
                reads_down = [await asyncio.to_thread(answer, *get) for _ in range(5)]
                listed = await asyncio.to_thread(answer, *reads(stub)[2])
                deleted = await asyncio.to_thread(answer, *delete)
                link.mend()
    finally:
        await link.stop()
    print("\n" + summary("Temporal cut off, reads", reads_down) + "; " + summary("delete", [deleted]))
    assert_unavailable(deleted, "temporal")
    # The Temporal client's own retries (10 s at most by default) bound it.
    assert deleted.seconds < 15, deleted
    for a in [*reads_down, listed]:
        assert ok(a), a
        assert a.seconds < 1, a
