"""The lifecycle workflows. Deterministic: every effect is an activity."""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from libs.contracts import IDENTITY, INFRASTRUCTURE, NOTIFICATION, TENANT_DATA, WORKFLOWS
    from libs.lifecycle import PROGRESS_QUERY
    from orchestrator.plan import (
        CLEANUP_STEP,
        DEPLOY_STEP,
        IAC_STEP,
        LONG_CLEANUP_STEP,
        NOTICE_STEP,
        PROVISION_STEP,
        UNKNOWN_TIER_DEPROVISION_STEPS,
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

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> orchestrator.RunProgress:
        return self._run.progress()

    @workflow.run
    async def run(self, request: orchestrator.ProvisionTenantRequest) -> orchestrator.ProvisionTenantResponse:
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
        run.state = State.STATE_ACTIVE
        await run.best_effort(
            "send_welcome", NOTIFICATION.rpc("SendNotice"), self._notice(tenant, "WELCOME"), NOTICE_STEP
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
        run.state = State.STATE_PROVISION_FAILED
        await run.best_effort(
            "send_failure_notice",
            NOTIFICATION.rpc("SendNotice"),
            self._notice(tenant, "PROVISION_FAILED", failure),
            NOTICE_STEP,
        )
        if cancelled:
            raise asyncio.CancelledError("provisioning cancelled; what it did is undone")
        raise ApplicationError(
            f"provisioning failed at {failure.step}: {failure.reason}",
            type="ProvisionFailed",
            non_retryable=True,
        )

    @staticmethod
    def _notice(
        tenant: tenant_pb2.Tenant, kind: str, failure: StepFailed | None = None
    ) -> notification.SendNoticeRequest:
        return notification.SendNoticeRequest(
            tenant_id=tenant.tenant_id,
            kind=notification.NoticeKind.Value(f"NOTICE_KIND_{kind}"),
            recipient=tenant.admin.email,
            recipient_name=tenant.admin.given_name,
            tenant_display_name=tenant.display_name,
            domains=tenant.domains,
            failed_step=failure.step if failure else "",
            failure_reason=failure.reason if failure else "",
            idempotency_key=workflow.info().workflow_id,
        )


@workflow.defn(name=WORKFLOWS.rpc("DeprovisionTenant").name)
class DeprovisionTenantWorkflow:
    """Removes everything a tenant has, ending DEPROVISIONED.

    Every step is idempotent and retried until it succeeds: teardown cannot
    be rolled back, only finished.
    """

    def __init__(self) -> None:
        # The tier, and so the full list of steps, is known once the record is read.
        self._run = LifecycleRun(UNKNOWN_TIER_DEPROVISION_STEPS)

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> orchestrator.RunProgress:
        return self._run.progress()

    @workflow.run
    async def run(
        self, request: orchestrator.DeprovisionTenantRequest
    ) -> orchestrator.DeprovisionTenantResponse:
        run, tid = self._run, request.tenant_id
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
        run.replan(plan.deprovision_steps)
        await run.cleanup(
            "mark_deprovisioning",
            TENANT_DATA.rpc("MarkDeprovisioning"),
            tenantdb.MarkDeprovisioningRequest(tenant_id=tid, workflow_id=workflow.info().workflow_id),
            CLEANUP_STEP,
        )

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
        await run.cleanup(
            "mark_deprovisioned",
            TENANT_DATA.rpc("MarkDeprovisioned"),
            tenantdb.MarkDeprovisionedRequest(tenant_id=tid),
            CLEANUP_STEP,
        )
        run.state = State.STATE_DEPROVISIONED
        await run.best_effort(
            "send_deprovisioned",
            NOTIFICATION.rpc("SendNotice"),
            ProvisionTenantWorkflow._notice(tenant, "DEPROVISIONED"),
            NOTICE_STEP,
        )
        return orchestrator.DeprovisionTenantResponse(state=State.STATE_DEPROVISIONED)
