"""The facade's gateway to Temporal: starting, meeting, updating and reading
the lifecycle runs of a tenant. Handlers (servicer.py) speak in tenants and
API errors; this module speaks in workflow ids, runs and their outcomes, and
turns Temporal's errors into API errors once, here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from google.protobuf.message import Message
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from libs import lifecycle, search
from libs.contracts import Rpc
from services.tenant_api import errors
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2

log = logging.getLogger(__name__)
State = tenant_pb2.Tenant.State
Operation = tenant_pb2.Operation

# Every Temporal call on a request path has a deadline: a frozen server is
# an UNAVAILABLE answer, not a hung call.
RPC_TIMEOUT = timedelta(seconds=5)
QUERY_TIMEOUT = timedelta(seconds=2)
# How long a read waits for a look at a run under way before it answers from the registry.
LOOK_TIMEOUT = 1.0
# Suspend, resume, undelete and clean-up answer once their run has ended, if
# it ends this soon; a deletion and a retry once their run has taken the tenant over.
SETTLE_WAIT = 15.0

# The workflow of each kind of run, and the kind that owns each in-flight state.
_WORKFLOW_OF_KIND = {
    Operation.KIND_PROVISION: lifecycle.provision_workflow_id,
    Operation.KIND_CLEAN_UP: lifecycle.provision_workflow_id,
    Operation.KIND_DEPROVISION: lifecycle.deprovision_workflow_id,
    Operation.KIND_UNDELETE: lifecycle.deprovision_workflow_id,
    Operation.KIND_SUSPEND: lifecycle.access_workflow_id,
    Operation.KIND_RESUME: lifecycle.access_workflow_id,
}
_KIND_OF_STATE = {
    State.STATE_PENDING: Operation.KIND_PROVISION,
    State.STATE_PROVISIONING: Operation.KIND_PROVISION,
    State.STATE_PROVISION_FAILED: Operation.KIND_PROVISION,
    State.STATE_DEPROVISIONING: Operation.KIND_DEPROVISION,
    State.STATE_DEPROVISION_FAILED: Operation.KIND_DEPROVISION,
    State.STATE_DEPROVISIONED: Operation.KIND_DEPROVISION,
    State.STATE_SUSPENDING: Operation.KIND_SUSPEND,
    State.STATE_RESUMING: Operation.KIND_RESUME,
}


def workflow_of(tenant: tenant_pb2.Tenant) -> str:
    """The workflow id of the tenant's run under way, or of its last run."""
    kind = _KIND_OF_STATE.get(tenant.state) or tenant.last_operation.kind or Operation.KIND_PROVISION
    return _WORKFLOW_OF_KIND.get(kind, lifecycle.provision_workflow_id)(tenant.tenant_id)


@dataclass(frozen=True)
class Ended:
    """How a run ended: its status, and the failure's type and message when it failed."""

    status: WorkflowExecutionStatus | None
    failure_type: str = ""
    message: str = ""
    failed_step: str = ""

    @property
    def failed(self) -> bool:
        return self.status is not None and self.status != WorkflowExecutionStatus.COMPLETED


class Runs:
    """Lifecycle runs of tenants, on one Temporal client."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def handle(self, workflow_id: str, run_id: str | None = None) -> WorkflowHandle:
        return self._client.get_workflow_handle(workflow_id, run_id=run_id)

    async def start(
        self,
        rpc: Rpc,
        request: Message,
        workflow_id: str,
        *,
        reuse: WorkflowIDReusePolicy,
        execution_timeout: timedelta,
        memo: dict[str, object] | None = None,
    ) -> WorkflowHandle:
        """Starts the run, or meets the one under way under that id (USE_EXISTING:
        concurrent identical calls meet one run)."""
        try:
            return await self._client.start_workflow(
                rpc.name,
                request,
                id=workflow_id,
                task_queue=rpc.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=reuse,
                memo=memo,
                search_attributes=search.at_start(workflow_id, request),
                execution_timeout=execution_timeout,
                rpc_timeout=RPC_TIMEOUT,
            )
        except WorkflowAlreadyStartedError:
            # A closed run that may not be followed by another (REJECT_DUPLICATE).
            return self.handle(workflow_id)
        except RPCError as err:
            log.warning("starting %s failed: %s", workflow_id, err.status)
            raise errors.unavailable("temporal") from None

    @staticmethod
    def started_now(handle: WorkflowHandle) -> bool:
        """The start made this run (rather than meeting one under way): the
        server says so in its answer, which the SDK keeps on the handle (not a
        public attribute: without it, False, and the caller asks Temporal)."""
        response = getattr(handle, "_start_workflow_response", None)
        return bool(getattr(response, "started", False))

    async def describe(
        self, workflow_id: str, run_id: str | None = None
    ) -> WorkflowExecutionDescription | None:
        """The latest run under the id (or that run); None when there is none."""
        try:
            return await self.handle(workflow_id, run_id).describe(rpc_timeout=RPC_TIMEOUT)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise errors.unavailable("temporal") from None

    async def running(self, workflow_id: str) -> bool:
        description = await self.describe(workflow_id)
        return description is not None and description.status == WorkflowExecutionStatus.RUNNING

    async def workflow_type(self, handle: WorkflowHandle) -> str:
        description = await self.describe(handle.id)
        return description.workflow_type if description else ""

    async def memo(self, workflow_id: str, key: str, kind: type) -> object | None:
        description = await self.describe(workflow_id)
        if description is None:
            return None
        return await description.memo_value(key, None, type_hint=kind)

    async def progress(self, workflow_id: str) -> orchestrator_pb2.RunProgress | None:
        """The run's step progress; None when it cannot be read now (a nicety, never an error)."""
        try:
            return await self.handle(workflow_id).query(
                lifecycle.PROGRESS_QUERY, result_type=orchestrator_pb2.RunProgress, rpc_timeout=QUERY_TIMEOUT
            )
        except Exception as err:  # the record stands without it
            log.debug("progress of %s unavailable: %s", workflow_id, err)
            return None

    async def ended(self, workflow_id: str, *, wait: float = 0.0) -> Ended | None:
        """How the latest run under the id ended, after waiting up to `wait` s
        for it; None while it runs, or when there is no run."""
        handle = self.handle(workflow_id)
        if wait > 0:
            try:
                await asyncio.wait_for(handle.result(follow_runs=False), wait)
            except (TimeoutError, WorkflowFailureError):
                pass
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise errors.unavailable("temporal") from None
        description = await self.describe(workflow_id)
        if description is None or description.status in (None, WorkflowExecutionStatus.RUNNING):
            return None
        if description.status == WorkflowExecutionStatus.COMPLETED:
            return Ended(description.status)
        try:
            await handle.result(follow_runs=False, rpc_timeout=RPC_TIMEOUT)
        except WorkflowFailureError as err:
            return _failure(description.status, err.cause)
        except RPCError:
            raise errors.unavailable("temporal") from None
        return Ended(description.status)

    async def closed_since(self, since: datetime) -> list[tuple[str, str]]:
        """(workflow id, run id) of the lifecycle runs that closed since `since`: one visibility query."""
        query = f"ExecutionStatus != 'Running' AND CloseTime >= '{since.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'"
        try:
            return [
                (execution.id, execution.run_id)
                async for execution in self._client.list_workflows(
                    query, limit=10_000, rpc_timeout=RPC_TIMEOUT
                )
                if execution.id.startswith(lifecycle.TENANT_WORKFLOW_PREFIX)
            ]
        except RPCError as err:
            log.debug("listing closed runs failed: %s", err.status)
            raise errors.unavailable("temporal") from None

    async def update(
        self,
        tid: str,
        workflow_id: str,
        update: str,
        argument: Message,
        result_type: type[Message],
        *,
        state: int,
        wait: float | None = None,
    ) -> Message | None:
        """Sends an update to the run under way and waits for its answer (up
        to `wait` s, then None: the run goes on). A refusal is the tenant's
        `state` (FAILED_PRECONDITION); a run that has ended is FAILED_PRECONDITION too."""
        handle = self.handle(workflow_id)
        try:
            started = await handle.start_update(
                update,
                argument,
                result_type=result_type,
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                rpc_timeout=RPC_TIMEOUT,
            )
            if wait is None:
                return await started.result(rpc_timeout=RPC_TIMEOUT)
            return await asyncio.wait_for(started.result(), wait)
        except TimeoutError:
            return None
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            # The run did not take the update in time (its worker is away): retry later.
            log.warning("%s of %s was not accepted in time", update, workflow_id)
            raise errors.unavailable("temporal") from None
        except WorkflowUpdateFailedError as err:
            raise _update_refused(tid, err.cause, state) from None
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                raise errors.failed_precondition(
                    tid, f"tenant {tid!r}: the run has just ended", State.Name(state)
                ) from None
            log.warning("%s of %s failed: %s", update, workflow_id, err.status)
            raise errors.unavailable("temporal") from None

    async def cancel(self, workflow_id: str) -> None:
        """Temporal's cancel of the run (its in-flight activities stop at their next heartbeat)."""
        try:
            await self.handle(workflow_id).cancel(rpc_timeout=RPC_TIMEOUT)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                log.warning("cancelling %s failed: %s", workflow_id, err.status)
                raise errors.unavailable("temporal") from None


def _failure(status: WorkflowExecutionStatus | None, cause: BaseException | None) -> Ended:
    """A run's failure: the type and step its ApplicationError carries."""
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    if not isinstance(cause, ApplicationError):
        return Ended(status or WorkflowExecutionStatus.FAILED)
    # A failed step's own type (Conflict, Timeout, ...) says more than the run's (SuspendFailed).
    details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
    return Ended(
        status or WorkflowExecutionStatus.FAILED,
        failure_type=str(details.get("failure_type") or cause.type or ""),
        message=cause.message,
        failed_step=str(details.get("failed_step", "")),
    )


def _update_refused(tid: str, cause: BaseException | None, state: int) -> errors.ApiError:
    """An update the run refused (its validator) or that failed (an undelete's restore)."""
    if isinstance(cause, ApplicationError) and cause.type == lifecycle.UPDATE_REFUSED:
        return errors.failed_precondition(tid, f"tenant {tid!r}: {cause.message}", State.Name(state))
    ended = _failure(WorkflowExecutionStatus.FAILED, cause)
    return errors.operation_failed(tid, "undelete", ended.failed_step, ended.failure_type, ended.message)


@dataclass(frozen=True)
class Look:
    """What Temporal says of a tenant's run under way: whether it still runs,
    its step progress (when it runs and answered), how it ended (when not)."""

    running: bool
    progress: orchestrator_pb2.RunProgress | None = None
    ended: Ended | None = None


class Lookups:
    """Bounded looks at runs under way, for reads of tenants in a run's state.

    Reads of settled tenants never come here. A look is a describe and, for
    a run that still runs, a progress query (a workflow task on the
    orchestrator's queue), so they are bounded: one per workflow at a time,
    shared by concurrent callers, kept for `ttl` seconds, at most
    `concurrency` at once and `per_second` on average. Beyond the bounds, or
    when Temporal does not answer, the caller keeps the registry's view (the
    steps of the run's last append), which is never an error.
    """

    def __init__(
        self,
        runs: Runs,
        *,
        ttl: float = 1.0,
        concurrency: int = 4,
        per_second: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runs = runs
        self._ttl = ttl
        self._concurrency = concurrency
        self._running = 0
        self._rate = per_second
        # A second's worth of looks may come at once.
        self._burst = max(1.0, per_second)
        self._tokens = self._burst
        self._refilled = clock()
        self._clock = clock
        self._kept: dict[str, tuple[float, Look]] = {}
        self._asking: dict[str, asyncio.Future[Look | None]] = {}
        # asked, kept (answered from what was kept), shared, shed, looked, failed.
        self.counts: Counter[str] = Counter()

    async def look(self, workflow_id: str, run_id: str = "", *, exact: bool = False) -> Look | None:
        """The run's look (that of `run_id`, the run that marked the record,
        when given); None when it cannot be had now. `exact` (for requests that
        change the tenant) asks Temporal whatever the bounds."""
        self.counts["asked"] += 1
        if exact:
            return await self._look(workflow_id, run_id)
        now = self._clock()
        key = f"{workflow_id}/{run_id}"
        kept = self._kept.get(key)
        if kept is not None and now - kept[0] < self._ttl:
            self.counts["kept"] += 1
            return kept[1]
        asking = self._asking.get(key)
        if asking is not None:
            self.counts["shared"] += 1
            return await asyncio.shield(asking)
        if self._running >= self._concurrency or not self._take(now):
            self.counts["shed"] += 1
            return None
        self._running += 1  # counted now: the task starts later
        task = asyncio.ensure_future(self._bounded(key, workflow_id, run_id))
        self._asking[key] = task
        task.add_done_callback(lambda _: self._asking.pop(key, None))
        return await asyncio.shield(task)

    def _take(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def _bounded(self, key: str, workflow_id: str, run_id: str) -> Look | None:
        try:
            # A read does not wait long for what is a nicety to it.
            look = await asyncio.wait_for(self._look(workflow_id, run_id), LOOK_TIMEOUT)
        except TimeoutError:
            self.counts["failed"] += 1
            look = None
        finally:
            self._running -= 1
        if look is not None:
            if len(self._kept) > 4096:
                horizon = self._clock() - self._ttl
                self._kept = {k: v for k, v in self._kept.items() if v[0] > horizon}
            self._kept[key] = (self._clock(), look)
        return look

    async def _look(self, workflow_id: str, run_id: str) -> Look | None:
        self.counts["looked"] += 1
        try:
            description = await self._runs.describe(workflow_id, run_id or None)
            if description is None:
                return Look(running=False, ended=Ended(None))
            if description.status == WorkflowExecutionStatus.RUNNING:
                return Look(running=True, progress=await self._runs.progress(workflow_id))
            return Look(running=False, ended=await self._runs.ended(workflow_id))
        except errors.ApiError:
            self.counts["failed"] += 1
            return None
