"""The orchestrator process: runs the lifecycle workflows, nothing else."""

from __future__ import annotations

from libs import contracts, search
from libs.temporal import connect, run_worker
from orchestrator.workflows.access import ResumeTenantWorkflow, SuspendTenantWorkflow
from orchestrator.workflows.cleanup import CleanUpTenantWorkflow
from orchestrator.workflows.deprovision import DeprovisionTenantWorkflow
from orchestrator.workflows.provision import ProvisionTenantWorkflow

CONTRACT = contracts.WORKFLOWS
WORKFLOWS = (
    ProvisionTenantWorkflow,
    DeprovisionTenantWorkflow,
    SuspendTenantWorkflow,
    ResumeTenantWorkflow,
    CleanUpTenantWorkflow,
)


async def run() -> None:
    client = await connect()
    # A run would stop at its first upsert of an attribute the namespace lacks: refuse now.
    await search.check_registered(client)
    await run_worker(task_queue=CONTRACT.task_queue, workflows=WORKFLOWS, client=client)
