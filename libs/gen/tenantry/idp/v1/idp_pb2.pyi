from tenantry.options.v1 import options_pb2 as _options_pb2
from tenantry.tenant.v1 import tenant_pb2 as _tenant_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AdminSetup(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ADMIN_SETUP_UNSPECIFIED: _ClassVar[AdminSetup]
    ADMIN_SETUP_SET_PASSWORD_LINK: _ClassVar[AdminSetup]
    ADMIN_SETUP_NO_SIGN_IN: _ClassVar[AdminSetup]
ADMIN_SETUP_UNSPECIFIED: AdminSetup
ADMIN_SETUP_SET_PASSWORD_LINK: AdminSetup
ADMIN_SETUP_NO_SIGN_IN: AdminSetup

class CreateRealmRequest(_message.Message):
    __slots__ = ("tenant_id", "display_name", "domains")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    display_name: str
    domains: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant_id: _Optional[str] = ..., display_name: _Optional[str] = ..., domains: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateRealmResponse(_message.Message):
    __slots__ = ("realm_id",)
    REALM_ID_FIELD_NUMBER: _ClassVar[int]
    realm_id: str
    def __init__(self, realm_id: _Optional[str] = ...) -> None: ...

class DeleteRealmRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class DeleteRealmResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateOidcClientRequest(_message.Message):
    __slots__ = ("tenant_id", "redirect_uris", "web_origins")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REDIRECT_URIS_FIELD_NUMBER: _ClassVar[int]
    WEB_ORIGINS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    redirect_uris: _containers.RepeatedScalarFieldContainer[str]
    web_origins: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant_id: _Optional[str] = ..., redirect_uris: _Optional[_Iterable[str]] = ..., web_origins: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateOidcClientResponse(_message.Message):
    __slots__ = ("client_id",)
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    def __init__(self, client_id: _Optional[str] = ...) -> None: ...

class DeleteOidcClientRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class DeleteOidcClientResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateAdminUserRequest(_message.Message):
    __slots__ = ("tenant_id", "admin")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    admin: _tenant_pb2.AdminContact
    def __init__(self, tenant_id: _Optional[str] = ..., admin: _Optional[_Union[_tenant_pb2.AdminContact, _Mapping]] = ...) -> None: ...

class CreateAdminUserResponse(_message.Message):
    __slots__ = ("user_id", "admin_setup")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ADMIN_SETUP_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    admin_setup: AdminSetup
    def __init__(self, user_id: _Optional[str] = ..., admin_setup: _Optional[_Union[AdminSetup, str]] = ...) -> None: ...

class DeleteAdminUserRequest(_message.Message):
    __slots__ = ("tenant_id", "email")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    email: str
    def __init__(self, tenant_id: _Optional[str] = ..., email: _Optional[str] = ...) -> None: ...

class DeleteAdminUserResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DisableTenantAccessRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class DisableTenantAccessResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EnableTenantAccessRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class EnableTenantAccessResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExportIdentityRequest(_message.Message):
    __slots__ = ("tenant_id", "backup_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    BACKUP_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    backup_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., backup_id: _Optional[str] = ...) -> None: ...

class ExportIdentityResponse(_message.Message):
    __slots__ = ("backup",)
    BACKUP_FIELD_NUMBER: _ClassVar[int]
    backup: _tenant_pb2.BackupObject
    def __init__(self, backup: _Optional[_Union[_tenant_pb2.BackupObject, _Mapping]] = ...) -> None: ...
