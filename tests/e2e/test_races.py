"""Races between operations on one tenant, over the gRPC API, each repeated
often enough to catch a one-in-five loss: a cancel the API accepted is never
lost; a suspend racing a delete has exactly one winner; two tenants racing
for one domain: exactly one gets it; errors say what happened."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from libs.faults import fired_dir
from orchestrator.plan import STEPS
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import Providers, create, details, eventually, inject_failure, settle

State = tenant_pb2.Tenant.State
ROUNDS = 10
# Steps a cancel lands on while they finish, the last being the commit point,
# and how late each round's step starts.
CANCELLED_STEPS = ("create_bucket", "record_resources", "mark_active")
DELAYS = (0.0, 0.05, 0.1, 0.2, 0.4)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_cancel_the_api_accepted_is_never_lost(
    api: tenant_service_pb2_grpc.TenantServiceStub,
    providers: Providers,
    fault_rules: Path,
    new_id: Callable[[], str],
    round_: int,
) -> None:
    tid = new_id()
    step = CANCELLED_STEPS[round_ % len(CANCELLED_STEPS)]
    rpc = STEPS[step].rpc.method
    # The step starts late by a different amount each round, so the cancel
    # (sent the moment it starts waiting) lands before the step's work, while
    # it finishes (mark_active completed, then undone), or just after, when the
    # run goes on to its next steps (a mark_active already done is refused).
    delay = DELAYS[round_ % len(DELAYS)]
    inject_failure(fault_rules, tid, [{"rpc": rpc, "mode": "delay_before", "seconds": delay}])
    create(api, tid, plan_tier=tenant_pb2.PLAN_TIER_BRIDGE)
    # The fault's marker appears as the wait begins: no polling of the API in between.
    marker = fired_dir(fault_rules) / f"{tid}.{rpc}.delay_before"
    eventually(marker.exists, interval=0.01, what=f"{step} starting")
    try:
        api.CancelProvisioning(tenant_service_pb2.CancelProvisioningRequest(name=f"tenants/{tid}"))
        accepted = True
    except grpc.RpcError as err:
        # Only refused because the run had made the tenant ACTIVE: never UNAVAILABLE.
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err
        accepted = False
    tenant = settle(api, tid)
    inject_failure(fault_rules, tid, None)
    if accepted:
        assert (tenant.state, tenant.failure_reason) == (State.STATE_PROVISION_FAILED, "cancelled"), step
        assert providers.orphans(tid) == {}
    else:
        assert tenant.state == State.STATE_ACTIVE, step
        assert providers.orphans(tid)  # refused: the tenant keeps what it was given


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_a_suspend_racing_a_delete_has_exactly_one_winner(
    api: tenant_service_pb2_grpc.TenantServiceStub, new_id: Callable[[], str], round_: int
) -> None:
    tid = new_id()
    name = f"tenants/{tid}"
    create(api, tid)
    assert settle(api, tid).state == State.STATE_ACTIVE
    start = threading.Barrier(2)

    def suspend() -> grpc.RpcError | None:
        start.wait()
        try:
            api.SuspendTenant(tenant_service_pb2.SuspendTenantRequest(name=name))
        except grpc.RpcError as err:
            return err
        return None

    def delete() -> grpc.RpcError | None:
        start.wait()
        try:
            api.DeleteTenant(
                tenant_service_pb2.DeleteTenantRequest(name=name, grace_period=Duration(seconds=3600))
            )
        except grpc.RpcError as err:
            return err
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        suspended, deleted = pool.submit(suspend), pool.submit(delete)
        outcomes = {"suspend": suspended.result(timeout=60), "delete": deleted.result(timeout=60)}
    winners = [op for op, err in outcomes.items() if err is None]
    assert len(winners) == 1, outcomes
    [loser] = [err for err in outcomes.values() if err is not None]
    assert loser.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION), loser
    tenant = settle(api, tid) if winners == ["suspend"] else None
    if winners == ["suspend"]:
        assert tenant is not None and tenant.state == State.STATE_SUSPENDED
    else:
        got = api.GetTenant(tenant_service_pb2.GetTenantRequest(name=name)).tenant
        assert got.state == State.STATE_DEPROVISIONING and got.HasField("purge_time")
        # Sign-in goes off for the grace period, and stays as the deletion left it.
        api.DeleteTenant(
            tenant_service_pb2.DeleteTenantRequest(name=name, hard_delete=True, skip_backup=True)
        )
        assert settle(api, tid).state == State.STATE_DEPROVISIONED


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_tenants_racing_for_one_domain_one_gets_it_the_other_fails_cleanly(
    api: tenant_service_pb2_grpc.TenantServiceStub, providers: Providers, round_: int
) -> None:
    domain = f"shared-{uuid.uuid4().hex[:8]}.example.com"
    tids = [f"e2e-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    start = threading.Barrier(2)

    def claim(tid: str) -> grpc.RpcError | None:
        start.wait()
        try:
            create(api, tid, domains=[domain])
        except grpc.RpcError as err:
            return err
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        refused = dict(zip(tids, pool.map(claim, tids), strict=True))
    final = {}
    for tid in tids:
        err = refused[tid]
        if err is not None:
            # Refused up front: the other already held the domain.
            assert err.code() == grpc.StatusCode.ALREADY_EXISTS and details(err)[0].reason == "DOMAIN_IN_USE"
            final[tid] = "refused"
        else:
            tenant = settle(api, tid)
            final[tid] = State.Name(tenant.state)
            if tenant.state == State.STATE_PROVISION_FAILED:
                # Failed at once, at the claim, having made nothing.
                assert tenant.failed_step == "mark_provisioning", tenant
                # It names the tenant holding the domain, not the domain (no personal data in reasons).
                [winner] = [other for other in tids if other != tid]
                assert winner in tenant.failure_reason and domain not in tenant.failure_reason
    assert sorted(final.values()) in (
        ["STATE_ACTIVE", "refused"],
        ["STATE_ACTIVE", "STATE_PROVISION_FAILED"],
    ), final
    for tid, outcome in final.items():
        if outcome != "STATE_ACTIVE":
            assert providers.orphans(tid) == {}


def test_a_cancel_of_a_run_that_has_made_the_tenant_active_or_ended_is_failed_precondition(
    api: tenant_service_pb2_grpc.TenantServiceStub, fault_rules: Path, new_id: Callable[[], str]
) -> None:
    tid = new_id()
    name = f"tenants/{tid}"
    # The run is ACTIVE and still sending its welcome when the first cancel comes.
    welcome = {
        "rpc": "SendNotice",
        "mode": "delay_before",
        "seconds": 3,
        "when": {"kind": "NOTICE_KIND_WELCOME"},
    }
    inject_failure(fault_rules, tid, [welcome])
    create(api, tid)
    eventually(
        lambda: (
            api.GetTenant(tenant_service_pb2.GetTenantRequest(name=name)).tenant.state == State.STATE_ACTIVE
        ),
        what="ACTIVE",
    )
    for _ in range(2):  # while the run ends, and after
        with pytest.raises(grpc.RpcError) as refused:
            api.CancelProvisioning(tenant_service_pb2.CancelProvisioningRequest(name=name))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert settle(api, tid).state == State.STATE_ACTIVE
    inject_failure(fault_rules, tid, None)


def test_retry_right_after_a_create_is_not_not_found(
    api: tenant_service_pb2_grpc.TenantServiceStub, new_id: Callable[[], str]
) -> None:
    tid = new_id()
    create(api, tid)
    retried = api.RetryProvisioning(tenant_service_pb2.RetryProvisioningRequest(name=f"tenants/{tid}")).tenant
    assert retried.tenant_id == tid
    assert retried.state in (State.STATE_PENDING, State.STATE_PROVISIONING, State.STATE_ACTIVE)
    assert settle(api, tid).state == State.STATE_ACTIVE
