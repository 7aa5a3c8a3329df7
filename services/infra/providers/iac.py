"""Dedicated infrastructure of silo tenants through the OpenTofu / Terraform CLI.

Each tenant has a working directory `<TENANTRY_IAC_STATE_DIR>/<tenant>` with a
copy of the module (deploy/iac/tenant) and its local state, so state
survives worker restarts and one tenant's run never touches another's. The
CLI runs as a child process in its own process group: its output streams to
the log line by line, the activity's `progress` callback is called every few
seconds while it runs (the activity heartbeats), and any exception raised
meanwhile — a cancelled sync activity gets `CancelledError` raised in its
thread — stops the process with SIGTERM, then SIGKILL after a grace period.

The binary: TENANTRY_IAC_BINARY, else `tofu` or `terraform` on PATH, else
the one `install_tofu()` builds into ~/.cache/tenantry/bin from the Go module
proxy (`python -m services.infra.providers.iac install`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from temporalio import activity

from libs import config
from services.infra.providers import IacFailed, IacResult, Unavailable

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_MODULE_DIR = ROOT / "deploy" / "iac" / "tenant"
CACHE_BIN = config.cache_dir("bin")
# OpenTofu release built by install_tofu(); 1.10 is the newest line whose
# module builds with the Go toolchain installed here.
TOFU_VERSION = "v1.10.6"
TOFU_MODULE = "github.com/opentofu/opentofu"

_MODULE_SUFFIXES = (".tf", ".tf.json", ".tofu", ".tofu.json")
_PLAN_FILE = "tfplan"
_STDERR_TAIL = 12


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
        f"{CACHE_BIN}; install one with `python -m services.infra.providers.iac install`"
    )


def state_dir() -> Path:
    """TENANTRY_IAC_STATE_DIR (default ./.state/iac), made absolute and created now."""
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


def install_tofu(dest: Path = CACHE_BIN, *, version: str = TOFU_VERSION) -> Path:
    """Builds OpenTofu from its source on the Go module proxy into `dest` and returns the binary.

    `go install <module>/cmd/tofu@version` is refused (OpenTofu's go.mod has
    replace directives), so the source is fetched with `go mod download` and
    built in a scratch copy. Needs Go; takes a few minutes on 2 cores.
    """
    target = dest / "tofu"
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("building OpenTofu needs the Go toolchain (go) on PATH")
    listing = subprocess.run(
        [go, "mod", "download", "-json", f"{TOFU_MODULE}@{version}"],
        check=True,
        capture_output=True,
        text=True,
    )
    source = Path(json.loads(listing.stdout)["Dir"])
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tofu-src-") as scratch:
        tree = Path(scratch) / "src"
        # The module cache is read-only; the build wants to write next to the source.
        shutil.copytree(source, tree)
        for path in tree.rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)
        partial = dest / "tofu.partial"
        subprocess.run(
            [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(partial), "./cmd/tofu"],
            cwd=tree,
            check=True,
        )
        partial.replace(target)
    return target


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


# --- the Infrastructure adapter --------------------------------------------------


class TofuInfrastructure:
    """`Infrastructure` through the tofu / terraform CLI, one working directory and state per tenant."""

    def __init__(
        self,
        *,
        binary: Path,
        module_dir: Path,
        state_dir: Path,
        timeout: float,
        heartbeat_every: float = 5.0,
        kill_grace: float = 10.0,
    ) -> None:
        self._binary = binary
        self._module_dir = module_dir
        self._state_dir = state_dir
        self._timeout = timeout
        self._heartbeat_every = heartbeat_every
        self._kill_grace = kill_grace

    def workdir(self, tenant_id: str) -> Path:
        return self._state_dir / tenant_id

    def apply(
        self, tenant_id: str, *, variables: Mapping[str, str], progress: Callable[[], None] = lambda: None
    ) -> IacResult:
        workdir = self.workdir(tenant_id)
        workdir.mkdir(parents=True, exist_ok=True)
        self._sync_module(workdir)
        env = self._env({**variables, "tenant_id": tenant_id})
        try:
            self._run(tenant_id, ["init", "-input=false", "-no-color"], workdir, env, progress)
            plan = self._run(
                tenant_id,
                [
                    "plan",
                    "-input=false",
                    "-no-color",
                    "-lock-timeout=60s",
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
                    ["apply", "-input=false", "-no-color", "-lock-timeout=60s", _PLAN_FILE],
                    workdir,
                    env,
                    progress,
                )
            raw = self._run(
                tenant_id, ["output", "-json", "-no-color"], workdir, env, progress, log_stdout=False
            ).stdout
        finally:
            self._clean(workdir)
        return IacResult(outputs=_plain_outputs(raw), changed=changed)

    def destroy(self, tenant_id: str, *, progress: Callable[[], None] = lambda: None) -> None:
        workdir = self.workdir(tenant_id)
        if not workdir.exists():
            return
        if _has_resources(workdir / "terraform.tfstate"):
            self._sync_module(workdir)
            env = self._env({"tenant_id": tenant_id})
            try:
                self._run(tenant_id, ["init", "-input=false", "-no-color"], workdir, env, progress)
                self._run(
                    tenant_id,
                    ["destroy", "-auto-approve", "-input=false", "-no-color", "-lock-timeout=60s"],
                    workdir,
                    env,
                    progress,
                )
            finally:
                self._clean(workdir)
        # Everything is destroyed: the state (and its backups) go with the directory.
        shutil.rmtree(workdir)
        log.info("destroyed the dedicated infrastructure of tenant %s", tenant_id)

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
            tail = " | ".join(line.strip() for line in result.stderr_tail if line.strip())
            raise IacFailed(f"{label} failed with exit code {result.returncode}: {tail[-1500:]}")
        return result

    def _env(self, variables: Mapping[str, str]) -> dict[str, str]:
        """A small environment of its own: no cloud credentials or secrets of the worker leak in."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }
        env.update({f"TF_VAR_{name}": value for name, value in variables.items()})
        return env

    def _sync_module(self, workdir: Path) -> None:
        """The working directory gets exactly the module's files (a newer module applies next run)."""
        wanted = {p.name: p for p in self._module_dir.iterdir() if p.name.endswith(_MODULE_SUFFIXES)}
        for existing in workdir.iterdir():
            if existing.name.endswith(_MODULE_SUFFIXES) and existing.name not in wanted:
                existing.unlink()
        for name, source in wanted.items():
            shutil.copyfile(source, workdir / name)

    @staticmethod
    def _clean(workdir: Path) -> None:
        # The plan file holds variable values; a lock file is stale once the process is gone.
        for leftover in (_PLAN_FILE, ".terraform.tfstate.lock.info"):
            (workdir / leftover).unlink(missing_ok=True)


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


def _has_resources(state_file: Path) -> bool:
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        return False
    except json.JSONDecodeError:
        return True  # let the tool judge (and report) it
    return bool(state.get("resources"))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m services.infra.providers.iac install")
    print(install_tofu())
