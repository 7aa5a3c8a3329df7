"""The codec server: decodes (and encodes) Temporal payloads for an operator.

The Temporal UI and CLI send `POST /decode` and `POST /encode` with a JSON
`temporal.api.common.v1.Payloads` (protobuf JSON: metadata values and data
in base64) and the `X-Namespace` header; the answer is the same shape. Every
request must come from an operator, authenticated by the `Authorizer` the
process is given:

- a caller with a token (the CLI's `--codec-auth`, a UI with login and
  "pass access token", which the UI allows over https only) sends
  `Authorization: Bearer <token>`: an OIDC token verified by libs/auth whose
  principal the access policy makes an operator of every tenant;
- the dev server's UI has no login, so no token: the operator signs in here
  once (`/login`, with an operator token or the dev stack's sign-in secret)
  and gets a session cookie (HttpOnly, SameSite=Strict, a random id, never
  the token), and the UI's codec setting "include cross-origin credentials"
  makes the browser send it. CORS answers (with `Allow-Credentials`) only the
  configured UI origin, so no other page can read a decoded payload.

Nothing here logs or echoes a payload, a token or a session id.
"""

from __future__ import annotations

import asyncio
import hmac
import http.server
import json
import logging
import os
import re
import secrets
import signal
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from libs import codec, config
from libs.codec import EncryptionCodec, KeyRing, PayloadDecryptionError
from services.codec_server.operators import (
    Authorizer,
    AuthUnavailable,
    Forbidden,
    Unauthenticated,
    authorizer_from_env,
)

log = logging.getLogger(__name__)

SESSION_COOKIE = "tenantry_codec_session"
MAX_BODY = (
    16 * 1024 * 1024
)  # a page of history events decoded at once; Temporal's own limit is 2 MiB a payload


@dataclass(frozen=True)
class Settings:
    namespace: str
    # The Temporal UI's origin (scheme://host:port); empty: no CORS at all.
    cors_origin: str = ""
    session_seconds: int = 8 * 3600


class _Sessions:
    """Signed-in operators by session id, in memory: a restart signs everyone out."""

    def __init__(self, lifetime: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._lifetime = lifetime
        self._clock = clock
        self._lock = threading.Lock()
        self._by_id: dict[str, tuple[str, float]] = {}

    def open(self, principal: str) -> str:
        session = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            self._by_id = {k: v for k, v in self._by_id.items() if v[1] > now}
            self._by_id[session] = (principal, now + self._lifetime)
        return session

    def principal(self, session: str) -> str | None:
        with self._lock:
            found = self._by_id.get(session)
            if found is None or found[1] <= self._clock():
                self._by_id.pop(session, None)
                return None
            return found[0]

    def close(self, session: str) -> None:
        with self._lock:
            self._by_id.pop(session, None)


_LOGIN_FORM = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>Tenantry codec server</title></head>
<body>
<h1>Tenantry codec server</h1>
<p>Sign in with an operator access token to see decoded payloads in the Temporal UI.
In the UI's codec server settings, turn on <em>Include cross-origin credentials</em>.</p>
<form method="post" action="login">
<label>Operator token <input type="password" name="token" autocomplete="off" required></label>
<button type="submit">Sign in</button>
</form>
</body></html>
"""


class CodecServer:
    """The HTTP server; `start()` serves in a thread, `stop()` ends it."""

    def __init__(
        self, address: tuple[str, int], *, codec: EncryptionCodec, authorizer: Authorizer, settings: Settings
    ) -> None:
        self.codec = codec
        self.authorizer = authorizer
        self.settings = settings
        self.sessions = _Sessions(settings.session_seconds)
        handler = type("Handler", (_Handler,), {"app": self})
        self.httpd = http.server.ThreadingHTTPServer(address, handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> CodecServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="codec-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()


class _HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Handler(http.server.BaseHTTPRequestHandler):
    app: CodecServer
    server_version = "tenantry-codec"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    # -- routing -------------------------------------------------------------

    def do_OPTIONS(self) -> None:  # noqa: N802
        # A CORS preflight: answered for the UI's origin only, and with no data.
        if self._allowed_origin() is None:
            self._send(HTTPStatus.FORBIDDEN, b"", "text/plain")
            return
        self._send(
            HTTPStatus.NO_CONTENT,
            b"",
            None,
            {
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": "Content-Type, Authorization, X-Namespace",
                "Access-Control-Max-Age": "600",
            },
        )

    def do_GET(self) -> None:  # noqa: N802
        path = urllib.parse.urlsplit(self.path).path
        if path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain")
        elif path.endswith("/login"):
            self._send(HTTPStatus.OK, _LOGIN_FORM, "text/html; charset=utf-8")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        # Only the last part of the path counts (the protocol lets the
        # endpoints sit at any depth, a namespace's prefix say).
        last = urllib.parse.urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
        try:
            # Read whole before anything is refused: a body left unread would
            # be taken for the next request on this connection.
            body = self._body()
            if last in ("encode", "decode"):
                self._convert(last, body)
            elif last == "login":
                self._login(body)
            elif last == "logout":
                self._logout()
            else:
                raise _HttpError(HTTPStatus.NOT_FOUND, "no such endpoint")
        except _HttpError as err:
            self._send_json(err.status, {"message": err.message})

    # -- endpoints -----------------------------------------------------------

    def _convert(self, direction: str, body: bytes) -> None:
        principal = self._principal()
        namespace = self.headers.get("X-Namespace")
        if namespace is not None and namespace != self.app.settings.namespace:
            raise _HttpError(HTTPStatus.FORBIDDEN, "this codec server serves another namespace")
        try:
            payloads = json_format.Parse(body, Payloads(), ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError):
            raise _HttpError(HTTPStatus.BAD_REQUEST, "the body is not a JSON Payloads message") from None
        convert: Callable[[Payload], Payload] = (
            self.app.codec.encrypt if direction == "encode" else self.app.codec.decrypt
        )
        try:
            answer = Payloads(payloads=[convert(p) for p in payloads.payloads])
        except PayloadDecryptionError as err:
            # Names the key id only (see libs/codec.py).
            raise _HttpError(HTTPStatus.BAD_REQUEST, str(err)) from None
        log.info("%s: %d payloads for %s", direction, len(payloads.payloads), principal)
        self._send_json(HTTPStatus.OK, json_format.MessageToDict(answer))

    def _login(self, body: bytes) -> None:
        authorization = self.headers.get("Authorization")
        form = urllib.parse.parse_qs(body.decode("utf-8", errors="replace"))
        token = form.get("token", [""])[0].strip()
        if token:
            authorization = f"Bearer {token}"
        principal = self._authorize(authorization, None)
        session = self.app.sessions.open(principal)
        log.info("operator %s signed in", principal)
        cookie = (
            f"{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; "
            f"Max-Age={self.app.settings.session_seconds}{self._secure()}"
        )
        headers = {"Set-Cookie": cookie}
        if self.app.settings.cors_origin and token:
            # A browser sign-in (the form): back to the UI.
            self._send(
                HTTPStatus.SEE_OTHER, b"", None, {**headers, "Location": self.app.settings.cors_origin}
            )
        else:
            self._send_json(HTTPStatus.OK, {"principal": principal}, headers)

    def _logout(self) -> None:
        session = self._session_id()
        if session:
            self.app.sessions.close(session)
        expired = f"{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{self._secure()}"
        self._send_json(HTTPStatus.OK, {}, {"Set-Cookie": expired})

    # -- authentication ------------------------------------------------------

    def _principal(self) -> str:
        session = self._session_id()
        if session:
            principal = self.app.sessions.principal(session)
            if principal is not None:
                return principal
        return self._authorize(self.headers.get("Authorization"), self.headers.get("Cookie"))

    def _authorize(self, authorization: str | None, cookie: str | None) -> str:
        try:
            return self.app.authorizer.authorize(authorization, cookie)
        except Unauthenticated:
            raise _HttpError(HTTPStatus.UNAUTHORIZED, "an operator must sign in") from None
        except (Forbidden, PermissionError):
            raise _HttpError(HTTPStatus.FORBIDDEN, "operators only") from None
        except AuthUnavailable:
            raise _HttpError(
                HTTPStatus.SERVICE_UNAVAILABLE, "the token issuer does not answer; try again"
            ) from None

    def _secure(self) -> str:
        # An https UI can fetch an https codec endpoint only (mixed content is
        # blocked), so the cookie travels over TLS only then; the dev UI is http.
        return "; Secure" if self.app.settings.cors_origin.startswith("https://") else ""

    def _session_id(self) -> str | None:
        raw = self.headers.get("Cookie")
        if not raw:
            return None
        try:
            morsel = SimpleCookie(raw).get(SESSION_COOKIE)
        except CookieError:
            return None
        return morsel.value if morsel is not None and morsel.value else None

    # -- plumbing ------------------------------------------------------------

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self.close_connection = True
            raise _HttpError(HTTPStatus.BAD_REQUEST, "bad Content-Length") from None
        if length < 0 or length > MAX_BODY:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            raise _HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too large")
        return self.rfile.read(length) if length > 0 else b""

    def _allowed_origin(self) -> str | None:
        origin = self.headers.get("Origin")
        configured = self.app.settings.cors_origin
        if origin and configured and hmac.compare_digest(origin, configured):
            return origin
        return None

    def _send_json(self, status: HTTPStatus, body: object, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send(
        self, status: HTTPStatus, body: bytes, content_type: str | None, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        origin = self._allowed_origin()
        if origin is not None:
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Vary", "Origin")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        # The request line only (no query strings are used; bodies never logged).
        log.debug("%s %s", self.address_string(), format % args)


def settings_from_env() -> Settings:
    origin = os.environ.get("TENANTRY_CODEC_CORS_ORIGIN", "").rstrip("/")
    if origin and not re.fullmatch(r"https?://[^/\s]+", origin):
        raise config.ConfigError(
            f"TENANTRY_CODEC_CORS_ORIGIN={origin!r} is not an origin (scheme://host:port)"
        )
    return Settings(
        namespace=config.required("TEMPORAL_NAMESPACE", "default"),
        cors_origin=origin,
        session_seconds=config.integer("TENANTRY_CODEC_SESSION_SECONDS", 8 * 3600),
    )


async def run() -> None:
    """Serves until SIGTERM or SIGINT."""
    host, _, port = config.address("TENANTRY_CODEC_ADDRESS", "127.0.0.1:8234").rpartition(":")
    ring = KeyRing.from_env()
    if ring is None:
        raise config.ConfigError(f"the codec server needs the payload key ring; {codec.SWITCH} is off")
    try:
        server = CodecServer(
            (host.strip("[]"), int(port)),
            codec=EncryptionCodec(ring),
            authorizer=authorizer_from_env(),
            settings=settings_from_env(),
        )
    except OSError as err:
        raise config.ConfigError(
            f"TENANTRY_CODEC_ADDRESS: cannot listen on {host}:{port}: {err.strerror}"
        ) from None
    server.start()
    log.info("codec server listening on %s", server.url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await asyncio.to_thread(server.stop)
    log.info("codec server stopped")
