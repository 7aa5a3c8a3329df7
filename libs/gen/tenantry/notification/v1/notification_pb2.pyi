import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tenantry.idp.v1 import idp_pb2 as _idp_pb2
from tenantry.options.v1 import options_pb2 as _options_pb2
from tenantry.tenant.v1 import tenant_pb2 as _tenant_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NoticeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTICE_KIND_UNSPECIFIED: _ClassVar[NoticeKind]
    NOTICE_KIND_WELCOME: _ClassVar[NoticeKind]
    NOTICE_KIND_PROVISION_FAILED: _ClassVar[NoticeKind]
    NOTICE_KIND_DEPROVISIONED: _ClassVar[NoticeKind]
    NOTICE_KIND_DELETION_SCHEDULED: _ClassVar[NoticeKind]
    NOTICE_KIND_RESTORED: _ClassVar[NoticeKind]
    NOTICE_KIND_SUSPENDED: _ClassVar[NoticeKind]
    NOTICE_KIND_RESUMED: _ClassVar[NoticeKind]
NOTICE_KIND_UNSPECIFIED: NoticeKind
NOTICE_KIND_WELCOME: NoticeKind
NOTICE_KIND_PROVISION_FAILED: NoticeKind
NOTICE_KIND_DEPROVISIONED: NoticeKind
NOTICE_KIND_DELETION_SCHEDULED: NoticeKind
NOTICE_KIND_RESTORED: NoticeKind
NOTICE_KIND_SUSPENDED: NoticeKind
NOTICE_KIND_RESUMED: NoticeKind

class SendNoticeRequest(_message.Message):
    __slots__ = ("tenant_id", "kind", "recipient", "recipient_name", "tenant_display_name", "domains", "failed_step", "failure_reason", "idempotency_key", "purge_time", "leftover_resources", "admin_setup")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    FAILED_STEP_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PURGE_TIME_FIELD_NUMBER: _ClassVar[int]
    LEFTOVER_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    ADMIN_SETUP_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    kind: NoticeKind
    recipient: str
    recipient_name: str
    tenant_display_name: str
    domains: _containers.RepeatedScalarFieldContainer[str]
    failed_step: str
    failure_reason: str
    idempotency_key: str
    purge_time: _timestamp_pb2.Timestamp
    leftover_resources: _containers.RepeatedCompositeFieldContainer[_tenant_pb2.LeftoverResource]
    admin_setup: _idp_pb2.AdminSetup
    def __init__(self, tenant_id: _Optional[str] = ..., kind: _Optional[_Union[NoticeKind, str]] = ..., recipient: _Optional[str] = ..., recipient_name: _Optional[str] = ..., tenant_display_name: _Optional[str] = ..., domains: _Optional[_Iterable[str]] = ..., failed_step: _Optional[str] = ..., failure_reason: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., purge_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., leftover_resources: _Optional[_Iterable[_Union[_tenant_pb2.LeftoverResource, _Mapping]]] = ..., admin_setup: _Optional[_Union[_idp_pb2.AdminSetup, str]] = ...) -> None: ...

class SendNoticeResponse(_message.Message):
    __slots__ = ("message_id",)
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    def __init__(self, message_id: _Optional[str] = ...) -> None: ...
