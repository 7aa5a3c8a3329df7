"""The API's contract over gRPC: idempotency, errors, pagination, health, reflection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDReusePolicy

from libs import contracts, lifecycle
from libs.devstack.mailcatcher import read_messages
from libs.devstack.stack import Stack
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import Providers, create, details, settle
from tests.support.tenants import tenant_spec

State = tenant_pb2.Tenant.State
Kind = tenant_pb2.TenantEvent.Kind


def workflow_runs(stack: Stack, tenant_id: str) -> int:
    async def count() -> int:
        client = await Client.connect(stack.temporal_address, data_converter=stack.data_converter())
        query = f"WorkflowId = '{lifecycle.provision_workflow_id(tenant_id)}'"
        return len([w async for w in client.list_workflows(query)])

    return asyncio.run(count())


def test_twenty_identical_concurrent_creates_make_one_tenant_and_one_run(
    api: tenant_service_pb2_grpc.TenantServiceStub, stack: Stack, new_id: Callable[[], str]
) -> None:
    tid = new_id()
    request = tenant_service_pb2.CreateTenantRequest(tenant_id=tid, tenant=tenant_spec(tid))
    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(lambda _: api.CreateTenant(request, timeout=30), range(20)))
    assert {r.tenant.name for r in replies} == {f"tenants/{tid}"}
    assert settle(api, tid).state == State.STATE_ACTIVE
    assert workflow_runs(stack, tid) == 1
    # The same request after the fact returns the same tenant, still one run.
    assert create(api, tid).state == State.STATE_ACTIVE
    assert workflow_runs(stack, tid) == 1


def test_a_different_request_for_an_existing_tenant_is_already_exists(
    api: tenant_service_pb2_grpc.TenantServiceStub, stack: Stack, new_id: Callable[[], str]
) -> None:
    tid = new_id()
    create(api, tid)
    with pytest.raises(grpc.RpcError) as raised:
        create(api, tid, display_name="Another Corp")  # while the run may still be going
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    info, fields = details(raised.value)
    assert (info.reason, info.domain, info.metadata["tenant_id"]) == (
        "TENANT_ALREADY_EXISTS",
        "tenantry.dev",
        tid,
    )
    # It says what differs, by the API's field paths.
    assert info.metadata["differs"] == "tenant.display_name" and fields == ["tenant.display_name"]
    assert "tenant.display_name" in (raised.value.details() or "")
    settle(api, tid)
    other = tenant_pb2.AdminContact(email="grace@other.example.com", given_name="Ada", family_name="Lovelace")
    with pytest.raises(grpc.RpcError) as again:
        create(api, tid, display_name="Another Corp", plan_tier=tenant_pb2.PLAN_TIER_BRIDGE, admin=other)
    assert again.value.code() == grpc.StatusCode.ALREADY_EXISTS  # and once it is settled
    info, fields = details(again.value)
    differs = ["tenant.display_name", "tenant.plan_tier", "tenant.admin.email"]
    assert (info.metadata["differs"].split(","), fields) == (differs, differs)
    message = again.value.details() or ""
    assert all(field in message for field in differs)
    # Named, never shown: the admin's email is personal data.
    assert "grace@other" not in message and "ada@acme" not in message and "Another Corp" not in message
    assert workflow_runs(stack, tid) == 1
    # The same settings again stay idempotent.
    assert create(api, tid).state == State.STATE_ACTIVE


def test_a_deleted_tenants_id_is_never_reused_not_even_by_a_run_started_past_the_api(
    api: tenant_service_pb2_grpc.TenantServiceStub,
    stack: Stack,
    providers: Providers,
    new_id: Callable[[], str],
) -> None:
    tid = new_id()
    name = f"tenants/{tid}"
    create(api, tid)
    assert settle(api, tid).state == State.STATE_ACTIVE
    api.DeleteTenant(tenant_service_pb2.DeleteTenantRequest(name=name, hard_delete=True, skip_backup=True))
    assert settle(api, tid).state == State.STATE_DEPROVISIONED
    deleted = api.GetTenant(tenant_service_pb2.GetTenantRequest(name=name)).tenant
    events_before = len(api.ListTenantEvents(tenant_service_pb2.ListTenantEventsRequest(parent=name)).events)

    # With the same settings and with others: refused, nothing started.
    newcomer = tenant_pb2.AdminContact(email=f"new-admin@{tid}.example.com")
    for changes in ({}, {"display_name": "New Corp", "admin": newcomer}):
        with pytest.raises(grpc.RpcError) as raised:
            create(api, tid, **changes)
        assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
        info, fields = details(raised.value)
        assert (info.reason, info.metadata["tenant_id"], fields) == ("TENANT_DELETED", tid, ["tenant_id"])
        deleted_at = deleted.last_operation.end_time.ToDatetime(UTC)
        assert info.metadata["delete_time"] == deleted_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        message = raised.value.details() or ""
        assert tid in message and "deleted" in message and "cannot be reused" in message
        assert f"{deleted_at:%Y-%m-%d %H:%M:%S} UTC" in message
        assert "new-admin" not in message
    assert workflow_runs(stack, tid) == 1

    # A run started on the id anyway (past the API) is refused by its first
    # step, and leaves the deleted tenant as it was.
    async def provision_anyway() -> BaseException:
        client = await Client.connect(stack.temporal_address, data_converter=stack.data_converter())
        rpc = contracts.WORKFLOWS.rpc("ProvisionTenant")
        spec = tenant_spec(tid, display_name="New Corp", admin=newcomer)
        spec.tenant_id = tid
        handle = await client.start_workflow(
            rpc.name,
            orchestrator_pb2.ProvisionTenantRequest(tenant=spec, requested_by="e2e"),
            id=lifecycle.provision_workflow_id(tid),
            task_queue=rpc.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            execution_timeout=timedelta(minutes=2),
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        return failed.value.cause

    cause = asyncio.run(provision_anyway())
    assert "mark_provisioning" in str(cause) and "cannot be reused" in str(cause)
    after = api.GetTenant(tenant_service_pb2.GetTenantRequest(name=name)).tenant
    assert after == deleted  # state, settings, last operation, steps, update time
    assert providers.orphans(tid) == {}
    assert not [m for m in read_messages(providers.maildir) if "new-admin" in str(m["To"])]
    # The attempt is in the deleted tenant's audit log, and nothing more of it.
    log = api.ListTenantEvents(tenant_service_pb2.ListTenantEventsRequest(parent=name)).events
    attempt = [(e.kind, e.step) for e in log[events_before:]]
    assert (Kind.KIND_REQUESTED, "provision") in attempt
    assert (Kind.KIND_STEP_FAILED, "mark_provisioning") in attempt
    assert all(e.kind != Kind.KIND_STATE_CHANGED for e in log[events_before:])


def test_a_domain_of_another_live_tenant_is_refused_before_anything_starts(
    api: tenant_service_pb2_grpc.TenantServiceStub, stack: Stack, new_id: Callable[[], str]
) -> None:
    first, second = new_id(), new_id()
    shared = f"shop-{new_id()}.example.com"
    create(api, first, domains=[shared])
    assert settle(api, first).state == State.STATE_ACTIVE
    with pytest.raises(grpc.RpcError) as raised:
        create(api, second, domains=[f"{second}.example.com", shared])
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    info, fields = details(raised.value)
    assert info.reason == "DOMAIN_IN_USE" and fields == ["tenant.domains[1]"]
    assert first not in (raised.value.details() or "")  # the other tenant is not named
    assert workflow_runs(stack, second) == 0


@pytest.mark.parametrize(
    ("tenant_id", "changes", "field"),
    [
        ("", {}, "tenant_id"),
        ("Bad_Key", {}, "tenant_id"),
        ("x" * 40, {}, "tenant_id"),
        ("valid-id", {"display_name": ""}, "tenant.display_name"),
        ("valid-id", {"display_name": "x" * 500}, "tenant.display_name"),
        ("valid-id", {"plan_tier": 0}, "tenant.plan_tier"),
        ("valid-id", {"plan_tier": 42}, "tenant.plan_tier"),
        ("valid-id", {"domains": ["not a domain"]}, "tenant.domains[0]"),
        ("valid-id", {"admin": tenant_pb2.AdminContact(email="nope")}, "tenant.admin.email"),
    ],
)
def test_bad_input_is_invalid_argument_with_field_violations_and_starts_nothing(
    api: tenant_service_pb2_grpc.TenantServiceStub, stack: Stack, tenant_id: str, changes: dict, field: str
) -> None:
    spec = tenant_spec(**changes)
    with pytest.raises(grpc.RpcError) as raised:
        api.CreateTenant(tenant_service_pb2.CreateTenantRequest(tenant_id=tenant_id, tenant=spec))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    info, fields = details(raised.value)
    assert info.reason == "INVALID_ARGUMENT"
    assert field in fields
    assert "Traceback" not in (raised.value.details() or "")
    if tenant_id == "valid-id":
        assert workflow_runs(stack, tenant_id) == 0


def test_oversize_request_is_refused(api: tenant_service_pb2_grpc.TenantServiceStub) -> None:
    spec = tenant_spec(display_name="x" * 100_000)
    with pytest.raises(grpc.RpcError) as raised:
        api.CreateTenant(tenant_service_pb2.CreateTenantRequest(tenant_id="huge-one", tenant=spec))
    assert raised.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)


def test_unknown_tenant_is_not_found(api: tenant_service_pb2_grpc.TenantServiceStub) -> None:
    for call in (
        lambda: api.GetTenant(tenant_service_pb2.GetTenantRequest(name="tenants/nobody-here")),
        lambda: api.DeleteTenant(tenant_service_pb2.DeleteTenantRequest(name="tenants/nobody-here")),
        lambda: list(api.WatchTenant(tenant_service_pb2.WatchTenantRequest(name="tenants/nobody-here"))),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        info, _ = details(raised.value)
        assert info.reason == "TENANT_NOT_FOUND"


def test_list_pages_through_every_tenant(
    api: tenant_service_pb2_grpc.TenantServiceStub, new_id: Callable[[], str]
) -> None:
    ids = sorted(new_id() for _ in range(3))
    for tid in ids:
        create(api, tid)
    for tid in ids:
        settle(api, tid)
    seen, token, pages = [], "", 0
    while True:
        reply = api.ListTenants(tenant_service_pb2.ListTenantsRequest(page_size=2, page_token=token))
        assert len(reply.tenants) <= 2
        seen += [t.tenant_id for t in reply.tenants]
        pages += 1
        token = reply.next_page_token
        if not token:
            break
    assert set(ids) <= set(seen)
    assert seen == sorted(seen) and len(seen) == len(set(seen))
    assert pages >= 2
    with pytest.raises(grpc.RpcError) as raised:
        api.ListTenants(tenant_service_pb2.ListTenantsRequest(page_token="garbage!"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(raised.value)[1] == ["page_token"]


def test_health_and_reflection_are_served(stack: Stack) -> None:
    with stack.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "tenantry.tenant.v1.TenantService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        [reply] = list(
            reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        )
        names = {s.name for s in reply.list_services_response.service}
        assert "tenantry.tenant.v1.TenantService" in names
        assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= names


def test_reflection_v1_lists_services_and_describes_the_api_and_its_error_details(stack: Stack) -> None:
    """grpcurl and buf curl ask reflection v1 first; its messages are v1alpha's on the wire."""
    with stack.channel() as channel:
        v1 = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        listed, api_file, rpc_file, own_file = v1(
            iter(
                [
                    reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(
                        file_containing_symbol="tenantry.tenant.v1.TenantService"
                    ),
                    reflection_pb2.ServerReflectionRequest(file_containing_symbol="google.rpc.BadRequest"),
                    reflection_pb2.ServerReflectionRequest(
                        file_containing_symbol="grpc.reflection.v1.ServerReflection"
                    ),
                ]
            ),
            timeout=30,
        )
    names = {s.name for s in listed.list_services_response.service}
    assert {
        "tenantry.tenant.v1.TenantService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names

    def files(
        reply: reflection_pb2.ServerReflectionResponse,
    ) -> dict[str, descriptor_pb2.FileDescriptorProto]:
        assert not reply.HasField("error_response"), reply.error_response
        found = {}
        for raw in reply.file_descriptor_response.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
            found[proto.name] = proto
        return found

    service = files(api_file)["tenantry/tenant/v1/tenant_service.proto"]
    assert [s.name for s in service.service] == ["TenantService"]
    assert "google/rpc/error_details.proto" in files(rpc_file)
    assert "BadRequest" in [m.name for m in files(rpc_file)["google/rpc/error_details.proto"].message_type]
    [reflection] = [f for f in files(own_file).values() if f.package == "grpc.reflection.v1"]
    assert [s.name for s in reflection.service] == ["ServerReflection"]
