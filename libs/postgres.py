"""The connection pool and locks of the workers that keep state in the registry database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from psycopg import AsyncConnection, sql
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


def scram_verifier(password: str, *, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, RFC 7677).

    `CREATE/ALTER ROLE ... PASSWORD` given a verifier stores it as it is, so
    the password itself never reaches the server, its logs or
    pg_stat_statements (this is what psql's \\password does).
    """
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def role_password(password: str) -> sql.Composable:
    """The `PASSWORD '<verifier>'` clause of CREATE or ALTER ROLE."""
    return sql.SQL("PASSWORD {}").format(sql.Literal(scram_verifier(password)))
