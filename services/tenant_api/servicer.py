"""TenantService: validates, reads the registry, starts lifecycle workflows."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from libs import lifecycle
from libs.contracts import WORKFLOWS, Rpc
from services.tenant_api import errors, validation
from services.tenant_api.registry import Registry
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc

log = logging.getLogger(__name__)
State = tenant_pb2.Tenant.State
PROVISION = WORKFLOWS.rpc("ProvisionTenant")
DEPROVISION = WORKFLOWS.rpc("DeprovisionTenant")
SUSPEND = WORKFLOWS.rpc("SuspendTenant")
RESUME = WORKFLOWS.rpc("ResumeTenant")
# Memo keys on the provisioning run. No secrets: memos are stored in clear.
SPEC_MEMO = "tenant_spec"
FINGERPRINT_MEMO = "tenant_spec_sha256"
QUERY_TIMEOUT = timedelta(seconds=2)
WATCH_INTERVAL = 0.25
# Suspend, resume and undelete answer once their run has ended, if it ends this soon.
SETTLE_WAIT = 15.0
DEFAULT_EVENT_PAGE = 100
MAX_EVENT_PAGE = 1000
# The first update of WatchTenant carries at most this many recent events.
MAX_WATCH_EVENTS = 100
# States from which DeleteTenant starts deprovisioning.
_DELETABLE = (State.STATE_ACTIVE, State.STATE_PROVISION_FAILED, State.STATE_SUSPENDED)


def fingerprint(tenant: tenant_pb2.Tenant) -> str:
    return hashlib.sha256(tenant.SerializeToString(deterministic=True)).hexdigest()


def _caller(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-tenantry-caller":
            return str(value)[:200]
    return str(context.peer())


def _same_spec(record: tenant_pb2.Tenant, spec: tenant_pb2.Tenant) -> bool:
    return (
        record.display_name == spec.display_name
        and record.plan_tier == spec.plan_tier
        and list(record.domains) == list(spec.domains)
        and record.admin == spec.admin
    )


class TenantService(tenant_service_pb2_grpc.TenantServiceServicer):
    def __init__(self, client: Client, registry: Registry) -> None:
        self._client = client
        self._registry = registry

    async def CreateTenant(  # noqa: N802 (gRPC method name)
        self, request: tenant_service_pb2.CreateTenantRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.CreateTenantResponse:
        spec, violations = validation.create_tenant(request)
        if violations:
            raise errors.invalid(violations)
        tid = spec.tenant_id
        existing = await self._registry.get(tid)
        if existing is not None:
            if not _same_spec(existing, spec):
                raise errors.already_exists(tid)
            return tenant_service_pb2.CreateTenantResponse(tenant=await self._with_progress(existing))
        # A domain belongs to one tenant (the identity realm enforces it too,
        # as the last word in a race); say so before starting anything.
        taken = await self._registry.domain_holders(list(spec.domains), other_than=tid)
        if taken:
            raise errors.domains_in_use(tid, taken, [list(spec.domains).index(d) for d in taken])
        digest = fingerprint(spec)
        handle = await self._start_provision(spec, digest, _caller(context))
        started_with = await self._memo(handle, FINGERPRINT_MEMO, str)
        if started_with != digest:
            raise errors.already_exists(tid)
        # No progress query here: it would cost a workflow task per create.
        accepted = await self._registry.get(tid) or _pending(spec)
        return tenant_service_pb2.CreateTenantResponse(tenant=accepted)

    async def _start_provision(
        self,
        spec: tenant_pb2.Tenant,
        digest: str,
        caller: str,
        *,
        reuse: WorkflowIDReusePolicy = WorkflowIDReusePolicy.REJECT_DUPLICATE,
    ) -> WorkflowHandle:
        workflow_id = lifecycle.provision_workflow_id(spec.tenant_id)
        try:
            # USE_EXISTING: concurrent identical calls all meet the one run.
            return await self._client.start_workflow(
                PROVISION.name,
                orchestrator_pb2.ProvisionTenantRequest(tenant=spec, requested_by=caller),
                id=workflow_id,
                task_queue=PROVISION.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=reuse,
                memo={SPEC_MEMO: spec, FINGERPRINT_MEMO: digest},
                execution_timeout=lifecycle.PROVISION_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            # A closed run for this tenant exists; compare against it.
            return self._client.get_workflow_handle(workflow_id)
        except RPCError as err:
            log.warning("starting %s failed: %s", workflow_id, err.status)
            raise errors.unavailable("temporal") from None

    async def GetTenant(  # noqa: N802
        self, request: tenant_service_pb2.GetTenantRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.GetTenantResponse:
        tid = self._tenant_id(request.name)
        return tenant_service_pb2.GetTenantResponse(tenant=await self._current(tid))

    async def ListTenants(  # noqa: N802
        self, request: tenant_service_pb2.ListTenantsRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.ListTenantsResponse:
        violations: validation.Violations = []
        size = validation.page_size(request.page_size, violations)
        after = _decode_token(request.page_token, violations)
        if violations:
            raise errors.invalid(violations)
        page = await self._registry.page(after=after, limit=size + 1)
        more = len(page) > size
        page = page[:size]
        token = _encode_token(page[-1].tenant_id) if more else ""
        return tenant_service_pb2.ListTenantsResponse(tenants=page, next_page_token=token)

    async def DeleteTenant(  # noqa: N802
        self, request: tenant_service_pb2.DeleteTenantRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.DeleteTenantResponse:
        violations: validation.Violations = []
        tid = validation.tenant_id_from_name(request.name, violations)
        grace = validation.grace_period(request, violations)
        if violations:
            raise errors.invalid(violations)
        tenant = await self._current(tid)
        caller = _caller(context)
        if tenant.state in (State.STATE_PENDING, State.STATE_PROVISIONING):
            raise errors.failed_precondition(
                tid,
                f"tenant {tid!r} is still being provisioned; delete it once it is settled",
                State.Name(tenant.state),
            )
        if tenant.state == State.STATE_DEPROVISIONED:
            return tenant_service_pb2.DeleteTenantResponse(tenant=tenant)
        deletion = lifecycle.deprovision_workflow_id(tid)
        if tenant.state == State.STATE_DEPROVISIONING and await self._running(deletion):
            if request.hard_delete:
                # Waiting out its grace period: a hard delete ends the wait.
                await self._update(
                    tid,
                    deletion,
                    lifecycle.DELETE_NOW_UPDATE,
                    orchestrator_pb2.DeleteNowRequest(requested_by=caller),
                )
            return tenant_service_pb2.DeleteTenantResponse(tenant=await self._current(tid))
        await self._refuse_while_running(tid, lifecycle.access_workflow_id(tid), "a suspend or resume")
        period = duration_pb2.Duration()
        period.FromTimedelta(grace)
        try:
            # A run already under way is met (USE_EXISTING); a finished one
            # (the tenant was restored, or a run stopped) is followed by a new one.
            await self._client.start_workflow(
                DEPROVISION.name,
                orchestrator_pb2.DeprovisionTenantRequest(
                    tenant_id=tid, requested_by=caller, grace_period=period, skip_backup=request.skip_backup
                ),
                id=deletion,
                task_queue=DEPROVISION.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                execution_timeout=grace + lifecycle.DEPROVISION_TIMEOUT,
            )
        except RPCError as err:
            log.warning("starting deprovision of %s failed: %s", tid, err.status)
            raise errors.unavailable("temporal") from None
        tenant.state = State.STATE_DEPROVISIONING
        del tenant.steps[:]
        return tenant_service_pb2.DeleteTenantResponse(tenant=tenant)

    async def UndeleteTenant(  # noqa: N802
        self, request: tenant_service_pb2.UndeleteTenantRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.UndeleteTenantResponse:
        tid = self._tenant_id(request.name)
        tenant = await self._current(tid)
        deletion = lifecycle.deprovision_workflow_id(tid)
        if tenant.state != State.STATE_DEPROVISIONING or not await self._running(deletion):
            raise errors.failed_precondition(
                tid,
                f"tenant {tid!r} is not waiting to be deleted; nothing to undelete",
                State.Name(tenant.state),
            )
        await self._update(
            tid,
            deletion,
            lifecycle.UNDELETE_UPDATE,
            orchestrator_pb2.UndeleteRequest(requested_by=_caller(context)),
        )
        # The restore takes a moment (sign-in and deployment back on): wait for it, within reason.
        await self._settled(deletion)
        return tenant_service_pb2.UndeleteTenantResponse(tenant=await self._current(tid))

    async def SuspendTenant(  # noqa: N802
        self, request: tenant_service_pb2.SuspendTenantRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.SuspendTenantResponse:
        tid = self._tenant_id(request.name)
        tenant = await self._change_access(tid, SUSPEND, State.STATE_ACTIVE, State.STATE_SUSPENDED, context)
        return tenant_service_pb2.SuspendTenantResponse(tenant=tenant)

    async def ResumeTenant(  # noqa: N802
        self, request: tenant_service_pb2.ResumeTenantRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.ResumeTenantResponse:
        tid = self._tenant_id(request.name)
        tenant = await self._change_access(tid, RESUME, State.STATE_SUSPENDED, State.STATE_ACTIVE, context)
        return tenant_service_pb2.ResumeTenantResponse(tenant=tenant)

    async def _change_access(
        self, tid: str, rpc: Rpc, source: int, target: int, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.Tenant:
        """Starts (or meets) the suspend or resume run and waits, within
        reason, for it to end; already in `target` is success."""
        tenant = await self._current(tid)
        if tenant.state == target:
            return tenant
        if tenant.state != source:
            raise errors.failed_precondition(
                tid,
                f"tenant {tid!r} is {State.Name(tenant.state)}; only a {State.Name(source)} tenant"
                f" can become {State.Name(target)}",
                State.Name(tenant.state),
            )
        workflow_id = lifecycle.access_workflow_id(tid)
        try:
            handle = await self._client.start_workflow(
                rpc.name,
                rpc.input_type(tenant_id=tid, requested_by=_caller(context)),
                id=workflow_id,
                task_queue=rpc.task_queue,
                # Suspend and resume share the id: a second caller meets the run under way.
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                execution_timeout=lifecycle.ACCESS_TIMEOUT,
            )
            description = await handle.describe()
        except RPCError as err:
            log.warning("starting %s of %s failed: %s", rpc.method, tid, err.status)
            raise errors.unavailable("temporal") from None
        if description.workflow_type != rpc.name:
            raise errors.run_in_progress(
                tid,
                f"another suspend or resume of tenant {tid!r} is under way; retry once it ends",
                workflow_id,
            )
        await self._settled(workflow_id)
        return await self._current(tid)

    async def CancelProvisioning(  # noqa: N802
        self, request: tenant_service_pb2.CancelProvisioningRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.CancelProvisioningResponse:
        tid = self._tenant_id(request.name)
        tenant = await self._current(tid)
        if tenant.state not in (State.STATE_PENDING, State.STATE_PROVISIONING):
            raise errors.failed_precondition(
                tid, f"tenant {tid!r} has no provisioning run to cancel", State.Name(tenant.state)
            )
        handle = self._client.get_workflow_handle(lifecycle.provision_workflow_id(tid))
        try:
            # Who cancels, for the audit log; then the cancel itself. The run
            # undoes what it did, then ends PROVISION_FAILED "cancelled".
            await handle.signal(
                lifecycle.CANCEL_REQUESTED_SIGNAL,
                orchestrator_pb2.CancelRequested(requested_by=_caller(context)),
            )
            await handle.cancel()
        except RPCError as err:
            log.warning("cancelling provisioning of %s failed: %s", tid, err.status)
            raise errors.unavailable("temporal") from None
        return tenant_service_pb2.CancelProvisioningResponse(tenant=await self._current(tid))

    async def ListTenantEvents(  # noqa: N802
        self, request: tenant_service_pb2.ListTenantEventsRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.ListTenantEventsResponse:
        violations: validation.Violations = []
        tid = validation.tenant_id_from_name(request.parent, violations, field="parent")
        size = validation.page_size(request.page_size, violations, default=DEFAULT_EVENT_PAGE)
        after = _decode_event_token(request.page_token, violations)
        if violations:
            raise errors.invalid(violations)
        page = await self._registry.events(tid, after=after, limit=size + 1)
        if not page and not after:
            await self._current(tid)  # NOT_FOUND for a tenant that does not exist
        more = len(page) > size
        page = page[:size]
        token = _encode_token(str(page[-1][0])) if more else ""
        return tenant_service_pb2.ListTenantEventsResponse(events=[e for _, e in page], next_page_token=token)

    async def RetryProvisioning(  # noqa: N802
        self, request: tenant_service_pb2.RetryProvisioningRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.RetryProvisioningResponse:
        tid = self._tenant_id(request.name)
        record = await self._registry.get(tid)
        if record is None:
            raise errors.not_found(tid)
        if record.state == State.STATE_PROVISION_FAILED:
            spec = tenant_pb2.Tenant(
                tenant_id=tid,
                display_name=record.display_name,
                plan_tier=record.plan_tier,
                domains=record.domains,
                admin=record.admin,
            )
            # A new run under the same id: allowed only because the last run
            # did not succeed; racing callers meet the one run (USE_EXISTING).
            await self._start_provision(
                spec,
                fingerprint(spec),
                _caller(context),
                reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            )
        elif record.state not in (State.STATE_PROVISIONING, State.STATE_ACTIVE):
            raise errors.failed_precondition(
                tid, f"tenant {tid!r} did not fail provisioning; nothing to retry", State.Name(record.state)
            )
        return tenant_service_pb2.RetryProvisioningResponse(tenant=await self._current(tid))

    async def WatchTenant(  # noqa: N802
        self, request: tenant_service_pb2.WatchTenantRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tenant_service_pb2.WatchTenantResponse]:
        tid = self._tenant_id(request.name)
        last = b""
        seen, events = await self._recent_events(tid)
        latest_run = events[-1].workflow_id if events else ""
        settled_at: float | None = None
        while True:
            tenant = await self._current(tid)
            settled = tenant.state in lifecycle.SETTLED_STATES
            if settled:
                # The last update shows how every step of the run ended.
                del tenant.steps[:]
                tenant = await self._with_progress(tenant, settled=True)
            # Events read after the tenant, so the last update has every event of its run.
            for event_id, event in await self._registry.events(tid, after=seen, limit=MAX_WATCH_EVENTS):
                seen, latest_run = event_id, event.workflow_id
                events.append(event)
            # Settled, the run still sends its notice and appends its last
            # events: wait for it to end, within reason, before the last update.
            now = asyncio.get_running_loop().time()
            if settled and settled_at is None:
                settled_at = now
            waited = now - (settled_at or now)
            finished = settled and (
                not latest_run or waited > SETTLE_WAIT or not await self._running(latest_run)
            )
            snapshot = tenant.SerializeToString(deterministic=True)
            if (snapshot != last or events) and (finished or not settled):
                last = snapshot
                yield tenant_service_pb2.WatchTenantResponse(tenant=tenant, events=events)
                events = []
            if finished:
                return
            await asyncio.sleep(WATCH_INTERVAL)

    async def _recent_events(self, tid: str) -> tuple[int, list[tenant_pb2.TenantEvent]]:
        """The id of the tenant's latest event and its last MAX_WATCH_EVENTS events."""
        seen, recent = 0, list[tuple[int, tenant_pb2.TenantEvent]]()
        while True:
            page = await self._registry.events(tid, after=seen, limit=MAX_EVENT_PAGE)
            if not page:
                return seen, [e for _, e in recent[-MAX_WATCH_EVENTS:]]
            seen = page[-1][0]
            recent = [*recent[-MAX_WATCH_EVENTS:], *page]

    # -- reading a tenant ---------------------------------------------------

    @staticmethod
    def _tenant_id(name: str) -> str:
        violations: validation.Violations = []
        tid = validation.tenant_id_from_name(name, violations)
        if violations:
            raise errors.invalid(violations)
        return tid

    async def _current(self, tid: str) -> tenant_pb2.Tenant:
        """The registry record, or the accepted spec while the run has not yet
        written it, with the running workflow's step progress."""
        tenant = await self._registry.get(tid)
        if tenant is None:
            handle = self._client.get_workflow_handle(lifecycle.provision_workflow_id(tid))
            spec = await self._memo(handle, SPEC_MEMO, tenant_pb2.Tenant)
            if not isinstance(spec, tenant_pb2.Tenant):
                raise errors.not_found(tid)
            tenant = _pending(spec)
        elif tenant.state in _DELETABLE and await self._running(lifecycle.deprovision_workflow_id(tid)):
            # Deprovisioning has started but not yet marked the record.
            tenant.state = State.STATE_DEPROVISIONING
        elif tenant.state == State.STATE_PROVISION_FAILED and await self._running(
            lifecycle.provision_workflow_id(tid)
        ):
            # A retry has started but not yet marked the record.
            tenant.state = State.STATE_PROVISIONING
        return await self._with_progress(tenant)

    async def _update(self, tid: str, workflow_id: str, update: str, argument: Message) -> None:
        """Sends an update to a run; a refusal is the tenant's state, not a fault."""
        try:
            await self._client.get_workflow_handle(workflow_id).execute_update(
                update, argument, result_type=orchestrator_pb2.DeletionUpdateResponse
            )
        except WorkflowUpdateFailedError as err:
            cause = err.cause
            message = cause.message if isinstance(cause, ApplicationError) else "refused"
            raise errors.failed_precondition(
                tid, f"tenant {tid!r}: {message}", State.Name(State.STATE_DEPROVISIONING)
            ) from None
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise errors.failed_precondition(
                    tid, f"tenant {tid!r}: the deletion run has ended", State.Name(State.STATE_DEPROVISIONING)
                ) from None
            log.warning("%s of %s failed: %s", update, workflow_id, err.status)
            raise errors.unavailable("temporal") from None

    async def _settled(self, workflow_id: str) -> None:
        """Waits up to SETTLE_WAIT for a short run to end; it goes on regardless."""
        try:
            await asyncio.wait_for(self._client.get_workflow_handle(workflow_id).result(), SETTLE_WAIT)
        except (TimeoutError, WorkflowFailureError, RPCError) as err:
            log.info("%s not settled yet: %s", workflow_id, type(err).__name__)

    async def _refuse_while_running(self, tid: str, workflow_id: str, what: str) -> None:
        if await self._running(workflow_id):
            raise errors.run_in_progress(
                tid, f"{what} of tenant {tid!r} is under way; retry once it ends", workflow_id
            )

    async def _running(self, workflow_id: str) -> bool:
        try:
            description = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise errors.unavailable("temporal") from None
        return description.status == WorkflowExecutionStatus.RUNNING

    async def _with_progress(self, tenant: tenant_pb2.Tenant, *, settled: bool = False) -> tenant_pb2.Tenant:
        """Adds the step progress of the tenant's run under way, or with
        `settled` (or after a failure) of its last run."""
        in_flight = tenant.state in (
            State.STATE_PENDING,
            State.STATE_PROVISIONING,
            State.STATE_DEPROVISIONING,
        )
        if not (in_flight or settled or tenant.state == State.STATE_PROVISION_FAILED):
            return tenant
        if tenant.state in (State.STATE_DEPROVISIONING, State.STATE_DEPROVISIONED):
            workflow_id = lifecycle.deprovision_workflow_id(tenant.tenant_id)
        else:
            workflow_id = lifecycle.provision_workflow_id(tenant.tenant_id)
        try:
            progress = await self._client.get_workflow_handle(workflow_id).query(
                lifecycle.PROGRESS_QUERY, result_type=orchestrator_pb2.RunProgress, rpc_timeout=QUERY_TIMEOUT
            )
        except Exception as err:  # progress is a nicety: the record stands without it
            log.debug("progress of %s unavailable: %s", workflow_id, err)
            return tenant
        tenant.steps.extend(progress.steps)
        tenant.current_step = ",".join(progress.current_steps)
        return tenant

    async def _memo(self, handle: WorkflowHandle, key: str, kind: type) -> object | None:
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise errors.unavailable("temporal") from None
        return await description.memo_value(key, None, type_hint=kind)


def _pending(spec: tenant_pb2.Tenant) -> tenant_pb2.Tenant:
    """The accepted spec as a tenant whose run has not written the registry yet."""
    tenant = tenant_pb2.Tenant()
    tenant.CopyFrom(spec)
    tenant.name = lifecycle.tenant_name(spec.tenant_id)
    tenant.state = State.STATE_PENDING
    return tenant


def _encode_token(after: str) -> str:
    return base64.urlsafe_b64encode(f"v1:{after}".encode()).decode()


def _decode_token(token: str, violations: validation.Violations) -> str:
    if not token:
        return ""
    try:
        version, _, after = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        version, after = "", ""
    if version != "v1" or not lifecycle.valid_tenant_id(after):
        violations.append(("page_token", "not a token returned by ListTenants"))
    return after


def _decode_event_token(token: str, violations: validation.Violations) -> int:
    if not token:
        return 0
    try:
        version, _, after = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        version, after = "", ""
    if version != "v1" or not after.isdigit() or len(after) > 18:
        violations.append(("page_token", "not a token returned by ListTenantEvents"))
        return 0
    return int(after)
