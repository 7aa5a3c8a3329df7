"""What the workflow tests share: fake activities registered under the real
activity names on the real queues, and readers of a run's history."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Interceptor, Worker

from libs import contracts, errors, lifecycle
from libs.errors import ErrorType
from libs.temporal import SANDBOX_RUNNER
from orchestrator.worker import WORKFLOWS
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2

UNDO = {
    "CreateRealm": "DeleteRealm",
    "CreateOidcClient": "DeleteOidcClient",
    "CreateAdminUser": "DeleteAdminUser",
    "CreateTenantSchema": "DropTenantSchema",
    "CreateBucket": "DeleteBucket",
    "UpsertDnsRecords": "DeleteDnsRecords",
    "ApplyInfrastructure": "DestroyInfrastructure",
    "CreateDeployment": "DeleteDeployment",
    "RecordResources": "DeleteResourceRecords",
}
POOLED, BRIDGE, SILO = tenant_pb2.PLAN_TIER_POOLED, tenant_pb2.PLAN_TIER_BRIDGE, tenant_pb2.PLAN_TIER_SILO
TIER_ONLY = {"apply_infrastructure": {SILO}, "deploy_application": {BRIDGE, SILO}}


class FakeDomains:
    """Fake activities for every declared rpc; records calls, fails on demand."""

    def __init__(self, record_tier: int = POOLED) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.events: list[tenant_pb2.TenantEvent] = []  # appended audit events, kept apart from calls
        self.progress: list[Any] = []  # the step progress each append carried (tenantdb RunSteps)
        self.calls_before_append: list[int] = []  # how many calls each append came after
        self.fail: set[str] = set()
        self.slow: dict[str, float] = {}
        self.started: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.record_tier = record_tier
        self.record_state: int = tenant_pb2.Tenant.STATE_UNSPECIFIED
        # What the registry's record lists as left by a failed run (a clean-up reads it).
        self.record_leftovers: list[tenant_pb2.LeftoverResource] = []

    def activities(self, contract: contracts.Contract) -> list[Callable[..., Any]]:
        return [self._fake(rpc) for rpc in contract.rpcs.values()]

    def _fake(self, rpc: contracts.Rpc) -> Callable[..., Any]:
        async def fake(request: Any) -> Any:
            if rpc.method == "AppendTenantEvents":
                self.events.extend(request.events)
                self.calls_before_append.append(len(self.calls))
                if request.HasField("progress"):
                    self.progress.append(request.progress)
                return rpc.output_type()
            self.calls.append((rpc.method, request))
            self.started[rpc.method].set()
            # Long enough that sibling steps are still in flight at a failure.
            # A slow step ignores cancellation, as a provider call does.
            await asyncio.shield(asyncio.sleep(self.slow.get(rpc.method, 0.05)))
            if rpc.method in self.fail:
                raise errors.permanent(ErrorType.CONFLICT, f"injected failure in {rpc.method}")
            out = _plausible(rpc)
            if rpc.method in ("GetTenantRecord", "MarkAccessChanging"):
                out.tenant.plan_tier = self.record_tier
                out.tenant.state = self.record_state
                out.tenant.leftover_resources.extend(self.record_leftovers)
            if rpc.method == "MarkAccessChanging":
                source = (
                    tenant_pb2.Tenant.STATE_ACTIVE if request.suspend else tenant_pb2.Tenant.STATE_SUSPENDED
                )
                out.claimed = self.record_state == source
            return out

        fake.__annotations__ = {"request": rpc.input_type, "return": rpc.output_type}
        return activity.defn(name=rpc.name)(fake)

    def called(self, method: str) -> list[Any]:
        return [request for name, request in self.calls if name == method]


def _plausible(rpc: contracts.Rpc) -> Any:
    out = rpc.output_type()
    for field, value in {
        "realm_id": "tenant-x",
        "client_id": "x-app",
        "user_id": "u-1",
        "schema": "tenant_x",
        "bucket": "tenantry-x",
        "message_id": "<m@tenantry>",
        "service": "arn:aws:ecs:us-east-1:0:service/tenantry/tenant-x",
        "revision": "arn:aws:ecs:us-east-1:0:task-definition/tenantry-x:1",
    }.items():
        if field in out.DESCRIPTOR.fields_by_name:
            setattr(out, field, value)
    if "record_names" in out.DESCRIPTOR.fields_by_name:
        out.record_names.append("x.tenants.test")  # type: ignore[attr-defined]
    if "outputs" in out.DESCRIPTOR.fields_by_name:
        out.outputs["cluster"] = "tenantry-x"  # type: ignore[attr-defined]
    if "found" in out.DESCRIPTOR.fields_by_name:
        out.found = True  # type: ignore[attr-defined]
        out.tenant.CopyFrom(tenant_spec("x"))  # type: ignore[attr-defined]
    return out


def tenant_spec(tenant_id: str, tier: int = POOLED) -> tenant_pb2.Tenant:
    return tenant_pb2.Tenant(
        tenant_id=tenant_id,
        display_name="Acme",
        plan_tier=tier,  # type: ignore[arg-type]
        domains=["acme.example.com"],
        admin=tenant_pb2.AdminContact(email="admin@acme.example.com", given_name="Ada"),
    )


@asynccontextmanager
async def running(
    client: Client, fakes: FakeDomains, *, interceptors: Sequence[Interceptor] = ()
) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for contract in contracts.ACTIVITY_CONTRACTS:
            worker = Worker(
                client,
                task_queue=contract.task_queue,
                activities=fakes.activities(contract),
                interceptors=interceptors,
            )
            await stack.enter_async_context(worker)
        orchestrator = Worker(
            client,
            task_queue=contracts.WORKFLOWS.task_queue,
            workflows=list(WORKFLOWS),
            workflow_runner=SANDBOX_RUNNER,
            interceptors=interceptors,
        )
        await stack.enter_async_context(orchestrator)
        yield


async def start_provision(client: Client, tier: int = POOLED) -> tuple[str, WorkflowHandle[Any, Any]]:
    tenant_id = f"t{uuid.uuid4().hex[:12]}"
    rpc = contracts.WORKFLOWS.rpc("ProvisionTenant")
    handle = await client.start_workflow(
        rpc.name,
        orchestrator_pb2.ProvisionTenantRequest(tenant=tenant_spec(tenant_id, tier), requested_by="test"),
        id=lifecycle.provision_workflow_id(tenant_id),
        task_queue=rpc.task_queue,
        result_type=rpc.output_type,
    )
    return tenant_id, handle


async def activity_order(handle: WorkflowHandle[Any, Any]) -> tuple[list[str], list[str]]:
    """(completed activities, scheduled activities), each in history order."""
    scheduled_names: dict[int, str] = {}
    completed: list[str] = []
    scheduled: list[str] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name.rsplit(".", 1)[-1]
            scheduled_names[event.event_id] = name
            if name != "AppendTenantEvents":  # the audit log's appends run beside the steps
                scheduled.append(name)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            name = scheduled_names[event.activity_task_completed_event_attributes.scheduled_event_id]
            if name != "AppendTenantEvents":
                completed.append(name)
    return completed, scheduled
