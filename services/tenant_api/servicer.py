"""TenantService: validates, reads the registry, starts and follows lifecycle runs.

Handlers read like the API table in the README: check the request and the
tenant's state, start or update a run through `Runs` (runs.py, the gateway
to Temporal), and answer with the tenant as the registry shows it, or with
the error of the run that failed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf import duration_pb2
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy

from libs import config, lifecycle
from libs.contracts import WORKFLOWS, Rpc
from services.tenant_api import auth, errors, filters, validation
from services.tenant_api.changes import RECENT_EVENTS, RegistryChanges, TenantFeed, watched_run
from services.tenant_api.page_tokens import PageTokens
from services.tenant_api.registry import Record, Registry, set_current_steps
from services.tenant_api.runs import SETTLE_WAIT, Ended, Lookups, Runs, workflow_of
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc

log = logging.getLogger(__name__)
State = tenant_pb2.Tenant.State
Operation = tenant_pb2.Operation
PROVISION = WORKFLOWS.rpc("ProvisionTenant")
DEPROVISION = WORKFLOWS.rpc("DeprovisionTenant")
SUSPEND = WORKFLOWS.rpc("SuspendTenant")
RESUME = WORKFLOWS.rpc("ResumeTenant")
CLEAN_UP = WORKFLOWS.rpc("CleanUpTenant")
# Memo keys on the provisioning run. Memos go through the payload codec (libs/codec.py),
# so the spec is stored encrypted; still no secrets in it.
SPEC_MEMO = "tenant_spec"
FINGERPRINT_MEMO = "tenant_spec_sha256"
# Seconds between heartbeat updates of a WatchTenant stream while nothing changes.
WATCH_HEARTBEAT = 30
# CreateTenant answers once the run has marked the record (its first step), if that comes this soon.
RECORD_WAIT = 5.0
DEFAULT_EVENT_PAGE = 100
MAX_EVENT_PAGE = 1000
# A clean-up run retries undos for up to a few hours (plan.COMPENSATION_STEP).
CLEAN_UP_TIMEOUT = lifecycle.ACCESS_TIMEOUT
# States from which DeleteTenant starts (or resumes) deprovisioning.
_DELETABLE = (
    State.STATE_ACTIVE,
    State.STATE_PROVISION_FAILED,
    State.STATE_SUSPENDED,
    State.STATE_DEPROVISION_FAILED,
)
# States a suspend or resume moves a tenant between: a deletion started from
# one of them claims the tenant only if it is still in it.
_RACED_BY_ACCESS = (State.STATE_ACTIVE, State.STATE_SUSPENDED)
# What a run's in-flight state shows once the run has ended without saying how.
_DIED_AS = {
    State.STATE_PROVISIONING: State.STATE_PROVISION_FAILED,
    State.STATE_DEPROVISIONING: State.STATE_DEPROVISION_FAILED,
}


def fingerprint(tenant: tenant_pb2.Tenant) -> str:
    return hashlib.sha256(tenant.SerializeToString(deterministic=True)).hexdigest()


def _caller(context: grpc.aio.ServicerContext) -> str:
    # The audit actor is the verified principal; nothing the caller writes
    # (such as x-tenantry-caller) can put another name in the audit log.
    return auth.current().id


def _differences(existing: tenant_pb2.Tenant, spec: tenant_pb2.Tenant) -> list[str]:
    """The settings of `spec` that differ from the existing tenant's, as API field paths."""
    return [
        path
        for path, ours, theirs in (
            ("tenant.display_name", existing.display_name, spec.display_name),
            ("tenant.plan_tier", existing.plan_tier, spec.plan_tier),
            ("tenant.domains", list(existing.domains), list(spec.domains)),
            ("tenant.admin.email", existing.admin.email, spec.admin.email),
            ("tenant.admin.given_name", existing.admin.given_name, spec.admin.given_name),
            ("tenant.admin.family_name", existing.admin.family_name, spec.admin.family_name),
        )
        if ours != theirs
    ]


def _delete_time(tenant: tenant_pb2.Tenant) -> datetime | None:
    """When a DEPROVISIONED tenant was deleted: the end of its deletion run (else its last change)."""
    operation = tenant.last_operation
    if operation.kind == Operation.KIND_DEPROVISION and operation.HasField("end_time"):
        return operation.end_time.ToDatetime(UTC)
    return tenant.update_time.ToDatetime(UTC) if tenant.HasField("update_time") else None


def _spec_of(record: tenant_pb2.Tenant) -> tenant_pb2.Tenant:
    return tenant_pb2.Tenant(
        tenant_id=record.tenant_id,
        display_name=record.display_name,
        plan_tier=record.plan_tier,
        domains=record.domains,
        admin=record.admin,
    )


class TenantService(tenant_service_pb2_grpc.TenantServiceServicer):
    def __init__(
        self,
        client: Client,
        registry: Registry,
        *,
        page_tokens: PageTokens | None = None,
        lookups: Lookups | None = None,
    ) -> None:
        self._runs = Runs(client)
        self._registry = registry
        self._tokens = page_tokens or PageTokens.from_env()
        self._lookups = lookups or Lookups(self._runs)
        self._changes = RegistryChanges(registry, self._runs)
        self._heartbeat = config.integer("TENANTRY_WATCH_HEARTBEAT_SECONDS", WATCH_HEARTBEAT)

    @property
    def changes(self) -> RegistryChanges:
        return self._changes

    @property
    def lookups(self) -> Lookups:
        return self._lookups

    async def close(self) -> None:
        """Ends the registry listener and every watch feed."""
        await self._changes.close()

    async def CreateTenant(  # noqa: N802 (gRPC method name)
        self, request: tenant_service_pb2.CreateTenantRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.CreateTenantResponse:
        spec, violations = validation.create_tenant(request)
        if violations:
            raise errors.invalid(violations)
        tid = spec.tenant_id
        existing = await self._registry.get(tid)
        if existing is not None:
            # A deleted tenant's id is never reused, whatever the settings: its
            # audit log and backups (personal data) stay its own.
            if existing.state == State.STATE_DEPROVISIONED:
                raise errors.tenant_deleted(tid, _delete_time(existing))
            differs = _differences(existing, spec)
            if differs:
                raise errors.already_exists(tid, differs)
            return tenant_service_pb2.CreateTenantResponse(tenant=await self._current(tid))
        # A domain belongs to one tenant (MarkProvisioning claims them, as the
        # last word in a race); say so before starting anything.
        taken = await self._registry.domain_holders(list(spec.domains), other_than=tid)
        if taken:
            raise errors.domains_in_use(tid, taken, [list(spec.domains).index(d) for d in taken])
        digest = fingerprint(spec)
        workflow_id = lifecycle.provision_workflow_id(tid)
        async with self._changes.feed(tid) as feed:
            handle = await self._start_provision(
                spec, digest, _caller(context), reuse=WorkflowIDReusePolicy.REJECT_DUPLICATE
            )
            # A run this call started has this spec; one it met may have another.
            if not self._runs.started_now(handle):
                started_with = await self._runs.memo(workflow_id, SPEC_MEMO, tenant_pb2.Tenant)
                if isinstance(started_with, tenant_pb2.Tenant):
                    differs = _differences(started_with, spec)
                    if differs:
                        raise errors.already_exists(tid, differs)
                elif await self._runs.memo(workflow_id, FINGERPRINT_MEMO, str) != digest:
                    raise errors.already_exists(tid)
            # The run's first step marks the record: answer once it has (the
            # registry's notice says so), so that reading the tenant never has
            # to ask the run. No query here: it would cost a workflow task per create.
            await _record_written(feed, RECORD_WAIT)
        accepted = await self._registry.get(tid) or _pending(spec)
        return tenant_service_pb2.CreateTenantResponse(tenant=accepted)

    async def _start_provision(
        self, spec: tenant_pb2.Tenant, digest: str, caller: str, *, reuse: WorkflowIDReusePolicy
    ) -> WorkflowHandle:
        return await self._runs.start(
            PROVISION,
            orchestrator_pb2.ProvisionTenantRequest(tenant=spec, requested_by=caller),
            lifecycle.provision_workflow_id(spec.tenant_id),
            reuse=reuse,
            execution_timeout=lifecycle.PROVISION_TIMEOUT,
            memo={SPEC_MEMO: spec, FINGERPRINT_MEMO: digest},
        )

    async def GetTenant(  # noqa: N802
        self, request: tenant_service_pb2.GetTenantRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.GetTenantResponse:
        tid = self._tenant_id(request.name)
        return tenant_service_pb2.GetTenantResponse(tenant=await self._current(tid, cached=True))

    async def ListTenants(  # noqa: N802
        self, request: tenant_service_pb2.ListTenantsRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.ListTenantsResponse:
        violations: validation.Violations = []
        size = validation.page_size(request.page_size, violations)
        query = validation.list_query(request, violations)
        after = self._after_tenant(request.page_token, query, violations)
        if violations:
            raise errors.invalid(violations)
        assert query is not None  # a wrong one is a violation
        only = auth.view_scope()
        # Settled or not, a page is the registry's; kept in memory until any notice.
        key = (query.canonical(), after, size, only)
        page = await self._changes.page(
            key, lambda: self._registry.page(query=query, after=after, limit=size + 1, only=only)
        )
        more = len(page) > size
        page = page[:size]
        token = self._tenants_token(page[-1], query) if more else ""
        return tenant_service_pb2.ListTenantsResponse(tenants=page, next_page_token=token)

    async def DeleteTenant(  # noqa: N802
        self, request: tenant_service_pb2.DeleteTenantRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.DeleteTenantResponse:
        violations: validation.Violations = []
        tid = validation.tenant_id_from_name(request.name, violations)
        grace = validation.grace_period(request, violations)
        if violations:
            raise errors.invalid(violations)
        tenant = await self._current(tid, exact=True)
        caller = _caller(context)
        if tenant.state in (State.STATE_PENDING, State.STATE_PROVISIONING):
            raise errors.failed_precondition(
                tid,
                f"tenant {tid!r} is still being provisioned; delete it once it is settled",
                State.Name(tenant.state),
            )
        if tenant.state in (State.STATE_SUSPENDING, State.STATE_RESUMING):
            raise errors.run_in_progress(
                tid,
                f"a suspend or resume of tenant {tid!r} is under way; retry once it ends",
                lifecycle.access_workflow_id(tid),
            )
        if tenant.state == State.STATE_DEPROVISIONED:
            return tenant_service_pb2.DeleteTenantResponse(tenant=tenant)
        deletion = lifecycle.deprovision_workflow_id(tid)
        if tenant.state == State.STATE_DEPROVISIONING and await self._runs.running(deletion):
            if request.hard_delete:
                # Waiting out its grace period: a hard delete ends the wait.
                await self._runs.update(
                    tid,
                    deletion,
                    lifecycle.DELETE_NOW_UPDATE,
                    orchestrator_pb2.DeleteNowRequest(requested_by=caller),
                    orchestrator_pb2.DeletionUpdateResponse,
                    state=State.STATE_DEPROVISIONING,
                )
            return tenant_service_pb2.DeleteTenantResponse(tenant=await self._current(tid))
        await self._refuse_while_running(tid, lifecycle.access_workflow_id(tid), "a suspend or resume")
        await self._after_tail(tid, deletion)
        period = duration_pb2.Duration()
        period.FromTimedelta(grace)
        # A run already under way is met (USE_EXISTING); a finished one (the
        # tenant was restored, or a deletion stopped) is followed by a new
        # one, which resumes a deletion that stopped where it stopped.
        await self._runs.start(
            DEPROVISION,
            orchestrator_pb2.DeprovisionTenantRequest(
                tenant_id=tid,
                requested_by=caller,
                grace_period=period,
                skip_backup=request.skip_backup,
                # A suspend or resume that lands first wins; this deletion then fails cleanly.
                expected_state=tenant.state if tenant.state in _RACED_BY_ACCESS else State.STATE_UNSPECIFIED,
                # So that the run's first update already shows its whole plan.
                plan_tier=tenant.plan_tier,
            ),
            deletion,
            reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            execution_timeout=grace + lifecycle.DEPROVISION_TIMEOUT,
        )
        # Answer once the run has the tenant (or could not take it): a
        # suspend racing this deletion wins or loses here, never both.
        await self._claimed(tid, deletion, "delete", tenant.state)
        return tenant_service_pb2.DeleteTenantResponse(tenant=await self._current(tid))

    async def _claimed(self, tid: str, workflow_id: str, operation: str, state: int) -> None:
        """Waits (within reason) until the run just started or met has taken
        the tenant over; an error when it could not."""
        try:
            claim = await self._runs.update(
                tid,
                workflow_id,
                lifecycle.CLAIMED_UPDATE,
                orchestrator_pb2.ClaimRequest(),
                orchestrator_pb2.ClaimResponse,
                state=state,
                wait=SETTLE_WAIT,
            )
        except errors.ApiError as err:
            if err.code != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            # The run ended before it could be asked: how it ended is the answer.
            _raise_if_failed(tid, operation, await self._runs.ended(workflow_id))
            return
        if not isinstance(claim, orchestrator_pb2.ClaimResponse):
            return  # not yet: the run goes on, and the tenant shows how it stands
        if claim.claimed and claim.state != State.STATE_DEPROVISION_FAILED:
            return
        failure_type = claim.failure_type
        if failure_type == "Conflict":
            # The tenant changed under the request: another run has it, or it
            # is no longer in a state this operation starts from.
            now = await self._current(tid, exact=True)
            if now.state in (State.STATE_PROVISIONING, State.STATE_ACTIVE) and operation == "retry":
                return  # a racing retry won: the tenant is provisioned, as asked
            failure_type = "OperationInProgress" if now.state in lifecycle.IN_FLIGHT_STATES else "TenantState"
        raise errors.operation_failed(
            tid, operation, "", failure_type, f"tenant {tid!r}: {claim.failure_reason}"
        )

    async def UndeleteTenant(  # noqa: N802
        self, request: tenant_service_pb2.UndeleteTenantRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.UndeleteTenantResponse:
        tid = self._tenant_id(request.name)
        tenant = await self._current(tid, exact=True)
        deletion = lifecycle.deprovision_workflow_id(tid)
        if tenant.state != State.STATE_DEPROVISIONING or not await self._runs.running(deletion):
            raise errors.failed_precondition(
                tid,
                f"tenant {tid!r} is not waiting to be deleted; nothing to undelete",
                State.Name(tenant.state),
            )
        # The answer comes once the restore has ended (sign-in and deployment
        # back on), within reason; a restore that failed is the error.
        await self._runs.update(
            tid,
            deletion,
            lifecycle.UNDELETE_UPDATE,
            orchestrator_pb2.UndeleteRequest(requested_by=_caller(context)),
            orchestrator_pb2.DeletionUpdateResponse,
            state=State.STATE_DEPROVISIONING,
            wait=SETTLE_WAIT,
        )
        await self._runs.ended(deletion, wait=SETTLE_WAIT)
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
        reason, for it to end; already in `target` is success, a run that
        failed is its error."""
        operation = "suspend" if rpc is SUSPEND else "resume"
        tenant = await self._current(tid, exact=True)
        if tenant.state == target:
            return tenant
        changing = (State.STATE_SUSPENDING, State.STATE_RESUMING)
        if tenant.state != source and tenant.state not in changing:
            raise errors.failed_precondition(
                tid,
                f"tenant {tid!r} is {State.Name(tenant.state)}; only a {State.Name(source)} tenant"
                f" can become {State.Name(target)}",
                State.Name(tenant.state),
            )
        workflow_id = lifecycle.access_workflow_id(tid)
        handle = await self._runs.start(
            rpc,
            # The tier: the run's first update already shows its whole plan.
            rpc.input_type(tenant_id=tid, requested_by=_caller(context), plan_tier=tenant.plan_tier),
            workflow_id,
            # Suspend and resume share the id: a second caller meets the run under way.
            reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            execution_timeout=lifecycle.ACCESS_TIMEOUT,
        )
        if await self._runs.workflow_type(handle) != rpc.name:
            raise errors.run_in_progress(
                tid,
                f"another suspend or resume of tenant {tid!r} is under way; retry once it ends",
                workflow_id,
            )
        ended = await self._runs.ended(workflow_id, wait=SETTLE_WAIT)
        _raise_if_failed(tid, operation, ended)
        return await self._current(tid)

    async def CancelProvisioning(  # noqa: N802
        self, request: tenant_service_pb2.CancelProvisioningRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.CancelProvisioningResponse:
        tid = self._tenant_id(request.name)
        tenant = await self._current(tid, exact=True)
        if tenant.state not in (State.STATE_PENDING, State.STATE_PROVISIONING):
            raise errors.failed_precondition(
                tid, f"tenant {tid!r} has no provisioning run to cancel", State.Name(tenant.state)
            )
        workflow_id = lifecycle.provision_workflow_id(tid)
        # The run accepts the cancel (and then ends PROVISION_FAILED
        # "cancelled", whatever finishes meanwhile) or refuses it because it
        # has made the tenant ACTIVE; Temporal's cancel then stops what is in
        # flight at its next heartbeat.
        await self._runs.update(
            tid,
            workflow_id,
            lifecycle.CANCEL_UPDATE,
            orchestrator_pb2.CancelRequested(requested_by=_caller(context)),
            orchestrator_pb2.CancelResponse,
            state=tenant.state,
        )
        await self._runs.cancel(workflow_id)
        return tenant_service_pb2.CancelProvisioningResponse(tenant=await self._current(tid))

    async def ListTenantEvents(  # noqa: N802
        self, request: tenant_service_pb2.ListTenantEventsRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.ListTenantEventsResponse:
        violations: validation.Violations = []
        tid = validation.tenant_id_from_name(request.parent, violations, field="parent")
        size = validation.page_size(request.page_size, violations, default=DEFAULT_EVENT_PAGE)
        after = self._after_event(request.page_token, tid, violations)
        if violations:
            raise errors.invalid(violations)
        page = await self._registry.events(tid, after=after, limit=size + 1)
        if not page and not after:
            await self._current(tid)  # NOT_FOUND for a tenant that does not exist
        more = len(page) > size
        page = page[:size]
        token = self._tokens.encode(str(page[-1][0]), scope=_events_scope(tid)) if more else ""
        return tenant_service_pb2.ListTenantEventsResponse(events=[e for _, e in page], next_page_token=token)

    async def RetryProvisioning(  # noqa: N802
        self, request: tenant_service_pb2.RetryProvisioningRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.RetryProvisioningResponse:
        tid = self._tenant_id(request.name)
        tenant = await self._current(tid, exact=True)
        workflow_id = lifecycle.provision_workflow_id(tid)
        if tenant.state == State.STATE_PROVISION_FAILED:
            await self._after_tail(tid, workflow_id)
            spec = _spec_of(tenant)
            # A new run under the same id: allowed only because the last run
            # did not succeed (or was a clean-up); racing callers meet the one
            # run (USE_EXISTING), and MarkProvisioning lets only a failed tenant start again.
            last = await self._runs.describe(workflow_id)
            after_clean_up = last is not None and last.workflow_type == CLEAN_UP.name
            if after_clean_up and last is not None and last.status == WorkflowExecutionStatus.RUNNING:
                raise errors.run_in_progress(
                    tid, f"a clean-up of tenant {tid!r} is under way; retry once it ends", workflow_id
                )
            reuse = (
                WorkflowIDReusePolicy.ALLOW_DUPLICATE
                if after_clean_up
                else WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
            )
            await self._start_provision(spec, fingerprint(spec), _caller(context), reuse=reuse)
            await self._claimed(tid, workflow_id, "retry", tenant.state)
        elif tenant.state not in (State.STATE_PENDING, State.STATE_PROVISIONING, State.STATE_ACTIVE):
            raise errors.failed_precondition(
                tid, f"tenant {tid!r} did not fail provisioning; nothing to retry", State.Name(tenant.state)
            )
        return tenant_service_pb2.RetryProvisioningResponse(tenant=await self._current(tid))

    async def CleanUpTenant(  # noqa: N802
        self, request: tenant_service_pb2.CleanUpTenantRequest, context: grpc.aio.ServicerContext
    ) -> tenant_service_pb2.CleanUpTenantResponse:
        tid = self._tenant_id(request.name)
        tenant = await self._current(tid, exact=True)
        if tenant.state != State.STATE_PROVISION_FAILED:
            raise errors.failed_precondition(
                tid,
                f"tenant {tid!r} is {State.Name(tenant.state)}; only a PROVISION_FAILED tenant is cleaned up"
                " (DeleteTenant removes everything a live tenant has)",
                State.Name(tenant.state),
            )
        if not tenant.leftover_resources:
            return tenant_service_pb2.CleanUpTenantResponse(tenant=tenant)
        # Under the provisioning id: a clean-up and a retry never run at once.
        workflow_id = lifecycle.provision_workflow_id(tid)
        await self._after_tail(tid, workflow_id)
        handle = await self._runs.start(
            CLEAN_UP,
            orchestrator_pb2.CleanUpTenantRequest(tenant_id=tid, requested_by=_caller(context)),
            workflow_id,
            reuse=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            execution_timeout=CLEAN_UP_TIMEOUT,
        )
        if await self._runs.workflow_type(handle) != CLEAN_UP.name:
            raise errors.run_in_progress(
                tid, f"a provisioning run of tenant {tid!r} is under way; retry once it ends", workflow_id
            )
        _raise_if_failed(tid, "clean_up", await self._runs.ended(workflow_id, wait=SETTLE_WAIT))
        return tenant_service_pb2.CleanUpTenantResponse(tenant=await self._current(tid))

    async def WatchTenant(  # noqa: N802
        self, request: tenant_service_pb2.WatchTenantRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tenant_service_pb2.WatchTenantResponse]:
        tid = self._tenant_id(request.name)
        async with self._changes.feed(tid) as feed:
            await feed.ready()
            spec = None
            if feed.record is None:
                # Accepted, not yet marked by its run: the run's spec, until the record comes.
                spec = await self._runs.memo(
                    lifecycle.provision_workflow_id(tid), SPEC_MEMO, tenant_pb2.Tenant
                )
                if not isinstance(spec, tenant_pb2.Tenant):
                    raise errors.not_found(tid)
            async for update in self._updates(feed, spec):
                yield update

    async def _updates(
        self, feed: TenantFeed, spec: tenant_pb2.Tenant | None
    ) -> AsyncIterator[tenant_service_pb2.WatchTenantResponse]:
        """One watcher's updates from the tenant's feed: an update when what
        it shows changed, a heartbeat while nothing does; the stream ends once
        the tenant is settled and its run has appended its last events."""
        clock = asyncio.get_running_loop().time
        sent: bytes | None = None
        cursor: int | None = None  # the last event sent
        quiet_since = clock()
        while True:
            seen = feed.version
            if feed.error is not None:
                raise feed.error
            tenant = _watched(feed, spec)
            now = clock()
            # Settled, the stream goes on while a run is under way: the run
            # that just settled the tenant has its last events to append, and
            # a run that has opened on a settled tenant (a deletion whose
            # first step is held up) is yet to change it. A run that dies
            # without saying it ended is found closed by the feed.
            finished = tenant.state in lifecycle.SETTLED_STATES and (
                feed.record is None or feed.record.run_ended or feed.closed is not None
            )
            if cursor is None:
                # The first update: the events of the run the watcher follows, not of
                # earlier runs (a run id is unique across workflow ids).
                run = watched_run(feed.record)
                events = [
                    (i, e) for i, e in feed.events[-RECENT_EVENTS:] if run is None or e.run_id == run[1]
                ]
            else:
                kept = feed.events_after(cursor)
                if kept is None:  # fell behind what the feed keeps
                    kept = await self._registry.events(feed.tenant_id, after=cursor, limit=MAX_EVENT_PAGE)
                events = kept
            snapshot = tenant.SerializeToString(deterministic=True)
            if snapshot != sent or events:
                sent, quiet_since = snapshot, now
                if cursor is None:  # past every event the feed has, sent or left out
                    cursor = feed.events[-1][0] if feed.events else 0
                elif events:
                    cursor = events[-1][0]
                yield tenant_service_pb2.WatchTenantResponse(tenant=tenant, events=[e for _, e in events])
            elif now - quiet_since >= self._heartbeat:
                quiet_since = now
                yield tenant_service_pb2.WatchTenantResponse(tenant=tenant, heartbeat=True)
            if finished:
                return
            await feed.changed(seen, max(self._heartbeat - (now - quiet_since), 0.0))

    # -- page tokens --------------------------------------------------------

    def _tenants_token(self, last: tenant_pb2.Tenant, query: filters.Query) -> str:
        order = query.order.field
        if order == "tenant_id":
            position = last.tenant_id
        else:
            stamp = getattr(last, order)
            position = f"{stamp.seconds * 1_000_000 + stamp.nanos // 1000} {last.tenant_id}"
        return self._tokens.encode(position, scope=_tenants_scope(query))

    def _after_tenant(
        self, token: str, query: filters.Query | None, violations: validation.Violations
    ) -> tuple[object, str] | None:
        """The sort key and tenant id a token continues after; a token of
        another filter or order is refused (its position means nothing here)."""
        if not token or query is None:
            return None
        position = self._tokens.decode(token, scope=_tenants_scope(query))
        key: object = None
        if position is not None and query.order.field != "tenant_id":
            micros, _, position = position.partition(" ")
            key = _from_micros(micros)
            position = position if key is not None else None
        if position is None or not lifecycle.valid_tenant_id(position):
            violations.append(
                ("page_token", "not a token returned by ListTenants for this filter and order_by")
            )
            return None
        return key, position

    def _after_event(self, token: str, tid: str, violations: validation.Violations) -> int:
        if not token:
            return 0
        after = self._tokens.decode(token, scope=_events_scope(tid)) if tid else None
        if after is None or not (after.isascii() and after.isdigit()) or len(after) > 18:
            violations.append(("page_token", "not a token returned by ListTenantEvents for this tenant"))
            return 0
        return int(after)

    # -- reading a tenant ---------------------------------------------------

    @staticmethod
    def _tenant_id(name: str) -> str:
        violations: validation.Violations = []
        tid = validation.tenant_id_from_name(name, violations)
        if violations:
            raise errors.invalid(violations)
        return tid

    async def _current(self, tid: str, *, exact: bool = False, cached: bool = False) -> tenant_pb2.Tenant:
        """The registry record (with its run's step progress), or the accepted
        spec while the run has not yet written it.

        A settled tenant is the registry's read and nothing else. Only a
        record in a run's state looks at the run (bounded, see runs.Lookups;
        `exact` for requests that change the tenant): for fresher progress,
        and because a run that ended without its last mark shows as failed.
        `cached` (GetTenant) may answer a settled tenant from the facade's
        memory, which the registry's change notices keep exact.
        """
        record = await (self._changes.record(tid) if cached else self._registry.record(tid))
        if record is None:
            spec = await self._runs.memo(lifecycle.provision_workflow_id(tid), SPEC_MEMO, tenant_pb2.Tenant)
            if not isinstance(spec, tenant_pb2.Tenant):
                raise errors.not_found(tid)
            return _pending(spec)
        if record.tenant.state not in lifecycle.IN_FLIGHT_STATES:
            return record.tenant
        return await self._looked_at(record, exact=exact)

    async def _looked_at(self, record: Record, *, exact: bool) -> tenant_pb2.Tenant:
        tenant = tenant_pb2.Tenant()
        tenant.CopyFrom(record.tenant)  # the record may be shared by concurrent reads
        look = await self._lookups.look(workflow_of(tenant), record.run_id, exact=exact)
        if look is None:
            return tenant  # the registry's view stands
        if look.running:
            if look.progress is not None and look.progress.steps:
                del tenant.steps[:]
                tenant.steps.extend(look.progress.steps)
                set_current_steps(tenant, look.progress.current_steps)
            return tenant
        # The run has ended; its last mark may have come since the read.
        again = await self._registry.record(tenant.tenant_id)
        if again is None:
            return tenant
        if again.tenant.state in lifecycle.IN_FLIGHT_STATES and again.run_id == record.run_id:
            _show_died(again.tenant, look.ended)
        return again.tenant

    async def _after_tail(self, tid: str, workflow_id: str) -> None:
        """A run that has appended its last events (which ends its watchers)
        may be closing still: the next run under its id follows it rather than
        meeting it. A run that has not (one just started by another caller) is met."""
        description = await self._runs.describe(workflow_id)
        if description is None or description.status != WorkflowExecutionStatus.RUNNING:
            return
        record = await self._registry.record(tid)
        if record is not None and record.steps_run_id == description.run_id and record.run_ended:
            await self._runs.ended(workflow_id, wait=SETTLE_WAIT)

    async def _refuse_while_running(self, tid: str, workflow_id: str, what: str) -> None:
        if await self._runs.running(workflow_id):
            raise errors.run_in_progress(
                tid, f"{what} of tenant {tid!r} is under way; retry once it ends", workflow_id
            )


def _raise_if_failed(tid: str, operation: str, ended: Ended | None) -> None:
    """The error of a run that ended badly; nothing for one that succeeded or still runs."""
    if ended is None or not ended.failed:
        return
    if ended.status == WorkflowExecutionStatus.CANCELED:
        raise errors.operation_failed(tid, operation, "", "Cancelled", f"the {operation} run was cancelled")
    raise errors.operation_failed(tid, operation, ended.failed_step, ended.failure_type, ended.message)


def _show_died(tenant: tenant_pb2.Tenant, ended: Ended | None) -> None:
    """A run that ended (terminated, timed out) without its last mark: the
    tenant shows it as failed rather than under way for ever. A DeleteTenant
    (or RetryProvisioning) then starts again."""
    status = ended.status.name if ended and ended.status else "gone"
    reason = f"the run ended ({status}) without recording its outcome" + (
        f": {ended.message}" if ended and ended.message else ""
    )
    tenant.state = _DIED_AS.get(tenant.state, tenant.state)  # type: ignore[assignment]
    if tenant.state in (State.STATE_PROVISION_FAILED, State.STATE_DEPROVISION_FAILED):
        tenant.failed_step = ended.failed_step if ended else ""
        tenant.failure_reason = reason
    tenant.last_operation.outcome = Operation.OUTCOME_FAILED
    tenant.last_operation.failure_reason = reason
    errors.set_operation_error(tenant.tenant_id, tenant.last_operation)


def _watched(feed: TenantFeed, spec: tenant_pb2.Tenant | None) -> tenant_pb2.Tenant:
    """What a watcher of the feed sees: the record, or the spec until the record comes."""
    if feed.record is None:
        assert spec is not None, "a watch starts with a record or a spec"
        return _pending(spec)
    tenant = tenant_pb2.Tenant()
    tenant.CopyFrom(feed.record.tenant)
    if feed.closed is not None and tenant.state in lifecycle.IN_FLIGHT_STATES:
        _show_died(tenant, feed.closed)
    return tenant


async def _record_written(feed: TenantFeed, within: float) -> None:
    """Waits until the feed has the tenant's record, for at most `within` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while feed.record is None and (left := deadline - loop.time()) > 0:
        await feed.changed(feed.version, left)


def _pending(spec: tenant_pb2.Tenant) -> tenant_pb2.Tenant:
    """The accepted spec as a tenant whose run has not written the registry yet."""
    tenant = tenant_pb2.Tenant()
    tenant.CopyFrom(spec)
    tenant.name = lifecycle.tenant_name(spec.tenant_id)
    tenant.state = State.STATE_PENDING
    return tenant


# A token is bound to its rpc and, for events, to the tenant, for tenants to
# the filter and order: one list's position means nothing in another.
_TENANTS_SCOPE = "ListTenants"


def _tenants_scope(query: filters.Query) -> str:
    # The unfiltered list in id order keeps the scope of the tokens made before filters.
    return _TENANTS_SCOPE if query == filters.DEFAULT_QUERY else f"{_TENANTS_SCOPE}?{query.canonical()}"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _from_micros(text: str) -> datetime | None:
    if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 20:
        return None
    try:
        return EPOCH + timedelta(microseconds=int(text))
    except OverflowError:
        return None


def _events_scope(tenant_id: str) -> str:
    return f"ListTenantEvents/{tenant_id}"
