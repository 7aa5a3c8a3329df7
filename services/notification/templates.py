"""The text of every notice, rendered once here for every adapter (SMTP, SES and Novu)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from tenantry.idp.v1 import idp_pb2
from tenantry.notification.v1 import notification_pb2

# Free text from callers goes into one-line places (the subject) and a body;
# bound its size so a runaway failure reason cannot make a huge email.
_MAX_FIELD = 1000

# English whatever the process locale (strftime's %A and %B follow it).
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


def one_line(value: str, limit: int = 200) -> str:
    """Whitespace (newlines included) collapsed to single spaces, cut at `limit`."""
    return " ".join(value.split())[:limit]


def bounded(value: str) -> str:
    """Free text (a failure reason) stripped and cut at the size a notice allows."""
    return value.strip()[:_MAX_FIELD]


def purge_time(request: notification_pb2.SendNoticeRequest) -> datetime:
    """The request's purge_time in UTC; ValueError when it is unset or not a valid timestamp."""
    if not request.HasField("purge_time"):
        raise ValueError("purge_time is required")
    try:
        return request.purge_time.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise ValueError("purge_time is not a valid timestamp") from None


def day(when: datetime) -> str:
    """`3 March 2026` (the UTC date)."""
    when = when.astimezone(UTC)
    return f"{when.day} {_MONTHS[when.month - 1]} {when.year}"


def moment(when: datetime) -> str:
    """`Tuesday 3 March 2026 at 14:05 UTC`: to the minute, in UTC, for people."""
    when = when.astimezone(UTC)
    return f"{_WEEKDAYS[when.weekday()]} {day(when)} at {when:%H:%M} UTC"


def _greeting(request: notification_pb2.SendNoticeRequest) -> str:
    name = one_line(request.recipient_name, 100)
    return f"Hello {name}," if name else "Hello,"


def _tenant(request: notification_pb2.SendNoticeRequest) -> str:
    display = one_line(request.tenant_display_name, 100)
    return f'"{display}" ({request.tenant_id})' if display else request.tenant_id


def _title(request: notification_pb2.SendNoticeRequest) -> str:
    return one_line(request.tenant_display_name, 100) or request.tenant_id


def _links(request: notification_pb2.SendNoticeRequest) -> str:
    return "\n".join(f"  https://{one_line(d, 253)}/" for d in request.domains if d.strip())


def _where(request: notification_pb2.SendNoticeRequest) -> str:
    links = _links(request)
    return f"It answers at:\n\n{links}\n\n" if links else ""


def _sign_in(request: notification_pb2.SendNoticeRequest) -> str:
    """How the admin gets to sign in: only what the tenant's identity provider does."""
    account = f"Your administrator account is {request.recipient}."
    if request.admin_setup == idp_pb2.ADMIN_SETUP_SET_PASSWORD_LINK:
        return (
            f"{account} Your password is never sent\n"
            "by email: if you have none there yet, your identity provider emails you a\n"
            "separate, single-use link to choose it.\n\n"
        )
    if request.admin_setup == idp_pb2.ADMIN_SETUP_NO_SIGN_IN:
        # The local store (development) has no sign-in page and sends no link.
        return (
            f"{account} It is kept in Tenantry's local\n"
            "identity store, which is for development: it has no sign-in page and sends\n"
            "no password link, so nobody can sign in with this account and no email to set\n"
            "a password will come. To get an account you can sign in with, ask your\n"
            "operator to create the tenant on a real identity provider (Keycloak or Auth0).\n\n"
        )
    return f"{account} Your password is never sent by email.\n\n"


def _welcome(request: notification_pb2.SendNoticeRequest) -> Rendered:
    body = (
        f"{_greeting(request)}\n\n"
        f"Your tenant {_tenant(request)} is ready.\n\n"
        f"{_where(request)}"
        f"{_sign_in(request)}"
        "-- Tenantry\n"
    )
    return Rendered(subject=f"Welcome to Tenantry: {_title(request)} is ready", body=body)


def _provision_failed(request: notification_pb2.SendNoticeRequest) -> Rendered:
    step = one_line(request.failed_step, 100) or "unknown"
    reason = bounded(request.failure_reason) or "no reason was given"
    left = request.leftover_resources[:20]
    if left:
        listed = "\n".join(
            f"  - {one_line(r.kind, 60)} {one_line(r.id, 200)} ({one_line(r.step, 60)}):"
            f" {one_line(r.reason, 200)}"
            for r in left
        )
        removed = (
            "Everything else created for it has been removed; these could not be, and\n"
            f"our operators have been asked to remove them:\n\n{listed}\n\n"
        )
    else:
        removed = "Everything created for it so far has been removed. "
    body = (
        f"{_greeting(request)}\n\n"
        f'Setting up your tenant {_tenant(request)} failed at the step "{step}":\n\n'
        f"  {reason}\n\n"
        f"{removed}You can request the\n"
        f"tenant again, or contact support quoting the tenant id {request.tenant_id}.\n\n"
        "-- Tenantry\n"
    )
    return Rendered(subject=f"Tenantry: setting up {_title(request)} failed", body=body)


def _deprovisioned(request: notification_pb2.SendNoticeRequest) -> Rendered:
    body = (
        f"{_greeting(request)}\n\n"
        f"Your tenant {_tenant(request)} has been deprovisioned. Its sign-in, data and\n"
        "storage are being removed, and its addresses stop answering.\n\n"
        f"If this is a mistake, contact support at once quoting the tenant id {request.tenant_id}.\n\n"
        "-- Tenantry\n"
    )
    return Rendered(subject=f"Tenantry: {_title(request)} has been deprovisioned", body=body)


def _deletion_scheduled(request: notification_pb2.SendNoticeRequest) -> Rendered:
    when = purge_time(request)
    body = (
        f"{_greeting(request)}\n\n"
        f"Your tenant {_tenant(request)} is scheduled for deletion on\n"
        f"{moment(when)}. Its data is backed up first; then its sign-in, data and\n"
        "storage are removed, and its addresses stop answering.\n\n"
        "Until then, sign-in to the tenant is disabled, its data is kept, and an operator\n"
        "can restore it as it was. If this is a mistake, contact support before that date\n"
        f"quoting the tenant id {request.tenant_id}.\n\n"
        "-- Tenantry\n"
    )
    return Rendered(subject=f"Tenantry: {_title(request)} will be deleted on {day(when)}", body=body)


def _restored(request: notification_pb2.SendNoticeRequest) -> Rendered:
    body = (
        f"{_greeting(request)}\n\n"
        f"The scheduled deletion of your tenant {_tenant(request)} has been cancelled,\n"
        "and the tenant is back: sign-in is enabled again, with its data as it was.\n\n"
        f"{_where(request)}"
        "-- Tenantry\n"
    )
    return Rendered(subject=f"Tenantry: {_title(request)} has been restored", body=body)


def _suspended(request: notification_pb2.SendNoticeRequest) -> Rendered:
    body = (
        f"{_greeting(request)}\n\n"
        f"Your tenant {_tenant(request)} has been suspended. Sign-in to it is disabled;\n"
        "its data is kept as it is, and nothing is deleted.\n\n"
        "To find out why, or to have it resumed, contact your provider quoting the\n"
        f"tenant id {request.tenant_id}.\n\n"
        "-- Tenantry\n"
    )
    return Rendered(subject=f"Tenantry: {_title(request)} has been suspended", body=body)


def _resumed(request: notification_pb2.SendNoticeRequest) -> Rendered:
    body = (
        f"{_greeting(request)}\n\n"
        f"Your tenant {_tenant(request)} has been resumed: sign-in is enabled again,\n"
        "with its data as it was.\n\n"
        f"{_where(request)}"
        "-- Tenantry\n"
    )
    return Rendered(subject=f"Tenantry: {_title(request)} has been resumed", body=body)


TEMPLATES: dict[int, Callable[[notification_pb2.SendNoticeRequest], Rendered]] = {
    notification_pb2.NOTICE_KIND_WELCOME: _welcome,
    notification_pb2.NOTICE_KIND_PROVISION_FAILED: _provision_failed,
    notification_pb2.NOTICE_KIND_DEPROVISIONED: _deprovisioned,
    notification_pb2.NOTICE_KIND_DELETION_SCHEDULED: _deletion_scheduled,
    notification_pb2.NOTICE_KIND_RESTORED: _restored,
    notification_pb2.NOTICE_KIND_SUSPENDED: _suspended,
    notification_pb2.NOTICE_KIND_RESUMED: _resumed,
}


def render(request: notification_pb2.SendNoticeRequest) -> Rendered:
    """The subject and plain-text body of the notice.

    KeyError for a kind without a template; ValueError for a
    DELETION_SCHEDULED notice without a valid purge_time.
    """
    return TEMPLATES[request.kind](request)
