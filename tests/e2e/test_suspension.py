"""Suspend and resume through the gRPC API: sign-in and the tenant's own
deployment off and on again, idempotent, recorded in the audit log."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest
from temporalio.client import Client

from libs import lifecycle
from libs.devstack.stack import Stack
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import Providers, create, principal, settle
from tests.e2e.test_deletion import events, realm_enabled

State = tenant_pb2.Tenant.State
Kind = tenant_pb2.TenantEvent.Kind


def desired_count(providers: Providers, tid: str) -> int:
    [arn] = providers.ecs_services(tid)
    cluster = arn.split("/")[-2]
    [service] = providers.ecs.describe_services(cluster=cluster, services=[arn], include=["TAGS"])["services"]
    return int(service["desiredCount"])


def access_runs(stack: Stack, tid: str) -> int:
    async def count() -> int:
        client = await Client.connect(stack.temporal_address, data_converter=stack.data_converter())
        query = f"WorkflowId = '{lifecycle.access_workflow_id(tid)}'"
        return len([w async for w in client.list_workflows(query)])

    return asyncio.run(count())


def test_suspend_and_resume_a_bridge_tenant_twice_each(
    api: tenant_service_pb2_grpc.TenantServiceStub,
    callers: Callable[[str], tenant_service_pb2_grpc.TenantServiceStub],
    stack: Stack,
    providers: Providers,
    new_id: Callable[[], str],
) -> None:
    tid = new_id()
    name = f"tenants/{tid}"
    create(api, tid, plan_tier=tenant_pb2.PLAN_TIER_BRIDGE)
    assert settle(api, tid).state == State.STATE_ACTIVE
    running = desired_count(providers, tid)
    assert running > 0 and realm_enabled(providers, tid)
    resources = providers.orphans(tid)

    request = tenant_service_pb2.SuspendTenantRequest(name=name)
    suspended = callers("billing").SuspendTenant(request).tenant
    assert suspended.state == State.STATE_SUSPENDED
    assert not realm_enabled(providers, tid)
    assert desired_count(providers, tid) == 0
    assert providers.sql("SELECT state FROM registry.tenants WHERE tenant_id = %s", tid) == [
        ("STATE_SUSPENDED",)
    ]
    # Again: already suspended, no new run, nothing changes.
    assert api.SuspendTenant(request).tenant.state == State.STATE_SUSPENDED
    assert access_runs(stack, tid) == 1

    resumed = api.ResumeTenant(tenant_service_pb2.ResumeTenantRequest(name=name)).tenant
    assert resumed.state == State.STATE_ACTIVE
    assert realm_enabled(providers, tid)
    assert desired_count(providers, tid) == running
    assert (
        api.ResumeTenant(tenant_service_pb2.ResumeTenantRequest(name=name)).tenant.state == State.STATE_ACTIVE
    )
    assert access_runs(stack, tid) == 2
    assert providers.orphans(tid) == resources  # nothing was removed or added

    log = events(api, tid)
    assert ("suspend", principal("billing")) in [
        (e.step, e.actor) for e in log if e.kind == Kind.KIND_REQUESTED
    ]
    states = [e.state for e in log if e.kind == Kind.KIND_STATE_CHANGED]
    assert states[-4:] == [
        State.STATE_SUSPENDING,
        State.STATE_SUSPENDED,
        State.STATE_RESUMING,
        State.STATE_ACTIVE,
    ]
    completed = [e.step for e in log if e.kind == Kind.KIND_STEP_COMPLETED]
    assert {"disable_access", "suspend_deployment", "resume_deployment", "enable_access"} <= set(completed)


def test_a_suspended_tenant_can_be_deleted_and_undeleted_stays_suspended(
    api: tenant_service_pb2_grpc.TenantServiceStub, providers: Providers, new_id: Callable[[], str]
) -> None:
    tid = new_id()
    name = f"tenants/{tid}"
    create(api, tid)
    assert settle(api, tid).state == State.STATE_ACTIVE
    api.SuspendTenant(tenant_service_pb2.SuspendTenantRequest(name=name))
    deleting = api.DeleteTenant(
        tenant_service_pb2.DeleteTenantRequest(name=name, grace_period={"seconds": 3600})
    ).tenant
    assert deleting.state == State.STATE_DEPROVISIONING
    restored = api.UndeleteTenant(tenant_service_pb2.UndeleteTenantRequest(name=name)).tenant
    # An unpaid tenant does not get its access back by being undeleted.
    assert restored.state == State.STATE_SUSPENDED
    assert not realm_enabled(providers, tid)


@pytest.mark.parametrize("method", ["SuspendTenant", "ResumeTenant"])
def test_suspend_or_resume_in_the_wrong_state_is_failed_precondition(
    api: tenant_service_pb2_grpc.TenantServiceStub, new_id: Callable[[], str], method: str
) -> None:
    tid = new_id()
    create(api, tid)
    assert settle(api, tid).state == State.STATE_ACTIVE
    api.DeleteTenant(
        tenant_service_pb2.DeleteTenantRequest(name=f"tenants/{tid}", hard_delete=True, skip_backup=True)
    )
    request_type = getattr(tenant_service_pb2, f"{method}Request")
    with pytest.raises(grpc.RpcError) as refused:
        getattr(api, method)(request_type(name=f"tenants/{tid}"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as unknown:
        getattr(api, method)(request_type(name="tenants/nobody-here"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
