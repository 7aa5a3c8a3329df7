"""The identity provider interface and the choice of adapter.

One realm (Keycloak realm, Keycloak organization or Auth0 organization) per
tenant. Every method takes the tenant id and nothing provider-specific, so
that an adapter can keep its own mapping (a Keycloak organization id, the
Auth0 application and role ids) and the activities never change:

- `local`    (default): an identity store in the registry database, schema `idp_local`.
- `keycloak`: a realm per tenant, or an organization per tenant in one shared
  realm (TENANTRY_KEYCLOAK_MODE).
- `auth0`:    an organization, application, user, membership and role per tenant.

Adapters are async; one over a blocking SDK runs its calls in a thread.
Secrets (client secrets, temporary passwords) are created inside the adapter
and never returned, logged or put in an error; an export holds none either.

Access: a realm is created enabled, and from then on only
`disable_access` / `enable_access` change whether its users can sign in
(creating what exists again leaves that alone, so a retried or repeated
provisioning step never lifts a suspension).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from libs import config

# The shared provider errors, re-exported for this domain's adapters.
from libs.errors import Conflict as Conflict
from libs.errors import NotFound as NotFound

# The role that makes a user the tenant's administrator, and the action that
# makes them replace the temporary password at first sign-in.
ADMIN_ROLE = "realm-admin"
UPDATE_PASSWORD = "UPDATE_PASSWORD"


@dataclass(frozen=True)
class AdminUser:
    """The tenant's first administrator; the email is also the user name."""

    email: str
    given_name: str = ""
    family_name: str = ""


@dataclass(frozen=True)
class IdentityExport:
    """What a provider holds for a tenant, as plain JSON values, never a secret.

    - `realm`: `id`, `name`, `display_name`, `domains`, `enabled`, `attributes`.
    - `clients`: per client `id`, `client_id`, `name`, `enabled`, `protocol`,
      `redirect_uris`, `web_origins` and the provider's other `settings`.
    - `users`: per user `id`, `username`, `email`, `given_name`,
      `family_name`, `enabled`, `email_verified`, `attributes`,
      `required_actions`, `groups`, `roles`, `created`.
    - `source`: the provider's own representation where it has one worth
      keeping (Keycloak's realm export), for a faithful restore.

    `services.idp.export` adds the header and removes anything secret-like
    once more before it is written.
    """

    provider: str
    realm: dict[str, Any]
    clients: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)


class IdentityProvider(Protocol):
    """A realm, an OIDC client and a first admin per tenant.

    Every method is idempotent: creating what exists verifies and reuses it
    (and returns the same id); deleting what is gone succeeds. Methods raise
    `NotFound`, `Conflict` or `Rejected` for what retrying cannot fix and
    `Unavailable` (or let connection errors propagate) for what a retry may
    fix. Tenant ids reach the provider validated.
    """

    # Whether an admin who has no password is emailed a single-use link to
    # choose one. False for the local store, which has no sign-in at all:
    # the welcome notice must then promise no link.
    sends_set_password_link: bool

    async def open(self) -> None:
        """Connects and creates what the provider owns (idempotent, safe with N replicas)."""

    async def close(self) -> None:
        """Releases connections; safe to call twice."""

    async def create_realm(self, tenant_id: str, display_name: str, domains: Sequence[str]) -> str:
        """Creates (or reuses) the tenant's realm; returns the provider's realm id."""

    async def delete_realm(self, tenant_id: str) -> None:
        """Deletes the realm with its clients and users."""

    async def create_client(
        self, tenant_id: str, redirect_uris: Sequence[str], web_origins: Sequence[str]
    ) -> str:
        """Creates (or reuses) the tenant application's confidential OIDC client; returns its client id."""

    async def delete_client(self, tenant_id: str) -> None:
        """Deletes the tenant application's client."""

    async def create_admin_user(self, tenant_id: str, admin: AdminUser) -> str:
        """Creates (or reuses) the admin with the admin role and a way to set a
        first password that never leaves the identity worker (a set-password
        email the provider sends; the local store, which checks no password,
        stores none);
        returns the user id."""

    async def delete_admin_user(self, tenant_id: str, email: str) -> None:
        """Deletes the tenant's user with this email."""

    async def disable_access(self, tenant_id: str) -> None:
        """Stops the tenant's users from signing in (and from renewing tokens);
        `NotFound` if the tenant has no realm."""

    async def enable_access(self, tenant_id: str) -> None:
        """Undoes `disable_access`, and nothing more; `NotFound` if the tenant has no realm."""

    async def export(self, tenant_id: str) -> IdentityExport:
        """The tenant's realm, clients and users, without credentials or
        secrets; `NotFound` if the tenant has no realm."""


PROVIDERS = ("local", "keycloak", "auth0")


def from_env() -> IdentityProvider:
    """The adapter named by TENANTRY_IDP_PROVIDER (default `local`), not yet
    opened; its own settings are checked here, before anything connects."""
    name = config.choice("TENANTRY_IDP_PROVIDER", "local", PROVIDERS)
    if name == "keycloak":
        from services.idp.providers.keycloak import KeycloakIdentityProvider

        return KeycloakIdentityProvider.from_env()
    if name == "auth0":
        from services.idp.providers.auth0 import Auth0IdentityProvider

        return Auth0IdentityProvider.from_env()
    from services.idp.providers.local import LocalIdentityStore

    return LocalIdentityStore(
        config.database_url(),
        max_connections=config.integer("TENANTRY_DATABASE_POOL_SIZE", 10),
    )
