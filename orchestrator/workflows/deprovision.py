"""DeprovisionTenant: a grace period that an undelete ends, a backup, then
removal of everything; a deletion that cannot finish says where it stopped."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from libs.contracts import WORKFLOWS
    from libs.errors import ErrorType
    from libs.lifecycle import (
        DELETE_NOW_UPDATE,
        PROGRESS_QUERY,
        UNDELETE_UPDATE,
        UPDATE_REFUSED,
    )
    from orchestrator.audit import AuditLog
    from orchestrator.plan import PLANS, UNKNOWN_TIER_STEPS, TierPlan, plan_for
    from orchestrator.run import FAILURE_PROOF_PATCH, LifecycleRun, StepFailed
    from orchestrator.workflows.common import (
        Claims,
        notice,
        run_failure,
        settle,
        switch_access,
        switched_back,
    )
    from tenantry.idp.v1 import idp_pb2 as idp
    from tenantry.infra.v1 import infra_pb2 as infra
    from tenantry.orchestrator.v1 import orchestrator_pb2 as orchestrator
    from tenantry.tenant.v1 import tenant_pb2
    from tenantry.tenantdb.v1 import tenantdb_pb2 as tenantdb

State = tenant_pb2.Tenant.State
Status = tenant_pb2.StepStatus
Kind = tenant_pb2.TenantEvent.Kind
Operation = tenant_pb2.Operation
# Deprovisioning with a grace period and a backup; runs started before it
# replay as they ran (no wait, no backup).
GRACE_PATCH = "deprovision-grace-backup-v1"
_BACKUP_STEPS = ("backup_schema", "export_identity")


class _RestoreFailed(Exception):
    """An undelete could not be completed; the run goes back to waiting."""

    def __init__(self, failure: StepFailed) -> None:
        super().__init__(str(failure))
        self.failure = failure


@workflow.defn(name=WORKFLOWS.rpc("DeprovisionTenant").name)
class DeprovisionTenantWorkflow(Claims):
    """Removes everything a tenant has, ending DEPROVISIONED.

    With a grace period, the tenant's sign-in and deployment are switched off
    and its admin told first; an `undelete` update during the wait restores
    it (and if the restore fails, it is switched off again and the wait goes
    on). Then its schema and identity are backed up (unless the request says
    not to), and removed. Every removal step is idempotent and retried with
    backoff: teardown cannot be rolled back, only finished. A step that fails
    for good leaves the tenant DEPROVISION_FAILED with the step and the
    reason, and a DeleteTenant then resumes: the backup already taken and the
    grace period already over are not repeated.
    """

    def __init__(self) -> None:
        # The tier, and so the full list of steps, is known once the record is read.
        self._run = LifecycleRun(UNKNOWN_TIER_STEPS)
        self._audit: AuditLog | None = None
        self._grace = False  # True from the start of a run with a grace period
        self._purging = False  # True once backup and removal have begun: too late to undelete
        self._undeleted_by: str | None = None
        self._delete_now = False
        self._claim: orchestrator.ClaimResponse | None = None
        # How the latest undelete ended: None while it runs, else the failure (or False for none).
        self._restore_failure: StepFailed | bool | None = None
        self._restored_to: int = State.STATE_UNSPECIFIED
        # The backup objects this run took (kept on the record if the run fails).
        self._backups: list[tenant_pb2.BackupObject] = []

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> orchestrator.RunProgress:
        return self._run.progress()

    @workflow.update(name=UNDELETE_UPDATE)
    async def undelete(self, request: orchestrator.UndeleteRequest) -> orchestrator.DeletionUpdateResponse:
        """Restores the tenant. In failure-proof runs the answer comes once the
        restore has ended: the restored state, or the failure of the restore."""
        if self._undeleted_by is None:
            self._undeleted_by = request.requested_by
            self._restore_failure = None
            if self._audit is not None:
                self._audit.requested("undelete", actor=request.requested_by)
        if not self._run.failure_proof:
            return orchestrator.DeletionUpdateResponse(state=State.STATE_DEPROVISIONING)
        await workflow.wait_condition(lambda: self._restore_failure is not None)
        if isinstance(self._restore_failure, StepFailed):
            failure = self._restore_failure
            raise run_failure(
                f"the undelete failed at {failure.step}: {failure.reason}; the deletion goes on",
                ErrorType.UNDELETE_FAILED,
                failure,
            )
        return orchestrator.DeletionUpdateResponse(state=self._restored_to)  # type: ignore[arg-type]

    @undelete.validator
    def _undelete_allowed(self, request: orchestrator.UndeleteRequest) -> None:
        if not self._grace:
            raise ApplicationError("the deletion has no grace period to cancel", type=UPDATE_REFUSED)
        if self._purging:
            raise ApplicationError(
                "the grace period is over; the backup and removal have begun", type=UPDATE_REFUSED
            )

    @workflow.update(name=DELETE_NOW_UPDATE)
    def delete_now(self, request: orchestrator.DeleteNowRequest) -> orchestrator.DeletionUpdateResponse:
        if not (self._delete_now or self._purging):
            self._delete_now = True
            if self._audit is not None:
                self._audit.requested("delete_now", actor=request.requested_by)
        return orchestrator.DeletionUpdateResponse(state=State.STATE_DEPROVISIONING)

    @delete_now.validator
    def _delete_now_allowed(self, request: orchestrator.DeleteNowRequest) -> None:
        if self._undeleted_by is not None:
            raise ApplicationError("the tenant is being restored", type=UPDATE_REFUSED)

    @workflow.run
    async def run(
        self, request: orchestrator.DeprovisionTenantRequest
    ) -> orchestrator.DeprovisionTenantResponse:
        self._audit = self._run.audit = AuditLog.for_run(
            request.tenant_id, request.requested_by, progress=self._run.progress
        )
        self._run.failure_proof = workflow.patched(FAILURE_PROOF_PATCH)
        try:
            return await self._deprovision(request)
        finally:
            await self._audit.flushed(final=True)

    def _refused(self, failure: StepFailed) -> ApplicationError:
        """The run could not take the tenant over and changed nothing."""
        self._claim = orchestrator.ClaimResponse(
            claimed=False, failure_reason=failure.reason, failure_type=failure.error_type
        )
        self._run.skip_rest()
        return run_failure(f"the deletion could not start: {failure.reason}", failure.error_type)

    async def _deprovision(
        self, request: orchestrator.DeprovisionTenantRequest
    ) -> orchestrator.DeprovisionTenantResponse:
        run, tid, audit = self._run, request.tenant_id, self._audit
        assert audit is not None
        new = run.failure_proof
        graceful = workflow.patched(GRACE_PATCH)
        grace = request.grace_period.ToTimedelta() if graceful else timedelta(0)
        self._grace = grace > timedelta(0)
        run.state = State.STATE_DEPROVISIONING
        seen = PLANS.get(request.plan_tier)
        if seen is not None:
            # The whole plan from the first update, as for a live tenant of the
            # tier the caller saw; the record decides once it is read.
            run.reset(
                seen.teardown_steps(grace=self._grace, backup=not request.skip_backup)
                if graceful
                else seen.deprovision_steps
            )
        await audit.opened(
            "deprovision",
            f"grace period {grace}; backup {'skipped' if request.skip_backup else 'taken'}",
        )
        try:
            record = await run.cleanup("read_record", tenantdb.GetTenantRecordRequest(tenant_id=tid))
        except ActivityError:
            if new and run.failure is not None:
                raise self._refused(run.failure) from None
            raise
        if not record.found:
            if new:
                raise self._refused(
                    StepFailed(
                        "read_record", f"tenant {tid} is not in the registry", str(ErrorType.NOT_FOUND)
                    )
                )
            raise ApplicationError(
                f"tenant {tid} is not in the registry", type="NotFound", non_retryable=True
            )
        tenant = record.tenant
        run.tenant = tenant
        plan = plan_for(tenant.plan_tier)
        resuming = new and tenant.state == State.STATE_DEPROVISION_FAILED
        # What an undelete puts back. A tenant found DEPROVISIONING (a run
        # that stopped half-way) was live before it.
        if new and record.state_before_deletion:
            restore_to = record.state_before_deletion
        elif tenant.state not in (State.STATE_DEPROVISIONING, State.STATE_DEPROVISION_FAILED):
            restore_to = tenant.state
        else:
            restore_to = State.STATE_ACTIVE
        live = restore_to in (State.STATE_ACTIVE, State.STATE_SUSPENDED)
        # A resumed deletion keeps the backup its failed run took, and its
        # grace period: no longer than what was left of it.
        taken = list(tenant.backups) if resuming else []
        if resuming:
            left = (
                tenant.purge_time.ToDatetime(tzinfo=workflow.now().tzinfo) - workflow.now()
                if tenant.HasField("purge_time")
                else timedelta(0)
            )
            grace = min(grace, max(left, timedelta(0)))
            self._grace = grace > timedelta(0)
        backup = graceful and live and not request.skip_backup and not taken
        if graceful:
            run.replan(plan.teardown_steps(grace=self._grace, backup=backup))
        else:
            run.replan(plan.deprovision_steps)
        purge_time: datetime | None = workflow.now() + grace if self._grace else None
        run.purge_time = purge_time
        marking = tenantdb.MarkDeprovisioningRequest(
            tenant_id=tid,
            workflow_id=workflow.info().workflow_id,
            run_id=workflow.info().run_id,
            expected_state=request.expected_state,
        )
        if purge_time is not None:
            marking.purge_time.FromDatetime(purge_time)
        try:
            await run.cleanup("mark_deprovisioning", marking)
        except ActivityError:
            if not new or run.failure is None:
                raise
            # The mark may have been written before the step failed: say so
            # on the record if it is ours; if not, nothing was changed.
            if await self._mark_failed(tid, [], purge_begun=False):
                self._claim = orchestrator.ClaimResponse(
                    claimed=True,
                    state=State.STATE_DEPROVISION_FAILED,
                    failure_reason=run.failure.reason,
                    failure_type=run.failure.error_type,
                )
                raise self._failed(run.failure) from None
            raise self._refused(run.failure) from None
        self._claim = orchestrator.ClaimResponse(
            claimed=True,
            state=State.STATE_DEPROVISIONING,
            purge_time=marking.purge_time if purge_time else None,
        )
        run.enter(State.STATE_DEPROVISIONING, f"purge at {purge_time.isoformat()}" if purge_time else "")
        if not new:
            return await self._purge(tenant, plan, restore_to, backup, taken, grace)
        try:
            return await self._purge(tenant, plan, restore_to, backup, taken, grace)
        except (ActivityError, StepFailed):
            failure = run.failure
            if failure is None:
                raise
            backups = [*taken, *self._backups]
            await self._mark_failed(tid, backups, purge_begun=self._purging)
            raise self._failed(failure) from None

    async def _purge(
        self,
        tenant: tenant_pb2.Tenant,
        plan: TierPlan,
        restore_to: int,
        backup: bool,
        taken: list[tenant_pb2.BackupObject],
        grace: timedelta,
    ) -> orchestrator.DeprovisionTenantResponse:
        """The grace period (with undeletes), the backup, removal, DEPROVISIONED."""
        run, tid, audit = self._run, tenant.tenant_id, self._audit
        assert audit is not None
        purge_time = run.purge_time
        if self._grace:
            assert purge_time is not None
            access_on = restore_to == State.STATE_ACTIVE
            if access_on:
                await switch_access(run, plan, tid, on=False, missing_ok=True)
            await run.best_effort(
                "send_deletion_notice",
                notice(tenant, "DELETION_SCHEDULED", purge_time=purge_time, per_run=True),
            )
            while True:
                run.mark("grace_period", Status.STEP_STATUS_RUNNING, f"until {purge_time}")
                # Runs before the patch waited `grace` from here; since, until the
                # purge time the record announced (also after a failed undelete).
                wait = purge_time - workflow.now() if run.failure_proof else grace
                if wait > timedelta(0):
                    with contextlib.suppress(TimeoutError):  # the grace period elapsed
                        await workflow.wait_condition(
                            lambda: self._undeleted_by is not None or self._delete_now, timeout=wait
                        )
                if self._undeleted_by is None:
                    break
                run.mark("grace_period", Status.STEP_STATUS_COMPLETED, f"undeleted by {self._undeleted_by}")
                if not run.failure_proof:
                    return await self._restore(tenant, plan, restore_to, access_on=access_on)
                try:
                    return await self._restore(tenant, plan, restore_to, access_on=access_on)
                except _RestoreFailed as err:
                    await self._restore_undone(tenant, err.failure)
            self._purging = True
            run.mark(
                "grace_period",
                Status.STEP_STATUS_COMPLETED,
                "ended early by a hard delete" if self._delete_now else "elapsed",
            )
        self._purging = True

        backups: list[tenant_pb2.BackupObject] = list(taken)
        if backup:
            self._backups = await self._back_up(tid)
            backups += self._backups
            audit.record(
                Kind.KIND_STEP_COMPLETED, step="backup", detail=" ".join(b.uri for b in self._backups)
            )
        elif taken:
            detail = "kept from the failed run: " + " ".join(b.uri for b in taken)
            audit.record(Kind.KIND_STEP_COMPLETED, step="backup", detail=detail, urgent=True)

        await self._remove_everything(
            tenant, plan, expect_stack=any(r.kind == "iac_stack" for r in tenant.resources)
        )
        await run.cleanup(
            "mark_deprovisioned", tenantdb.MarkDeprovisionedRequest(tenant_id=tid, backups=backups)
        )
        run.purge_time = None
        run.enter(State.STATE_DEPROVISIONED)
        await run.best_effort("send_deprovisioned", notice(tenant, "DEPROVISIONED"))
        return orchestrator.DeprovisionTenantResponse(state=State.STATE_DEPROVISIONED, backups=backups)

    async def _back_up(self, tid: str) -> list[tenant_pb2.BackupObject]:
        """The schema dump and the identity export, both stored before anything is removed."""
        run = self._run
        # The run id names the backup: a retried activity overwrites its own object.
        backup_id = workflow.info().run_id
        steps = (
            run.cleanup(
                "backup_schema", tenantdb.BackupTenantSchemaRequest(tenant_id=tid, backup_id=backup_id)
            ),
            run.cleanup("export_identity", idp.ExportIdentityRequest(tenant_id=tid, backup_id=backup_id)),
        )
        if not run.failure_proof:
            dumped, exported = await asyncio.gather(*steps)
            return [dumped.backup, exported.backup]
        results = await asyncio.gather(*steps, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                failure = run.failure
                if isinstance(result, ActivityError) and failure is not None:
                    run.failure = StepFailed(
                        failure.step,
                        f"the backup could not be taken, so nothing was removed: {failure.reason}."
                        " DeleteTenant with skip_backup removes the tenant without a backup",
                        failure.error_type,
                    )
                raise result
        return [r.backup for r in results]  # type: ignore[union-attr]

    async def _mark_failed(
        self, tid: str, backups: list[tenant_pb2.BackupObject], *, purge_begun: bool
    ) -> bool:
        """Marks the record DEPROVISION_FAILED with the run's failure; False when the record is not ours."""
        run = self._run
        failure = run.failure
        assert failure is not None
        try:
            await run.cleanup(
                "mark_deprovision_failed",
                tenantdb.MarkDeprovisionFailedRequest(
                    tenant_id=tid,
                    run_id=workflow.info().run_id,
                    failed_step=failure.step,
                    reason=failure.reason,
                    failure_type=failure.error_type,
                    backups=backups,
                    purge_begun=purge_begun,
                ),
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == ErrorType.CONFLICT:
                run.failure = failure
                return False
            raise
        run.failure = failure
        run.skip_rest()
        run.enter(State.STATE_DEPROVISION_FAILED, f"{failure.step}: {failure.reason}")
        return True

    def _failed(self, failure: StepFailed) -> ApplicationError:
        return run_failure(
            f"deprovisioning stopped at {failure.step}: {failure.reason}",
            ErrorType.DEPROVISION_FAILED,
            failure,
        )

    async def _restore(
        self, tenant: tenant_pb2.Tenant, plan: TierPlan, restore_to: int, *, access_on: bool
    ) -> orchestrator.DeprovisionTenantResponse:
        run, tid = self._run, tenant.tenant_id
        run.skip_rest()
        run.add_steps(plan.restore_steps(access_on=access_on))
        try:
            if access_on:
                await switch_access(run, plan, tid, on=True, undoable=run.failure_proof)
            await run.cleanup(
                "mark_restored",
                tenantdb.MarkRestoredRequest(tenant_id=tid, state=restore_to),  # type: ignore[arg-type]
            )
        except (StepFailed, ActivityError):
            if not run.failure_proof or run.failure is None:
                raise
            raise _RestoreFailed(run.failure) from None
        run.purge_time = None
        self._restored_to = restore_to
        self._restore_failure = False
        run.enter(restore_to, f"restored by {self._undeleted_by}")
        await run.best_effort("send_restored", notice(tenant, "RESTORED", per_run=True))
        return orchestrator.DeprovisionTenantResponse(state=restore_to)  # type: ignore[arg-type]

    async def _restore_undone(self, tenant: tenant_pb2.Tenant, failure: StepFailed) -> None:
        """After a failed undelete: sign-in and deployment off again, the
        failure recorded, and the wait goes on until the same purge time."""
        run = self._run
        failed = switched_back(failure, await run.compensate())
        operation = Operation(
            kind=Operation.KIND_UNDELETE,
            outcome=Operation.OUTCOME_FAILED,
            failed_step=failed.step,
            failure_reason=failed.reason,
            failure_type=failed.error_type,
            workflow_id=workflow.info().workflow_id,
            run_id=workflow.info().run_id,
        )
        operation.end_time.FromDatetime(workflow.now())
        await run.cleanup(
            "record_failed_operation",
            tenantdb.RecordFailedOperationRequest(tenant_id=tenant.tenant_id, operation=operation),
        )
        workflow.logger.warning(
            "undelete of %s failed at %s: %s", tenant.tenant_id, failed.step, failed.reason
        )
        # Ready for another undelete (or the end of the grace period).
        run.failure = None
        self._restore_failure = failed
        self._undeleted_by = None
        run.state = State.STATE_DEPROVISIONING

    async def _remove_everything(
        self, tenant: tenant_pb2.Tenant, plan: TierPlan, *, expect_stack: bool
    ) -> None:
        run, tid = self._run, tenant.tenant_id

        async def identity() -> None:
            await run.cleanup(
                "delete_admin_user", idp.DeleteAdminUserRequest(tenant_id=tid, email=tenant.admin.email)
            )
            await run.cleanup("delete_oidc_client", idp.DeleteOidcClientRequest(tenant_id=tid))
            await run.cleanup("delete_realm", idp.DeleteRealmRequest(tenant_id=tid))

        async def deployment_then_infrastructure() -> None:
            # The service runs on the dedicated infrastructure: remove it first.
            if plan.own_deployment:
                await run.cleanup("delete_deployment", infra.DeleteDeploymentRequest(tenant_id=tid))
            if plan.dedicated_infrastructure:
                # A stack the record lists must have state: none means it was lost.
                await run.cleanup(
                    "destroy_infrastructure",
                    infra.DestroyInfrastructureRequest(
                        tenant_id=tid, expect_state=expect_stack and run.failure_proof
                    ),
                )

        await settle(
            identity(),
            deployment_then_infrastructure(),
            run.cleanup("drop_schema", tenantdb.DropTenantSchemaRequest(tenant_id=tid)),
            run.cleanup("delete_bucket", infra.DeleteBucketRequest(tenant_id=tid)),
            run.cleanup(
                "delete_dns_records", infra.DeleteDnsRecordsRequest(tenant_id=tid, domains=tenant.domains)
            ),
        )
        await run.cleanup("delete_resource_records", tenantdb.DeleteResourceRecordsRequest(tenant_id=tid))
