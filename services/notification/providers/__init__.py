"""How a rendered notice leaves the building, and the adapters that send it.

Every adapter receives the same `Notice`: the email rendered once by
`templates` plus the structured facts it was rendered from. Email transports
(SMTP, SES) send `notice.email` through the `Mailer` protocol; Novu, which
triggers a workflow by id with a payload, takes the structured facts and the
rendered subject and body.

Adapters raise `Rejected` when the provider refuses the message for good
(a recipient that does not exist, say) and `Unavailable` for a fault a retry
may fix; the activities turn those into the shared error vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from libs import config

# The shared provider errors, re-exported for this domain's adapters.
from libs.errors import Rejected as Rejected
from libs.errors import Unavailable as Unavailable
from libs.smtp import Email as Email

PROVIDERS = ("smtp", "ses", "novu")


@dataclass(frozen=True)
class Notice:
    """One notice to one tenant administrator, rendered and with its facts."""

    email: Email
    tenant_id: str
    # The NoticeKind's name, e.g. NOTICE_KIND_WELCOME.
    kind: str
    # Hex digest, the same for every retry of the same logical notice: the
    # Message-ID's local part and Novu's transactionId.
    key: str
    # The request's free text, already cleaned (one line, bounded).
    tenant_display_name: str = ""
    recipient_first_name: str = ""
    domains: tuple[str, ...] = ()
    failed_step: str = ""
    failure_reason: str = ""
    # For DELETION_SCHEDULED: when the tenant's data is removed (UTC).
    purge_time: datetime | None = None


class Notifier(Protocol):
    def send(self, notice: Notice) -> str:
        """Delivers the notice and returns the provider's id of it."""
        ...


class Mailer(Protocol):
    def send(self, email: Email) -> str:
        """Sends the message and returns the provider's id of it."""
        ...


class MailNotifier:
    """A `Notifier` that sends the rendered email through a `Mailer` (SMTP, SES)."""

    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    def send(self, notice: Notice) -> str:
        return self.mailer.send(notice.email)

    def prepare(self) -> None:
        prepare = getattr(self.mailer, "prepare", None)
        if prepare is not None:
            prepare()


def from_env() -> Notifier:
    """The adapter named by TENANTRY_NOTIFY_PROVIDER, configured from its own settings.

    Reads and checks configuration only; nothing connects until `prepare()`
    or the first send.
    """
    provider = config.choice("TENANTRY_NOTIFY_PROVIDER", "smtp", PROVIDERS)
    if provider == "smtp":
        from libs.smtp import SmtpMailer, SmtpSettings

        return MailNotifier(SmtpMailer(SmtpSettings.from_env()))
    if provider == "ses":
        from services.notification.providers.ses import SesMailer, SesSettings

        return MailNotifier(SesMailer(SesSettings.from_env()))
    if provider == "novu":
        from services.notification.providers.novu import NovuNotifier, NovuSettings

        return NovuNotifier(NovuSettings.from_env())
    raise AssertionError(provider)  # pragma: no cover - choice() allows only PROVIDERS


def prepare(notifier: Notifier) -> None:
    """What an adapter does once at worker start (SES: verify the sender in dev); blocking."""
    step = getattr(notifier, "prepare", None)
    if step is not None:
        step()
