"""Notices through Novu (the official `novu-py` SDK, synchronous calls).

Novu does not take a rendered email: it triggers a workflow by its id with a
payload, and the workflow's own templates decide the channels and the text.
So each send (1) upserts the administrator as a subscriber
(`POST /v2/subscribers`) and (2) triggers the notice's workflow
(`POST /v1/events/trigger`) with the tenant's facts and also the subject and
body rendered by `templates`, so a Novu workflow can simply print them and
every provider says the same thing.

The trigger carries `transactionId` = the notice's key, the same for every
retry: Novu ignores a second trigger with a transactionId it has seen, so a
retried activity delivers once.

The SDK's own retries are off (its default backs off for up to an hour inside
one call); Temporal retries the activity instead. The API key is never logged
nor put into an error message; the SDK's debug logger stays a no-op even when
NOVU_DEBUG is set, since it would print the Authorization header.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

import httpx
from novu_py import Novu, models
from novu_py.utils import BackoffStrategy, RetryConfig

from libs import config
from libs.errors import Rejected, Unavailable
from services.notification.providers import Notice

DEFAULT_BASE_URL = "https://api.novu.co"

# Workflow (trigger) ids in Novu, per NoticeKind name.
WORKFLOWS = {
    "NOTICE_KIND_WELCOME": "tenant-welcome",
    "NOTICE_KIND_PROVISION_FAILED": "tenant-provisioning-failed",
    "NOTICE_KIND_DEPROVISIONED": "tenant-deprovisioned",
    "NOTICE_KIND_DELETION_SCHEDULED": "tenant-deletion-scheduled",
    "NOTICE_KIND_RESTORED": "tenant-restored",
    "NOTICE_KIND_SUSPENDED": "tenant-suspended",
    "NOTICE_KIND_RESUMED": "tenant-resumed",
}

# 408 timeout, 409 a request with the same idempotency key still running, 429 throttled.
_RETRYABLE_STATUS = frozenset({408, 409, 429})
# Trigger answers that a later attempt may get past.
_RETRYABLE_TRIGGER_STATUS = frozenset({"error"})

_NO_RETRIES = RetryConfig("none", BackoffStrategy(0, 0, 1.0, 0), False)


class _Silent(logging.Logger):
    """The SDK's debug logger: says nothing (its debug output includes request headers)."""

    def __init__(self) -> None:
        super().__init__("novu_py.silent", level=logging.CRITICAL + 1)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass(frozen=True)
class NovuSettings:
    # Never logged nor shown in a repr or an error message.
    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    timeout: float = 10.0

    @classmethod
    def from_env(cls) -> NovuSettings:
        api_key = config.required("TENANTRY_NOVU_API_KEY")
        base_url = config.required("TENANTRY_NOVU_BASE_URL", DEFAULT_BASE_URL).rstrip("/")
        split = urlsplit(base_url)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise config.ConfigError(f"TENANTRY_NOVU_BASE_URL={base_url!r} is not an http(s) URL")
        return cls(
            api_key=api_key,
            base_url=base_url,
            timeout=float(config.integer("TENANTRY_NOVU_TIMEOUT_SECONDS", 10)),
        )


def subscriber_id(tenant_id: str, email: str) -> str:
    """The administrator's Novu subscriberId: stable per tenant and address, without the address in it."""
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:24]
    return f"{tenant_id}:{digest}"


def payload(notice: Notice) -> dict[str, Any]:
    """What the Novu workflow receives: the tenant's facts and the rendered text."""
    body: dict[str, Any] = {
        "tenantId": notice.tenant_id,
        "tenantDisplayName": notice.tenant_display_name,
        "domains": list(notice.domains),
        "subject": notice.email.subject,
        "body": notice.email.body,
    }
    if notice.kind == "NOTICE_KIND_PROVISION_FAILED":
        body["failedStep"] = notice.failed_step
        body["failureReason"] = notice.failure_reason
    if notice.purge_time is not None:
        # RFC 3339 in UTC, for a Novu template to format as it likes.
        body["purgeTime"] = notice.purge_time.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return body


class NovuNotifier:
    """Upserts the subscriber, then triggers the notice's workflow, with one SDK client (thread-safe)."""

    def __init__(self, settings: NovuSettings) -> None:
        self._settings = settings
        self._client = Novu(
            secret_key=settings.api_key,
            server_url=settings.base_url,
            retry_config=_NO_RETRIES,
            timeout_ms=int(settings.timeout * 1000),
            debug_logger=_Silent(),
        )

    def send(self, notice: Notice) -> str:
        workflow = WORKFLOWS.get(notice.kind)
        if workflow is None:
            raise Rejected(f"no Novu workflow for {notice.kind}")
        subscriber = subscriber_id(notice.tenant_id, notice.email.recipient)
        with _classified("upserting the subscriber"):
            self._client.subscribers.create(
                create_subscriber_request_dto=models.CreateSubscriberRequestDto(
                    subscriber_id=subscriber,
                    email=notice.email.recipient,
                    first_name=notice.recipient_first_name or None,
                    data={"tenantId": notice.tenant_id},
                ),
            )
        with _classified(f"triggering {workflow}"):
            answer = self._client.trigger(
                trigger_event_request_dto=models.TriggerEventRequestDto(
                    workflow_id=workflow,
                    to=subscriber,
                    payload=payload(notice),
                    transaction_id=notice.key,
                ),
            )
        result = answer.result
        status = str(getattr(result.status, "value", result.status))
        if not result.acknowledged or status != "processed":
            message = f"Novu did not process the {workflow} trigger: {status}"
            if status in _RETRYABLE_TRIGGER_STATUS:
                raise Unavailable(message)
            raise Rejected(message)
        return result.transaction_id or notice.key


@contextmanager
def _classified(doing: str) -> Iterator[None]:
    """Turns the SDK's exceptions into Rejected / Unavailable; messages never hold the key."""
    try:
        yield
    except models.NovuError as err:
        status = err.status_code
        if status in (401, 403):
            # A key can be rotated without a redeploy; the same stance as a refused SMTP login.
            raise Unavailable(f"Novu refused our API key ({status}) {doing}") from None
        message = f"Novu answered {status} {doing}{_detail(err)}"
        if status >= 500 or status in _RETRYABLE_STATUS:
            raise Unavailable(message) from None
        raise Rejected(message) from None
    except (httpx.HTTPError, models.NoResponseError) as err:
        raise Unavailable(f"cannot reach Novu {doing}: {type(err).__name__}") from None


def _detail(err: models.NovuError) -> str:
    data = getattr(err, "data", None)
    message = getattr(data, "message", None)
    if isinstance(message, str) and message:
        return f": {message[:200]}"
    if isinstance(message, list) and message:
        return f": {'; '.join(str(m) for m in message)[:200]}"
    return ""
