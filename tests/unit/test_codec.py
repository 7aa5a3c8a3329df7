"""The payload codec (libs/codec.py): AES-256-GCM per payload, a key ring with rotation."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError

from libs import codec
from libs.codec import ENCODING, KEY_ID, EncryptionCodec, KeyRing, PayloadDecryptionError
from libs.config import ConfigError
from libs.devstack.payload_keys import payload_key_ring
from tenantry.tenant.v1 import tenant_pb2

SECRET = "ada@acme.example.com"


def ring(current: str = "k1", *ids: str) -> KeyRing:
    keys = {key_id: bytes([n + 1]) * 32 for n, key_id in enumerate(sorted({current, *ids}))}
    return KeyRing(current=current, keys=keys)


def plain(text: str = SECRET) -> Payload:
    return DataConverter.default.payload_converter.to_payloads([{"email": text}])[0]


async def test_a_payload_round_trips_and_its_ciphertext_holds_nothing_of_it() -> None:
    payload = plain()
    [sealed] = await EncryptionCodec(ring()).encode([payload])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID] == b"k1"
    assert set(sealed.metadata) == {"encoding", KEY_ID}  # the plaintext's encoding is hidden too
    assert SECRET.encode() not in sealed.SerializeToString()
    assert b"json/plain" not in sealed.SerializeToString()
    [back] = await EncryptionCodec(ring()).decode([sealed])
    assert back == payload


async def test_each_payload_gets_its_own_nonce() -> None:
    one, two = await EncryptionCodec(ring()).encode([plain(), plain()])
    assert one.data != two.data
    assert one.data[:12] != two.data[:12]


async def test_rotation_old_payloads_decode_and_new_ones_use_the_current_key() -> None:
    [old] = await EncryptionCodec(ring("k1")).encode([plain()])
    rotated = EncryptionCodec(ring("k2", "k1"))
    [new] = await rotated.encode([plain()])
    assert (old.metadata[KEY_ID], new.metadata[KEY_ID]) == (b"k1", b"k2")
    assert await rotated.decode([old, new]) == [plain(), plain()]
    # The key id is bound as associated data: relabelling a payload fails.
    relabelled = Payload(metadata={"encoding": ENCODING, KEY_ID: b"k2"}, data=old.data)
    with pytest.raises(PayloadDecryptionError, match="'k2'"):
        await rotated.decode([relabelled])


async def test_an_unknown_key_id_is_an_error_that_names_it_and_nothing_else() -> None:
    [sealed] = await EncryptionCodec(ring("k9")).encode([plain()])
    with pytest.raises(PayloadDecryptionError, match="'k9'.*not in the key ring") as err:
        await EncryptionCodec(ring("k1")).decode([sealed])
    assert SECRET not in str(err.value)


async def test_a_tampered_payload_is_an_error_without_data_or_key_material() -> None:
    keys = ring()
    [sealed] = await EncryptionCodec(keys).encode([plain()])
    flipped = bytearray(sealed.data)
    flipped[20] ^= 1
    tampered = Payload(metadata=sealed.metadata, data=bytes(flipped))
    with pytest.raises(PayloadDecryptionError, match="'k1'.*does not authenticate") as err:
        await EncryptionCodec(keys).decode([tampered])
    text = str(err.value) + repr(err.value)
    assert SECRET not in text
    assert base64.b64encode(keys.keys["k1"]).decode() not in text and "\\x01\\x01" not in text


async def test_an_unencrypted_payload_decodes_unchanged() -> None:
    payload = plain()
    assert await EncryptionCodec(ring()).decode([payload]) == [payload]


async def test_an_encrypted_payload_is_not_encrypted_twice() -> None:
    keys = EncryptionCodec(ring())
    [once] = await keys.encode([plain()])
    assert await keys.encode([once]) == [once]


async def test_memos_go_through_the_codec() -> None:
    """The provisioning memo (the tenant spec) is stored encrypted: the SDK
    encodes memo values with the converter's codec (converter._encode_memo)."""
    converter = codec.data_converter(ring())
    spec = tenant_pb2.Tenant(display_name="Acme Corp", admin=tenant_pb2.AdminContact(email=SECRET))
    memo = await converter._encode_memo({"tenant_spec": spec, "tenant_spec_sha256": "abc"})
    for value in memo.fields.values():
        assert value.metadata["encoding"] == ENCODING
    assert SECRET.encode() not in memo.SerializeToString() and b"Acme" not in memo.SerializeToString()
    decoded = await converter._decode_memo_field(memo, "tenant_spec", None, tenant_pb2.Tenant)
    assert decoded == spec


async def test_failure_messages_and_stack_traces_are_encrypted() -> None:
    converter = codec.data_converter(ring())
    failure = Failure()
    try:
        raise ApplicationError(f"no account for {SECRET}", "detail " + SECRET, type="NotFound")
    except ApplicationError as err:
        await converter.encode_failure(err, failure)
    assert failure.message == "Encoded failure" and not failure.stack_trace
    assert SECRET.encode() not in failure.SerializeToString()
    assert failure.application_failure_info.type == "NotFound"  # callers decide on the type, still in clear
    back = await converter.decode_failure(failure)
    assert isinstance(back, ApplicationError) and SECRET in back.message


def test_without_a_ring_the_converter_is_the_sdks_default() -> None:
    assert codec.data_converter(None) is DataConverter.default


def test_the_ring_is_read_from_a_file_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys = ring("k2", "k1")
    for name in (codec.KEYS, codec.KEYS_FILE, codec.SWITCH):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(codec.KEYS, keys.to_json())
    assert KeyRing.from_env() == keys
    monkeypatch.delenv(codec.KEYS)
    path = tmp_path / "keys.json"
    path.write_text(keys.to_json())
    monkeypatch.setenv(codec.KEYS_FILE, str(path))
    assert KeyRing.from_env() == keys


def test_a_process_refuses_to_start_without_a_ring_unless_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (codec.KEYS, codec.KEYS_FILE, codec.SWITCH):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="TENANTRY_PAYLOAD_KEYS_FILE is not set"):
        codec.data_converter_from_env()
    monkeypatch.setenv(codec.SWITCH, "no")
    with pytest.raises(ConfigError, match="TENANTRY_PAYLOAD_ENCRYPTION='no'"):
        codec.data_converter_from_env()
    monkeypatch.setenv(codec.SWITCH, "off")
    assert codec.data_converter_from_env() is DataConverter.default


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "not JSON"),
        ('{"keys": {"k1": "AAAA"}}', '"current"'),
        ('{"current": "k1", "keys": {}}', '"keys"'),
        ('{"current": "k1", "keys": {"k1": "c2hvcnQ="}}', "'k1' is not the base64 of 32 bytes"),
        ('{"current": "k1", "keys": {"k1": "%%%"}}', "'k1' is not the base64"),
    ],
)
def test_a_bad_ring_is_a_config_error_naming_the_variable(document: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        KeyRing.parse(document, source=codec.KEYS)
    assert str(err.value).startswith(codec.KEYS)


def test_the_current_key_must_be_in_the_ring() -> None:
    good = json.loads(ring().to_json())
    good["current"] = "k7"
    with pytest.raises(ConfigError, match="'k7' is not among its keys"):
        KeyRing.parse(json.dumps(good), source="f")


def test_the_ring_never_shows_its_keys() -> None:
    keys = ring()
    assert base64.b64encode(keys.keys["k1"]).decode() not in repr(keys)
    assert "\\x01" not in repr(keys)


def test_the_dev_stack_makes_its_ring_once_private(tmp_path: Path) -> None:
    path = payload_key_ring(tmp_path / "secrets")
    assert path.stat().st_mode & 0o777 == 0o600
    first = path.read_text()
    assert payload_key_ring(tmp_path / "secrets").read_text() == first  # kept across restarts
    parsed = KeyRing.parse(first, source=str(path))
    assert len(parsed.keys[parsed.current]) == 32


def test_replacing_the_converter_keeps_the_sdks_payload_conversion() -> None:
    converter = codec.data_converter(ring())
    assert converter.payload_converter_class is DataConverter.default.payload_converter_class
    assert dataclasses.replace(converter).payload_codec is not None
