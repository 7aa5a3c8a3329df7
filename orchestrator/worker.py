"""The orchestrator process: runs the lifecycle workflows, nothing else."""

from __future__ import annotations

from libs import contracts
from libs.temporal import run_worker
from orchestrator.workflows import (
    DeprovisionTenantWorkflow,
    ProvisionTenantWorkflow,
    ResumeTenantWorkflow,
    SuspendTenantWorkflow,
)

CONTRACT = contracts.WORKFLOWS
WORKFLOWS = (ProvisionTenantWorkflow, DeprovisionTenantWorkflow, SuspendTenantWorkflow, ResumeTenantWorkflow)


async def run() -> None:
    await run_worker(task_queue=CONTRACT.task_queue, workflows=WORKFLOWS)
