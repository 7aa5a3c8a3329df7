"""Authentication, authorization and limits of the public API, in one interceptor.

Every TenantService call is authenticated (a bearer token if the call has
one, else the TLS client certificate), then authorized against the
permission its rpc declares in proto (and the stronger one a set field may
declare, such as skip_backup), then admitted by the per-principal limits.
Handlers read the verified principal with `current()`.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import logging
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from libs import auth, config
from libs.auth import AccessPolicy, AuthenticationError, IssuerUnavailable, Principal, TokenVerifier
from libs.config import ConfigError, ServerTls
from services.tenant_api import errors
from services.tenant_api.handlers import TenantServiceInterceptor, rewrap
from tenantry.options.v1 import options_pb2
from tenantry.tenant.v1 import tenant_service_pb2

log = logging.getLogger(__name__)
_SERVICE = tenant_service_pb2.DESCRIPTOR.services_by_name["TenantService"]
SERVICE_NAME = _SERVICE.full_name
# rpc name -> the permission it needs, as declared in proto.
REQUIRED: dict[str, int] = {
    m.name: m.GetOptions().Extensions[options_pb2.required_permission] for m in _SERVICE.methods
}
_NAME = re.compile(r"tenants/([^/]+)")
_PRINCIPAL: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")
_VIEW_SCOPE: contextvars.ContextVar[frozenset[str] | None] = contextvars.ContextVar(
    "view_scope", default=None
)


def current() -> Principal:
    """The verified caller of the request being handled."""
    return _PRINCIPAL.get()


def view_scope() -> frozenset[str] | None:
    """The tenants the caller may see (None: all); ListTenants shows only these."""
    return _VIEW_SCOPE.get()


def permission_name(permission: int) -> str:
    return str(options_pb2.Permission.Name(permission))  # type: ignore[arg-type]


def _field_permissions(message: Message) -> list[int]:
    """The further permissions that the set fields of `message` declare."""
    needed = []
    for descriptor, _ in message.ListFields():
        extra = descriptor.GetOptions().Extensions[options_pb2.field_permission]
        if extra:
            needed.append(extra)
    return needed


# The request field that names the tenant a call is about, in the order looked for.
_TENANT_FIELDS = ("tenant_id", "name", "parent")


def tenant_of(request: Message) -> tuple[bool, str | None]:
    """Whether the request is about one tenant, and which (None: not a valid name)."""
    fields = request.DESCRIPTOR.fields_by_name
    for name in _TENANT_FIELDS:
        if name in fields:
            value = str(getattr(request, name))
            if name == "tenant_id":
                return True, value or None
            match = _NAME.fullmatch(value)
            return True, match.group(1) if match else None
    return False, None


@dataclass(frozen=True)
class Limits:
    """Per-principal limits of one facade process (replicas each keep their own)."""

    # Mutating calls (every permission but VIEW): a token bucket per principal.
    mutations_per_second: float = 10.0
    mutation_burst: int = 50
    # Open WatchTenant streams per principal.
    watch_streams: int = 20
    # No server stream outlives this; the client opens a new one.
    stream_duration: timedelta = timedelta(hours=1)

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            mutations_per_second=float(config.integer("TENANTRY_MUTATIONS_PER_MINUTE", 600)) / 60,
            mutation_burst=config.integer("TENANTRY_MUTATION_BURST", 50),
            watch_streams=config.integer("TENANTRY_MAX_WATCH_STREAMS", 20),
            stream_duration=timedelta(seconds=config.integer("TENANTRY_MAX_STREAM_SECONDS", 3600)),
        )


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class _Usage:
    """What each principal currently uses of its limits."""

    limits: Limits
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    streams: dict[str, int] = field(default_factory=dict)

    def admit_mutation(self, principal: Principal) -> None:
        now = time.monotonic()
        rate, burst = self.limits.mutations_per_second, self.limits.mutation_burst
        bucket = self.buckets.setdefault(principal.id, _Bucket(tokens=burst, at=now))
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens < 1:
            wait = timedelta(seconds=(1 - bucket.tokens) / rate)
            raise errors.rate_limited(wait)
        bucket.tokens -= 1

    @contextmanager
    def stream(self, principal: Principal) -> Iterator[None]:
        open_now = self.streams.get(principal.id, 0)
        if open_now >= self.limits.watch_streams:
            raise errors.too_many_streams(self.limits.watch_streams)
        self.streams[principal.id] = open_now + 1
        try:
            yield
        finally:
            left = self.streams[principal.id] - 1
            if left:
                self.streams[principal.id] = left
            else:
                del self.streams[principal.id]


@dataclass(frozen=True)
class Access:
    """How the facade authenticates: its TLS identity, which credentials it
    accepts, and the policy that authorizes them."""

    cert_file: Path | None = None
    key_file: Path | None = None
    # Client certificates are required and checked against this CA (mTLS).
    client_ca_file: Path | None = None
    tokens: TokenVerifier | None = None
    policy: AccessPolicy = field(default_factory=lambda: AccessPolicy([]))
    # TENANTRY_AUTH=none: every caller is let in (loopback only).
    unauthenticated: bool = False

    @classmethod
    def from_env(cls, address: str) -> Access:
        mode = config.choice("TENANTRY_AUTH", "on", ("on", "none"))
        tls = ServerTls.from_env()
        cert, key = (tls.cert_file, tls.key_file) if tls else (None, None)
        client_ca = tls.client_ca_file if tls else None
        if mode == "none":
            if not _loopback(address):
                raise ConfigError(
                    f"TENANTRY_AUTH=none serves unauthenticated callers, so only on a loopback address, "
                    f"not TENANTRY_GRPC_ADDRESS={address}"
                )
            log.warning("TENANTRY_AUTH=none: callers are not authenticated (loopback only)")
            return cls(cert_file=cert, key_file=key, unauthenticated=True)
        if cert is None:
            raise ConfigError(
                "TENANTRY_TLS_CERT_FILE is not set: the API serves TLS only "
                "(or set TENANTRY_AUTH=none to run without authentication on loopback)"
            )
        tokens = TokenVerifier.from_env()
        if client_ca is None and tokens is None:
            raise ConfigError(
                "no way to authenticate callers: set TENANTRY_TLS_CLIENT_CA_FILE (mTLS), "
                "TENANTRY_OIDC_ISSUER (bearer tokens) or both"
            )
        return cls(
            cert_file=cert,
            key_file=key,
            client_ca_file=client_ca,
            tokens=tokens,
            policy=AccessPolicy.from_env(),
        )

    def probe_tls(self) -> ServerTls | None:
        """TLS of the separate health address: the same certificate, no client
        certificates (probes have none)."""
        if self.cert_file is None or self.key_file is None:
            return None
        return ServerTls(cert_file=self.cert_file, key_file=self.key_file)

    def server_credentials(self) -> grpc.ServerCredentials | None:
        """TLS credentials of the listener; None only without authentication."""
        if self.cert_file is None or self.key_file is None:
            return None
        return grpc.ssl_server_credentials(
            [(self.key_file.read_bytes(), self.cert_file.read_bytes())],
            root_certificates=self.client_ca_file.read_bytes() if self.client_ca_file else None,
            require_client_auth=self.client_ca_file is not None,
        )

    async def authenticate(self, context: grpc.aio.ServicerContext) -> Principal:
        if self.unauthenticated:
            return Principal(id=f"unauthenticated:{context.peer()}", kind="unauthenticated")
        token = _bearer(context)
        if token is not None:
            if self.tokens is None:
                raise errors.unauthenticated(
                    "TOKEN_NOT_ACCEPTED", "this server does not accept bearer tokens"
                )
            try:
                if self.tokens.needs_keys(token):
                    # Fetching the issuer's keys blocks: not on the event loop.
                    return await asyncio.to_thread(self.tokens.verify, token)
                return self.tokens.verify(token)
            except AuthenticationError as err:
                raise errors.unauthenticated(err.reason, err.message) from None
            except IssuerUnavailable:
                raise errors.unavailable("token issuer") from None
        pem = (context.auth_context() or {}).get("x509_pem_cert")
        if pem:
            try:
                return auth.certificate_principal(pem[0])
            except AuthenticationError as err:
                raise errors.unauthenticated(err.reason, err.message) from None
        raise errors.unauthenticated(
            "CREDENTIALS_MISSING", "the call has no credentials: a client certificate or a bearer token"
        )

    def authorize(self, principal: Principal, rpc: str, request: Message) -> frozenset[str] | None:
        """Raises PERMISSION_DENIED unless `principal` may make this call;
        returns the tenants it may view (None: all) for calls about no one tenant."""
        required = REQUIRED.get(rpc, 0)
        if not required:
            raise errors.permission_denied("PERMISSION_UNSPECIFIED")
        about_one_tenant, tenant = tenant_of(request)
        for permission in (required, *_field_permissions(request)):
            scope = self.policy.scope(principal, permission)
            if scope is None:
                continue  # on every tenant
            if about_one_tenant:
                if tenant is not None and tenant in scope:
                    continue
            elif scope:
                continue  # a call about no one tenant (ListTenants) sees only those in scope
            raise errors.permission_denied(permission_name(permission))
        return None if about_one_tenant else self.policy.scope(principal, auth.VIEW)


def _bearer(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise errors.unauthenticated(
                    "CREDENTIALS_MALFORMED", "authorization must be `Bearer <token>`"
                )
            return token.strip()
    return None


def _loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AccessInterceptor(TenantServiceInterceptor):
    """Authenticates, authorizes and limits every TenantService call; health
    and reflection stay open (reflection can be turned off, see server.py)."""

    def __init__(self, access: Access, limits: Limits) -> None:
        self._access = access
        self._usage = _Usage(limits)
        self._limits = limits

    def wrap(self, handler: grpc.RpcMethodHandler, rpc: str) -> grpc.RpcMethodHandler:
        return rewrap(
            handler,
            unary=lambda inner: self._unary(inner, rpc),
            stream=lambda inner: self._stream(inner, rpc),
        )

    async def _admit(self, rpc: str, request: Message, context: grpc.aio.ServicerContext) -> Principal:
        principal = await self._access.authenticate(context)
        scope = self._access.authorize(principal, rpc, request)
        if REQUIRED.get(rpc) != auth.VIEW:
            self._usage.admit_mutation(principal)
        _PRINCIPAL.set(principal)
        _VIEW_SCOPE.set(scope)
        return principal

    def _unary(self, inner: Callable[..., Awaitable[Any]], rpc: str) -> Callable[..., Awaitable[Any]]:
        async def admitted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._admit(rpc, request, context)
            return await inner(request, context)

        return admitted

    def _stream(
        self, inner: Callable[..., AsyncGenerator[Any, None]], rpc: str
    ) -> Callable[..., AsyncIterator[Any]]:
        limit = self._limits.stream_duration.total_seconds()

        async def admitted(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            principal = await self._admit(rpc, request, context)
            with self._usage.stream(principal):
                deadline = time.monotonic() + limit
                updates = inner(request, context)
                try:
                    while True:
                        remaining = deadline - time.monotonic()
                        try:
                            item = await asyncio.wait_for(anext(updates), max(remaining, 0))
                        except StopAsyncIteration:
                            return
                        except TimeoutError:
                            raise errors.stream_too_long(self._limits.stream_duration) from None
                        yield item
                finally:
                    await updates.aclose()

        return admitted
