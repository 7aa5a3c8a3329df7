"""SuspendTenant and ResumeTenant: sign-in and the tenant's own deployment
off or on; a change that fails is switched back and says why."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from libs.contracts import WORKFLOWS
    from libs.errors import ErrorType
    from libs.lifecycle import PROGRESS_QUERY
    from orchestrator.audit import AuditLog
    from orchestrator.plan import PLANS, UNKNOWN_TIER_STEPS, plan_for
    from orchestrator.run import FAILURE_PROOF_PATCH, LifecycleRun, StepFailed
    from orchestrator.workflows.common import notice, run_failure, switch_access, switched_back
    from tenantry.orchestrator.v1 import orchestrator_pb2 as orchestrator
    from tenantry.tenant.v1 import tenant_pb2
    from tenantry.tenantdb.v1 import tenantdb_pb2 as tenantdb

State = tenant_pb2.Tenant.State
# States a suspend or resume cannot start from because another run has the tenant.
_TAKEN = (
    State.STATE_PENDING,
    State.STATE_PROVISIONING,
    State.STATE_DEPROVISIONING,
    State.STATE_SUSPENDING,
    State.STATE_RESUMING,
)


class _AccessChange:
    """Suspend or resume: switches a tenant's sign-in and deployment off or on.

    Runs since FAILURE_PROOF_PATCH first take the tenant over (ACTIVE ->
    SUSPENDING, or SUSPENDED -> RESUMING), so that a deletion racing them
    finds the tenant taken, and a run that fails switches back what it had
    switched and puts the tenant back where it was, with the failed step and
    the reason as its last operation.
    """

    suspend: bool

    def __init__(self) -> None:
        self._run = LifecycleRun(UNKNOWN_TIER_STEPS)

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> orchestrator.RunProgress:
        return self._run.progress()

    @property
    def _states(self) -> tuple[int, int, int]:
        """(source, changing, target) states of this kind of run."""
        if self.suspend:
            return State.STATE_ACTIVE, State.STATE_SUSPENDING, State.STATE_SUSPENDED
        return State.STATE_SUSPENDED, State.STATE_RESUMING, State.STATE_ACTIVE

    async def _change(self, tid: str, requested_by: str, plan_tier: int) -> int:
        run = self._run
        run.audit = audit = AuditLog.for_run(tid, requested_by, progress=run.progress)
        run.failure_proof = workflow.patched(FAILURE_PROOF_PATCH)
        seen = PLANS.get(plan_tier)
        if seen is not None:
            # The whole plan from the first update, for the tier the caller
            # saw; the record's tier decides once the run has read it.
            claim = run.failure_proof
            run.reset(seen.suspend_steps(claim=claim) if self.suspend else seen.resume_steps(claim=claim))
        try:
            await audit.opened("suspend" if self.suspend else "resume")
            if run.failure_proof:
                return await self._claimed_change(tid)
            record = await run.cleanup("read_record", tenantdb.GetTenantRecordRequest(tenant_id=tid))
            tenant = record.tenant
            source, _, target = self._states
            run.state = tenant.state
            if record.found and tenant.state == target:
                run.skip_rest()
                return target  # already there: nothing to do
            if not record.found or tenant.state != source:
                shown = State.Name(tenant.state) if record.found else "not in the registry"
                raise ApplicationError(
                    f"tenant {tid} is {shown}; only a {State.Name(source)} tenant"
                    f" can become {State.Name(target)}",
                    type="FailedPrecondition",
                    non_retryable=True,
                )
            plan = plan_for(tenant.plan_tier)
            run.replan(plan.suspend_steps() if self.suspend else plan.resume_steps())
            await switch_access(run, plan, tid, on=not self.suspend)
            if self.suspend:
                await run.cleanup("mark_suspended", tenantdb.MarkSuspendedRequest(tenant_id=tid))
            else:
                await run.cleanup("mark_resumed", tenantdb.MarkResumedRequest(tenant_id=tid))
            run.enter(target)
            kind = "SUSPENDED" if self.suspend else "RESUMED"
            await run.best_effort(f"send_{kind.lower()}", notice(tenant, kind, per_run=True))
            return target
        finally:
            await audit.flushed(final=True)

    async def _claimed_change(self, tid: str) -> int:
        run = self._run
        info = workflow.info()
        source, changing, target = self._states
        claim = "mark_suspending" if self.suspend else "mark_resuming"
        if claim not in run.status:
            run.reset((claim,))  # the tier is not known yet
        try:
            claimed = await run.cleanup(
                claim,
                tenantdb.MarkAccessChangingRequest(
                    tenant_id=tid, suspend=self.suspend, workflow_id=info.workflow_id, run_id=info.run_id
                ),
            )
        except ActivityError as err:
            assert run.failure is not None
            raise run_failure(f"tenant {tid}: {run.failure.reason}", run.failure.error_type) from err
        tenant = claimed.tenant
        run.state = tenant.state
        if not claimed.found:
            raise run_failure(f"tenant {tid} is not in the registry", ErrorType.NOT_FOUND)
        if not claimed.claimed:
            run.skip_rest()
            if tenant.state == target:
                return target  # already there: nothing to do
            raise run_failure(
                f"tenant {tid} is {State.Name(tenant.state)}; only a {State.Name(source)} tenant"
                f" can become {State.Name(target)}",
                ErrorType.OPERATION_IN_PROGRESS if tenant.state in _TAKEN else ErrorType.TENANT_STATE,
            )
        run.tenant = tenant
        plan = plan_for(tenant.plan_tier)
        run.replan(plan.suspend_steps(claim=True) if self.suspend else plan.resume_steps(claim=True))
        run.enter(changing)
        try:
            await switch_access(run, plan, tid, on=not self.suspend, undoable=True)
            if self.suspend:
                await run.cleanup("mark_suspended", tenantdb.MarkSuspendedRequest(tenant_id=tid))
            else:
                await run.cleanup("mark_resumed", tenantdb.MarkResumedRequest(tenant_id=tid))
        except (StepFailed, ActivityError):
            assert run.failure is not None
            await self._switch_back(tid, run.failure, source)
        run.enter(target)
        kind = "SUSPENDED" if self.suspend else "RESUMED"
        await run.best_effort(f"send_{kind.lower()}", notice(tenant, kind, per_run=True))
        return target

    async def _switch_back(self, tid: str, failure: StepFailed, source: int) -> None:
        """Undoes the switches made, puts the tenant back in `source` with the
        failure, and ends the run with it."""
        run = self._run
        run.skip_rest()
        failure = switched_back(failure, await run.compensate())
        reason = failure.reason
        await run.cleanup(
            "mark_access_change_failed",
            tenantdb.MarkAccessChangeFailedRequest(
                tenant_id=tid,
                run_id=workflow.info().run_id,
                failed_step=failure.step,
                reason=reason,
                failure_type=failure.error_type,
            ),
        )
        run.enter(source, f"{failure.step}: {reason}")
        operation = "suspend" if self.suspend else "resume"
        raise run_failure(
            f"{operation} failed at {failure.step}: {reason}",
            ErrorType.SUSPEND_FAILED if self.suspend else ErrorType.RESUME_FAILED,
            failure,
        )


@workflow.defn(name=WORKFLOWS.rpc("SuspendTenant").name)
class SuspendTenantWorkflow(_AccessChange):
    """ACTIVE -> SUSPENDED: sign-in disabled, own deployment scaled to zero."""

    suspend = True

    @workflow.run
    async def run(self, request: orchestrator.SuspendTenantRequest) -> orchestrator.SuspendTenantResponse:
        state = await self._change(request.tenant_id, request.requested_by, request.plan_tier)
        return orchestrator.SuspendTenantResponse(state=state)  # type: ignore[arg-type]


@workflow.defn(name=WORKFLOWS.rpc("ResumeTenant").name)
class ResumeTenantWorkflow(_AccessChange):
    """SUSPENDED -> ACTIVE: deployment scaled back, then sign-in enabled."""

    suspend = False

    @workflow.run
    async def run(self, request: orchestrator.ResumeTenantRequest) -> orchestrator.ResumeTenantResponse:
        state = await self._change(request.tenant_id, request.requested_by, request.plan_tier)
        return orchestrator.ResumeTenantResponse(state=state)  # type: ignore[arg-type]
