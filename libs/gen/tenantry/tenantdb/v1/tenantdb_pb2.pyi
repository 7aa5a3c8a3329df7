import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tenantry.options.v1 import options_pb2 as _options_pb2
from tenantry.tenant.v1 import tenant_pb2 as _tenant_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MarkProvisioningRequest(_message.Message):
    __slots__ = ("tenant", "workflow_id", "run_id")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    tenant: _tenant_pb2.Tenant
    workflow_id: str
    run_id: str
    def __init__(self, tenant: _Optional[_Union[_tenant_pb2.Tenant, _Mapping]] = ..., workflow_id: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class MarkProvisioningResponse(_message.Message):
    __slots__ = ("leftover_resources",)
    LEFTOVER_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    leftover_resources: _containers.RepeatedCompositeFieldContainer[_tenant_pb2.LeftoverResource]
    def __init__(self, leftover_resources: _Optional[_Iterable[_Union[_tenant_pb2.LeftoverResource, _Mapping]]] = ...) -> None: ...

class MarkProvisionFailedRequest(_message.Message):
    __slots__ = ("tenant_id", "failed_step", "reason", "tenant", "run_id", "leftover_resources", "cancelled", "failure_type")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    FAILED_STEP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LEFTOVER_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    FAILURE_TYPE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    failed_step: str
    reason: str
    tenant: _tenant_pb2.Tenant
    run_id: str
    leftover_resources: _containers.RepeatedCompositeFieldContainer[_tenant_pb2.LeftoverResource]
    cancelled: bool
    failure_type: str
    def __init__(self, tenant_id: _Optional[str] = ..., failed_step: _Optional[str] = ..., reason: _Optional[str] = ..., tenant: _Optional[_Union[_tenant_pb2.Tenant, _Mapping]] = ..., run_id: _Optional[str] = ..., leftover_resources: _Optional[_Iterable[_Union[_tenant_pb2.LeftoverResource, _Mapping]]] = ..., cancelled: _Optional[bool] = ..., failure_type: _Optional[str] = ...) -> None: ...

class MarkProvisionFailedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MarkActiveRequest(_message.Message):
    __slots__ = ("tenant_id", "run_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    run_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class MarkActiveResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MarkDeprovisioningRequest(_message.Message):
    __slots__ = ("tenant_id", "workflow_id", "purge_time", "run_id", "expected_state")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    PURGE_TIME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_STATE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    workflow_id: str
    purge_time: _timestamp_pb2.Timestamp
    run_id: str
    expected_state: _tenant_pb2.Tenant.State
    def __init__(self, tenant_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., purge_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_id: _Optional[str] = ..., expected_state: _Optional[_Union[_tenant_pb2.Tenant.State, str]] = ...) -> None: ...

class MarkDeprovisioningResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MarkDeprovisionFailedRequest(_message.Message):
    __slots__ = ("tenant_id", "run_id", "failed_step", "reason", "failure_type", "backups", "purge_begun")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FAILED_STEP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FAILURE_TYPE_FIELD_NUMBER: _ClassVar[int]
    BACKUPS_FIELD_NUMBER: _ClassVar[int]
    PURGE_BEGUN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    run_id: str
    failed_step: str
    reason: str
    failure_type: str
    backups: _containers.RepeatedCompositeFieldContainer[_tenant_pb2.BackupObject]
    purge_begun: bool
    def __init__(self, tenant_id: _Optional[str] = ..., run_id: _Optional[str] = ..., failed_step: _Optional[str] = ..., reason: _Optional[str] = ..., failure_type: _Optional[str] = ..., backups: _Optional[_Iterable[_Union[_tenant_pb2.BackupObject, _Mapping]]] = ..., purge_begun: _Optional[bool] = ...) -> None: ...

class MarkDeprovisionFailedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MarkAccessChangingRequest(_message.Message):
    __slots__ = ("tenant_id", "suspend", "workflow_id", "run_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SUSPEND_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    suspend: bool
    workflow_id: str
    run_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., suspend: _Optional[bool] = ..., workflow_id: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class MarkAccessChangingResponse(_message.Message):
    __slots__ = ("found", "tenant", "claimed")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_FIELD_NUMBER: _ClassVar[int]
    found: bool
    tenant: _tenant_pb2.Tenant
    claimed: bool
    def __init__(self, found: _Optional[bool] = ..., tenant: _Optional[_Union[_tenant_pb2.Tenant, _Mapping]] = ..., claimed: _Optional[bool] = ...) -> None: ...

class MarkAccessChangeFailedRequest(_message.Message):
    __slots__ = ("tenant_id", "run_id", "failed_step", "reason", "failure_type")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    FAILED_STEP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FAILURE_TYPE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    run_id: str
    failed_step: str
    reason: str
    failure_type: str
    def __init__(self, tenant_id: _Optional[str] = ..., run_id: _Optional[str] = ..., failed_step: _Optional[str] = ..., reason: _Optional[str] = ..., failure_type: _Optional[str] = ...) -> None: ...

class MarkAccessChangeFailedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RecordLeftoversRequest(_message.Message):
    __slots__ = ("tenant_id", "workflow_id", "run_id", "leftover_resources")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    LEFTOVER_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    workflow_id: str
    run_id: str
    leftover_resources: _containers.RepeatedCompositeFieldContainer[_tenant_pb2.LeftoverResource]
    def __init__(self, tenant_id: _Optional[str] = ..., workflow_id: _Optional[str] = ..., run_id: _Optional[str] = ..., leftover_resources: _Optional[_Iterable[_Union[_tenant_pb2.LeftoverResource, _Mapping]]] = ...) -> None: ...

class RecordLeftoversResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RecordFailedOperationRequest(_message.Message):
    __slots__ = ("tenant_id", "operation")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    operation: _tenant_pb2.Operation
    def __init__(self, tenant_id: _Optional[str] = ..., operation: _Optional[_Union[_tenant_pb2.Operation, _Mapping]] = ...) -> None: ...

class RecordFailedOperationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MarkDeprovisionedRequest(_message.Message):
    __slots__ = ("tenant_id", "backups")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    BACKUPS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    backups: _containers.RepeatedCompositeFieldContainer[_tenant_pb2.BackupObject]
    def __init__(self, tenant_id: _Optional[str] = ..., backups: _Optional[_Iterable[_Union[_tenant_pb2.BackupObject, _Mapping]]] = ...) -> None: ...

class MarkDeprovisionedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetTenantRecordRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetTenantRecordResponse(_message.Message):
    __slots__ = ("found", "tenant", "state_before_deletion")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    STATE_BEFORE_DELETION_FIELD_NUMBER: _ClassVar[int]
    found: bool
    tenant: _tenant_pb2.Tenant
    state_before_deletion: _tenant_pb2.Tenant.State
    def __init__(self, found: _Optional[bool] = ..., tenant: _Optional[_Union[_tenant_pb2.Tenant, _Mapping]] = ..., state_before_deletion: _Optional[_Union[_tenant_pb2.Tenant.State, str]] = ...) -> None: ...

class CreateTenantSchemaRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class CreateTenantSchemaResponse(_message.Message):
    __slots__ = ("schema",)
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    schema: str
    def __init__(self, schema: _Optional[str] = ...) -> None: ...

class DropTenantSchemaRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class DropTenantSchemaResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RecordResourcesRequest(_message.Message):
    __slots__ = ("tenant_id", "resources")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    resources: _containers.RepeatedCompositeFieldContainer[_tenant_pb2.Resource]
    def __init__(self, tenant_id: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[_tenant_pb2.Resource, _Mapping]]] = ...) -> None: ...

class RecordResourcesResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteResourceRecordsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class DeleteResourceRecordsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MarkSuspendedRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class MarkSuspendedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MarkResumedRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class MarkResumedResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MarkRestoredRequest(_message.Message):
    __slots__ = ("tenant_id", "state")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    state: _tenant_pb2.Tenant.State
    def __init__(self, tenant_id: _Optional[str] = ..., state: _Optional[_Union[_tenant_pb2.Tenant.State, str]] = ...) -> None: ...

class MarkRestoredResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BackupTenantSchemaRequest(_message.Message):
    __slots__ = ("tenant_id", "backup_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    BACKUP_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    backup_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., backup_id: _Optional[str] = ...) -> None: ...

class BackupTenantSchemaResponse(_message.Message):
    __slots__ = ("backup",)
    BACKUP_FIELD_NUMBER: _ClassVar[int]
    backup: _tenant_pb2.BackupObject
    def __init__(self, backup: _Optional[_Union[_tenant_pb2.BackupObject, _Mapping]] = ...) -> None: ...

class AppendTenantEventsRequest(_message.Message):
    __slots__ = ("tenant_id", "events", "progress")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    events: _containers.RepeatedCompositeFieldContainer[_tenant_pb2.TenantEvent]
    progress: RunSteps
    def __init__(self, tenant_id: _Optional[str] = ..., events: _Optional[_Iterable[_Union[_tenant_pb2.TenantEvent, _Mapping]]] = ..., progress: _Optional[_Union[RunSteps, _Mapping]] = ...) -> None: ...

class RunSteps(_message.Message):
    __slots__ = ("workflow_id", "run_id", "sequence", "steps", "current_steps", "ended")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEPS_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    run_id: str
    sequence: int
    steps: _containers.RepeatedCompositeFieldContainer[_tenant_pb2.StepProgress]
    current_steps: _containers.RepeatedScalarFieldContainer[str]
    ended: bool
    def __init__(self, workflow_id: _Optional[str] = ..., run_id: _Optional[str] = ..., sequence: _Optional[int] = ..., steps: _Optional[_Iterable[_Union[_tenant_pb2.StepProgress, _Mapping]]] = ..., current_steps: _Optional[_Iterable[str]] = ..., ended: _Optional[bool] = ...) -> None: ...

class AppendTenantEventsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
