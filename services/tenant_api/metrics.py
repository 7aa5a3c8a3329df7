"""The facade's metrics: every TenantService rpc counted and timed by method
and status code, and the WatchTenant streams open now.

Recorded through the Temporal runtime's meter (libs/metrics.py), so they are
served on the process's one endpoint with the facade's Temporal client metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from temporalio.common import MetricMeter

from libs import metrics
from services.tenant_api.handlers import TenantServiceInterceptor, rewrap


class RpcMetrics(TenantServiceInterceptor):
    """Outermost interceptor: it sees the code every other layer answered with."""

    def __init__(self, meter: MetricMeter | None = None) -> None:
        meter = meter or metrics.meter()
        self._requests = meter.create_counter(metrics.API_REQUESTS, "TenantService rpcs answered")
        self._duration = meter.create_histogram_float(
            metrics.API_DURATION, "TenantService rpc latency (streams: until they end)", "s"
        )
        self._streams = meter.create_gauge(metrics.WATCH_STREAMS, "WatchTenant streams open")
        self._open = 0

    def wrap(self, handler: grpc.RpcMethodHandler, rpc: str) -> grpc.RpcMethodHandler:
        return rewrap(
            handler,
            unary=lambda inner: self._unary(inner, rpc),
            stream=lambda inner: self._stream(inner, rpc),
        )

    def _record(self, rpc: str, began: float, code: str) -> None:
        labels = {"method": rpc, "code": code}
        self._requests.add(1, labels)
        self._duration.record(time.monotonic() - began, labels)

    def _unary(self, inner: Callable[..., Awaitable[Any]], rpc: str) -> Callable[..., Awaitable[Any]]:
        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            began = time.monotonic()
            try:
                response = await inner(request, context)
            except BaseException as err:
                self._record(rpc, began, _code(context, err))
                raise
            self._record(rpc, began, _code(context))
            return response

        return timed

    def _stream(
        self, inner: Callable[..., AsyncIterator[Any]], rpc: str
    ) -> Callable[..., AsyncIterator[Any]]:
        async def timed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            began = time.monotonic()
            watching = rpc == "WatchTenant"
            if watching:
                self._opened(1)
            try:
                async for item in inner(request, context):
                    yield item
            except BaseException as err:
                self._record(rpc, began, _code(context, err))
                raise
            else:
                self._record(rpc, began, _code(context))
            finally:
                if watching:
                    self._opened(-1)

        return timed

    def _opened(self, change: int) -> None:
        self._open += change
        self._streams.set(self._open)


def _code(context: grpc.aio.ServicerContext, err: BaseException | None = None) -> str:
    """The status the rpc ended with: what the handler set (an abort sets it
    too), CANCELLED when the caller went away, UNKNOWN for anything else raised."""
    code = context.code()
    if isinstance(code, grpc.StatusCode) and (err is None or code != grpc.StatusCode.OK):
        return code.name
    if isinstance(code, int) and code and (found := _BY_VALUE.get(code)):
        return found
    if err is None:
        return "OK"
    return "CANCELLED" if isinstance(err, asyncio.CancelledError | GeneratorExit) else "UNKNOWN"


_BY_VALUE = {c.value[0]: c.name for c in grpc.StatusCode}
