"""What the facade's interceptors share: wrapping a TenantService handler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


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
