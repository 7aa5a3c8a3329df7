"""The notification activities: validate, render, send through the configured provider."""

from __future__ import annotations

import hashlib
import re

from libs import errors
from libs.errors import ErrorType, provider_errors
from libs.lifecycle import checked_tenant_id
from services.notification import templates
from services.notification.providers import Email, Notice, Notifier
from tenantry.notification.v1 import notification_pb2

# Deliberately plain: one address, no display name, no comments or quoting.
_EMAIL = re.compile(
    r"[^@\s<>()\[\],;:\"\\]{1,64}@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+"
)


def notice_key(tenant_id: str, kind: int, idempotency_key: str) -> str:
    """The key of a notice, the same for every retry of the same send (Novu's transactionId)."""
    kind_name = notification_pb2.NoticeKind.Name(kind)
    return hashlib.sha256(f"{tenant_id}\n{kind_name}\n{idempotency_key}".encode()).hexdigest()[:40]


def message_id(tenant_id: str, kind: int, idempotency_key: str) -> str:
    """The Message-ID of a notice: the same for every retry of the same send."""
    return f"<{notice_key(tenant_id, kind, idempotency_key)}@tenantry>"


class NotificationActivities:
    """Implements tenantry.notification.v1.NotificationActivities."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    def send_notice(self, request: notification_pb2.SendNoticeRequest) -> notification_pb2.SendNoticeResponse:
        """Sends one notice through the configured adapter.

        A retry re-sends with the same key: the same Message-ID over SMTP and
        SES (receivers can drop the copy), the same transactionId to Novu
        (which ignores the second trigger).
        """
        tenant_id = checked_tenant_id(request.tenant_id)
        if request.kind not in templates.TEMPLATES:
            raise errors.permanent(
                ErrorType.INVALID_ARGUMENT, f"notice kind {request.kind} is not a notice kind"
            )
        recipient = request.recipient.strip()
        if len(recipient) > 254 or not _EMAIL.fullmatch(recipient):
            raise errors.permanent(ErrorType.INVALID_ARGUMENT, "the recipient is not an email address")
        if not request.idempotency_key:
            raise errors.permanent(ErrorType.INVALID_ARGUMENT, "idempotency_key is empty")
        purge_time = None
        if request.kind == notification_pb2.NOTICE_KIND_DELETION_SCHEDULED:
            try:
                purge_time = templates.purge_time(request)
            except ValueError as err:
                raise errors.permanent(
                    ErrorType.INVALID_ARGUMENT, f"NOTICE_KIND_DELETION_SCHEDULED: {err}"
                ) from None
        rendered = templates.render(request)
        key = notice_key(tenant_id, request.kind, request.idempotency_key)
        kind_name = notification_pb2.NoticeKind.Name(request.kind)
        email = Email(
            recipient=recipient,
            recipient_name=templates.one_line(request.recipient_name, 100),
            subject=rendered.subject,
            body=rendered.body,
            message_id=f"<{key}@tenantry>",
            headers={"X-Tenantry-Tenant": tenant_id, "X-Tenantry-Notice": kind_name},
        )
        notice = Notice(
            email=email,
            tenant_id=tenant_id,
            kind=kind_name,
            key=key,
            tenant_display_name=templates.one_line(request.tenant_display_name, 100),
            recipient_first_name=email.recipient_name,
            domains=tuple(templates.one_line(d, 253) for d in request.domains if d.strip()),
            failed_step=templates.one_line(request.failed_step, 100),
            failure_reason=templates.bounded(request.failure_reason),
            purge_time=purge_time,
        )
        with provider_errors():
            provider_id = self._notifier.send(notice)
        return notification_pb2.SendNoticeResponse(message_id=provider_id)
