"""Tenant-data activities: proto in, provider call, proto out.

One method per rpc of `tenantry.tenantdb.v1.TenantDataActivities`. Input is
validated here again (defence in depth: the facade validated it already) and
provider errors become `ApplicationError`s of the shared error vocabulary.
"""

from __future__ import annotations

import logging

from google.protobuf.timestamp_pb2 import Timestamp

from libs import errors
from libs.errors import ErrorType, provider_errors
from libs.lifecycle import checked_tenant_id
from services.tenantdb.providers import ResourceRecord, TenantDataProvider, TenantRecord, TenantSpec
from tenantry.tenant.v1 import tenant_pb2
from tenantry.tenantdb.v1 import tenantdb_pb2

log = logging.getLogger(__name__)

MAX_DISPLAY_NAME = 200


class TenantDataActivities:
    """Implements TenantDataActivities on a `TenantDataProvider`."""

    def __init__(self, provider: TenantDataProvider) -> None:
        self._provider = provider

    async def mark_provisioning(
        self, request: tenantdb_pb2.MarkProvisioningRequest
    ) -> tenantdb_pb2.MarkProvisioningResponse:
        spec = _spec_of(request.tenant)
        if not request.workflow_id:
            raise errors.permanent(ErrorType.INVALID_ARGUMENT, "workflow_id is required")
        log.info("tenant %s: mark provisioning (workflow %s)", spec.tenant_id, request.workflow_id)
        with provider_errors():
            await self._provider.mark_provisioning(spec, request.workflow_id)
        return tenantdb_pb2.MarkProvisioningResponse()

    async def mark_provision_failed(
        self, request: tenantdb_pb2.MarkProvisionFailedRequest
    ) -> tenantdb_pb2.MarkProvisionFailedResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: mark provision failed at %s", tenant_id, request.failed_step)
        with provider_errors():
            await self._provider.mark_provision_failed(tenant_id, request.failed_step, request.reason)
        return tenantdb_pb2.MarkProvisionFailedResponse()

    async def mark_active(self, request: tenantdb_pb2.MarkActiveRequest) -> tenantdb_pb2.MarkActiveResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: mark active", tenant_id)
        with provider_errors():
            await self._provider.mark_active(tenant_id)
        return tenantdb_pb2.MarkActiveResponse()

    async def mark_deprovisioning(
        self, request: tenantdb_pb2.MarkDeprovisioningRequest
    ) -> tenantdb_pb2.MarkDeprovisioningResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        if not request.workflow_id:
            raise errors.permanent(ErrorType.INVALID_ARGUMENT, "workflow_id is required")
        log.info("tenant %s: mark deprovisioning (workflow %s)", tenant_id, request.workflow_id)
        with provider_errors():
            await self._provider.mark_deprovisioning(tenant_id, request.workflow_id)
        return tenantdb_pb2.MarkDeprovisioningResponse()

    async def mark_deprovisioned(
        self, request: tenantdb_pb2.MarkDeprovisionedRequest
    ) -> tenantdb_pb2.MarkDeprovisionedResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: mark deprovisioned", tenant_id)
        with provider_errors():
            await self._provider.mark_deprovisioned(tenant_id)
        return tenantdb_pb2.MarkDeprovisionedResponse()

    async def get_tenant_record(
        self, request: tenantdb_pb2.GetTenantRecordRequest
    ) -> tenantdb_pb2.GetTenantRecordResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        with provider_errors():
            record = await self._provider.get_tenant(tenant_id)
        if record is None:
            return tenantdb_pb2.GetTenantRecordResponse(found=False)
        return tenantdb_pb2.GetTenantRecordResponse(found=True, tenant=_tenant_of(record))

    async def create_tenant_schema(
        self, request: tenantdb_pb2.CreateTenantSchemaRequest
    ) -> tenantdb_pb2.CreateTenantSchemaResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: create schema", tenant_id)
        with provider_errors():
            schema = await self._provider.create_schema(tenant_id)
        return tenantdb_pb2.CreateTenantSchemaResponse(schema=schema)

    async def drop_tenant_schema(
        self, request: tenantdb_pb2.DropTenantSchemaRequest
    ) -> tenantdb_pb2.DropTenantSchemaResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: drop schema", tenant_id)
        with provider_errors():
            await self._provider.drop_schema(tenant_id)
        return tenantdb_pb2.DropTenantSchemaResponse()

    async def record_resources(
        self, request: tenantdb_pb2.RecordResourcesRequest
    ) -> tenantdb_pb2.RecordResourcesResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        resources = []
        for index, r in enumerate(request.resources):
            if not (r.kind and r.id and r.domain):
                raise errors.permanent(
                    ErrorType.INVALID_ARGUMENT, f"resources[{index}] needs a kind, an id and a domain"
                )
            resources.append(ResourceRecord(kind=r.kind, resource_id=r.id, domain=r.domain))
        log.info("tenant %s: record %d resource(s)", tenant_id, len(resources))
        with provider_errors():
            await self._provider.record_resources(tenant_id, resources)
        return tenantdb_pb2.RecordResourcesResponse()

    async def delete_resource_records(
        self, request: tenantdb_pb2.DeleteResourceRecordsRequest
    ) -> tenantdb_pb2.DeleteResourceRecordsResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: delete resource records", tenant_id)
        with provider_errors():
            await self._provider.delete_resources(tenant_id)
        return tenantdb_pb2.DeleteResourceRecordsResponse()


def _spec_of(tenant: tenant_pb2.Tenant) -> TenantSpec:
    """The provisioning request as the provider sees it; output-only fields are ignored."""
    raw_id = tenant.tenant_id or tenant.name.removeprefix("tenants/")
    tenant_id = checked_tenant_id(raw_id)
    if not 1 <= len(tenant.display_name) <= MAX_DISPLAY_NAME:
        raise errors.permanent(
            ErrorType.INVALID_ARGUMENT, f"display_name must be 1 to {MAX_DISPLAY_NAME} characters"
        )
    if tenant.plan_tier == tenant_pb2.PLAN_TIER_UNSPECIFIED:
        raise errors.permanent(ErrorType.INVALID_ARGUMENT, "plan_tier is required")
    if "@" not in tenant.admin.email:
        raise errors.permanent(ErrorType.INVALID_ARGUMENT, "admin.email must be an email address")
    return TenantSpec(
        tenant_id=tenant_id,
        display_name=tenant.display_name,
        plan_tier=tenant_pb2.PlanTier.Name(tenant.plan_tier),
        domains=tuple(tenant.domains),
        admin_email=tenant.admin.email,
        admin_given_name=tenant.admin.given_name,
        admin_family_name=tenant.admin.family_name,
    )


def _tenant_of(record: TenantRecord) -> tenant_pb2.Tenant:
    spec = record.spec
    tenant = tenant_pb2.Tenant(
        name=f"tenants/{spec.tenant_id}",
        tenant_id=spec.tenant_id,
        display_name=spec.display_name,
        plan_tier=_enum_value(tenant_pb2.PlanTier, spec.plan_tier),
        domains=spec.domains,
        admin=tenant_pb2.AdminContact(
            email=spec.admin_email, given_name=spec.admin_given_name, family_name=spec.admin_family_name
        ),
        state=_enum_value(tenant_pb2.Tenant.State, record.state),
        current_step=record.current_step,
        failure_reason=record.failure_reason,
        failed_step=record.failed_step,
        resources=[
            tenant_pb2.Resource(kind=r.kind, id=r.resource_id, domain=r.domain) for r in record.resources
        ],
        create_time=_timestamp(record.create_time),
        update_time=_timestamp(record.update_time),
    )
    return tenant


def _enum_value(enum: object, name: str) -> int:
    """The value of a stored enum name; 0 (UNSPECIFIED) for a name this build does not know."""
    try:
        return enum.Value(name)  # type: ignore[attr-defined, no-any-return]
    except ValueError:
        log.warning("unknown enum value %r in the registry", name)
        return 0


def _timestamp(value: object) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)  # type: ignore[arg-type]
    return stamp
