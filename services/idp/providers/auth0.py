"""The `auth0` identity provider: one Auth0 organization per tenant, over the Management API v2.

Mapping (one Auth0 tenant serves every Tenantry tenant):

- realm  = the organization named `<tenant_id>` (display name from the request,
  `metadata.tenant_id`), with the database connection enabled on it. Auth0
  organizations have no domains; the tenant's domains reach Auth0 through the
  application's callbacks and web origins.
- client = the application `<tenant_id>-app` (`regular_web`, authorization
  code + refresh token, callbacks and web origins from the request,
  `client_metadata.tenant_id`). Its client secret stays in Auth0: it is never
  requested (`fields=` excludes it), logged or returned.
- admin  = a user of the database connection (email, given/family name,
  `app_metadata.tenant_id`), a member of the organization with the admin role
  (created on first use).

The admin's first password: Auth0 requires one to create a database user. It
is generated here with `secrets`, sent once in the body of the create request
and dropped; it is never stored, logged, returned or put in an error, so
nobody ever knows it. Right after the user is created, a password-change
ticket (a one-time link to set a password) is created for them; the user is
marked `app_metadata.tenantry_invited` only after that, so a crash in between
makes the next attempt create the ticket again. The ticket URL is itself a
credential: it goes only to the `deliver_ticket` hook when one is given (a
mailer inside the identity worker) and is otherwise dropped, leaving the admin
Auth0's own "forgot password" flow.

Why plain HTTP (httpx) and not the auth0-python SDK: the SDK's management
client is synchronous, so every call would need a thread and its own
connection handling; one `httpx.AsyncClient` gives us timeouts, connection
retries and the token cache under our control, error classification on the
status code (retryable 429/5xx/network vs. permanent 4xx) without unwrapping
SDK exceptions, and lets tests point the adapter at a fake server by base URL
(TENANTRY_AUTH0_BASE_URL). We use few endpoints, so the SDK would buy little.

Access: Auth0 organizations cannot be disabled. Disabling a tenant marks its
organization (`metadata.tenantry_access = "disabled"`) and blocks its members
(`blocked: true`), each marked `app_metadata.tenantry_blocked = <tenant_id>`
in the same write; enabling unblocks exactly the users carrying that mark,
never one blocked by hand (not marked), then marks the organization enabled.
Members of the organization that carry another tenant's metadata are left
alone; members with no tenant (added to the organization by hand or by an
invitation) are the tenant's users and are blocked too.

Idempotency: every create looks up by name or email first; an object whose
tenant metadata is this tenant's is reused (same id) and converged, one of
another tenant is a `Conflict`, and a 409 on create (a concurrent creator)
leads to the same lookup. Deleting what is gone (404) succeeds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from libs import config
from libs.errors import Conflict, NotFound, Rejected, Unavailable
from services.idp.providers import AdminUser, IdentityExport
from services.idp.providers.setup_mail import SetPasswordMail

log = logging.getLogger(__name__)

DEFAULT_CONNECTION = "Username-Password-Authentication"
DEFAULT_ADMIN_ROLE = "tenant-admin"

# Refresh the management token this long before Auth0 says it expires.
_TOKEN_MARGIN_SECONDS = 60.0
# The password-change ticket's lifetime (Auth0's default is five days too).
_TICKET_TTL_SECONDS = 5 * 24 * 3600
_PAGE_SIZE = 100
_PASSWORD_LENGTH = 32
_SPECIALS = "!@#$%^&*-_+="
_GRANT_TYPES = ["authorization_code", "refresh_token"]
# The client fields we ever read: never `client_secret`.
_CLIENT_FIELDS = "client_id,name,client_metadata,callbacks,web_origins,allowed_origins"
_USER_FIELDS = "user_id,email,given_name,family_name,identities,app_metadata,blocked"
# What an export reads of an application and of a user: never `client_secret`,
# and users are read by field list too (never a password, which Auth0 does not return anyway).
_EXPORT_CLIENT_FIELDS = (
    "client_id,name,description,app_type,callbacks,web_origins,allowed_origins,allowed_logout_urls,"
    "initiate_login_uri,grant_types,oidc_conformant,token_endpoint_auth_method,is_first_party,"
    "organization_usage,organization_require_behavior,client_metadata"
)
_EXPORT_USER_FIELDS = (
    "user_id,email,email_verified,username,given_name,family_name,name,blocked,app_metadata,"
    "user_metadata,identities,created_at,updated_at,last_login,logins_count"
)
# The organization's access switch (metadata values are strings) and the
# mark on the users Tenantry blocked, whose value is the tenant id.
ACCESS_METADATA = "tenantry_access"
BLOCKED_MARK = "tenantry_blocked"

TicketDelivery = Callable[[str, str], Awaitable[None]]
"""Receives (email, ticket URL) of a new admin; the URL is a credential."""


class _Exists(Exception):
    """Auth0 answered 409: the object was created meanwhile."""


@dataclass(frozen=True)
class Auth0Settings:
    domain: str
    client_id: str
    client_secret: str
    connection: str = DEFAULT_CONNECTION
    admin_role: str = DEFAULT_ADMIN_ROLE
    base_url: str | None = None

    def __repr__(self) -> str:  # the secret must not reach a log through a repr
        return f"Auth0Settings(domain={self.domain!r}, client_id={self.client_id!r}, ...)"


def org_name_of(tenant_id: str) -> str:
    return tenant_id


def app_name_of(tenant_id: str) -> str:
    return f"{tenant_id}-app"


class Auth0IdentityProvider:
    """Organizations, applications and users of one Auth0 tenant, per Tenantry tenant."""

    sends_set_password_link = True  # a password-change ticket, mailed by setup_mail

    def __init__(
        self,
        settings: Auth0Settings,
        *,
        timeout: float = 10.0,
        deliver_ticket: TicketDelivery | None = None,
    ) -> None:
        self._settings = settings
        self._audience = f"https://{settings.domain}/api/v2/"
        self._http = httpx.AsyncClient(
            base_url=(settings.base_url or f"https://{settings.domain}").rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            # Retries only failed connection attempts: nothing was sent, so any method is safe.
            transport=httpx.AsyncHTTPTransport(retries=2),
            headers={"User-Agent": "tenantry-idp"},
        )
        self._deliver_ticket = deliver_ticket
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self._connection_id: str | None = None
        self._role_id: str | None = None
        self._closed = False
        # Auth0 keeps no application name unique: one create at a time per
        # tenant in this worker (a retried attempt racing its own zombie).
        self._app_locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)

    @classmethod
    def from_env(cls) -> Auth0IdentityProvider:
        """Reads TENANTRY_AUTH0_*; a missing or malformed setting raises ConfigError naming it."""
        domain = config.required("TENANTRY_AUTH0_DOMAIN").strip()
        if not re.fullmatch(r"[A-Za-z0-9.-]+", domain) or "." not in domain:
            raise config.ConfigError(
                f"TENANTRY_AUTH0_DOMAIN={domain!r} is not a host name like tenantry.eu.auth0.com"
            )
        # Optional: tests and egress proxies point the adapter elsewhere than https://<domain>.
        base_url = os.environ.get("TENANTRY_AUTH0_BASE_URL", "").strip() or None
        if base_url is not None and not base_url.startswith(("https://", "http://")):
            raise config.ConfigError(f"TENANTRY_AUTH0_BASE_URL={base_url!r} is not an http(s) URL")
        return cls(
            Auth0Settings(
                domain=domain,
                client_id=config.required("TENANTRY_AUTH0_CLIENT_ID"),
                client_secret=config.required("TENANTRY_AUTH0_CLIENT_SECRET"),
                connection=config.required("TENANTRY_AUTH0_CONNECTION", DEFAULT_CONNECTION),
                admin_role=config.required("TENANTRY_AUTH0_ADMIN_ROLE", DEFAULT_ADMIN_ROLE),
                base_url=base_url,
            ),
            # Auth0 hands back the one-time link; the worker emails it itself.
            deliver_ticket=SetPasswordMail.from_env(),
        )

    async def open(self) -> None:
        """Checks the credentials and resolves (or creates) the connection and
        the admin role; a wrong setting stops the worker with a ConfigError."""
        try:
            await self._connection()
            await self._admin_role()
        except (Rejected, NotFound) as err:
            # The message names the setting (messages never hold the secret).
            raise config.ConfigError(f"Auth0 refused the TENANTRY_AUTH0_* settings: {err}") from None
        except Unavailable as err:
            raise config.ConfigError(
                f"cannot reach Auth0 at TENANTRY_AUTH0_DOMAIN={self._settings.domain}: {err}"
            ) from None
        log.info("auth0 %s ready (connection %s)", self._settings.domain, self._settings.connection)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._http.aclose()

    # -- realms: organizations ----------------------------------------------

    async def create_realm(self, tenant_id: str, display_name: str, domains: Sequence[str]) -> str:
        name = org_name_of(tenant_id)
        connection_id = await self._connection()
        org = await self._org(tenant_id)
        if org is None:
            body = {
                "name": name,
                "display_name": display_name,
                "metadata": {"tenant_id": tenant_id},
                "enabled_connections": [
                    {"connection_id": connection_id, "assign_membership_on_login": False}
                ],
            }
            try:
                created = await self._json("POST", "/api/v2/organizations", body=body)
                log.info("tenant %s: organization %s created", tenant_id, created["id"])
                return str(created["id"])
            except _Exists:
                org = await self._org(tenant_id)
                if org is None:
                    raise Unavailable(
                        "Auth0 reported the organization as existing, but it is not found"
                    ) from None
        org_id = str(org["id"])
        if org.get("display_name") != display_name:
            await self._json("PATCH", f"/api/v2/organizations/{org_id}", body={"display_name": display_name})
        enabled = await self._json("GET", f"/api/v2/organizations/{org_id}/enabled_connections")
        if not any(c.get("connection_id") == connection_id for c in enabled):
            with contextlib.suppress(_Exists):  # enabled meanwhile
                await self._json(
                    "POST",
                    f"/api/v2/organizations/{org_id}/enabled_connections",
                    body={"connection_id": connection_id, "assign_membership_on_login": False},
                )
        log.info("tenant %s: organization %s exists", tenant_id, org_id)
        return org_id

    async def delete_realm(self, tenant_id: str) -> None:
        org = await self._org(tenant_id)
        if org is None:
            log.info("tenant %s: organization already gone", tenant_id)
            return
        org_id = str(org["id"])
        # An Auth0 organization owns neither users nor applications: delete the
        # tenant's first, and the organization last, so that a retry after a
        # crash still finds the members through it.
        for user_id in await self._tenant_members(tenant_id, org_id):
            await self._delete(f"/api/v2/users/{quote(user_id, safe='')}")
        await self.delete_client(tenant_id)
        await self._delete(f"/api/v2/organizations/{org_id}")
        log.info("tenant %s: organization %s deleted", tenant_id, org_id)

    # -- the tenant application ---------------------------------------------

    async def create_client(
        self, tenant_id: str, redirect_uris: Sequence[str], web_origins: Sequence[str]
    ) -> str:
        async with self._app_locks[tenant_id]:
            return await self._create_client(tenant_id, redirect_uris, web_origins)

    async def _create_client(
        self, tenant_id: str, redirect_uris: Sequence[str], web_origins: Sequence[str]
    ) -> str:
        await self._require_org(tenant_id)
        callbacks, origins = list(dict.fromkeys(redirect_uris)), list(dict.fromkeys(web_origins))
        found = await self._apps(tenant_id)
        if not found:
            body = {
                "name": app_name_of(tenant_id),
                "app_type": "regular_web",
                "callbacks": callbacks,
                "web_origins": origins,
                "allowed_origins": origins,
                "grant_types": _GRANT_TYPES,
                "oidc_conformant": True,
                "client_metadata": {"tenant_id": tenant_id},
            }
            created = await self._json("POST", "/api/v2/clients", body=body, params={"fields": "client_id"})
            client_id = str(created["client_id"])
            # Auth0 does not keep application names unique: two racing creators
            # (on two replicas) can both succeed. Both then keep the smallest id
            # and drop the rest; one that answered before the other created
            # can still leave a second application (a window of one round trip).
            found = await self._apps(tenant_id)
            winner = min((str(a["client_id"]) for a in found), default=client_id)
            if winner != client_id:
                await self._delete(f"/api/v2/clients/{client_id}")
            log.info("tenant %s: application %s created", tenant_id, winner)
            return winner
        app = min(found, key=lambda a: str(a["client_id"]))
        client_id = str(app["client_id"])
        wanted = {"callbacks": callbacks, "web_origins": origins, "allowed_origins": origins}
        if any(list(app.get(k) or []) != v for k, v in wanted.items()):
            await self._json(
                "PATCH", f"/api/v2/clients/{client_id}", body=wanted, params={"fields": "client_id"}
            )
            log.info("tenant %s: application %s updated", tenant_id, client_id)
        else:
            log.info("tenant %s: application %s exists", tenant_id, client_id)
        return client_id

    async def delete_client(self, tenant_id: str) -> None:
        apps = await self._apps(tenant_id)
        for app in apps:
            await self._delete(f"/api/v2/clients/{app['client_id']}")
        log.info("tenant %s: application %s", tenant_id, "deleted" if apps else "already gone")

    # -- the first admin ----------------------------------------------------

    async def create_admin_user(self, tenant_id: str, admin: AdminUser) -> str:
        org = await self._org(tenant_id)
        if org is None:
            raise NotFound(f"tenant {tenant_id} has no Auth0 organization; create the realm first")
        org_id = str(org["id"])
        role_id = await self._admin_role()
        email = _normal_email(admin.email)
        user = await self._user(tenant_id, email)
        if user is None:
            password = _new_password()
            body = {
                "connection": self._settings.connection,
                "email": email,
                "given_name": admin.given_name or None,
                "family_name": admin.family_name or None,
                "password": password,
                "verify_email": False,
                "app_metadata": {"tenant_id": tenant_id, "tenantry_invited": False},
            }
            try:
                user = await self._json(
                    "POST",
                    "/api/v2/users",
                    body={k: v for k, v in body.items() if v is not None},
                    redact=password,
                )
                log.info("tenant %s: admin user %s created", tenant_id, user["user_id"])
            except _Exists:
                # Created meanwhile (a concurrent attempt): verify and reuse it.
                user = await self._user(tenant_id, email)
                if user is None:
                    raise Unavailable(
                        "Auth0 reported the admin user as existing, but it is not found"
                    ) from None
        user_id = str(user["user_id"])
        path = f"/api/v2/users/{quote(user_id, safe='')}"
        names = {"given_name": admin.given_name, "family_name": admin.family_name}
        changed = {k: v for k, v in names.items() if v and user.get(k) != v}
        if changed:
            await self._json("PATCH", path, body=changed, params={"fields": "user_id"})
        await self._request("POST", f"/api/v2/organizations/{org_id}/members", body={"members": [user_id]})
        await self._request(
            "POST",
            f"/api/v2/organizations/{org_id}/members/{quote(user_id, safe='')}/roles",
            body={"roles": [role_id]},
        )
        if not (user.get("app_metadata") or {}).get("tenantry_invited"):
            await self._invite(tenant_id, org_id, user_id, email)
            await self._json(
                "PATCH", path, body={"app_metadata": {"tenantry_invited": True}}, params={"fields": "user_id"}
            )
        if _access_of(org) == "disabled" and not user.get("blocked"):
            # A user added while the tenant is disabled is blocked as its other members are.
            await self._json(
                "PATCH",
                path,
                body={"blocked": True, "app_metadata": {BLOCKED_MARK: tenant_id}},
                params={"fields": "user_id"},
            )
        log.info("tenant %s: admin user %s ready", tenant_id, user_id)
        return user_id

    async def delete_admin_user(self, tenant_id: str, email: str) -> None:
        user = await self._user(tenant_id, _normal_email(email))
        if user is None:
            log.info("tenant %s: admin user already gone", tenant_id)
            return
        await self._delete(f"/api/v2/users/{quote(str(user['user_id']), safe='')}")
        log.info("tenant %s: admin user %s deleted", tenant_id, user["user_id"])

    # -- access -------------------------------------------------------------

    async def disable_access(self, tenant_id: str) -> None:
        org = await self._org(tenant_id)
        if org is None:
            raise NotFound(f"tenant {tenant_id} has no Auth0 organization")
        org_id = str(org["id"])
        # The organization first: a retry after a crash finds it marked and
        # blocks the members it had not reached.
        await self._mark_access(tenant_id, org, "disabled")
        blocked = 0
        for user in await self._own_members(tenant_id, org_id):
            if user.get("blocked"):
                continue  # blocked already: by us earlier (marked) or by hand (left alone)
            path = f"/api/v2/users/{quote(str(user['user_id']), safe='')}"
            await self._json(
                "PATCH",
                path,
                body={"blocked": True, "app_metadata": {BLOCKED_MARK: tenant_id}},
                params={"fields": "user_id"},
            )
            blocked += 1
        log.info("tenant %s: access disabled, %d members blocked", tenant_id, blocked)

    async def enable_access(self, tenant_id: str) -> None:
        org = await self._org(tenant_id)
        if org is None:
            raise NotFound(f"tenant {tenant_id} has no Auth0 organization")
        unblocked = 0
        for user in await self._own_members(tenant_id, str(org["id"])):
            if (user.get("app_metadata") or {}).get(BLOCKED_MARK) != tenant_id:
                continue
            path = f"/api/v2/users/{quote(str(user['user_id']), safe='')}"
            # Auth0 merges app_metadata; null removes the mark.
            await self._json(
                "PATCH",
                path,
                body={"blocked": False, "app_metadata": {BLOCKED_MARK: None}},
                params={"fields": "user_id"},
            )
            unblocked += 1
        await self._mark_access(tenant_id, org, "enabled")
        log.info("tenant %s: access enabled, %d members unblocked", tenant_id, unblocked)

    async def _mark_access(self, tenant_id: str, org: dict[str, Any], access: str) -> None:
        if _access_of(org) == access:
            return
        # The whole metadata object: right whether Auth0 merges it or replaces it.
        await self._json(
            "PATCH",
            f"/api/v2/organizations/{org['id']}",
            body={"metadata": {**(org.get("metadata") or {}), ACCESS_METADATA: access}},
        )
        log.info("tenant %s: organization %s marked %s", tenant_id, org["id"], access)

    # -- export -------------------------------------------------------------

    async def export(self, tenant_id: str) -> IdentityExport:
        org = await self._org(tenant_id)
        if org is None:
            raise NotFound(f"tenant {tenant_id} has no Auth0 organization")
        org_id = str(org["id"])
        connections = await self._json("GET", f"/api/v2/organizations/{org_id}/enabled_connections")
        client_ids = {str(a["client_id"]) for a in await self._apps(tenant_id)}
        apps = []
        for client_id in sorted(client_ids):
            app = await self._json(
                "GET",
                f"/api/v2/clients/{quote(client_id, safe='')}",
                params={"fields": _EXPORT_CLIENT_FIELDS, "include_fields": "true"},
                missing_ok=True,
            )
            if app is not None:
                apps.append(_client_export(app))
        users = []
        for member in await self._own_members(tenant_id, org_id, fields=_EXPORT_USER_FIELDS):
            roles = await self._member_roles(org_id, str(member["user_id"]))
            users.append(_user_export(member, roles))
        metadata = dict(org.get("metadata") or {})
        return IdentityExport(
            provider="auth0",
            realm={
                "id": org_id,
                "name": org.get("name"),
                "display_name": org.get("display_name") or "",
                # Auth0 organizations have no domains (see the module doc).
                "domains": [],
                "enabled": _access_of(org) != "disabled",
                "attributes": metadata,
            },
            clients=apps,
            users=users,
            source={
                "auth0_organization": org,
                "auth0_enabled_connections": sorted(
                    (c for c in connections if isinstance(c, dict)), key=lambda c: str(c.get("connection_id"))
                ),
            },
        )

    async def _member_roles(self, org_id: str, user_id: str) -> list[dict[str, Any]]:
        roles: list[dict[str, Any]] = []
        page = 0
        while True:
            answer = await self._json(
                "GET",
                f"/api/v2/organizations/{org_id}/members/{quote(user_id, safe='')}/roles",
                params={"page": str(page), "per_page": str(_PAGE_SIZE), "include_totals": "true"},
            )
            batch = answer.get("roles") or []
            roles.extend(batch)
            page += 1
            if not batch or page * _PAGE_SIZE >= int(answer.get("total", 0)):
                break
        return sorted(
            ({"id": r.get("id"), "name": r.get("name")} for r in roles), key=lambda r: str(r["name"])
        )

    async def _invite(self, tenant_id: str, org_id: str, user_id: str, email: str) -> None:
        """A one-time set-password link; the URL never reaches a log, an error or a caller."""
        answer = await self._json(
            "POST",
            "/api/v2/tickets/password-change",
            body={
                "user_id": user_id,
                "organization_id": org_id,
                "ttl_sec": _TICKET_TTL_SECONDS,
                "mark_email_as_verified": True,
            },
        )
        if self._deliver_ticket is not None:
            await self._deliver_ticket(email, str(answer["ticket"]))
            log.info("tenant %s: password-change ticket for %s delivered", tenant_id, user_id)
        else:
            log.info(
                "tenant %s: password-change ticket for %s created; no delivery configured,"
                " the admin sets a password with 'forgot password'",
                tenant_id,
                user_id,
            )

    # -- lookups ------------------------------------------------------------

    async def _org(self, tenant_id: str) -> dict[str, Any] | None:
        """The organization named for the tenant; Conflict if another tenant's metadata is on it."""
        org = await self._json(
            "GET", f"/api/v2/organizations/name/{quote(org_name_of(tenant_id), safe='')}", missing_ok=True
        )
        if org is None:
            return None
        owner = (org.get("metadata") or {}).get("tenant_id")
        if owner != tenant_id:
            raise Conflict(f"Auth0 organization {org_name_of(tenant_id)} belongs to tenant {owner!r}")
        return dict(org)

    async def _require_org(self, tenant_id: str) -> str:
        org = await self._org(tenant_id)
        if org is None:
            raise NotFound(f"tenant {tenant_id} has no Auth0 organization; create the realm first")
        return str(org["id"])

    async def _apps(self, tenant_id: str) -> list[dict[str, Any]]:
        """The applications named for the tenant; Conflict if one carries another tenant's metadata."""
        name = app_name_of(tenant_id)
        apps: list[dict[str, Any]] = []
        page = 0
        while True:
            answer = await self._json(
                "GET",
                "/api/v2/clients",
                params={
                    "fields": _CLIENT_FIELDS,
                    "include_fields": "true",
                    "page": str(page),
                    "per_page": str(_PAGE_SIZE),
                    "include_totals": "true",
                },
            )
            batch = answer.get("clients") or []
            apps.extend(c for c in batch if c.get("name") == name)
            page += 1
            if not batch or page * _PAGE_SIZE >= int(answer.get("total", 0)):
                break
        for app in apps:
            owner = (app.get("client_metadata") or {}).get("tenant_id")
            if owner != tenant_id:
                raise Conflict(f"Auth0 application {name} belongs to tenant {owner!r}")
        return apps

    async def _user(self, tenant_id: str, email: str) -> dict[str, Any] | None:
        """The user of our connection with this email; Conflict if another tenant's."""
        users = await self._json(
            "GET", "/api/v2/users-by-email", params={"email": email, "fields": _USER_FIELDS}
        )
        ours = [
            u
            for u in users
            if any(i.get("connection") == self._settings.connection for i in u.get("identities") or [])
        ]
        if not ours:
            return None
        user = dict(ours[0])
        owner = (user.get("app_metadata") or {}).get("tenant_id")
        if owner != tenant_id:
            raise Conflict(f"the admin's email is a user of tenant {owner!r}")
        return user

    async def _member_ids(self, org_id: str) -> list[str]:
        ids: list[str] = []
        page = 0
        while True:
            answer = await self._json(
                "GET",
                f"/api/v2/organizations/{org_id}/members",
                params={"page": str(page), "per_page": str(_PAGE_SIZE), "include_totals": "true"},
            )
            batch = answer.get("members") or []
            ids.extend(str(m["user_id"]) for m in batch)
            page += 1
            if not batch or page * _PAGE_SIZE >= int(answer.get("total", 0)):
                break
        return ids

    async def _members(self, org_id: str, fields: str) -> list[dict[str, Any]]:
        """The organization's members, each read with `fields` (and `app_metadata`)."""
        wanted = ",".join(dict.fromkeys([*fields.split(","), "app_metadata"]))
        users = []
        for user_id in await self._member_ids(org_id):
            user = await self._json(
                "GET",
                f"/api/v2/users/{quote(user_id, safe='')}",
                params={"fields": wanted, "include_fields": "true"},
                missing_ok=True,
            )
            if user is not None:
                users.append(dict(user))
        return users

    async def _tenant_members(self, tenant_id: str, org_id: str) -> list[str]:
        """Ids of the organization's members that belong to this tenant (not merely members)."""
        return [
            str(u["user_id"])
            for u in await self._members(org_id, "user_id")
            if (u.get("app_metadata") or {}).get("tenant_id") == tenant_id
        ]

    async def _own_members(
        self, tenant_id: str, org_id: str, *, fields: str = "user_id,blocked"
    ) -> list[dict[str, Any]]:
        """The members that are the tenant's users: its own and those of no
        tenant; never one that carries another tenant's metadata."""
        return [
            u
            for u in await self._members(org_id, fields)
            if (u.get("app_metadata") or {}).get("tenant_id") in (None, tenant_id)
        ]

    async def _connection(self) -> str:
        if self._connection_id is None:
            name = self._settings.connection
            found = await self._json(
                "GET", "/api/v2/connections", params={"name": name, "fields": "id,name,strategy"}
            )
            match = [c for c in found if c.get("name") == name]
            if not match:
                raise NotFound(f"Auth0 has no connection {name!r} (TENANTRY_AUTH0_CONNECTION)")
            self._connection_id = str(match[0]["id"])
        return self._connection_id

    async def _admin_role(self) -> str:
        if self._role_id is None:
            name = self._settings.admin_role
            for attempt in range(2):
                roles = await self._json("GET", "/api/v2/roles", params={"name_filter": name})
                match = sorted(str(r["id"]) for r in roles if r.get("name") == name)
                if match:
                    self._role_id = match[0]
                    break
                if attempt:
                    raise Unavailable(f"Auth0 reported role {name!r} as existing, but it is not found")
                try:
                    created = await self._json(
                        "POST",
                        "/api/v2/roles",
                        body={"name": name, "description": "Administrator of a Tenantry tenant"},
                    )
                    self._role_id = str(created["id"])
                    log.info("auth0 role %s created", name)
                    break
                except _Exists:
                    continue
        assert self._role_id is not None
        return self._role_id

    # -- HTTP ---------------------------------------------------------------

    async def _json(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        missing_ok: bool = False,
        redact: str | None = None,
    ) -> Any:
        response = await self._request(
            method, path, body=body, params=params, missing_ok=missing_ok, redact=redact
        )
        if response is None:
            return None
        try:
            return response.json()
        except ValueError:
            raise Unavailable(f"Auth0 answered {method} {path} with a body that is not JSON") from None

    async def _delete(self, path: str) -> None:
        await self._request("DELETE", path, missing_ok=True)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        missing_ok: bool = False,
        redact: str | None = None,
    ) -> httpx.Response | None:
        """One Management API call, with the token, classified errors and one re-try on 401.

        Returns None for a 404 when `missing_ok`; raises `_Exists` on 409.
        """
        for attempt in range(2):
            token = await self._management_token(renew=attempt > 0)
            response = await self._send(
                method, path, json=body, params=params, headers={"Authorization": f"Bearer {token}"}
            )
            if response.status_code != 401:
                break
            # The token expired early or was revoked: fetch a new one, once.
            self._token = None
        status = response.status_code
        if status < 300:
            return response
        if status == 404 and missing_ok:
            return None
        reason = self._reason(response, redact)
        if status == 409:
            raise _Exists(reason)
        if status == 404:
            raise NotFound(f"Auth0 found nothing at {method} {path}: {reason}")
        if status == 429 or status >= 500:
            raise Unavailable(f"Auth0 answered {status} to {method} {path}: {reason}")
        if status in (401, 403):
            raise Rejected(
                f"Auth0 refused {method} {path} ({status}: {reason}); check the grants of"
                " TENANTRY_AUTH0_CLIENT_ID on the Management API"
            )
        raise Rejected(f"Auth0 rejected {method} {path} ({status}): {reason}")

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise Unavailable(f"Auth0 did not answer {method} {path} in time") from None
        except httpx.TransportError as err:
            raise Unavailable(f"Auth0 unreachable for {method} {path} ({type(err).__name__})") from None

    async def _management_token(self, *, renew: bool = False) -> str:
        async with self._token_lock:
            if self._token is not None and not renew and time.monotonic() < self._token_expires:
                return self._token
            started = time.monotonic()
            response = await self._send(
                "POST",
                "/oauth/token",
                json={
                    "grant_type": "client_credentials",
                    "client_id": self._settings.client_id,
                    "client_secret": self._settings.client_secret,
                    "audience": self._audience,
                },
            )
            status = response.status_code
            if status == 429 or status >= 500:
                raise Unavailable(f"Auth0 answered {status} to the token request")
            if status != 200:
                raise Rejected(
                    f"Auth0 refused a Management API token for TENANTRY_AUTH0_CLIENT_ID"
                    f" ({status}: {self._reason(response)})"
                )
            try:
                answer = response.json()
                token = str(answer["access_token"])
                lifetime = float(answer.get("expires_in", 86400))
            except (ValueError, KeyError, TypeError):
                raise Unavailable("Auth0 answered the token request with an unexpected body") from None
            self._token = token
            self._token_expires = started + max(lifetime - _TOKEN_MARGIN_SECONDS, lifetime / 2)
            log.info("auth0 management token fetched, valid for %.0f s", lifetime)
            return token

    def _reason(self, response: httpx.Response, redact: str | None = None) -> str:
        """Auth0's error message, short and with no secret in it."""
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict):
            text = str(answer.get("message") or answer.get("error_description") or answer.get("error") or "")
        else:
            text = response.reason_phrase
        for secret in (redact, self._settings.client_secret, self._token):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text[:300]


def _normal_email(email: str) -> str:
    """Auth0 keeps database users' emails in lower case and compares them so."""
    return email.strip().lower()


def _new_password() -> str:
    """A random password that passes Auth0's strictest policy (all four classes, no triple repeats)."""
    classes = (string.ascii_lowercase, string.ascii_uppercase, string.digits, _SPECIALS)
    alphabet = "".join(classes)
    rng = secrets.SystemRandom()
    while True:
        chars = [secrets.choice(c) for c in classes]
        chars += [secrets.choice(alphabet) for _ in range(_PASSWORD_LENGTH - len(chars))]
        rng.shuffle(chars)
        password = "".join(chars)
        if not re.search(r"(.)\1\1", password):
            return password


def _access_of(org: Mapping[str, Any]) -> str:
    """`enabled` or `disabled`: the organization's access switch (see the module doc)."""
    return str((org.get("metadata") or {}).get(ACCESS_METADATA) or "enabled")


def _client_export(app: dict[str, Any]) -> dict[str, Any]:
    """An application as the export shows it (read without its secret)."""
    summary = ("client_id", "name", "callbacks", "web_origins")
    return {
        "id": app.get("client_id"),
        "client_id": app.get("client_id"),
        "name": app.get("name") or "",
        "enabled": True,
        "protocol": "openid-connect",
        "redirect_uris": sorted(app.get("callbacks") or []),
        "web_origins": sorted(app.get("web_origins") or []),
        "settings": {k: v for k, v in app.items() if k not in summary and k != "client_secret"},
    }


def _user_export(user: dict[str, Any], roles: list[dict[str, Any]]) -> dict[str, Any]:
    """A member as the export shows it: the profile, never a credential or an IdP token."""
    identities = [
        {k: v for k, v in identity.items() if k in ("connection", "provider", "user_id", "isSocial")}
        for identity in user.get("identities") or []
    ]
    return {
        "id": user.get("user_id"),
        "username": user.get("username") or user.get("email") or "",
        "email": user.get("email") or "",
        "given_name": user.get("given_name") or "",
        "family_name": user.get("family_name") or "",
        "enabled": not user.get("blocked", False),
        "email_verified": bool(user.get("email_verified", False)),
        "attributes": {
            "app_metadata": user.get("app_metadata") or {},
            "user_metadata": user.get("user_metadata") or {},
        },
        "required_actions": [],
        "groups": [],
        "roles": {"realm": [], "organization": roles},
        "identities": identities,
        "created": user.get("created_at"),
        "last_login": user.get("last_login"),
    }
