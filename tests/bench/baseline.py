"""The raw-Temporal baseline: the provisioning graph's shape with no-op
activities, on the same queues, in the same number of processes.

`python -m tests.bench.baseline --queue Q` runs one worker process: the
orchestrator queue gets the workflow, every other queue the no-op activity.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta

from temporalio import activity, workflow

from libs.contracts import IDENTITY, INFRASTRUCTURE, NOTIFICATION, TENANT_DATA, WORKFLOWS
from libs.temporal import main as run_process
from libs.temporal import run_worker

WORKFLOW_NAME = "bench.BaselineProvision"
NOOP = "bench.noop"


@activity.defn(name=NOOP)
async def noop(step: str) -> str:
    return step


async def _call(step: str, queue: str) -> str:
    return await workflow.execute_activity(
        NOOP, step, task_queue=queue, start_to_close_timeout=timedelta(seconds=20), result_type=str
    )


@workflow.defn(name=WORKFLOW_NAME)
class BaselineProvision:
    """Same activities, queues and dependency graph as ProvisionTenantWorkflow."""

    @workflow.run
    async def run(self, tenant_id: str) -> str:
        await _call("mark_provisioning", TENANT_DATA.task_queue)

        async def identity() -> None:
            for step in ("create_realm", "create_oidc_client", "create_admin_user"):
                await _call(step, IDENTITY.task_queue)

        await asyncio.gather(
            identity(),
            _call("create_schema", TENANT_DATA.task_queue),
            _call("create_bucket", INFRASTRUCTURE.task_queue),
            _call("create_dns_records", INFRASTRUCTURE.task_queue),
        )
        await _call("record_resources", TENANT_DATA.task_queue)
        await _call("mark_active", TENANT_DATA.task_queue)
        await _call("send_welcome", NOTIFICATION.task_queue)
        return tenant_id


QUEUES = (WORKFLOWS.task_queue, IDENTITY.task_queue, INFRASTRUCTURE.task_queue, NOTIFICATION.task_queue,
          TENANT_DATA.task_queue)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue", required=True, choices=QUEUES)
    queue = parser.parse_args().queue

    async def serve() -> None:
        if queue == WORKFLOWS.task_queue:
            await run_worker(task_queue=queue, workflows=[BaselineProvision])
        else:
            await run_worker(task_queue=queue, activities=[noop])

    run_process(f"baseline-{queue}", serve)


if __name__ == "__main__":
    main()
