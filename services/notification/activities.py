"""The notification activities: validate, render, send through the configured provider."""

from __future__ import annotations

import hashlib
import re

from libs import errors
from libs.errors import ErrorType, provider_errors
from libs.lifecycle import checked_tenant_id
from services.notification import templates
from services.notification.providers import Email, Mailer
from tenantry.notification.v1 import notification_pb2

# Deliberately plain: one address, no display name, no comments or quoting.
_EMAIL = re.compile(
    r"[^@\s<>()\[\],;:\"\\]{1,64}@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+"
)


def message_id(tenant_id: str, kind: int, idempotency_key: str) -> str:
    """The Message-ID of a notice: the same for every retry of the same send."""
    kind_name = notification_pb2.NoticeKind.Name(kind)
    digest = hashlib.sha256(f"{tenant_id}\n{kind_name}\n{idempotency_key}".encode()).hexdigest()
    return f"<{digest[:40]}@tenantry>"


class NotificationActivities:
    """Implements tenantry.notification.v1.NotificationActivities."""

    def __init__(self, mailer: Mailer) -> None:
        self._mailer = mailer

    def send_notice(self, request: notification_pb2.SendNoticeRequest) -> notification_pb2.SendNoticeResponse:
        """Sends one notice; a retry re-sends with the same Message-ID so receivers can drop the copy."""
        tenant_id = checked_tenant_id(request.tenant_id)
        if request.kind not in templates.TEMPLATES:
            raise errors.permanent(
                ErrorType.INVALID_ARGUMENT, f"notice kind {request.kind} is not a notice kind"
            )
        recipient = request.recipient.strip()
        if len(recipient) > 254 or not _EMAIL.fullmatch(recipient):
            raise errors.permanent(
                ErrorType.INVALID_ARGUMENT, f"recipient {recipient[:254]!r} is not an email address"
            )
        if not request.idempotency_key:
            raise errors.permanent(ErrorType.INVALID_ARGUMENT, "idempotency_key is empty")
        rendered = templates.render(request)
        email = Email(
            recipient=recipient,
            recipient_name=templates.one_line(request.recipient_name, 100),
            subject=rendered.subject,
            body=rendered.body,
            message_id=message_id(tenant_id, request.kind, request.idempotency_key),
            headers={
                "X-Tenantry-Tenant": tenant_id,
                "X-Tenantry-Notice": notification_pb2.NoticeKind.Name(request.kind),
            },
        )
        with provider_errors():
            provider_id = self._mailer.send(email)
        return notification_pb2.SendNoticeResponse(message_id=provider_id)
