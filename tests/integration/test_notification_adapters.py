"""The SES and Novu notification adapters: SES against moto in server mode
(sent messages read back over moto's HTTP API), Novu against tests/fakes/novu.py
through the real `novu-py` SDK, and the same notices through every adapter."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from botocore.stub import Stubber
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from libs.config import ConfigError
from libs.devstack.mailcatcher import read_messages
from libs.devstack.processes import free_port
from services.notification import providers, worker
from services.notification.activities import NotificationActivities, message_id, notice_key
from services.notification.providers import MailNotifier
from services.notification.providers.novu import NovuSettings, subscriber_id
from services.notification.providers.ses import SesMailer
from tenantry.notification.v1 import notification_pb2
from tests.conftest import Aws, moto_aws
from tests.fakes.novu import FakeNovu

KINDS = {
    "welcome": notification_pb2.NOTICE_KIND_WELCOME,
    "failed": notification_pb2.NOTICE_KIND_PROVISION_FAILED,
    "deprovisioned": notification_pb2.NOTICE_KIND_DEPROVISIONED,
    "deletion": notification_pb2.NOTICE_KIND_DELETION_SCHEDULED,
    "restored": notification_pb2.NOTICE_KIND_RESTORED,
    "suspended": notification_pb2.NOTICE_KIND_SUSPENDED,
    "resumed": notification_pb2.NOTICE_KIND_RESUMED,
}
WORKFLOW = {
    "welcome": "tenant-welcome",
    "failed": "tenant-provisioning-failed",
    "deprovisioned": "tenant-deprovisioned",
    "deletion": "tenant-deletion-scheduled",
    "restored": "tenant-restored",
    "suspended": "tenant-suspended",
    "resumed": "tenant-resumed",
}
SUBJECT = {
    "welcome": "Welcome to Tenantry: Acme Widgets is ready",
    "failed": "Tenantry: setting up Acme Widgets failed",
    "deprovisioned": "Tenantry: Acme Widgets has been deprovisioned",
    "deletion": "Tenantry: Acme Widgets will be deleted on 3 March 2026",
    "restored": "Tenantry: Acme Widgets has been restored",
    "suspended": "Tenantry: Acme Widgets has been suspended",
    "resumed": "Tenantry: Acme Widgets has been resumed",
}
# When a DELETION_SCHEDULED notice says the tenant's data goes.
PURGE = datetime(2026, 3, 3, 14, 5, 42, tzinfo=UTC)
PURGE_TEXT = "Tuesday 3 March 2026 at 14:05 UTC"


@pytest.fixture
def tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def notice(tenant_id: str, kind: str = "welcome", /, **overrides: Any) -> notification_pb2.SendNoticeRequest:
    fields: dict[str, Any] = {
        "tenant_id": tenant_id,
        "kind": KINDS[kind],
        "recipient": f"admin@{tenant_id}.example.com",
        "recipient_name": "Ada",
        "tenant_display_name": "Acme Widgets",
        "domains": [f"{tenant_id}.tenants.tenantry.test"],
        "idempotency_key": f"run-{tenant_id}",
    }
    if kind == "failed":
        fields.update(failed_step="dns", failure_reason="dns record already exists and points elsewhere")
    if kind == "deletion":
        purge_time = Timestamp()
        purge_time.FromDatetime(PURGE)
        fields.update(purge_time=purge_time)
    fields.update(overrides)
    return notification_pb2.SendNoticeRequest(**fields)


def send(notify: NotificationActivities, request: notification_pb2.SendNoticeRequest) -> str:
    return ActivityEnvironment().run(notify.send_notice, request).message_id


def fails_with(error_type: str, notify: NotificationActivities, request: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(notify.send_notice, request)
    assert caught.value.type == error_type, caught.value
    assert caught.value.non_retryable is (error_type == "InvalidArgument")
    return caught.value


# -- SES ---------------------------------------------------------------------


def ses_activities(monkeypatch: pytest.MonkeyPatch, *, sender: str | None = None) -> NotificationActivities:
    monkeypatch.setenv("TENANTRY_NOTIFY_PROVIDER", "ses")
    monkeypatch.setenv("TENANTRY_SES_VERIFY_SENDER", "true")
    if sender is not None:
        monkeypatch.setenv("TENANTRY_MAIL_FROM", sender)
    notifier = providers.from_env()
    providers.prepare(notifier)
    return NotificationActivities(notifier)


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    """A moto server of this module's own: sent SES messages are read back from
    moto's whole-state dump, which other services' state (ECS, Route53) in a
    shared server can make fail."""
    with moto_aws(tmp_path_factory.mktemp("moto-ses")) as running:
        yield running


@pytest.fixture
def ses(aws: Any, monkeypatch: pytest.MonkeyPatch) -> NotificationActivities:
    return ses_activities(monkeypatch)


def ses_sent(endpoint: str) -> list[dict[str, Any]]:
    """Every message moto's SES has accepted, from moto's own HTTP API."""
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=10) as answer:
        data = json.load(answer)
    return list(data.get("ses", {}).get("RawMessage", []))


def ses_message(endpoint: str, ses_id: str) -> EmailMessage:
    [sent] = [m for m in ses_sent(endpoint) if m["id"] == ses_id]
    parsed = email.message_from_string(sent["raw_data"], policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    # moto adds the To header's addresses to the envelope's Destinations.
    assert parsed["To"].addresses[0].addr_spec in sent["destinations"]
    return parsed


@pytest.mark.parametrize("kind", KINDS)
def test_ses_delivers_each_notice(ses: NotificationActivities, aws: Any, tenant_id: str, kind: str) -> None:
    ses_id = send(ses, notice(tenant_id, kind))

    message = ses_message(aws.endpoint_url, ses_id)
    assert message["To"].addresses[0].addr_spec == f"admin@{tenant_id}.example.com"
    assert message["To"].addresses[0].display_name == "Ada"
    assert message["From"].addresses[0].addr_spec == "no-reply@tenantry.test"
    assert message["Subject"] == SUBJECT[kind]
    assert message["X-Tenantry-Tenant"] == tenant_id
    assert message["Message-ID"] == message_id(tenant_id, KINDS[kind], f"run-{tenant_id}")
    body = message.get_content()
    assert "Hello Ada," in body
    if kind == "welcome":
        assert f"https://{tenant_id}.tenants.tenantry.test/" in body
    if kind == "failed":
        assert 'failed at the step "dns"' in body
        assert "dns record already exists and points elsewhere" in body
    if kind == "deletion":
        assert PURGE_TEXT in " ".join(body.split())


def test_ses_retry_sends_a_second_copy(ses: NotificationActivities, aws: Any, tenant_id: str) -> None:
    """SES has no idempotency key: a retried send is a second email with the same Message-ID."""
    first, retried = send(ses, notice(tenant_id)), send(ses, notice(tenant_id))

    assert first != retried
    copies = [ses_message(aws.endpoint_url, i) for i in (first, retried)]
    assert copies[0]["Message-ID"] == copies[1]["Message-ID"]


def test_ses_unverified_sender_is_invalid_argument(
    aws: Any, monkeypatch: pytest.MonkeyPatch, tenant_id: str
) -> None:
    monkeypatch.setenv("TENANTRY_NOTIFY_PROVIDER", "ses")
    monkeypatch.setenv("TENANTRY_SES_VERIFY_SENDER", "false")
    monkeypatch.setenv("TENANTRY_MAIL_FROM", f"Tenantry <no-reply@{tenant_id}.unverified.test>")
    notify = NotificationActivities(providers.from_env())

    error = fails_with("InvalidArgument", notify, notice(tenant_id))

    assert "MessageRejected" in error.message
    assert not [m for m in ses_sent(aws.endpoint_url) if tenant_id in m["raw_data"]]


@pytest.mark.parametrize(
    ("code", "status", "error_type"),
    [
        ("Throttling", 400, "ProviderUnavailable"),
        ("ServiceUnavailable", 503, "ProviderUnavailable"),
        ("InternalFailure", 500, "ProviderUnavailable"),
        ("MessageRejected", 400, "InvalidArgument"),
        ("MailFromDomainNotVerifiedException", 400, "InvalidArgument"),
    ],
)
def test_ses_errors_are_classified(
    ses: NotificationActivities, tenant_id: str, code: str, status: int, error_type: str
) -> None:
    notifier = ses._notifier
    assert isinstance(notifier, MailNotifier) and isinstance(notifier.mailer, SesMailer)
    with Stubber(notifier.mailer.client) as stubber:
        stubber.add_client_error("send_raw_email", service_error_code=code, http_status_code=status)
        error = fails_with(error_type, ses, notice(tenant_id))
    assert code in error.message


def test_ses_unreachable_is_retryable(aws: Any, monkeypatch: pytest.MonkeyPatch, tenant_id: str) -> None:
    monkeypatch.setenv("TENANTRY_NOTIFY_PROVIDER", "ses")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    notify = NotificationActivities(providers.from_env())

    fails_with("ProviderUnavailable", notify, notice(tenant_id))


# -- Novu --------------------------------------------------------------------


@pytest.fixture
def novu() -> Iterator[FakeNovu]:
    # A Novu account with a workflow for every notice kind.
    fake = FakeNovu(workflows=tuple(WORKFLOW.values())).start()
    yield fake
    fake.stop()


def novu_activities(monkeypatch: pytest.MonkeyPatch, fake: FakeNovu, *, key: str | None = None) -> Any:
    monkeypatch.setenv("TENANTRY_NOTIFY_PROVIDER", "novu")
    monkeypatch.setenv("TENANTRY_NOVU_API_KEY", key or fake.api_key)
    monkeypatch.setenv("TENANTRY_NOVU_BASE_URL", fake.url)
    notifier = providers.from_env()
    providers.prepare(notifier)
    return NotificationActivities(notifier)


@pytest.fixture
def via_novu(novu: FakeNovu, monkeypatch: pytest.MonkeyPatch) -> NotificationActivities:
    # The SDK's debug logging would print the Authorization header; the adapter keeps it off.
    monkeypatch.setenv("NOVU_DEBUG", "1")
    return novu_activities(monkeypatch, novu)


@pytest.mark.parametrize("kind", KINDS)
def test_novu_upserts_the_admin_then_triggers_the_workflow(
    via_novu: NotificationActivities, novu: FakeNovu, tenant_id: str, kind: str
) -> None:
    request = notice(tenant_id, kind)
    transaction = send(via_novu, request)

    admin = f"admin@{tenant_id}.example.com"
    sid = subscriber_id(tenant_id, admin)
    assert admin not in sid and sid.startswith(f"{tenant_id}:")
    subscriber = novu.state.subscribers[sid]
    assert subscriber["email"] == admin
    assert subscriber["firstName"] == "Ada"
    [trigger] = novu.triggers_for(sid)
    assert trigger.workflow == WORKFLOW[kind]
    assert trigger.transaction_id == transaction == notice_key(tenant_id, KINDS[kind], f"run-{tenant_id}")
    payload = trigger.payload
    assert payload["tenantId"] == tenant_id
    assert payload["tenantDisplayName"] == "Acme Widgets"
    assert payload["domains"] == [f"{tenant_id}.tenants.tenantry.test"]
    assert payload["subject"] == SUBJECT[kind]
    assert "Hello Ada," in payload["body"]
    if kind == "failed":
        assert payload["failedStep"] == "dns"
        assert payload["failureReason"] == "dns record already exists and points elsewhere"
    else:
        assert "failedStep" not in payload
    if kind == "deletion":
        assert payload["purgeTime"] == "2026-03-03T14:05:42Z"
        assert PURGE_TEXT in " ".join(payload["body"].split())
    else:
        assert "purgeTime" not in payload
    # The upsert comes first, every call carries the key in Novu's scheme.
    paths = [r.path for r in novu.requests]
    assert paths == ["/v2/subscribers", "/v1/events/trigger"]
    assert all(r.headers["authorization"] == f"ApiKey {novu.api_key}" for r in novu.requests)


def test_novu_retried_trigger_is_deduplicated(
    via_novu: NotificationActivities, novu: FakeNovu, tenant_id: str
) -> None:
    first, retried = send(via_novu, notice(tenant_id)), send(via_novu, notice(tenant_id))

    assert first == retried
    assert len(novu.triggers_for(subscriber_id(tenant_id, f"admin@{tenant_id}.example.com"))) == 1
    assert novu.state.duplicates == 1


def test_novu_answer_lost_then_retried_delivers_once(
    via_novu: NotificationActivities, novu: FakeNovu, tenant_id: str
) -> None:
    novu.fail_triggers_after_accepting = 503
    fails_with("ProviderUnavailable", via_novu, notice(tenant_id))
    novu.fail_triggers_after_accepting = None

    send(via_novu, notice(tenant_id))

    assert len(novu.triggers_for(subscriber_id(tenant_id, f"admin@{tenant_id}.example.com"))) == 1


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (503, "ProviderUnavailable"),
        (500, "ProviderUnavailable"),
        (429, "ProviderUnavailable"),
        (400, "InvalidArgument"),
        (422, "InvalidArgument"),
        (404, "InvalidArgument"),
    ],
)
def test_novu_errors_are_classified(
    via_novu: NotificationActivities, novu: FakeNovu, tenant_id: str, status: int, error_type: str
) -> None:
    novu.fail_with = status

    error = fails_with(error_type, via_novu, notice(tenant_id))

    assert str(status) in error.message
    assert not novu.state.triggers


def test_novu_unknown_workflow_is_invalid_argument(
    novu: FakeNovu, monkeypatch: pytest.MonkeyPatch, tenant_id: str
) -> None:
    novu.workflows.discard("tenant-deprovisioned")
    notify = novu_activities(monkeypatch, novu)

    error = fails_with("InvalidArgument", notify, notice(tenant_id, "deprovisioned"))

    assert "workflow_not_found" in error.message


def test_novu_unreachable_is_retryable(
    novu: FakeNovu, monkeypatch: pytest.MonkeyPatch, tenant_id: str
) -> None:
    notify = novu_activities(monkeypatch, novu)
    novu.stop()

    fails_with("ProviderUnavailable", notify, notice(tenant_id))


def test_novu_key_never_in_logs_or_errors(
    novu: FakeNovu, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tenant_id: str
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("NOVU_DEBUG", "1")
    wrong_key = "wrong-" + novu.api_key
    messages = []

    send(novu_activities(monkeypatch, novu), notice(tenant_id))
    messages.append(
        fails_with(
            "ProviderUnavailable", novu_activities(monkeypatch, novu, key=wrong_key), notice(tenant_id)
        ).message
    )
    for status in (400, 503):
        novu.fail_with = status
        messages.append(
            fails_with(
                "InvalidArgument" if status == 400 else "ProviderUnavailable",
                novu_activities(monkeypatch, novu),
                notice(tenant_id),
            ).message
        )

    assert "401" in messages[0]
    settings = NovuSettings.from_env()
    for text in (caplog.text, *messages, repr(settings)):
        assert novu.api_key not in text
        assert wrong_key not in text


# -- every adapter, the same notice ------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_adapter_says_the_same(
    mail: Any, aws: Any, novu: FakeNovu, monkeypatch: pytest.MonkeyPatch, tenant_id: str, kind: str
) -> None:
    request = notice(tenant_id, kind)

    monkeypatch.setenv("TENANTRY_NOTIFY_PROVIDER", "smtp")
    for name, value in mail.env.items():
        monkeypatch.setenv(name, value)
    smtp_id = send(NotificationActivities(providers.from_env()), request)
    [by_smtp] = [m for m in read_messages(mail.maildir) if m["Message-ID"] == smtp_id]
    by_ses = ses_message(aws.endpoint_url, send(ses_activities(monkeypatch), request))
    send(novu_activities(monkeypatch, novu), request)
    [by_novu] = novu.triggers_for(subscriber_id(tenant_id, request.recipient))

    assert by_smtp["Subject"] == by_ses["Subject"] == by_novu.payload["subject"] == SUBJECT[kind]
    assert by_smtp.get_content() == by_ses.get_content() == by_novu.payload["body"]


# -- configuration -----------------------------------------------------------


async def test_run_requires_the_novu_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTRY_NOTIFY_PROVIDER", "novu")
    monkeypatch.delenv("TENANTRY_NOVU_API_KEY", raising=False)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    with pytest.raises(ConfigError, match="TENANTRY_NOVU_API_KEY"):
        await worker.run()


@pytest.mark.parametrize(
    ("provider", "name", "value"),
    [
        ("novu", "TENANTRY_NOVU_BASE_URL", "api.novu.co"),
        ("ses", "TENANTRY_SES_VERIFY_SENDER", "maybe"),
        ("ses", "TENANTRY_MAIL_FROM", "Tenantry"),
    ],
)
async def test_run_rejects_bad_settings(
    monkeypatch: pytest.MonkeyPatch, provider: str, name: str, value: str
) -> None:
    monkeypatch.setenv("TENANTRY_NOTIFY_PROVIDER", provider)
    monkeypatch.setenv("TENANTRY_NOVU_API_KEY", "k")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv(name, value)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    with pytest.raises(ConfigError, match=name):
        await worker.run()
