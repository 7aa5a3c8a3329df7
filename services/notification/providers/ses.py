"""Notices as email through Amazon SES (boto3, `SendRawEmail`).

Raw MIME rather than `SendEmail` so the message carries the same headers as
over SMTP (the recipient's display name, Message-ID, X-Tenantry-*). SES
itself may replace the Message-ID; the id returned is SES's MessageId.

SES has no idempotency key: a retried send after a lost answer is a second
email, recognisable by its subject and X-Tenantry headers only.

The sender (TENANTRY_MAIL_FROM) must be a verified SES identity. In
production it is verified beforehand (console or IaC, with DKIM on its
domain); verifying at worker start there would only mail a confirmation link.
With TENANTRY_SES_VERIFY_SENDER=true (development against moto) the worker
verifies it at start, which moto grants at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from libs import config
from libs.errors import Rejected, Unavailable
from libs.smtp import Email, compose

# Error codes a later attempt may get past; any 5xx is retryable too.
_RETRYABLE = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestTimeout",
        "ServiceUnavailable",
        "InternalFailure",
        # Credentials can be rotated without a redeploy; the same stance as a
        # refused SMTP login.
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "AccessDenied",
        "AccessDeniedException",
    }
)


def _boolean(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    raise config.ConfigError(f"{name}={raw!r} is not true or false")


@dataclass(frozen=True)
class SesSettings:
    sender: str
    verify_sender: bool = False
    timeout: float = 10.0

    @classmethod
    def from_env(cls) -> SesSettings:
        sender = config.required("TENANTRY_MAIL_FROM", "Tenantry <no-reply@tenantry.test>")
        if "@" not in parseaddr(sender)[1]:
            raise config.ConfigError(f"TENANTRY_MAIL_FROM={sender!r} has no email address")
        return cls(
            sender=sender,
            verify_sender=_boolean("TENANTRY_SES_VERIFY_SENDER", False),
            timeout=float(config.integer("TENANTRY_SES_TIMEOUT_SECONDS", 10)),
        )

    @property
    def sender_address(self) -> str:
        return parseaddr(self.sender)[1]


class SesMailer:
    """Sends `Email`s with SES's SendRawEmail; boto3 clients are thread-safe, so one serves all sends.

    Region and credentials come from the standard AWS chain (AWS_REGION,
    AWS_ENDPOINT_URL for moto, a role in production).
    """

    def __init__(self, settings: SesSettings, *, client: Any = None) -> None:
        self._settings = settings
        if client is None:
            try:
                client = boto3.client(
                    "ses",
                    config=Config(
                        connect_timeout=settings.timeout,
                        read_timeout=settings.timeout,
                        # Temporal retries the activity, with backoff and a bound.
                        retries={"mode": "standard", "total_max_attempts": 1},
                    ),
                )
            except NoRegionError:
                raise config.ConfigError("AWS_REGION (or AWS_DEFAULT_REGION) is not set for SES") from None
        self.client = client

    def prepare(self) -> None:
        """Verifies the sender identity when TENANTRY_SES_VERIFY_SENDER is on (development)."""
        if not self._settings.verify_sender:
            return
        try:
            self.client.verify_email_identity(EmailAddress=self._settings.sender_address)
        except (ClientError, BotoCoreError) as err:
            raise Unavailable(f"SES did not verify the sender: {_describe(err)}") from err

    def send(self, email: Email) -> str:
        raw = compose(email, self._settings.sender).as_bytes()
        try:
            answer = self.client.send_raw_email(
                Source=self._settings.sender,
                Destinations=[email.recipient],
                RawMessage={"Data": raw},
            )
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in _RETRYABLE or status >= 500:
                raise Unavailable(f"SES could not send the message now: {_describe(err)}") from err
            raise Rejected(f"SES refused the message to the admin: {_describe(err)}") from err
        except BotoCoreError as err:
            raise Unavailable(f"cannot reach SES: {type(err).__name__}") from err
        return str(answer["MessageId"])


def _describe(err: BaseException) -> str:
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {str(error.get('Message', ''))[:200]}"
    return type(err).__name__
