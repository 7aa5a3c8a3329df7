"""Dedicated infrastructure of silo tenants through the OpenTofu / Terraform CLI.

State lives in S3, never on a worker's disk, so any infra replica can apply
or destroy any tenant: the CLI's built-in `s3` backend (no provider to
download) keeps one object per tenant,
`<TENANTRY_IAC_STATE_KEY_PREFIX>/<tenant>/terraform.tfstate` in
TENANTRY_IAC_STATE_BUCKET, and locks it with S3-native lock objects
(`use_lockfile`: a conditional PutObject of `<key>.tflock`), so two runs of
one tenant on two replicas never interleave; a run that finds the lock held
waits `lock_timeout` and then fails with `IacStateLocked` (retried). A lock
older than any command lasts is a killed worker's and is broken. The
bucket is created on first use: private, encrypted, versioned. Bucket, key,
region and locking are `-backend-config` arguments to `init`; the endpoint
and credentials reach the CLI through its environment only (the worker's AWS
variables), never its argv or the log.

A destroy keeps the (then empty) state object: it is the proof that the
stack was destroyed. A destroy retried after one that succeeded finds an
empty state and succeeds; a stack with no state object at all was lost, and a
destroy told to expect state (`expect_state`: the tenant's record lists a
stack) raises `IacStateMissing` instead of reporting success over
infrastructure that may still exist. Without `expect_state` (a compensation:
the apply may never have run), no state is success.

Each run gets a fresh scratch folder under TENANTRY_IAC_STATE_DIR (a copy of
the module, `.terraform`, the plan file), removed when the run ends and swept
later if its worker was killed: it holds nothing another replica or a later
run needs. The CLI runs as a child process in its own process group: its
output streams to the log line by line, the activity's `progress` callback is
called every few seconds while it runs (the activity heartbeats), and any
exception raised meanwhile — a cancelled sync activity gets `CancelledError`
raised in its thread — stops the process with SIGTERM, then SIGKILL after a
grace period.

The binary: TENANTRY_IAC_BINARY, else `tofu` or `terraform` on PATH, else
the one `make iac` builds into ~/.cache/tenantry/bin from the Go module proxy
(libs/devstack/tofu.py; the image builds the same release).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import botocore.exceptions
from temporalio import activity

from libs import buckets, config
from services.infra.providers import (
    Conflict,
    IacFailed,
    IacResult,
    IacStateLocked,
    IacStateMissing,
    Unavailable,
)
from services.infra.providers.aws import error_code, faults_as_unavailable

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_MODULE_DIR = ROOT / "deploy" / "iac" / "tenant"
CACHE_BIN = config.cache_dir("bin")

_MODULE_SUFFIXES = (".tf", ".tf.json", ".tofu", ".tofu.json")
_PLAN_FILE = "tfplan"
# Enough lines to hold the tool's lock error with its lock info and advice.
_STDERR_TAIL = 40


# --- configuration ------------------------------------------------------------


def find_binary() -> Path:
    """TENANTRY_IAC_BINARY, else tofu / terraform on PATH or in the cache; ConfigError if none."""
    configured = os.environ.get("TENANTRY_IAC_BINARY")
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise config.ConfigError(f"TENANTRY_IAC_BINARY={configured!r} is not an executable")
        return Path(found)
    for candidate in ("tofu", str(CACHE_BIN / "tofu"), "terraform"):
        found = shutil.which(candidate)
        if found is not None:
            return Path(found)
    raise config.ConfigError(
        "TENANTRY_IAC_BINARY is not set and no tofu or terraform is on PATH or in "
        f"{CACHE_BIN}; install one with `make iac`"
    )


def work_dir() -> Path:
    """TENANTRY_IAC_STATE_DIR (default ./.state/iac), made absolute and created now.

    Scratch space only (each run's folder is removed when it ends); the
    variable keeps the name it had when the state was kept there.
    """
    raw = config.required("TENANTRY_IAC_STATE_DIR", "./.state/iac")
    path = Path(raw).expanduser().resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise config.ConfigError(
            f"TENANTRY_IAC_STATE_DIR={raw!r} cannot be created: {err.strerror}"
        ) from None
    if not os.access(path, os.W_OK):
        raise config.ConfigError(f"TENANTRY_IAC_STATE_DIR={raw!r} is not writable")
    return path


def module_dir() -> Path:
    """TENANTRY_IAC_MODULE_DIR (default deploy/iac/tenant): a folder holding the module."""
    raw = config.required("TENANTRY_IAC_MODULE_DIR", str(DEFAULT_MODULE_DIR))
    path = Path(raw).expanduser().resolve()
    if not path.is_dir() or not any(p.name.endswith(_MODULE_SUFFIXES) for p in path.iterdir()):
        raise config.ConfigError(f"TENANTRY_IAC_MODULE_DIR={raw!r} holds no .tf files")
    return path


# --- running the CLI ------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr_tail: list[str]


def run_cli(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    progress: Callable[[], None],
    timeout: float,
    heartbeat_every: float = 5.0,
    kill_grace: float = 10.0,
    log_stdout: bool = True,
    label: str = "iac",
) -> CliResult:
    """Runs `argv`, streaming its output to the log and calling `progress` every `heartbeat_every` s.

    Any exception while it runs (a cancellation raised by `progress` or
    into this thread, a timeout) stops the process group — SIGTERM, then
    SIGKILL after `kill_grace` s — before it propagates. `log_stdout=False`
    keeps stdout out of the log (`output -json` carries sensitive values).
    """
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        # Its own group: a signal reaches the tool and any plugin it started.
        start_new_session=True,
    )
    stdout: list[str] = []
    stderr: deque[str] = deque(maxlen=_STDERR_TAIL)
    assert process.stdout is not None and process.stderr is not None
    readers = [
        threading.Thread(
            target=_pump, args=(process.stdout, stdout.append, label if log_stdout else None), daemon=True
        ),
        threading.Thread(target=_pump, args=(process.stderr, stderr.append, label), daemon=True),
    ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + timeout
    try:
        progress()
        while True:
            try:
                process.wait(timeout=max(0.0, min(heartbeat_every, deadline - time.monotonic())))
                break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() >= deadline:
                raise Unavailable(f"{label} did not finish within {timeout:g}s")
            progress()
    except BaseException:
        with _shielded():
            stop(process, grace=kill_grace)
        raise
    for reader in readers:
        reader.join(timeout=5)
    return CliResult(returncode=process.returncode, stdout="".join(stdout), stderr_tail=list(stderr))


def stop(process: subprocess.Popen[str], *, grace: float) -> None:
    """SIGTERM to the process group, SIGKILL if it is still there after `grace` s; waits for it."""
    if process.poll() is not None:
        return
    log.warning("stopping process %d (SIGTERM)", process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log.warning("process %d ignored SIGTERM for %gs; killing it", process.pid, grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _pump(stream: IO[str], sink: Callable[[str], None], label: str | None) -> None:
    for line in stream:
        sink(line)
        if label is not None and line.strip():
            log.info("%s: %s", label, line.rstrip())
    stream.close()


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """No second cancellation raised into this thread while the child is being stopped."""
    if activity.in_activity():
        with activity.shield_thread_cancel_exception():
            yield
    else:
        yield


# --- the state in S3 --------------------------------------------------------------


class S3State:
    """The tenants' state objects in one S3 bucket: the backend's settings, reads, the bucket itself.

    `path_style` is for an endpoint of its own (moto, MinIO): it is reached by
    one host name or address, so `<bucket>.<host>` would not resolve.
    """

    def __init__(self, client: Any, *, bucket: str, key_prefix: str, region: str, path_style: bool) -> None:
        self._s3 = client
        self.bucket = bucket
        self.key_prefix = key_prefix
        self.region = region
        self.path_style = path_style
        self._bucket_ready = False

    def key(self, tenant_id: str) -> str:
        return f"{self.key_prefix}/{tenant_id}/terraform.tfstate"

    def lock_key(self, tenant_id: str) -> str:
        # Where `use_lockfile` puts the lock: next to the state, with this suffix.
        return f"{self.key(tenant_id)}.tflock"

    def backend_config(self, tenant_id: str) -> list[str]:
        """`init` arguments: where the tenant's state is and that it is locked; nothing secret."""
        settings = {
            "bucket": self.bucket,
            "key": self.key(tenant_id),
            "region": self.region,
            "encrypt": "true",
            "use_lockfile": "true",
        }
        if self.path_style:
            settings["use_path_style"] = "true"
        return [f"-backend-config={name}={value}" for name, value in settings.items()]

    def ensure_bucket(self) -> None:
        """Creates the bucket if missing: private, encrypted, versioned; once per process."""
        if self._bucket_ready:
            return
        with faults_as_unavailable(f"IaC state bucket {self.bucket}"):
            try:
                self._s3.head_bucket(Bucket=self.bucket)
                self._bucket_ready = True
                return
            except botocore.exceptions.ClientError as err:
                if error_code(err) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
            try:
                if self.region == "us-east-1":
                    self._s3.create_bucket(Bucket=self.bucket)
                else:
                    self._s3.create_bucket(
                        Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": self.region}
                    )
            except botocore.exceptions.ClientError as err:
                if error_code(err) == "BucketAlreadyExists":
                    raise Conflict(f"IaC state bucket {self.bucket} belongs to another account") from None
                if error_code(err) != "BucketAlreadyOwnedByYou":
                    raise
            buckets.secure(self._s3, self.bucket)
        self._bucket_ready = True
        log.info("IaC state bucket %s created", self.bucket)

    def read(self, tenant_id: str) -> dict[str, Any] | None:
        """The tenant's state document, None when there is no object (or no bucket)."""
        raw = self._get(self.key(tenant_id), "reading the IaC state")
        if raw is None:
            return None
        try:
            state = json.loads(raw)
        except json.JSONDecodeError as err:
            raise IacFailed(f"the IaC state of tenant {tenant_id} is not JSON: {err.msg}") from None
        if not isinstance(state, dict):
            raise IacFailed(f"the IaC state of tenant {tenant_id} is not a state document")
        return state

    def resources(self, tenant_id: str) -> list[str] | None:
        """Addresses of the managed resources in the tenant's state; [] once destroyed, None without state."""
        state = self.read(tenant_id)
        return None if state is None else _resource_addresses(state)

    def lock_holder(self, tenant_id: str) -> str | None:
        """Who holds the tenant's lock, as the tool recorded it; None when it is free."""
        raw = self._get(self.lock_key(tenant_id), "reading the IaC state lock")
        if raw is None:
            return None
        try:
            info = json.loads(raw)
        except json.JSONDecodeError:
            return "an unreadable lock"
        return (
            f"lock {info.get('ID', '?')}, {info.get('Operation', '?')} by {info.get('Who', '?')}"
            f" since {info.get('Created', '?')}"
        )

    def holder_key(self, tenant_id: str) -> str:
        # Which activity attempt ran the tenant's last command: next to the lock.
        return f"{self.key(tenant_id)}.holder"

    def write_holder(self, tenant_id: str, holder: Mapping[str, object]) -> None:
        """Records which activity attempt runs the tenant's commands now (before it takes the lock)."""
        with faults_as_unavailable("writing the IaC state holder"):
            self._s3.put_object(
                Bucket=self.bucket,
                Key=self.holder_key(tenant_id),
                Body=json.dumps(dict(holder), sort_keys=True).encode(),
                ServerSideEncryption="AES256",
                ContentType="application/json",
            )

    def break_lock_of_a_gone_attempt(self, tenant_id: str, holder: Mapping[str, object]) -> bool:
        """Deletes the tenant's lock when the holder record names another
        activity attempt than `holder` (the current one). True if a lock was broken.

        The orchestrator runs one IaC activity of a tenant at a time: a retry
        starts only once Temporal has given the previous attempt up (its
        heartbeat timed out: its worker died), an undo only once its step has
        settled, and one tenant's runs never overlap. So a lock taken by any
        other attempt is one that a dead worker's CLI never released. (A worker
        frozen rather than dead, whose CLI went on, is the one case this rule
        cannot tell apart; the CLI stops at its next write to the frozen
        worker's pipe.)
        """
        with faults_as_unavailable("checking the IaC state lock"):
            head = self._lock_head(tenant_id)
            if head is None:
                return False
            raw = self._get(self.holder_key(tenant_id), "reading the IaC state holder")
            try:
                previous = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                previous = None
            if not isinstance(previous, dict) or previous == dict(holder):
                return False
            self._delete_lock(tenant_id, head)
        log.warning(
            "broke the IaC state lock of tenant %s left by %s, which is gone",
            tenant_id,
            _attempt_of(previous),
        )
        return True

    def break_stale_lock(self, tenant_id: str, *, older_than: float) -> bool:
        """Deletes the tenant's lock if it was taken more than `older_than` s ago (S3's clock).

        A CLI whose worker was killed (SIGKILL, a lost host) never releases
        its lock, and no command of a live run holds it that long. Only the
        version read is deleted, so a lock taken meanwhile by another run
        stays. True if a lock was broken.
        """
        with faults_as_unavailable("checking the IaC state lock"):
            head = self._lock_head(tenant_id)
            if head is None:
                return False
            age = time.time() - head["LastModified"].timestamp()
            if age < older_than:
                return False
            self._delete_lock(tenant_id, head)
        log.warning(
            "broke the IaC state lock of tenant %s, taken %.0fs ago by a run that is gone", tenant_id, age
        )
        return True

    def _lock_head(self, tenant_id: str) -> dict[str, Any] | None:
        """The lock object's metadata; None when the tenant's state is not locked."""
        try:
            return dict(self._s3.head_object(Bucket=self.bucket, Key=self.lock_key(tenant_id)))
        except botocore.exceptions.ClientError as err:
            if error_code(err) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                return None
            raise

    def _delete_lock(self, tenant_id: str, head: Mapping[str, Any]) -> None:
        """Deletes the lock version that was read, so a lock taken meanwhile by another run stays."""
        version = head.get("VersionId")
        key = self.lock_key(tenant_id)
        if version and version != "null":
            self._s3.delete_object(Bucket=self.bucket, Key=key, VersionId=version)
        else:
            self._s3.delete_object(Bucket=self.bucket, Key=key)

    def put_if_absent(self, tenant_id: str, body: bytes) -> bool:
        """Writes the tenant's state unless an object is there; True if it was written."""
        self.ensure_bucket()
        with faults_as_unavailable("writing the IaC state"):
            try:
                self._s3.put_object(
                    Bucket=self.bucket,
                    Key=self.key(tenant_id),
                    Body=body,
                    IfNoneMatch="*",
                    ServerSideEncryption="AES256",
                    ContentType="application/json",
                )
            except botocore.exceptions.ClientError as err:
                if error_code(err) in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise
        return True

    def _get(self, key: str, what: str) -> bytes | None:
        with faults_as_unavailable(what):
            try:
                return bytes(self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
            except botocore.exceptions.ClientError as err:
                if error_code(err) in ("NoSuchKey", "NoSuchBucket", "404"):
                    return None
                raise


# --- the Infrastructure adapter --------------------------------------------------

# How many CLI commands one run makes at most (init, plan, apply, output).
_COMMANDS_PER_RUN = 4
# The file the runner adds to each scratch copy: the module's backend is
# always S3, whatever the module in TENANTRY_IAC_MODULE_DIR declares.
_BACKEND_OVERRIDE = "tenantry_backend_override.tf"
_BACKEND_BLOCK = 'terraform {\n  backend "s3" {}\n}\n'
# What the tool prints when it cannot take the lock within -lock-timeout.
_LOCK_ERROR = "Error acquiring the state lock"
# The worker's variables the CLI gets, and no other: what the S3 backend (and
# an AWS provider, should the module use one) needs to find AWS, or moto.
_AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CA_BUNDLE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_DISABLED",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
)


class TofuInfrastructure:
    """`Infrastructure` through the tofu / terraform CLI: state per tenant in S3, scratch per run."""

    def __init__(
        self,
        *,
        binary: Path,
        module_dir: Path,
        work_dir: Path,
        state: S3State,
        timeout: float,
        lock_timeout: float = 60.0,
        stale_lock_after: float | None = None,
        heartbeat_every: float = 5.0,
        kill_grace: float = 10.0,
    ) -> None:
        self._binary = binary
        self._module_dir = module_dir
        self._work_dir = work_dir
        self._state = state
        self._timeout = timeout
        self._lock_timeout = lock_timeout
        self._heartbeat_every = heartbeat_every
        self._kill_grace = kill_grace
        # No run lasts longer than this, so an older scratch folder is a killed run's.
        self._stale_after = _COMMANDS_PER_RUN * (timeout + kill_grace) + 60
        # Each command takes and releases the lock itself and is stopped after `timeout`.
        self._stale_lock_after = timeout + kill_grace + 60 if stale_lock_after is None else stale_lock_after

    @property
    def state(self) -> S3State:
        return self._state

    def _take_over(self, tenant_id: str) -> None:
        """Breaks a lock that a gone run or attempt left (see S3State), then
        records this activity attempt as the one running the tenant's commands."""
        holder = _current_attempt()
        if holder is None:  # not in an activity: only the age rule applies
            self._state.break_stale_lock(tenant_id, older_than=self._stale_lock_after)
            return
        if not self._state.break_lock_of_a_gone_attempt(tenant_id, holder):
            self._state.break_stale_lock(tenant_id, older_than=self._stale_lock_after)
        self._state.write_holder(tenant_id, holder)

    def apply(
        self, tenant_id: str, *, variables: Mapping[str, str], progress: Callable[[], None] = lambda: None
    ) -> IacResult:
        self._state.ensure_bucket()
        self._adopt_local_state(tenant_id)
        self._take_over(tenant_id)
        env = self._env({**variables, "tenant_id": tenant_id})
        lock_timeout = f"-lock-timeout={self._lock_timeout:g}s"
        with self._scratch(tenant_id) as workdir:
            self._init(tenant_id, workdir, env, progress)
            plan = self._run(
                tenant_id,
                [
                    "plan",
                    "-input=false",
                    "-no-color",
                    lock_timeout,
                    "-detailed-exitcode",
                    f"-out={_PLAN_FILE}",
                ],
                workdir,
                env,
                progress,
                accept=(0, 2),
            )
            # -detailed-exitcode: 0 is "no changes", 2 is "changes to apply".
            changed = plan.returncode == 2
            if changed:
                self._run(
                    tenant_id,
                    ["apply", "-input=false", "-no-color", lock_timeout, _PLAN_FILE],
                    workdir,
                    env,
                    progress,
                )
            raw = self._run(
                tenant_id, ["output", "-json", "-no-color"], workdir, env, progress, log_stdout=False
            ).stdout
        return IacResult(outputs=_plain_outputs(raw), changed=changed)

    def destroy(
        self, tenant_id: str, *, expect_state: bool = False, progress: Callable[[], None] = lambda: None
    ) -> None:
        self._adopt_local_state(tenant_id)
        resources = self.state_resources(tenant_id)
        if resources is None:
            if expect_state:
                raise IacStateMissing(
                    f"the IaC state of tenant {tenant_id} is missing (s3://{self._state.bucket}/"
                    f"{self._state.key(tenant_id)}): it was lost and the tenant's dedicated "
                    "infrastructure may still exist"
                )
            log.info("tenant %s has no IaC state: nothing to destroy", tenant_id)
            return
        if not resources:
            # Destroyed before: the empty state is the proof.
            log.info("the IaC state of tenant %s is empty: already destroyed", tenant_id)
            return
        self._take_over(tenant_id)
        env = self._env({"tenant_id": tenant_id})
        with self._scratch(tenant_id) as workdir:
            self._init(tenant_id, workdir, env, progress)
            # Leaves an empty state object behind, which is kept.
            self._run(
                tenant_id,
                [
                    "destroy",
                    "-auto-approve",
                    "-input=false",
                    "-no-color",
                    f"-lock-timeout={self._lock_timeout:g}s",
                ],
                workdir,
                env,
                progress,
            )
        log.info("destroyed the dedicated infrastructure of tenant %s", tenant_id)

    def state_resources(self, tenant_id: str) -> list[str] | None:
        """Addresses of the managed resources in the tenant's state, read from S3 (no CLI).

        [] once destroyed, None when there is no state object at all.
        """
        return self._state.resources(tenant_id)

    def scratch_dirs(self, tenant_id: str) -> list[Path]:
        """The tenant's scratch folders that exist now (a run's, while it goes on)."""
        return sorted(p for p in self._work_dir.glob(f"{tenant_id}.*") if p.is_dir())

    def _init(
        self, tenant_id: str, workdir: Path, env: Mapping[str, str], progress: Callable[[], None]
    ) -> None:
        self._run(
            tenant_id,
            ["init", "-input=false", "-no-color", *self._state.backend_config(tenant_id)],
            workdir,
            env,
            progress,
        )

    def _run(
        self,
        tenant_id: str,
        args: list[str],
        workdir: Path,
        env: Mapping[str, str],
        progress: Callable[[], None],
        *,
        accept: tuple[int, ...] = (0,),
        log_stdout: bool = True,
    ) -> CliResult:
        label = f"{self._binary.name} {args[0]} [{tenant_id}]"
        result = run_cli(
            [str(self._binary), *args],
            cwd=workdir,
            env=env,
            progress=progress,
            timeout=self._timeout,
            heartbeat_every=self._heartbeat_every,
            kill_grace=self._kill_grace,
            log_stdout=log_stdout,
            label=label,
        )
        if result.returncode not in accept:
            if any(_LOCK_ERROR in line for line in result.stderr_tail):
                holder = self._state.lock_holder(tenant_id) or "a run that has released it since"
                raise IacStateLocked(
                    f"{label}: the IaC state of tenant {tenant_id} is locked by another run ({holder})"
                    f" and was not released within {self._lock_timeout:g}s"
                )
            tail = " | ".join(line.strip() for line in result.stderr_tail if line.strip())
            raise IacFailed(f"{label} failed with exit code {result.returncode}: {tail[-1500:]}")
        return result

    def _env(self, variables: Mapping[str, str]) -> dict[str, str]:
        """An environment of its own: the AWS settings the backend needs, nothing else of the worker's."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }
        env.update({name: os.environ[name] for name in _AWS_ENV if os.environ.get(name)})
        env.update({f"TF_VAR_{name}": value for name, value in variables.items()})
        return env

    @contextlib.contextmanager
    def _scratch(self, tenant_id: str) -> Iterator[Path]:
        """A fresh folder with exactly the module's files and the S3 backend; removed at the end."""
        self._sweep()
        workdir = Path(tempfile.mkdtemp(prefix=f"{tenant_id}.", dir=self._work_dir))
        try:
            for source in self._module_dir.iterdir():
                if source.name.endswith(_MODULE_SUFFIXES):
                    shutil.copyfile(source, workdir / source.name)
            (workdir / _BACKEND_OVERRIDE).write_text(_BACKEND_BLOCK)
            yield workdir
        finally:
            # The child has stopped by now (run_cli stops it before raising).
            shutil.rmtree(workdir, ignore_errors=True)

    def _sweep(self) -> None:
        """Removes scratch folders left by runs that were killed (older than any run lasts)."""
        cutoff = time.time() - self._stale_after
        for path in self._work_dir.glob("*.*"):
            with contextlib.suppress(OSError):
                if path.is_dir() and path.stat().st_mtime < cutoff:
                    log.warning("removing the scratch folder %s of a run that did not finish", path.name)
                    shutil.rmtree(path, ignore_errors=True)

    def _adopt_local_state(self, tenant_id: str) -> None:
        """Moves state an older version kept in `<work dir>/<tenant>/terraform.tfstate` to S3.

        Only when S3 has none for the tenant; otherwise S3's wins and the
        local folder is left in place, with a warning, for someone to look at.
        """
        legacy = self._work_dir / tenant_id
        state_file = legacy / "terraform.tfstate"
        if not state_file.is_file():
            return
        if self._state.put_if_absent(tenant_id, state_file.read_bytes()):
            shutil.rmtree(legacy, ignore_errors=True)
            log.info("moved the local IaC state of tenant %s to S3", tenant_id)
        else:
            log.warning("tenant %s has IaC state in S3 and a local one in %s; using S3's", tenant_id, legacy)


def _plain_outputs(raw: str) -> dict[str, str]:
    """`output -json` reduced to its string outputs; sensitive ones are never returned."""
    try:
        parsed = json.loads(raw or "{}")
    except json.JSONDecodeError as err:
        raise IacFailed(f"output -json did not print JSON: {err.msg}") from None
    return {
        name: item["value"]
        for name, item in parsed.items()
        if not item.get("sensitive", False) and isinstance(item.get("value"), str)
    }


def _resource_addresses(state: Mapping[str, Any]) -> list[str]:
    """`module.x.type.name` of each managed resource that has an instance (data sources are not)."""
    found = []
    for resource in state.get("resources") or []:
        if resource.get("mode") != "managed" or not resource.get("instances"):
            continue
        address = f"{resource.get('type')}.{resource.get('name')}"
        module = resource.get("module")
        found.append(f"{module}.{address}" if module else address)
    return found


def _current_attempt() -> dict[str, object] | None:
    """The activity attempt this code runs in: workflow run, activity and attempt; None outside one."""
    if not activity.in_activity():
        return None
    info = activity.info()
    return {
        "workflow_id": info.workflow_id,
        "run_id": info.workflow_run_id,
        "activity_id": info.activity_id,
        "attempt": info.attempt,
    }


def _attempt_of(holder: Mapping[str, object]) -> str:
    return (
        f"attempt {holder.get('attempt', '?')} of activity {holder.get('activity_id', '?')}"
        f" of {holder.get('workflow_id', '?')}"
    )
