"""A mail catcher: an SMTP server that files every message into a Maildir.

Run as a process (`python -m libs.devstack.mailcatcher --port P --maildir D`);
tests and the operator read the messages with `read_messages(D)`.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import mailbox
import signal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args()
    controller = Controller(_Deliver(args.maildir), hostname=args.host, port=args.port)
    controller.start()
    print(f"mail catcher on {args.host}:{args.port}, filing into {args.maildir}", flush=True)

    async def wait_for_stop() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait_for_stop())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
