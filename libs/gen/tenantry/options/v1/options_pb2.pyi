from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class Permission(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PERMISSION_UNSPECIFIED: _ClassVar[Permission]
    PERMISSION_VIEW: _ClassVar[Permission]
    PERMISSION_OPERATE: _ClassVar[Permission]
    PERMISSION_ADMIN: _ClassVar[Permission]
    PERMISSION_DELETE_WITHOUT_BACKUP: _ClassVar[Permission]
PERMISSION_UNSPECIFIED: Permission
PERMISSION_VIEW: Permission
PERMISSION_OPERATE: Permission
PERMISSION_ADMIN: Permission
PERMISSION_DELETE_WITHOUT_BACKUP: Permission
TASK_QUEUE_FIELD_NUMBER: _ClassVar[int]
task_queue: _descriptor.FieldDescriptor
REQUIRED_PERMISSION_FIELD_NUMBER: _ClassVar[int]
required_permission: _descriptor.FieldDescriptor
FIELD_PERMISSION_FIELD_NUMBER: _ClassVar[int]
field_permission: _descriptor.FieldDescriptor
