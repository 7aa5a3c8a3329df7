"""Identity activities: proto in, provider call, proto out.

One method per rpc of `tenantry.idp.v1.IdentityActivities`. Input is
validated here again (defence in depth) and provider errors become
`ApplicationError`s of the shared error vocabulary. No response, log line,
error or export carries a secret.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from libs import errors
from libs.backup import BackupSettings, BackupStore
from libs.errors import ErrorType, provider_errors
from libs.lifecycle import checked_tenant_id
from services.idp import export
from services.idp.providers import AdminUser, IdentityProvider
from tenantry.idp.v1 import idp_pb2

log = logging.getLogger(__name__)


def _email_of(value: str, field: str) -> str:
    local, at, domain = value.strip().partition("@")
    if not (local and at and domain):
        raise errors.permanent(ErrorType.INVALID_ARGUMENT, f"{field} must be an email address")
    return value.strip()


class IdentityActivities:
    """Implements IdentityActivities on an `IdentityProvider`, writing exports to `backups`
    (by default the backup location of the environment, made on first export)."""

    def __init__(self, provider: IdentityProvider, *, backups: BackupStore | None = None) -> None:
        self._provider = provider
        self._backups = backups

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
        setup = (
            idp_pb2.ADMIN_SETUP_SET_PASSWORD_LINK
            if self._provider.sends_set_password_link
            else idp_pb2.ADMIN_SETUP_NO_SIGN_IN
        )
        return idp_pb2.CreateAdminUserResponse(user_id=user_id, admin_setup=setup)

    async def delete_admin_user(
        self, request: idp_pb2.DeleteAdminUserRequest
    ) -> idp_pb2.DeleteAdminUserResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        email = _email_of(request.email, "email")
        log.info("tenant %s: delete admin user", tenant_id)
        with provider_errors():
            await self._provider.delete_admin_user(tenant_id, email)
        return idp_pb2.DeleteAdminUserResponse()

    async def disable_tenant_access(
        self, request: idp_pb2.DisableTenantAccessRequest
    ) -> idp_pb2.DisableTenantAccessResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: disable access", tenant_id)
        with provider_errors():
            await self._provider.disable_access(tenant_id)
        return idp_pb2.DisableTenantAccessResponse()

    async def enable_tenant_access(
        self, request: idp_pb2.EnableTenantAccessRequest
    ) -> idp_pb2.EnableTenantAccessResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: enable access", tenant_id)
        with provider_errors():
            await self._provider.enable_access(tenant_id)
        return idp_pb2.EnableTenantAccessResponse()

    async def export_identity(self, request: idp_pb2.ExportIdentityRequest) -> idp_pb2.ExportIdentityResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        if self._backups is None:
            self._backups = BackupStore(BackupSettings.from_env())
        try:
            key = self._backups.key(tenant_id, request.backup_id, export.FILE)
        except ValueError as err:
            raise errors.permanent(ErrorType.INVALID_ARGUMENT, str(err)) from None
        log.info("tenant %s: export identity", tenant_id)
        with provider_errors():
            content = await self._provider.export(tenant_id)
            data = export.document(tenant_id, content, exported_at=datetime.now(UTC))
            backup = await self._backups.put_bytes(export.KIND, key, data, content_type=export.CONTENT_TYPE)
        log.info(
            "tenant %s: identity exported to %s (%d users, %d bytes)",
            tenant_id,
            backup.uri,
            len(content.users),
            backup.size_bytes,
        )
        return idp_pb2.ExportIdentityResponse(backup=backup)
