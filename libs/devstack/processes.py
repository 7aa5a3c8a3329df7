"""Child processes with logs, readiness checks and clean stops."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# Ports handed out by this process: never the same one twice.
_handed: set[int] = set()
_FIRST_PORT = 20000


def _ephemeral_start() -> int:
    """The first port of the kernel's range for outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port free at the time of asking, below the kernel's range for
    outgoing connections: a port from that range (what binding port 0 gives)
    can be taken by any process's next outgoing connection before the server
    meant for it binds it (moto and the workers open many)."""
    low, high = _FIRST_PORT, _ephemeral_start()
    for _ in range(200):
        port = random.randrange(low, high) if high - low > 100 else 0
        if port in _handed:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        _handed.add(port)
        return port
    raise RuntimeError(f"no free loopback port from {low} to {high}")


def wait_until(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(0.1)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def grpc_serving(address: str, *, credentials: grpc.ChannelCredentials | None = None) -> bool:
    """True when the gRPC health service at `address` says SERVING; over TLS with `credentials`."""
    try:
        with (
            grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
        ) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


class ManagedProcess:
    """One child process whose output goes to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        ready: Callable[[], bool] | None = None,
        ready_timeout: float = 60,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self.env = dict(env or os.environ)
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # A new session: Ctrl-C in the terminal reaches the supervisor
            # only, which then stops children in order.
            self.popen = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        return self

    def wait_ready(self) -> ManagedProcess:
        if self.ready is not None:

            def check() -> bool:
                if self.popen is not None and self.popen.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.popen.returncode}; see {self.log_path}"
                    )
                return self.ready() if self.ready else True

            try:
                wait_until(check, timeout=self.ready_timeout, what=self.name)
            except TimeoutError as err:
                raise TimeoutError(f"{err}; see {self.log_path}") from None
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def python_module(module: str) -> list[str]:
    """argv to run `python -m module` with this interpreter."""
    return [sys.executable, "-m", module]
