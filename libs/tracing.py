"""OpenTelemetry traces of every process, configured by the standard OTEL_* variables.

One lifecycle run is one trace: the facade's gRPC server span (continuing a
caller's W3C `traceparent`), the Temporal client's StartWorkflow, the
orchestrator's RunWorkflow and StartActivity spans, and each activity's
RunActivity span in the worker that ran it, with the clients it called
(botocore, psycopg, httpx, SMTP) below it. Temporal's TracingInterceptor
carries the context in the run's headers (encrypted with the payloads).

Every span of a run carries `tenant.id` and `tenant.plan_tier` (where the
run's input names them) and the activity spans the plan `step`: the facade
and the workflow put them in the context's baggage and `_baggage_attributes`
copies them onto each span started under it, in any process. Baggage stays
inside Tenantry: the global propagator (what the gRPC server reads and
httpx writes) is W3C trace context only, unless OTEL_PROPAGATORS says
otherwise, so a caller cannot set a tenant's attributes and Keycloak or
Auth0 are not told them.

Settings: OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT), OTLP over
gRPC; OTEL_TRACES_EXPORTER (`otlp`, `console`, `none`); OTEL_SERVICE_NAME
(default: the process name); OTEL_TRACES_SAMPLER(_ARG); OTEL_BSP_* for
batching; OTEL_SDK_DISABLED. With no exporter configured nothing is set up:
no provider, no instrumentation, no interceptors.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from google.protobuf.message import Message
from temporalio import client, worker

from libs import logs
from libs.config import ConfigError

log = logging.getLogger(__name__)

# Baggage entries copied onto every span started under them.
TENANT_ID = "tenant.id"
PLAN_TIER = "tenant.plan_tier"
STEP = "step"
UNDO = "step.undo"
_ATTRIBUTES = (TENANT_ID, PLAN_TIER, STEP, UNDO)

_provider: Any = None


def enabled() -> bool:
    """Tracing was configured in this process (`configure`)."""
    return _provider is not None


def _exporters() -> list[str]:
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = [e.strip().lower() for e in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()]
    if named:
        return [e for e in named if e != "none"]
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    return ["otlp"] if endpoint else []


def configure(process: str) -> bool:
    """Sets up tracing for the process if an exporter is configured; True if it did."""
    global _provider
    exporters = _exporters()
    if not exporters or _provider is not None:
        return _provider is not None
    from opentelemetry import propagate, trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, but
    # attributes given here win: name the process only when the operator did not.
    resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": process})
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    provider.add_span_processor(_baggage_attributes())
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            exporter = _otlp_exporter()
        elif name == "console":
            exporter = ConsoleSpanExporter(service_name=process)
        else:
            raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r}: this build exports otlp or console")
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_* from the environment
    trace.set_tracer_provider(provider)
    if not os.environ.get("OTEL_PROPAGATORS"):
        propagate.set_global_textmap(TraceContextTextMapPropagator())
    _instrument_clients()
    _provider = provider
    return True


def _otlp_exporter() -> Any:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    if protocol != "grpc":
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: this build exports OTLP over grpc")
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, TLS and timeout from OTEL_EXPORTER_OTLP_*


def _instrument_clients() -> None:
    """What the processes call: AWS (botocore), PostgreSQL (psycopg, async
    too), Keycloak and Auth0 (httpx). The SMTP send has a span of its own (`span`)."""
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    BotocoreInstrumentor().instrument()
    # Statements only (values travel as parameters, which are not captured),
    # and no comments added to the SQL.
    PsycopgInstrumentor().instrument(enable_commenter=False)
    _statements_without_literals()
    HTTPXClientInstrumentor().instrument(request_hook=_redact_url, async_request_hook=_redact_url_async)


# A quoted SQL string: role DDL takes its SCRAM verifier as one (libs/postgres.py).
_SQL_STRING = re.compile(r"'(?:[^']|'')*'")


def _statements_without_literals() -> None:
    """`db.statement` keeps no string literal: a composed statement (psycopg's
    `sql.Literal`) would otherwise show its values, a password verifier among them."""
    from opentelemetry.instrumentation.psycopg import CursorTracer

    statement_of = CursorTracer.get_statement

    def get_statement(self: Any, cursor: Any, args: Any) -> Any:
        statement = statement_of(self, cursor, args)
        return _SQL_STRING.sub("'?'", statement) if isinstance(statement, str) else statement

    CursorTracer.get_statement = get_statement  # type: ignore[method-assign]


def _redact_url(span: Any, request: Any) -> None:
    """Keeps a request's query string (Keycloak's user search by email) out of the span."""
    if span is None or not span.is_recording():
        return
    for key in ("http.url", "url.full"):
        value = span.attributes.get(key) if span.attributes else None
        if isinstance(value, str) and "?" in value:
            parts = urlsplit(value)
            span.set_attribute(key, urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))


async def _redact_url_async(span: Any, request: Any) -> None:
    _redact_url(span, request)


def shutdown(timeout: float = 3.0) -> None:
    """Exports what is buffered, waiting at most `timeout` seconds: the SDK's
    flush waits for the exporter's retries (about 7 s against a backend that
    is down), and the process exits right after this (libs/temporal.main)."""
    global _provider
    if _provider is None:
        return
    provider, _provider = _provider, None
    flushing = threading.Thread(target=provider.shutdown, name="trace-flush", daemon=True)
    flushing.start()
    flushing.join(timeout)
    if flushing.is_alive():
        log.warning("traces not exported within %.0f s at shutdown; the last spans are lost", timeout)


def _baggage_attributes() -> Any:
    """A span processor: the run's baggage (tenant, tier, step) onto every span started under it."""
    from opentelemetry import baggage
    from opentelemetry.sdk.trace import SpanProcessor

    class BaggageAttributes(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            entries = baggage.get_all(parent_context)
            for key in _ATTRIBUTES:
                value = entries.get(key)
                if value is not None:
                    span.set_attribute(key, value == "true" if key == UNDO else str(value))

    return BaggageAttributes()


# --- gRPC server -----------------------------------------------------------------


def server_interceptors() -> list[Any]:
    """The facade's server span per rpc (health checks left out); none without tracing."""
    if not enabled():
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    return [aio_server_interceptor(filter_=filters.negate(filters.health_check()))]


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, str | int] | None = None) -> Iterator[None]:
    """A client span around a call no instrumentation covers (an SMTP send).
    A failure sets its status to the error's type and message, without the
    stack or the causes (a cause may quote personal data). Nothing without tracing."""
    if not enabled():
        yield
        return
    from opentelemetry import trace

    tracer = trace.get_tracer(__name__)
    with tracer.start_as_current_span(
        name,
        kind=trace.SpanKind.CLIENT,
        attributes=dict(attributes or {}),
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield
        except Exception as err:
            current.set_status(trace.StatusCode.ERROR, f"{type(err).__name__}: {err}")
            raise


def current_trace_id() -> str:
    """The trace id (32 hex digits) of the run whose activity this is, or ""
    when the run is not traced (or not sampled). The step in the baggage says
    that the context came from a traced run (an untraced run passes none): a
    lone activity span would name a trace of its own, not the run's."""
    if not enabled():
        return ""
    from opentelemetry import baggage, trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled or baggage.get_baggage(STEP) is None:
        return ""
    return f"{context.trace_id:032x}"


# --- Temporal --------------------------------------------------------------------


def temporal_interceptors() -> list[client.Interceptor]:
    """For Client.connect: the workers built on the client take the worker
    side of these too. Empty without tracing."""
    if not enabled():
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    # Order matters: the client's list is outermost first (the tenant's baggage
    # must be set before StartWorkflow's span), the workflow's outbound calls
    # go through the last one first (the step's baggage before StartActivity's span).
    return [_TenantBaggage(), TracingInterceptor(), _StepBaggage()]


def tenant_of(message: object) -> tuple[str, str]:
    """(tenant id, plan tier such as `pooled`) named by a run's input, "" where it names none."""
    if not isinstance(message, Message):
        return "", ""
    fields = message.DESCRIPTOR.fields_by_name
    if "tenant" in fields and fields["tenant"].message_type is not None:
        tenant = getattr(message, "tenant")  # noqa: B009 (a proto field)
        tier_field = tenant.DESCRIPTOR.fields_by_name.get("plan_tier")
        tier = ""
        if tier_field is not None and tenant.plan_tier:
            tier = tier_field.enum_type.values_by_number[tenant.plan_tier].name.removeprefix("PLAN_TIER_")
        return str(tenant.tenant_id), tier.lower()
    if "tenant_id" in fields:
        return str(getattr(message, "tenant_id")), ""  # noqa: B009
    return "", ""


@contextlib.contextmanager
def _baggage(entries: Mapping[str, str]) -> Iterator[None]:
    from opentelemetry import baggage, context

    current = context.get_current()
    for key, value in entries.items():
        if value:
            current = baggage.set_baggage(key, value, current)
    token = context.attach(current)
    try:
        yield
    finally:
        context.detach(token)


class _TenantBaggage(client.Interceptor):
    def intercept_client(self, next: client.OutboundInterceptor) -> client.OutboundInterceptor:
        return _TenantBaggageOutbound(next)


class _TenantBaggageOutbound(client.OutboundInterceptor):
    async def start_workflow(self, input: client.StartWorkflowInput) -> client.WorkflowHandle[Any, Any]:
        from opentelemetry import trace

        tenant_id, tier = tenant_of(input.args[0] if input.args else None)
        # The facade's server span started before the request was read.
        server = trace.get_current_span()
        if tenant_id:
            server.set_attribute(TENANT_ID, tenant_id)
        if tier:
            server.set_attribute(PLAN_TIER, tier)
        with _baggage({TENANT_ID: tenant_id, PLAN_TIER: tier}):
            return await super().start_workflow(input)


class _StepBaggage(client.Interceptor, worker.Interceptor):
    """Worker side: each activity a workflow starts carries its step (as
    libs.contracts.execute names it for the logs) and the run's tenant in the
    baggage of its context."""

    def workflow_interceptor_class(
        self, input: worker.WorkflowInterceptorClassInput
    ) -> type[worker.WorkflowInboundInterceptor]:
        return _StepBaggageInbound


class _StepBaggageInbound(worker.WorkflowInboundInterceptor):
    _tenant: tuple[str, str] = ("", "")

    def init(self, outbound: worker.WorkflowOutboundInterceptor) -> None:
        super().init(_StepBaggageOutbound(outbound, self))

    async def execute_workflow(self, input: worker.ExecuteWorkflowInput) -> Any:
        self._tenant = tenant_of(input.args[0] if input.args else None)
        return await super().execute_workflow(input)


class _StepBaggageOutbound(worker.WorkflowOutboundInterceptor):
    def __init__(self, next: worker.WorkflowOutboundInterceptor, root: _StepBaggageInbound) -> None:
        super().__init__(next)
        self._root = root

    def start_activity(self, input: worker.StartActivityInput) -> Any:
        tenant_id, tier = self._root._tenant
        step = logs.step_called()  # what libs.contracts.execute was told
        entries = {
            TENANT_ID: tenant_id,
            PLAN_TIER: tier,
            STEP: step.step if step else "",
            UNDO: "true" if step and step.undo else "",
        }
        with _baggage(entries):
            return super().start_activity(input)
