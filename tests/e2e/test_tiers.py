"""Every plan tier through the gRPC facade: what each tier creates exists
after ACTIVE and is gone after deprovisioning. (A failure at any step of any
tier, of each kind, is the fault matrix: test_fault_matrix.py.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.protobuf.duration_pb2 import Duration

from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import Providers, create, settle

State = tenant_pb2.Tenant.State
TIERS = {
    "pooled": tenant_pb2.PLAN_TIER_POOLED,
    "bridge": tenant_pb2.PLAN_TIER_BRIDGE,
    "silo": tenant_pb2.PLAN_TIER_SILO,
}


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_each_tier_creates_what_it_promises_and_deprovision_removes_it(
    api: tenant_service_pb2_grpc.TenantServiceStub, providers: Providers, new_id: Callable[[], str], tier: str
) -> None:
    tid = new_id()
    create(api, tid, plan_tier=TIERS[tier])
    tenant = settle(api, tid)
    assert tenant.state == State.STATE_ACTIVE, tenant.failure_reason
    assert [s.step for s in tenant.steps if s.step in ("apply_infrastructure", "deploy_application")] == {
        "pooled": [],
        "bridge": ["deploy_application"],
        "silo": ["apply_infrastructure", "deploy_application"],
    }[tier]
    held = providers.orphans(tid)
    assert {"bucket", "dns records", "schema", "identity rows", "resource records"} <= set(held)
    assert ("ecs services" in held) == (tier != "pooled")
    assert ("task definitions" in held) == (tier != "pooled")
    assert ("iac state" in held) == (tier == "silo")
    kinds = {r.kind for r in tenant.resources}
    assert ("ecs_service" in kinds) == (tier != "pooled")
    assert ("iac_stack" in kinds) == (tier == "silo")

    # A short grace period: sign-in and the tier's deployment are switched
    # off, then the tenant is backed up and everything removed.
    api.DeleteTenant(
        tenant_service_pb2.DeleteTenantRequest(name=f"tenants/{tid}", grace_period=Duration(seconds=1))
    )
    gone = settle(api, tid)
    assert gone.state == State.STATE_DEPROVISIONED
    assert {b.kind for b in gone.backups} == {"db_schema", "identity"}
    steps = {s.step: s.status for s in gone.steps}
    assert (steps.get("suspend_deployment") == tenant_pb2.STEP_STATUS_COMPLETED) == (tier != "pooled")
    assert providers.orphans(tid) == {}
