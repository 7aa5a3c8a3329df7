"""The dev stack's payload key ring (see libs/codec.py) and the codec
server's sign-in secret, made once in `.state/secrets`."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

from libs.codec import new_key_ring


def payload_key_ring(secrets_dir: Path) -> Path:
    """The key ring file in `secrets_dir` (mode 0600), made with one fresh key
    if there is none: histories written earlier stay readable across restarts."""
    return _private_file(secrets_dir / "payload-keys.json", lambda: new_key_ring().to_json())


def codec_sign_in_secret(secrets_dir: Path) -> Path:
    """The secret an operator pastes into the codec server's /login (mode 0600):
    whoever can read it can read the key ring beside it too."""
    return _private_file(secrets_dir / "codec-sign-in", lambda: secrets.token_urlsafe(32) + "\n")


def _private_file(path: Path, make: Callable[[], str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        # Written whole under another name, then moved: never a half-written file.
        partial = path.with_name(path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(make())
        os.replace(partial, path)
    return path
