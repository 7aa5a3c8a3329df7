"""libs/tracing.py without a backend: what turns it on, the attributes it
puts on spans, and what it keeps out of them. (The trace of a whole run,
read back from Jaeger, is tests/e2e/test_traces.py.)"""

from __future__ import annotations

import pytest
from opentelemetry import baggage, context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from libs import tracing
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2

OTEL = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)


@pytest.fixture
def no_otel(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in OTEL:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_without_an_exporter_nothing_is_set_up(no_otel: pytest.MonkeyPatch) -> None:
    assert tracing.configure("idp") is False
    assert not tracing.enabled()
    assert tracing.temporal_interceptors() == []
    assert tracing.server_interceptors() == []
    assert tracing.current_trace_id() == ""


@pytest.mark.parametrize(
    ("env", "exporters"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4317"}, []),
    ],
)
def test_the_standard_variables_say_whether_spans_are_exported(
    no_otel: pytest.MonkeyPatch, env: dict[str, str], exporters: list[str]
) -> None:
    for name, value in env.items():
        no_otel.setenv(name, value)
    assert tracing._exporters() == exporters


def test_a_run_input_names_its_tenant_and_tier() -> None:
    provision = orchestrator_pb2.ProvisionTenantRequest(
        tenant=tenant_pb2.Tenant(tenant_id="acme", plan_tier=tenant_pb2.PLAN_TIER_SILO)
    )
    assert tracing.tenant_of(provision) == ("acme", "silo")
    assert tracing.tenant_of(orchestrator_pb2.DeprovisionTenantRequest(tenant_id="beta")) == ("beta", "")
    assert tracing.tenant_of(orchestrator_pb2.ClaimRequest()) == ("", "")
    assert tracing.tenant_of(None) == ("", "")


def _provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(tracing._baggage_attributes())
    provider.add_span_processor(SimpleSpanProcessor(exported))
    return provider, exported


def test_the_runs_baggage_becomes_attributes_of_every_span_under_it() -> None:
    provider, exported = _provider()
    tracer = provider.get_tracer(__name__)
    entries = {"tenant.id": "acme", "tenant.plan_tier": "pooled", "step": "create_realm", "step.undo": "true"}
    ctx = context.get_current()
    for key, value in entries.items():
        ctx = baggage.set_baggage(key, value, ctx)
    ctx = baggage.set_baggage("caller.secret", "x", ctx)
    # As the Temporal interceptor runs an activity: its context (from the headers) attached.
    token = context.attach(ctx)
    try:
        with tracer.start_as_current_span("RunActivity"), tracer.start_as_current_span("child"):
            pass
    finally:
        context.detach(token)
    with tracer.start_as_current_span("outside"):
        pass
    spans = {s.name: dict(s.attributes or {}) for s in exported.get_finished_spans()}
    for name in ("RunActivity", "child"):
        assert spans[name] == {
            "tenant.id": "acme",
            "tenant.plan_tier": "pooled",
            "step": "create_realm",
            "step.undo": True,
        }
    assert spans["outside"] == {}


def test_a_request_url_keeps_its_query_string_out_of_the_span() -> None:
    provider, exported = _provider()
    url = "https://keycloak.test/admin/realms/tenant-acme/users?email=ada%40acme.example.com&exact=true"
    with provider.get_tracer(__name__).start_as_current_span(
        "GET", attributes={"http.url": url, "url.full": url}
    ) as span:
        tracing._redact_url(span, None)
    [finished] = exported.get_finished_spans()
    assert finished.attributes is not None
    for key in ("http.url", "url.full"):
        assert finished.attributes[key] == "https://keycloak.test/admin/realms/tenant-acme/users"
