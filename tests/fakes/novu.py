"""A fake Novu API for tests.

No Novu server runs here, so this in-process HTTP server mirrors Novu's
documented request and response shapes for exactly the two endpoints the
`novu` notification adapter calls through the `novu-py` SDK, with state in
memory:

- POST /v2/subscribers (`failIfExists` query, default false): creates or
  updates the subscriber; 201 `{"data": SubscriberResponseDto}`; 409 when it
  exists and `failIfExists=true`;
- POST /v1/events/trigger: 201 `{"data": {acknowledged, status,
  transactionId}}`. A trigger whose `transactionId` was seen before is
  acknowledged and ignored, as Novu does (it drops the duplicate when it
  processes the event), so `triggers` holds one entry per transactionId. A
  workflow id the fake does not know answers 422 `workflow_not_found`.

Every request must carry `Authorization: ApiKey <key>` (401 otherwise). Error
bodies have Novu's shape `{statusCode, timestamp, path, message}` (plus
`errors` for 400/422). Switches for fault tests: `fail_with` (answer that
status to every request, e.g. 503, 429, 400, 422), `fail_triggers_after_accepting`
(record the trigger, then answer that status: the answer lost on the way back)
and `stop()`. Every request is recorded (method, path, query, headers, body,
status) so tests can scan them for secrets.

It runs on the stdlib's ThreadingHTTPServer in a thread, so the SDK talks to
it over real HTTP.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

DEFAULT_WORKFLOWS = ("tenant-welcome", "tenant-provisioning-failed", "tenant-deprovisioned")


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lower-cased
    body: str
    status: int


@dataclass
class Trigger:
    workflow: str
    to: Any
    payload: dict[str, Any]
    transaction_id: str


class HttpError(Exception):
    def __init__(self, status: int, message: str, errors: Any = None) -> None:
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class State:
    subscribers: dict[str, dict[str, Any]] = field(default_factory=dict)
    triggers: dict[str, Trigger] = field(default_factory=dict)
    # Triggers answered but ignored because their transactionId was seen before.
    duplicates: int = 0


class FakeNovu:
    """The fake server; `url` is what TENANTRY_NOVU_BASE_URL points to."""

    def __init__(self, *, api_key: str | None = None, workflows: tuple[str, ...] = DEFAULT_WORKFLOWS) -> None:
        self.api_key = api_key or secrets.token_hex(16)
        self.workflows = set(workflows)
        self.organization_id = secrets.token_hex(12)
        self.environment_id = secrets.token_hex(12)
        self.lock = threading.RLock()
        self.state = State()
        self.requests: list[Recorded] = []
        self.fail_with: int | None = None
        self.fail_triggers_after_accepting: int | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- lifecycle and switches ---------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def triggers_for(self, subscriber_id: str) -> list[Trigger]:
        with self.lock:
            return [t for t in self.state.triggers.values() if t.to == subscriber_id]

    def start(self) -> FakeNovu:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                fake._handle(self)

            do_GET = do_PATCH = do_PUT = do_DELETE = do_POST  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass  # tests read `requests` instead

        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-novu", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # -- dispatch -----------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        split = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length).decode() if length else ""
        with self.lock:
            status, answer = self._answer(handler, split.path, split.query, raw)
            self.requests.append(
                Recorded(
                    handler.command,
                    split.path,
                    split.query,
                    {k.lower(): v for k, v in handler.headers.items()},
                    raw,
                    status,
                )
            )
        payload = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _answer(self, handler: BaseHTTPRequestHandler, path: str, query: str, raw: str) -> tuple[int, Any]:
        try:
            if handler.headers.get("Authorization", "") != f"ApiKey {self.api_key}":
                raise HttpError(401, "API Key not found")
            if self.fail_with is not None:
                raise HttpError(self.fail_with, "Injected failure", errors={})
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                raise HttpError(400, "Unexpected token in JSON", errors=[]) from None
            if not isinstance(body, dict):
                raise HttpError(400, "Request body must be an object", errors=[])
            params = {k: v[-1] for k, v in parse_qs(query).items()}
            if handler.command == "POST" and path == "/v2/subscribers":
                return self._upsert_subscriber(params, body)
            if handler.command == "POST" and path == "/v1/events/trigger":
                return self._trigger(body)
            raise HttpError(404, f"Cannot {handler.command} {path}")
        except HttpError as err:
            answer: dict[str, Any] = {
                "statusCode": err.status,
                "timestamp": _now(),
                "path": path,
                "message": err.message,
            }
            if err.errors is not None:
                answer["errors"] = err.errors
                if err.status == 400:
                    answer["type"] = "PAYLOAD_VALIDATION_ERROR"
            return err.status, answer

    # -- subscribers --------------------------------------------------------

    def _upsert_subscriber(self, params: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        subscriber_id = body.get("subscriberId")
        if not isinstance(subscriber_id, str) or not subscriber_id:
            raise HttpError(
                422,
                "Validation Error",
                errors={"subscriberId": {"messages": ["subscriberId should not be empty"], "value": None}},
            )
        email = body.get("email")
        if email is not None and (not isinstance(email, str) or not _EMAIL.fullmatch(email)):
            raise HttpError(
                422,
                "Validation Error",
                errors={"email": {"messages": ["email must be an email"], "value": email}},
            )
        now = _now()
        existing = self.state.subscribers.get(subscriber_id)
        if existing is not None and params.get("failIfExists") == "true":
            raise HttpError(409, f"Subscriber {subscriber_id} already exists")
        subscriber = existing or {
            "_id": secrets.token_hex(12),
            "subscriberId": subscriber_id,
            "_organizationId": self.organization_id,
            "_environmentId": self.environment_id,
            "deleted": False,
            "createdAt": now,
        }
        for key in ("email", "firstName", "lastName", "phone", "avatar", "locale", "timezone", "data"):
            if key in body:
                subscriber[key] = body[key]
        subscriber["updatedAt"] = now
        self.state.subscribers[subscriber_id] = subscriber
        return 201, {"data": subscriber}

    # -- events -------------------------------------------------------------

    def _trigger(self, body: dict[str, Any]) -> tuple[int, Any]:
        name, to = body.get("name"), body.get("to")
        if not isinstance(name, str) or not name:
            raise HttpError(
                400, "Payload validation failed", errors=[{"field": "name", "message": "name is required"}]
            )
        if to in (None, "", []):
            raise HttpError(
                400, "Payload validation failed", errors=[{"field": "to", "message": "to is required"}]
            )
        if name not in self.workflows:
            raise HttpError(422, "workflow_not_found", errors={})
        transaction_id = body.get("transactionId") or secrets.token_hex(16)
        if transaction_id in self.state.triggers:
            self.state.duplicates += 1
        else:
            self.state.triggers[transaction_id] = Trigger(
                workflow=name, to=to, payload=body.get("payload") or {}, transaction_id=transaction_id
            )
        if self.fail_triggers_after_accepting is not None:
            raise HttpError(self.fail_triggers_after_accepting, "Injected failure after accepting", errors={})
        return 201, {"data": {"acknowledged": True, "status": "processed", "transactionId": transaction_id}}
