"""The dev stack's payload key ring (see libs/codec.py), made once in `.state/secrets`."""

from __future__ import annotations

import os
from pathlib import Path

from libs.codec import new_key_ring


def payload_key_ring(secrets_dir: Path) -> Path:
    """The key ring file in `secrets_dir` (mode 0600), made with one fresh key
    if there is none: histories written earlier stay readable across restarts."""
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = secrets_dir / "payload-keys.json"
    if not path.exists():
        # Written whole under another name, then moved: never a half-written ring.
        partial = path.with_name(path.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(new_key_ring().to_json())
        os.replace(partial, path)
    return path
