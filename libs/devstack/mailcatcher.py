"""A mail catcher: an SMTP server that files every message into a Maildir.

Run as a process (`python -m libs.devstack.mailcatcher --port P --maildir D`);
tests and the operator read the messages with `read_messages(D)`.

With `--tls-cert/--tls-key` it offers STARTTLS and requires it before
anything else; with `--username/--password-file` it requires AUTH (LOGIN or
PLAIN, only once TLS is up), so senders are held to what a real relay asks.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import hmac
import mailbox
import os
import secrets
import signal
import ssl
import warnings
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USERNAME = "tenantry"


class _Deliver:
    def __init__(self, maildir: Path) -> None:
        self._box = mailbox.Maildir(maildir, create=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self._box.add(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def read_messages(maildir: Path) -> list[EmailMessage]:
    """Every message received so far, oldest first."""
    box = mailbox.Maildir(maildir, create=True)
    parsed = []
    for key in box.iterkeys():
        with box.get_file(key) as raw:
            parsed.append(email.message_from_binary_file(raw, policy=email.policy.default))  # type: ignore[call-overload]
    return sorted(parsed, key=lambda m: str(m.get("Date", "")))  # type: ignore[misc]


def password_file(secrets_dir: Path) -> Path:
    """The catcher's generated password in `secrets_dir` (0600), made on first use."""
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = secrets_dir / "smtp-password"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(18))
    return path


class _Authenticator:
    def __init__(self, username: str, password: str) -> None:
        self._username = username.encode()
        self._password = password.encode()

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        good = hmac.compare_digest(auth_data.login, self._username) & hmac.compare_digest(
            auth_data.password, self._password
        )
        return AuthResult(success=good, handled=False)


def controller(
    maildir: Path,
    *,
    host: str,
    port: int,
    tls: tuple[Path, Path] | None = None,
    credentials: tuple[str, str] | None = None,
) -> Controller:
    """The catcher's server, not yet started: STARTTLS required with `tls`
    (cert, key), AUTH required with `credentials` (username, password)."""
    options: dict[str, Any] = {}
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        options |= {"tls_context": context, "require_starttls": True}
    if credentials is not None:
        options |= {
            "authenticator": _Authenticator(*credentials),
            "auth_required": True,
            # Never a password in clear, even to the catcher.
            "auth_require_tls": tls is not None,
        }
    return Controller(_Deliver(maildir), hostname=host, port=port, **options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    parser.add_argument("--tls-cert", type=Path, help="offer and require STARTTLS with this certificate")
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--username", default=USERNAME)
    parser.add_argument("--password-file", type=Path, help="require AUTH with --username and this password")
    args = parser.parse_args()
    # aiosmtpd sets its own deprecated attribute on every AUTH; not ours to fix.
    warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    server = controller(
        args.maildir,
        host=args.host,
        port=args.port,
        tls=(args.tls_cert, args.tls_key) if args.tls_cert else None,
        credentials=(args.username, args.password_file.read_text().strip()) if args.password_file else None,
    )
    server.start()
    starttls = "required" if args.tls_cert else "off"
    auth = "required" if args.password_file else "off"
    print(
        f"mail catcher on {args.host}:{args.port}, filing into {args.maildir}"
        f" (STARTTLS {starttls}, AUTH {auth})",
        flush=True,
    )

    async def wait_for_stop() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait_for_stop())
    finally:
        server.stop()


if __name__ == "__main__":
    main()
