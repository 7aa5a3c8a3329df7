"""Opaque page tokens: a list's position, signed (HMAC-SHA256) with the request it belongs to.

A token carries the position (the last tenant id or event id of the page)
and a MAC over the position and the request's scope (the rpc and, for
events, the tenant), so a token made for one tenant's events is refused for
another's, and a forged or garbled one is refused before it is read. The
key comes from TENANTRY_PAGE_TOKEN_KEY_FILE, shared by every facade replica
so that any of them takes the next page; without it each process makes its
own (tokens then die with the process, which the log says).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
from pathlib import Path

from libs.config import ConfigError

log = logging.getLogger(__name__)
KEY_FILE_VARIABLE = "TENANTRY_PAGE_TOKEN_KEY_FILE"
MIN_KEY_BYTES = 32
# Longer than any token made here (a 32-character tenant id): nothing larger is decoded.
MAX_TOKEN = 256
_VERSION = b"\x01"
_MAC_BYTES = hashlib.sha256().digest_size
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


class PageTokens:
    """Makes and reads the page tokens of the list rpcs with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"a page token key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key

    @classmethod
    def from_env(cls) -> PageTokens:
        """The key in TENANTRY_PAGE_TOKEN_KEY_FILE, or one of this process only (with a warning)."""
        path = os.environ.get(KEY_FILE_VARIABLE, "").strip()
        if not path:
            log.warning(
                "%s is not set: page tokens are signed with a key of this process only, so"
                " another replica or a restart refuses them",
                KEY_FILE_VARIABLE,
            )
            return cls(secrets.token_bytes(MIN_KEY_BYTES))
        try:
            key = Path(path).read_bytes().strip()
        except OSError as err:
            raise ConfigError(f"{KEY_FILE_VARIABLE}={path!r} cannot be read: {err.strerror}") from None
        if len(key) < MIN_KEY_BYTES:
            raise ConfigError(f"{KEY_FILE_VARIABLE}={path!r} holds under {MIN_KEY_BYTES} bytes")
        return cls(key)

    def encode(self, position: str, *, scope: str) -> str:
        body = _VERSION + position.encode()
        return base64.urlsafe_b64encode(body + self._mac(body, scope)).rstrip(b"=").decode()

    def decode(self, token: str, *, scope: str) -> str | None:
        """The position in a token made by `encode` for `scope`, or None for any other string."""
        if len(token) > MAX_TOKEN or not _TOKEN.fullmatch(token):
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != token:
            return None  # the last character's unused bits: one token, one spelling
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not body.startswith(_VERSION) or not hmac.compare_digest(mac, self._mac(body, scope)):
            return None
        try:
            return body[len(_VERSION) :].decode()
        except UnicodeDecodeError:
            return None

    def _mac(self, body: bytes, scope: str) -> bytes:
        # The scope is length-prefixed: no (scope, position) pair reads as another.
        scoped = len(scope.encode()).to_bytes(4, "big") + scope.encode() + body
        return hmac.new(self._key, scoped, hashlib.sha256).digest()
