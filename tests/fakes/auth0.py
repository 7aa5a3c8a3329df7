"""A fake Auth0 (Authentication `/oauth/token` and Management API v2) for tests.

No Auth0 server can run here, so this in-process HTTP server mirrors Auth0's
documented request and response shapes (status codes, JSON bodies, error
bodies `{statusCode, error, message, errorCode}`) for exactly the endpoints the
`auth0` identity adapter uses, with state in memory:

- POST /oauth/token (client_credentials; the configured client id/secret and
  audience) -> a Bearer token that every /api/v2 call must carry; and the
  password-realm grant (`http://auth0.com/oauth/grant-type/password-realm`:
  an application's client id/secret, username, password, realm = connection)
  -> the user's tokens, refused for a blocked user (401 `unauthorized`,
  "user is blocked"), a wrong password (403 `invalid_grant`) or an
  application without that grant (403 `unauthorized_client`);
- organizations: POST, GET /name/{name}, GET/PATCH/DELETE /{id},
  GET/POST /{id}/enabled_connections, GET/POST /{id}/members,
  GET/POST /{id}/members/{user_id}/roles;
- clients: GET (page/per_page/include_totals, fields), POST, PATCH, DELETE;
- users: POST (409 on a duplicate email in a connection), GET/PATCH/DELETE
  /users/{id} (PATCH: `blocked`, profile fields, and `app_metadata` /
  `user_metadata` merged at the top level, null removing a key), GET /users-by-email;
- roles: GET (name_filter), POST (409 on a duplicate name);
- connections: GET (name filter); tickets: POST /tickets/password-change.

Unknown ids answer 404, duplicate names 409, malformed bodies 400. Switches
for fault tests: `fail_with` (answer that status, e.g. 503 or 429), `stop()`
(refuse connections; `start()` binds the same port again) and
`revoke_tokens()` (every issued token answers 401 from then on). Every request
is recorded (method, path, query, body, status) so tests can scan them for secrets.

It runs on the stdlib's ThreadingHTTPServer in a thread (the plumbing is
`tests.fakes.http.FakeHttpServer`), so the adapter talks to it over real HTTP.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

from tests.fakes.http import FakeHttpServer, query_params

_URI = re.compile(r"https?://[^\s/$.?#][^\s]*")
_ORG_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,49}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: str
    body: str
    status: int


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


PASSWORD_REALM_GRANT = "http://auth0.com/oauth/grant-type/password-realm"

_PHRASES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _select(obj: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
    """Auth0's `fields` / `include_fields` projection."""
    names = [f for f in query.get("fields", "").split(",") if f]
    if not names:
        return dict(obj)
    include = query.get("include_fields", "true") != "false"
    return {k: v for k, v in obj.items() if (k in names) == include}


def _page(items: list[dict[str, Any]], query: dict[str, str], key: str) -> Any:
    """Offset pagination: an array, or `{start, limit, length|total, <key>}` with include_totals."""
    page, per_page = int(query.get("page", "0")), int(query.get("per_page", "50"))
    chosen = (
        items[page * per_page : (page + 1) * per_page] if "page" in query or "per_page" in query else items
    )
    if query.get("include_totals") == "true":
        return {
            "start": page * per_page,
            "limit": per_page,
            "length": len(chosen),
            "total": len(items),
            key: chosen,
        }
    return chosen


@dataclass
class State:
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    orgs: dict[str, dict[str, Any]] = field(default_factory=dict)
    enabled_connections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    member_roles: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    tickets: list[dict[str, Any]] = field(default_factory=list)


class FakeAuth0(FakeHttpServer):
    """The fake server; `url` is what TENANTRY_AUTH0_BASE_URL points to."""

    thread_name = "fake-auth0"

    def __init__(
        self,
        *,
        domain: str = "tenantry.test.auth0.com",
        client_id: str = "tenantry-m2m",
        client_secret: str | None = None,
        connection: str = "Username-Password-Authentication",
        token_lifetime: int = 86400,
    ) -> None:
        super().__init__()
        self.domain = domain
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(32)
        self.token_lifetime = token_lifetime
        self.state = State()
        self.requests: list[Recorded] = []
        self.tokens_issued = 0
        self.fail_with: int | None = None
        self._valid_tokens: set[str] = set()
        self._open_sockets: set[socket.socket] = set()
        connection_id = "con_" + secrets.token_hex(8)
        self.state.connections[connection_id] = {"id": connection_id, "name": connection, "strategy": "auth0"}
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., tuple[int, Any]]]] = [
            ("POST", re.compile(r"/oauth/token"), self._token),
            ("GET", re.compile(r"/api/v2/connections"), self._list_connections),
            ("POST", re.compile(r"/api/v2/organizations"), self._create_org),
            ("GET", re.compile(r"/api/v2/organizations/name/([^/]+)"), self._org_by_name),
            ("GET", re.compile(r"/api/v2/organizations/([^/]+)"), self._get_org),
            ("PATCH", re.compile(r"/api/v2/organizations/([^/]+)"), self._patch_org),
            ("DELETE", re.compile(r"/api/v2/organizations/([^/]+)"), self._delete_org),
            ("GET", re.compile(r"/api/v2/organizations/([^/]+)/enabled_connections"), self._list_enabled),
            ("POST", re.compile(r"/api/v2/organizations/([^/]+)/enabled_connections"), self._enable),
            ("GET", re.compile(r"/api/v2/organizations/([^/]+)/members"), self._list_members),
            ("POST", re.compile(r"/api/v2/organizations/([^/]+)/members"), self._add_members),
            ("GET", re.compile(r"/api/v2/organizations/([^/]+)/members/([^/]+)/roles"), self._list_roles_of),
            ("POST", re.compile(r"/api/v2/organizations/([^/]+)/members/([^/]+)/roles"), self._add_roles),
            ("GET", re.compile(r"/api/v2/clients"), self._list_clients),
            ("POST", re.compile(r"/api/v2/clients"), self._create_client),
            ("GET", re.compile(r"/api/v2/clients/([^/]+)"), self._get_client),
            ("PATCH", re.compile(r"/api/v2/clients/([^/]+)"), self._patch_client),
            ("DELETE", re.compile(r"/api/v2/clients/([^/]+)"), self._delete_client),
            ("POST", re.compile(r"/api/v2/users"), self._create_user),
            ("GET", re.compile(r"/api/v2/users-by-email"), self._users_by_email),
            ("GET", re.compile(r"/api/v2/users/([^/]+)"), self._get_user),
            ("PATCH", re.compile(r"/api/v2/users/([^/]+)"), self._patch_user),
            ("DELETE", re.compile(r"/api/v2/users/([^/]+)"), self._delete_user),
            ("GET", re.compile(r"/api/v2/roles"), self._list_roles),
            ("POST", re.compile(r"/api/v2/roles"), self._create_role),
            ("POST", re.compile(r"/api/v2/tickets/password-change"), self._ticket),
        ]

    # -- lifecycle and switches ---------------------------------------------

    @property
    def connection_id(self) -> str:
        return next(iter(self.state.connections))

    def stop(self) -> None:
        """Stops listening and drops kept-alive connections: connections are refused until `start()`."""
        super().stop()
        with self.lock:
            for sock in self._open_sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._open_sockets.clear()

    def _connection_opened(self, sock: socket.socket) -> None:
        with self.lock:
            self._open_sockets.add(sock)

    def _connection_closed(self, sock: socket.socket) -> None:
        with self.lock:
            self._open_sockets.discard(sock)

    def revoke_tokens(self) -> None:
        with self.lock:
            self._valid_tokens.clear()

    # -- dispatch -----------------------------------------------------------

    def _record(self, handler: BaseHTTPRequestHandler, path: str, query: str, raw: str, status: int) -> None:
        self.requests.append(Recorded(handler.command, path, query, raw, status))

    def _answer(self, handler: BaseHTTPRequestHandler, path: str, query: str, raw: str) -> tuple[int, Any]:
        try:
            if self.fail_with is not None:
                raise HttpError(self.fail_with, _PHRASES.get(self.fail_with, "error"))
            params = query_params(query)
            body: Any = None
            if raw:
                if handler.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                    body = query_params(raw)
                else:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        raise HttpError(400, "Invalid request payload JSON format", "invalid_body") from None
            methods = [r for r in self._routes if r[1].fullmatch(path)]
            if not methods:
                raise HttpError(404, "Not Found")
            route = next((r for r in methods if r[0] == handler.command), None)
            if route is None:
                raise HttpError(404, "Not Found")
            if path != "/oauth/token":
                self._authorize(handler.headers.get("Authorization", ""))
            match = route[1].fullmatch(path)
            assert match is not None
            return route[2](*(unquote(g) for g in match.groups()), params=params, body=body or {})
        except HttpError as err:
            if path == "/oauth/token" and err.status in (401, 403):
                return err.status, {"error": err.code or "access_denied", "error_description": err.message}
            answer = {
                "statusCode": err.status,
                "error": _PHRASES.get(err.status, "Error"),
                "message": err.message,
            }
            if err.code:
                answer["errorCode"] = err.code
            return err.status, answer

    def _authorize(self, header: str) -> None:
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or token not in self._valid_tokens:
            raise HttpError(401, "Invalid token")

    # -- token --------------------------------------------------------------

    def _token(self, *, params: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        if body.get("grant_type") == PASSWORD_REALM_GRANT:
            return self._sign_in(body)
        if body.get("grant_type") != "client_credentials":
            raise HttpError(403, "Unsupported grant type")
        if body.get("client_id") != self.client_id or body.get("client_secret") != self.client_secret:
            raise HttpError(401, "Unauthorized")
        if body.get("audience") != f"https://{self.domain}/api/v2/":
            raise HttpError(403, "Service not found: " + str(body.get("audience")))
        token = "eyJ" + secrets.token_urlsafe(48)
        self._valid_tokens.add(token)
        self.tokens_issued += 1
        return 200, {
            "access_token": token,
            "scope": "read:clients create:clients update:clients delete:clients read:users create:users",
            "expires_in": self.token_lifetime,
            "token_type": "Bearer",
        }

    def _sign_in(self, body: dict[str, Any]) -> tuple[int, Any]:
        """A user signing in to an application with a password (Auth0's password-realm grant)."""
        client = self.state.clients.get(str(body.get("client_id")))
        if client is None or body.get("client_secret") != client["client_secret"]:
            raise HttpError(401, "Unauthorized", "access_denied")
        if PASSWORD_REALM_GRANT not in client["grant_types"]:
            raise HttpError(
                403, f"Grant type '{PASSWORD_REALM_GRANT}' not allowed for the client.", "unauthorized_client"
            )
        username = str(body.get("username", "")).lower()
        found = [
            u
            for u in self.state.users.values()
            if u["email"] == username and u["identities"][0]["connection"] == body.get("realm")
        ]
        if not found or found[0]["password"] != body.get("password"):
            raise HttpError(403, "Wrong email or password.", "invalid_grant")
        user = found[0]
        if user.get("blocked"):
            raise HttpError(401, "user is blocked", "unauthorized")
        user["logins_count"] = user.get("logins_count", 0) + 1
        user["last_login"] = _now()
        return 200, {
            "access_token": "eyJ" + secrets.token_urlsafe(48),
            "id_token": "eyJ" + secrets.token_urlsafe(48),
            "scope": str(body.get("scope", "openid")),
            "expires_in": 86400,
            "token_type": "Bearer",
        }

    # -- connections --------------------------------------------------------

    def _list_connections(self, *, params: dict[str, str], body: Any) -> tuple[int, Any]:
        found = [c for c in self.state.connections.values() if params.get("name") in (None, c["name"])]
        return 200, [_select(c, params) for c in found]

    # -- organizations ------------------------------------------------------

    def _org(self, org_id: str) -> dict[str, Any]:
        org = self.state.orgs.get(org_id)
        if org is None:
            raise HttpError(404, "No organization found by that id or name", "inexistent_organization")
        return org

    def _create_org(self, *, params: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not _ORG_NAME.fullmatch(name):
            raise HttpError(400, "Payload validation error: 'Invalid name'", "invalid_body")
        if any(o["name"] == name for o in self.state.orgs.values()):
            raise HttpError(409, "An organization with this name already exists.", "organization_conflict")
        metadata = body.get("metadata") or {}
        if not all(isinstance(v, str) and len(v) <= 255 for v in metadata.values()):
            raise HttpError(
                400, "Payload validation error: 'metadata values must be strings'", "invalid_body"
            )
        org_id = "org_" + secrets.token_hex(8)
        org = {
            "id": org_id,
            "name": name,
            "display_name": body.get("display_name", name),
            "metadata": metadata,
        }
        self.state.orgs[org_id] = org
        self.state.enabled_connections[org_id] = []
        self.state.members[org_id] = []
        for enabled in body.get("enabled_connections") or []:
            self._enable(org_id, params={}, body=enabled)
        return 201, org

    def _org_by_name(self, name: str, *, params: dict[str, str], body: Any) -> tuple[int, Any]:
        for org in self.state.orgs.values():
            if org["name"] == name:
                return 200, org
        raise HttpError(404, "No organization found by that id or name", "inexistent_organization")

    def _get_org(self, org_id: str, *, params: dict[str, str], body: Any) -> tuple[int, Any]:
        return 200, self._org(org_id)

    def _patch_org(self, org_id: str, *, params: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        org = self._org(org_id)
        org.update({k: v for k, v in body.items() if k in ("display_name", "metadata", "branding")})
        return 200, org

    def _delete_org(self, org_id: str, *, params: dict[str, str], body: Any) -> tuple[int, Any]:
        self._org(org_id)
        del self.state.orgs[org_id]
        self.state.enabled_connections.pop(org_id, None)
        self.state.members.pop(org_id, None)
        for key in [k for k in self.state.member_roles if k[0] == org_id]:
            del self.state.member_roles[key]
        return 204, None

    def _list_enabled(self, org_id: str, *, params: dict[str, str], body: Any) -> tuple[int, Any]:
        self._org(org_id)
        return 200, _page(self.state.enabled_connections[org_id], params, "enabled_connections")

    def _enable(self, org_id: str, *, params: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        self._org(org_id)
        connection = self.state.connections.get(body.get("connection_id", ""))
        if connection is None:
            raise HttpError(404, "The connection does not exist", "inexistent_connection")
        enabled = self.state.enabled_connections[org_id]
        if any(e["connection_id"] == connection["id"] for e in enabled):
            raise HttpError(409, "The connection is already enabled for this organization")
        entry = {
            "connection_id": connection["id"],
            "assign_membership_on_login": bool(body.get("assign_membership_on_login", False)),
            "connection": {"name": connection["name"], "strategy": connection["strategy"]},
        }
        enabled.append(entry)
        return 201, entry

    def _list_members(self, org_id: str, *, params: dict[str, str], body: Any) -> tuple[int, Any]:
        self._org(org_id)
        members = []
        for user_id in self.state.members[org_id]:
            user = self.state.users[user_id]
            members.append({"user_id": user_id, "email": user["email"], "name": user["name"], "picture": ""})
        return 200, _page(members, params, "members")

    def _add_members(self, org_id: str, *, params: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        self._org(org_id)
        ids = body.get("members")
        if not isinstance(ids, list) or not ids:
            raise HttpError(400, "Payload validation error: 'members' is required", "invalid_body")
        for user_id in ids:
            self._user(user_id)
        for user_id in ids:
            if user_id not in self.state.members[org_id]:
                self.state.members[org_id].append(user_id)
        return 204, None

    def _list_roles_of(
        self, org_id: str, user_id: str, *, params: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        self._org(org_id)
        if user_id not in self.state.members[org_id]:
            raise HttpError(404, "The user is not a member of the organization")
        held = self.state.member_roles.get((org_id, user_id), [])
        roles = [{k: self.state.roles[r][k] for k in ("id", "name", "description")} for r in held]
        return 200, _page(roles, params, "roles")

    def _add_roles(
        self, org_id: str, user_id: str, *, params: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, Any]:
        self._org(org_id)
        if user_id not in self.state.members[org_id]:
            raise HttpError(404, "The user is not a member of the organization")
        roles = body.get("roles")
        if not isinstance(roles, list) or not roles:
            raise HttpError(400, "Payload validation error: 'roles' is required", "invalid_body")
        for role_id in roles:
            if role_id not in self.state.roles:
                raise HttpError(404, "The role does not exist", "inexistent_role")
        held = self.state.member_roles.setdefault((org_id, user_id), [])
        held.extend(r for r in roles if r not in held)
        return 204, None

    # -- clients ------------------------------------------------------------

    def _client(self, client_id: str) -> dict[str, Any]:
        client = self.state.clients.get(client_id)
        if client is None:
            raise HttpError(404, "The client does not exist", "inexistent_client")
        return client

    def _check_client(self, body: dict[str, Any]) -> None:
        for key in ("callbacks", "web_origins", "allowed_origins"):
            for uri in body.get(key) or []:
                if not isinstance(uri, str) or not _URI.fullmatch(uri):
                    raise HttpError(
                        400,
                        f"Payload validation error: 'Object didn't pass validation for format"
                        f" absolute-uri-or-empty: {uri}' on property {key}",
                        "invalid_body",
                    )
        metadata = body.get("client_metadata") or {}
        if not all(isinstance(v, str) for v in metadata.values()):
            raise HttpError(400, "Payload validation error: 'client_metadata values must be strings'")

    def _list_clients(self, *, params: dict[str, str], body: Any) -> tuple[int, Any]:
        found = [c for c in self.state.clients.values() if params.get("app_type") in (None, c["app_type"])]
        return 200, _page([_select(c, params) for c in found], params, "clients")

    def _create_client(self, *, params: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        # Auth0 does not keep application names unique; neither does this fake.
        if not isinstance(body.get("name"), str) or not body["name"]:
            raise HttpError(
                400, "Payload validation error: 'Missing required property: name'", "invalid_body"
            )
        self._check_client(body)
        client_id = secrets.token_urlsafe(24)
        client = {
            "client_id": client_id,
            "client_secret": secrets.token_urlsafe(48),
            "name": body["name"],
            "app_type": body.get("app_type", "regular_web"),
            "callbacks": body.get("callbacks", []),
            "web_origins": body.get("web_origins", []),
            "allowed_origins": body.get("allowed_origins", []),
            "grant_types": body.get("grant_types", ["authorization_code", "implicit", "refresh_token"]),
            "client_metadata": body.get("client_metadata", {}),
            "oidc_conformant": body.get("oidc_conformant", False),
            "token_endpoint_auth_method": "client_secret_post",
            "is_first_party": True,
        }
        self.state.clients[client_id] = client
        return 201, _select(client, params)

    def _get_client(self, client_id: str, *, params: dict[str, str], body: Any) -> tuple[int, Any]:
        return 200, _select(self._client(client_id), params)

    def _patch_client(
        self, client_id: str, *, params: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, Any]:
        client = self._client(client_id)
        self._check_client(body)
        client.update({k: v for k, v in body.items() if k not in ("client_id", "client_secret")})
        return 200, _select(client, params)

    def _delete_client(self, client_id: str, *, params: dict[str, str], body: Any) -> tuple[int, Any]:
        self._client(client_id)
        del self.state.clients[client_id]
        return 204, None

    # -- users --------------------------------------------------------------

    def _user(self, user_id: str) -> dict[str, Any]:
        user = self.state.users.get(user_id)
        if user is None:
            raise HttpError(404, "The user does not exist.", "inexistent_user")
        return user

    def _public(self, user: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        return _select({k: v for k, v in user.items() if k != "password"}, params)

    def _create_user(self, *, params: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        connection = body.get("connection")
        if not any(c["name"] == connection for c in self.state.connections.values()):
            raise HttpError(400, "The connection does not exist.", "inexistent_connection")
        email = body.get("email")
        if not isinstance(email, str) or not _EMAIL.fullmatch(email):
            raise HttpError(400, "Payload validation error: 'Object didn't pass validation for format email'")
        password = body.get("password")
        if not isinstance(password, str) or len(password) < 8:
            raise HttpError(400, "PasswordStrengthError: Password is too weak", "invalid_body")
        email = email.lower()
        for user in self.state.users.values():
            if user["email"] == email and user["identities"][0]["connection"] == connection:
                raise HttpError(409, "The user already exists.", "auth0_idp_error")
        local_id = secrets.token_hex(12)
        user_id = "auth0|" + local_id
        names = [body.get("given_name"), body.get("family_name")]
        now = _now()
        user = {
            "user_id": user_id,
            "email": email,
            "email_verified": bool(body.get("email_verified", False)),
            "given_name": body.get("given_name"),
            "family_name": body.get("family_name"),
            "name": " ".join(n for n in names if n) or email,
            "identities": [
                {"connection": connection, "user_id": local_id, "provider": "auth0", "isSocial": False}
            ],
            "app_metadata": body.get("app_metadata") or {},
            "user_metadata": body.get("user_metadata") or {},
            "created_at": now,
            "updated_at": now,
            "password": password,  # kept so tests can tell the password was set; never answered
        }
        user = {k: v for k, v in user.items() if v is not None}
        self.state.users[user_id] = user
        return 201, self._public(user, params)

    def _users_by_email(self, *, params: dict[str, str], body: Any) -> tuple[int, Any]:
        email = params.get("email")
        if not email:
            raise HttpError(
                400, "Query validation error: 'Missing required property: email'", "invalid_query_string"
            )
        found = [u for u in self.state.users.values() if u["email"] == email.lower()]
        return 200, [self._public(u, params) for u in found]

    def _get_user(self, user_id: str, *, params: dict[str, str], body: Any) -> tuple[int, Any]:
        return 200, self._public(self._user(user_id), params)

    def _patch_user(self, user_id: str, *, params: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        user = self._user(user_id)
        for key, value in body.items():
            if key in ("app_metadata", "user_metadata"):
                # Auth0 merges metadata at the top level; null removes a key.
                merged = {**user.get(key, {}), **value}
                user[key] = {k: v for k, v in merged.items() if v is not None}
            elif key in ("given_name", "family_name", "name", "email_verified", "blocked", "password"):
                user[key] = value
            else:
                raise HttpError(400, f"Payload validation error: 'Additional properties not allowed: {key}'")
        user["updated_at"] = _now()
        return 200, self._public(user, params)

    def _delete_user(self, user_id: str, *, params: dict[str, str], body: Any) -> tuple[int, Any]:
        # Auth0 answers 204 for an unknown user id too.
        if self.state.users.pop(user_id, None) is not None:
            for members in self.state.members.values():
                if user_id in members:
                    members.remove(user_id)
            for key in [k for k in self.state.member_roles if k[1] == user_id]:
                del self.state.member_roles[key]
        return 204, None

    # -- roles --------------------------------------------------------------

    def _list_roles(self, *, params: dict[str, str], body: Any) -> tuple[int, Any]:
        wanted = params.get("name_filter", "").lower()
        found = [r for r in self.state.roles.values() if wanted in r["name"].lower()]
        return 200, _page(found, params, "roles")

    def _create_role(self, *, params: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise HttpError(
                400, "Payload validation error: 'Missing required property: name'", "invalid_body"
            )
        if any(r["name"] == name for r in self.state.roles.values()):
            raise HttpError(409, "Role already exists", "role_conflict")
        role_id = "rol_" + secrets.token_hex(8)
        role = {"id": role_id, "name": name, "description": body.get("description", "")}
        self.state.roles[role_id] = role
        return 200, role

    # -- tickets ------------------------------------------------------------

    def _ticket(self, *, params: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        user_id = body.get("user_id")
        if not isinstance(user_id, str):
            raise HttpError(400, "Payload validation error: 'Missing required property: user_id'")
        self._user(user_id)
        if "organization_id" in body:
            self._org(body["organization_id"])
        url = f"https://{self.domain}/lo/reset?ticket={secrets.token_urlsafe(24)}#"
        self.state.tickets.append({**body, "ticket": url})
        return 201, {"ticket": url}
