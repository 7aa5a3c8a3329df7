"""The `tenantry` CLI as people and scripts run it, against the whole stack:
options anywhere, JSON on stdout and progress on stderr, exit codes, a
reader that goes away, times with their zone, and a run's whole plan from
its first update."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from libs.devstack.processes import free_port
from libs.devstack.stack import Stack
from libs.faults import fired_dir
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import eventually, inject_failure

State = tenant_pb2.Tenant.State
pytestmark = pytest.mark.e2e
# A progress line: `acme  PROVISIONING     [####................] 2/10  create_realm`
PROGRESS = re.compile(r"^(\S+)  (\S+) +\[([#.]{20})\] (\d+)/(\d+)  (\S+)$")
UTC_TIME = r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC"
# Pooled: a provisioning run, and a hard deletion (with its backup).
PROVISION_STEPS = 10
HARD_DELETION_STEPS = 13


def _argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.tenant_api.cli", *args]


def _env(stack: Stack) -> dict[str, str]:
    assert stack.access is not None
    return {**os.environ, "TENANTRY_ADDRESS": stack.grpc_address, **stack.access.client_env()}


@pytest.fixture
def cli(stack: Stack) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_argv(*args), capture_output=True, text=True, timeout=120, env=_env(stack))

    return run


def progress_lines(stderr: str) -> list[re.Match[str]]:
    return [m for m in map(PROGRESS.match, stderr.splitlines()) if m]


@pytest.mark.timeout(120)
def test_cli_creates_watches_gets_and_lists(
    cli: Callable[..., subprocess.CompletedProcess[str]], stack: Stack, new_id: Callable[[], str]
) -> None:
    tid = new_id()
    created = cli(
        "create", tid, "--name", "CLI Corp", "--admin-email", "ops@cli.example.com", "--watch", "--json"
    )
    assert created.returncode == 0, created.stderr
    # stdout is one JSON document, the tenant as it settled; progress went to stderr.
    tenant = json.loads(created.stdout)
    assert (tenant["tenantId"], tenant["state"]) == (tid, "STATE_ACTIVE")
    lines = progress_lines(created.stderr)
    assert lines and lines[0].group(1) == tid, created.stderr
    # The whole plan from the first update; the welcome email may still be going out at the last.
    assert {m.group(5) for m in lines} == {str(PROVISION_STEPS)}, created.stderr
    assert re.search(r"ACTIVE +\[#{18,}\.{0,2}\] (9|10)/10", created.stderr), created.stderr

    got = cli("get", tid, "--json")  # --json after the subcommand
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["displayName"] == "CLI Corp"
    text = cli("get", tid).stdout
    assert "CLI Corp" in text and "s3_bucket" in text
    assert re.search(rf"^  created   {UTC_TIME}$", text, re.M) and re.search(
        rf"^  updated   {UTC_TIME}$", text, re.M
    )

    listed = cli("list", "--json", "--page-size", "7")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]  # JSON lines, across pages
    assert tid in [r["tenantId"] for r in rows]
    table = cli("list").stdout.splitlines()
    assert table[0].split() == ["ID", "STATE", "TIER", "CREATED", "UPDATED", "NAME"]
    [row] = [r for r in table if r.startswith(f"{tid} ")]
    assert re.fullmatch(rf"{tid} +ACTIVE +pooled +{UTC_TIME}  {UTC_TIME}  CLI Corp", row), row
    assert row.index("ACTIVE") == table[0].index("STATE")

    events = cli("events", tid, "--json")
    assert events.returncode == 0, events.stderr
    log = [json.loads(line) for line in events.stdout.splitlines()]
    assert log[0]["kind"] == "KIND_REQUESTED" and all(e["time"].endswith("Z") for e in log)
    assert any(e.get("state") == "STATE_ACTIVE" for e in log)
    shown = cli("events", tid).stdout.splitlines()
    assert shown[0].split() == ["TIME", "EVENT", "STEP/STATE", "ACTOR", "DETAIL"]
    assert len(shown) == len(log) + 1
    assert all(re.match(r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC  ", line) for line in shown[1:])


@pytest.mark.timeout(60)
def test_exit_codes_and_errors_in_flags(
    cli: Callable[..., subprocess.CompletedProcess[str]], new_id: Callable[[], str]
) -> None:
    bad = cli("create", "Bad_Id", "--name", "x", "--admin-email", "nope")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: INVALID_ARGUMENT: invalid request"), bad.stderr
    assert "\n  TENANT_ID: " in bad.stderr and "\n  --admin-email: " in bad.stderr, bad.stderr
    assert "tenant_id" not in bad.stderr and "tenant.admin.email" not in bad.stderr
    zero = cli("delete", new_id(), "--grace", "0s")
    assert zero.returncode == 1
    assert "--grace: must be from 1 second to 365 days; use --hard for none" in zero.stderr, zero.stderr
    missing = cli("--json", "get", new_id())
    assert missing.returncode == 1 and missing.stderr.startswith("error: NOT_FOUND: "), missing.stderr
    assert missing.stdout == ""
    usage = cli("get")
    assert usage.returncode == 2 and "usage: tenantry get" in usage.stderr
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
    unreachable = cli("get", "acme", "--address", nobody)
    assert unreachable.returncode == 3, unreachable.stderr
    assert unreachable.stderr.startswith(f"error: cannot reach the API at {nobody}: ")
    assert "Traceback" not in unreachable.stderr


@pytest.mark.timeout(120)
def test_a_deletion_prints_its_purge_time_a_reader_may_leave_and_a_watcher_sees_the_whole_plan(
    api: tenant_service_pb2_grpc.TenantServiceStub,
    cli: Callable[..., subprocess.CompletedProcess[str]],
    stack: Stack,
    fault_rules: Path,
    new_id: Callable[[], str],
) -> None:
    tid = new_id()
    created = cli(
        "create", tid, "--name", "Leaving Ltd", "--admin-email", "ops@leaving.example.com", "--watch"
    )
    assert created.returncode == 0, created.stderr

    before = datetime.now(UTC)
    deleted = cli("delete", tid, "--grace", "1h")
    assert deleted.returncode == 0, deleted.stderr
    purge = re.search(
        rf"^  purge at  ({UTC_TIME}) \(`tenantry undelete {tid}` until then\)$", deleted.stdout, re.M
    )
    assert purge, deleted.stdout
    at = datetime.strptime(purge.group(1), "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
    assert before + timedelta(minutes=59) < at < before + timedelta(minutes=61)

    # A watcher whose reader goes away after the first line: the next update
    # (the undelete's) finds the pipe closed, and the CLI ends quietly.
    watcher = subprocess.Popen(
        _argv("watch", tid, "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(stack)
    )
    assert watcher.stdout is not None and watcher.stderr is not None
    first = json.loads(watcher.stdout.readline())
    assert first["tenant"]["state"] == "STATE_DEPROVISIONING" and first["tenant"]["purgeTime"]
    watcher.stdout.close()
    api.UndeleteTenant(tenant_service_pb2.UndeleteTenantRequest(name=f"tenants/{tid}"))
    assert watcher.wait(timeout=60) == 141
    assert watcher.stderr.read() == b""

    # `| head`: a shell pipeline, the reader leaving after a line.
    pipeline = subprocess.run(
        ["bash", "-c", f"{shlex.join(_argv('list', '--json', '--page-size', '1'))} | head -1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(stack),
    )
    assert len(pipeline.stdout.splitlines()) == 1 and pipeline.stderr == "", pipeline.stderr

    # A hard deletion whose first step (reading the record) is held up: a
    # watcher that comes meanwhile sees the run's opening update, which
    # already counts every step of the run's plan.
    inject_failure(fault_rules, tid, [{"rpc": "GetTenantRecord", "mode": "delay_before", "seconds": 3}])
    try:
        deleter = subprocess.Popen(
            _argv("delete", tid, "--hard", "--watch"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(stack),
        )
        marker = fired_dir(fault_rules) / f"{tid}.GetTenantRecord.delay_before"
        eventually(marker.exists, interval=0.05, what="the deletion reading the record")
        watched = cli("watch", tid)
        out, err = deleter.communicate(timeout=60)
    finally:
        inject_failure(fault_rules, tid, None)
    assert watched.returncode == 0 and deleter.returncode == 0, (watched.stderr, err)
    first, *_ = lines = progress_lines(watched.stderr)
    assert first.group(2) == "ACTIVE" and first.group(4, 5) == ("0", str(HARD_DELETION_STEPS)), first.group(0)
    assert {m.group(5) for m in lines} == {str(HARD_DELETION_STEPS)}, watched.stderr
    assert lines[-1].group(2) == "DEPROVISIONED", watched.stderr
    assert watched.stdout.startswith(f"{tid}  DEPROVISIONED  Leaving Ltd\n"), watched.stdout
    assert {m.group(5) for m in progress_lines(err)} == {str(HARD_DELETION_STEPS)}, err
    assert out.startswith(f"{tid}  DEPROVISIONED  Leaving Ltd\n"), out
