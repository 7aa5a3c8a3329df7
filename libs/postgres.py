"""The connection pool and locks of the workers that keep state in the registry database."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from libs.config import ConfigError


def connection_pool(dsn: str, *, name: str, max_connections: int) -> AsyncConnectionPool:
    """An unopened pool of autocommit connections, checked before each use."""
    return AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=max_connections,
        kwargs={"autocommit": True},
        check=AsyncConnectionPool.check_connection,
        open=False,
        name=name,
    )


async def open_pool(
    pool: AsyncConnectionPool, *, open_timeout: float, migration_lock: str, ddl: Sequence[str]
) -> None:
    """Opens `pool` and runs the idempotent `ddl` under the advisory lock `migration_lock`.

    The lock lets replicas that start together migrate one after the other.
    """
    try:
        await pool.open(wait=True, timeout=open_timeout)
    except PoolTimeout as err:
        await pool.close()
        # The DSN may hold a password: name the setting, not its value.
        raise ConfigError(f"cannot connect to the database in TENANTRY_DATABASE_URL: {err}") from None
    async with pool.connection() as conn, conn.transaction():
        await advisory_lock(conn, migration_lock)
        for statement in ddl:
            await conn.execute(statement)


async def advisory_lock(conn: AsyncConnection, name: str) -> None:
    """Takes a transaction-scoped advisory lock named `name`."""
    # Keys are hashed from names so they cannot collide by accident with another component's numbers.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [name])
