"""The lifecycle workflows. Deterministic: every effect is an activity."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from libs.contracts import IDENTITY, INFRASTRUCTURE, NOTIFICATION, TENANT_DATA, WORKFLOWS
    from libs.lifecycle import (
        CANCEL_REQUESTED_SIGNAL,
        DELETE_NOW_UPDATE,
        PROGRESS_QUERY,
        UNDELETE_UPDATE,
        UPDATE_REFUSED,
    )
    from orchestrator.audit import AuditLog
    from orchestrator.plan import (
        ACCESS_STEP,
        BACKUP_STEP,
        CLEANUP_STEP,
        DEPLOY_STEP,
        IAC_STEP,
        LONG_CLEANUP_STEP,
        NOTICE_STEP,
        PROVISION_STEP,
        UNKNOWN_TIER_STEPS,
        TierPlan,
        plan_for,
    )
    from orchestrator.run import LifecycleRun, StepFailed, StepSkipped
    from tenantry.idp.v1 import idp_pb2 as idp
    from tenantry.infra.v1 import infra_pb2 as infra
    from tenantry.notification.v1 import notification_pb2 as notification
    from tenantry.orchestrator.v1 import orchestrator_pb2 as orchestrator
    from tenantry.tenant.v1 import tenant_pb2
    from tenantry.tenantdb.v1 import tenantdb_pb2 as tenantdb

State = tenant_pb2.Tenant.State
Status = tenant_pb2.StepStatus
# Deprovisioning with a grace period and a backup; runs started before it
# replay as they ran (no wait, no backup).
GRACE_PATCH = "deprovision-grace-backup-v1"


async def _settle(*branches: object) -> None:
    """Waits for every branch, then re-raises the run's first failure.

    Branches already in flight finish (and so get compensated) instead of
    being abandoned half-way; later steps are skipped by LifecycleRun.
    """
    results = await asyncio.gather(*branches, return_exceptions=True)  # type: ignore[call-overload]
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, StepFailed | StepSkipped):
            raise result
    failures = [r for r in results if isinstance(r, StepFailed)]
    if failures:
        raise failures[0]


@workflow.defn(name=WORKFLOWS.rpc("ProvisionTenant").name)
class ProvisionTenantWorkflow:
    """Provisions a tenant of any tier; undoes what it did if any step fails.

    Graph: mark PROVISIONING, then identity (realm, client, admin), schema,
    bucket, DNS and (silo) dedicated infrastructure together, then (bridge,
    silo) the tenant's own deployment, then record resources, mark ACTIVE,
    welcome. The steps of each tier are declared in plan.TierPlan.
    """

    @workflow.init
    def __init__(self, request: orchestrator.ProvisionTenantRequest) -> None:
        self._plan = plan_for(request.tenant.plan_tier)
        self._run = LifecycleRun(self._plan.provision_steps)
        self._audit: AuditLog | None = None
        self._cancelled_by = ""

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> orchestrator.RunProgress:
        return self._run.progress()

    @workflow.signal(name=CANCEL_REQUESTED_SIGNAL)
    def cancel_requested(self, request: orchestrator.CancelRequested) -> None:
        """Who cancels the run, for the audit log (the cancel itself follows)."""
        self._cancelled_by = request.requested_by
        if self._audit is not None:
            self._audit.requested("cancel", actor=request.requested_by)

    @workflow.run
    async def run(self, request: orchestrator.ProvisionTenantRequest) -> orchestrator.ProvisionTenantResponse:
        self._audit = self._run.audit = AuditLog.for_run(request.tenant.tenant_id, request.requested_by)
        self._audit.requested("provision", tenant_pb2.PlanTier.Name(request.tenant.plan_tier))
        if self._cancelled_by:
            self._audit.requested("cancel", actor=self._cancelled_by)
        try:
            return await self._provision(request)
        finally:
            await self._audit.flushed()

    async def _provision(
        self, request: orchestrator.ProvisionTenantRequest
    ) -> orchestrator.ProvisionTenantResponse:
        tenant = request.tenant
        tid = tenant.tenant_id
        run = self._run
        run.state = State.STATE_PROVISIONING
        try:
            await run.step(
                "mark_provisioning",
                TENANT_DATA.rpc("MarkProvisioning"),
                tenantdb.MarkProvisioningRequest(tenant=tenant, workflow_id=workflow.info().workflow_id),
                PROVISION_STEP,
            )
        except asyncio.CancelledError:
            return await self._roll_back(tenant, self._cancelled(), cancelled=True)
        except StepFailed as failure:
            # The record is not ours to mark (it belongs to another run).
            run.skip_rest()
            run.state = State.STATE_PROVISION_FAILED
            raise ApplicationError(str(failure), type="ProvisionFailed", non_retryable=True) from None
        run.enter(State.STATE_PROVISIONING)
        try:
            resources = await self._create_everything(tenant)
            await run.step(
                "record_resources",
                TENANT_DATA.rpc("RecordResources"),
                tenantdb.RecordResourcesRequest(tenant_id=tid, resources=resources),
                PROVISION_STEP,
                undo=(
                    TENANT_DATA.rpc("DeleteResourceRecords"),
                    tenantdb.DeleteResourceRecordsRequest(tenant_id=tid),
                ),
            )
            await run.step(
                "mark_active",
                TENANT_DATA.rpc("MarkActive"),
                tenantdb.MarkActiveRequest(tenant_id=tid),
                PROVISION_STEP,
            )
        except StepFailed as failure:
            return await self._roll_back(tenant, failure)
        except asyncio.CancelledError:
            return await self._roll_back(tenant, self._cancelled(), cancelled=True)
        run.enter(State.STATE_ACTIVE)
        await run.best_effort(
            "send_welcome", NOTIFICATION.rpc("SendNotice"), _notice(tenant, "WELCOME"), NOTICE_STEP
        )
        return orchestrator.ProvisionTenantResponse(state=State.STATE_ACTIVE)

    async def _create_everything(self, tenant: tenant_pb2.Tenant) -> list[tenant_pb2.Resource]:
        run, tid = self._run, tenant.tenant_id
        resources: list[tenant_pb2.Resource] = []

        def found(kind: str, ident: str, domain: str) -> None:
            resources.append(tenant_pb2.Resource(kind=kind, id=ident, domain=domain))

        async def identity() -> None:
            realm = await run.step(
                "create_realm",
                IDENTITY.rpc("CreateRealm"),
                idp.CreateRealmRequest(
                    tenant_id=tid, display_name=tenant.display_name, domains=tenant.domains
                ),
                PROVISION_STEP,
                undo=(IDENTITY.rpc("DeleteRealm"), idp.DeleteRealmRequest(tenant_id=tid)),
            )
            found("idp_realm", realm.realm_id, "idp")
            client = await run.step(
                "create_oidc_client",
                IDENTITY.rpc("CreateOidcClient"),
                idp.CreateOidcClientRequest(
                    tenant_id=tid,
                    redirect_uris=[f"https://{d}/oauth/callback" for d in tenant.domains],
                    web_origins=[f"https://{d}" for d in tenant.domains],
                ),
                PROVISION_STEP,
                undo=(IDENTITY.rpc("DeleteOidcClient"), idp.DeleteOidcClientRequest(tenant_id=tid)),
            )
            found("idp_client", client.client_id, "idp")
            user = await run.step(
                "create_admin_user",
                IDENTITY.rpc("CreateAdminUser"),
                idp.CreateAdminUserRequest(tenant_id=tid, admin=tenant.admin),
                PROVISION_STEP,
                undo=(
                    IDENTITY.rpc("DeleteAdminUser"),
                    idp.DeleteAdminUserRequest(tenant_id=tid, email=tenant.admin.email),
                ),
            )
            found("idp_user", user.user_id, "idp")

        async def schema() -> None:
            created = await run.step(
                "create_schema",
                TENANT_DATA.rpc("CreateTenantSchema"),
                tenantdb.CreateTenantSchemaRequest(tenant_id=tid),
                PROVISION_STEP,
                undo=(TENANT_DATA.rpc("DropTenantSchema"), tenantdb.DropTenantSchemaRequest(tenant_id=tid)),
            )
            found("db_schema", created.schema, "tenantdb")

        async def bucket() -> None:
            created = await run.step(
                "create_bucket",
                INFRASTRUCTURE.rpc("CreateBucket"),
                infra.CreateBucketRequest(tenant_id=tid, plan_tier=tenant.plan_tier),
                PROVISION_STEP,
                undo=(INFRASTRUCTURE.rpc("DeleteBucket"), infra.DeleteBucketRequest(tenant_id=tid)),
            )
            found("s3_bucket", created.bucket, "infra")

        async def dns() -> None:
            created = await run.step(
                "create_dns_records",
                INFRASTRUCTURE.rpc("UpsertDnsRecords"),
                infra.UpsertDnsRecordsRequest(tenant_id=tid, domains=tenant.domains),
                PROVISION_STEP,
                undo=(
                    INFRASTRUCTURE.rpc("DeleteDnsRecords"),
                    infra.DeleteDnsRecordsRequest(tenant_id=tid, domains=tenant.domains),
                ),
            )
            for name in created.record_names:
                found("dns_record", name, "infra")

        infrastructure: dict[str, str] = {}

        async def dedicated_infrastructure() -> None:
            applied = await run.step(
                "apply_infrastructure",
                INFRASTRUCTURE.rpc("ApplyInfrastructure"),
                infra.ApplyInfrastructureRequest(tenant_id=tid, plan_tier=tenant.plan_tier),
                IAC_STEP,
                undo=(
                    INFRASTRUCTURE.rpc("DestroyInfrastructure"),
                    infra.DestroyInfrastructureRequest(tenant_id=tid),
                ),
            )
            infrastructure.update(applied.outputs)
            found("iac_stack", f"tenant-{tid}", "infra")

        branches = [identity(), schema(), bucket(), dns()]
        if self._plan.dedicated_infrastructure:
            branches.append(dedicated_infrastructure())
        await _settle(*branches)
        if self._plan.own_deployment:
            deployed = await run.step(
                "deploy_application",
                INFRASTRUCTURE.rpc("CreateDeployment"),
                infra.CreateDeploymentRequest(
                    tenant_id=tid, plan_tier=tenant.plan_tier, infrastructure=infrastructure
                ),
                DEPLOY_STEP,
                undo=(INFRASTRUCTURE.rpc("DeleteDeployment"), infra.DeleteDeploymentRequest(tenant_id=tid)),
            )
            found("ecs_service", deployed.service, "infra")
            found("ecs_task_definition", deployed.revision, "infra")
        # Gathered concurrently: sort so the recorded list does not depend on timing.
        return sorted(resources, key=lambda r: (r.domain, r.kind, r.id))

    def _cancelled(self) -> StepFailed:
        """The failure a cancel stands for: at the steps it interrupted, if
        any (a step whose activity finished despite the cancel counts as done)."""
        interrupted = [s for s, e in self._run.errors.items() if e == "cancelled"]
        return StepFailed(",".join(interrupted), "cancelled")

    async def _roll_back(
        self, tenant: tenant_pb2.Tenant, failure: StepFailed, *, cancelled: bool = False
    ) -> orchestrator.ProvisionTenantResponse:
        run, tid = self._run, tenant.tenant_id
        run.skip_rest()
        # Some undos are long (emptying a bucket, destroying infrastructure)
        # and heartbeat; the others finish well inside the heartbeat timeout.
        undone = await run.compensate(LONG_CLEANUP_STEP)
        workflow.logger.info("provisioning %s failed at %s; undid %s", tid, failure.step, undone)
        # Not an undo of mark_provisioning: the record stays, as the place
        # where the caller reads the failed step and the reason.
        try:
            await run.cleanup(
                "mark_provision_failed",
                TENANT_DATA.rpc("MarkProvisionFailed"),
                tenantdb.MarkProvisionFailedRequest(
                    tenant_id=tid, failed_step=failure.step, reason=failure.reason
                ),
                CLEANUP_STEP,
            )
        except ActivityError as err:
            # Cancelled before the record was written: there is none to mark.
            if not (cancelled and isinstance(err.cause, ApplicationError) and err.cause.type == "NotFound"):
                raise
        run.enter(State.STATE_PROVISION_FAILED, f"{failure.step}: {failure.reason}")
        await run.best_effort(
            "send_failure_notice",
            NOTIFICATION.rpc("SendNotice"),
            _notice(tenant, "PROVISION_FAILED", failure=failure),
            NOTICE_STEP,
        )
        if cancelled:
            raise asyncio.CancelledError("provisioning cancelled; what it did is undone")
        raise ApplicationError(
            f"provisioning failed at {failure.step}: {failure.reason}",
            type="ProvisionFailed",
            non_retryable=True,
        )


@workflow.defn(name=WORKFLOWS.rpc("DeprovisionTenant").name)
class DeprovisionTenantWorkflow:
    """Removes everything a tenant has, ending DEPROVISIONED.

    With a grace period, the tenant's sign-in and deployment are switched off
    and its admin told first; an `undelete` update during the wait restores
    it. Then its schema and identity are backed up (unless the request says
    not to), and removed. Every removal step is idempotent and retried until
    it succeeds: teardown cannot be rolled back, only finished.
    """

    def __init__(self) -> None:
        # The tier, and so the full list of steps, is known once the record is read.
        self._run = LifecycleRun(UNKNOWN_TIER_STEPS)
        self._audit: AuditLog | None = None
        self._grace = False  # True from the start of a run with a grace period
        self._purging = False  # True once backup and removal have begun: too late to undelete
        self._undeleted_by: str | None = None
        self._delete_now = False

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> orchestrator.RunProgress:
        return self._run.progress()

    @workflow.update(name=UNDELETE_UPDATE)
    def undelete(self, request: orchestrator.UndeleteRequest) -> orchestrator.DeletionUpdateResponse:
        if self._undeleted_by is None:
            self._undeleted_by = request.requested_by
            if self._audit is not None:
                self._audit.requested("undelete", actor=request.requested_by)
        return orchestrator.DeletionUpdateResponse(state=State.STATE_DEPROVISIONING)

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
        self._audit = self._run.audit = AuditLog.for_run(request.tenant_id, request.requested_by)
        try:
            return await self._deprovision(request)
        finally:
            await self._audit.flushed()

    async def _deprovision(
        self, request: orchestrator.DeprovisionTenantRequest
    ) -> orchestrator.DeprovisionTenantResponse:
        run, tid, audit = self._run, request.tenant_id, self._audit
        assert audit is not None
        graceful = workflow.patched(GRACE_PATCH)
        grace = request.grace_period.ToTimedelta() if graceful else timedelta(0)
        self._grace = grace > timedelta(0)
        audit.requested(
            "deprovision",
            f"grace period {grace}; backup {'skipped' if request.skip_backup else 'taken'}",
        )
        run.state = State.STATE_DEPROVISIONING
        record = await run.cleanup(
            "read_record",
            TENANT_DATA.rpc("GetTenantRecord"),
            tenantdb.GetTenantRecordRequest(tenant_id=tid),
            CLEANUP_STEP,
        )
        if not record.found:
            raise ApplicationError(
                f"tenant {tid} is not in the registry", type="NotFound", non_retryable=True
            )
        tenant = record.tenant
        plan = plan_for(tenant.plan_tier)
        # What an undelete puts back. A tenant found DEPROVISIONING (a run
        # that stopped half-way) was live before it.
        restore_to = tenant.state if tenant.state != State.STATE_DEPROVISIONING else State.STATE_ACTIVE
        live = restore_to in (State.STATE_ACTIVE, State.STATE_SUSPENDED)
        backup = graceful and live and not request.skip_backup
        if graceful:
            run.replan(plan.teardown_steps(grace=self._grace, backup=backup))
        else:
            run.replan(plan.deprovision_steps)
        purge_time: datetime | None = workflow.now() + grace if self._grace else None
        run.purge_time = purge_time
        marking = tenantdb.MarkDeprovisioningRequest(tenant_id=tid, workflow_id=workflow.info().workflow_id)
        if purge_time is not None:
            marking.purge_time.FromDatetime(purge_time)
        await run.cleanup("mark_deprovisioning", TENANT_DATA.rpc("MarkDeprovisioning"), marking, CLEANUP_STEP)
        run.enter(State.STATE_DEPROVISIONING, f"purge at {purge_time.isoformat()}" if purge_time else "")

        if self._grace:
            access_on = restore_to == State.STATE_ACTIVE
            if access_on:
                await _switch_access(run, plan, tid, on=False, missing_ok=True)
            await run.best_effort(
                "send_deletion_notice",
                NOTIFICATION.rpc("SendNotice"),
                _notice(tenant, "DELETION_SCHEDULED", purge_time=purge_time, per_run=True),
                NOTICE_STEP,
            )
            run.mark("grace_period", Status.STEP_STATUS_RUNNING, f"until {purge_time}")
            with contextlib.suppress(TimeoutError):  # the grace period elapsed
                await workflow.wait_condition(
                    lambda: self._undeleted_by is not None or self._delete_now, timeout=grace
                )
            if self._undeleted_by is not None:
                run.mark("grace_period", Status.STEP_STATUS_COMPLETED, f"undeleted by {self._undeleted_by}")
                return await self._restore(tenant, plan, restore_to, access_on=access_on)
            self._purging = True
            run.mark(
                "grace_period",
                Status.STEP_STATUS_COMPLETED,
                "ended early by a hard delete" if self._delete_now else "elapsed",
            )
        self._purging = True

        backups: list[tenant_pb2.BackupObject] = []
        if backup:
            # Nothing is removed until both are stored; run id names the backup.
            backup_id = workflow.info().run_id
            dumped, exported = await asyncio.gather(
                run.cleanup(
                    "backup_schema",
                    TENANT_DATA.rpc("BackupTenantSchema"),
                    tenantdb.BackupTenantSchemaRequest(tenant_id=tid, backup_id=backup_id),
                    BACKUP_STEP,
                ),
                run.cleanup(
                    "export_identity",
                    IDENTITY.rpc("ExportIdentity"),
                    idp.ExportIdentityRequest(tenant_id=tid, backup_id=backup_id),
                    BACKUP_STEP,
                ),
            )
            backups = [dumped.backup, exported.backup]
            audit.record(
                tenant_pb2.TenantEvent.Kind.KIND_STEP_COMPLETED,
                step="backup",
                detail=" ".join(b.uri for b in backups),
            )

        await self._remove_everything(tenant, plan)
        await run.cleanup(
            "mark_deprovisioned",
            TENANT_DATA.rpc("MarkDeprovisioned"),
            tenantdb.MarkDeprovisionedRequest(tenant_id=tid, backups=backups),
            CLEANUP_STEP,
        )
        run.purge_time = None
        run.enter(State.STATE_DEPROVISIONED)
        await run.best_effort(
            "send_deprovisioned",
            NOTIFICATION.rpc("SendNotice"),
            _notice(tenant, "DEPROVISIONED"),
            NOTICE_STEP,
        )
        return orchestrator.DeprovisionTenantResponse(state=State.STATE_DEPROVISIONED, backups=backups)

    async def _restore(
        self, tenant: tenant_pb2.Tenant, plan: TierPlan, restore_to: int, *, access_on: bool
    ) -> orchestrator.DeprovisionTenantResponse:
        run, tid = self._run, tenant.tenant_id
        run.skip_rest()
        run.add_steps(plan.restore_steps(access_on=access_on))
        if access_on:
            await _switch_access(run, plan, tid, on=True)
        await run.cleanup(
            "mark_restored",
            TENANT_DATA.rpc("MarkRestored"),
            tenantdb.MarkRestoredRequest(tenant_id=tid, state=restore_to),  # type: ignore[arg-type]
            CLEANUP_STEP,
        )
        run.purge_time = None
        run.enter(restore_to, f"restored by {self._undeleted_by}")
        await run.best_effort(
            "send_restored",
            NOTIFICATION.rpc("SendNotice"),
            _notice(tenant, "RESTORED", per_run=True),
            NOTICE_STEP,
        )
        return orchestrator.DeprovisionTenantResponse(state=restore_to)  # type: ignore[arg-type]

    async def _remove_everything(self, tenant: tenant_pb2.Tenant, plan: TierPlan) -> None:
        run, tid = self._run, tenant.tenant_id

        async def identity() -> None:
            await run.cleanup(
                "delete_admin_user",
                IDENTITY.rpc("DeleteAdminUser"),
                idp.DeleteAdminUserRequest(tenant_id=tid, email=tenant.admin.email),
                CLEANUP_STEP,
            )
            await run.cleanup(
                "delete_oidc_client",
                IDENTITY.rpc("DeleteOidcClient"),
                idp.DeleteOidcClientRequest(tenant_id=tid),
                CLEANUP_STEP,
            )
            await run.cleanup(
                "delete_realm",
                IDENTITY.rpc("DeleteRealm"),
                idp.DeleteRealmRequest(tenant_id=tid),
                CLEANUP_STEP,
            )

        async def deployment_then_infrastructure() -> None:
            # The service runs on the dedicated infrastructure: remove it first.
            if plan.own_deployment:
                await run.cleanup(
                    "delete_deployment",
                    INFRASTRUCTURE.rpc("DeleteDeployment"),
                    infra.DeleteDeploymentRequest(tenant_id=tid),
                    LONG_CLEANUP_STEP,
                )
            if plan.dedicated_infrastructure:
                await run.cleanup(
                    "destroy_infrastructure",
                    INFRASTRUCTURE.rpc("DestroyInfrastructure"),
                    infra.DestroyInfrastructureRequest(tenant_id=tid),
                    LONG_CLEANUP_STEP,
                )

        await _settle(
            identity(),
            deployment_then_infrastructure(),
            run.cleanup(
                "drop_schema",
                TENANT_DATA.rpc("DropTenantSchema"),
                tenantdb.DropTenantSchemaRequest(tenant_id=tid),
                CLEANUP_STEP,
            ),
            run.cleanup(
                "delete_bucket",
                INFRASTRUCTURE.rpc("DeleteBucket"),
                infra.DeleteBucketRequest(tenant_id=tid),
                LONG_CLEANUP_STEP,  # emptying a large bucket takes a while; it heartbeats
            ),
            run.cleanup(
                "delete_dns_records",
                INFRASTRUCTURE.rpc("DeleteDnsRecords"),
                infra.DeleteDnsRecordsRequest(tenant_id=tid, domains=tenant.domains),
                CLEANUP_STEP,
            ),
        )
        await run.cleanup(
            "delete_resource_records",
            TENANT_DATA.rpc("DeleteResourceRecords"),
            tenantdb.DeleteResourceRecordsRequest(tenant_id=tid),
            CLEANUP_STEP,
        )


class _AccessChange:
    """Suspend or resume: switches a tenant's sign-in and deployment off or on."""

    suspend: bool

    def __init__(self) -> None:
        self._run = LifecycleRun(UNKNOWN_TIER_STEPS)

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> orchestrator.RunProgress:
        return self._run.progress()

    async def _change(self, tid: str, requested_by: str) -> int:
        run = self._run
        run.audit = audit = AuditLog.for_run(tid, requested_by)
        try:
            audit.requested("suspend" if self.suspend else "resume")
            record = await run.cleanup(
                "read_record",
                TENANT_DATA.rpc("GetTenantRecord"),
                tenantdb.GetTenantRecordRequest(tenant_id=tid),
                CLEANUP_STEP,
            )
            tenant = record.tenant
            target, source = (
                (State.STATE_SUSPENDED, State.STATE_ACTIVE)
                if self.suspend
                else (State.STATE_ACTIVE, State.STATE_SUSPENDED)
            )
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
            run.replan(plan.suspend_steps if self.suspend else plan.resume_steps)
            await _switch_access(run, plan, tid, on=not self.suspend)
            if self.suspend:
                await run.cleanup(
                    "mark_suspended",
                    TENANT_DATA.rpc("MarkSuspended"),
                    tenantdb.MarkSuspendedRequest(tenant_id=tid),
                    CLEANUP_STEP,
                )
            else:
                await run.cleanup(
                    "mark_resumed",
                    TENANT_DATA.rpc("MarkResumed"),
                    tenantdb.MarkResumedRequest(tenant_id=tid),
                    CLEANUP_STEP,
                )
            run.enter(target)
            kind = "SUSPENDED" if self.suspend else "RESUMED"
            await run.best_effort(
                f"send_{kind.lower()}",
                NOTIFICATION.rpc("SendNotice"),
                _notice(tenant, kind, per_run=True),
                NOTICE_STEP,
            )
            return target
        finally:
            await audit.flushed()


@workflow.defn(name=WORKFLOWS.rpc("SuspendTenant").name)
class SuspendTenantWorkflow(_AccessChange):
    """ACTIVE -> SUSPENDED: sign-in disabled, own deployment scaled to zero."""

    suspend = True

    @workflow.run
    async def run(self, request: orchestrator.SuspendTenantRequest) -> orchestrator.SuspendTenantResponse:
        state = await self._change(request.tenant_id, request.requested_by)
        return orchestrator.SuspendTenantResponse(state=state)  # type: ignore[arg-type]


@workflow.defn(name=WORKFLOWS.rpc("ResumeTenant").name)
class ResumeTenantWorkflow(_AccessChange):
    """SUSPENDED -> ACTIVE: deployment scaled back, then sign-in enabled."""

    suspend = False

    @workflow.run
    async def run(self, request: orchestrator.ResumeTenantRequest) -> orchestrator.ResumeTenantResponse:
        state = await self._change(request.tenant_id, request.requested_by)
        return orchestrator.ResumeTenantResponse(state=state)  # type: ignore[arg-type]


async def _switch_access(
    run: LifecycleRun, plan: TierPlan, tid: str, *, on: bool, missing_ok: bool = False
) -> None:
    """Sign-in and the tenant's own deployment off (deployment first: nothing
    runs for users who cannot sign in) or on (deployment first: the
    application is up when sign-in returns). With `missing_ok`, a realm that
    is already gone is no reason to stop (a deletion removes it anyway)."""

    async def deployment() -> None:
        if plan.own_deployment:
            await run.cleanup(
                "resume_deployment" if on else "suspend_deployment",
                INFRASTRUCTURE.rpc("ResumeDeployment" if on else "SuspendDeployment"),
                (infra.ResumeDeploymentRequest if on else infra.SuspendDeploymentRequest)(tenant_id=tid),
                ACCESS_STEP,
            )

    async def identity() -> None:
        try:
            await run.cleanup(
                "enable_access" if on else "disable_access",
                IDENTITY.rpc("EnableTenantAccess" if on else "DisableTenantAccess"),
                (idp.EnableTenantAccessRequest if on else idp.DisableTenantAccessRequest)(tenant_id=tid),
                ACCESS_STEP,
            )
        except ActivityError as err:
            gone = isinstance(err.cause, ApplicationError) and err.cause.type == "NotFound"
            if not (missing_ok and gone):
                raise

    if on:
        await deployment()
        await identity()
    else:
        await identity()
        await deployment()


def _notice(
    tenant: tenant_pb2.Tenant,
    kind: str,
    *,
    failure: StepFailed | None = None,
    purge_time: datetime | None = None,
    per_run: bool = False,
) -> notification.SendNoticeRequest:
    """A notice to the tenant's admin. Sent once per workflow id, or with
    `per_run` once per run (a tenant can be suspended, or its deletion
    scheduled, more than once)."""
    info = workflow.info()
    request = notification.SendNoticeRequest(
        tenant_id=tenant.tenant_id,
        kind=notification.NoticeKind.Value(f"NOTICE_KIND_{kind}"),
        recipient=tenant.admin.email,
        recipient_name=tenant.admin.given_name,
        tenant_display_name=tenant.display_name,
        domains=tenant.domains,
        failed_step=failure.step if failure else "",
        failure_reason=failure.reason if failure else "",
        idempotency_key=f"{info.workflow_id}/{info.run_id}" if per_run else info.workflow_id,
    )
    if purge_time is not None:
        request.purge_time.FromDatetime(purge_time)
    return request
