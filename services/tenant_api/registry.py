"""Read-only access to the tenant registry (owned by the tenant-data domain).

The facade reads the registry for Get, List and a tenant's events and never
writes it: every change goes through a workflow. Enums are stored by their
proto value names.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import psycopg
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.sql import SQL, Composed
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from libs import config
from libs.lifecycle import IN_FLIGHT_STATES, tenant_name
from services.tenant_api import errors, filters
from tenantry.tenant.v1 import tenant_pb2

_COLUMNS = """t.tenant_id, t.display_name, t.plan_tier, t.domains,
    t.admin_email, t.admin_given_name, t.admin_family_name,
    t.state, t.current_step, t.failed_step, t.failure_reason, t.create_time, t.update_time, t.purge_time,
    t.leftover_resources, t.last_operation, t.workflow_id, t.run_id, t.run_steps,
    coalesce((SELECT json_agg(json_build_object('kind', r.kind, 'id', r.resource_id, 'domain', r.domain)
                              ORDER BY r.domain, r.kind, r.resource_id)
              FROM registry.tenant_resources r WHERE r.tenant_id = t.tenant_id), '[]'::json) AS resources,
    coalesce((SELECT json_agg(json_build_object('kind', b.kind, 'uri', b.uri,
                                                'size_bytes', b.size_bytes, 'sha256', b.sha256)
                              ORDER BY b.kind, b.uri)
              FROM registry.tenant_backups b WHERE b.tenant_id = t.tenant_id), '[]'::json) AS backups"""

log = logging.getLogger(__name__)
_T = TypeVar("_T")
# Seconds the pool goes on trying to replace a lost connection; then the
# registry counts as unreachable (see Registry._query).
RECONNECT_TIMEOUT = 1.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_Statement = str | Composed

# A list leaves out the step progress of each tenant's last run (GetTenant and
# WatchTenant show it): a thousand tenants' steps are most of a page's cost.
_LIST_COLUMNS = _COLUMNS.replace("t.run_steps", "NULL::jsonb AS run_steps")

_EVENT_COLUMNS = """e.event_id, e.tenant_id, e."time", e.kind, e.step, e.state, e.actor,
    e.workflow_id, e.run_id, e.detail, e.sequence"""


@dataclass
class Record:
    """A tenant as the registry has it, with the run that owns the record
    (its latest mark) and whether the run of its step progress has ended."""

    tenant: tenant_pb2.Tenant
    workflow_id: str
    run_id: str
    # The run whose steps `tenant` shows has said it ended (or there is none).
    run_ended: bool
    # The run whose steps the record keeps (its latest append), shown or not.
    steps_run_id: str = ""
    steps_workflow_id: str = ""

    @property
    def under_way(self) -> bool:
        """A run is under way: the record is in a run's state, or a run has not ended."""
        return self.tenant.state in IN_FLIGHT_STATES or not self.run_ended


class _Broken(Exception):
    """The connection died under a read (a restart or failover ends every session)."""


class _Unreachable(Exception):
    """The database could not be reached a moment ago, and another read is trying again."""


class Registry:
    """The registry reads of the facade.

    A read the database cannot answer (down, restarting, failing over, too
    slow, refusing connections) raises `errors.unavailable("registry")`,
    within about `pool_timeout` + `statement_timeout` + 1 s at most, and in
    milliseconds once connecting has failed.
    """

    def __init__(
        self,
        dsn: str,
        *,
        max_size: int = 10,
        pool_timeout: float = 2.0,
        connect_timeout: int = 2,
        statement_timeout: float = 5.0,
    ) -> None:
        """Args:
        dsn: The registry database.
        max_size: Most connections kept open.
        pool_timeout: Seconds a read waits for a pooled connection.
        connect_timeout: Seconds a new connection may take (libpq counts
            whole seconds, 2 at least).
        statement_timeout: Seconds a query may run in the server; the facade
            stops waiting a second later, should the server not answer at all.
        """
        options = conninfo_to_dict(dsn).get("options") or ""
        self._dsn = dsn
        self._kwargs: dict[str, Any] = {
            "row_factory": dict_row,
            "autocommit": True,
            "connect_timeout": connect_timeout,
            "options": f"{options} -c statement_timeout={round(statement_timeout * 1000)}".strip(),
        }
        self._connect_timeout = float(connect_timeout)
        self._statement_timeout = statement_timeout
        # No check on checkout (a round trip per read, and after a restart it
        # backs off 1 s, 2 s... between dead connections): a read that meets
        # a dead connection is repeated instead, and the pool drops it.
        self._pool = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            kwargs=self._kwargs,
            timeout=pool_timeout,
            reconnect_timeout=RECONNECT_TIMEOUT,
            reconnect_failed=self._gave_up,
            configure=self._connected,
            open=False,
            name="registry",
        )
        # Set when connecting has failed; cleared by the next connection or read that succeeds.
        self._unreachable = False
        self._probing = False
        # Reads given up on, still ending in the background.
        self._abandoned: set[asyncio.Future[Any]] = set()

    @classmethod
    def from_env(cls) -> Registry:
        """The registry of TENANTRY_DATABASE_URL with the TENANTRY_DATABASE_* limits."""
        return cls(
            config.database_url(),
            max_size=config.integer("TENANTRY_DATABASE_POOL_SIZE", 10),
            pool_timeout=config.integer("TENANTRY_DATABASE_POOL_TIMEOUT_SECONDS", 2),
            connect_timeout=config.integer("TENANTRY_DATABASE_CONNECT_TIMEOUT_SECONDS", 2),
            statement_timeout=config.integer("TENANTRY_DATABASE_STATEMENT_TIMEOUT_SECONDS", 5),
        )

    async def open(self) -> None:
        try:
            await self._pool.open(wait=True, timeout=30)
        except PoolTimeout as err:
            await self._pool.close()
            # The DSN may hold a password: name the setting, not its value.
            raise config.ConfigError(
                f"cannot connect to the database in TENANTRY_DATABASE_URL: {err}"
            ) from None

    async def close(self) -> None:
        await self._pool.close()

    @property
    def dsn(self) -> str:
        return self._dsn

    async def get(self, tenant_id: str) -> tenant_pb2.Tenant | None:
        record = await self.record(tenant_id)
        return record.tenant if record else None

    async def record(self, tenant_id: str) -> Record | None:
        rows = await self._query(
            f"SELECT {_COLUMNS} FROM registry.tenants t WHERE t.tenant_id = %s", (tenant_id,)
        )
        if not rows:
            return None
        row = rows[0]
        tenant = _tenant(row)
        steps = row["run_steps"] or {}
        return Record(
            tenant,
            workflow_id=row["workflow_id"],
            run_id=row["run_id"],
            run_ended=not steps or bool(steps.get("ended")) or _shown_steps(tenant, row) is None,
            steps_run_id=str(steps.get("run_id", "")),
            steps_workflow_id=str(steps.get("workflow_id", "")),
        )

    async def recent_events(self, tenant_id: str, *, limit: int) -> list[tuple[int, tenant_pb2.TenantEvent]]:
        """The tenant's latest `limit` events, oldest first, each with its event id."""
        rows = await self._query(
            f"SELECT {_EVENT_COLUMNS} FROM registry.tenant_events e"
            " WHERE e.tenant_id = %s ORDER BY e.event_id DESC LIMIT %s",
            (tenant_id, limit),
        )
        return [(row["event_id"], _event(row)) for row in reversed(rows)]

    async def page(
        self,
        *,
        after: tuple[Any, str] | None = None,
        limit: int,
        only: frozenset[str] | None = None,
        query: filters.Query = filters.DEFAULT_QUERY,
    ) -> list[tenant_pb2.Tenant]:
        """Tenants that match `query`'s filter, in its order, after the one
        whose sort key and id are `after` (keyset pagination: every order has
        an index that ends in tenant_id); with `only`, just those tenants."""
        statement, params = page_sql(query, after=after, limit=limit, only=only)
        rows = await self._query(statement, tuple(params))
        return [_tenant(row) for row in rows]

    async def events(
        self, tenant_id: str, *, after: int, limit: int
    ) -> list[tuple[int, tenant_pb2.TenantEvent]]:
        """The tenant's events with an event id greater than `after`, oldest first
        (keyset pagination), each with its event id."""
        rows = await self._query(
            f"SELECT {_EVENT_COLUMNS} FROM registry.tenant_events e"
            " WHERE e.tenant_id = %s AND e.event_id > %s ORDER BY e.event_id LIMIT %s",
            (tenant_id, after, limit),
        )
        return [(row["event_id"], _event(row)) for row in rows]

    async def domain_holders(self, domains: list[str], *, other_than: str) -> list[str]:
        """Domains among `domains` that another live tenant already has."""
        rows = await self._query(
            "SELECT DISTINCT d FROM registry.tenants t, unnest(t.domains) AS d"
            " WHERE d = ANY(%s) AND t.tenant_id <> %s"
            " AND t.state NOT IN ('STATE_DEPROVISIONED', 'STATE_PROVISION_FAILED') ORDER BY d",
            (domains, other_than),
        )
        return [row["d"] for row in rows]

    async def _query(self, sql: _Statement, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        unreachable = self._unreachable
        try:
            if unreachable and not self._pool.get_stats().get("pool_available"):
                rows = await self._probe(sql, params)
            else:
                try:
                    rows = await self._bounded(self._pooled(sql, params), self._pool.timeout)
                except _Broken:
                    # The other pooled sessions are likely dead too: read once
                    # more on a connection of its own (every read may be repeated).
                    rows = await self._bounded(self._fresh(sql, params), self._connect_timeout)
        except (psycopg.OperationalError, _Broken, _Unreachable, TimeoutError) as err:
            # PoolTimeout, QueryCanceled (the statement timeout) and AdminShutdown
            # are OperationalErrors too. Told once per outage, not once per read.
            (log.debug if unreachable else log.warning)(
                "registry read failed: %s: %s", type(err).__name__, err
            )
            raise errors.unavailable("registry") from None
        if unreachable:
            log.info("the registry database answers again")
        self._unreachable = False
        return rows

    async def _probe(self, sql: _Statement, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        """While the database cannot be reached, one read at a time tries on
        a connection of its own, instead of every read waiting for the pool
        (whose attempts back off); the others are answered at once."""
        if self._probing:
            raise _Unreachable("the registry database cannot be reached")
        self._probing = True
        try:
            return await self._bounded(self._fresh(sql, params), self._connect_timeout)
        finally:
            self._probing = False

    async def _gave_up(self, pool: AsyncConnectionPool) -> None:
        self._unreachable = True

    async def _connected(self, conn: psycopg.AsyncConnection[Any]) -> None:
        # orjson parses the JSON columns (resources, operations, steps) several times faster.
        set_json_loads(orjson.loads, conn)
        self._unreachable = False

    async def _pooled(self, sql: _Statement, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            return await _read(conn, sql, params)

    async def _fresh(self, sql: _Statement, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        try:
            conn = await psycopg.AsyncConnection.connect(self._dsn, **self._kwargs)
        except psycopg.OperationalError:
            self._unreachable = True
            raise
        set_json_loads(orjson.loads, conn)
        async with conn:
            return await _read(conn, sql, params)

    async def _bounded(self, read: Coroutine[Any, Any, _T], wait: float) -> _T:
        """Awaits `read`, which first waits up to `wait` seconds for a
        connection, for at most a second longer than the server should take.

        A server that stops answering (frozen, or cut off by the network)
        lets neither the statement timeout nor a socket error end the read.
        """
        task = asyncio.ensure_future(read)
        try:
            done, _ = await asyncio.wait({task}, timeout=wait + self._statement_timeout + 1)
        finally:
            if not task.done():
                # psycopg then cancels the query and closes the connection, which
                # takes a while against a silent server: not awaited here.
                task.cancel()
                self._abandoned.add(task)
                task.add_done_callback(self._forget)
        if not done:
            raise TimeoutError("the registry database did not answer in time")
        return task.result()

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: it has no caller left to raise to


def page_sql(
    query: filters.Query,
    *,
    after: tuple[Any, str] | None,
    limit: int,
    only: frozenset[str] | None = None,
    columns: str = _LIST_COLUMNS,
) -> tuple[Composed, list[Any]]:
    """The SELECT of one page and its parameters (the benchmark EXPLAINs it)."""
    where, params = query.where()
    conditions = [where]
    if only is not None:
        conditions.append(SQL("t.tenant_id = ANY(%s)"))
        params.append(sorted(only))
    if after is not None:
        condition, values = query.order.after(*after)
        conditions.append(condition)
        params.extend(values)
    # The page's ids first, alone, so that the planner picks the index for the
    # filter and the order; the columns (and their subqueries) for those rows only.
    # (an array, computed once: the rows are then fetched by primary key).
    statement = SQL(
        "SELECT {} FROM registry.tenants t WHERE t.tenant_id = ANY(ARRAY("
        "SELECT t.tenant_id FROM registry.tenants t WHERE {} ORDER BY {} LIMIT %s)) ORDER BY {}"
    ).format(
        SQL(columns),  # type: ignore[arg-type]  # a constant of this module
        SQL(" AND ").join(conditions),
        query.order.clause(),
        query.order.clause(),
    )
    return statement, [*params, limit]


async def _read(
    conn: psycopg.AsyncConnection[Any], sql: _Statement, params: tuple[Any, ...]
) -> list[dict[str, Any]]:
    try:
        cursor = await conn.execute(sql, params)
        return await cursor.fetchall()  # type: ignore[return-value]
    except psycopg.errors.UndefinedTable:
        # The tenant-data worker creates the registry at its first
        # start; until then there are no tenants.
        return []
    except psycopg.OperationalError as err:
        if conn.broken:
            raise _Broken(str(err)) from err
        raise


def _timestamp(value: datetime) -> Timestamp:
    # Timestamp.FromDatetime is Python (calendar.timegm); timedelta arithmetic is C.
    delta = value - _EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


def _json_timestamp(text: str) -> Timestamp:
    """A proto JSON timestamp; the worker's own spelling (microseconds, Z) the fast way."""
    if len(text) == 27 and text[19] == "." and text[26] == "Z":
        try:
            return _timestamp(datetime.fromisoformat(text))
        except ValueError:
            pass
    stamp = Timestamp()
    stamp.FromJsonString(text)
    return stamp


def _enum_number(numbers: dict[str, int], name: str) -> int:
    if not isinstance(name, str):
        raise TypeError("an enum by number")  # the general parser takes it
    return numbers.get(name, 0)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return value


def _operation_fields() -> dict[str, Callable[[Any], Any]]:
    """How each field of Tenant.Operation is read from its proto JSON (field names as in proto)."""
    readers: dict[str, Callable[[Any], Any]] = {}
    for field in tenant_pb2.Operation.DESCRIPTOR.fields:
        if field.enum_type is not None:
            numbers = {value.name: value.number for value in field.enum_type.values}
            # A name this build does not know reads as 0, as ParseDict skips it.
            readers[field.name] = functools.partial(_enum_number, numbers)
        elif field.message_type is not None and field.message_type.full_name == "google.protobuf.Timestamp":
            readers[field.name] = _json_timestamp
        elif field.type == field.TYPE_STRING:
            readers[field.name] = _string
    return readers


_OPERATION_FIELDS = _operation_fields()
# Fields of Operation the facade derives from the stored ones (errors.set_operation_error), never stored.
DERIVED_OPERATION_FIELDS = frozenset({"error"})


def set_current_steps(tenant: tenant_pb2.Tenant, steps: Sequence[str]) -> None:
    """current_steps, and the deprecated current_step (the same, comma-joined) for older clients."""
    del tenant.current_steps[:]
    tenant.current_steps.extend(steps)
    tenant.current_step = ",".join(steps)


def _operation(value: dict[str, Any], into: tenant_pb2.Operation) -> None:
    """Fills `into` from the last_operation column as json_format.ParseDict
    (ignore_unknown_fields) does, at a tenth of its cost for what the worker writes."""
    if value.keys() <= _OPERATION_FIELDS.keys():
        try:
            into.MergeFrom(tenant_pb2.Operation(**{k: _OPERATION_FIELDS[k](v) for k, v in value.items()}))
            return
        except (TypeError, ValueError):
            into.Clear()
    # A field of a newer worker, a camelCase name, a number for an enum: the general parser.
    json_format.ParseDict(value, into, ignore_unknown_fields=True)


def _enum_value(enum: Any, name: str) -> int:
    """The value of a stored enum name; 0 (UNSPECIFIED) for a name this build does not know."""
    try:
        return int(enum.Value(name))
    except ValueError:
        return 0


def _event(row: dict[str, Any]) -> tenant_pb2.TenantEvent:
    return tenant_pb2.TenantEvent(
        name=f"{tenant_name(row['tenant_id'])}/events/{row['event_id']}",
        time=_timestamp(row["time"]),
        kind=_enum_value(tenant_pb2.TenantEvent.Kind, row["kind"]),
        step=row["step"],
        state=_enum_value(tenant_pb2.Tenant.State, row["state"]),
        actor=row["actor"],
        workflow_id=row["workflow_id"],
        run_id=row["run_id"],
        detail=row["detail"],
        sequence=row["sequence"],
    )


def _tenant(row: dict[str, Any]) -> tenant_pb2.Tenant:
    tenant = tenant_pb2.Tenant(
        name=tenant_name(row["tenant_id"]),
        tenant_id=row["tenant_id"],
        display_name=row["display_name"],
        plan_tier=tenant_pb2.PlanTier.Value(row["plan_tier"]),
        domains=row["domains"],
        admin=tenant_pb2.AdminContact(
            email=row["admin_email"], given_name=row["admin_given_name"], family_name=row["admin_family_name"]
        ),
        state=tenant_pb2.Tenant.State.Value(row["state"]),
        current_step=row["current_step"],
        current_steps=[s for s in row["current_step"].split(",") if s],
        failed_step=row["failed_step"],
        failure_reason=row["failure_reason"],
        resources=[tenant_pb2.Resource(**r) for r in row["resources"]],
        create_time=_timestamp(row["create_time"]),
        update_time=_timestamp(row["update_time"]),
        backups=[tenant_pb2.BackupObject(**b) for b in row["backups"]],
    )
    if row["purge_time"] is not None:
        tenant.purge_time.CopyFrom(_timestamp(row["purge_time"]))
    tenant.leftover_resources.extend(
        tenant_pb2.LeftoverResource(
            step=r["step"], kind=r["kind"], id=r["resource_id"], domain=r["domain"], reason=r["reason"]
        )
        for r in row["leftover_resources"]
    )
    if row["last_operation"]:
        # Stored as proto JSON by the tenant-data worker; unknown fields of a newer one are skipped.
        _operation(row["last_operation"], tenant.last_operation)
        errors.set_operation_error(tenant.tenant_id, tenant.last_operation)
    steps = _shown_steps(tenant, row)
    if steps:
        tenant.steps.extend(
            tenant_pb2.StepProgress(
                step=s["step"], status=_enum_value(tenant_pb2.StepStatus, s["status"]), error=s["error"]
            )
            for s in steps["steps"]
        )
        set_current_steps(tenant, steps["current_steps"])
    return tenant


def _shown_steps(tenant: tenant_pb2.Tenant, row: dict[str, Any]) -> dict[str, Any] | None:
    """The step progress the tenant shows: that of its latest run, kept by
    the run's appends; none while a new run has marked the record but not yet
    sent its own (the steps would be the last run's)."""
    steps = row.get("run_steps")
    if not steps:
        return None
    if tenant.state in IN_FLIGHT_STATES and row.get("run_id") and steps.get("run_id") != row["run_id"]:
        return None
    return steps  # type: ignore[no-any-return]
