"""TLS everywhere else (issue 10, item 5): the workers' health endpoints, the
Temporal client (TLS, client certificates, API key), SMTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RetryConfig, TLSConfig

from libs.config import ConfigError, ServerTls, TemporalSettings, WorkerSettings
from libs.devstack.certs import KeyPair, LocalCA
from libs.devstack.processes import free_port, grpc_serving
from libs.health import HealthEndpoint
from libs.temporal import connect
from tests.support.tls_proxy import TlsProxy


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


# -- the Temporal client: envconfig settings, through a TLS proxy requiring client certificates --


@pytest.fixture
async def mtls_temporal(temporal_address: str, ca: LocalCA) -> AsyncIterator[TlsProxy]:
    async with TlsProxy(temporal_address, server=ca.server(), client_ca=ca.ca_file) as proxy:
        yield proxy


def tls_env(proxy: TlsProxy, trust: Path, client: KeyPair | None = None) -> dict[str, str]:
    env = {"TEMPORAL_ADDRESS": proxy.address, "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(trust)}
    if client is not None:
        env |= {
            "TEMPORAL_TLS_CLIENT_CERT_PATH": str(client.cert),
            "TEMPORAL_TLS_CLIENT_KEY_PATH": str(client.key),
        }
    return env


QUICK = RetryConfig(initial_interval_millis=100, max_elapsed_time_millis=1000)


async def test_temporal_client_with_a_client_certificate_reaches_the_server(
    mtls_temporal: TlsProxy, ca: LocalCA
) -> None:
    identity = ca.client("temporal-client", uri="spiffe://tenantry.test/worker")
    settings = TemporalSettings.from_env(tls_env(mtls_temporal, ca.ca_file, identity))
    assert settings.uses_tls and settings.client_certificate

    client = await connect(settings, wait=timedelta(seconds=20))
    assert await client.service_client.check_health()
    handle = await client.start_workflow(
        "NoSuchWorkflow", id=f"tls-{uuid.uuid4().hex[:8]}", task_queue=f"tls-{uuid.uuid4().hex[:8]}"
    )
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    await handle.terminate()
    assert mtls_temporal.accepted and set(mtls_temporal.accepted) == {"spiffe://tenantry.test/worker"}


async def test_temporal_client_without_a_client_certificate_is_refused(
    mtls_temporal: TlsProxy, ca: LocalCA
) -> None:
    settings = TemporalSettings.from_env(tls_env(mtls_temporal, ca.ca_file))
    with pytest.raises(ConfigError, match=mtls_temporal.address):
        await connect(settings, wait=timedelta(seconds=2), retry_config=QUICK)
    assert mtls_temporal.accepted == []


async def test_temporal_client_trusting_another_ca_is_refused(
    mtls_temporal: TlsProxy, ca: LocalCA, tmp_path: Path
) -> None:
    other = LocalCA(tmp_path / "other", name="Another CA")
    # A certificate the proxy would accept, but the server's is not trusted.
    identity = ca.client("temporal-client", uri="spiffe://tenantry.test/worker")
    settings = TemporalSettings.from_env(tls_env(mtls_temporal, other.ca_file, identity))
    with pytest.raises(ConfigError, match=mtls_temporal.address):
        await connect(settings, wait=timedelta(seconds=2), retry_config=QUICK)
    # And a client certificate from another CA is refused by the server.
    stranger = other.client("stranger", uri="spiffe://elsewhere.test/x")
    settings = TemporalSettings.from_env(tls_env(mtls_temporal, ca.ca_file, stranger))
    with pytest.raises(ConfigError, match=mtls_temporal.address):
        await connect(settings, wait=timedelta(seconds=2), retry_config=QUICK)
    assert mtls_temporal.accepted == []


async def test_temporal_api_key_turns_tls_on_and_is_sent(mtls_temporal: TlsProxy, ca: LocalCA) -> None:
    settings = TemporalSettings.from_env(
        {"TEMPORAL_ADDRESS": "temporal.example:7233", "TEMPORAL_API_KEY": "k-1"}
    )
    assert (settings.api_key, settings.tls, settings.namespace) == ("k-1", True, "default")
    assert "k-1" not in repr(settings)
    # With a key and a client certificate, through the proxy: the key rides along (the dev server ignores it).
    identity = ca.client("temporal-client", uri="spiffe://tenantry.test/worker")
    env = tls_env(mtls_temporal, ca.ca_file, identity) | {"TEMPORAL_API_KEY": "k-2"}
    settings = TemporalSettings.from_env(env)
    client = await connect(settings, wait=timedelta(seconds=20))
    assert client.api_key == "k-2"
    assert await client.service_client.check_health()


def test_temporal_settings_from_a_profile_and_environment_overrides(tmp_path: Path, ca: LocalCA) -> None:
    file = tmp_path / "temporal.toml"
    file.write_text(
        '[profile.default]\naddress = "10.0.0.1:7233"\nnamespace = "dev"\n'
        f'[profile.prod]\naddress = "prod.tmprl.cloud:7233"\nnamespace = "prod.acct"\n'
        f'[profile.prod.tls]\nserver_ca_cert_path = "{ca.ca_file}"\n'
    )
    default = TemporalSettings.from_env({"TEMPORAL_CONFIG_FILE": str(file)})
    assert (default.address, default.namespace, default.uses_tls) == ("10.0.0.1:7233", "dev", False)
    prod = TemporalSettings.from_env({"TEMPORAL_CONFIG_FILE": str(file), "TEMPORAL_PROFILE": "prod"})
    assert (prod.address, prod.namespace) == ("prod.tmprl.cloud:7233", "prod.acct")
    assert isinstance(prod.tls, TLSConfig) and prod.tls.server_root_ca_cert == ca.ca_file.read_bytes()
    overridden = TemporalSettings.from_env(
        {"TEMPORAL_CONFIG_FILE": str(file), "TEMPORAL_ADDRESS": "127.0.0.1:7299", "TEMPORAL_NAMESPACE": "x"}
    )
    assert (overridden.address, overridden.namespace) == ("127.0.0.1:7299", "x")
    assert TemporalSettings.from_env({}) == TemporalSettings("127.0.0.1:7233", "default")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TEMPORAL_ADDRESS": "no-port"}, "TEMPORAL_ADDRESS"),
        # The SDK reads "off" as "TLS configured", i.e. on.
        ({"TEMPORAL_TLS": "off"}, "TEMPORAL_TLS"),
        ({"TEMPORAL_API_KEY": "k", "TEMPORAL_TLS": "false"}, "TEMPORAL_API_KEY"),
        ({"TEMPORAL_TLS_SERVER_CA_CERT_PATH": "/nonexistent/ca.pem"}, "TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
        ({"TEMPORAL_TLS_CLIENT_CERT_PATH": "/nonexistent/c.pem"}, "TEMPORAL_TLS_CLIENT_CERT_PATH"),
        ({"TEMPORAL_CONFIG_FILE": "/nonexistent/temporal.toml"}, "TEMPORAL_CONFIG_FILE"),
        ({"TEMPORAL_PROFILE": "nope"}, "TEMPORAL_PROFILE"),
    ],
)
def test_temporal_settings_errors_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        TemporalSettings.from_env(env)


def test_temporal_client_certificate_needs_its_key(ca: LocalCA) -> None:
    identity = ca.client("temporal-client", uri="spiffe://tenantry.test/worker")
    with pytest.raises(ConfigError, match="TEMPORAL_TLS_CLIENT_KEY_PATH"):
        TemporalSettings.from_env({"TEMPORAL_TLS_CLIENT_CERT_PATH": str(identity.cert)})
