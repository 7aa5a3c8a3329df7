"""What the dev stack checks before it runs on a state dir: that its ports are
free, that the identity provider is the one the tenants were made with, and
that the AWS emulator holds what the registry says the tenants have.

Each failure is a `StartupError` whose message is one line for the operator:
what is wrong and what to do.
"""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg


class StartupError(RuntimeError):
    """The stack cannot start; the message says why and what to do, in one line."""


@dataclass(frozen=True)
class PortUse:
    """A port the stack listens on, with the names an operator changes it by."""

    port: int
    what: str
    make_variable: str
    flag: str


def check_ports(uses: Iterable[PortUse]) -> None:
    """StartupError naming the first port another program listens on."""
    for use in uses:
        with socket.socket() as sock:
            # As the servers bind: a port left in TIME_WAIT by the last run is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", use.port))
            except OSError as err:
                why = "is in use" if err.errno == errno.EADDRINUSE else f"cannot be used ({err.strerror})"
                raise StartupError(
                    f"port {use.port} ({use.what}) {why}: stop what holds it, or pick another port with"
                    f" `make dev {use.make_variable}=<port>` (`python -m libs.devstack {use.flag} <port>`)"
                ) from None


# -- the identity provider the state dir's tenants were made with ----------

IDENTITY_FILE = "identity.json"
# Tenants that hold nothing in any identity provider any more.
_GONE = ("STATE_DEPROVISIONED",)


def identity_setting(idp: str, keycloak_mode: str) -> dict[str, str]:
    """What decides where a tenant's realm lives: the provider, and for Keycloak its mode."""
    return {"idp": idp, "keycloak_mode": keycloak_mode} if idp == "keycloak" else {"idp": idp}


def _describe(setting: dict[str, str]) -> str:
    if setting.get("idp") == "keycloak":
        return f"IDP=keycloak KEYCLOAK_MODE={setting.get('keycloak_mode', 'realm')}"
    return f"IDP={setting.get('idp', '?')}"


def recorded_identity(state_dir: Path) -> dict[str, str] | None:
    path = state_dir / IDENTITY_FILE
    if not path.exists():
        return None
    loaded: Any = json.loads(path.read_text())
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else None


def record_identity(state_dir: Path, setting: dict[str, str]) -> None:
    (state_dir / IDENTITY_FILE).write_text(json.dumps(setting, sort_keys=True) + "\n")


def _registry_made(conn: psycopg.Connection[Any]) -> bool:
    """Whether the tenantdb worker has made the registry (it does at its first start)."""
    row = conn.execute("SELECT to_regclass('registry.tenant_resources') IS NOT NULL").fetchone()
    return bool(row and row[0])


def _tenants_with_identity(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        if not _registry_made(conn):
            return 0
        found = conn.execute(
            "SELECT count(*) FROM registry.tenants WHERE state <> ALL(%s)", [list(_GONE)]
        ).fetchone()
    return int(found[0]) if found else 0


def check_identity(state_dir: Path, setting: dict[str, str], database_url: str) -> None:
    """StartupError if the state dir's tenants were made with another identity
    setting (their realms are not where this one looks); else records this one."""
    recorded = recorded_identity(state_dir)
    if recorded is not None and recorded != setting:
        count = _tenants_with_identity(database_url)
        if count:
            made, asked = _describe(recorded), _describe(setting)
            raise StartupError(
                f"the {count} tenant(s) in {state_dir} were made with {made}; {asked} would not find"
                f" their realms and admins (suspending or deleting them would fail): run `make dev {made}`,"
                f" or `make clean` to start over with {asked}"
            )
    record_identity(state_dir, setting)


# -- the AWS world against the registry ------------------------------------


# States in which a tenant's bucket must exist (a deletion removes it before the tenant's records).
_HOLDING = ("STATE_ACTIVE", "STATE_SUSPENDED", "STATE_SUSPENDING", "STATE_RESUMING")


def missing_aws_resources(database_url: str, aws: dict[str, str], *, limit: int = 3) -> list[str]:
    """Up to `limit` buckets of tenants that are live by the registry but that
    the AWS emulator does not have; empty when it holds every one."""

    with psycopg.connect(database_url) as conn:
        if not _registry_made(conn):
            return []
        rows = conn.execute(
            "SELECT r.tenant_id, r.resource_id FROM registry.tenant_resources r"
            " JOIN registry.tenants t USING (tenant_id)"
            " WHERE r.kind = 's3_bucket' AND t.state = ANY(%s) ORDER BY r.tenant_id",
            [list(_HOLDING)],
        ).fetchall()
    if not rows:
        return []
    have = {b["Name"] for b in boto3.client("s3", **aws).list_buckets().get("Buckets", [])}
    return [f"bucket {bucket} of tenant {tenant}" for tenant, bucket in rows if bucket not in have][:limit]


def check_aws(database_url: str, aws: dict[str, str], recording: Path) -> None:
    """StartupError when the registry has tenants whose AWS resources the
    emulator lost (a state dir from before recordings were kept, or one whose
    recording was removed): the stack would show them ACTIVE with nothing behind."""
    missing = missing_aws_resources(database_url, aws)
    if missing:
        raise StartupError(
            f"the AWS emulator's state ({recording}) lacks what the registry says tenants have"
            f" ({', '.join(missing)}): this state dir cannot be used again; run `make clean` to start over"
        )
