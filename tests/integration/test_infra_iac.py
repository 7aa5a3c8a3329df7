"""Dedicated infrastructure through a real OpenTofu / Terraform binary and the module in deploy/iac/tenant.

The module uses built-in resources only, so nothing is downloaded; its state
lives in moto's S3 (the CLI's own s3 backend, S3-native locking). The
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
from services.infra.providers.iac import DEFAULT_MODULE_DIR, S3State, TofuInfrastructure, find_binary, run_cli
from tenantry.infra.v1 import infra_pb2
from tenantry.tenant.v1 import tenant_pb2


@pytest.fixture(scope="module")
def state(built: providers.Providers) -> S3State:
    assert isinstance(built.infrastructure, TofuInfrastructure)
    return built.infrastructure.state


def runner(
    work_dir: Path, state: S3State, module_dir: Path = DEFAULT_MODULE_DIR, **options: Any
) -> TofuInfrastructure:
    work_dir.mkdir(parents=True, exist_ok=True)
    return TofuInfrastructure(
        binary=find_binary(),
        module_dir=module_dir,
        work_dir=work_dir,
        state=state,
        timeout=120,
        heartbeat_every=0.2,
        **options,
    )


@pytest.fixture
def iac_dir(tmp_path: Path) -> Path:
    return tmp_path / "iac"


@pytest.fixture
def iac(iac_dir: Path, state: S3State) -> TofuInfrastructure:
    return runner(iac_dir, state)


@pytest.fixture
def infra(
    built: providers.Providers, settings: providers.InfraSettings, iac: TofuInfrastructure
) -> InfrastructureActivities:
    return InfrastructureActivities(dataclasses.replace(built, infrastructure=iac), settings)


@pytest.fixture
def tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def apply(tenant_id: str) -> infra_pb2.ApplyInfrastructureRequest:
    return infra_pb2.ApplyInfrastructureRequest(tenant_id=tenant_id, plan_tier=tenant_pb2.PLAN_TIER_SILO)


def destroy(tenant_id: str, *, expect_state: bool) -> infra_pb2.DestroyInfrastructureRequest:
    return infra_pb2.DestroyInfrastructureRequest(tenant_id=tenant_id, expect_state=expect_state)


def run(fn: Any, request: Any, heartbeats: list[Any] | None = None) -> Any:
    env = ActivityEnvironment()
    if heartbeats is not None:
        env.on_heartbeat = lambda *details: heartbeats.append(details)
    return env.run(fn, request)


def versions(s3: Any, state: S3State, tenant_id: str) -> list[tuple[str, str]]:
    """(key, version id) of every object version and delete marker under the tenant's prefix."""
    listed = s3.list_object_versions(Bucket=state.bucket, Prefix=f"{state.key_prefix}/{tenant_id}/")
    return sorted(
        (item["Key"], item["VersionId"])
        for item in listed.get("Versions", []) + listed.get("DeleteMarkers", [])
    )


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_apply_keeps_the_state_in_s3_nothing_on_disk_and_returns_plain_outputs(
    infra: InfrastructureActivities, iac: TofuInfrastructure, state: S3State, iac_dir: Path, tenant_id: str
) -> None:
    heartbeats: list[Any] = []
    response = run(infra.apply_infrastructure, apply(tenant_id), heartbeats)

    # Strings only, and never the sensitive one.
    assert dict(response.outputs) == {
        "cluster": f"tenantry-{tenant_id}",
        "network": f"tenantry-{tenant_id}-net",
    }
    assert sorted(iac.state_resources(tenant_id) or []) == [
        "terraform_data.cluster",
        "terraform_data.network",
    ]
    # The run's scratch folder (module copy, .terraform, plan file) is gone:
    # another replica needs nothing from this disk.
    assert files_in(iac_dir) == []
    assert state.lock_holder(tenant_id) is None
    assert len(heartbeats) >= 4  # at least one per command: init, plan, apply, output


def test_apply_twice_changes_nothing(iac: TofuInfrastructure, state: S3State, tenant_id: str) -> None:
    first = iac.apply(tenant_id, variables={"plan_tier": "PLAN_TIER_SILO"})
    serial = (state.read(tenant_id) or {})["serial"]

    second = iac.apply(tenant_id, variables={"plan_tier": "PLAN_TIER_SILO"})

    assert first.changed and not second.changed  # the plan found no changes
    assert second.outputs == first.outputs
    assert (state.read(tenant_id) or {})["serial"] == serial


def test_another_replica_on_another_disk_finds_the_state(
    tmp_path: Path, state: S3State, tenant_id: str
) -> None:
    runner(tmp_path / "replica-a", state).apply(tenant_id, variables={})
    other = runner(tmp_path / "replica-b", state)

    assert not other.apply(tenant_id, variables={}).changed
    other.destroy(tenant_id, expect_state=True)
    assert other.state_resources(tenant_id) == []


def test_destroy_keeps_an_empty_state_releases_the_lock_and_succeeds_again(
    infra: InfrastructureActivities, iac: TofuInfrastructure, state: S3State, s3: Any, tenant_id: str
) -> None:
    other = f"o-{uuid.uuid4().hex[:12]}"
    run(infra.apply_infrastructure, apply(tenant_id))
    run(infra.apply_infrastructure, apply(other))
    others_versions = versions(s3, state, other)

    run(infra.destroy_infrastructure, destroy(tenant_id, expect_state=True))

    # The empty state is the proof of the destroy, so a retried deletion succeeds.
    assert iac.state_resources(tenant_id) == []
    assert state.lock_holder(tenant_id) is None
    run(infra.destroy_infrastructure, destroy(tenant_id, expect_state=True))
    assert iac.state_resources(tenant_id) == []
    # Tenant A's runs never wrote under tenant B's key.
    assert versions(s3, state, other) == others_versions
    assert len(iac.state_resources(other) or []) == 2


def test_destroy_expecting_state_that_is_missing_fails_for_good(
    infra: InfrastructureActivities, iac: TofuInfrastructure, tenant_id: str
) -> None:
    with pytest.raises(ApplicationError) as caught:
        run(infra.destroy_infrastructure, destroy(tenant_id, expect_state=True))

    assert caught.value.type == "NotFound" and caught.value.non_retryable
    assert "missing" in str(caught.value) and "may still exist" in str(caught.value)
    assert iac.state_resources(tenant_id) is None  # nothing was written in its place


def test_a_compensating_destroy_without_state_succeeds_and_writes_none(
    infra: InfrastructureActivities, iac: TofuInfrastructure, s3: Any, state: S3State, tenant_id: str
) -> None:
    run(infra.destroy_infrastructure, destroy(tenant_id, expect_state=False))

    assert iac.state_resources(tenant_id) is None
    assert versions(s3, state, tenant_id) == []


def test_a_missing_state_bucket_is_missing_state(
    iac_dir: Path, settings: providers.InfraSettings, s3: Any, tenant_id: str
) -> None:
    # A worker pointed at the wrong bucket must not report "destroyed".
    nowhere = S3State(
        s3,
        bucket=f"no-such.{uuid.uuid4().hex[:8]}",
        key_prefix="tenants",
        region="us-east-1",
        path_style=True,
    )
    with pytest.raises(providers.IacStateMissing):
        runner(iac_dir, nowhere).destroy(tenant_id, expect_state=True)


def test_a_held_lock_makes_apply_wait_then_fail_retryable(
    built: providers.Providers,
    settings: providers.InfraSettings,
    iac_dir: Path,
    state: S3State,
    s3: Any,
    tenant_id: str,
) -> None:
    # The lock object another run's CLI would hold, written the way it writes it.
    lock = {"ID": "held-by-replica-b", "Operation": "OperationTypeApply", "Who": "infra@replica-b",
            "Version": "1.11.4", "Created": "2026-01-01T00:00:00Z", "Info": "", "Path": ""}  # fmt: skip
    state.ensure_bucket()
    s3.put_object(
        Bucket=state.bucket, Key=state.lock_key(tenant_id), Body=json.dumps(lock).encode(), IfNoneMatch="*"
    )
    waiting = runner(iac_dir, state, lock_timeout=2)
    infra = InfrastructureActivities(dataclasses.replace(built, infrastructure=waiting), settings)

    started = time.monotonic()
    with pytest.raises(ApplicationError) as caught:
        run(infra.apply_infrastructure, apply(tenant_id))
    elapsed = time.monotonic() - started

    assert 2 <= elapsed < 30  # waited for the lock, then gave up
    assert caught.value.type == "ProviderUnavailable" and not caught.value.non_retryable
    assert "locked by another run" in str(caught.value) and "held-by-replica-b" in str(caught.value)
    assert waiting.state_resources(tenant_id) is None  # nothing applied meanwhile

    s3.delete_object(Bucket=state.bucket, Key=state.lock_key(tenant_id))
    run(infra.apply_infrastructure, apply(tenant_id))  # the retry, once the lock is free
    assert len(waiting.state_resources(tenant_id) or []) == 2


def test_a_lock_older_than_any_command_is_broken(
    iac_dir: Path, state: S3State, s3: Any, tenant_id: str
) -> None:
    # The lock of a CLI whose worker was killed: nobody will release it.
    state.ensure_bucket()
    s3.put_object(Bucket=state.bucket, Key=state.lock_key(tenant_id), Body=b'{"ID": "of-a-killed-run"}')
    # Every lock counts as older than a command lasts here (by default: the timeout and a minute).
    iac = runner(iac_dir, state, lock_timeout=1, stale_lock_after=0)

    assert iac.apply(tenant_id, variables={}).changed

    assert state.lock_holder(tenant_id) is None
    assert len(iac.state_resources(tenant_id) or []) == 2


def attempt(n: int, activity_id: str = "7") -> ActivityEnvironment:
    """An activity environment for attempt `n` of one activity of one workflow run."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        attempt=n,
        activity_id=activity_id,
        workflow_id="tenant/x/provision",
        workflow_run_id="run-1",
    )
    return env


def test_a_lock_left_by_an_earlier_attempt_is_broken_at_once(
    built: providers.Providers,
    settings: providers.InfraSettings,
    iac_dir: Path,
    state: S3State,
    s3: Any,
    tenant_id: str,
) -> None:
    # Attempt 1's worker died while its CLI held the lock (taken, never released).
    state.ensure_bucket()
    state.write_holder(
        tenant_id, {"workflow_id": "tenant/x/provision", "run_id": "run-1", "activity_id": "7", "attempt": 1}
    )
    s3.put_object(Bucket=state.bucket, Key=state.lock_key(tenant_id), Body=b'{"ID": "of-attempt-1"}')
    # A long lock timeout and no age rule: only the holder record can free it.
    waiting = runner(iac_dir, state, lock_timeout=60)
    infra = InfrastructureActivities(dataclasses.replace(built, infrastructure=waiting), settings)

    started = time.monotonic()
    attempt(2).run(infra.apply_infrastructure, apply(tenant_id))
    assert time.monotonic() - started < 30  # no wait for a lock nobody holds any more
    assert state.lock_holder(tenant_id) is None
    assert len(waiting.state_resources(tenant_id) or []) == 2


def test_a_lock_of_the_same_attempt_is_not_broken(
    built: providers.Providers,
    settings: providers.InfraSettings,
    iac_dir: Path,
    state: S3State,
    s3: Any,
    tenant_id: str,
) -> None:
    # The holder record says the running attempt itself holds it: a command of
    # this attempt is under way, so the lock stands and the apply waits, then fails.
    holder = {"workflow_id": "tenant/x/provision", "run_id": "run-1", "activity_id": "7", "attempt": 2}
    state.ensure_bucket()
    state.write_holder(tenant_id, holder)
    s3.put_object(Bucket=state.bucket, Key=state.lock_key(tenant_id), Body=b'{"ID": "of-attempt-2"}')
    waiting = runner(iac_dir, state, lock_timeout=1)
    infra = InfrastructureActivities(dataclasses.replace(built, infrastructure=waiting), settings)
    with pytest.raises(ApplicationError) as caught:
        attempt(2).run(infra.apply_infrastructure, apply(tenant_id))
    assert "locked by another run" in str(caught.value)
    assert state.lock_holder(tenant_id) is not None


def test_the_state_bucket_is_created_private_encrypted_versioned(aws: Any, s3: Any) -> None:
    bucket = f"iac-state.{uuid.uuid4().hex[:12]}"
    S3State(s3, bucket=bucket, key_prefix="tenants", region="us-east-1", path_style=True).ensure_bucket()

    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_local_state_of_an_older_version_moves_to_s3(
    iac: TofuInfrastructure, iac_dir: Path, state: S3State, s3: Any, tenant_id: str
) -> None:
    # A stack applied by a version that kept state in <work dir>/<tenant>/.
    iac.apply(tenant_id, variables={})
    document = state.read(tenant_id)
    for key, version in versions(s3, state, tenant_id):
        s3.delete_object(Bucket=state.bucket, Key=key, VersionId=version)
    legacy = iac_dir / tenant_id
    legacy.mkdir()
    (legacy / "terraform.tfstate").write_text(json.dumps(document))

    iac.destroy(tenant_id, expect_state=True)

    assert iac.state_resources(tenant_id) == []
    assert not legacy.exists()


def test_a_killed_runs_scratch_folder_is_swept(iac_dir: Path, state: S3State, tenant_id: str) -> None:
    iac = runner(iac_dir, state, kill_grace=0)
    old = iac_dir / f"{tenant_id}.killed"
    (old / ".terraform").mkdir(parents=True)
    (old / "tfplan").write_text("plan of a run whose worker was killed")
    os.utime(old, (0, 0))

    iac.apply(tenant_id, variables={})

    assert not old.exists()
    assert iac.scratch_dirs(tenant_id) == []


def test_a_failing_plan_is_permanent_with_the_tools_error(
    built: providers.Providers,
    settings: providers.InfraSettings,
    state: S3State,
    tmp_path: Path,
    tenant_id: str,
) -> None:
    module = tmp_path / "broken"
    module.mkdir()
    (module / "main.tf").write_text('output "x" { value = var.missing }\n')
    infra = InfrastructureActivities(
        dataclasses.replace(built, infrastructure=runner(tmp_path / "work", state, module)), settings
    )

    with pytest.raises(ApplicationError) as caught:
        run(infra.apply_infrastructure, apply(tenant_id))

    assert caught.value.type == "InvalidArgument" and caught.value.non_retryable
    assert "failed with exit code 1" in str(caught.value)
    assert "Reference to undeclared input variable" in str(caught.value)


def test_a_module_without_a_backend_still_keeps_its_state_in_s3(
    state: S3State, tmp_path: Path, tenant_id: str
) -> None:
    module = tmp_path / "plain"
    module.mkdir()
    (module / "main.tf").write_text(
        'variable "tenant_id" {}\nresource "terraform_data" "only" { input = var.tenant_id }\n'
    )
    iac = runner(tmp_path / "work", state, module)

    iac.apply(tenant_id, variables={})

    assert iac.state_resources(tenant_id) == ["terraform_data.only"]
    assert files_in(tmp_path / "work") == []


def test_cancelling_the_activity_stops_the_tool(
    infra: InfrastructureActivities, iac: TofuInfrastructure, state: S3State, iac_dir: Path, tenant_id: str
) -> None:
    env = ActivityEnvironment()
    # Cancel on the first heartbeat, right after the first command started.
    env.on_heartbeat = lambda *details: env.cancel()

    with pytest.raises(CancelledError):
        env.run(infra.apply_infrastructure, apply(tenant_id))

    assert iac.state_resources(tenant_id) is None
    assert state.lock_holder(tenant_id) is None
    assert iac.scratch_dirs(tenant_id) == []
    assert not _processes_under(iac_dir)


def _processes_under(folder: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if Path(os.readlink(proc / "cwd")).is_relative_to(folder):
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
        ("TENANTRY_IAC_STATE_BUCKET", "Not_A_Bucket"),
        ("TENANTRY_IAC_STATE_BUCKET", "two..dots"),
        ("TENANTRY_IAC_STATE_BUCKET", "192.168.1.10"),
        ("TENANTRY_IAC_STATE_BUCKET", "xn--state"),
        # A name some tenant's bucket (<prefix>-<tenant id>) could take.
        ("TENANTRY_IAC_STATE_BUCKET", "tenantry-iac-state"),
        ("TENANTRY_IAC_STATE_KEY_PREFIX", "has space"),
        ("TENANTRY_IAC_STATE_REGION", "mars"),
    ],
)
def test_bad_settings_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str
) -> None:
    monkeypatch.setenv("TENANTRY_IAC_STATE_DIR", str(tmp_path))
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        providers.InfraSettings.from_env()


def test_work_dir_defaults_and_is_created(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TENANTRY_IAC_STATE_DIR", str(tmp_path / "deep" / "iac"))
    assert providers.InfraSettings.from_env().iac_work_dir == tmp_path / "deep" / "iac"
    assert (tmp_path / "deep" / "iac").is_dir()


def test_state_settings_default_outside_the_tenant_bucket_namespace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TENANTRY_IAC_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    defaults = providers.InfraSettings.from_env()
    assert (defaults.iac_state_bucket, defaults.iac_state_key_prefix) == ("tenantry.iac-state", "tenants")
    assert defaults.iac_state_region == "eu-west-1"

    monkeypatch.setenv("TENANTRY_BUCKET_PREFIX", "acme-saas")
    monkeypatch.setenv("TENANTRY_IAC_STATE_KEY_PREFIX", "/iac/tenants/")
    changed = providers.InfraSettings.from_env()
    assert (changed.iac_state_bucket, changed.iac_state_key_prefix) == ("acme-saas.iac-state", "iac/tenants")
