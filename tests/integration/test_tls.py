"""TLS everywhere else (issue 10, item 5): the workers' health endpoints, the
Temporal client (TLS, client certificates, API key), SMTP."""

from __future__ import annotations

import asyncio
import os
import smtplib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RetryConfig, TLSConfig
from temporalio.testing import ActivityEnvironment

from libs.config import ConfigError, ServerTls, TemporalSettings, WorkerSettings
from libs.devstack.certs import KeyPair, LocalCA
from libs.devstack.mailcatcher import read_messages
from libs.devstack.processes import ManagedProcess, free_port, grpc_serving, python_module
from libs.errors import Unavailable
from libs.health import HealthEndpoint
from libs.smtp import Email, SmtpMailer, SmtpSettings
from libs.temporal import connect
from services.notification import providers
from services.notification.activities import NotificationActivities
from tenantry.notification.v1 import notification_pb2
from tests.conftest import MailCatcher
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


# -- SMTP: STARTTLS and AUTH, to the mail catcher that requires both --


def mailer_for(mail: MailCatcher, monkeypatch: pytest.MonkeyPatch, **overrides: str) -> SmtpMailer:
    for name, value in (mail.env | overrides).items():
        monkeypatch.setenv(name, value)
    return SmtpMailer(SmtpSettings.from_env())


def an_email(subject: str = "hello") -> Email:
    tag = uuid.uuid4().hex[:12]
    return Email(
        recipient=f"ada@{tag}.example.com",
        recipient_name="Ada",
        subject=subject,
        body="body\n",
        message_id=f"<{tag}@tenantry>",
    )


def test_smtp_sends_over_starttls_with_auth(mail: MailCatcher, monkeypatch: pytest.MonkeyPatch) -> None:
    email = an_email()
    assert mailer_for(mail, monkeypatch).send(email) == email.message_id
    [message] = [m for m in read_messages(mail.maildir) if m["Message-ID"] == email.message_id]
    assert message["To"] == f"Ada <{email.recipient}>"


def test_smtp_wrong_password_fails_clearly_and_retryably(
    mail: MailCatcher, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    mailer = mailer_for(mail, monkeypatch, TENANTRY_SMTP_PASSWORD_FILE=str(wrong))
    with pytest.raises(Unavailable, match="refused our credentials.*TENANTRY_SMTP_PASSWORD") as caught:
        mailer.send(an_email())
    assert "not-the-password" not in str(caught.value) and caught.value.__cause__ is None

    # Through the notification activity: a retryable ProviderUnavailable, the notice waits for the fix.
    monkeypatch.setenv("TENANTRY_NOTIFY_PROVIDER", "smtp")
    request = notification_pb2.SendNoticeRequest(
        tenant_id="t-wrongpassword",
        kind=notification_pb2.NOTICE_KIND_WELCOME,
        recipient="admin@wrong.example.com",
        recipient_name="Ada",
        tenant_display_name="Acme",
        domains=["wrong.tenants.tenantry.test"],
        idempotency_key="provision-t-wrongpassword",
    )
    with pytest.raises(ApplicationError) as failed:
        ActivityEnvironment().run(NotificationActivities(providers.from_env()).send_notice, request)
    assert (failed.value.type, failed.value.non_retryable) == ("ProviderUnavailable", False)
    assert "not-the-password" not in str(failed.value)


def test_smtp_refuses_a_server_certificate_it_does_not_trust(
    mail: MailCatcher, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = LocalCA(tmp_path / "other", name="Another CA")
    mailer = mailer_for(mail, monkeypatch, TENANTRY_SMTP_CA_FILE=str(other.ca_file))
    with pytest.raises(Unavailable, match="certificate we do not trust.*TENANTRY_SMTP_CA_FILE"):
        mailer.send(an_email())


def test_the_catcher_refuses_a_plaintext_client(mail: MailCatcher, monkeypatch: pytest.MonkeyPatch) -> None:
    host, _, port = mail.address.rpartition(":")
    with smtplib.SMTP(host, int(port), timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        # No AUTH and no mail before STARTTLS.
        assert smtp.docmd("AUTH", "PLAIN AHRlbmFudHJ5AHg=")[0] == 530
        assert smtp.docmd("MAIL", "FROM:<a@b.test>")[0] == 530
    # A sender told to skip STARTTLS (and so without credentials) gets nowhere either.
    for name in ("TENANTRY_SMTP_USERNAME", "TENANTRY_SMTP_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TENANTRY_SMTP_ADDRESS", mail.address)
    monkeypatch.setenv("TENANTRY_SMTP_STARTTLS", "off")
    with pytest.raises(Unavailable, match="refused the sender \\(530\\)"):
        SmtpMailer(SmtpSettings.from_env()).send(an_email())


class _Recording:
    """A plaintext server offering AUTH without TLS (as a misconfigured relay would)."""

    def __init__(self) -> None:
        self.logins: list[Any] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.logins.append(auth_data)
        return AuthResult(success=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        return "250 accepted"


def test_smtp_never_sends_credentials_over_plaintext(monkeypatch: pytest.MonkeyPatch, ca: LocalCA) -> None:
    recorder = _Recording()
    port = free_port()
    server = Controller(
        recorder, hostname="127.0.0.1", port=port, authenticator=recorder, auth_require_tls=False
    )
    server.start()
    try:
        settings = SmtpSettings(
            host="127.0.0.1",
            port=port,
            sender="a@b.test",
            username="u",
            password="hunter2",
            ca_file=ca.ca_file,
        )
        with pytest.raises(Unavailable, match="does not offer STARTTLS"):
            SmtpMailer(settings).send(an_email())
    finally:
        server.stop()
    assert recorder.logins == []
    # Nor can it be configured to.
    with pytest.raises(ConfigError, match="TENANTRY_SMTP_STARTTLS=off"):
        SmtpSettings(host="h", port=25, sender="a@b.test", username="u", password="hunter2", starttls=False)
    monkeypatch.setenv("TENANTRY_SMTP_USERNAME", "u")
    monkeypatch.setenv("TENANTRY_SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("TENANTRY_SMTP_STARTTLS", "off")
    with pytest.raises(ConfigError, match="TENANTRY_SMTP_STARTTLS"):
        SmtpSettings.from_env()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"TENANTRY_SMTP_STARTTLS": "no"}, "TENANTRY_SMTP_STARTTLS"),
        (
            {"TENANTRY_SMTP_USERNAME": "u", "TENANTRY_SMTP_PASSWORD_FILE": "/nonexistent"},
            "TENANTRY_SMTP_PASSWORD_FILE",
        ),
        (
            {
                "TENANTRY_SMTP_USERNAME": "u",
                "TENANTRY_SMTP_PASSWORD_FILE": "/etc/hostname",
                "TENANTRY_SMTP_PASSWORD": "p",
            },
            "TENANTRY_SMTP_PASSWORD",
        ),
        ({"TENANTRY_SMTP_CA_FILE": "/nonexistent/ca.pem"}, "TENANTRY_SMTP_CA_FILE"),
    ],
)
def test_smtp_settings_errors_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    for name in ("TENANTRY_SMTP_USERNAME", "TENANTRY_SMTP_PASSWORD", "TENANTRY_SMTP_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=variable):
        SmtpSettings.from_env()


def test_smtp_password_file_and_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("TENANTRY_SMTP_STARTTLS", "TENANTRY_SMTP_PASSWORD", "TENANTRY_SMTP_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("TENANTRY_SMTP_USERNAME", "mailer")
    monkeypatch.setenv("TENANTRY_SMTP_PASSWORD_FILE", str(secret))
    settings = SmtpSettings.from_env()
    assert (settings.username, settings.password, settings.starttls, settings.ca_file) == (
        "mailer",
        "s3cret",
        True,
        None,
    )
    assert "s3cret" not in repr(settings)


def test_a_worker_process_serves_health_over_tls_only(
    temporal_address: str, ca: LocalCA, mail: MailCatcher, tmp_path: Path
) -> None:
    """As the dev stack starts a worker: its certificate from the CA, readiness checked over TLS."""
    server = ca.server()
    health = f"127.0.0.1:{free_port()}"
    trust = grpc.ssl_channel_credentials(ca.ca_file.read_bytes())
    env = {
        **os.environ,
        **mail.env,
        "TEMPORAL_ADDRESS": temporal_address,
        "TENANTRY_HEALTH_ADDRESS": health,
        "TENANTRY_TLS_CERT_FILE": str(server.cert),
        "TENANTRY_TLS_KEY_FILE": str(server.key),
    }
    worker = ManagedProcess(
        "notification-tls",
        python_module("services.notification"),
        log_dir=tmp_path,
        env=env,
        ready=lambda: grpc_serving(health, credentials=trust),
    )
    try:
        worker.start().wait_ready()
        assert not grpc_serving(health)
    finally:
        assert worker.stop() == 0
