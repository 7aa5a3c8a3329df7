import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import error_details_pb2 as _error_details_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlanTier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLAN_TIER_UNSPECIFIED: _ClassVar[PlanTier]
    PLAN_TIER_POOLED: _ClassVar[PlanTier]
    PLAN_TIER_BRIDGE: _ClassVar[PlanTier]
    PLAN_TIER_SILO: _ClassVar[PlanTier]

class StepStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_STATUS_UNSPECIFIED: _ClassVar[StepStatus]
    STEP_STATUS_PENDING: _ClassVar[StepStatus]
    STEP_STATUS_RUNNING: _ClassVar[StepStatus]
    STEP_STATUS_COMPLETED: _ClassVar[StepStatus]
    STEP_STATUS_FAILED: _ClassVar[StepStatus]
    STEP_STATUS_COMPENSATED: _ClassVar[StepStatus]
    STEP_STATUS_SKIPPED: _ClassVar[StepStatus]
    STEP_STATUS_COMPENSATION_FAILED: _ClassVar[StepStatus]
PLAN_TIER_UNSPECIFIED: PlanTier
PLAN_TIER_POOLED: PlanTier
PLAN_TIER_BRIDGE: PlanTier
PLAN_TIER_SILO: PlanTier
STEP_STATUS_UNSPECIFIED: StepStatus
STEP_STATUS_PENDING: StepStatus
STEP_STATUS_RUNNING: StepStatus
STEP_STATUS_COMPLETED: StepStatus
STEP_STATUS_FAILED: StepStatus
STEP_STATUS_COMPENSATED: StepStatus
STEP_STATUS_SKIPPED: StepStatus
STEP_STATUS_COMPENSATION_FAILED: StepStatus

class Tenant(_message.Message):
    __slots__ = ("name", "tenant_id", "display_name", "plan_tier", "domains", "admin", "state", "current_step", "failure_reason", "failed_step", "resources", "create_time", "update_time", "steps", "purge_time", "backups", "leftover_resources", "last_operation", "current_steps")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Tenant.State]
        STATE_PENDING: _ClassVar[Tenant.State]
        STATE_PROVISIONING: _ClassVar[Tenant.State]
        STATE_ACTIVE: _ClassVar[Tenant.State]
        STATE_PROVISION_FAILED: _ClassVar[Tenant.State]
        STATE_SUSPENDED: _ClassVar[Tenant.State]
        STATE_DEPROVISIONING: _ClassVar[Tenant.State]
        STATE_DEPROVISIONED: _ClassVar[Tenant.State]
        STATE_DEPROVISION_FAILED: _ClassVar[Tenant.State]
        STATE_SUSPENDING: _ClassVar[Tenant.State]
        STATE_RESUMING: _ClassVar[Tenant.State]
    STATE_UNSPECIFIED: Tenant.State
    STATE_PENDING: Tenant.State
    STATE_PROVISIONING: Tenant.State
    STATE_ACTIVE: Tenant.State
    STATE_PROVISION_FAILED: Tenant.State
    STATE_SUSPENDED: Tenant.State
    STATE_DEPROVISIONING: Tenant.State
    STATE_DEPROVISIONED: Tenant.State
    STATE_DEPROVISION_FAILED: Tenant.State
    STATE_SUSPENDING: Tenant.State
    STATE_RESUMING: Tenant.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    PLAN_TIER_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    FAILED_STEP_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    PURGE_TIME_FIELD_NUMBER: _ClassVar[int]
    BACKUPS_FIELD_NUMBER: _ClassVar[int]
    LEFTOVER_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    LAST_OPERATION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    tenant_id: str
    display_name: str
    plan_tier: PlanTier
    domains: _containers.RepeatedScalarFieldContainer[str]
    admin: AdminContact
    state: Tenant.State
    current_step: str
    failure_reason: str
    failed_step: str
    resources: _containers.RepeatedCompositeFieldContainer[Resource]
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    steps: _containers.RepeatedCompositeFieldContainer[StepProgress]
    purge_time: _timestamp_pb2.Timestamp
    backups: _containers.RepeatedCompositeFieldContainer[BackupObject]
    leftover_resources: _containers.RepeatedCompositeFieldContainer[LeftoverResource]
    last_operation: Operation
    current_steps: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., tenant_id: _Optional[str] = ..., display_name: _Optional[str] = ..., plan_tier: _Optional[_Union[PlanTier, str]] = ..., domains: _Optional[_Iterable[str]] = ..., admin: _Optional[_Union[AdminContact, _Mapping]] = ..., state: _Optional[_Union[Tenant.State, str]] = ..., current_step: _Optional[str] = ..., failure_reason: _Optional[str] = ..., failed_step: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[Resource, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[StepProgress, _Mapping]]] = ..., purge_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., backups: _Optional[_Iterable[_Union[BackupObject, _Mapping]]] = ..., leftover_resources: _Optional[_Iterable[_Union[LeftoverResource, _Mapping]]] = ..., last_operation: _Optional[_Union[Operation, _Mapping]] = ..., current_steps: _Optional[_Iterable[str]] = ...) -> None: ...

class AdminContact(_message.Message):
    __slots__ = ("email", "given_name", "family_name")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAME_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    email: str
    given_name: str
    family_name: str
    def __init__(self, email: _Optional[str] = ..., given_name: _Optional[str] = ..., family_name: _Optional[str] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("kind", "id", "domain")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    kind: str
    id: str
    domain: str
    def __init__(self, kind: _Optional[str] = ..., id: _Optional[str] = ..., domain: _Optional[str] = ...) -> None: ...

class StepProgress(_message.Message):
    __slots__ = ("step", "status", "error")
    STEP_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    step: str
    status: StepStatus
    error: str
    def __init__(self, step: _Optional[str] = ..., status: _Optional[_Union[StepStatus, str]] = ..., error: _Optional[str] = ...) -> None: ...

class LeftoverResource(_message.Message):
    __slots__ = ("step", "kind", "id", "domain", "reason")
    STEP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    step: str
    kind: str
    id: str
    domain: str
    reason: str
    def __init__(self, step: _Optional[str] = ..., kind: _Optional[str] = ..., id: _Optional[str] = ..., domain: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("kind", "outcome", "failed_step", "failure_reason", "failure_type", "workflow_id", "run_id", "start_time", "end_time", "trace_id", "error")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Operation.Kind]
        KIND_PROVISION: _ClassVar[Operation.Kind]
        KIND_DEPROVISION: _ClassVar[Operation.Kind]
        KIND_SUSPEND: _ClassVar[Operation.Kind]
        KIND_RESUME: _ClassVar[Operation.Kind]
        KIND_UNDELETE: _ClassVar[Operation.Kind]
        KIND_CLEAN_UP: _ClassVar[Operation.Kind]
    KIND_UNSPECIFIED: Operation.Kind
    KIND_PROVISION: Operation.Kind
    KIND_DEPROVISION: Operation.Kind
    KIND_SUSPEND: Operation.Kind
    KIND_RESUME: Operation.Kind
    KIND_UNDELETE: Operation.Kind
    KIND_CLEAN_UP: Operation.Kind
    class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OUTCOME_UNSPECIFIED: _ClassVar[Operation.Outcome]
        OUTCOME_RUNNING: _ClassVar[Operation.Outcome]
        OUTCOME_SUCCEEDED: _ClassVar[Operation.Outcome]
        OUTCOME_FAILED: _ClassVar[Operation.Outcome]
        OUTCOME_CANCELLED: _ClassVar[Operation.Outcome]
    OUTCOME_UNSPECIFIED: Operation.Outcome
    OUTCOME_RUNNING: Operation.Outcome
    OUTCOME_SUCCEEDED: Operation.Outcome
    OUTCOME_FAILED: Operation.Outcome
    OUTCOME_CANCELLED: Operation.Outcome
    KIND_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    FAILED_STEP_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    FAILURE_TYPE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    kind: Operation.Kind
    outcome: Operation.Outcome
    failed_step: str
    failure_reason: str
    failure_type: str
    workflow_id: str
    run_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    trace_id: str
    error: _error_details_pb2.ErrorInfo
    def __init__(self, kind: _Optional[_Union[Operation.Kind, str]] = ..., outcome: _Optional[_Union[Operation.Outcome, str]] = ..., failed_step: _Optional[str] = ..., failure_reason: _Optional[str] = ..., failure_type: _Optional[str] = ..., workflow_id: _Optional[str] = ..., run_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_id: _Optional[str] = ..., error: _Optional[_Union[_error_details_pb2.ErrorInfo, _Mapping]] = ...) -> None: ...

class BackupObject(_message.Message):
    __slots__ = ("kind", "uri", "size_bytes", "sha256")
    KIND_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    kind: str
    uri: str
    size_bytes: int
    sha256: str
    def __init__(self, kind: _Optional[str] = ..., uri: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class TenantEvent(_message.Message):
    __slots__ = ("name", "time", "kind", "step", "state", "actor", "workflow_id", "run_id", "detail", "sequence")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[TenantEvent.Kind]
        KIND_REQUESTED: _ClassVar[TenantEvent.Kind]
        KIND_STATE_CHANGED: _ClassVar[TenantEvent.Kind]
        KIND_STEP_STARTED: _ClassVar[TenantEvent.Kind]
        KIND_STEP_COMPLETED: _ClassVar[TenantEvent.Kind]
        KIND_STEP_FAILED: _ClassVar[TenantEvent.Kind]
        KIND_STEP_COMPENSATED: _ClassVar[TenantEvent.Kind]
        KIND_STEP_COMPENSATION_FAILED: _ClassVar[TenantEvent.Kind]
    KIND_UNSPECIFIED: TenantEvent.Kind
    KIND_REQUESTED: TenantEvent.Kind
    KIND_STATE_CHANGED: TenantEvent.Kind
    KIND_STEP_STARTED: TenantEvent.Kind
    KIND_STEP_COMPLETED: TenantEvent.Kind
    KIND_STEP_FAILED: TenantEvent.Kind
    KIND_STEP_COMPENSATED: TenantEvent.Kind
    KIND_STEP_COMPENSATION_FAILED: TenantEvent.Kind
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    time: _timestamp_pb2.Timestamp
    kind: TenantEvent.Kind
    step: str
    state: Tenant.State
    actor: str
    workflow_id: str
    run_id: str
    detail: str
    sequence: int
    def __init__(self, name: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[TenantEvent.Kind, str]] = ..., step: _Optional[str] = ..., state: _Optional[_Union[Tenant.State, str]] = ..., actor: _Optional[str] = ..., workflow_id: _Optional[str] = ..., run_id: _Optional[str] = ..., detail: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...
