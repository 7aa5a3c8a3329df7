"""Payload encryption: every payload Tenantry writes to Temporal is AES-256-GCM ciphertext.

Workflow inputs and results, activity arguments and results, heartbeat
details, memos, headers and failures (messages and stack traces, through
`DefaultFailureConverterWithEncodedAttributes`) hold tenant data: admin
emails, names, domains, temporary passwords. The Temporal server, its
database and its UI see only ciphertext; a process decrypts with the key
ring it is given. Search attributes are never run through a codec by the
SDK (the server indexes them), so none holds personal data.

The key ring (`TENANTRY_PAYLOAD_KEYS_FILE`, or the JSON itself in
`TENANTRY_PAYLOAD_KEYS`) names the current key and every key still needed
to read older payloads:

    {"current": "k2", "keys": {"k1": "<base64 of 32 bytes>", "k2": "..."}}

Rotation: add a key, make it current, keep the old one until no history
that needs it is retained. Payloads that are not encrypted (histories from
before encryption) decode unchanged.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from libs.config import ConfigError

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
KEYS_FILE = "TENANTRY_PAYLOAD_KEYS_FILE"
KEYS = "TENANTRY_PAYLOAD_KEYS"
SWITCH = "TENANTRY_PAYLOAD_ENCRYPTION"

_NONCE_BYTES = 12  # 96 bits, the size GCM is defined for; random per payload
_KEY_BYTES = 32  # AES-256


class PayloadDecryptionError(ValueError):
    """A payload cannot be decrypted: its key is not in the ring, or it was changed.

    The message names the key id, never the data or a key.
    """


@dataclass(frozen=True)
class KeyRing:
    current: str
    keys: Mapping[str, bytes] = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ConfigError(f"payload key ring: the current key {self.current!r} is not among its keys")

    @classmethod
    def parse(cls, text: str, *, source: str) -> KeyRing:
        """Reads the ring's JSON; `source` (a variable or file name) is what errors name."""
        try:
            document = json.loads(text)
        except ValueError:
            raise ConfigError(f"{source}: the payload key ring is not JSON") from None
        if not isinstance(document, dict):
            raise ConfigError(f"{source}: the payload key ring must be a JSON object")
        current, raw = document.get("current"), document.get("keys")
        if not isinstance(current, str) or not current:
            raise ConfigError(f'{source}: the payload key ring needs "current", a key id')
        if not isinstance(raw, dict) or not raw:
            raise ConfigError(f'{source}: the payload key ring needs "keys", key id -> base64 key')
        keys: dict[str, bytes] = {}
        for key_id, encoded in raw.items():
            try:
                key = base64.b64decode(str(encoded), validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != _KEY_BYTES:
                raise ConfigError(f"{source}: payload key {key_id!r} is not the base64 of {_KEY_BYTES} bytes")
            keys[str(key_id)] = key
        try:
            return cls(current=current, keys=keys)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None

    @classmethod
    def from_env(cls) -> KeyRing | None:
        """The ring the environment names; None only when encryption is switched
        off explicitly (`TENANTRY_PAYLOAD_ENCRYPTION=off`)."""
        switch = os.environ.get(SWITCH, "on")
        if switch not in ("on", "off"):
            raise ConfigError(f"{SWITCH}={switch!r} is not one of on, off")
        if switch == "off":
            return None
        path, inline = os.environ.get(KEYS_FILE), os.environ.get(KEYS)
        if path and inline:
            raise ConfigError(f"set one of {KEYS_FILE} and {KEYS}, not both")
        if inline:
            return cls.parse(inline, source=KEYS)
        if not path:
            raise ConfigError(
                f"{KEYS_FILE} is not set: payloads in Temporal are encrypted with that key ring "
                f"(or {KEYS}; {SWITCH}=off to store them in clear)"
            )
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise ConfigError(f"{KEYS_FILE}: cannot read {path}: {err.strerror}") from None
        return cls.parse(text, source=KEYS_FILE)

    def to_json(self) -> str:
        return json.dumps(
            {"current": self.current, "keys": {k: base64.b64encode(v).decode() for k, v in self.keys.items()}}
        )


def new_key_ring(key_id: str = "k1") -> KeyRing:
    """A ring of one fresh random key."""
    return KeyRing(current=key_id, keys={key_id: secrets.token_bytes(_KEY_BYTES)})


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM per payload: a random 96-bit nonce, the key id bound as associated data.

    The whole payload (its metadata and data) is what is encrypted, so the
    plaintext's encoding and message type are hidden too; the outer metadata
    holds only `encoding: binary/encrypted` and the key id.
    """

    def __init__(self, ring: KeyRing) -> None:
        self._current = ring.current
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") == ENCODING:
            return payload  # already ciphertext (say, a payload passed on as is)
        key_id = self._current
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption: replays and reads as it was
        raw_id = payload.metadata.get(KEY_ID, b"")
        key_id = raw_id.decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(
                f"payload encrypted with key {key_id!r}, which is not in the key ring"
            )
        try:
            plain = cipher.decrypt(payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:], raw_id)
        except InvalidTag:
            raise PayloadDecryptionError(
                f"payload encrypted with key {key_id!r} does not authenticate: changed or corrupt"
            ) from None
        return Payload.FromString(plain)


def data_converter(ring: KeyRing | None) -> DataConverter:
    """The converter of every client, worker and replayer: with a ring, every
    payload encrypted and failures encoded (message and stack trace moved into
    an encrypted attribute); without one, the SDK's default."""
    if ring is None:
        return DataConverter.default
    return dataclasses.replace(
        DataConverter.default,
        payload_codec=EncryptionCodec(ring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def data_converter_from_env() -> DataConverter:
    """`data_converter` with the ring the environment names (see KeyRing.from_env)."""
    return data_converter(KeyRing.from_env())
