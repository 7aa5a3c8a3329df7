"""Step bookkeeping shared by the lifecycle workflows: progress for the
query, the audit events of each step, and the saga that undoes what a
failed or cancelled run started.

Saga rules (runs started since FAILURE_PROOF_PATCH):
- A step's undo is owed from the moment the step starts: an activity may do
  its work and then fail, time out or lose its worker before it reports.
  Undos are idempotent, so undoing what never happened succeeds.
- On a failure or a cancel, every started step is undone, latest started
  first, also when several were in flight.
- Compensation never stops at a failed undo: each is retried with backoff
  (plan.COMPENSATION_STEP); one that fails for good is marked
  COMPENSATION_FAILED, the others still run, and what it may have left is
  returned as leftover resources.
- A cancel that arrives while a step is finishing is not lost: the step's
  result is kept (its undo is owed already) and the run unwinds.

Runs started before the patch replay as they ran: an undo owed once its step
completed (or was cancelled), compensation stopping at the first failed undo.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError

from libs import metrics, search
from libs.contracts import Rpc, StepOptions, execute
from libs.errors import ErrorType
from orchestrator.audit import AuditLog
from orchestrator.plan import STEPS, Step
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2

# Every change of this behaviour: undo owed from the start, a
# compensation that never stops, failed runs that say so, claims and the
# cancel update. Runs started before it replay as they ran.
FAILURE_PROOF_PATCH = "failure-proof-runs-v1"
# Runs since it keep their search attributes (libs/search.py) up to date as
# the tenant's state changes: each change is an upsert command.
SEARCH_ATTRIBUTES_PATCH = "search-attributes-v1"

Status = tenant_pb2.StepStatus
Kind = tenant_pb2.TenantEvent.Kind
# The audit event each step status is recorded as (pending and skipped are not).
_EVENT_OF_STATUS = {
    Status.STEP_STATUS_RUNNING: Kind.KIND_STEP_STARTED,
    Status.STEP_STATUS_COMPLETED: Kind.KIND_STEP_COMPLETED,
    Status.STEP_STATUS_FAILED: Kind.KIND_STEP_FAILED,
    Status.STEP_STATUS_COMPENSATED: Kind.KIND_STEP_COMPENSATED,
    Status.STEP_STATUS_COMPENSATION_FAILED: Kind.KIND_STEP_COMPENSATION_FAILED,
}


class StepFailed(Exception):
    """A step failed for good; the run stops starting new steps."""

    def __init__(self, step: str, reason: str, error_type: str = "") -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason
        self.error_type = error_type


class StepSkipped(Exception):
    """A step was not started because another step had failed."""


@dataclass
class _Owed:
    """An undo the run owes: the step, and what it is known to have made."""

    step: Step
    resources: list[tenant_pb2.Resource] = field(default_factory=list)


@dataclass
class LifecycleRun:
    """Tracks one run's steps; deterministic, lives inside a workflow."""

    steps: tuple[str, ...]
    state: int = tenant_pb2.Tenant.STATE_PENDING
    status: dict[str, int] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    failure: StepFailed | None = None
    audit: AuditLog | None = None
    purge_time: datetime | None = None
    # The tenant the undos are built from (set by the workflow).
    tenant: tenant_pb2.Tenant | None = None
    # Runs since FAILURE_PROOF_PATCH (see the module doc).
    failure_proof: bool = False
    # Who asked for a cancel the run accepted (the `cancel` update).
    cancelled_by: str | None = None
    _undo: list[_Owed] = field(default_factory=list)
    # Whether this run keeps its search attributes (SEARCH_ATTRIBUTES_PATCH); None: not asked yet.
    _indexed: bool | None = None

    def __post_init__(self) -> None:
        self.status = {s: Status.STEP_STATUS_PENDING for s in self.steps}

    # -- steps ----------------------------------------------------------------

    def cancel_pending(self) -> bool:
        """A cancel was accepted or requested and the run has not unwound yet."""
        return self.failure_proof and (
            self.cancelled_by is not None or workflow.cancellation_reason() is not None
        )

    async def step(self, name: str, request: Message) -> Any:
        """Runs one forward step of STEPS, owing its undo (see the module doc)."""
        spec = STEPS[name]
        if self.cancel_pending():
            self.status[name] = Status.STEP_STATUS_SKIPPED
            raise asyncio.CancelledError(f"{name} not started: the run is cancelled")
        if self.failure is not None:
            self.status[name] = Status.STEP_STATUS_SKIPPED
            raise StepSkipped(name)
        self._set(name, Status.STEP_STATUS_RUNNING, urgent=_long(spec))
        if self.failure_proof and spec.undo is not None:
            self._owe(spec)
        try:
            result = await self._timed(name, spec.rpc, request, spec.options)
        except asyncio.CancelledError:
            # The run was cancelled while this step ran; the activity may have
            # done its work before it stopped, so its undo runs too.
            self._set(name, Status.STEP_STATUS_FAILED, "cancelled")
            if not self.failure_proof and spec.undo is not None:
                self._owe(spec)
            raise
        except ActivityError as err:
            if self.cancel_pending() and isinstance(err.cause, CancelledError):
                # The activity stopped on the run's cancel (at a heartbeat): the
                # run unwinds as cancelled, with this step's undo owed.
                self._set(name, Status.STEP_STATUS_FAILED, "cancelled")
                raise asyncio.CancelledError(f"{name} cancelled") from err
            failure = StepFailed(name, describe(err), error_type(err))
            self._set(name, Status.STEP_STATUS_FAILED, failure.reason)
            self.failure = self.failure or failure
            raise failure from err
        self._set(name, Status.STEP_STATUS_COMPLETED)
        if not self.failure_proof and spec.undo is not None:
            self._owe(spec)
        if self.cancel_pending():
            # The cancel came while the step finished: keep its result (the
            # undo is owed) and unwind.
            raise asyncio.CancelledError(f"cancelled while {name} finished")
        return result

    def made(self, name: str, resource: tenant_pb2.Resource) -> None:
        """Notes what a completed step made, for the leftovers its failed undo would leave."""
        for owed in self._undo:
            if owed.step.name == name:
                owed.resources.append(resource)

    async def best_effort(self, name: str, request: Message) -> None:
        """Runs a step whose failure is recorded but never fails the run."""
        spec = STEPS[name]
        self._track(name, Status.STEP_STATUS_RUNNING)
        try:
            await self._timed(name, spec.rpc, request, spec.options)
        except ActivityError as err:
            self._track(name, Status.STEP_STATUS_FAILED, describe(err))
            workflow.logger.warning("%s failed and is not retried further: %s", name, self.errors[name])
        else:
            self._track(name, Status.STEP_STATUS_COMPLETED)

    async def cleanup(self, name: str, request: Message) -> Any:
        """Runs a step that must finish: no undo, no skipping after a failure.

        A failure is raised as the ActivityError; in failure-proof runs it is
        also kept as the run's failure (the first one), for the mark that
        says where the run stopped.
        """
        spec = STEPS[name]
        self._track(name, Status.STEP_STATUS_RUNNING, urgent=_long(spec))
        try:
            result = await self._timed(name, spec.rpc, request, spec.options)
        except ActivityError as err:
            self._track(name, Status.STEP_STATUS_FAILED, describe(err))
            if self.failure_proof:
                self.failure = self.failure or StepFailed(name, describe(err), error_type(err))
            raise
        self._track(name, Status.STEP_STATUS_COMPLETED)
        return result

    async def _timed(self, name: str, rpc: Rpc, request: Message, options: StepOptions) -> Any:
        """`execute`, with the step's duration and failure recorded (libs/metrics.py)."""
        began = workflow.now()
        outcome, kind = metrics.COMPLETED, ""
        try:
            return await execute(rpc, request, options, step=name)
        except ActivityError as err:
            kind = error_type(err)
            outcome = metrics.CANCELLED if kind == ErrorType.CANCELLED else metrics.FAILED
            raise
        except asyncio.CancelledError:
            outcome = metrics.CANCELLED
            raise
        finally:
            metrics.step_finished(name, (workflow.now() - began).total_seconds(), outcome, kind)

    # -- the saga -------------------------------------------------------------

    def _owe(self, spec: Step) -> None:
        self._undo.append(_Owed(spec))

    def owe_again(self, leftovers: list[tenant_pb2.LeftoverResource]) -> None:
        """Owes again the undos of the steps that `leftovers` (latest started
        first, as compensate() returns them) name, for a clean-up run."""
        by_step: dict[str, _Owed] = {}
        for left in reversed(leftovers):
            owed = by_step.get(left.step)
            if owed is None:
                spec = STEPS.get(left.step)
                if spec is None or spec.undo is None:
                    workflow.logger.warning("no undo is known for step %r; skipped", left.step)
                    continue
                owed = by_step[left.step] = _Owed(spec)
                self._undo.append(owed)
            if left.id:
                owed.resources.append(tenant_pb2.Resource(kind=left.kind, id=left.id, domain=left.domain))

    @property
    def owed(self) -> list[str]:
        """The steps whose undo is owed, in the order they started."""
        return [o.step.name for o in self._undo]

    async def compensate(self) -> list[tenant_pb2.LeftoverResource]:
        """Undoes every owed step, latest first; returns what could not be removed.

        Runs before FAILURE_PROOF_PATCH stop at the first undo that fails
        (the ActivityError propagates), as they did.
        """
        assert self.tenant is not None, "set the run's tenant before compensating"
        leftovers: list[tenant_pb2.LeftoverResource] = []
        while self._undo:
            owed = self._undo.pop()
            undo = owed.step.undo
            assert undo is not None
            name = owed.step.name
            if not self.failure_proof:
                await execute(undo.rpc, undo.request(self.tenant), _LEGACY_UNDO_OPTIONS, step=name, undo=True)
                metrics.compensated(name, undone=True)
                self._set(name, Status.STEP_STATUS_COMPENSATED)
                continue
            try:
                await execute(undo.rpc, undo.request(self.tenant), undo.options, step=name, undo=True)
            except ActivityError as err:
                reason = describe(err)
                self._set(name, Status.STEP_STATUS_COMPENSATION_FAILED, reason)
                left = leftovers_of(owed.step, owed.resources, reason)
                metrics.compensated(name, undone=False)
                metrics.left_over(name, undo.kind, len(left))
                leftovers += left
                workflow.logger.warning("undo of %s failed for good: %s", name, reason)
                continue
            metrics.compensated(name, undone=True)
            if self.status.get(name) == Status.STEP_STATUS_FAILED:
                # The failed step keeps showing FAILED (and why); its undo is in the audit log.
                if self.audit is not None:
                    self.audit.record(Kind.KIND_STEP_COMPENSATED, step=name)
            else:
                self._set(name, Status.STEP_STATUS_COMPENSATED)
        return leftovers

    # -- progress and audit ---------------------------------------------------

    def reset(self, steps: tuple[str, ...]) -> None:
        """Shows `steps` as the run's plan, before any step has run."""
        self.steps = steps
        self.status = {s: Status.STEP_STATUS_PENDING for s in steps}

    def replan(self, steps: tuple[str, ...]) -> None:
        """Shows `steps` as the run's plan, keeping what has happened so far;
        a step of the plan shown before that is still pending and not in
        `steps` (a first plan from the tier the caller saw) is dropped."""
        dropped = {
            s for s in self.steps if s not in steps and self.status.get(s) == Status.STEP_STATUS_PENDING
        }
        for name in dropped:
            del self.status[name]
        self.steps = (*steps, *(s for s in self.steps if s not in steps and s not in dropped))
        for name in steps:
            self.status.setdefault(name, Status.STEP_STATUS_PENDING)

    def _track(
        self, name: str, status: int, error: str = "", *, detail: str = "", urgent: bool = False
    ) -> None:
        # Steps outside the plan (the failure path's) are listed after it.
        if name not in self.status:
            self.steps = (*self.steps, name)
        self._set(name, status, error, detail=detail, urgent=urgent)

    def _set(
        self, name: str, status: int, error: str = "", *, detail: str = "", urgent: bool = False
    ) -> None:
        self.status[name] = status
        if error:
            self.errors[name] = error
        kind = _EVENT_OF_STATUS.get(status)
        if self.audit is not None and kind is not None:
            # A failure is news; so is the start of a step that can take minutes.
            urgent = urgent or status in (Status.STEP_STATUS_FAILED, Status.STEP_STATUS_COMPENSATION_FAILED)
            self.audit.record(kind, step=name, detail=error or detail, urgent=urgent)

    def enter(self, state: int, detail: str = "") -> None:
        """The tenant is now in `state` (its record says so): shown and logged."""
        self.state = state
        if self.audit is not None:
            self.audit.state_changed(state, detail)
        self._index(state)

    def _index(self, state: int) -> None:
        """TenantState (and TenantId, PlanTier if the run started without them) follow the tenant."""
        if self._indexed is None:
            self._indexed = workflow.patched(SEARCH_ATTRIBUTES_PATCH)
        if not self._indexed:
            return
        info = workflow.info()
        changes = search.updates(
            state,
            workflow_id=info.workflow_id,
            tier=self.tenant.plan_tier if self.tenant is not None else 0,
            current=info.typed_search_attributes,
        )
        if changes:
            workflow.upsert_search_attributes(changes)

    def add_steps(self, steps: tuple[str, ...]) -> None:
        """Appends steps the run now will take (a restore, say) as pending."""
        for name in steps:
            if name not in self.status:
                self.steps = (*self.steps, name)
            self.status[name] = Status.STEP_STATUS_PENDING

    def mark(self, name: str, status: int, detail: str = "") -> None:
        """Sets the status of a step that is not an activity (a wait); the
        detail goes to the audit log at once."""
        self._track(name, status, detail=detail, urgent=True)

    def skip_rest(self) -> None:
        for name, status in self.status.items():
            if status == Status.STEP_STATUS_PENDING:
                self.status[name] = Status.STEP_STATUS_SKIPPED

    def progress(self) -> orchestrator_pb2.RunProgress:
        return orchestrator_pb2.RunProgress(
            steps=[
                tenant_pb2.StepProgress(step=s, status=self.status[s], error=self.errors.get(s, ""))  # type: ignore[arg-type]
                for s in self.steps
            ],
            current_steps=[s for s in self.steps if self.status[s] == Status.STEP_STATUS_RUNNING],
            state=self.state,  # type: ignore[arg-type]
            purge_time=_timestamp(self.purge_time),
        )


# The options every undo had before FAILURE_PROOF_PATCH (long, heartbeating, without limit).
_LEGACY_UNDO_OPTIONS = STEPS["delete_bucket"].options


def leftovers_of(
    step: Step, made: list[tenant_pb2.Resource], reason: str
) -> list[tenant_pb2.LeftoverResource]:
    """What a step whose undo failed may have left: what it is known to have
    made, or one resource of its kind with an unknown id."""
    undo = step.undo
    assert undo is not None
    ids = [r.id for r in made if r.kind == undo.kind] or [""]
    return [
        tenant_pb2.LeftoverResource(step=step.name, kind=undo.kind, id=i, domain=undo.domain, reason=reason)
        for i in ids
    ]


def _long(spec: Step) -> bool:
    """Steps that can take minutes: their start goes to the audit log at once."""
    return spec.options.start_to_close.total_seconds() > 60


def describe(err: ActivityError) -> str:
    """A readable reason for a failed activity, from its cause's message."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    if isinstance(cause, TimeoutError):
        return f"timed out ({cause.type.name.lower() if cause.type else 'timeout'})"
    return str(cause or err)


def error_type(err: ActivityError) -> str:
    """The failure's type in the shared vocabulary (ApplicationError.type, Timeout, Cancelled)."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.type or type(cause).__name__
    if isinstance(cause, TimeoutError):
        return str(ErrorType.TIMEOUT)
    if isinstance(cause, CancelledError):
        return str(ErrorType.CANCELLED)
    return type(cause or err).__name__


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp
