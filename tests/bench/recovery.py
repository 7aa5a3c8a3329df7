"""Recovery from a dead worker: how long after a worker is SIGKILLed while it
holds an activity does that activity complete on another replica?

`python -m tests.bench.recovery --rounds 10` starts the stack with a second
infra worker, and in each round provisions a tenant whose CreateBucket is
slow once (a `delay_before` fault that heartbeats, libs/faults.py), kills the
replica that holds it, and times kill -> the activity completed elsewhere.
Every activity heartbeats each second (libs.contracts) against a heartbeat
timeout of orchestrator.plan.HEARTBEAT, so the retry comes within about that
long, not after the step's start-to-close timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client

from libs import lifecycle
from libs.devstack.processes import ManagedProcess, free_port, grpc_serving, python_module
from libs.devstack.stack import Stack
from orchestrator.plan import HEARTBEAT, STEPS
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc

RPC = STEPS["create_bucket"].rpc


def replica(stack: Stack, name: str) -> ManagedProcess:
    """Another infra worker process, like the stack's own."""
    health = f"127.0.0.1:{free_port()}"
    process = ManagedProcess(
        name,
        python_module("services.infra"),
        log_dir=stack.log_dir,
        env={**stack.env(), "TENANTRY_HEALTH_ADDRESS": health},
        ready=lambda: grpc_serving(health),
    )
    return process.start().wait_ready()


async def holder(client: Client, tid: str) -> tuple[int, float]:
    """The pid of the worker that holds the tenant's CreateBucket attempt, once it does."""
    handle = client.get_workflow_handle(lifecycle.provision_workflow_id(tid))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            pending = (await handle.describe()).raw_description.pending_activities
        except Exception:  # not started yet
            pending = []
        for activity in pending:
            started = activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            if started and activity.activity_type.name == RPC.name and activity.last_worker_identity:
                return int(activity.last_worker_identity.split("@", 1)[0]), time.monotonic()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no worker took {tid}'s CreateBucket")


async def completed(client: Client, tid: str) -> float:
    """Waits until the tenant's CreateBucket has completed; returns when it was seen."""
    handle = client.get_workflow_handle(lifecycle.provision_workflow_id(tid))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        scheduled: set[int] = set()
        async for event in handle.fetch_history_events():
            attributes = event.activity_task_scheduled_event_attributes
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and (
                attributes.activity_type.name == RPC.name
            ):
                scheduled.add(event.event_id)
            done = event.activity_task_completed_event_attributes
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED and (
                done.scheduled_event_id in scheduled
            ):
                return time.monotonic()
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{tid}'s CreateBucket never completed")


async def bench(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="tenantry-recovery-") as scratch:
        rules = Path(scratch) / "faults.json"
        rules.write_text("{}")
        stack = Stack(
            Path(scratch) / "stack", extra_env={"TENANTRY_FAULT_INJECTION_FILE": str(rules)}
        ).start()
        replicas = {"infra": stack.services["infra"], "infra-2": replica(stack, "infra-2")}
        try:
            client = await Client.connect(stack.temporal_address, data_converter=stack.data_converter())
            recoveries: list[float] = []
            async with stack.aio_channel() as channel:
                api = tenant_service_pb2_grpc.TenantServiceStub(channel)
                for i in range(rounds):
                    tid = f"r{uuid.uuid4().hex[:8]}"
                    rule = [{"rpc": RPC.method, "mode": "delay_before", "seconds": 60}]
                    rules.write_text(json.dumps({tid: rule}))
                    spec = tenant_pb2.Tenant(
                        display_name="Recovery",
                        plan_tier=tenant_pb2.PLAN_TIER_POOLED,
                        domains=[f"{tid}.example.com"],
                        admin=tenant_pb2.AdminContact(email=f"admin@{tid}.example.com"),
                    )
                    await api.CreateTenant(tenant_service_pb2.CreateTenantRequest(tenant_id=tid, tenant=spec))
                    pid, _ = await holder(client, tid)
                    [(name, victim)] = [(n, p) for n, p in replicas.items() if p.popen and p.popen.pid == pid]
                    killed = time.monotonic()
                    os.kill(pid, signal.SIGKILL)
                    victim.popen.wait()  # type: ignore[union-attr]
                    done = await completed(client, tid)
                    recoveries.append(done - killed)
                    print(f"round {i + 1}: killed {name}; completed on the other {done - killed:.2f} s later")
                    replicas[name] = (
                        replica(stack, name) if name == "infra-2" else stack.start_service("infra")
                    )
        finally:
            replicas["infra-2"].stop()
            stack.stop()
    print(
        f"\nkill -> completed elsewhere over {rounds} rounds: p50 {statistics.median(recoveries):.2f} s,"
        f" max {max(recoveries):.2f} s (heartbeat timeout {HEARTBEAT.total_seconds():g} s;"
        f" the step's start-to-close is {STEPS['create_bucket'].options.start_to_close.total_seconds():g} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(bench(args.rounds))


if __name__ == "__main__":
    main()
