import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tenantry.options.v1 import options_pb2 as _options_pb2
from tenantry.tenant.v1 import tenant_pb2 as _tenant_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProvisionTenantRequest(_message.Message):
    __slots__ = ("tenant", "requested_by")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    tenant: _tenant_pb2.Tenant
    requested_by: str
    def __init__(self, tenant: _Optional[_Union[_tenant_pb2.Tenant, _Mapping]] = ..., requested_by: _Optional[str] = ...) -> None: ...

class ProvisionTenantResponse(_message.Message):
    __slots__ = ("state", "failed_step", "failure_reason")
    STATE_FIELD_NUMBER: _ClassVar[int]
    FAILED_STEP_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    state: _tenant_pb2.Tenant.State
    failed_step: str
    failure_reason: str
    def __init__(self, state: _Optional[_Union[_tenant_pb2.Tenant.State, str]] = ..., failed_step: _Optional[str] = ..., failure_reason: _Optional[str] = ...) -> None: ...

class DeprovisionTenantRequest(_message.Message):
    __slots__ = ("tenant_id", "requested_by", "grace_period", "skip_backup", "expected_state", "plan_tier")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    SKIP_BACKUP_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_STATE_FIELD_NUMBER: _ClassVar[int]
    PLAN_TIER_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    requested_by: str
    grace_period: _duration_pb2.Duration
    skip_backup: bool
    expected_state: _tenant_pb2.Tenant.State
    plan_tier: _tenant_pb2.PlanTier
    def __init__(self, tenant_id: _Optional[str] = ..., requested_by: _Optional[str] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., skip_backup: _Optional[bool] = ..., expected_state: _Optional[_Union[_tenant_pb2.Tenant.State, str]] = ..., plan_tier: _Optional[_Union[_tenant_pb2.PlanTier, str]] = ...) -> None: ...

class DeprovisionTenantResponse(_message.Message):
    __slots__ = ("state", "backups")
    STATE_FIELD_NUMBER: _ClassVar[int]
    BACKUPS_FIELD_NUMBER: _ClassVar[int]
    state: _tenant_pb2.Tenant.State
    backups: _containers.RepeatedCompositeFieldContainer[_tenant_pb2.BackupObject]
    def __init__(self, state: _Optional[_Union[_tenant_pb2.Tenant.State, str]] = ..., backups: _Optional[_Iterable[_Union[_tenant_pb2.BackupObject, _Mapping]]] = ...) -> None: ...

class UndeleteRequest(_message.Message):
    __slots__ = ("requested_by",)
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    requested_by: str
    def __init__(self, requested_by: _Optional[str] = ...) -> None: ...

class DeleteNowRequest(_message.Message):
    __slots__ = ("requested_by",)
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    requested_by: str
    def __init__(self, requested_by: _Optional[str] = ...) -> None: ...

class DeletionUpdateResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _tenant_pb2.Tenant.State
    def __init__(self, state: _Optional[_Union[_tenant_pb2.Tenant.State, str]] = ...) -> None: ...

class CancelRequested(_message.Message):
    __slots__ = ("requested_by",)
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    requested_by: str
    def __init__(self, requested_by: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _tenant_pb2.Tenant.State
    def __init__(self, state: _Optional[_Union[_tenant_pb2.Tenant.State, str]] = ...) -> None: ...

class ClaimRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClaimResponse(_message.Message):
    __slots__ = ("claimed", "state", "purge_time", "failure_reason", "failure_type")
    CLAIMED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PURGE_TIME_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    FAILURE_TYPE_FIELD_NUMBER: _ClassVar[int]
    claimed: bool
    state: _tenant_pb2.Tenant.State
    purge_time: _timestamp_pb2.Timestamp
    failure_reason: str
    failure_type: str
    def __init__(self, claimed: _Optional[bool] = ..., state: _Optional[_Union[_tenant_pb2.Tenant.State, str]] = ..., purge_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failure_reason: _Optional[str] = ..., failure_type: _Optional[str] = ...) -> None: ...

class CleanUpTenantRequest(_message.Message):
    __slots__ = ("tenant_id", "requested_by")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    requested_by: str
    def __init__(self, tenant_id: _Optional[str] = ..., requested_by: _Optional[str] = ...) -> None: ...

class CleanUpTenantResponse(_message.Message):
    __slots__ = ("leftover_resources",)
    LEFTOVER_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    leftover_resources: _containers.RepeatedCompositeFieldContainer[_tenant_pb2.LeftoverResource]
    def __init__(self, leftover_resources: _Optional[_Iterable[_Union[_tenant_pb2.LeftoverResource, _Mapping]]] = ...) -> None: ...

class SuspendTenantRequest(_message.Message):
    __slots__ = ("tenant_id", "requested_by", "plan_tier")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    PLAN_TIER_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    requested_by: str
    plan_tier: _tenant_pb2.PlanTier
    def __init__(self, tenant_id: _Optional[str] = ..., requested_by: _Optional[str] = ..., plan_tier: _Optional[_Union[_tenant_pb2.PlanTier, str]] = ...) -> None: ...

class SuspendTenantResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _tenant_pb2.Tenant.State
    def __init__(self, state: _Optional[_Union[_tenant_pb2.Tenant.State, str]] = ...) -> None: ...

class ResumeTenantRequest(_message.Message):
    __slots__ = ("tenant_id", "requested_by", "plan_tier")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    PLAN_TIER_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    requested_by: str
    plan_tier: _tenant_pb2.PlanTier
    def __init__(self, tenant_id: _Optional[str] = ..., requested_by: _Optional[str] = ..., plan_tier: _Optional[_Union[_tenant_pb2.PlanTier, str]] = ...) -> None: ...

class ResumeTenantResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _tenant_pb2.Tenant.State
    def __init__(self, state: _Optional[_Union[_tenant_pb2.Tenant.State, str]] = ...) -> None: ...

class RunProgress(_message.Message):
    __slots__ = ("steps", "current_steps", "state", "purge_time")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEPS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PURGE_TIME_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedCompositeFieldContainer[_tenant_pb2.StepProgress]
    current_steps: _containers.RepeatedScalarFieldContainer[str]
    state: _tenant_pb2.Tenant.State
    purge_time: _timestamp_pb2.Timestamp
    def __init__(self, steps: _Optional[_Iterable[_Union[_tenant_pb2.StepProgress, _Mapping]]] = ..., current_steps: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[_tenant_pb2.Tenant.State, str]] = ..., purge_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
