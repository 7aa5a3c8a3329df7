"""Identity activities: proto in, provider call, proto out.

One method per rpc of `tenantry.idp.v1.IdentityActivities`. Input is
validated here again (defence in depth) and provider errors become
`ApplicationError`s of the shared error vocabulary. No response, log line or
error carries a secret.
"""

from __future__ import annotations

import logging

from libs import errors
from libs.errors import ErrorType, provider_errors
from libs.lifecycle import checked_tenant_id
from services.idp.providers import AdminUser, IdentityProvider
from tenantry.idp.v1 import idp_pb2

log = logging.getLogger(__name__)


def _email_of(value: str, field: str) -> str:
    local, at, domain = value.strip().partition("@")
    if not (local and at and domain):
        raise errors.permanent(ErrorType.INVALID_ARGUMENT, f"{field} must be an email address")
    return value.strip()


class IdentityActivities:
    """Implements IdentityActivities on an `IdentityProvider`."""

    def __init__(self, provider: IdentityProvider) -> None:
        self._provider = provider

    async def create_realm(self, request: idp_pb2.CreateRealmRequest) -> idp_pb2.CreateRealmResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        display_name = request.display_name or tenant_id
        log.info("tenant %s: create realm", tenant_id)
        with provider_errors():
            realm_id = await self._provider.create_realm(tenant_id, display_name, list(request.domains))
        return idp_pb2.CreateRealmResponse(realm_id=realm_id)

    async def delete_realm(self, request: idp_pb2.DeleteRealmRequest) -> idp_pb2.DeleteRealmResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: delete realm", tenant_id)
        with provider_errors():
            await self._provider.delete_realm(tenant_id)
        return idp_pb2.DeleteRealmResponse()

    async def create_oidc_client(
        self, request: idp_pb2.CreateOidcClientRequest
    ) -> idp_pb2.CreateOidcClientResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: create OIDC client", tenant_id)
        with provider_errors():
            client_id = await self._provider.create_client(
                tenant_id, list(request.redirect_uris), list(request.web_origins)
            )
        return idp_pb2.CreateOidcClientResponse(client_id=client_id)

    async def delete_oidc_client(
        self, request: idp_pb2.DeleteOidcClientRequest
    ) -> idp_pb2.DeleteOidcClientResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: delete OIDC client", tenant_id)
        with provider_errors():
            await self._provider.delete_client(tenant_id)
        return idp_pb2.DeleteOidcClientResponse()

    async def create_admin_user(
        self, request: idp_pb2.CreateAdminUserRequest
    ) -> idp_pb2.CreateAdminUserResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        admin = AdminUser(
            email=_email_of(request.admin.email, "admin.email"),
            given_name=request.admin.given_name,
            family_name=request.admin.family_name,
        )
        log.info("tenant %s: create admin user", tenant_id)
        with provider_errors():
            user_id = await self._provider.create_admin_user(tenant_id, admin)
        return idp_pb2.CreateAdminUserResponse(user_id=user_id)

    async def delete_admin_user(
        self, request: idp_pb2.DeleteAdminUserRequest
    ) -> idp_pb2.DeleteAdminUserResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        email = _email_of(request.email, "email")
        log.info("tenant %s: delete admin user", tenant_id)
        with provider_errors():
            await self._provider.delete_admin_user(tenant_id, email)
        return idp_pb2.DeleteAdminUserResponse()
