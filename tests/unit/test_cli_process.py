"""The `tenantry` process against a small in-process gRPC server: exit codes,
streams, and a reader that goes away. (tests/e2e/test_cli.py runs it
against the whole stack.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from libs.devstack.processes import free_port
from services.tenant_api import errors
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
# Well above a pipe's buffer (64 KiB) as text and as JSON lines.
MANY = 3000


class _Service(tenant_service_pb2_grpc.TenantServiceServicer):
    def ListTenants(  # noqa: N802
        self, request: tenant_service_pb2.ListTenantsRequest, context: grpc.ServicerContext
    ) -> tenant_service_pb2.ListTenantsResponse:
        if request.filter == "refuse":
            context.abort_with_status(errors.unavailable("registry").to_status())
        tenants = [
            tenant_pb2.Tenant(
                tenant_id=f"t{i:05d}", state=tenant_pb2.Tenant.STATE_ACTIVE, display_name="x" * 40
            )
            for i in range(MANY)
        ]
        return tenant_service_pb2.ListTenantsResponse(tenants=tenants)

    def GetTenant(  # noqa: N802
        self, request: tenant_service_pb2.GetTenantRequest, context: grpc.ServicerContext
    ) -> tenant_service_pb2.GetTenantResponse:
        if request.name == "tenants/slow":
            time.sleep(3)  # longer than the caller's --timeout
        return tenant_service_pb2.GetTenantResponse(
            tenant=tenant_pb2.Tenant(tenant_id=request.name.removeprefix("tenants/"))
        )

    def CleanUpTenant(  # noqa: N802
        self, request: tenant_service_pb2.CleanUpTenantRequest, context: grpc.ServicerContext
    ) -> tenant_service_pb2.CleanUpTenantResponse:
        # A clean-up leaves the tenant PROVISION_FAILED; "stuck" still holds a bucket.
        tenant = tenant_pb2.Tenant(
            tenant_id=request.name.removeprefix("tenants/"), state=tenant_pb2.Tenant.STATE_PROVISION_FAILED
        )
        if tenant.tenant_id == "stuck":
            tenant.leftover_resources.add(domain="infra", kind="s3_bucket", id="b", step="create_bucket")
        return tenant_service_pb2.CleanUpTenantResponse(tenant=tenant)


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    tenant_service_pb2_grpc.add_TenantServiceServicer_to_server(_Service(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def _argv(address: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "services.tenant_api.cli", *args, "--plaintext", "--address", address]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TENANTRY_")}


def cli(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _argv(address, *args), capture_output=True, text=True, timeout=60, env=_env(), cwd=ROOT
    )


def free_address() -> str:
    """An address where nothing listens."""
    return f"127.0.0.1:{free_port()}"


@pytest.mark.timeout(60)
def test_exit_codes_say_who_refused(address: str) -> None:
    assert cli(address, "get", "acme").returncode == 0
    refused = cli(address, "list", "--filter", "refuse")
    # The server said UNAVAILABLE itself (a dependency is down): it answered, so 1.
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.startswith("error: UNAVAILABLE: registry is unavailable")
    nobody = cli(free_address(), "get", "acme")
    assert nobody.returncode == 3, nobody.stderr
    assert nobody.stderr.startswith("error: cannot reach the API at 127.0.0.1:")
    assert "Traceback" not in nobody.stderr
    unreadable = cli(address, "get", "acme", "--ca-file", "/nonexistent/ca.pem")
    assert unreadable.returncode == 0  # --plaintext reads no credentials
    tls = subprocess.run(
        [sys.executable, "-m", "services.tenant_api.cli", "get", "acme", "--ca-file", "/nonexistent/ca.pem"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        cwd=ROOT,
    )
    assert tls.returncode == 2 and "cannot read --ca-file /nonexistent/ca.pem" in tls.stderr, tls.stderr
    assert cli(address, "get").returncode == 2


@pytest.mark.timeout(60)
def test_a_deadline_is_unreachable_only_before_a_connection_was_made(address: str) -> None:
    slow = cli(address, "get", "slow", "--timeout", "1")
    assert slow.returncode == 1 and slow.stderr.startswith("error: DEADLINE_EXCEEDED: "), slow.stderr
    # A port that takes connections and never speaks HTTP/2: never connected.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        mute = f"127.0.0.1:{silent.getsockname()[1]}"
        never = cli(mute, "get", "acme", "--timeout", "1")
    assert never.returncode == 3, never.stderr
    assert never.stderr.startswith(f"error: cannot reach the API at {mute}: "), never.stderr


@pytest.mark.timeout(60)
@pytest.mark.parametrize("as_json", [True, False])
def test_a_reader_that_goes_away_ends_it_quietly(address: str, as_json: bool) -> None:
    """`tenantry list | head -1`: more output than the pipe holds, and the reader leaves after a line."""
    process = subprocess.Popen(
        _argv(address, "list", *(["--json"] if as_json else [])),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=ROOT,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=30) == 141
    assert stderr == b""
    if as_json:
        assert json.loads(first)["tenantId"] == "t00000"
    else:
        assert first.split() == [b"ID", b"STATE", b"TIER", b"CREATED", b"UPDATED", b"NAME"]


@pytest.mark.timeout(60)
def test_list_json_is_json_lines(address: str) -> None:
    listed = cli(address, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == MANY
    assert [json.loads(line)["tenantId"] for line in lines[:2]] == ["t00000", "t00001"]


@pytest.mark.timeout(60)
def test_cleanup_succeeds_when_nothing_is_left_though_the_tenant_stays_failed(address: str) -> None:
    assert cli(address, "cleanup", "clean").returncode == 0
    stuck = cli(address, "cleanup", "stuck")
    assert stuck.returncode == 1 and "s3_bucket" in stuck.stdout, stuck.stdout
