"""One log line per TenantService call: the method, its status code, how long
it took and, when the request names one, the tenant. Lines the handler logs
meanwhile carry the rpc and the tenant too (libs.logs.bind). A body that does
not parse has the error guard's rate-limited line instead (server.py), so a
flood of them cannot flood the log.

Only a valid tenant id is logged: a name that is not one is the caller's
text, which may be anything (an email, say)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from libs import lifecycle, logs
from services.tenant_api.auth import tenant_of
from services.tenant_api.handlers import TenantServiceInterceptor, rewrap

log = logging.getLogger(__name__)
_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


class RpcLog(TenantServiceInterceptor):
    """Outermost: it sees the status that the error guard and the access checks gave."""

    def wrap(self, handler: grpc.RpcMethodHandler, rpc: str) -> grpc.RpcMethodHandler:
        return rewrap(
            handler, unary=lambda inner: _unary(inner, rpc), stream=lambda inner: _stream(inner, rpc)
        )


def tenant_in(request: Any) -> str | None:
    """The tenant the request is about, if it names a valid tenant id."""
    if not isinstance(request, Message):
        return None  # a body that did not parse
    _, tenant_id = tenant_of(request)
    return tenant_id if tenant_id and lifecycle.valid_tenant_id(tenant_id) else None


def _unary(inner: Callable[..., Awaitable[Any]], rpc: str) -> Callable[..., Awaitable[Any]]:
    async def logged(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if not isinstance(request, Message):
            # A body that did not parse: the error guard's refusal log has its
            # line, one per rpc and interval however many come.
            return await inner(request, context)
        tenant_id = tenant_in(request)
        started = time.monotonic()
        failed: BaseException | None = None
        with logs.bind(rpc=rpc, tenant_id=tenant_id):
            try:
                return await inner(request, context)
            except BaseException as err:
                failed = err
                raise
            finally:
                _line(rpc, context, started, failed)

    return logged


def _stream(inner: Callable[..., AsyncIterator[Any]], rpc: str) -> Callable[..., AsyncIterator[Any]]:
    async def logged(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if not isinstance(request, Message):
            async for item in inner(request, context):
                yield item
            return
        tenant_id = tenant_in(request)
        started = time.monotonic()
        failed: BaseException | None = None
        with logs.bind(rpc=rpc, tenant_id=tenant_id):
            try:
                async for item in inner(request, context):
                    yield item
            except BaseException as err:
                failed = err
                raise
            finally:
                _line(rpc, context, started, failed)

    return logged


def _code(context: grpc.aio.ServicerContext, failed: BaseException | None) -> grpc.StatusCode:
    try:
        code = context.code()
    except Exception:  # not every grpc version keeps it readable
        code = None
    if isinstance(code, int):
        code = _BY_VALUE.get(code)
    if isinstance(code, grpc.StatusCode) and (code != grpc.StatusCode.OK or failed is None):
        return code
    if failed is None:
        return grpc.StatusCode.OK
    # Ended without a status of ours: the caller went away, or the server stopped the call.
    return (
        grpc.StatusCode.CANCELLED if isinstance(failed, asyncio.CancelledError) else grpc.StatusCode.UNKNOWN
    )


def _line(rpc: str, context: grpc.aio.ServicerContext, started: float, failed: BaseException | None) -> None:
    """The call's line; logged inside its `bind`, so it carries the rpc and the tenant."""
    ms = round((time.monotonic() - started) * 1000, 1)
    code = _code(context, failed).name
    extra: dict[str, Any] = {"event": "rpc", "code": code, "duration_ms": ms}
    log.info("%s %s in %.0f ms", rpc, code, ms, extra=extra)
