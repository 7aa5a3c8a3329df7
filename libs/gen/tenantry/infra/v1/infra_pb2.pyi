from tenantry.options.v1 import options_pb2 as _options_pb2
from tenantry.tenant.v1 import tenant_pb2 as _tenant_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateBucketRequest(_message.Message):
    __slots__ = ("tenant_id", "plan_tier")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_TIER_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    plan_tier: _tenant_pb2.PlanTier
    def __init__(self, tenant_id: _Optional[str] = ..., plan_tier: _Optional[_Union[_tenant_pb2.PlanTier, str]] = ...) -> None: ...

class CreateBucketResponse(_message.Message):
    __slots__ = ("bucket",)
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    def __init__(self, bucket: _Optional[str] = ...) -> None: ...

class DeleteBucketRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class DeleteBucketResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpsertDnsRecordsRequest(_message.Message):
    __slots__ = ("tenant_id", "domains")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    domains: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant_id: _Optional[str] = ..., domains: _Optional[_Iterable[str]] = ...) -> None: ...

class UpsertDnsRecordsResponse(_message.Message):
    __slots__ = ("record_names",)
    RECORD_NAMES_FIELD_NUMBER: _ClassVar[int]
    record_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, record_names: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteDnsRecordsRequest(_message.Message):
    __slots__ = ("tenant_id", "domains")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    domains: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant_id: _Optional[str] = ..., domains: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteDnsRecordsResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ApplyInfrastructureRequest(_message.Message):
    __slots__ = ("tenant_id", "plan_tier")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_TIER_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    plan_tier: _tenant_pb2.PlanTier
    def __init__(self, tenant_id: _Optional[str] = ..., plan_tier: _Optional[_Union[_tenant_pb2.PlanTier, str]] = ...) -> None: ...

class ApplyInfrastructureResponse(_message.Message):
    __slots__ = ("outputs",)
    class OutputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.ScalarMap[str, str]
    def __init__(self, outputs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DestroyInfrastructureRequest(_message.Message):
    __slots__ = ("tenant_id", "expect_state")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECT_STATE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    expect_state: bool
    def __init__(self, tenant_id: _Optional[str] = ..., expect_state: _Optional[bool] = ...) -> None: ...

class DestroyInfrastructureResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateDeploymentRequest(_message.Message):
    __slots__ = ("tenant_id", "plan_tier", "infrastructure")
    class InfrastructureEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_TIER_FIELD_NUMBER: _ClassVar[int]
    INFRASTRUCTURE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    plan_tier: _tenant_pb2.PlanTier
    infrastructure: _containers.ScalarMap[str, str]
    def __init__(self, tenant_id: _Optional[str] = ..., plan_tier: _Optional[_Union[_tenant_pb2.PlanTier, str]] = ..., infrastructure: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CreateDeploymentResponse(_message.Message):
    __slots__ = ("service", "revision")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    service: str
    revision: str
    def __init__(self, service: _Optional[str] = ..., revision: _Optional[str] = ...) -> None: ...

class DeleteDeploymentRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class DeleteDeploymentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SuspendDeploymentRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class SuspendDeploymentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResumeDeploymentRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class ResumeDeploymentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
