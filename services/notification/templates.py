"""The text of every notice, rendered once here for every adapter (SMTP, SES and Novu)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tenantry.notification.v1 import notification_pb2

# Free text from callers goes into one-line places (the subject) and a body;
# bound its size so a runaway failure reason cannot make a huge email.
_MAX_FIELD = 1000


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


def _welcome(request: notification_pb2.SendNoticeRequest) -> Rendered:
    links = _links(request)
    where = f"It answers at:\n\n{links}\n\n" if links else ""
    body = (
        f"{_greeting(request)}\n\n"
        f"Your tenant {_tenant(request)} is ready.\n\n"
        f"{where}"
        f"Your administrator account is {request.recipient}. The password is never sent\n"
        "in this email: you set it yourself through the link your identity provider sends.\n\n"
        "-- Tenantry\n"
    )
    return Rendered(subject=f"Welcome to Tenantry: {_title(request)} is ready", body=body)


def _provision_failed(request: notification_pb2.SendNoticeRequest) -> Rendered:
    step = one_line(request.failed_step, 100) or "unknown"
    reason = bounded(request.failure_reason) or "no reason was given"
    body = (
        f"{_greeting(request)}\n\n"
        f'Setting up your tenant {_tenant(request)} failed at the step "{step}":\n\n'
        f"  {reason}\n\n"
        "Everything created for it so far has been removed. You can request the\n"
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


TEMPLATES: dict[int, Callable[[notification_pb2.SendNoticeRequest], Rendered]] = {
    notification_pb2.NOTICE_KIND_WELCOME: _welcome,
    notification_pb2.NOTICE_KIND_PROVISION_FAILED: _provision_failed,
    notification_pb2.NOTICE_KIND_DEPROVISIONED: _deprovisioned,
}


def render(request: notification_pb2.SendNoticeRequest) -> Rendered:
    """The subject and plain-text body of the notice; KeyError for a kind without a template."""
    return TEMPLATES[request.kind](request)
