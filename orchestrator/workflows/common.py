"""What the lifecycle workflows share: waiting for parallel branches, the
access switch, notices, and the failure types a run ends with."""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from libs.errors import ErrorType
from libs.lifecycle import CLAIMED_UPDATE
from orchestrator.plan import TierPlan
from orchestrator.run import LifecycleRun, StepFailed, StepSkipped
from tenantry.idp.v1 import idp_pb2 as idp
from tenantry.infra.v1 import infra_pb2 as infra
from tenantry.notification.v1 import notification_pb2 as notification
from tenantry.orchestrator.v1 import orchestrator_pb2 as orchestrator
from tenantry.tenant.v1 import tenant_pb2

State = tenant_pb2.Tenant.State
Status = tenant_pb2.StepStatus


class Claims:
    """A run that takes the tenant over with its first mark, and says when it
    has (the `claimed` update), so that a caller answers once it knows."""

    # Set once the run has taken the tenant over (or failed to): the update's answer.
    _claim: orchestrator.ClaimResponse | None = None

    @workflow.update(name=CLAIMED_UPDATE)
    async def claimed(self, request: orchestrator.ClaimRequest) -> orchestrator.ClaimResponse:
        """Answers once the run has marked the tenant, or failed to."""
        await workflow.wait_condition(lambda: self._claim is not None)
        assert self._claim is not None
        return self._claim


async def settle(*branches: object) -> None:
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


def failed(err: ActivityError, *types: ErrorType) -> bool:
    """The activity failed with an ApplicationError of one of `types`."""
    cause = err.cause
    return isinstance(cause, ApplicationError) and cause.type in {str(t) for t in types}


def run_failure(message: str, error_type: str, failure: StepFailed | None = None) -> ApplicationError:
    """The error a run ends with; details carry the failed step and its type for callers."""
    details = [{"failed_step": failure.step, "failure_type": failure.error_type}] if failure else []
    return ApplicationError(message, *details, type=str(error_type), non_retryable=True)


async def switch_access(
    run: LifecycleRun,
    plan: TierPlan,
    tid: str,
    *,
    on: bool,
    missing_ok: bool = False,
    undoable: bool = False,
) -> None:
    """Sign-in and the tenant's own deployment off (sign-in first: nothing
    runs for users who cannot sign in) or on (deployment first: the
    application is up when sign-in returns).

    With `missing_ok`, a realm that is already gone is no reason to stop (a
    deletion removes it anyway). With `undoable` the switches are saga steps
    whose undo is owed (a suspend, resume or restore that fails switches
    back); otherwise they are steps that must finish (a deletion's).
    """

    async def run_step(name: str, request: object) -> None:
        if undoable:
            await run.step(name, request)  # type: ignore[arg-type]
        else:
            await run.cleanup(name, request)  # type: ignore[arg-type]

    async def deployment() -> None:
        if plan.own_deployment:
            if on:
                await run_step("resume_deployment", infra.ResumeDeploymentRequest(tenant_id=tid))
            else:
                await run_step("suspend_deployment", infra.SuspendDeploymentRequest(tenant_id=tid))

    async def identity() -> None:
        try:
            if on:
                await run_step("enable_access", idp.EnableTenantAccessRequest(tenant_id=tid))
            else:
                await run_step("disable_access", idp.DisableTenantAccessRequest(tenant_id=tid))
        except ActivityError as err:
            if not (missing_ok and failed(err, ErrorType.NOT_FOUND)):
                raise
            run.failure = None  # a realm already gone is no failure of this run

    if on:
        await deployment()
        await identity()
    else:
        await identity()
        await deployment()


def notice(
    tenant: tenant_pb2.Tenant,
    kind: str,
    *,
    failure: StepFailed | None = None,
    purge_time: datetime | None = None,
    per_run: bool = False,
    leftovers: list[tenant_pb2.LeftoverResource] | None = None,
    admin_setup: idp.AdminSetup.ValueType = idp.ADMIN_SETUP_UNSPECIFIED,
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
        leftover_resources=leftovers or [],
        admin_setup=admin_setup,
    )
    if purge_time is not None:
        request.purge_time.FromDatetime(purge_time)
    return request


def switched_back(failure: StepFailed, leftovers: list[tenant_pb2.LeftoverResource]) -> StepFailed:
    """The failure of a run that switched back what it had switched, saying what it could not."""
    if not leftovers:
        return failure
    undone = ", ".join(f"{r.step} ({r.reason})" for r in leftovers)
    return StepFailed(failure.step, f"{failure.reason}; could not switch back: {undone}", failure.error_type)


def leftover_note(leftovers: list[tenant_pb2.LeftoverResource]) -> str:
    """A sentence for the audit log naming what a run could not remove."""
    if not leftovers:
        return ""
    shown = ", ".join(f"{r.kind} {r.id}".strip() + f" ({r.step})" for r in leftovers)
    return f"; could not remove: {shown}"
