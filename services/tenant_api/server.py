"""The tenant API process: a grpc.aio server with TenantService, health and
reflection, stopped gracefully on SIGTERM. Every TenantService call is
authenticated and authorized (auth.py); health stays open."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from temporalio.client import Client
from temporalio.service import RetryConfig

from libs import config, namespace, search, tracing
from libs.health import HealthEndpoint
from libs.temporal import connect
from services.tenant_api import reflection
from services.tenant_api.auth import Access, AccessInterceptor, Limits
from services.tenant_api.errors import ApiError, malformed_request
from services.tenant_api.handlers import SERVICE_NAME, TenantServiceInterceptor, rewrap
from services.tenant_api.metrics import RpcMetrics
from services.tenant_api.registry import Registry
from services.tenant_api.rpc_log import RpcLog
from services.tenant_api.servicer import TenantService
from tenantry.tenant.v1 import tenant_service_pb2, tenant_service_pb2_grpc

log = logging.getLogger(__name__)
# Each Temporal call of a request retries for at most this long (the SDK's default is ~10 s).
TEMPORAL_RETRIES = RetryConfig(max_elapsed_time_millis=2000)
# Requests are small; anything larger is refused before it is parsed.
MAX_MESSAGE_BYTES = 64 * 1024
# Concurrent calls on one connection (HTTP/2 streams); more wait for a free one.
MAX_CONCURRENT_STREAMS = 100
# A flood of bodies that do not parse costs the log a line per rpc and interval, not one per request.
MALFORMED_LOG_INTERVAL = 10.0


class ErrorInterceptor(TenantServiceInterceptor):
    """Turns ApiError into its status; anything unexpected into a bare
    INTERNAL (logged with an id that the client sees), never a stack trace."""

    def wrap(self, handler: grpc.RpcMethodHandler, rpc: str) -> grpc.RpcMethodHandler:
        method = f"/{SERVICE_NAME}/{rpc}"
        # A body that does not parse reaches the handler as _Malformed, which
        # refuses it (grpc.aio would answer UNKNOWN and log a traceback).
        return rewrap(
            handler,
            unary=lambda inner: _guard_unary(inner, method),
            stream=lambda inner: _guard_stream(inner, method),
            request_deserializer=_tolerant(handler.request_deserializer),
        )


class _Malformed:
    """A request body that did not parse; only its size is kept (never its bytes)."""

    def __init__(self, size: int) -> None:
        self.size = size


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception:  # DecodeError, or whatever else a bad body makes the parser raise
            return _Malformed(len(raw))

    return parse


class _RefusalLog:
    """One short line per refused body, and during a flood one per method and
    MALFORMED_LOG_INTERVAL, counting the bodies refused since the last line."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def refused(self, rpc: str, size: int) -> None:
        now = self._clock()
        last = self._last.get(rpc)
        if last is not None and now - last < MALFORMED_LOG_INTERVAL:
            self._unlogged[rpc] = self._unlogged.get(rpc, 0) + 1
            return
        self._last[rpc] = now
        more = self._unlogged.pop(rpc, 0)
        log.warning(
            "%s: refused a body of %d bytes that does not parse%s",
            rpc,
            size,
            f" (and {more} more since the last line)" if more else "",
        )


_refusals = _RefusalLog()


async def _refuse_malformed(context: grpc.aio.ServicerContext, request: _Malformed, method: str) -> None:
    rpc = method.rsplit("/", 1)[-1]
    message_type = tenant_service_pb2.DESCRIPTOR.services_by_name["TenantService"].methods_by_name[rpc]
    _refusals.refused(rpc, request.size)
    await context.abort_with_status(malformed_request(message_type.input_type.full_name).to_status())


async def _fail(context: grpc.aio.ServicerContext, err: Exception, method: str) -> None:
    if isinstance(err, ApiError):
        await context.abort_with_status(err.to_status())
    incident = uuid.uuid4().hex[:12]
    log.error("%s failed (incident %s)", method, incident, exc_info=err)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident})")


def _guard_unary(inner: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, _Malformed):
            await _refuse_malformed(context, request, method)
        try:
            return await inner(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as err:
            await _fail(context, err, method)

    return guarded


def _guard_stream(inner: Callable[..., AsyncIterator[Any]], method: str) -> Callable[..., AsyncIterator[Any]]:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if isinstance(request, _Malformed):
            await _refuse_malformed(context, request, method)
        try:
            async for item in inner(request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as err:
            await _fail(context, err, method)

    return guarded


def create_server(
    address: str,
    client: Client,
    registry: Registry,
    *,
    access: Access,
    limits: Limits | None = None,
    reflection_on: bool = True,
    service: TenantService | None = None,
    reuse_port: bool = False,
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """Builds the server bound to `address` (port 0 picks a free one);
    `reuse_port` lets several facade processes share one address (SO_REUSEPORT)."""
    server = grpc.aio.server(
        # The server span (tracing, when on) is outermost: it times and continues
        # every call; the metrics next, to count every answer's code; the rpc log
        # sees each call's final status; the error guard turns the access
        # checks' errors into statuses too.
        interceptors=[
            *tracing.server_interceptors(),
            RpcMetrics(),
            RpcLog(),
            ErrorInterceptor(),
            AccessInterceptor(access, limits or Limits()),
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_concurrent_streams", MAX_CONCURRENT_STREAMS),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
    )
    tenant_service_pb2_grpc.add_TenantServiceServicer_to_server(
        service or TenantService(client, registry), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if reflection_on:
        # v1 and v1alpha, each listing both (reflection.py).
        reflection.enable(server, (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name))
    credentials = access.server_credentials()
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise config.ConfigError(f"cannot listen on {address}")
    return server, port, health_servicer


async def run() -> None:
    address = config.address("TENANTRY_GRPC_ADDRESS", "127.0.0.1:50051")
    # Domains are checked against them: a bad value stops the process now.
    namespace.dns_zone()
    namespace.app_hostname()
    access = Access.from_env(address)
    limits = Limits.from_env()
    reflection_on = config.choice("TENANTRY_REFLECTION", "on", ("on", "off")) == "on"
    health_address = config.optional("TENANTRY_HEALTH_ADDRESS")
    # Probes cannot present client certificates: health is also served on its own address.
    probes = (
        HealthEndpoint(
            config.address("TENANTRY_HEALTH_ADDRESS"),
            tls=access.probe_tls() if config.health_tls_on() else None,
        )
        if health_address
        else None
    )
    registry = Registry.from_env()
    # A request path answers UNAVAILABLE within a couple of seconds when Temporal does not answer.
    client = await connect(retry_config=TEMPORAL_RETRIES)
    await search.check_registered(client)
    await registry.open()
    service = TenantService(client, registry)
    server, port, health_servicer = create_server(
        address,
        client,
        registry,
        access=access,
        limits=limits,
        reflection_on=reflection_on,
        service=service,
        # Off unless asked: a second process on the port by mistake would share the traffic silently.
        reuse_port=config.choice("TENANTRY_GRPC_REUSE_PORT", "off", ("on", "off")) == "on",
    )
    await server.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    if probes:
        await probes.start()
        await probes.set_serving(True)
    log.info("TenantService listening on %s", address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # Tell load balancers first, then let in-flight calls finish.
    await health_servicer.enter_graceful_shutdown()
    if probes:
        await probes.set_serving(False)
    # Watch streams end at once (UNAVAILABLE) so that their callers reconnect elsewhere.
    await service.close()
    await server.stop(grace=10)
    if probes:
        await probes.stop()
    await registry.close()
    log.info("TenantService stopped")
