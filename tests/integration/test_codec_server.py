"""The codec server (services/codec_server) over real HTTP on a free port.

The authorizer is a fake that knows two tokens (the real one is libs/auth's);
everything else (HTTP, CORS, sessions, the codec) is the server's own.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import DataConverter

from libs import codec
from libs.auth import AccessPolicy, TokenVerifier
from libs.devstack.payload_keys import codec_sign_in_secret
from libs.devstack.processes import ManagedProcess, free_port, python_module, wait_until
from services.codec_server.operators import Forbidden, OperatorTokens, Unauthenticated
from services.codec_server.server import SESSION_COOKIE, CodecServer, Settings
from tests.fakes.http import FakeHttpServer

UI = "http://127.0.0.1:8233"
OPERATOR, VIEWER = "operator-token-1", "viewer-token-2"
SECRET = "ada.lovelace@acme.example.com"
REPO = Path(__file__).parents[2]


class FakeAuthorizer:
    """Bearer tokens: one operator, one caller who is not."""

    def __init__(self) -> None:
        self.asked: list[tuple[str | None, str | None]] = []

    def authorize(self, authorization: str | None, cookie: str | None) -> str:
        self.asked.append((authorization, cookie))
        if authorization == f"Bearer {OPERATOR}":
            return "alice@ops"
        if authorization == f"Bearer {VIEWER}":
            raise Forbidden
        raise Unauthenticated


@pytest.fixture(scope="module")
def ring() -> codec.KeyRing:
    return codec.new_key_ring("k1")


@pytest.fixture
def server(ring: codec.KeyRing) -> Iterator[CodecServer]:
    running = CodecServer(
        ("127.0.0.1", free_port()),
        codec=codec.EncryptionCodec(ring),
        authorizer=FakeAuthorizer(),
        settings=Settings(namespace="default", cors_origin=UI),
    ).start()
    yield running
    running.stop()


def request(
    server: CodecServer, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    host, port = server.httpd.server_address[:2]
    conn = http.client.HTTPConnection(str(host), int(port), timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def plain_payloads() -> list[Payload]:
    return DataConverter.default.payload_converter.to_payloads([{"email": SECRET}, "Ada"])


def sealed_body(ring: codec.KeyRing) -> bytes:
    sealed = [codec.EncryptionCodec(ring).encrypt(p) for p in plain_payloads()]
    return json_format.MessageToJson(Payloads(payloads=sealed)).encode()


def as_operator(**extra: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {OPERATOR}", **extra}


def leaks(body: bytes) -> bool:
    """Whether an answer holds the plaintext, raw or in base64."""
    return SECRET.encode() in body or any(base64.b64encode(p.data) in body for p in plain_payloads())


def test_an_operator_gets_the_plaintext_payloads(server: CodecServer, ring: codec.KeyRing) -> None:
    status, _, body = request(
        server, "POST", "/decode", sealed_body(ring), as_operator(**{"X-Namespace": "default"})
    )
    assert status == 200
    decoded = json_format.Parse(body, Payloads())
    assert list(decoded.payloads) == plain_payloads()


def test_encode_then_decode_round_trips_and_encode_gives_ciphertext(server: CodecServer) -> None:
    body = json_format.MessageToJson(Payloads(payloads=plain_payloads())).encode()
    status, _, encoded = request(server, "POST", "/encode", body, as_operator())
    assert status == 200 and not leaks(encoded)
    sealed = json_format.Parse(encoded, Payloads())
    assert all(p.metadata["encoding"] == codec.ENCODING for p in sealed.payloads)
    # The endpoints may sit under any prefix (the protocol looks at the last part only).
    status, _, decoded = request(server, "POST", "/default/decode", encoded, as_operator())
    assert status == 200 and list(json_format.Parse(decoded, Payloads()).payloads) == plain_payloads()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer not-a-token"}, 401),
        ({"Authorization": f"Bearer {VIEWER}"}, 403),
        ({"Cookie": f"{SESSION_COOKIE}=made-up"}, 401),
    ],
    ids=["no credentials", "a bad token", "not an operator", "an unknown session"],
)
def test_without_an_operator_nothing_is_decoded(
    server: CodecServer, ring: codec.KeyRing, headers: dict[str, str], status: int
) -> None:
    got, _, body = request(
        server, "POST", "/decode", sealed_body(ring), {"Content-Type": "application/json", **headers}
    )
    assert got == status
    assert not leaks(body) and b"payloads" not in body
    # The connection stays usable: the refused body was read whole.
    assert request(server, "POST", "/decode", sealed_body(ring), as_operator())[0] == 200


def test_cors_answers_the_ui_origin_only(server: CodecServer, ring: codec.KeyRing) -> None:
    _, headers, _ = request(server, "POST", "/decode", sealed_body(ring), as_operator(Origin=UI))
    assert headers["access-control-allow-origin"] == UI
    assert headers["access-control-allow-credentials"] == "true"
    for other in ("http://127.0.0.1:9999", "https://evil.example", "null"):
        _, headers, _ = request(server, "POST", "/decode", sealed_body(ring), as_operator(Origin=other))
        assert not any(h.startswith("access-control-") for h in headers), other


def test_a_preflight_is_answered_for_the_ui_origin_only(server: CodecServer) -> None:
    asked = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
    }
    status, headers, body = request(server, "OPTIONS", "/decode", headers={"Origin": UI, **asked})
    assert status == 204 and body == b""
    assert headers["access-control-allow-origin"] == UI
    assert headers["access-control-allow-credentials"] == "true"
    assert "POST" in headers["access-control-allow-methods"]
    allowed = headers["access-control-allow-headers"].lower()
    assert {"content-type", "x-namespace", "authorization"} <= {h.strip() for h in allowed.split(",")}
    status, headers, _ = request(
        server, "OPTIONS", "/decode", headers={"Origin": "https://evil.example", **asked}
    )
    assert status == 403
    assert not any(h.startswith("access-control-") for h in headers)


def test_another_namespace_is_refused(server: CodecServer, ring: codec.KeyRing) -> None:
    status, _, body = request(
        server, "POST", "/decode", sealed_body(ring), as_operator(**{"X-Namespace": "other"})
    )
    assert status == 403 and not leaks(body)


def test_a_signed_in_operator_decodes_with_the_session_cookie_alone(
    server: CodecServer, ring: codec.KeyRing
) -> None:
    """The dev UI has no login: the browser sends the session cookie
    ("include cross-origin credentials"), never a token."""
    form = f"token={OPERATOR}".encode()
    status, headers, _ = request(
        server, "POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 303 and headers["location"] == UI
    cookie = headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes and "SameSite=Strict" in cookie
    session = cookie.split(";")[0]
    assert OPERATOR not in session  # the cookie is a session id, not the token
    status, headers, body = request(
        server,
        "POST",
        "/decode",
        sealed_body(ring),
        {"Content-Type": "application/json", "Cookie": session, "Origin": UI},
    )
    assert status == 200 and list(json_format.Parse(body, Payloads()).payloads) == plain_payloads()
    assert headers["access-control-allow-credentials"] == "true"
    # Signed out, the cookie is worth nothing.
    assert request(server, "POST", "/logout", b"", {"Cookie": session})[0] == 200
    assert request(server, "POST", "/decode", sealed_body(ring), {"Cookie": session})[0] == 401


def test_a_bad_sign_in_sets_no_cookie(server: CodecServer) -> None:
    for token in ("wrong", VIEWER):
        status, headers, _ = request(
            server,
            "POST",
            "/login",
            f"token={token}".encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status in (401, 403) and "set-cookie" not in headers
    status, headers, body = request(server, "GET", "/login")
    assert status == 200 and b"<form" in body


def test_a_payload_of_an_unknown_key_is_an_error_naming_the_key_only(server: CodecServer) -> None:
    body = sealed_body(codec.new_key_ring("k-retired"))
    status, _, answer = request(server, "POST", "/decode", body, as_operator())
    assert status == 400 and b"k-retired" in answer and not leaks(answer)


def test_a_body_that_is_not_payloads_is_a_bad_request(server: CodecServer) -> None:
    assert request(server, "POST", "/decode", b"{nope", as_operator())[0] == 400


def test_the_process_decodes_for_the_dev_stacks_operator_only(ring: codec.KeyRing, tmp_path: Path) -> None:
    """`python -m services.codec_server` as the dev stack runs it: the
    sign-in secret beside the key ring is the operator's credential."""
    keys = tmp_path / "keys.json"
    keys.write_text(ring.to_json())
    sign_in = codec_sign_in_secret(tmp_path / "secrets")
    secret = sign_in.read_text().strip()
    port = free_port()
    env = {
        **os.environ,
        codec.SWITCH: "on",
        codec.KEYS_FILE: str(keys),
        "TENANTRY_CODEC_ADDRESS": f"127.0.0.1:{port}",
        "TENANTRY_CODEC_CORS_ORIGIN": UI,
        "TENANTRY_CODEC_SIGN_IN_FILE": str(sign_in),
    }
    env.pop("TENANTRY_OIDC_ISSUER", None)
    process = ManagedProcess(
        "codec_server", python_module("services.codec_server"), log_dir=tmp_path, env=env
    )
    process.start()
    try:

        def call(
            method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request(method, path, body=body, headers=headers or {})
                reply = conn.getresponse()
                return reply.status, reply.read()
            finally:
                conn.close()

        def healthy() -> bool:
            try:
                return call("GET", "/healthz")[0] == 200
            except OSError:
                return False

        wait_until(healthy, timeout=30, what="codec server")
        status, body = call("POST", "/decode", sealed_body(ring), as_operator())  # a token nobody issued
        assert status == 401 and not leaks(body)
        status, body = call("POST", "/decode", sealed_body(ring), {"Authorization": f"Bearer {secret}"})
        assert status == 200 and list(json_format.Parse(body, Payloads()).payloads) == plain_payloads()
    finally:
        assert process.stop() == 0  # SIGTERM: a clean stop
    log = process.log_path.read_text()
    assert SECRET not in log and secret not in log


def test_the_process_refuses_to_start_without_a_way_to_authenticate(
    ring: codec.KeyRing, tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(ring.to_json())
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TENANTRY_OIDC_ISSUER", "TENANTRY_CODEC_SIGN_IN_FILE")
    }
    env |= {
        codec.SWITCH: "on",
        codec.KEYS_FILE: str(keys),
        "TENANTRY_CODEC_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.codec_server"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "TENANTRY_OIDC_ISSUER" in done.stderr and "TENANTRY_CODEC_SIGN_IN_FILE" in done.stderr


class Jwks(FakeHttpServer):
    """An issuer's JWKS endpoint: one EC key."""

    def __init__(self) -> None:
        super().__init__()
        self.key = ec.generate_private_key(ec.SECP256R1())
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**public, "kid": "k1", "alg": "ES256", "use": "sig"}]}

    def _answer(self, handler: Any, path: str, query: str, raw: str) -> tuple[int, Any]:
        return 200, self.jwks

    def _record(self, handler: Any, path: str, query: str, raw: str, status: int) -> None:
        pass

    def token(self, subject: str, *, lifetime: float = 300) -> str:
        now = time.time()
        claims = {"iss": ISSUER, "aud": "tenantry-codec", "sub": subject, "iat": now, "exp": now + lifetime}
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "k1"})


ISSUER = "https://issuer.tenantry.test"


@pytest.fixture
def token_server(ring: codec.KeyRing, tmp_path: Path) -> Iterator[tuple[CodecServer, Jwks]]:
    jwks = Jwks().start()
    policy = tmp_path / "access.toml"
    policy.write_text(
        f"""[[grants]]
issuer = "{ISSUER}"
subject = "ops"
roles = ["operator"]

[[grants]]
issuer = "{ISSUER}"
subject = "looker"
roles = ["viewer"]

[[grants]]
issuer = "{ISSUER}"
subject = "one-tenant-ops"
roles = ["operator"]
tenants = ["acme"]
"""
    )
    verifier = TokenVerifier(issuer=ISSUER, audience="tenantry-codec", jwks_url=f"{jwks.url}/jwks")
    running = CodecServer(
        ("127.0.0.1", free_port()),
        codec=codec.EncryptionCodec(ring),
        authorizer=OperatorTokens(verifier, AccessPolicy.load(policy)),
        settings=Settings(namespace="default", cors_origin=UI),
    ).start()
    yield running, jwks
    running.stop()
    jwks.stop()


def test_oidc_tokens_are_verified_by_libs_auth_and_only_operators_of_every_tenant_decode(
    token_server: tuple[CodecServer, Jwks], ring: codec.KeyRing
) -> None:
    server, jwks = token_server
    body = sealed_body(ring)

    def decode(token: str) -> tuple[int, bytes]:
        status, _, answer = request(server, "POST", "/decode", body, {"Authorization": f"Bearer {token}"})
        return status, answer

    status, answer = decode(jwks.token("ops"))
    assert status == 200 and list(json_format.Parse(answer, Payloads()).payloads) == plain_payloads()
    for token, expected in (
        (jwks.token("looker"), 403),  # a viewer
        (jwks.token("one-tenant-ops"), 403),  # an operator of some tenants only
        (jwks.token("stranger"), 403),  # no grant at all
        (jwks.token("ops", lifetime=-120), 401),  # expired
        (jwks.token("ops")[:-4] + "AAAA", 401),  # a forged signature
    ):
        status, answer = decode(token)
        assert status == expected and not leaks(answer)
    # A token signs the browser in once; the session cookie does the rest.
    status, headers, _ = request(
        server, "POST", "/login", b"", {"Authorization": f"Bearer {jwks.token('ops')}"}
    )
    assert status == 200 and SESSION_COOKIE in headers["set-cookie"]
    session = headers["set-cookie"].split(";")[0]
    assert request(server, "POST", "/decode", body, {"Cookie": session})[0] == 200


def test_the_process_refuses_to_start_without_a_key_ring() -> None:
    env = {k: v for k, v in os.environ.items() if k not in (codec.KEYS, codec.KEYS_FILE)}
    env[codec.SWITCH] = "on"
    done = subprocess.run(
        [sys.executable, "-m", "services.codec_server"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "TENANTRY_PAYLOAD_KEYS_FILE is not set" in done.stderr
    env[codec.SWITCH] = "off"
    done = subprocess.run(
        [sys.executable, "-m", "services.codec_server"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "TENANTRY_PAYLOAD_ENCRYPTION is off" in done.stderr


def test_a_session_ends_after_its_lifetime(ring: codec.KeyRing) -> None:
    running = CodecServer(
        ("127.0.0.1", free_port()),
        codec=codec.EncryptionCodec(ring),
        authorizer=FakeAuthorizer(),
        settings=Settings(namespace="default", cors_origin=UI),
    )
    now = [0.0]
    running.sessions._clock = lambda: now[0]  # noqa: SLF001 - the session store's clock, not a sleep
    session = running.sessions.open("alice@ops")
    assert running.sessions.principal(session) == "alice@ops"
    now[0] += running.settings.session_seconds + 1
    assert running.sessions.principal(session) is None
    running.httpd.server_close()


def test_principals_and_tokens_stay_out_of_what_the_server_answers(
    server: CodecServer, ring: codec.KeyRing
) -> None:
    status, _, body = request(
        server, "POST", "/decode", sealed_body(ring), {"Authorization": "Bearer not-a-token"}
    )
    assert status == 401 and b"not-a-token" not in body
    assert json.loads(body) == {"message": "an operator must sign in"}


def test_the_cookie_is_secure_behind_an_https_ui(ring: codec.KeyRing) -> None:
    running = CodecServer(
        ("127.0.0.1", free_port()),
        codec=codec.EncryptionCodec(ring),
        authorizer=FakeAuthorizer(),
        settings=Settings(namespace="default", cors_origin="https://temporal.example"),
    ).start()
    try:
        status, headers, _ = request(running, "POST", "/login", b"", as_operator())
        assert status == 200 and "; Secure" in headers["set-cookie"]
    finally:
        running.stop()
    status, headers, _ = request_login_plain(ring)
    assert status == 200 and "Secure" not in headers["set-cookie"]  # the dev UI is http


def request_login_plain(ring: codec.KeyRing) -> tuple[int, dict[str, str], bytes]:
    running = CodecServer(
        ("127.0.0.1", free_port()),
        codec=codec.EncryptionCodec(ring),
        authorizer=FakeAuthorizer(),
        settings=Settings(namespace="default", cors_origin=UI),
    ).start()
    try:
        return request(running, "POST", "/login", b"", as_operator())
    finally:
        running.stop()
