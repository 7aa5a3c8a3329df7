"""The dev stack's database roles: one per process, with passwords kept in `<state>/secrets/`.

`prepare` runs the migration (services/tenantdb/migrate.py) with the
embedded server's superuser and returns each process's own DSN. The
passwords are generated once and kept in files (0600) under the state
directory, so a restarted stack finds the roles as it left them. The
embedded server trusts every local connection out of the box; `prepare`
makes it ask every role but the superuser for its password, so that a
role's DSN, and nothing less, opens its session.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict

from libs.devstack.processes import python_module

# Process -> its role (services/tenantdb/migrate.py makes them); the other
# processes (orchestrator, infra, notification) get no DSN.
ROLES = {"tenantdb": "tenantry_tenantdb", "tenant_api": "tenantry_api", "idp": "tenantry_idp"}
MIGRATION = "services.tenantdb.migrate"

_HBA = """\
# Written by libs/devstack/database_roles.py: the administrator by the local
# socket without a password (the dev stack's and the tests' superuser), every
# other role only with its SCRAM password.
local all postgres trust
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


def prepare(admin_url: str, secrets_dir: Path) -> dict[str, str]:
    """Migrates the database at `admin_url` and returns the DSN of each process that has a role.

    The migration runs as in production: its own process, given the
    administrator's DSN and the passwords in its environment.
    """
    require_passwords(admin_url)
    passwords = {process: password(secrets_dir, role) for process, role in ROLES.items()}
    env = {
        **os.environ,
        "TENANTRY_DATABASE_ADMIN_URL": admin_url,
        **{f"TENANTRY_DATABASE_PASSWORD_{process.upper()}": value for process, value in passwords.items()},
    }
    done = subprocess.run(python_module(MIGRATION), env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"the database migration failed: {done.stderr[-2000:]}")
    return {process: role_url(admin_url, ROLES[process], value) for process, value in passwords.items()}


def password(secrets_dir: Path, role: str) -> str:
    """The role's password from `<secrets_dir>/database-<role>`, made on first use."""
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secrets_dir.chmod(0o700)
    path = secrets_dir / f"database-{role}"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    return path.read_text().strip()


def role_url(admin_url: str, role: str, role_password: str) -> str:
    """`admin_url`'s server and database, as `role` with its password."""
    info = conninfo_to_dict(admin_url)
    query = {key: str(info[key]) for key in ("host", "port") if info.get(key)}
    dbname = str(info.get("dbname") or info.get("user") or "postgres")
    return (
        f"postgresql://{quote(role, safe='')}:{quote(role_password, safe='')}@/{quote(dbname, safe='')}"
        f"?{urlencode(query)}"
    )


def require_passwords(admin_url: str) -> None:
    """Makes the server ask every role but the superuser for its password (pg_hba.conf, reloaded)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row: Any = conn.execute("SHOW hba_file").fetchone()
        hba = Path(row[0])
        if hba.read_text() != _HBA:
            hba.write_text(_HBA)  # in place: the file keeps the server's owner and mode
            conn.execute("SELECT pg_reload_conf()")
