"""The set-password email for providers that hand us a one-time link instead
of sending it themselves (Auth0's password-change ticket).

The link is a credential: it is emailed straight from the identity worker
and never returned, logged or put in workflow history.
"""

from __future__ import annotations

import asyncio
import hashlib

from libs.smtp import Email, SmtpMailer, SmtpSettings


class SetPasswordMail:
    """Sends the admin the link to choose their password."""

    def __init__(self, mailer: SmtpMailer) -> None:
        self._mailer = mailer

    @classmethod
    def from_env(cls) -> SetPasswordMail:
        return cls(SmtpMailer(SmtpSettings.from_env()))

    async def __call__(self, recipient: str, link: str) -> None:
        email = Email(
            recipient=recipient,
            recipient_name="",
            subject="Set your password",
            body=(
                "Hello,\n\n"
                "An administrator account was created for you. Choose your password here:\n\n"
                f"  {link}\n\n"
                "The link works once and expires in five days.\n\n"
                "-- Tenantry\n"
            ),
            # The same link sent again (a retried step) keeps its Message-ID.
            message_id=f"<{hashlib.sha256(link.encode()).hexdigest()[:40]}@tenantry>",
            headers={"X-Tenantry-Notice": "SET_PASSWORD"},
        )
        # smtplib blocks: keep it off the event loop.
        await asyncio.to_thread(self._mailer.send, email)
