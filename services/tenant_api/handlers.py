"""What the facade's interceptors share: wrapping a TenantService handler."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from tenantry.tenant.v1 import tenant_service_pb2

SERVICE_NAME = tenant_service_pb2.DESCRIPTOR.services_by_name["TenantService"].full_name
_PREFIX = f"/{SERVICE_NAME}/"


class TenantServiceInterceptor(grpc.aio.ServerInterceptor):
    """Intercepts TenantService's rpcs only (health and reflection pass by):
    a subclass wraps the handler of each rpc in `wrap`."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or not method.startswith(_PREFIX):
            return handler
        return self.wrap(handler, method.removeprefix(_PREFIX))

    @abstractmethod
    def wrap(self, handler: grpc.RpcMethodHandler, rpc: str) -> grpc.RpcMethodHandler:
        """The handler of TenantService's `rpc`, wrapped (see `rewrap`)."""


def rewrap(
    handler: grpc.RpcMethodHandler,
    *,
    unary: Callable[[Callable[..., Any]], Callable[..., Any]],
    stream: Callable[[Callable[..., Any]], Callable[..., Any]],
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """`handler` with its behaviour passed through `unary` (unary-unary) or
    `stream` (unary-stream); other kinds are returned as they are."""
    deserializer = request_deserializer or handler.request_deserializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            unary(handler.unary_unary),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            stream(handler.unary_stream),
            request_deserializer=deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler
