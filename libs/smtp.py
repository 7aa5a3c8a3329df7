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
from pathlib import Path

from libs import config, tracing
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
    # Upgrade every connection with STARTTLS (certificate verified); off only when asked for.
    starttls: bool = True
    # Trust for a relay whose certificate a private CA signed (else the system's roots).
    ca_file: Path | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if (self.username is None) != (self.password is None):
            raise config.ConfigError("TENANTRY_SMTP_USERNAME and TENANTRY_SMTP_PASSWORD must be set together")
        if self.username is not None and not self.starttls:
            raise config.ConfigError(
                "TENANTRY_SMTP_USERNAME is set but TENANTRY_SMTP_STARTTLS=off: "
                "the password would travel in clear"
            )

    @classmethod
    def from_env(cls) -> SmtpSettings:
        """TENANTRY_SMTP_ADDRESS, TENANTRY_MAIL_FROM, TENANTRY_SMTP_STARTTLS (on|off),
        TENANTRY_SMTP_USERNAME with TENANTRY_SMTP_PASSWORD_FILE or TENANTRY_SMTP_PASSWORD,
        TENANTRY_SMTP_CA_FILE, TENANTRY_SMTP_TIMEOUT_SECONDS; raises ConfigError."""
        host, _, port = config.address("TENANTRY_SMTP_ADDRESS", "127.0.0.1:1025").rpartition(":")
        sender = config.required("TENANTRY_MAIL_FROM", "Tenantry <no-reply@tenantry.test>")
        if "@" not in parseaddr(sender)[1]:
            raise config.ConfigError(f"TENANTRY_MAIL_FROM={sender!r} has no email address")
        ca_file = os.environ.get("TENANTRY_SMTP_CA_FILE") or None
        if ca_file is not None and not Path(ca_file).is_file():
            raise config.ConfigError(f"TENANTRY_SMTP_CA_FILE={ca_file!r} is not a file")
        return cls(
            host=host.strip("[]"),
            port=int(port),
            sender=sender,
            username=os.environ.get("TENANTRY_SMTP_USERNAME") or None,
            password=_password(),
            starttls=config.choice("TENANTRY_SMTP_STARTTLS", "on", ("on", "off")) == "on",
            ca_file=Path(ca_file) if ca_file else None,
            timeout=float(config.integer("TENANTRY_SMTP_TIMEOUT_SECONDS", 10)),
        )

    def tls_context(self) -> ssl.SSLContext:
        """What STARTTLS verifies the server's certificate and name against."""
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)


def _password() -> str | None:
    """TENANTRY_SMTP_PASSWORD_FILE (a mounted secret, trailing newline dropped) or TENANTRY_SMTP_PASSWORD."""
    path = os.environ.get("TENANTRY_SMTP_PASSWORD_FILE") or None
    inline = os.environ.get("TENANTRY_SMTP_PASSWORD") or None
    if path is None:
        return inline
    if inline is not None:
        raise config.ConfigError("TENANTRY_SMTP_PASSWORD and TENANTRY_SMTP_PASSWORD_FILE are both set")
    try:
        password = Path(path).read_text().rstrip("\r\n")
    except OSError as err:
        raise config.ConfigError(
            f"TENANTRY_SMTP_PASSWORD_FILE={path!r} cannot be read ({err.strerror})"
        ) from None
    if not password:
        raise config.ConfigError(f"TENANTRY_SMTP_PASSWORD_FILE={path!r} is empty")
    return password


class SmtpMailer:
    """Sends `Email`s over SMTP, one connection per message (smtplib connections are not thread-safe).

    The connection is upgraded with STARTTLS (certificate and name verified)
    unless the settings turn it off, before any login; a server that does not
    offer STARTTLS is an error rather than a reason to send in clear, and
    credentials never go over a connection without TLS.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self._context = settings.tls_context() if settings.starttls else None

    def send(self, email: Email) -> str:
        # The relay's address only: recipients are personal data.
        with tracing.span(
            "smtp send", {"server.address": self._settings.host, "server.port": self._settings.port}
        ):
            return self._send(email)

    def _send(self, email: Email) -> str:
        message = compose(email, self._settings.sender)
        where = f"{self._settings.host}:{self._settings.port}"
        try:
            with smtplib.SMTP(
                self._settings.host, self._settings.port, timeout=self._settings.timeout
            ) as smtp:
                if self._context is not None:
                    smtp.ehlo()
                    if not smtp.has_extn("starttls"):
                        raise Unavailable(f"the mail server at {where} does not offer STARTTLS")
                    smtp.starttls(context=self._context)
                if self._settings.username is not None and self._settings.password is not None:
                    # The settings forbid it already; the connection is checked all the same.
                    if not isinstance(smtp.sock, ssl.SSLSocket):
                        raise Unavailable(f"not sending credentials to {where} without TLS")
                    smtp.login(self._settings.username, self._settings.password)
                smtp.send_message(message, to_addrs=[email.recipient])
        except smtplib.SMTPRecipientsRefused as err:
            code = min((code for code, _ in err.recipients.values()), default=0)
            if code >= 500:
                raise Rejected(f"the mail server refused the recipient ({code})") from err
            raise Unavailable(f"the mail server deferred the recipient ({code})") from err
        except smtplib.SMTPAuthenticationError as err:
            # Retryable: the notice waits, not lost, until the operator fixes the
            # secret and restarts the worker. No cause attached: the server's
            # reply to AUTH is not ours to repeat.
            raise Unavailable(
                f"the mail server at {where} refused our credentials ({err.smtp_code}); "
                "check TENANTRY_SMTP_USERNAME and TENANTRY_SMTP_PASSWORD(_FILE)"
            ) from None
        except smtplib.SMTPDataError as err:
            if err.smtp_code >= 500:
                raise Rejected(f"the mail server refused the message ({err.smtp_code})") from err
            raise Unavailable(f"the mail server deferred the message ({err.smtp_code})") from err
        except smtplib.SMTPSenderRefused as err:
            # 530: the server wants AUTH (or STARTTLS) we were not configured for.
            raise Unavailable(f"the mail server at {where} refused the sender ({err.smtp_code})") from None
        except smtplib.SMTPResponseException as err:
            raise Unavailable(f"the mail server at {where} answered {err.smtp_code}") from err
        except smtplib.SMTPNotSupportedError as err:
            raise Unavailable(f"the mail server at {where} does not offer AUTH") from err
        except ssl.SSLCertVerificationError as err:
            raise Unavailable(
                f"the mail server at {where} presented a certificate we do not trust ({err.verify_message}); "
                "see TENANTRY_SMTP_CA_FILE"
            ) from err
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
