"""The raw-Temporal baseline: a pooled provisioning run's activities as
no-ops, on the same queues, in the same graph, in the same number of processes.

Everything is read from orchestrator/plan.py: the steps of the pooled plan,
each step's activity (its rpc's name and task queue) and its options, plus
the audit log's appends (orchestrator/audit.py) at the points a run makes
them. tests/workflows/test_bench_baseline.py compares the baseline's history
with a real ProvisionTenant run's, so a plan that changes without the
baseline fails there.

`python -m tests.bench.baseline --queue Q` runs one worker process: the
orchestrator queue gets the workflow, every other queue a no-op under each of
its rpcs' activity names.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from libs.contracts import ACTIVITY_CONTRACTS, TENANT_DATA, WORKFLOWS, Contract, Rpc, StepOptions
    from libs.temporal import main as run_process
    from libs.temporal import run_worker
    from orchestrator.plan import EVENT_STEP, STEPS, TierPlan, plan_for
    from tenantry.tenant.v1 import tenant_pb2

WORKFLOW_NAME = "bench.BaselineProvision"
# The audit log's append, as the graph below names it (not a step of the plan).
APPEND = "audit_append"
APPEND_RPC = TENANT_DATA.rpc("AppendTenantEvents")

# Of ProvisionTenantWorkflow's graph, what the step table does not say:
# the identity steps run one after another (each needs the one before), and
# the deployment and the steps after it run one at a time once everything
# before is made. Every other step between the mark and those runs on its own.
IDENTITY_CHAIN = ("create_realm", "create_oidc_client", "create_admin_user")
ONE_AT_A_TIME = ("deploy_application", "record_resources", "mark_active", "send_welcome")

Branch = tuple[str, ...]  # steps run in order
Stage = tuple[Branch, ...]  # branches run together; a stage ends when all have


def stages(plan: TierPlan) -> tuple[Stage, ...]:
    """The provisioning graph of `plan` as ProvisionTenantWorkflow runs it, with
    the audit appends a run makes: one when it enters PROVISIONING (beside the
    creations), one when it enters ACTIVE (beside the welcome) and the last
    one before it ends. A long step's start is appended at once as well, and
    that depends on timing: tiers with long steps have no baseline."""
    steps = plan.provision_steps
    if any(_long(STEPS[s].options) for s in steps):
        raise ValueError("only tiers without long steps (pooled) have a baseline")
    first, rest = steps[0], steps[1:]
    together = tuple(s for s in rest if s not in ONE_AT_A_TIME)
    chain = tuple(s for s in together if s in IDENTITY_CHAIN)
    creation: Stage = ((APPEND,), chain, *((s,) for s in together if s not in IDENTITY_CHAIN))
    after = [s for s in rest if s in ONE_AT_A_TIME]
    welcome = after.pop()  # the run is ACTIVE before its welcome
    assert welcome == "send_welcome", welcome
    return (
        ((first,),),
        creation,
        *(((s,),) for s in after),
        ((APPEND,), (welcome,)),
        ((APPEND,),),
    )


def activity_of(step: str) -> tuple[Rpc, StepOptions]:
    if step == APPEND:
        return APPEND_RPC, EVENT_STEP
    return STEPS[step].rpc, STEPS[step].options


def activities(plan: TierPlan) -> list[tuple[str, str]]:
    """(activity name, task queue) of every activity a run of `plan` schedules, in graph order."""
    return [
        (rpc.name, rpc.task_queue)
        for stage in stages(plan)
        for branch in stage
        for rpc, _ in map(activity_of, branch)
    ]


def _long(options: StepOptions) -> bool:
    # As orchestrator/run.py's _long: steps that may take minutes are appended at once.
    return options.start_to_close.total_seconds() > 60


async def _call(step: str) -> None:
    rpc, options = activity_of(step)
    await workflow.execute_activity(
        rpc.name,
        step,
        task_queue=rpc.task_queue,
        result_type=str,
        start_to_close_timeout=options.start_to_close,
        schedule_to_close_timeout=options.schedule_to_close,
        heartbeat_timeout=options.heartbeat,
        retry_policy=options.retry,
        cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    )


async def _branch(steps: Branch) -> None:
    for step in steps:
        await _call(step)


@workflow.defn(name=WORKFLOW_NAME)
class BaselineProvision:
    """A pooled ProvisionTenant's activities, queues, options and graph, doing nothing."""

    @workflow.run
    async def run(self, tenant_id: str) -> str:
        for stage in stages(plan_for(tenant_pb2.PLAN_TIER_POOLED)):
            await asyncio.gather(*(_branch(b) for b in stage))
        return tenant_id


def noops(contract: Contract) -> list[Callable[..., Any]]:
    """A no-op activity under the name of each of the contract's rpcs."""

    def noop(name: str) -> Callable[..., Any]:
        async def run(step: str) -> str:
            return step

        return activity.defn(name=name)(run)

    return [noop(rpc.name) for rpc in contract.rpcs.values()]


CONTRACTS = {c.task_queue: c for c in ACTIVITY_CONTRACTS}
QUEUES = (WORKFLOWS.task_queue, *CONTRACTS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue", required=True, choices=QUEUES)
    queue = parser.parse_args().queue

    async def serve() -> None:
        if queue == WORKFLOWS.task_queue:
            await run_worker(task_queue=queue, workflows=[BaselineProvision])
        else:
            await run_worker(task_queue=queue, activities=noops(CONTRACTS[queue]))

    run_process(f"baseline-{queue}", serve)


if __name__ == "__main__":
    main()
