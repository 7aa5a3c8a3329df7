"""Records the workflow histories that tests/replay replays.

`python -m tests.replay.record` runs each kind of lifecycle run on a fresh
Temporal dev server with fake activities (the same fakes as the workflow
tests) and writes its history to tests/replay/histories/<name>.json. Record
the new kinds of run after a workflow change is released: existing files are
kept, never re-recorded to make a replay pass, as they stand for runs
already in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError

from libs import contracts, lifecycle
from libs.devstack.embedded import temporal_server
from libs.devstack.processes import free_port
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2
from tests.workflows.test_provision_workflow import FakeDomains, _tenant, running

HISTORIES = Path(__file__).parent / "histories"


async def provision(client: Client, name: str, tier: int, fail: str | None = None) -> None:
    fakes = FakeDomains()
    if fail:
        fakes.fail.add(fail)
    rpc = contracts.WORKFLOWS.rpc("ProvisionTenant")
    tenant_id = f"r{uuid.uuid4().hex[:10]}"
    async with running(client, fakes):
        handle = await client.start_workflow(
            rpc.name,
            orchestrator_pb2.ProvisionTenantRequest(tenant=_tenant(tenant_id, tier), requested_by="recorder"),
            id=lifecycle.provision_workflow_id(tenant_id),
            task_queue=rpc.task_queue,
        )
        try:
            await handle.result()
        except WorkflowFailureError:
            assert fail, "only a run with an injected failure may fail"
    await save(client, name, handle.id)


async def provision_cancelled(client: Client, name: str, tier: int) -> None:
    fakes = FakeDomains()
    fakes.slow["CreateBucket"] = 1.0
    rpc = contracts.WORKFLOWS.rpc("ProvisionTenant")
    tenant_id = f"r{uuid.uuid4().hex[:10]}"
    async with running(client, fakes):
        handle = await client.start_workflow(
            rpc.name,
            orchestrator_pb2.ProvisionTenantRequest(tenant=_tenant(tenant_id, tier), requested_by="recorder"),
            id=lifecycle.provision_workflow_id(tenant_id),
            task_queue=rpc.task_queue,
        )
        await asyncio.wait_for(fakes.started["CreateBucket"].wait(), timeout=10)
        await handle.cancel()
        with contextlib.suppress(WorkflowFailureError):  # ends cancelled
            await handle.result()
    await save(client, name, handle.id)


async def deprovision(client: Client, name: str, tier: int) -> None:
    fakes = FakeDomains(record_tier=tier)
    rpc = contracts.WORKFLOWS.rpc("DeprovisionTenant")
    tenant_id = f"r{uuid.uuid4().hex[:10]}"
    async with running(client, fakes):
        handle = await client.start_workflow(
            rpc.name,
            orchestrator_pb2.DeprovisionTenantRequest(tenant_id=tenant_id, requested_by="recorder"),
            id=lifecycle.deprovision_workflow_id(tenant_id),
            task_queue=rpc.task_queue,
        )
        await handle.result()
    await save(client, name, handle.id)


async def save(client: Client, name: str, workflow_id: str) -> None:
    target = HISTORIES / f"{name}.json"
    if target.exists():
        # A recorded history stands for runs already in flight: keep it.
        print(f"kept {name} (delete the file to record it again)")
        return
    history: Any = await client.get_workflow_handle(workflow_id).fetch_history()
    target.write_text(history.to_json())
    print(f"recorded {name}")


async def record() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = temporal_server(Path(tmp), port=port, ui_port=None, log_dir=Path(tmp))
        server.start().wait_ready()
        try:
            client = await Client.connect(f"127.0.0.1:{port}")
            HISTORIES.mkdir(exist_ok=True)
            await provision(client, "provision_pooled_succeeded", tenant_pb2.PLAN_TIER_POOLED)
            await provision(client, "provision_silo_succeeded", tenant_pb2.PLAN_TIER_SILO)
            await provision(
                client, "provision_silo_compensated", tenant_pb2.PLAN_TIER_SILO, fail="CreateDeployment"
            )
            await provision_cancelled(client, "provision_bridge_cancelled", tenant_pb2.PLAN_TIER_BRIDGE)
            await deprovision(client, "deprovision_bridge_succeeded", tenant_pb2.PLAN_TIER_BRIDGE)
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(record())
