"""Page tokens: opaque, signed, bound to the request they were made for."""

from __future__ import annotations

import base64
import logging
import stat
from pathlib import Path

import pytest

from libs.config import ConfigError
from libs.devstack.stack import Stack
from services.tenant_api.page_tokens import KEY_FILE_VARIABLE, PageTokens

KEY = b"k" * 32


def test_a_token_reads_back_for_its_own_scope_only() -> None:
    tokens = PageTokens(KEY)
    token = tokens.encode("1234", scope="ListTenantEvents/tenant-a")
    assert tokens.decode(token, scope="ListTenantEvents/tenant-a") == "1234"
    assert tokens.decode(token, scope="ListTenantEvents/tenant-b") is None
    assert tokens.decode(token, scope="ListTenants") is None
    assert "1234" not in token and "tenant" not in token


def test_another_key_or_any_changed_character_is_refused() -> None:
    tokens = PageTokens(KEY)
    token = tokens.encode("acme", scope="ListTenants")
    assert PageTokens(b"x" * 32).decode(token, scope="ListTenants") is None
    assert PageTokens(KEY).decode(token, scope="ListTenants") == "acme"  # replicas share the key
    for i in range(len(token)):
        changed = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        assert tokens.decode(changed, scope="ListTenants") is None, i


@pytest.mark.parametrize(
    "token",
    [
        base64.urlsafe_b64encode(b"v1:\xc2\xb2").decode(),  # the old format, `v1:²`
        base64.urlsafe_b64encode(b"v1:12").decode(),
        "",
        "=",
        "not a token",
        "A" * 10_000,
        "\u00b2\u00b2",
        "AAAA",
        "AQ",
    ],
)
def test_garbage_is_refused(token: str) -> None:
    assert PageTokens(KEY).decode(token, scope="ListTenants") is None


def test_the_key_comes_from_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "page-token.key"
    key_file.write_bytes(b"s" * 40 + b"\n")
    monkeypatch.setenv(KEY_FILE_VARIABLE, str(key_file))
    token = PageTokens.from_env().encode("acme", scope="ListTenants")
    assert PageTokens(b"s" * 40).decode(token, scope="ListTenants") == "acme"
    key_file.write_bytes(b"short")
    with pytest.raises(ConfigError, match="under 32 bytes"):
        PageTokens.from_env()
    monkeypatch.setenv(KEY_FILE_VARIABLE, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot be read"):
        PageTokens.from_env()


def test_without_a_key_file_a_process_key_is_made_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(KEY_FILE_VARIABLE, raising=False)
    with caplog.at_level(logging.WARNING):
        first, second = PageTokens.from_env(), PageTokens.from_env()
    assert KEY_FILE_VARIABLE in caplog.text
    token = first.encode("acme", scope="ListTenants")
    assert second.decode(token, scope="ListTenants") is None


def test_the_dev_stack_makes_one_private_key_and_keeps_it(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    path = stack._page_token_key()
    assert path == tmp_path.resolve() / "secrets" / "page-token.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_bytes()
    assert len(key) >= 32
    assert stack._page_token_key().read_bytes() == key
    PageTokens(key)  # usable as it is
