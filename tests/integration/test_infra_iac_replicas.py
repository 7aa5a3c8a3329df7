"""Two infra replicas, each its own OS process (`python -m services.infra`) polling one task queue.

A stack applied through one replica is destroyed through the other after
the first was killed with SIGKILL: the state is in S3, so nothing the second
needs was on the first's disk (each has a disk of its own, as on two hosts).
The replicas get a Temporal namespace of their own, so they are the only
pollers of `tenantry-infra` there and no other test's leftover task reaches
them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from libs import contracts
from libs.contracts import StepOptions
from libs.devstack.processes import ManagedProcess, free_port, grpc_serving, python_module
from services.infra.providers.iac import S3State
from tenantry.infra.v1 import infra_pb2
from tenantry.tenant.v1 import tenant_pb2
from tests.conftest import Aws

INFRA = contracts.INFRASTRUCTURE
# Short enough that a task handed to a poller that died is retried quickly.
STEP = StepOptions(
    start_to_close=timedelta(seconds=60),
    heartbeat=timedelta(seconds=10),
    retry=RetryPolicy(maximum_interval=timedelta(seconds=1), maximum_attempts=5),
)


@workflow.defn(name="IacReplicaApply")
class ApplyThroughTheQueue:
    @workflow.run
    async def run(
        self, request: infra_pb2.ApplyInfrastructureRequest
    ) -> infra_pb2.ApplyInfrastructureResponse:
        return await contracts.execute(INFRA.rpc("ApplyInfrastructure"), request, STEP)  # type: ignore[no-any-return]


@workflow.defn(name="IacReplicaDestroy")
class DestroyThroughTheQueue:
    @workflow.run
    async def run(
        self, request: infra_pb2.DestroyInfrastructureRequest
    ) -> infra_pb2.DestroyInfrastructureResponse:
        return await contracts.execute(INFRA.rpc("DestroyInfrastructure"), request, STEP)  # type: ignore[no-any-return]


@pytest.fixture
async def namespace(temporal_address: str) -> str:
    name = f"iac-replicas-{uuid.uuid4().hex[:8]}"
    client = await Client.connect(temporal_address)
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=name, workflow_execution_retention_period=Duration(seconds=86400))
    )
    return name


@pytest.fixture
def state_bucket() -> str:
    return f"iac-state.{uuid.uuid4().hex[:12]}"


@pytest.fixture
def replicas(
    aws: Aws, temporal_address: str, namespace: str, state_bucket: str, tmp_path: Path
) -> Iterator[list[ManagedProcess]]:
    # The same settings for both, as two replicas of one deployment get,
    # but a disk each: replicas on two hosts share none.
    env = {
        **os.environ,
        **aws.env,
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_NAMESPACE": namespace,
        "TENANTRY_IAC_STATE_BUCKET": state_bucket,
    }
    started: list[ManagedProcess] = []
    try:
        for name in ("infra-a", "infra-b"):
            health = f"127.0.0.1:{free_port()}"
            process = ManagedProcess(
                name,
                python_module("services.infra"),
                log_dir=tmp_path / "logs",
                env={
                    **env,
                    "TENANTRY_HEALTH_ADDRESS": health,
                    "TENANTRY_IAC_STATE_DIR": str(tmp_path / name),
                },
                ready=lambda health=health: grpc_serving(health),  # type: ignore[misc]
            )
            started.append(process.start())
        for process in started:
            process.wait_ready()
        yield started
    finally:
        for process in started:
            process.stop()


async def worker_pid(handle: WorkflowHandle[Any, Any]) -> int:
    """The pid of the worker that ran the workflow's (last) activity attempt."""
    identity = ""
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            identity = event.activity_task_started_event_attributes.identity
    # The SDK's default identity is "<pid>@<host>".
    return int(identity.split("@", 1)[0])


async def test_a_stack_applied_on_a_killed_replica_is_destroyed_by_the_other(
    aws: Aws,
    temporal_address: str,
    namespace: str,
    state_bucket: str,
    replicas: list[ManagedProcess],
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    tenant_id = f"t-{uuid.uuid4().hex[:12]}"
    state = S3State(
        boto3.client("s3"), bucket=state_bucket, key_prefix="tenants", region="us-east-1", path_style=True
    )
    client = await Client.connect(temporal_address, namespace=namespace)
    queue = f"iac-replicas-{uuid.uuid4()}"
    pids = {process.popen.pid: process for process in replicas if process.popen is not None}
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ApplyThroughTheQueue, DestroyThroughTheQueue],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        applying = await client.start_workflow(
            ApplyThroughTheQueue.run,
            infra_pb2.ApplyInfrastructureRequest(tenant_id=tenant_id, plan_tier=tenant_pb2.PLAN_TIER_SILO),
            id=f"apply-{tenant_id}",
            task_queue=queue,
            execution_timeout=timedelta(seconds=90),
        )
        applied = await applying.result()
        assert applied.outputs["cluster"] == f"tenantry-{tenant_id}"
        assert sorted(state.resources(tenant_id) or []) == [
            "terraform_data.cluster",
            "terraform_data.network",
        ]
        # Nothing of the run is left on either replica's disk.
        assert [p for name in ("infra-a", "infra-b") for p in (tmp_path / name).rglob("*")] == []

        applier = pids[await worker_pid(applying)]
        applier.kill()
        survivor = next(process for process in replicas if process is not applier)

        destroying = await client.start_workflow(
            DestroyThroughTheQueue.run,
            infra_pb2.DestroyInfrastructureRequest(tenant_id=tenant_id, expect_state=True),
            id=f"destroy-{tenant_id}",
            task_queue=queue,
            execution_timeout=timedelta(seconds=90),
        )
        await destroying.result()
        assert survivor.popen is not None and await worker_pid(destroying) == survivor.popen.pid

    # Nothing is left: the state holds no resource, and it is still there as the proof.
    assert state.resources(tenant_id) == []
    assert state.lock_holder(tenant_id) is None
    assert time.monotonic() - started < 60
