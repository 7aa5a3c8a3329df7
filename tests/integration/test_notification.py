"""The notification activities against the real mail catcher (aiosmtpd) over SMTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from libs.config import ConfigError
from libs.contracts import bind_activities
from libs.devstack.mailcatcher import read_messages
from libs.devstack.processes import free_port
from services.notification import providers, worker
from services.notification.activities import NotificationActivities, message_id
from tenantry.idp.v1 import idp_pb2
from tenantry.notification.v1 import notification_pb2
from tenantry.tenant.v1 import tenant_pb2


def activities_for(monkeypatch: pytest.MonkeyPatch, smtp: Mapping[str, str]) -> NotificationActivities:
    monkeypatch.setenv("TENANTRY_NOTIFY_PROVIDER", "smtp")
    for name, value in smtp.items():
        monkeypatch.setenv(name, value)
    return NotificationActivities(providers.from_env())


def plaintext(address: str) -> dict[str, str]:
    """The settings of a sender to a test server without TLS (nor AUTH)."""
    return {"TENANTRY_SMTP_ADDRESS": address, "TENANTRY_SMTP_STARTTLS": "off"}


@pytest.fixture
def notify(mail: Any, monkeypatch: pytest.MonkeyPatch) -> NotificationActivities:
    return activities_for(monkeypatch, mail.env)


@pytest.fixture
def tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def welcome(tenant_id: str, /, **overrides: Any) -> notification_pb2.SendNoticeRequest:
    fields: dict[str, Any] = {
        "tenant_id": tenant_id,
        "kind": notification_pb2.NOTICE_KIND_WELCOME,
        "recipient": f"admin@{tenant_id}.example.com",
        "recipient_name": "Ada",
        "tenant_display_name": "Acme Widgets",
        "domains": [f"{tenant_id}.tenants.tenantry.test"],
        "idempotency_key": f"provision-{tenant_id}",
    }
    fields.update(overrides)
    return notification_pb2.SendNoticeRequest(**fields)


def send(notify: NotificationActivities, request: notification_pb2.SendNoticeRequest) -> str:
    return ActivityEnvironment().run(notify.send_notice, request).message_id


def received(maildir: Any, message_id: str) -> list[EmailMessage]:
    return [m for m in read_messages(maildir) if m["Message-ID"] == message_id]


def fails_with(error_type: str, notify: NotificationActivities, request: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        ActivityEnvironment().run(notify.send_notice, request)
    assert caught.value.type == error_type, caught.value
    return caught.value


def test_welcome_email_arrives(notify: NotificationActivities, mail: Any, tenant_id: str) -> None:
    sent = send(notify, welcome(tenant_id))

    [message] = received(mail.maildir, sent)
    assert message["To"].addresses[0].addr_spec == f"admin@{tenant_id}.example.com"
    assert message["To"].addresses[0].display_name == "Ada"
    assert message["From"].addresses[0].addr_spec == "no-reply@tenantry.test"
    assert message["Subject"] == "Welcome to Tenantry: Acme Widgets is ready"
    assert message["X-Tenantry-Tenant"] == tenant_id
    assert message["X-Tenantry-Notice"] == "NOTICE_KIND_WELCOME"
    body = message.get_content()
    assert "Hello Ada," in body
    assert f'"Acme Widgets" ({tenant_id}) is ready' in body
    assert f"https://{tenant_id}.tenants.tenantry.test/" in body
    assert f"admin@{tenant_id}.example.com" in body


@pytest.mark.parametrize(
    ("setup", "says", "never_says"),
    [
        # The local store has no sign-in and sends nothing: no link may be promised.
        (
            idp_pb2.ADMIN_SETUP_NO_SIGN_IN,
            ["local identity store", "no sign-in page and sends no password link", "ask your operator"],
            ["link to choose", "emails you"],
        ),
        (
            idp_pb2.ADMIN_SETUP_SET_PASSWORD_LINK,
            ["your identity provider emails you a separate, single-use link to choose it"],
            ["local identity store"],
        ),
        # A worker that did not say (from before the field): nothing is promised.
        (idp_pb2.ADMIN_SETUP_UNSPECIFIED, ["Your password is never sent by email."], ["link"]),
    ],
)
def test_welcome_says_only_what_the_identity_provider_does(
    notify: NotificationActivities,
    mail: Any,
    tenant_id: str,
    setup: int,
    says: list[str],
    never_says: list[str],
) -> None:
    [message] = received(mail.maildir, send(notify, welcome(tenant_id, admin_setup=setup)))

    text = text_of(message)
    assert f"Your administrator account is admin@{tenant_id}.example.com." in text
    for phrase in says:
        assert phrase in text
    for phrase in never_says:
        assert phrase not in text


def test_message_id_is_deterministic(notify: NotificationActivities, mail: Any, tenant_id: str) -> None:
    first = send(notify, welcome(tenant_id))
    retried = send(notify, welcome(tenant_id))
    other_run = send(notify, welcome(tenant_id, idempotency_key="another-run"))

    assert (
        first
        == retried
        == message_id(tenant_id, notification_pb2.NOTICE_KIND_WELCOME, f"provision-{tenant_id}")
    )
    assert first.startswith("<") and first.endswith("@tenantry>")
    assert other_run != first
    # A retry is a second delivery that a receiver can recognise by its Message-ID.
    assert len(received(mail.maildir, first)) == 2
    assert len(received(mail.maildir, other_run)) == 1


def test_provision_failed_names_the_step_and_reason(
    notify: NotificationActivities, mail: Any, tenant_id: str
) -> None:
    request = welcome(
        tenant_id,
        kind=notification_pb2.NOTICE_KIND_PROVISION_FAILED,
        failed_step="dns",
        failure_reason="dns record already exists and points elsewhere",
    )
    [message] = received(mail.maildir, send(notify, request))

    assert message["Subject"] == "Tenantry: setting up Acme Widgets failed"
    assert message["X-Tenantry-Notice"] == "NOTICE_KIND_PROVISION_FAILED"
    body = message.get_content()
    assert 'failed at the step "dns"' in body
    assert "dns record already exists and points elsewhere" in body
    assert "Everything created for it so far has been removed" in body


def test_provision_failed_lists_what_could_not_be_removed(
    notify: NotificationActivities, mail: Any, tenant_id: str
) -> None:
    request = welcome(
        tenant_id,
        kind=notification_pb2.NOTICE_KIND_PROVISION_FAILED,
        failed_step="create_dns_records",
        failure_reason="dns record already exists and points elsewhere",
        leftover_resources=[
            tenant_pb2.LeftoverResource(
                step="create_bucket",
                kind="s3_bucket",
                id=f"tenantry-{tenant_id}",
                domain="infra",
                reason="access denied",
            )
        ],
    )
    [message] = received(mail.maildir, send(notify, request))
    body = message.get_content()
    assert "could not be" in body and "Everything created for it so far" not in body
    assert f"s3_bucket tenantry-{tenant_id} (create_bucket): access denied" in body


def test_deprovisioned_notice(notify: NotificationActivities, mail: Any, tenant_id: str) -> None:
    request = welcome(tenant_id, kind=notification_pb2.NOTICE_KIND_DEPROVISIONED, tenant_display_name="")
    [message] = received(mail.maildir, send(notify, request))

    assert message["Subject"] == f"Tenantry: {tenant_id} has been deprovisioned"
    assert "has been deprovisioned" in message.get_content()


def timestamp(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def text_of(message: EmailMessage) -> str:
    """The body with its line breaks folded, so that a phrase can be looked for across them."""
    return " ".join(message.get_content().split())


def test_deletion_scheduled_names_the_purge_date(
    notify: NotificationActivities, mail: Any, tenant_id: str
) -> None:
    purge = datetime(2026, 3, 3, 14, 5, 42, tzinfo=UTC)
    request = welcome(
        tenant_id, kind=notification_pb2.NOTICE_KIND_DELETION_SCHEDULED, purge_time=timestamp(purge)
    )
    [message] = received(mail.maildir, send(notify, request))

    assert message["Subject"] == "Tenantry: Acme Widgets will be deleted on 3 March 2026"
    assert message["X-Tenantry-Notice"] == "NOTICE_KIND_DELETION_SCHEDULED"
    text = text_of(message)
    assert "Hello Ada," in text
    assert (
        f'"Acme Widgets" ({tenant_id}) is scheduled for deletion on Tuesday 3 March 2026 at 14:05 UTC' in text
    )
    assert "Its data is backed up first" in text
    assert "sign-in to the tenant is disabled" in text
    assert "an operator can restore it" in text
    assert tenant_id in text


def test_deletion_scheduled_says_the_date_in_utc(
    notify: NotificationActivities, mail: Any, tenant_id: str
) -> None:
    # 23:30 on 31 December at UTC-5 is already the next year in UTC.
    purge = datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    request = welcome(
        tenant_id, kind=notification_pb2.NOTICE_KIND_DELETION_SCHEDULED, purge_time=timestamp(purge)
    )
    [message] = received(mail.maildir, send(notify, request))

    assert message["Subject"].endswith("will be deleted on 1 January 2027")
    assert "Friday 1 January 2027 at 04:30 UTC" in text_of(message)


@pytest.mark.parametrize(
    ("kind", "subject", "phrases"),
    [
        (
            notification_pb2.NOTICE_KIND_RESTORED,
            "Tenantry: Acme Widgets has been restored",
            ["scheduled deletion of your tenant", "has been cancelled", "sign-in is enabled again"],
        ),
        (
            notification_pb2.NOTICE_KIND_SUSPENDED,
            "Tenantry: Acme Widgets has been suspended",
            ["has been suspended", "Sign-in to it is disabled", "its data is kept", "contact your provider"],
        ),
        (
            notification_pb2.NOTICE_KIND_RESUMED,
            "Tenantry: Acme Widgets has been resumed",
            ["has been resumed", "sign-in is enabled again"],
        ),
    ],
)
def test_lifecycle_notices_arrive(
    notify: NotificationActivities, mail: Any, tenant_id: str, kind: int, subject: str, phrases: list[str]
) -> None:
    [message] = received(mail.maildir, send(notify, welcome(tenant_id, kind=kind)))

    assert message["Subject"] == subject
    assert message["X-Tenantry-Notice"] == notification_pb2.NoticeKind.Name(kind)
    text = text_of(message)
    assert "Hello Ada," in text
    assert f'"Acme Widgets" ({tenant_id})' in text
    for phrase in phrases:
        assert phrase in text


def test_newlines_cannot_inject_headers(notify: NotificationActivities, mail: Any, tenant_id: str) -> None:
    request = welcome(tenant_id, tenant_display_name="Acme\r\nBcc: victim@example.com", recipient_name="A\nB")
    [message] = received(mail.maildir, send(notify, request))

    assert message["Bcc"] is None
    assert message["Subject"] == "Welcome to Tenantry: Acme Bcc: victim@example.com is ready"


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": notification_pb2.NOTICE_KIND_UNSPECIFIED},
        {"kind": 99},
        {"recipient": ""},
        {"recipient": "not-an-address"},
        {"recipient": "Ada <ada@example.com>"},
        {"recipient": "a@b.example.com, c@d.example.com"},
        {"tenant_id": "Bad_Tenant"},
        {"idempotency_key": ""},
        {"kind": notification_pb2.NOTICE_KIND_DELETION_SCHEDULED},
        {"kind": notification_pb2.NOTICE_KIND_DELETION_SCHEDULED, "purge_time": Timestamp(seconds=10**12)},
    ],
)
def test_bad_request_is_invalid_argument(
    notify: NotificationActivities, mail: Any, tenant_id: str, overrides: dict[str, Any]
) -> None:
    error = fails_with("InvalidArgument", notify, welcome(tenant_id, **overrides))

    assert error.non_retryable
    assert not [m for m in read_messages(mail.maildir) if m["X-Tenantry-Tenant"] == tenant_id]


def test_mail_server_down_is_retryable(monkeypatch: pytest.MonkeyPatch, tenant_id: str) -> None:
    notify = activities_for(monkeypatch, plaintext(f"127.0.0.1:{free_port()}"))

    error = fails_with("ProviderUnavailable", notify, welcome(tenant_id))

    assert error.non_retryable is False


class _Refusing:
    """An SMTP server that refuses one recipient for good and defers another."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address.startswith("busy@"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        return "250 accepted"


@pytest.fixture
def refusing_server() -> Iterator[str]:
    port = free_port()
    controller = Controller(_Refusing(), hostname="127.0.0.1", port=port)
    controller.start()
    yield f"127.0.0.1:{port}"
    controller.stop()


def test_recipient_refused_for_good_is_invalid_argument(
    monkeypatch: pytest.MonkeyPatch, refusing_server: str, tenant_id: str
) -> None:
    notify = activities_for(monkeypatch, plaintext(refusing_server))

    refused = fails_with("InvalidArgument", notify, welcome(tenant_id, recipient="nobody@example.com"))
    deferred = fails_with("ProviderUnavailable", notify, welcome(tenant_id, recipient="busy@example.com"))

    assert refused.non_retryable is True
    assert deferred.non_retryable is False
    assert send(notify, welcome(tenant_id, recipient="someone@example.com")).endswith("@tenantry>")


def test_activities_match_the_contract(notify: NotificationActivities) -> None:
    assert len(bind_activities(worker.CONTRACT, notify)) == len(worker.CONTRACT.rpcs) == 1


async def test_run_rejects_an_unknown_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTRY_NOTIFY_PROVIDER", "bogus")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    with pytest.raises(ConfigError, match="TENANTRY_NOTIFY_PROVIDER"):
        await worker.run()


async def test_run_rejects_a_username_without_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTRY_SMTP_USERNAME", "mailer")
    monkeypatch.delenv("TENANTRY_SMTP_PASSWORD", raising=False)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    with pytest.raises(ConfigError, match="TENANTRY_SMTP_PASSWORD"):
        await worker.run()


def test_password_stays_out_of_the_settings_repr() -> None:
    from libs.smtp import SmtpSettings

    settings = SmtpSettings(host="h", port=25, sender="a@b.test", username="u", password="hunter2")
    assert "hunter2" not in repr(settings)
