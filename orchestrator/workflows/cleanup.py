"""CleanUpTenant: tries again the undos that a failed provisioning run could
not complete, for an operator who has fixed the cause."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from libs.contracts import WORKFLOWS
    from libs.errors import ErrorType
    from libs.lifecycle import PROGRESS_QUERY
    from orchestrator.audit import AuditLog
    from orchestrator.plan import UNKNOWN_TIER_STEPS
    from orchestrator.run import LifecycleRun
    from orchestrator.workflows.common import leftover_note, run_failure
    from tenantry.orchestrator.v1 import orchestrator_pb2 as orchestrator
    from tenantry.tenant.v1 import tenant_pb2
    from tenantry.tenantdb.v1 import tenantdb_pb2 as tenantdb

State = tenant_pb2.Tenant.State


@workflow.defn(name=WORKFLOWS.rpc("CleanUpTenant").name)
class CleanUpTenantWorkflow:
    """Undoes again, latest first, every step the tenant's leftover resources
    name, and records what is still left (nothing, if every undo succeeds).

    It runs under the provisioning workflow id (see the API), so it never
    overlaps a retry of the provisioning; the undos are the provisioning
    run's own (plan.STEPS), built from the tenant's record.
    """

    def __init__(self) -> None:
        self._run = LifecycleRun(UNKNOWN_TIER_STEPS, failure_proof=True)

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> orchestrator.RunProgress:
        return self._run.progress()

    @workflow.run
    async def run(self, request: orchestrator.CleanUpTenantRequest) -> orchestrator.CleanUpTenantResponse:
        run, tid = self._run, request.tenant_id
        run.audit = audit = AuditLog.for_run(tid, request.requested_by, progress=run.progress)
        try:
            await audit.opened("clean_up")
            try:
                record = await run.cleanup("read_record", tenantdb.GetTenantRecordRequest(tenant_id=tid))
            except ActivityError as err:
                assert run.failure is not None
                raise run_failure(f"tenant {tid}: {run.failure.reason}", run.failure.error_type) from err
            tenant = record.tenant
            run.state = tenant.state
            if not record.found or tenant.state != State.STATE_PROVISION_FAILED:
                shown = State.Name(tenant.state) if record.found else "not in the registry"
                raise run_failure(
                    f"tenant {tid} is {shown}; only a PROVISION_FAILED tenant is cleaned up",
                    ErrorType.TENANT_STATE,
                )
            run.tenant = tenant
            left = list(tenant.leftover_resources)
            run.owe_again(left)
            run.replan(("read_record", *reversed(run.owed), "record_leftovers"))
            remaining = await run.compensate()
            info = workflow.info()
            await run.cleanup(
                "record_leftovers",
                tenantdb.RecordLeftoversRequest(
                    tenant_id=tid,
                    workflow_id=info.workflow_id,
                    run_id=info.run_id,
                    leftover_resources=remaining,
                ),
            )
            audit.state_changed(
                State.STATE_PROVISION_FAILED,
                "cleaned up" if not remaining else f"cleaned up in part{leftover_note(remaining)}",
            )
            return orchestrator.CleanUpTenantResponse(leftover_resources=remaining)
        finally:
            await audit.flushed(final=True)
