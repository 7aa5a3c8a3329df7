"""How a rendered notice leaves the building, and the adapters that send it.

Adapters raise `Rejected` when the provider refuses the message for good
(a recipient that does not exist, say) and `Unavailable` for a fault a retry
may fix; the activities turn those into the shared error vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from libs import config

# The shared provider errors, re-exported for this domain's adapters.
from libs.errors import Rejected as Rejected
from libs.errors import Unavailable as Unavailable

PROVIDERS = ("smtp",)


@dataclass(frozen=True)
class Email:
    """One rendered notice for one recipient."""

    recipient: str
    recipient_name: str
    subject: str
    body: str
    # Deterministic per (tenant, kind, idempotency key): a retried send repeats it.
    message_id: str
    headers: Mapping[str, str] = field(default_factory=dict)


class Mailer(Protocol):
    def send(self, email: Email) -> str:
        """Sends the message and returns the provider's id of it."""
        ...


def from_env() -> Mailer:
    """The adapter named by TENANTRY_NOTIFY_PROVIDER, configured from its own settings.

    Reads configuration only; nothing connects until the first send.
    """
    provider = config.choice("TENANTRY_NOTIFY_PROVIDER", "smtp", PROVIDERS)
    if provider == "smtp":
        from services.notification.providers.smtp import SmtpMailer, SmtpSettings

        return SmtpMailer(SmtpSettings.from_env())
    raise AssertionError(provider)  # pragma: no cover - choice() allows only PROVIDERS
