"""WatchTenant pushed from the registry, and reads that never wait on Temporal.

The real facade runs in this process (so its feeds can be counted) on the
session's PostgreSQL, with a Temporal dev server of this module's own, which
a test freezes. The tenant-data provider writes the records, as the worker
would: the registry's triggers announce each change, and nothing is polled.
A record "under way" belongs to a real run, started under the tenant's
workflow id on a queue no worker polls, so it stays open until the test ends it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import psutil
import psycopg
import pytest
from temporalio.client import Client

from libs import lifecycle
from libs.devstack.embedded import temporal_server
from libs.devstack.processes import ManagedProcess, free_port
from services.tenant_api import servicer
from services.tenant_api.auth import Access, Limits
from services.tenant_api.registry import Registry
from services.tenant_api.server import create_server
from services.tenant_api.servicer import TenantService
from services.tenantdb.providers import EventRecord, RunStepsRecord, TenantSpec
from services.tenantdb.providers.postgres import PostgresTenantData
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc

State = tenant_pb2.Tenant.State
HEARTBEAT = 1  # seconds, for this module's facade
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def temporal_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ManagedProcess, str]]:
    state = tmp_path_factory.mktemp("watch-temporal")
    port = free_port()
    server = temporal_server(state / "temporal", port=port, ui_port=None, log_dir=state / "logs")
    server.start().wait_ready()
    yield server, f"127.0.0.1:{port}"
    resume(server)
    server.stop()


def freeze(server: ManagedProcess) -> None:
    """SIGSTOP on the server and its children: connections stay open, nothing answers."""
    assert server.popen is not None
    top = psutil.Process(server.popen.pid)
    for process in [top, *top.children(recursive=True)]:
        process.suspend()


def resume(server: ManagedProcess) -> None:
    assert server.popen is not None
    top = psutil.Process(server.popen.pid)
    for process in [top, *top.children(recursive=True)]:
        process.resume()


@pytest.fixture(scope="module")
async def store(postgres_url: str) -> AsyncIterator[PostgresTenantData]:
    """The tenant-data provider: it creates the registry with its triggers, and writes it."""
    provider = PostgresTenantData(postgres_url, max_connections=4)
    await provider.open()
    yield provider
    await provider.close()


@dataclass
class Facade:
    stub: tenant_service_pb2_grpc.TenantServiceStub
    service: TenantService
    temporal: Client
    server: ManagedProcess


@pytest.fixture
async def facade(
    postgres_url: str,
    store: PostgresTenantData,
    temporal_process: tuple[ManagedProcess, str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Facade]:
    monkeypatch.setenv("TENANTRY_WATCH_HEARTBEAT_SECONDS", str(HEARTBEAT))
    monkeypatch.setenv("TENANTRY_WATCH_CLOSE_SWEEP_SECONDS", "1")
    process, address = temporal_process
    client = await Client.connect(address)
    registry = Registry(postgres_url)
    await registry.open()
    service = TenantService(client, registry)
    server, port, _ = create_server(
        "127.0.0.1:0",
        client,
        registry,
        access=Access(unauthenticated=True),
        limits=Limits(watch_streams=100),
        service=service,
    )
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Facade(tenant_service_pb2_grpc.TenantServiceStub(channel), service, client, process)
    finally:
        resume(process)
        await channel.close()
        await service.close()
        await server.stop(grace=None)
        await registry.close()


def spec(tid: str) -> TenantSpec:
    return TenantSpec(
        tenant_id=tid,
        display_name="Watch Corp",
        plan_tier="PLAN_TIER_POOLED",
        domains=(),
        admin_email=f"ada@{tid}.example.com",
    )


async def open_run(client: Client, tid: str) -> str:
    """A real provisioning run of the tenant that stays open (no worker polls its queue)."""
    handle = await client.start_workflow(
        "bench.NobodyRunsThis", id=lifecycle.provision_workflow_id(tid), task_queue=f"nobody-{uuid.uuid4()}"
    )
    assert handle.result_run_id is not None
    return handle.result_run_id


async def under_way(facade: Facade, store: PostgresTenantData) -> tuple[str, str]:
    """A new tenant marked PROVISIONING by an open run; its id and the run's."""
    tid = f"watch-{uuid.uuid4().hex[:8]}"
    run_id = await open_run(facade.temporal, tid)
    await store.mark_provisioning(spec(tid), lifecycle.provision_workflow_id(tid), run_id)
    return tid, run_id


def progress(run_id: str, sequence: int, *, done: int, ended: bool = False) -> RunStepsRecord:
    steps = tuple(
        (f"step_{i}", "STEP_STATUS_COMPLETED" if i < done else "STEP_STATUS_PENDING", "") for i in range(3)
    )
    return RunStepsRecord(
        workflow_id="w", run_id=run_id, sequence=sequence, steps=steps, current_steps=(), ended=ended
    )


def event(run_id: str, sequence: int) -> EventRecord:
    return EventRecord(run_id=run_id, sequence=sequence, kind="KIND_STEP_COMPLETED", step=f"step_{sequence}")


@asynccontextmanager
async def watching(
    facade: Facade, tid: str
) -> AsyncIterator[asyncio.Queue[tenant_service_pb2.WatchTenantResponse]]:
    """A watcher whose updates arrive in a queue (None once the stream has ended)."""
    updates: asyncio.Queue[tenant_service_pb2.WatchTenantResponse | None] = asyncio.Queue()
    call = facade.stub.WatchTenant(tenant_service_pb2.WatchTenantRequest(name=f"tenants/{tid}"))

    async def pump() -> None:
        try:
            async for update in call:
                await updates.put(update)
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                await updates.put(err)  # type: ignore[arg-type]
                return
        await updates.put(None)

    task = asyncio.create_task(pump())
    try:
        yield updates  # type: ignore[misc]
    finally:
        call.cancel()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def next_update(
    updates: asyncio.Queue, *, within: float = 10
) -> tenant_service_pb2.WatchTenantResponse:
    update = await asyncio.wait_for(updates.get(), within)
    assert update is not None, "the stream ended"
    if isinstance(update, Exception):
        raise update
    return update


async def next_change(updates: asyncio.Queue) -> tenant_service_pb2.WatchTenantResponse:
    """The next update that is not a heartbeat."""
    update = await next_update(updates)
    while update.heartbeat:
        update = await next_update(updates)
    return update


async def test_every_change_reaches_the_watcher_in_order_and_the_stream_ends_when_the_run_does(
    facade: Facade, store: PostgresTenantData
) -> None:
    tid, run_id = await under_way(facade, store)
    async with watching(facade, tid) as updates:
        first = await next_update(updates)
        assert first.tenant.state == State.STATE_PROVISIONING and not first.heartbeat
        # Bursts of appends, some landing while the feed is still reading the last one.
        for batch in range(10):
            events = [event(run_id, batch * 3 + i) for i in range(1, 4)]
            await store.append_events(tid, events, progress(run_id, batch * 3 + 3, done=min(batch, 3)))
        await store.mark_active(tid, run_id)
        await store.append_events(tid, [event(run_id, 31)], progress(run_id, 31, done=3, ended=True))
        seen: list[int] = []
        last = first
        while True:
            update = await asyncio.wait_for(updates.get(), 10)
            if update is None:
                break
            if not update.heartbeat:
                seen += [e.sequence for e in update.events]
                last = update
    # Nothing lost, nothing twice, in order; the last update is the settled tenant with its steps.
    assert seen == list(range(1, 32))
    assert last.tenant.state == State.STATE_ACTIVE
    assert [s.status for s in last.tenant.steps] == [tenant_pb2.STEP_STATUS_COMPLETED] * 3


async def test_a_quiet_tenant_gets_heartbeats_and_no_update_without_a_change(
    facade: Facade, store: PostgresTenantData
) -> None:
    tid, run_id = await under_way(facade, store)
    await store.append_events(tid, [event(run_id, 1)], progress(run_id, 1, done=1))
    async with watching(facade, tid) as updates:
        first = await next_update(updates)
        assert not first.heartbeat and [e.sequence for e in first.events] == [1]
        beats = [await next_update(updates, within=HEARTBEAT * 5) for _ in range(3)]
        assert all(b.heartbeat and not b.events and b.tenant == first.tenant for b in beats)
        # The same progress again changes nothing the client sees: no update, only heartbeats.
        await store.append_events(tid, [], progress(run_id, 1, done=1))
        assert (await next_update(updates, within=HEARTBEAT * 5)).heartbeat
        await store.append_events(tid, [event(run_id, 2)], progress(run_id, 2, done=2))
        changed = await next_change(updates)
        assert [e.sequence for e in changed.events] == [2]
        assert changed.tenant.steps[1].status == tenant_pb2.STEP_STATUS_COMPLETED


async def test_many_watchers_share_one_feed_and_one_read_per_change(
    facade: Facade, store: PostgresTenantData
) -> None:
    tid, run_id = await under_way(facade, store)
    changes = facade.service.changes
    async with many_watchers(facade, tid, 25) as queues:
        for q in queues:
            await next_update(q)
        assert changes.feeds == 1
        reads = changes.reads
        await store.append_events(tid, [event(run_id, 1)], progress(run_id, 1, done=1))
        for q in queues:
            update = await next_change(q)
            assert [e.sequence for e in update.events] == [1]
        # One commit, one notice, one read for all 25 watchers.
        assert changes.reads - reads == 1
    # The last watcher to leave ends the feed (the server learns of each cancel shortly after).
    await eventually(lambda: changes.feeds == 0, what="the feed ends with its last watcher")


async def eventually(check: Callable[[], Any], *, what: str, within: float = 10) -> None:
    """Polls `check` (a function, or a coroutine function) until it is true, with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await _value(check()):
        assert loop.time() < deadline, f"{what}: not within {within} s"
        await asyncio.sleep(0.02)  # polling with a deadline


async def _value(result: Any) -> Any:
    return await result if asyncio.iscoroutine(result) else result


@asynccontextmanager
async def many_watchers(facade: Facade, tid: str, n: int) -> AsyncIterator[list[asyncio.Queue]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(watching(facade, tid)) for _ in range(n)]


async def test_a_run_that_dies_without_its_last_mark_shows_failed_to_its_watcher(
    facade: Facade, store: PostgresTenantData
) -> None:
    tid, run_id = await under_way(facade, store)
    async with watching(facade, tid) as updates:
        assert (await next_update(updates)).tenant.state == State.STATE_PROVISIONING
        await facade.temporal.get_workflow_handle(lifecycle.provision_workflow_id(tid)).terminate("test")
        update = await next_change(updates)
        assert update.tenant.state == State.STATE_PROVISION_FAILED
        assert "TERMINATED" in update.tenant.failure_reason


async def open_deletion(client: Client, tid: str) -> str:
    """A real deletion run of the tenant that stays open (no worker polls its queue)."""
    handle = await client.start_workflow(
        "bench.NobodyRunsThis", id=lifecycle.deprovision_workflow_id(tid), task_queue=f"nobody-{uuid.uuid4()}"
    )
    assert handle.result_run_id is not None
    return handle.result_run_id


def opened(workflow_id: str, run_id: str) -> RunStepsRecord:
    """A run's opening append: its steps, all pending, not ended."""
    steps = (("read_record", "STEP_STATUS_PENDING", ""), ("mark_deprovisioning", "STEP_STATUS_PENDING", ""))
    return RunStepsRecord(
        workflow_id=workflow_id, run_id=run_id, sequence=1, steps=steps, current_steps=(), ended=False
    )


@pytest.mark.parametrize("outcome", ["marks", "dies"])
async def test_a_watch_of_a_settled_tenant_follows_a_run_that_has_opened_on_it(
    facade: Facade, store: PostgresTenantData, outcome: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deletion has appended its opening request but its first step is held
    up (its worker restarting): the tenant is still ACTIVE, and its watcher
    follows the run, however long, until it marks the tenant; a run that
    dies first ends the stream (found by the close sweep)."""
    # No timer ends the stream: not even the facade's wait for runs to settle, cut short here.
    monkeypatch.setattr(servicer, "SETTLE_WAIT", 0.5)
    tid, run_id = await under_way(facade, store)
    await store.mark_active(tid, run_id)
    await store.append_events(tid, [event(run_id, 1)], progress(run_id, 1, done=3, ended=True))
    deletion = lifecycle.deprovision_workflow_id(tid)
    deleting = await open_deletion(facade.temporal, tid)
    requested = EventRecord(run_id=deleting, sequence=1, kind="KIND_REQUESTED", step="deprovision")
    await store.append_events(tid, [requested], opened(deletion, deleting))
    async with watching(facade, tid) as updates:
        first = await next_update(updates)
        assert first.tenant.state == State.STATE_ACTIVE
        assert [s.step for s in first.tenant.steps] == ["read_record", "mark_deprovisioning"]
        # More than one heartbeat: the stream stays open for the run under way.
        for _ in range(3):
            assert (await next_update(updates, within=HEARTBEAT * 5)).heartbeat
        if outcome == "marks":
            await store.mark_deprovisioning(tid, deletion, run_id=deleting)
            assert (await next_change(updates)).tenant.state == State.STATE_DEPROVISIONING
        else:
            await facade.temporal.get_workflow_handle(deletion).terminate("test")
            end = await asyncio.wait_for(updates.get(), 15)
            while end is not None and not isinstance(end, Exception) and end.heartbeat:
                end = await asyncio.wait_for(updates.get(), 15)
            assert end is None, f"the stream goes on after the run died: {end}"


async def test_settled_reads_answer_while_temporal_is_frozen(
    facade: Facade, store: PostgresTenantData
) -> None:
    tid, run_id = await under_way(facade, store)
    await store.mark_active(tid, run_id)
    await store.append_events(tid, [event(run_id, 1)], progress(run_id, 1, done=3, ended=True))
    looked = facade.service.lookups.counts["looked"]
    freeze(facade.server)
    try:
        name = f"tenants/{tid}"
        for _ in range(20):
            got = await facade.stub.GetTenant(tenant_service_pb2.GetTenantRequest(name=name), timeout=2)
            assert got.tenant.state == State.STATE_ACTIVE and len(got.tenant.steps) == 3
        listed = await facade.stub.ListTenants(
            tenant_service_pb2.ListTenantsRequest(page_size=1000), timeout=2
        )
        assert tid in [t.tenant_id for t in listed.tenants]
        # A watch of a settled tenant whose run has ended: one update, and the stream ends.
        async with watching(facade, tid) as updates:
            assert (await next_update(updates, within=2)).tenant.state == State.STATE_ACTIVE
            assert await asyncio.wait_for(updates.get(), 2) is None
    finally:
        resume(facade.server)
    # Not one look at a run: the reads were the registry's alone.
    assert facade.service.lookups.counts["looked"] == looked


async def test_a_read_of_a_run_under_way_answers_from_the_registry_while_temporal_is_frozen(
    facade: Facade, store: PostgresTenantData
) -> None:
    tid, run_id = await under_way(facade, store)
    await store.append_events(tid, [event(run_id, 1)], progress(run_id, 1, done=1))
    freeze(facade.server)
    try:
        got = await facade.stub.GetTenant(
            tenant_service_pb2.GetTenantRequest(name=f"tenants/{tid}"), timeout=10
        )
    finally:
        resume(facade.server)
    # The look timed out; the answer is the record with the steps of the run's last append.
    assert got.tenant.state == State.STATE_PROVISIONING
    assert [s.status for s in got.tenant.steps][:2] == [
        tenant_pb2.STEP_STATUS_COMPLETED,
        tenant_pb2.STEP_STATUS_PENDING,
    ]


async def test_a_settled_tenant_read_from_memory_follows_every_change(
    facade: Facade, store: PostgresTenantData, postgres_url: str
) -> None:
    """GetTenant of a settled tenant may come from the facade's memory: a
    change in the registry is seen at once, also one made while the facade's
    listener was cut off."""
    tid, run_id = await under_way(facade, store)
    await store.mark_active(tid, run_id)
    name = f"tenants/{tid}"

    async def is_in(state: int) -> bool:
        got = await facade.stub.GetTenant(tenant_service_pb2.GetTenantRequest(name=name), timeout=5)
        return got.tenant.state == state

    async def listed(filter: str) -> bool:
        request = tenant_service_pb2.ListTenantsRequest(page_size=1000, filter=filter)
        return tid in [t.tenant_id for t in (await facade.stub.ListTenants(request, timeout=5)).tenants]

    async def not_listed(filter: str) -> bool:
        return not await listed(filter)

    assert await is_in(State.STATE_ACTIVE)
    assert await is_in(State.STATE_ACTIVE)  # now from memory
    assert not await listed("state = SUSPENDED")
    await store.mark_access_changing(tid, suspend=True, workflow_id="w-suspend", run_id="r-suspend")
    await store.mark_suspended(tid)
    await eventually(lambda: is_in(State.STATE_SUSPENDED), what="the suspended state", within=5)
    # A page kept in memory goes with any change too.
    assert await listed("state = SUSPENDED")
    await store.mark_access_changing(tid, suspend=False, workflow_id="w-resume0", run_id="r-resume0")
    await store.mark_resumed(tid)
    await eventually(lambda: not_listed("state = SUSPENDED"), what="the page without it", within=5)
    await store.mark_access_changing(tid, suspend=True, workflow_id="w-suspend1", run_id="r-suspend1")
    await store.mark_suspended(tid)
    # Cut the listener's connection; change the tenant before it is back.
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%%'"
        )
        await store.mark_access_changing(tid, suspend=False, workflow_id="w-resume", run_id="r-resume")
        await store.mark_resumed(tid)
    await eventually(lambda: is_in(State.STATE_ACTIVE), what="the resumed state", within=5)
