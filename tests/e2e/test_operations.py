"""Operations on runs through the gRPC API: cancel a provisioning run (what it
did is undone), retry a failed one (the same tenant, never a second)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from temporalio.client import Client

from libs import lifecycle
from libs.devstack.stack import Stack
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import (
    DNS_ZONE,
    Providers,
    create,
    principal,
    settle,
    wait_until_victim_holds_a_task,
)

State = tenant_pb2.Tenant.State
Kind = tenant_pb2.TenantEvent.Kind


def runs(stack: Stack, tenant_id: str) -> int:
    async def count() -> int:
        client = await Client.connect(stack.temporal_address, data_converter=stack.data_converter())
        query = f"WorkflowId = '{lifecycle.provision_workflow_id(tenant_id)}'"
        return len([w async for w in client.list_workflows(query)])

    return asyncio.run(count())


def change_cname(providers: Providers, action: str, name: str, value: str) -> None:
    providers.route53.change_resource_record_sets(
        HostedZoneId=providers.zone_id(),
        ChangeBatch={
            "Changes": [
                {
                    "Action": action,
                    "ResourceRecordSet": {
                        "Name": name,
                        "Type": "CNAME",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": value}],
                    },
                }
            ]
        },
    )


def test_a_failed_tenant_is_retried_into_the_same_tenant_by_racing_callers(
    api: tenant_service_pb2_grpc.TenantServiceStub,
    stack: Stack,
    providers: Providers,
    new_id: Callable[[], str],
) -> None:
    tid = new_id()
    blocker = f"{tid}.{DNS_ZONE}"
    change_cname(providers, "CREATE", blocker, "someone-else.example.net")
    create(api, tid)
    failed = settle(api, tid)
    assert (failed.state, failed.failed_step) == (State.STATE_PROVISION_FAILED, "create_dns_records")
    change_cname(providers, "DELETE", blocker, "someone-else.example.net")  # the cause is fixed

    name = f"tenants/{tid}"
    with ThreadPoolExecutor(max_workers=5) as pool:
        replies = list(
            pool.map(
                lambda _: api.RetryProvisioning(tenant_service_pb2.RetryProvisioningRequest(name=name)),
                range(5),
            )
        )
    assert {r.tenant.tenant_id for r in replies} == {tid}
    tenant = settle(api, tid)
    assert tenant.state == State.STATE_ACTIVE, tenant.failure_reason
    assert (tenant.failed_step, tenant.failure_reason) == ("", "")
    assert runs(stack, tid) == 2  # the failed run and one retry, whoever won the race
    assert providers.bucket_exists(tid) and providers.schema_exists(tid) and providers.identity_rows(tid) == 3
    listed = api.ListTenants(tenant_service_pb2.ListTenantsRequest(page_size=1000)).tenants
    assert [t.tenant_id for t in listed].count(tid) == 1

    with pytest.raises(grpc.RpcError) as refused:
        api.CancelProvisioning(tenant_service_pb2.CancelProvisioningRequest(name=name))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_cancelling_a_run_undoes_what_it_did_even_steps_in_flight(
    api: tenant_service_pb2_grpc.TenantServiceStub,
    callers: Callable[[str], tenant_service_pb2_grpc.TenantServiceStub],
    stack: Stack,
    providers: Providers,
    new_id: Callable[[], str],
) -> None:
    tid = new_id()
    infra = stack.services["infra"]
    assert infra.popen is not None
    # Frozen, the infra worker holds the bucket or DNS task when the cancel comes.
    os.kill(infra.popen.pid, signal.SIGSTOP)
    try:
        create(api, tid, plan_tier=tenant_pb2.PLAN_TIER_BRIDGE)
        wait_until_victim_holds_a_task(stack, tid, "infra")
        reply = callers("ops").CancelProvisioning(
            tenant_service_pb2.CancelProvisioningRequest(name=f"tenants/{tid}")
        )
        assert reply.tenant.state in (State.STATE_PENDING, State.STATE_PROVISIONING)
    finally:
        os.kill(infra.popen.pid, signal.SIGCONT)
    tenant = settle(api, tid)
    assert tenant.state == State.STATE_PROVISION_FAILED
    assert tenant.failure_reason == "cancelled"
    assert providers.orphans(tid) == {}
    log = api.ListTenantEvents(tenant_service_pb2.ListTenantEventsRequest(parent=f"tenants/{tid}")).events
    assert ("cancel", principal("ops")) in [(e.step, e.actor) for e in log if e.kind == Kind.KIND_REQUESTED]
    assert {e.step for e in log if e.kind == Kind.KIND_STEP_COMPENSATED} >= {"create_realm", "create_schema"}
    # And it can be provisioned after all.
    api.RetryProvisioning(tenant_service_pb2.RetryProvisioningRequest(name=f"tenants/{tid}"))
    try:
        retried = settle(api, tid, timeout=60)
    except grpc.RpcError:

        async def pending() -> list[str]:
            client = await Client.connect(stack.temporal_address, data_converter=stack.data_converter())
            raw = (
                await client.get_workflow_handle(lifecycle.provision_workflow_id(tid)).describe()
            ).raw_description
            return [
                f"{p.activity_type.name} attempt {p.attempt}: {p.last_failure.message}"
                for p in raw.pending_activities
            ]

        raise AssertionError(f"not settled; pending: {asyncio.run(pending())}") from None
    assert retried.state == State.STATE_ACTIVE, [(s.step, s.status, s.error) for s in retried.steps]
