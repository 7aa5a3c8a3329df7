"""Tenant-data activities: proto in, provider call, proto out.

One method per rpc of `tenantry.tenantdb.v1.TenantDataActivities`. Input is
validated here again (defence in depth: the facade validated it already) and
provider errors become `ApplicationError`s of the shared error vocabulary.
Schema backups are dumped by the provider and uploaded to the backup store.
A tenant's database credentials are kept in its secret (`TenantCredentials`):
only the secret's reference is recorded, never the password.
"""

from __future__ import annotations

import logging
import re
import tempfile
from datetime import UTC

from google.protobuf.timestamp_pb2 import Timestamp

from libs import errors, tracing
from libs.backup import BackupStore
from libs.errors import ErrorType, provider_errors
from libs.lifecycle import checked_tenant_id
from services.tenantdb.providers import (
    RESTORABLE,
    BackupRecord,
    EventRecord,
    LeftoverRecord,
    OperationRecord,
    ResourceRecord,
    RunStepsRecord,
    TenantDataProvider,
    TenantRecord,
    TenantSpec,
    role_name,
    schema_name,
)
from services.tenantdb.providers.pgdump import heartbeating
from services.tenantdb.providers.secrets import TenantCredentials
from tenantry.tenant.v1 import tenant_pb2
from tenantry.tenantdb.v1 import tenantdb_pb2

log = logging.getLogger(__name__)

MAX_DISPLAY_NAME = 200
# An event's detail is a sentence or two; longer ones are cut here.
MAX_EVENT_DETAIL = 2000
# Sequences are stored as `integer`.
MAX_EVENT_SEQUENCE = 2**31 - 1
SCHEMA_BACKUP_KIND = "db_schema"
SCHEMA_BACKUP_FILE = "schema.sql.gz"
_SHA256 = re.compile(r"[0-9a-f]{64}")

_State = tenant_pb2.Tenant.State
_Kind = tenant_pb2.TenantEvent.Kind


class TenantDataActivities:
    """Implements TenantDataActivities on a `TenantDataProvider`, a `BackupStore` and the
    tenants' database secrets (`TenantCredentials`)."""

    def __init__(
        self, provider: TenantDataProvider, *, backups: BackupStore, credentials: TenantCredentials
    ) -> None:
        self._provider = provider
        self._backups = backups
        self._credentials = credentials

    async def mark_provisioning(
        self, request: tenantdb_pb2.MarkProvisioningRequest
    ) -> tenantdb_pb2.MarkProvisioningResponse:
        spec = _spec_of(request.tenant)
        if not request.workflow_id:
            raise errors.permanent(ErrorType.INVALID_ARGUMENT, "workflow_id is required")
        log.info("tenant %s: mark provisioning (workflow %s)", spec.tenant_id, request.workflow_id)
        with provider_errors():
            left = await self._provider.mark_provisioning(spec, request.workflow_id, request.run_id)
        return tenantdb_pb2.MarkProvisioningResponse(leftover_resources=[_leftover_message(x) for x in left])

    async def mark_provision_failed(
        self, request: tenantdb_pb2.MarkProvisionFailedRequest
    ) -> tenantdb_pb2.MarkProvisionFailedResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        # The spec only matters when the record must be made; it is checked then.
        spec = _spec_of(request.tenant) if request.HasField("tenant") else None
        leftovers = [_leftover_of(index, x) for index, x in enumerate(request.leftover_resources)]
        log.info(
            "tenant %s: mark provision failed at %s (%d leftover(s))",
            tenant_id,
            request.failed_step,
            len(leftovers),
        )
        with provider_errors():
            await self._provider.mark_provision_failed(
                tenant_id,
                request.failed_step,
                request.reason,
                run_id=request.run_id,
                spec=spec,
                leftovers=leftovers,
                cancelled=request.cancelled,
                failure_type=request.failure_type,
            )
        return tenantdb_pb2.MarkProvisionFailedResponse()

    async def mark_active(self, request: tenantdb_pb2.MarkActiveRequest) -> tenantdb_pb2.MarkActiveResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: mark active", tenant_id)
        with provider_errors():
            await self._provider.mark_active(tenant_id, request.run_id)
        return tenantdb_pb2.MarkActiveResponse()

    async def mark_deprovisioning(
        self, request: tenantdb_pb2.MarkDeprovisioningRequest
    ) -> tenantdb_pb2.MarkDeprovisioningResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        if not request.workflow_id:
            raise errors.permanent(ErrorType.INVALID_ARGUMENT, "workflow_id is required")
        purge_time = request.purge_time.ToDatetime(tzinfo=UTC) if request.HasField("purge_time") else None
        log.info(
            "tenant %s: mark deprovisioning (workflow %s, purge %s)",
            tenant_id,
            request.workflow_id,
            purge_time.isoformat() if purge_time else "at once",
        )
        with provider_errors():
            await self._provider.mark_deprovisioning(
                tenant_id,
                request.workflow_id,
                purge_time,
                request.run_id,
                expected_state=(
                    tenant_pb2.Tenant.State.Name(request.expected_state) if request.expected_state else None
                ),
            )
        return tenantdb_pb2.MarkDeprovisioningResponse()

    async def mark_deprovision_failed(
        self, request: tenantdb_pb2.MarkDeprovisionFailedRequest
    ) -> tenantdb_pb2.MarkDeprovisionFailedResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        backups = [_backup_of(index, b) for index, b in enumerate(request.backups)]
        log.info("tenant %s: mark deprovision failed at %s", tenant_id, request.failed_step)
        with provider_errors():
            await self._provider.mark_deprovision_failed(
                tenant_id,
                request.run_id,
                request.failed_step,
                request.reason,
                failure_type=request.failure_type,
                backups=backups,
                purge_begun=request.purge_begun,
            )
        return tenantdb_pb2.MarkDeprovisionFailedResponse()

    async def mark_access_changing(
        self, request: tenantdb_pb2.MarkAccessChangingRequest
    ) -> tenantdb_pb2.MarkAccessChangingResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        if not (request.workflow_id and request.run_id):
            raise errors.permanent(ErrorType.INVALID_ARGUMENT, "workflow_id and run_id are required")
        with provider_errors():
            record, claimed = await self._provider.mark_access_changing(
                tenant_id, suspend=request.suspend, workflow_id=request.workflow_id, run_id=request.run_id
            )
        log.info(
            "tenant %s: %s %s",
            tenant_id,
            "suspend" if request.suspend else "resume",
            "started" if claimed else f"not started ({record.state if record else 'no record'})",
        )
        if record is None:
            return tenantdb_pb2.MarkAccessChangingResponse(found=False)
        return tenantdb_pb2.MarkAccessChangingResponse(found=True, tenant=_tenant_of(record), claimed=claimed)

    async def mark_access_change_failed(
        self, request: tenantdb_pb2.MarkAccessChangeFailedRequest
    ) -> tenantdb_pb2.MarkAccessChangeFailedResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: access change failed at %s", tenant_id, request.failed_step)
        with provider_errors():
            await self._provider.mark_access_change_failed(
                tenant_id, request.run_id, request.failed_step, request.reason, request.failure_type
            )
        return tenantdb_pb2.MarkAccessChangeFailedResponse()

    async def record_leftovers(
        self, request: tenantdb_pb2.RecordLeftoversRequest
    ) -> tenantdb_pb2.RecordLeftoversResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        leftovers = [_leftover_of(index, x) for index, x in enumerate(request.leftover_resources)]
        with provider_errors():
            await self._provider.record_leftovers(tenant_id, request.workflow_id, request.run_id, leftovers)
        return tenantdb_pb2.RecordLeftoversResponse()

    async def record_failed_operation(
        self, request: tenantdb_pb2.RecordFailedOperationRequest
    ) -> tenantdb_pb2.RecordFailedOperationResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        operation = _operation_of(request.operation)
        log.info("tenant %s: %s failed at %s", tenant_id, operation.kind, operation.failed_step)
        with provider_errors():
            await self._provider.record_failed_operation(tenant_id, operation)
        return tenantdb_pb2.RecordFailedOperationResponse()

    async def mark_deprovisioned(
        self, request: tenantdb_pb2.MarkDeprovisionedRequest
    ) -> tenantdb_pb2.MarkDeprovisionedResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        backups = [_backup_of(index, b) for index, b in enumerate(request.backups)]
        log.info("tenant %s: mark deprovisioned (%d backup object(s))", tenant_id, len(backups))
        with provider_errors():
            await self._provider.mark_deprovisioned(tenant_id, backups)
        return tenantdb_pb2.MarkDeprovisionedResponse()

    async def mark_suspended(
        self, request: tenantdb_pb2.MarkSuspendedRequest
    ) -> tenantdb_pb2.MarkSuspendedResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: mark suspended", tenant_id)
        with provider_errors():
            await self._provider.mark_suspended(tenant_id)
        return tenantdb_pb2.MarkSuspendedResponse()

    async def mark_resumed(
        self, request: tenantdb_pb2.MarkResumedRequest
    ) -> tenantdb_pb2.MarkResumedResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: mark resumed", tenant_id)
        with provider_errors():
            await self._provider.mark_resumed(tenant_id)
        return tenantdb_pb2.MarkResumedResponse()

    async def mark_restored(
        self, request: tenantdb_pb2.MarkRestoredRequest
    ) -> tenantdb_pb2.MarkRestoredResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        state = _enum_name(_State, request.state)
        if state is None or state not in RESTORABLE:
            raise errors.permanent(
                ErrorType.INVALID_ARGUMENT,
                f"state must be one of {', '.join(sorted(RESTORABLE))}, not {state or request.state}",
            )
        log.info("tenant %s: mark restored to %s", tenant_id, state)
        with provider_errors():
            await self._provider.mark_restored(tenant_id, state)
        return tenantdb_pb2.MarkRestoredResponse()

    async def get_tenant_record(
        self, request: tenantdb_pb2.GetTenantRecordRequest
    ) -> tenantdb_pb2.GetTenantRecordResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        with provider_errors():
            record = await self._provider.get_tenant(tenant_id)
        if record is None:
            return tenantdb_pb2.GetTenantRecordResponse(found=False)
        return tenantdb_pb2.GetTenantRecordResponse(
            found=True,
            tenant=_tenant_of(record),
            state_before_deletion=_enum_value(tenant_pb2.Tenant.State, record.state_before_deletion)
            if record.state_before_deletion
            else 0,
        )

    async def create_tenant_schema(
        self, request: tenantdb_pb2.CreateTenantSchemaRequest
    ) -> tenantdb_pb2.CreateTenantSchemaResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: create schema", tenant_id)
        with provider_errors():
            # The secret first: a retry finds the password the role was given.
            credentials = await self._credentials.ensure(
                tenant_id, username=role_name(tenant_id), schema=schema_name(tenant_id)
            )
            schema = await self._provider.create_schema(
                tenant_id, role_password=credentials.password, credentials=credentials.reference
            )
        return tenantdb_pb2.CreateTenantSchemaResponse(schema=schema)

    async def drop_tenant_schema(
        self, request: tenantdb_pb2.DropTenantSchemaRequest
    ) -> tenantdb_pb2.DropTenantSchemaResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        log.info("tenant %s: drop schema", tenant_id)
        with provider_errors():
            await self._provider.drop_schema(tenant_id)
            # The secret after the role: a role never outlives the password that opens it.
            await self._credentials.delete(tenant_id)
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

    async def backup_tenant_schema(
        self, request: tenantdb_pb2.BackupTenantSchemaRequest
    ) -> tenantdb_pb2.BackupTenantSchemaResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        try:
            # The same backup id names the same object: a retry overwrites it.
            key = self._backups.key(tenant_id, request.backup_id, SCHEMA_BACKUP_FILE)
        except ValueError:
            raise errors.permanent(
                ErrorType.INVALID_ARGUMENT, "backup_id must contain letters, digits, - or _"
            ) from None
        log.info("tenant %s: back up schema to %s", tenant_id, key)
        with provider_errors(), tempfile.TemporaryFile() as dump:
            await self._provider.dump_schema(tenant_id, dump)
            async with heartbeating():
                backup = await self._backups.put_file(
                    SCHEMA_BACKUP_KIND, key, dump, content_type="application/gzip"
                )
        log.info("tenant %s: schema backed up to %s (%d bytes)", tenant_id, backup.uri, backup.size_bytes)
        return tenantdb_pb2.BackupTenantSchemaResponse(backup=backup)

    async def append_tenant_events(
        self, request: tenantdb_pb2.AppendTenantEventsRequest
    ) -> tenantdb_pb2.AppendTenantEventsResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        # Every event is checked before any is written: a batch goes in whole or not at all.
        events = [_event_of(index, e) for index, e in enumerate(request.events)]
        progress = _run_steps_of(request.progress) if request.HasField("progress") else None
        with provider_errors():
            await self._provider.append_events(tenant_id, events, progress)
        return tenantdb_pb2.AppendTenantEventsResponse()


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
        current_steps=[s for s in record.current_step.split(",") if s],
        failure_reason=record.failure_reason,
        failed_step=record.failed_step,
        resources=[
            tenant_pb2.Resource(kind=r.kind, id=r.resource_id, domain=r.domain) for r in record.resources
        ],
        create_time=_timestamp(record.create_time),
        update_time=_timestamp(record.update_time),
        backups=[
            tenant_pb2.BackupObject(kind=b.kind, uri=b.uri, size_bytes=b.size_bytes, sha256=b.sha256)
            for b in record.backups
        ],
    )
    if record.purge_time is not None:
        tenant.purge_time.CopyFrom(_timestamp(record.purge_time))
    tenant.leftover_resources.extend(_leftover_message(x) for x in record.leftovers)
    if record.last_operation is not None:
        tenant.last_operation.CopyFrom(_operation_message(record.last_operation))
    return tenant


def _leftover_message(left: LeftoverRecord) -> tenant_pb2.LeftoverResource:
    return tenant_pb2.LeftoverResource(
        step=left.step, kind=left.kind, id=left.resource_id, domain=left.domain, reason=left.reason
    )


def _leftover_of(index: int, left: tenant_pb2.LeftoverResource) -> LeftoverRecord:
    if not (left.step and left.kind and left.domain):
        raise errors.permanent(
            ErrorType.INVALID_ARGUMENT, f"leftover_resources[{index}] needs a step, a kind and a domain"
        )
    return LeftoverRecord(
        step=left.step,
        kind=left.kind,
        resource_id=left.id,
        domain=left.domain,
        reason=left.reason[:MAX_EVENT_DETAIL],
    )


def _operation_message(op: OperationRecord) -> tenant_pb2.Operation:
    message = tenant_pb2.Operation(
        kind=_enum_value(tenant_pb2.Operation.Kind, op.kind),
        outcome=_enum_value(tenant_pb2.Operation.Outcome, op.outcome),
        workflow_id=op.workflow_id,
        run_id=op.run_id,
        failed_step=op.failed_step,
        failure_reason=op.failure_reason,
        failure_type=op.failure_type,
        trace_id=op.trace_id,
    )
    if op.start_time is not None:
        message.start_time.CopyFrom(_timestamp(op.start_time))
    if op.end_time is not None:
        message.end_time.CopyFrom(_timestamp(op.end_time))
    return message


def _operation_of(op: tenant_pb2.Operation) -> OperationRecord:
    kind = _enum_name(tenant_pb2.Operation.Kind, op.kind)
    outcome = _enum_name(tenant_pb2.Operation.Outcome, op.outcome)
    if not kind or op.kind == 0 or not outcome or op.outcome == 0:
        raise errors.permanent(ErrorType.INVALID_ARGUMENT, "operation needs a kind and an outcome")
    return OperationRecord(
        kind=kind,
        outcome=outcome,
        workflow_id=op.workflow_id,
        run_id=op.run_id,
        failed_step=op.failed_step,
        failure_reason=op.failure_reason[:MAX_EVENT_DETAIL],
        failure_type=op.failure_type,
        trace_id=op.trace_id or tracing.current_trace_id(),
        start_time=op.start_time.ToDatetime(tzinfo=UTC) if op.HasField("start_time") else None,
        end_time=op.end_time.ToDatetime(tzinfo=UTC) if op.HasField("end_time") else None,
    )


def _backup_of(index: int, backup: tenant_pb2.BackupObject) -> BackupRecord:
    where = f"backups[{index}]"
    if not (backup.kind and backup.uri):
        raise errors.permanent(ErrorType.INVALID_ARGUMENT, f"{where} needs a kind and a uri")
    if backup.size_bytes < 0:
        raise errors.permanent(ErrorType.INVALID_ARGUMENT, f"{where}.size_bytes must not be negative")
    if not _SHA256.fullmatch(backup.sha256):
        raise errors.permanent(ErrorType.INVALID_ARGUMENT, f"{where}.sha256 must be 64 lowercase hex digits")
    return BackupRecord(kind=backup.kind, uri=backup.uri, size_bytes=backup.size_bytes, sha256=backup.sha256)


def _event_of(index: int, event: tenant_pb2.TenantEvent) -> EventRecord:
    where = f"events[{index}]"
    if not event.run_id:
        raise errors.permanent(ErrorType.INVALID_ARGUMENT, f"{where} needs a run_id")
    if not 1 <= event.sequence <= MAX_EVENT_SEQUENCE:
        raise errors.permanent(
            ErrorType.INVALID_ARGUMENT, f"{where}.sequence must be 1 to {MAX_EVENT_SEQUENCE}"
        )
    kind = _enum_name(_Kind, event.kind)
    if not kind or event.kind == _Kind.KIND_UNSPECIFIED:
        raise errors.permanent(ErrorType.INVALID_ARGUMENT, f"{where}.kind {event.kind} is not a known kind")
    state = _enum_name(_State, event.state) if event.state else ""
    if state is None:
        raise errors.permanent(
            ErrorType.INVALID_ARGUMENT, f"{where}.state {event.state} is not a known state"
        )
    return EventRecord(
        run_id=event.run_id,
        sequence=event.sequence,
        kind=kind,
        time=event.time.ToDatetime(tzinfo=UTC) if event.HasField("time") else None,
        step=event.step,
        state=state,
        actor=event.actor,
        workflow_id=event.workflow_id,
        detail=event.detail[:MAX_EVENT_DETAIL],
    )


def _run_steps_of(progress: tenantdb_pb2.RunSteps) -> RunStepsRecord:
    if not progress.run_id:
        raise errors.permanent(ErrorType.INVALID_ARGUMENT, "progress needs a run_id")
    steps = tuple(
        (
            s.step,
            _enum_name(tenant_pb2.StepStatus, s.status) or "STEP_STATUS_UNSPECIFIED",
            s.error[:MAX_EVENT_DETAIL],
        )
        for s in progress.steps
    )
    return RunStepsRecord(
        workflow_id=progress.workflow_id,
        run_id=progress.run_id,
        sequence=progress.sequence,
        steps=steps,
        current_steps=tuple(progress.current_steps),
        ended=progress.ended,
    )


def _enum_name(enum: object, value: int) -> str | None:
    """The name of an enum value, stored as such; None for a value this build does not know."""
    try:
        return enum.Name(value)  # type: ignore[attr-defined, no-any-return]
    except ValueError:
        return None


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
