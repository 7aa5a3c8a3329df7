"""How a rendered notice leaves the building, and the adapters that send it.

Adapters raise `Rejected` when the provider refuses the message for good
(a recipient that does not exist, say) and `Unavailable` for a fault a retry
may fix; the activities turn those into the shared error vocabulary.
"""

from __future__ import annotations

from typing import Protocol

from libs import config

# The shared provider errors, re-exported for this domain's adapters.
from libs.errors import Rejected as Rejected
from libs.errors import Unavailable as Unavailable
from libs.smtp import Email as Email

PROVIDERS = ("smtp",)


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
        from libs.smtp import SmtpMailer, SmtpSettings

        return SmtpMailer(SmtpSettings.from_env())
    raise AssertionError(provider)  # pragma: no cover - choice() allows only PROVIDERS
