"""One CreateTenant is one trace across all six processes, read back from Jaeger.

The session stack exports spans to its Jaeger with a parent-based
always-off sampler (conftest.py): only calls that carry a sampled W3C
`traceparent`, as these do, are recorded, so the rest of the suite costs
Jaeger nothing and the test proves that a caller's trace is continued.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libs.devstack.stack import Stack
from orchestrator.plan import plan_for
from services.tenant_api.cli.output import describe
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import inject_failure, settle
from tests.support.tenants import tenant_spec

SERVICES = {"tenant_api", "orchestrator", "tenantdb", "idp", "infra", "notification"}
CREATE_RPC = "/tenantry.tenant.v1.TenantService/CreateTenant"


@dataclass
class Span:
    span_id: str
    name: str
    service: str
    parent: str
    tags: dict[str, Any] = field(default_factory=dict)


def _read_trace(stack: Stack, trace_id: str) -> list[Span]:
    try:
        with urllib.request.urlopen(f"{stack.jaeger_endpoint}/api/traces/{trace_id}", timeout=5) as reply:
            body = json.load(reply)
    except urllib.error.HTTPError as err:
        if err.code == 404:  # nothing of it has arrived yet
            return []
        raise
    spans = []
    for trace in body.get("data") or []:
        services = {key: p["serviceName"] for key, p in trace["processes"].items()}
        for raw in trace["spans"]:
            parents = [r["spanID"] for r in raw.get("references", []) if r["refType"] == "CHILD_OF"]
            spans.append(
                Span(
                    span_id=raw["spanID"],
                    name=raw["operationName"],
                    service=services[raw["processID"]],
                    parent=parents[0] if parents else "",
                    tags={t["key"]: t["value"] for t in raw.get("tags", [])},
                )
            )
    return spans


def _trace_when(
    stack: Stack, trace_id: str, complete: Callable[[list[Span]], bool], timeout: float = 30
) -> list[Span]:
    """The trace once `complete` holds for it (spans arrive in batches, per process)."""
    deadline = time.monotonic() + timeout
    while True:
        spans = _read_trace(stack, trace_id)
        if complete(spans):
            return spans
        assert time.monotonic() < deadline, (
            f"trace {trace_id} incomplete after {timeout}s: {_orphans(spans)[:5]}"
            f" {sorted({(s.service, s.name) for s in spans})}"
        )
        time.sleep(0.3)


def _traced_create(
    api: tenant_service_pb2_grpc.TenantServiceStub, tenant_id: str
) -> tuple[str, str, tenant_pb2.Tenant]:
    """CreateTenant as a caller in a trace of its own: (trace id, caller's span id, tenant)."""
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    request = tenant_service_pb2.CreateTenantRequest(tenant_id=tenant_id, tenant=tenant_spec(tenant_id))
    api.CreateTenant(request, metadata=[("traceparent", f"00-{trace_id}-{caller_span}-01")])
    return trace_id, caller_span, settle(api, tenant_id)


def _orphans(spans: list[Span]) -> list[str]:
    """Chains of spans that do not lead to the facade's span of CreateTenant (the root here)."""
    by_id = {s.span_id: s for s in spans}
    broken = []
    for span in spans:
        chain, at = [span.name], span
        while at.name != CREATE_RPC:
            if at.parent not in by_id:
                broken.append(f"{' <- '.join(chain)}: parent {at.parent or '(none)'} is not in the trace")
                break
            at = by_id[at.parent]
            chain.append(at.name)
    return broken


def _activity_spans(spans: list[Span]) -> list[Span]:
    return [s for s in spans if s.name.startswith("RunActivity:")]


def _steps_run(spans: list[Span]) -> set[str]:
    return {str(s.tags.get("step")) for s in _activity_spans(spans) if not s.tags.get("step.undo")}


def test_a_create_is_one_trace_across_all_six_processes(
    stack: Stack, api: tenant_service_pb2_grpc.TenantServiceStub, new_id: Callable[[], str]
) -> None:
    tid = new_id()
    trace_id, caller_span, tenant = _traced_create(api, tid)
    assert tenant.state == tenant_pb2.Tenant.STATE_ACTIVE
    steps = set(plan_for(tenant_pb2.PLAN_TIER_POOLED).provision_steps)

    def complete(spans: list[Span]) -> bool:
        # Every process's last batch is in: no span waits for its parent.
        return {s.service for s in spans} >= SERVICES and steps <= _steps_run(spans) and not _orphans(spans)

    spans = _trace_when(stack, trace_id, complete)
    by_id = {s.span_id: s for s in spans}

    # The facade's server span continues the caller's trace.
    [server] = [s for s in spans if s.name == CREATE_RPC]
    assert server.service == "tenant_api"
    assert server.parent == caller_span
    assert server.tags["tenant.id"] == tid
    assert server.tags["tenant.plan_tier"] == "pooled"

    # Every span's parents lead to the server span: no orphan, no second root.
    assert not _orphans(spans)
    names = {s.name for s in spans}
    assert {"StartWorkflow:tenantry.orchestrator.v1.TenantWorkflows.ProvisionTenant"} <= names
    assert any(n.startswith("RunWorkflow:") for n in names)

    # Each step ran in its own domain's process, with the tenant, its tier and its step.
    domain = {
        "mark_provisioning": "tenantdb",
        "create_realm": "idp",
        "create_bucket": "infra",
        "create_schema": "tenantdb",
        "send_welcome": "notification",
    }
    for span in _activity_spans(spans):
        assert span.tags["tenant.id"] == tid, span
        assert span.tags["tenant.plan_tier"] == "pooled", span
        assert by_id[span.parent].name.startswith("StartActivity:"), span
        assert by_id[span.parent].service == "orchestrator"
        if span.tags.get("step") in domain:
            assert span.service == domain[span.tags["step"]], span
        assert not span.tags.get("error"), span

    # Below the activities: the clients they called, in the same trace.
    def called(service: str, kind: Callable[[Span], bool]) -> bool:
        return any(s.service == service and kind(s) for s in spans)

    assert called("tenantdb", lambda s: s.tags.get("db.system") == "postgresql")
    assert called("infra", lambda s: s.tags.get("rpc.system") == "aws-api")
    assert called("notification", lambda s: s.name == "smtp send")
    assert all(s.tags.get("tenant.id") == tid for s in spans if s.service == "infra")

    # No personal data nor secrets in any span: not the admin's email (Keycloak's
    # query strings, SMTP recipients), not a role's password verifier (SQL literals).
    leaked = [
        (s.service, s.name, key)
        for s in spans
        for key, value in s.tags.items()
        if "ada@acme" in str(value) or "SCRAM-SHA-256" in str(value)
    ]
    assert not leaked
    assert any("CREATE ROLE" in str(s.tags.get("db.statement")) for s in spans), "the role DDL was traced"

    # An operator finds the trace from the tenant: the last run names it.
    got = api.GetTenant(tenant_service_pb2.GetTenantRequest(name=f"tenants/{tid}")).tenant
    assert got.last_operation.trace_id == trace_id
    assert f"trace     {trace_id}" in describe(got)


def test_a_failed_step_span_carries_the_error(
    stack: Stack,
    api: tenant_service_pb2_grpc.TenantServiceStub,
    new_id: Callable[[], str],
    fault_rules: Path,
) -> None:
    tid = new_id()
    inject_failure(fault_rules, tid, "CreateBucket")
    try:
        trace_id, _, tenant = _traced_create(api, tid)
    finally:
        inject_failure(fault_rules, tid, None)
    assert tenant.state == tenant_pb2.Tenant.STATE_PROVISION_FAILED

    def undone(spans: list[Span]) -> set[str]:
        return {str(s.tags.get("step")) for s in _activity_spans(spans) if s.tags.get("step.undo")}

    def complete(spans: list[Span]) -> bool:
        return (
            "mark_provision_failed" in _steps_run(spans)
            and "create_realm" in undone(spans)
            and not _orphans(spans)
        )

    spans = _trace_when(stack, trace_id, complete)
    [failed] = [
        s
        for s in _activity_spans(spans)
        if s.tags.get("step") == "create_bucket" and not s.tags.get("step.undo")
    ]
    assert failed.service == "infra"
    assert failed.tags.get("error") is True
    assert failed.tags.get("otel.status_code") == "ERROR"
    assert "injected" in str(failed.tags.get("otel.status_description")).lower()
    # The undos are in the same trace, named as undos of their steps, without error.
    assert {"create_realm", "create_schema"} <= undone(spans)
    assert not any(s.tags.get("error") for s in _activity_spans(spans) if s.tags.get("step.undo"))
