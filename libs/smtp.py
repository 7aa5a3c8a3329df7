"""Email over SMTP: the local mail catcher in development, any relay in
production. Shared by the notification worker (notices) and the identity
worker (set-password links, which must not leave it)."""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr

from libs import config
from libs.errors import Rejected, Unavailable


@dataclass(frozen=True)
class Email:
    """One rendered message for one recipient."""

    recipient: str
    recipient_name: str
    subject: str
    body: str
    # Deterministic per logical message: a retried send repeats it, so a
    # receiver can drop the duplicate.
    message_id: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    username: str | None = None
    # Never logged nor shown in a repr or an error message.
    password: str | None = field(default=None, repr=False)
    timeout: float = 10.0

    @classmethod
    def from_env(cls) -> SmtpSettings:
        host, _, port = config.address("TENANTRY_SMTP_ADDRESS", "127.0.0.1:1025").rpartition(":")
        sender = config.required("TENANTRY_MAIL_FROM", "Tenantry <no-reply@tenantry.test>")
        if "@" not in parseaddr(sender)[1]:
            raise config.ConfigError(f"TENANTRY_MAIL_FROM={sender!r} has no email address")
        username = os.environ.get("TENANTRY_SMTP_USERNAME") or None
        password = os.environ.get("TENANTRY_SMTP_PASSWORD") or None
        if (username is None) != (password is None):
            raise config.ConfigError("TENANTRY_SMTP_USERNAME and TENANTRY_SMTP_PASSWORD must be set together")
        return cls(
            host=host.strip("[]"),
            port=int(port),
            sender=sender,
            username=username,
            password=password,
            timeout=float(config.integer("TENANTRY_SMTP_TIMEOUT_SECONDS", 10)),
        )


class SmtpMailer:
    """Sends `Email`s over SMTP, one connection per message (smtplib connections are not thread-safe).

    With credentials configured, the connection is upgraded with STARTTLS
    (certificate verified) before logging in; a server without STARTTLS is
    an error rather than a reason to send the password in clear.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings

    def send(self, email: Email) -> str:
        message = compose(email, self._settings.sender)
        where = f"{self._settings.host}:{self._settings.port}"
        try:
            with smtplib.SMTP(
                self._settings.host, self._settings.port, timeout=self._settings.timeout
            ) as smtp:
                if self._settings.username is not None and self._settings.password is not None:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.login(self._settings.username, self._settings.password)
                smtp.send_message(message, to_addrs=[email.recipient])
        except smtplib.SMTPRecipientsRefused as err:
            code = min((code for code, _ in err.recipients.values()), default=0)
            if code >= 500:
                raise Rejected(f"the mail server refused the recipient ({code})") from err
            raise Unavailable(f"the mail server deferred the recipient ({code})") from err
        except smtplib.SMTPAuthenticationError as err:
            # No cause attached: the server's reply to AUTH is not ours to repeat.
            raise Unavailable(
                f"the mail server at {where} refused our credentials ({err.smtp_code})"
            ) from None
        except smtplib.SMTPDataError as err:
            if err.smtp_code >= 500:
                raise Rejected(f"the mail server refused the message ({err.smtp_code})") from err
            raise Unavailable(f"the mail server deferred the message ({err.smtp_code})") from err
        except smtplib.SMTPResponseException as err:
            raise Unavailable(f"the mail server at {where} answered {err.smtp_code}") from err
        except smtplib.SMTPNotSupportedError as err:
            raise Unavailable(f"the mail server at {where} does not offer STARTTLS") from err
        except (smtplib.SMTPException, OSError) as err:
            raise Unavailable(f"cannot reach the mail server at {where}: {type(err).__name__}") from err
        return email.message_id


def compose(email: Email, sender: str) -> EmailMessage:
    """The MIME message of `email` from `sender`, as every mail adapter sends it."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = formataddr((email.recipient_name, email.recipient))
    message["Subject"] = email.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = email.message_id
    for name, value in email.headers.items():
        message[name] = value
    message.set_content(email.body)
    return message
