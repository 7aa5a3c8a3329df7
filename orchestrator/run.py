"""Step bookkeeping shared by the lifecycle workflows: progress for the
query, and the saga that undoes completed steps in reverse order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

from libs.contracts import Rpc, StepOptions, execute
from orchestrator.audit import AuditLog
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2

Status = tenant_pb2.StepStatus
Kind = tenant_pb2.TenantEvent.Kind
# The audit event each step status is recorded as (pending and skipped are not).
_EVENT_OF_STATUS = {
    Status.STEP_STATUS_RUNNING: Kind.KIND_STEP_STARTED,
    Status.STEP_STATUS_COMPLETED: Kind.KIND_STEP_COMPLETED,
    Status.STEP_STATUS_FAILED: Kind.KIND_STEP_FAILED,
    Status.STEP_STATUS_COMPENSATED: Kind.KIND_STEP_COMPENSATED,
}


class StepFailed(Exception):
    """A step failed for good; the run stops starting new steps."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


class StepSkipped(Exception):
    """A step was not started because another step had failed."""


@dataclass
class _Undo:
    step: str
    rpc: Rpc
    request: Message


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
    _undo: list[_Undo] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.status = {s: Status.STEP_STATUS_PENDING for s in self.steps}

    async def step(
        self,
        name: str,
        rpc: Rpc,
        request: Message,
        options: StepOptions,
        *,
        undo: tuple[Rpc, Message] | None = None,
    ) -> Any:
        """Runs one step; records its undo once it has completed."""
        if self.failure is not None:
            self.status[name] = Status.STEP_STATUS_SKIPPED
            raise StepSkipped(name)
        self._set(name, Status.STEP_STATUS_RUNNING, urgent=_long(options))
        try:
            result = await execute(rpc, request, options)
        except asyncio.CancelledError:
            # The run was cancelled while this step ran; the activity may have
            # done its work before it stopped, so its undo runs too (undos are
            # idempotent: undoing what was never done is harmless).
            self._set(name, Status.STEP_STATUS_FAILED, "cancelled")
            if undo is not None:
                self._undo.append(_Undo(name, *undo))
            raise
        except ActivityError as err:
            reason = describe(err)
            self._set(name, Status.STEP_STATUS_FAILED, reason)
            failure = StepFailed(name, reason)
            self.failure = self.failure or failure
            raise failure from err
        self._set(name, Status.STEP_STATUS_COMPLETED)
        if undo is not None:
            self._undo.append(_Undo(name, *undo))
        return result

    async def best_effort(self, name: str, rpc: Rpc, request: Message, options: StepOptions) -> None:
        """Runs a step whose failure is recorded but never fails the run."""
        self._track(name, Status.STEP_STATUS_RUNNING)
        try:
            await execute(rpc, request, options)
        except ActivityError as err:
            self._track(name, Status.STEP_STATUS_FAILED, describe(err))
            workflow.logger.warning("%s failed and is not retried further: %s", name, self.errors[name])
        else:
            self._track(name, Status.STEP_STATUS_COMPLETED)

    async def cleanup(self, name: str, rpc: Rpc, request: Message, options: StepOptions) -> Any:
        """Runs a step that must finish: no undo, no skipping after a failure."""
        self._track(name, Status.STEP_STATUS_RUNNING, urgent=_long(options))
        try:
            result = await execute(rpc, request, options)
        except ActivityError as err:
            self._track(name, Status.STEP_STATUS_FAILED, describe(err))
            raise
        self._track(name, Status.STEP_STATUS_COMPLETED)
        return result

    def replan(self, steps: tuple[str, ...]) -> None:
        """Shows `steps` as the run's plan, keeping what has happened so far."""
        self.steps = (*steps, *(s for s in self.steps if s not in steps))
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
            urgent = urgent or status == Status.STEP_STATUS_FAILED
            self.audit.record(kind, step=name, detail=error or detail, urgent=urgent)

    def enter(self, state: int, detail: str = "") -> None:
        """The tenant is now in `state` (its record says so): shown and logged."""
        self.state = state
        if self.audit is not None:
            self.audit.state_changed(state, detail)

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

    async def compensate(self, options: StepOptions) -> list[str]:
        """Undoes every completed step, last completed first; returns their names."""
        undone = []
        while self._undo:
            undo = self._undo.pop()
            await execute(undo.rpc, undo.request, options)
            self._set(undo.step, Status.STEP_STATUS_COMPENSATED)
            undone.append(undo.step)
        return undone

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


def _long(options: StepOptions) -> bool:
    """Steps that heartbeat are the ones that can take minutes."""
    return options.heartbeat is not None


def describe(err: ActivityError) -> str:
    """A readable reason for a failed activity, from its cause's message."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    if isinstance(cause, TimeoutError):
        return f"timed out ({cause.type.name.lower() if cause.type else 'timeout'})"
    return str(cause or err)


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp
