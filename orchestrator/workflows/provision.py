"""ProvisionTenant: every tier's provisioning, undone (saga) when a step fails
or a caller cancels."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from libs.contracts import WORKFLOWS
    from libs.errors import ErrorType
    from libs.lifecycle import (
        CANCEL_REQUESTED_SIGNAL,
        CANCEL_UPDATE,
        PROGRESS_QUERY,
        UPDATE_REFUSED,
    )
    from orchestrator.audit import AuditLog
    from orchestrator.plan import plan_for
    from orchestrator.run import FAILURE_PROOF_PATCH, LifecycleRun, StepFailed
    from orchestrator.workflows.common import Claims, failed, leftover_note, notice, run_failure, settle
    from tenantry.idp.v1 import idp_pb2 as idp
    from tenantry.infra.v1 import infra_pb2 as infra
    from tenantry.orchestrator.v1 import orchestrator_pb2 as orchestrator
    from tenantry.tenant.v1 import tenant_pb2
    from tenantry.tenantdb.v1 import tenantdb_pb2 as tenantdb

State = tenant_pb2.Tenant.State
Status = tenant_pb2.StepStatus


@workflow.defn(name=WORKFLOWS.rpc("ProvisionTenant").name)
class ProvisionTenantWorkflow(Claims):
    """Provisions a tenant of any tier; undoes what it started if any step fails.

    Graph: mark PROVISIONING (claiming the record and the tenant's domains),
    then identity (realm, client, admin), schema, bucket, DNS and (silo)
    dedicated infrastructure together, then (bridge, silo) the tenant's own
    deployment, then record resources, mark ACTIVE, welcome. The steps of
    each tier are declared in plan.TierPlan, their activities and undos in
    plan.STEPS.
    """

    @workflow.init
    def __init__(self, request: orchestrator.ProvisionTenantRequest) -> None:
        self._plan = plan_for(request.tenant.plan_tier)
        self._run = LifecycleRun(self._plan.provision_steps)
        self._audit: AuditLog | None = None
        self._cancelled_by = ""
        self._claim: orchestrator.ClaimResponse | None = None
        # What the identity worker said of the admin's first sign-in, for the welcome notice.
        self._admin_setup: idp.AdminSetup.ValueType = idp.ADMIN_SETUP_UNSPECIFIED

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> orchestrator.RunProgress:
        return self._run.progress()

    @workflow.signal(name=CANCEL_REQUESTED_SIGNAL)
    def cancel_requested(self, request: orchestrator.CancelRequested) -> None:
        """Who cancels the run, for the audit log (callers before the `cancel` update)."""
        self._cancelled_by = request.requested_by
        if self._audit is not None:
            self._audit.requested("cancel", actor=request.requested_by)

    @workflow.update(name=CANCEL_UPDATE)
    def cancel(self, request: orchestrator.CancelRequested) -> orchestrator.CancelResponse:
        """Cancels the run: once accepted, the run ends PROVISION_FAILED "cancelled"
        with everything it started undone, even a step that finishes meanwhile."""
        if self._run.cancelled_by is None:
            self._run.cancelled_by = self._cancelled_by = request.requested_by
            if self._audit is not None:
                self._audit.requested("cancel", actor=request.requested_by)
        return orchestrator.CancelResponse(state=State.STATE_PROVISION_FAILED)

    @cancel.validator
    def _cancel_allowed(self, request: orchestrator.CancelRequested) -> None:
        if self._run.state == State.STATE_ACTIVE:
            raise ApplicationError("provisioning has finished: the tenant is ACTIVE", type=UPDATE_REFUSED)

    @workflow.run
    async def run(self, request: orchestrator.ProvisionTenantRequest) -> orchestrator.ProvisionTenantResponse:
        self._audit = self._run.audit = AuditLog.for_run(
            request.tenant.tenant_id, request.requested_by, progress=self._run.progress
        )
        self._run.failure_proof = workflow.patched(FAILURE_PROOF_PATCH)
        self._run.tenant = request.tenant
        self._audit.requested("provision", tenant_pb2.PlanTier.Name(request.tenant.plan_tier))
        if self._cancelled_by:
            self._audit.requested("cancel", actor=self._cancelled_by)
        try:
            return await self._provision(request)
        finally:
            await self._audit.flushed(final=True)

    async def _provision(
        self, request: orchestrator.ProvisionTenantRequest
    ) -> orchestrator.ProvisionTenantResponse:
        tenant = request.tenant
        tid = tenant.tenant_id
        run = self._run
        info = workflow.info()
        run.state = State.STATE_PROVISIONING
        try:
            marked = await run.step(
                "mark_provisioning",
                tenantdb.MarkProvisioningRequest(
                    tenant=tenant, workflow_id=info.workflow_id, run_id=info.run_id
                ),
            )
        except asyncio.CancelledError:
            self._claim = orchestrator.ClaimResponse(
                claimed=False, failure_reason="cancelled", failure_type=str(ErrorType.CANCELLED)
            )
            return await self._roll_back(tenant, self._cancelled(), cancelled=True)
        except StepFailed as failure:
            if run.failure_proof:
                # Nothing else started. The step may have written the record
                # (and then failed): MarkProvisionFailed marks it, or creates
                # it to say why, unless it is another run's.
                self._claim = orchestrator.ClaimResponse(
                    claimed=False, failure_reason=failure.reason, failure_type=failure.error_type
                )
                return await self._roll_back(tenant, failure)
            # The record is not ours to mark (it belongs to another run).
            run.skip_rest()
            run.state = State.STATE_PROVISION_FAILED
            raise ApplicationError(str(failure), type="ProvisionFailed", non_retryable=True) from None
        self._claim = orchestrator.ClaimResponse(claimed=True, state=State.STATE_PROVISIONING)
        if run.failure_proof:
            # What an earlier failed run left is this run's to undo, should it fail too.
            run.owe_again(list(marked.leftover_resources))
        run.enter(State.STATE_PROVISIONING)
        try:
            resources = await self._create_everything(tenant)
            await run.step(
                "record_resources", tenantdb.RecordResourcesRequest(tenant_id=tid, resources=resources)
            )
            await run.step("mark_active", tenantdb.MarkActiveRequest(tenant_id=tid, run_id=info.run_id))
        except StepFailed as failure:
            return await self._roll_back(tenant, failure)
        except asyncio.CancelledError:
            return await self._roll_back(tenant, self._cancelled(), cancelled=True)
        run.enter(State.STATE_ACTIVE)
        await run.best_effort("send_welcome", notice(tenant, "WELCOME", admin_setup=self._admin_setup))
        return orchestrator.ProvisionTenantResponse(state=State.STATE_ACTIVE)

    async def _create_everything(self, tenant: tenant_pb2.Tenant) -> list[tenant_pb2.Resource]:
        run, tid = self._run, tenant.tenant_id
        resources: list[tenant_pb2.Resource] = []

        def found(step: str, kind: str, ident: str, domain: str) -> None:
            resource = tenant_pb2.Resource(kind=kind, id=ident, domain=domain)
            resources.append(resource)
            run.made(step, resource)

        async def identity() -> None:
            realm = await run.step(
                "create_realm",
                idp.CreateRealmRequest(
                    tenant_id=tid, display_name=tenant.display_name, domains=tenant.domains
                ),
            )
            found("create_realm", "idp_realm", realm.realm_id, "idp")
            client = await run.step(
                "create_oidc_client",
                idp.CreateOidcClientRequest(
                    tenant_id=tid,
                    redirect_uris=[f"https://{d}/oauth/callback" for d in tenant.domains],
                    web_origins=[f"https://{d}" for d in tenant.domains],
                ),
            )
            found("create_oidc_client", "idp_client", client.client_id, "idp")
            user = await run.step(
                "create_admin_user", idp.CreateAdminUserRequest(tenant_id=tid, admin=tenant.admin)
            )
            found("create_admin_user", "idp_user", user.user_id, "idp")
            self._admin_setup = user.admin_setup

        async def schema() -> None:
            created = await run.step("create_schema", tenantdb.CreateTenantSchemaRequest(tenant_id=tid))
            found("create_schema", "db_schema", created.schema, "tenantdb")

        async def bucket() -> None:
            created = await run.step(
                "create_bucket", infra.CreateBucketRequest(tenant_id=tid, plan_tier=tenant.plan_tier)
            )
            found("create_bucket", "s3_bucket", created.bucket, "infra")

        async def dns() -> None:
            created = await run.step(
                "create_dns_records", infra.UpsertDnsRecordsRequest(tenant_id=tid, domains=tenant.domains)
            )
            for name in created.record_names:
                found("create_dns_records", "dns_record", name, "infra")

        infrastructure: dict[str, str] = {}

        async def dedicated_infrastructure() -> None:
            applied = await run.step(
                "apply_infrastructure",
                infra.ApplyInfrastructureRequest(tenant_id=tid, plan_tier=tenant.plan_tier),
            )
            infrastructure.update(applied.outputs)
            found("apply_infrastructure", "iac_stack", f"tenant-{tid}", "infra")

        branches = [identity(), schema(), bucket(), dns()]
        if self._plan.dedicated_infrastructure:
            branches.append(dedicated_infrastructure())
        await settle(*branches)
        if self._plan.own_deployment:
            deployed = await run.step(
                "deploy_application",
                infra.CreateDeploymentRequest(
                    tenant_id=tid, plan_tier=tenant.plan_tier, infrastructure=infrastructure
                ),
            )
            found("deploy_application", "ecs_service", deployed.service, "infra")
            found("deploy_application", "ecs_task_definition", deployed.revision, "infra")
        # Gathered concurrently: sort so the recorded list does not depend on timing.
        return sorted(resources, key=lambda r: (r.domain, r.kind, r.id))

    def _cancelled(self) -> StepFailed:
        """The failure a cancel stands for: at the steps it interrupted, if
        any (a step whose activity finished despite the cancel counts as done)."""
        interrupted = [s for s, e in self._run.errors.items() if e == "cancelled"]
        if self._run.failure_proof:
            return StepFailed(interrupted[0] if interrupted else "", "cancelled", str(ErrorType.CANCELLED))
        return StepFailed(",".join(interrupted), "cancelled")

    async def _roll_back(
        self, tenant: tenant_pb2.Tenant, failure: StepFailed, *, cancelled: bool = False
    ) -> orchestrator.ProvisionTenantResponse:
        run, tid = self._run, tenant.tenant_id
        run.skip_rest()
        leftovers = await run.compensate()
        undone = [s for s, status in run.status.items() if status == Status.STEP_STATUS_COMPENSATED]
        if cancelled:
            during = f" during {failure.step}" if failure.step else ""
            workflow.logger.info("provisioning %s cancelled%s; undid %s", tid, during, undone)
        else:
            workflow.logger.info("provisioning %s failed at %s; undid %s", tid, failure.step, undone)
        # Not an undo of mark_provisioning: the record stays, as the place
        # where the caller reads the failed step and the reason.
        marking = tenantdb.MarkProvisionFailedRequest(
            tenant_id=tid, failed_step=failure.step, reason=failure.reason
        )
        if run.failure_proof:
            marking.tenant.CopyFrom(tenant)
            marking.run_id = workflow.info().run_id
            marking.leftover_resources.extend(leftovers)
            marking.cancelled = cancelled
            marking.failure_type = failure.error_type
        ours = True
        try:
            await run.cleanup("mark_provision_failed", marking)
        except ActivityError as err:
            if run.failure_proof and failed(err, ErrorType.CONFLICT):
                # Another run owns the record (it went live, or is being
                # deleted): this run changed nothing of it.
                ours = False
            # Legacy runs: cancelled before the record was written, there is none to mark.
            elif not (cancelled and failed(err, ErrorType.NOT_FOUND)):
                raise
        if ours:
            why = (
                f"cancelled{f' during {failure.step}' if failure.step else ''}"
                if cancelled
                else f"{failure.step}: {failure.reason}"
            )
            run.enter(State.STATE_PROVISION_FAILED, f"{why}{leftover_note(leftovers)}")
            await run.best_effort(
                "send_failure_notice",
                notice(tenant, "PROVISION_FAILED", failure=failure, leftovers=leftovers),
            )
        if cancelled:
            raise asyncio.CancelledError("provisioning cancelled; what it did is undone")
        raise run_failure(
            f"provisioning failed at {failure.step}: {failure.reason}",
            ErrorType.PROVISION_FAILED,
            failure if run.failure_proof else None,
        )
