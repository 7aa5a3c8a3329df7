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

It runs on the stdlib's ThreadingHTTPServer in a thread (the plumbing is
`tests.fakes.http.FakeHttpServer`), so the SDK talks to it over real HTTP.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.http import FakeHttpServer, query_params

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


class FakeNovu(FakeHttpServer):
    """The fake server; `url` is what TENANTRY_NOVU_BASE_URL points to."""

    thread_name = "fake-novu"

    def __init__(self, *, api_key: str | None = None, workflows: tuple[str, ...] = DEFAULT_WORKFLOWS) -> None:
        super().__init__()
        self.api_key = api_key or secrets.token_hex(16)
        self.workflows = set(workflows)
        self.organization_id = secrets.token_hex(12)
        self.environment_id = secrets.token_hex(12)
        self.state = State()
        self.requests: list[Recorded] = []
        self.fail_with: int | None = None
        self.fail_triggers_after_accepting: int | None = None

    # -- switches and queries -----------------------------------------------

    def triggers_for(self, subscriber_id: str) -> list[Trigger]:
        with self.lock:
            return [t for t in self.state.triggers.values() if t.to == subscriber_id]

    # -- dispatch -----------------------------------------------------------

    def _record(self, handler: BaseHTTPRequestHandler, path: str, query: str, raw: str, status: int) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        self.requests.append(Recorded(handler.command, path, query, headers, raw, status))

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
            params = query_params(query)
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
