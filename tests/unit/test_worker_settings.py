"""The settings the Helm chart relies on: the drain (terminationGracePeriodSeconds
is derived from it) and a plaintext health endpoint for the kubelet's probes."""

from __future__ import annotations

import pytest

from libs.config import ConfigError, ServerTls, WorkerSettings, health_tls_on
from libs.devstack.certs import LocalCA

pytestmark = pytest.mark.timeout(30)


def test_the_drain_is_ten_seconds_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TENANTRY_DRAIN_SECONDS", raising=False)
    assert WorkerSettings.from_env().drain_seconds == 10
    monkeypatch.setenv("TENANTRY_DRAIN_SECONDS", "300")
    assert WorkerSettings.from_env().drain_seconds == 300
    monkeypatch.setenv("TENANTRY_DRAIN_SECONDS", "0")
    with pytest.raises(ConfigError, match="TENANTRY_DRAIN_SECONDS"):
        WorkerSettings.from_env()


def test_health_tls_off_serves_plaintext_despite_a_certificate(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    server = LocalCA(tmp_path_factory.mktemp("ca")).server()
    monkeypatch.setenv("TENANTRY_HEALTH_ADDRESS", "0.0.0.0:8081")
    monkeypatch.setenv("TENANTRY_TLS_CERT_FILE", str(server.cert))
    monkeypatch.setenv("TENANTRY_TLS_KEY_FILE", str(server.key))
    monkeypatch.delenv("TENANTRY_HEALTH_TLS", raising=False)
    assert health_tls_on()
    assert WorkerSettings.from_env().health_tls == ServerTls(server.cert, server.key)
    monkeypatch.setenv("TENANTRY_HEALTH_TLS", "off")
    assert WorkerSettings.from_env().health_tls is None
    monkeypatch.setenv("TENANTRY_HEALTH_TLS", "no")
    with pytest.raises(ConfigError, match="TENANTRY_HEALTH_TLS"):
        WorkerSettings.from_env()
