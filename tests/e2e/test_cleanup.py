"""An undo that fails for good: the other undos still run, the tenant ends
PROVISION_FAILED with what is left listed (API, CLI, audit log, failure
notice), and a clean-up through the API removes it once the cause is fixed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from libs.devstack.stack import Stack
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import Providers, create, eventually, inject_failure, settle
from tests.e2e.test_deletion import events, mail_subjects

State = tenant_pb2.Tenant.State
Kind = tenant_pb2.TenantEvent.Kind


def failure_notice(providers: Providers, tid: str) -> str:
    for path in (providers.maildir / "new").glob("*"):
        text = path.read_text(errors="replace")
        if tid in text and "setting up" in text and "failed" in text:
            return text
    return ""


def test_an_undo_that_fails_for_good_is_listed_and_a_clean_up_removes_it(
    api: tenant_service_pb2_grpc.TenantServiceStub,
    stack: Stack,
    providers: Providers,
    fault_rules: Path,
    new_id: Callable[[], str],
) -> None:
    tid = new_id()
    name = f"tenants/{tid}"
    # DNS fails, so the run compensates; the bucket's undo is refused for good.
    inject_failure(
        fault_rules,
        tid,
        [{"rpc": "UpsertDnsRecords", "mode": "before"}, {"rpc": "DeleteBucket", "mode": "before"}],
    )
    create(api, tid, plan_tier=tenant_pb2.PLAN_TIER_BRIDGE)
    tenant = settle(api, tid)
    assert (tenant.state, tenant.failed_step) == (State.STATE_PROVISION_FAILED, "create_dns_records")
    [left] = tenant.leftover_resources
    assert (left.step, left.kind, left.id, left.domain) == (
        "create_bucket",
        "s3_bucket",
        f"tenantry-{tid}",
        "infra",
    )
    assert "injected failure in DeleteBucket" in left.reason
    status = {s.step: s.status for s in tenant.steps}
    assert status["create_bucket"] == tenant_pb2.STEP_STATUS_COMPENSATION_FAILED
    # Every other undo ran: only the bucket is left.
    assert providers.orphans(tid) == {"bucket": True}
    assert tenant.last_operation.outcome == tenant_pb2.Operation.OUTCOME_FAILED

    log = events(api, tid)
    assert ("create_bucket", Kind.KIND_STEP_COMPENSATION_FAILED) in [(e.step, e.kind) for e in log]
    assert any(e.kind == Kind.KIND_STATE_CHANGED and "could not remove" in e.detail for e in log)
    eventually(lambda: bool(failure_notice(providers, tid)), what="failure notice")
    assert f"s3_bucket tenantry-{tid} (create_bucket)" in failure_notice(providers, tid)
    shown = subprocess.run(
        [sys.executable, "-m", "services.tenant_api.cli", "--address", stack.grpc_address, "get", tid],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, **stack.access.client_env()},
    ).stdout
    assert f"infra/s3_bucket  tenantry-{tid}  from create_bucket" in shown

    # Still refused: the clean-up tries again, and says what is still left.
    again = api.CleanUpTenant(tenant_service_pb2.CleanUpTenantRequest(name=name)).tenant
    assert [r.kind for r in again.leftover_resources] == ["s3_bucket"]
    operation = again.last_operation
    assert (operation.kind, operation.outcome) == (
        tenant_pb2.Operation.KIND_CLEAN_UP,
        tenant_pb2.Operation.OUTCOME_FAILED,
    )
    assert providers.bucket_exists(tid)

    # The cause is fixed: a clean-up removes what was left.
    inject_failure(fault_rules, tid, None)
    cleaned = api.CleanUpTenant(tenant_service_pb2.CleanUpTenantRequest(name=name)).tenant
    assert cleaned.state == State.STATE_PROVISION_FAILED
    assert list(cleaned.leftover_resources) == []
    assert cleaned.last_operation.kind == tenant_pb2.Operation.KIND_CLEAN_UP
    assert cleaned.last_operation.outcome == tenant_pb2.Operation.OUTCOME_SUCCEEDED
    assert providers.orphans(tid) == {}
    # And the tenant can be provisioned after all.
    api.RetryProvisioning(tenant_service_pb2.RetryProvisioningRequest(name=name))
    assert settle(api, tid).state == State.STATE_ACTIVE
    assert "Welcome" in " ".join(mail_subjects(providers, tid))
