"""Dedicated infrastructure through a real OpenTofu / Terraform binary and the module in deploy/iac/tenant.

The module uses built-in resources only, so nothing is downloaded. The
runner's process handling (heartbeats, cancellation, SIGTERM then SIGKILL)
is also tested on plain long-running commands.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from libs.config import ConfigError
from services.infra import providers, worker
from services.infra.activities import InfrastructureActivities
from services.infra.providers import IacFailed
from services.infra.providers.iac import DEFAULT_MODULE_DIR, TofuInfrastructure, find_binary, run_cli
from tenantry.infra.v1 import infra_pb2
from tenantry.tenant.v1 import tenant_pb2


@pytest.fixture(scope="module")
def settings(aws: Any, tmp_path_factory: pytest.TempPathFactory) -> providers.InfraSettings:
    with pytest.MonkeyPatch.context() as env:
        # Not the default ./.state/iac: tests leave nothing in the work tree.
        env.setenv("TENANTRY_IAC_STATE_DIR", str(tmp_path_factory.mktemp("iac")))
        return providers.InfraSettings.from_env()


@pytest.fixture(scope="module")
def built(settings: providers.InfraSettings) -> providers.Providers:
    return providers.from_env(settings)


def runner(iac_dir: Path, module_dir: Path = DEFAULT_MODULE_DIR) -> TofuInfrastructure:
    return TofuInfrastructure(
        binary=find_binary(), module_dir=module_dir, state_dir=iac_dir, timeout=120, heartbeat_every=0.2
    )


@pytest.fixture
def iac_dir(tmp_path: Path) -> Path:
    return tmp_path / "iac"


@pytest.fixture
def infra(
    built: providers.Providers, settings: providers.InfraSettings, iac_dir: Path
) -> InfrastructureActivities:
    iac_dir.mkdir()
    return InfrastructureActivities(dataclasses.replace(built, infrastructure=runner(iac_dir)), settings)


@pytest.fixture
def tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def apply(tenant_id: str) -> infra_pb2.ApplyInfrastructureRequest:
    return infra_pb2.ApplyInfrastructureRequest(tenant_id=tenant_id, plan_tier=tenant_pb2.PLAN_TIER_SILO)


def run(fn: Any, request: Any, heartbeats: list[Any] | None = None) -> Any:
    env = ActivityEnvironment()
    if heartbeats is not None:
        env.on_heartbeat = lambda *details: heartbeats.append(details)
    return env.run(fn, request)


def state_of(iac_dir: Path, tenant_id: str) -> dict[str, Any]:
    return json.loads((iac_dir / tenant_id / "terraform.tfstate").read_text())


def test_apply_creates_state_in_the_tenants_directory_and_returns_plain_outputs(
    infra: InfrastructureActivities, iac_dir: Path, tenant_id: str
) -> None:
    heartbeats: list[Any] = []
    response = run(infra.apply_infrastructure, apply(tenant_id), heartbeats)

    # Strings only, and never the sensitive one.
    assert dict(response.outputs) == {
        "cluster": f"tenantry-{tenant_id}",
        "network": f"tenantry-{tenant_id}-net",
    }
    state = state_of(iac_dir, tenant_id)
    assert {r["name"] for r in state["resources"]} == {"cluster", "network"}
    assert not (iac_dir / tenant_id / "tfplan").exists()
    assert len(heartbeats) >= 4  # at least one per command: init, plan, apply, output


def test_apply_twice_changes_nothing(iac_dir: Path, tenant_id: str) -> None:
    iac = runner(iac_dir)
    first = iac.apply(tenant_id, variables={"plan_tier": "PLAN_TIER_SILO"})
    serial = state_of(iac_dir, tenant_id)["serial"]

    second = iac.apply(tenant_id, variables={"plan_tier": "PLAN_TIER_SILO"})

    assert first.changed and not second.changed  # the plan found no changes
    assert second.outputs == first.outputs
    assert state_of(iac_dir, tenant_id)["serial"] == serial


def test_state_survives_a_new_runner(iac_dir: Path, tenant_id: str) -> None:
    # A restarted worker is a new runner on the same directory.
    runner(iac_dir).apply(tenant_id, variables={})
    assert not runner(iac_dir).apply(tenant_id, variables={}).changed


def test_destroy_removes_resources_and_state_twice_ok(
    infra: InfrastructureActivities, iac_dir: Path, tenant_id: str
) -> None:
    other = f"o-{uuid.uuid4().hex[:12]}"
    run(infra.apply_infrastructure, apply(tenant_id))
    run(infra.apply_infrastructure, apply(other))

    run(infra.destroy_infrastructure, infra_pb2.DestroyInfrastructureRequest(tenant_id=tenant_id))
    run(infra.destroy_infrastructure, infra_pb2.DestroyInfrastructureRequest(tenant_id=tenant_id))

    assert not (iac_dir / tenant_id).exists()
    # Another tenant's state is untouched.
    assert len(state_of(iac_dir, other)["resources"]) == 2


def test_a_failing_plan_is_permanent_with_the_tools_error(
    built: providers.Providers, settings: providers.InfraSettings, tmp_path: Path, tenant_id: str
) -> None:
    module = tmp_path / "broken"
    module.mkdir()
    (module / "main.tf").write_text('output "x" { value = var.missing }\n')
    infra = InfrastructureActivities(
        dataclasses.replace(built, infrastructure=runner(tmp_path / "state", module)), settings
    )

    with pytest.raises(ApplicationError) as caught:
        run(infra.apply_infrastructure, apply(tenant_id))

    assert caught.value.type == "InvalidArgument" and caught.value.non_retryable
    assert "failed with exit code 1" in str(caught.value)
    assert "Reference to undeclared input variable" in str(caught.value)


def test_cancelling_the_activity_stops_the_tool(
    infra: InfrastructureActivities, iac_dir: Path, tenant_id: str
) -> None:
    env = ActivityEnvironment()
    # Cancel on the first heartbeat, right after the first command started.
    env.on_heartbeat = lambda *details: env.cancel()

    with pytest.raises(CancelledError):
        env.run(infra.apply_infrastructure, apply(tenant_id))

    assert not (iac_dir / tenant_id / "terraform.tfstate").exists()
    assert not (iac_dir / tenant_id / "tfplan").exists()
    assert not _processes_in(iac_dir / tenant_id)


def _processes_in(workdir: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if Path(os.readlink(proc / "cwd")) == workdir:
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


# --- the process boundary --------------------------------------------------------


def _pid_of(pidfile: Path) -> int:
    deadline = time.monotonic() + 5
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline, "the child did not start"
        time.sleep(0.02)
    return int(pidfile.read_text())


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("ignores_sigterm", [False, True])
def test_cancellation_kills_the_child_sigterm_then_sigkill(tmp_path: Path, ignores_sigterm: bool) -> None:
    pidfile = tmp_path / "pid"
    script = (
        "import os, signal, sys, time\n"
        f"if {ignores_sigterm}: signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    env = ActivityEnvironment()

    def long_run() -> None:
        run_cli(
            [sys.executable, "-c", script, str(pidfile)],
            cwd=tmp_path,
            env={},
            progress=activity.heartbeat,
            timeout=60,
            heartbeat_every=0.05,
            kill_grace=0.5,
        )

    def on_heartbeat(*details: Any) -> None:
        if pidfile.exists() and pidfile.read_text():
            env.cancel()

    env.on_heartbeat = on_heartbeat
    started = time.monotonic()
    with pytest.raises(CancelledError):
        env.run(long_run)

    assert time.monotonic() - started < 10
    assert _gone(_pid_of(pidfile))


def test_heartbeats_while_the_child_runs(tmp_path: Path) -> None:
    heartbeats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.append(details)

    result = env.run(
        run_cli,
        [sys.executable, "-c", "import time; print('working'); time.sleep(1)"],
        cwd=tmp_path,
        env={},
        progress=activity.heartbeat,
        timeout=30,
        heartbeat_every=0.1,
    )

    assert result.returncode == 0 and result.stdout == "working\n"
    assert len(heartbeats) >= 5


def test_a_run_over_its_timeout_is_stopped(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(providers.Unavailable, match="did not finish within"):
        run_cli(
            ["sleep", "30"], cwd=tmp_path, env={}, progress=lambda: None, timeout=0.3, heartbeat_every=0.1
        )
    assert time.monotonic() - started < 5


def test_iac_failed_is_a_provider_error() -> None:
    assert IacFailed("x").error_type == "InvalidArgument"


# --- configuration ---------------------------------------------------------------


async def test_worker_refuses_a_missing_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TENANTRY_IAC_BINARY", str(tmp_path / "no-such-tofu"))
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    with pytest.raises(ConfigError, match="TENANTRY_IAC_BINARY"):
        await worker.run()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TENANTRY_DEPLOY_TIMEOUT_SECONDS", "soon"),
        ("TENANTRY_IAC_TIMEOUT_SECONDS", "0"),
        ("TENANTRY_ECS_CLUSTER", "not a cluster"),
        ("TENANTRY_APP_IMAGE", "has spaces:1"),
        ("TENANTRY_IAC_MODULE_DIR", "/nonexistent"),
    ],
)
def test_bad_settings_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str
) -> None:
    monkeypatch.setenv("TENANTRY_IAC_STATE_DIR", str(tmp_path))
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        providers.InfraSettings.from_env()


def test_state_dir_defaults_and_is_created(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TENANTRY_IAC_STATE_DIR", str(tmp_path / "deep" / "iac"))
    assert providers.InfraSettings.from_env().iac_state_dir == tmp_path / "deep" / "iac"
    assert (tmp_path / "deep" / "iac").is_dir()
