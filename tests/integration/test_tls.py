"""TLS on the listeners the issue's item 5 covers: the workers' health endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from libs.config import ConfigError, ServerTls, WorkerSettings
from libs.devstack.certs import LocalCA
from libs.devstack.processes import free_port, grpc_serving
from libs.health import HealthEndpoint


async def serving(address: str, credentials: grpc.ChannelCredentials | None = None) -> bool:
    # grpc_serving blocks; the endpoint answers on this event loop.
    return await asyncio.to_thread(grpc_serving, address, credentials=credentials)


@pytest.fixture
async def endpoint(ca: LocalCA, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    server = ca.server()
    client_ca = ca.ca_file if getattr(request, "param", False) else None
    address = f"127.0.0.1:{free_port()}"
    health = HealthEndpoint(address, tls=ServerTls(server.cert, server.key, client_ca))
    await health.start()
    await health.set_serving(True)
    yield address
    await health.stop()


async def test_health_over_tls_answers_a_client_trusting_the_ca(endpoint: str, ca: LocalCA) -> None:
    assert await serving(endpoint, grpc.ssl_channel_credentials(ca.ca_file.read_bytes()))


async def test_health_over_tls_refuses_plaintext_and_an_untrusted_ca(
    endpoint: str, ca: LocalCA, tmp_path: Path
) -> None:
    other = LocalCA(tmp_path / "other", name="Another CA")
    assert not await serving(endpoint)
    assert not await serving(endpoint, grpc.ssl_channel_credentials(other.ca_file.read_bytes()))
    assert await serving(endpoint, grpc.ssl_channel_credentials(ca.ca_file.read_bytes()))


@pytest.mark.parametrize("endpoint", [True], indirect=True)
async def test_health_with_a_client_ca_requires_a_client_certificate(endpoint: str, ca: LocalCA) -> None:
    trust = ca.ca_file.read_bytes()
    probe = ca.client("health-probe", uri="spiffe://tenantry.test/probe")
    assert not await serving(endpoint, grpc.ssl_channel_credentials(trust))
    assert await serving(endpoint, grpc.ssl_channel_credentials(trust, probe.key_bytes(), probe.cert_bytes()))


def test_health_tls_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, ca: LocalCA) -> None:
    server = ca.server()
    monkeypatch.setenv("TENANTRY_HEALTH_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("TENANTRY_TLS_CERT_FILE", str(server.cert))
    monkeypatch.delenv("TENANTRY_TLS_KEY_FILE", raising=False)
    with pytest.raises(ConfigError, match="TENANTRY_TLS_KEY_FILE"):
        WorkerSettings.from_env()
    monkeypatch.setenv("TENANTRY_TLS_KEY_FILE", str(server.key) + ".missing")
    with pytest.raises(ConfigError, match="TENANTRY_TLS_KEY_FILE"):
        WorkerSettings.from_env()
    monkeypatch.setenv("TENANTRY_TLS_KEY_FILE", str(server.key))
    assert WorkerSettings.from_env().health_tls == ServerTls(server.cert, server.key)
