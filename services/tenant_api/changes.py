"""Registry changes pushed to the facade: one LISTEN connection per process,
one feed per watched tenant, shared by all of that tenant's watchers.

The tenant-data worker's triggers NOTIFY `REGISTRY_CHANGES_CHANNEL` with the
tenant id at every commit that changes what a tenant shows (record, events,
resources, backups). A notice makes the tenant's feed read the record and its
new events once, however many watchers it has, and the watchers wake when the
feed's version moves. Nothing is polled: an idle tenant costs no read and no
Temporal call. While the connection is down nothing is lost: on every
(re)connect each feed reads again.

The same notices keep small caches exact: GetTenant of a settled tenant is
answered from memory, and a notice for the tenant drops it; a page of
ListTenants too, until any notice (a page may change with any tenant). The
cache is used only while the listener is connected and proved alive in the
last TRUSTED_FOR seconds (a notice missed while it was not would leave an
entry stale), and is emptied on every (re)connect; a read that a notice
overtook is not kept.

Only a run's end is not in the registry when the run dies without its last
mark (terminated, timed out). A feed whose record is in a run's state asks
once, when it meets the run, whether the run still runs (a describe); after
that one visibility query per CLOSE_SWEEP seconds, for the whole process
whatever the number of feeds, finds the runs that closed meanwhile. Never a
workflow query, and nothing per watcher or per poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from temporalio.client import WorkflowExecutionStatus

from libs import config
from libs.lifecycle import IN_FLIGHT_STATES, REGISTRY_CHANGES_CHANNEL
from services.tenant_api import errors
from services.tenant_api.registry import Record, Registry
from services.tenant_api.runs import Ended, Runs, workflow_of
from tenantry.tenant.v1 import tenant_pb2

log = logging.getLogger(__name__)

# The first update of a watch carries at most this many recent events.
RECENT_EVENTS = 100
# Events a feed keeps for its watchers; one that falls further behind reads the registry.
KEPT_EVENTS = 1000
# Seconds between liveness checks of the listening connection while it is
# quiet (a server that froze, or a network that dropped the connection without
# a word, raises nothing otherwise), and how long one may take.
KEEPALIVE = 1.0
KEEPALIVE_TIMEOUT = 1.0
# The cache is trusted only this soon after the connection last proved alive:
# cut off from the database unnoticed, a read is at most this stale.
TRUSTED_FOR = 2.0
RECONNECT_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
# Settled records kept in memory for GetTenant, and ListTenants pages (least recently used go first).
CACHED_RECORDS = 10_000
CACHED_PAGES = 256
# Seconds between the visibility queries for runs of watched tenants that
# closed (TENANTRY_WATCH_CLOSE_SWEEP_SECONDS).
CLOSE_SWEEP = 15
# Seconds close() waits for the listener and the feeds to stop.
CLOSE_WAIT = 5.0


@dataclass
class TenantFeed:
    """The latest registry view of one tenant, for all its watchers in this process."""

    tenant_id: str
    record: Record | None = None
    # How the record's run ended, once it has closed while the record still shows it under way.
    closed: Ended | None = None
    # The run has closed; the next read says whether its last mark came (then it ended well).
    _close_seen: tuple[str, Ended] | None = None
    # Recent events, oldest first, with their event ids.
    events: list[tuple[int, tenant_pb2.TenantEvent]] = field(default_factory=list)
    # Raised by the last read (the registry was unreachable); cleared by the next that works.
    error: errors.ApiError | None = None
    version: int = 0
    watchers: int = 0
    _trimmed_through: int = 0
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _dirty: bool = False
    _reading: asyncio.Task[None] | None = None
    _closing: asyncio.Task[None] | None = None
    _closing_run: str = ""

    async def ready(self) -> None:
        """Waits for the feed's first read; raises its error when it failed."""
        await self._ready.wait()
        if self.error is not None and self.version == 0:
            raise self.error

    async def changed(self, seen: int, within: float | None) -> bool:
        """Waits until the version moves past `seen`, at most `within` s; True if it did."""
        if self.version != seen:
            return True
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), within)
        return self.version != seen

    def events_after(self, event_id: int) -> list[tuple[int, tenant_pb2.TenantEvent]] | None:
        """The kept events after `event_id`; None when some of them are no longer kept."""
        if event_id < self._trimmed_through:
            return None
        return [(i, e) for i, e in self.events if i > event_id]

    def _publish(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


class RegistryChanges:
    """The process's one LISTEN connection and its feeds.

    Started on first use; `close()` ends the connection and every feed's tasks.
    """

    def __init__(self, registry: Registry, runs: Runs) -> None:
        self._registry = registry
        self._runs = runs
        self._feeds: dict[str, TenantFeed] = {}
        self._listening: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self._sweeping: asyncio.Task[None] | None = None
        self._sweep_every = float(config.integer("TENANTRY_WATCH_CLOSE_SWEEP_SECONDS", CLOSE_SWEEP))
        self.reads = 0  # feed reads of the registry, for the benchmark
        self._cache: OrderedDict[str, Record] = OrderedDict()
        self._loading: dict[str, asyncio.Future[Record | None]] = {}
        self._overtaken: set[str] = set()  # noticed while being read
        self._epoch = 0  # moves at every (re)connect and disconnect
        self._alive_at = 0.0  # when the listener last heard from the database
        self._pages: OrderedDict[Hashable, tuple[int, list[tenant_pb2.Tenant]]] = OrderedDict()
        self._paging: dict[Hashable, asyncio.Future[list[tenant_pb2.Tenant]]] = {}
        self._generation = 0  # moves at every notice: a kept page is of one generation

    @property
    def feeds(self) -> int:
        return len(self._feeds)

    async def record(self, tenant_id: str) -> Record | None:
        """The tenant's record: from memory when the listener vouches for it
        (settled records only), else one registry read, shared by concurrent callers."""
        self._start()
        kept = self._cache.get(tenant_id)
        if kept is not None and self._trusted():
            self._cache.move_to_end(tenant_id)
            return kept
        loading = self._loading.get(tenant_id)
        if loading is None:
            loading = self._loading[tenant_id] = asyncio.ensure_future(self._load(tenant_id))
            loading.add_done_callback(lambda _: self._loading.pop(tenant_id, None))
        return await asyncio.shield(loading)

    async def _load(self, tenant_id: str) -> Record | None:
        self._overtaken.discard(tenant_id)
        epoch = self._epoch
        try:
            record = await self._registry.record(tenant_id)
        finally:
            overtaken = tenant_id in self._overtaken
            self._overtaken.discard(tenant_id)
        keep = record is not None and record.tenant.state not in IN_FLIGHT_STATES and record.run_ended
        if keep and not overtaken and epoch == self._epoch and self._trusted():
            assert record is not None
            self._cache[tenant_id] = record
            if len(self._cache) > CACHED_RECORDS:
                self._cache.popitem(last=False)
        return record

    async def page(
        self, key: Hashable, load: Callable[[], Awaitable[list[tenant_pb2.Tenant]]]
    ) -> list[tenant_pb2.Tenant]:
        """A ListTenants page (`key` says which): from memory when no notice
        came since it was read and the listener vouches for it, else `load()`,
        shared by concurrent callers of the same page."""
        self._start()
        kept = self._pages.get(key)
        if kept is not None and kept[0] == self._generation and self._trusted():
            self._pages.move_to_end(key)
            return kept[1]
        loading = self._paging.get(key)
        if loading is None:
            loading = self._paging[key] = asyncio.ensure_future(self._load_page(key, load))
            loading.add_done_callback(lambda _: self._paging.pop(key, None))
        return await asyncio.shield(loading)

    async def _load_page(
        self, key: Hashable, load: Callable[[], Awaitable[list[tenant_pb2.Tenant]]]
    ) -> list[tenant_pb2.Tenant]:
        generation = self._generation
        page = await load()
        if generation == self._generation and self._trusted():
            self._pages[key] = (generation, page)
            if len(self._pages) > CACHED_PAGES:
                self._pages.popitem(last=False)
        return page

    def _trusted(self) -> bool:
        return self._connected.is_set() and time.monotonic() - self._alive_at < TRUSTED_FOR

    def _forget(self, tenant_id: str) -> None:
        self._generation += 1
        self._cache.pop(tenant_id, None)
        if tenant_id in self._loading:
            self._overtaken.add(tenant_id)

    def _forget_all(self) -> None:
        self._epoch += 1
        self._generation += 1
        self._cache.clear()
        self._pages.clear()
        self._overtaken.update(self._loading)

    @contextlib.asynccontextmanager
    async def feed(self, tenant_id: str) -> AsyncIterator[TenantFeed]:
        """The tenant's feed while the caller watches; the last watcher to leave ends it."""
        self._start()
        feed = self._feeds.get(tenant_id)
        if feed is None:
            feed = self._feeds[tenant_id] = TenantFeed(tenant_id)
            if self._connected.is_set():
                self._read(feed)
            # Otherwise the (re)connect reads every feed.
        feed.watchers += 1
        try:
            yield feed
        finally:
            feed.watchers -= 1
            if feed.watchers == 0 and self._feeds.get(tenant_id) is feed:
                del self._feeds[tenant_id]
                for task in (feed._reading, feed._closing):
                    if task is not None:
                        task.cancel()

    async def close(self) -> None:
        """Ends the listener; every watcher's stream ends UNAVAILABLE (SHUTTING_DOWN)."""
        self._closed = True
        for feed in self._feeds.values():
            feed.error = errors.shutting_down()
            feed._ready.set()
            feed._publish()
        tasks = [t for f in self._feeds.values() for t in (f._reading, f._closing) if t is not None]
        tasks += [t for t in (self._listening, self._sweeping) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            # A connection stuck in the network must not hold the process's stop.
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_WAIT)
            if stuck:
                log.warning("%d registry listener task(s) did not stop within %s s", len(stuck), CLOSE_WAIT)
        self._feeds.clear()

    # -- listening ------------------------------------------------------------

    def _start(self) -> None:
        if self._listening is None and not self._closed:
            # The process's own task, not part of the request that starts it (nor of its trace).
            self._listening = asyncio.create_task(
                self._listen(), name="registry-changes", context=contextvars.Context()
            )

    async def _listen(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._registry.dsn, autocommit=True, connect_timeout=5
                )
            except psycopg.OperationalError as err:
                delay = RECONNECT_BACKOFF[min(attempt, len(RECONNECT_BACKOFF) - 1)]
                (log.debug if attempt else log.warning)(
                    "cannot listen for registry changes: %s", type(err).__name__
                )
                self._fail_feeds()
                attempt += 1
                await asyncio.sleep(delay)  # backoff between attempts, not synchronisation
                continue
            try:
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(REGISTRY_CHANGES_CHANNEL)))
                    if attempt:
                        log.info("listening for registry changes again")
                    attempt = 0
                    self._forget_all()
                    self._alive_at = time.monotonic()
                    self._connected.set()
                    # Whatever changed while nobody listened: every feed reads again.
                    for each in self._feeds.values():
                        self._read(each)
                    while True:
                        async for notice in conn.notifies(timeout=KEEPALIVE):
                            self._alive_at = time.monotonic()
                            self._forget(notice.payload)
                            watched = self._feeds.get(notice.payload)
                            if watched is not None:
                                self._read(watched)
                        await asyncio.wait_for(conn.execute("SELECT 1"), KEEPALIVE_TIMEOUT)
                        self._alive_at = time.monotonic()
            except (psycopg.OperationalError, TimeoutError) as err:
                log.warning("lost the registry change listener: %s", type(err).__name__)
            finally:
                self._connected.clear()
                self._forget_all()
            attempt += 1
            await asyncio.sleep(RECONNECT_BACKOFF[0])  # backoff before reconnecting

    def _fail_feeds(self) -> None:
        """Feeds waiting for their first read learn that the registry cannot be reached."""
        for feed in self._feeds.values():
            if not feed._ready.is_set():
                feed.error = errors.unavailable("registry")
                feed._ready.set()

    # -- reading --------------------------------------------------------------

    def _read(self, feed: TenantFeed) -> None:
        """Reads the feed again soon; notices that come during a read make one more read."""
        feed._dirty = True
        if feed._reading is None or feed._reading.done():
            feed._reading = asyncio.create_task(self._reads(feed))

    async def _reads(self, feed: TenantFeed) -> None:
        while feed._dirty:
            feed._dirty = False
            try:
                changed = await self._read_once(feed) | self._died(feed)
                feed.error = None
            except errors.ApiError as err:
                changed, feed.error = feed.version == 0, err
            except Exception:  # a feed must not die silently; its watchers see the registry error
                log.exception("reading the feed of tenant %s failed", feed.tenant_id)
                changed, feed.error = feed.version == 0, errors.unavailable("registry")
            if changed:
                feed._publish()
            feed._ready.set()
            self._follow_run(feed)

    async def _read_once(self, feed: TenantFeed) -> bool:
        self.reads += 1
        record = await self._registry.record(feed.tenant_id)
        if feed.version == 0:
            fresh = await self._registry.recent_events(feed.tenant_id, limit=RECENT_EVENTS)
        else:
            after = feed.events[-1][0] if feed.events else feed._trimmed_through
            fresh = await self._registry.events(feed.tenant_id, after=after, limit=KEPT_EVENTS)
        before = feed.record
        feed.record = record
        if _followed(record) != _followed(before):
            feed.closed = None
        if fresh:
            feed.events.extend(fresh)
            if len(feed.events) > KEPT_EVENTS:
                feed._trimmed_through = feed.events[-KEPT_EVENTS - 1][0]
                del feed.events[:-KEPT_EVENTS]
        return bool(fresh) or feed.version == 0 or _shown(before) != _shown(record)

    # -- a run that ends without its last mark -----------------------------------

    def _follow_run(self, feed: TenantFeed) -> None:
        """Meeting a run under way: one look whether it still runs, then the sweep follows it."""
        followed = _followed(feed.record)
        run = "/".join(followed) if followed else ""
        if run == feed._closing_run:
            return
        if feed._closing is not None:
            feed._closing.cancel()
        feed._closing_run, feed._closing = run, None
        if followed:
            feed._closing = asyncio.create_task(self._check_run(feed, *followed))
            if self._sweeping is None or self._sweeping.done():
                self._sweeping = asyncio.create_task(
                    self._sweep(), name="closed-runs-sweep", context=contextvars.Context()
                )

    async def _check_run(self, feed: TenantFeed, workflow_id: str, run_id: str) -> None:
        with contextlib.suppress(errors.ApiError):  # Temporal away: the sweep finds it later
            description = await self._runs.describe(workflow_id, run_id)
            if description is None or description.status != WorkflowExecutionStatus.RUNNING:
                await self._seen_closed(feed, workflow_id, run_id)

    async def _seen_closed(self, feed: TenantFeed, workflow_id: str, run_id: str) -> None:
        # The run's last mark, if it made one, committed before the run closed:
        # a read from now on sees it.
        feed._close_seen = (run_id, await self._runs.ended(workflow_id) or Ended(None))
        self._read(feed)

    async def _sweep(self) -> None:
        """While a feed follows a run, asks every so often which runs closed meanwhile."""
        every = self._sweep_every
        since = datetime.now(UTC) - timedelta(seconds=every)
        while any(f._closing_run for f in self._feeds.values()):
            await asyncio.sleep(every)  # the sweep's period, not synchronisation
            # Visibility lags a little behind the runs: the windows overlap.
            now = datetime.now(UTC)
            try:
                closed = await self._runs.closed_since(since - timedelta(seconds=max(every, 5)))
            except errors.ApiError:
                continue  # Temporal away: the next sweep covers this window too
            since = now
            followed = {f._closing_run: f for f in self._feeds.values() if f._closing_run}
            for workflow_id, run_id in closed:
                feed = followed.get(f"{workflow_id}/{run_id}")
                if feed is not None and feed._close_seen is None:
                    with contextlib.suppress(errors.ApiError):
                        await self._seen_closed(feed, workflow_id, run_id)

    @staticmethod
    def _died(feed: TenantFeed) -> bool:
        """After a read that followed the close of the record's run: a record
        that still shows that run under way means the run died without its
        last mark (or its last append)."""
        seen, record = feed._close_seen, feed.record
        if seen is None or record is None or feed.closed is not None:
            return False
        followed = _followed(record)
        if followed is None or followed[1] != seen[0]:
            feed._close_seen = None
            return False
        feed.closed = seen[1]
        return True


def _followed(record: Record | None) -> tuple[str, str] | None:
    """(workflow id, run id) of the run under way the record shows: the run
    that marked it, while in that run's state; else a run that has appended
    its steps and not yet said it ended (a deletion that has opened but not
    yet taken the tenant, say)."""
    if record is None:
        return None
    if record.tenant.state in IN_FLIGHT_STATES:
        return (workflow_of(record.tenant), record.run_id) if record.run_id else None
    if not record.run_ended and record.steps_run_id and record.steps_workflow_id:
        return record.steps_workflow_id, record.steps_run_id
    return None


def watched_run(record: Record | None) -> tuple[str, str] | None:
    """(workflow id, run id) of the run a watcher of the record follows: the
    run under way, else the last run (that of the steps the record keeps, or
    of its last operation); None when the record names no run."""
    followed = _followed(record)
    if followed is not None or record is None:
        return followed
    if record.steps_workflow_id and record.steps_run_id:
        return record.steps_workflow_id, record.steps_run_id
    operation = record.tenant.last_operation
    if operation.workflow_id and operation.run_id:
        return operation.workflow_id, operation.run_id
    return None


def _shown(record: Record | None) -> bytes:
    if record is None:
        return b""
    return record.tenant.SerializeToString(deterministic=True) + (b"\x01" if record.run_ended else b"\x00")
