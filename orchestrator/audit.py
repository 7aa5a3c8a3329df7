"""The audit log as a lifecycle run writes it: events are stamped with
workflow time, numbered within the run, and appended to the registry by the
tenant-data worker in batches, while the run goes on.

Appending is one activity per batch, not per event, and a batch goes out
only when something worth seeing at once has happened: a state change, a
failure, a request, or the start of a step that can take minutes (a
deployment, infrastructure, a backup, the grace period). The rest rides
along with the next batch, and every run appends what is left before it
ends. A pooled provisioning run so costs three appends instead of one per
event. The sequence number makes a retried append harmless.

Each append also carries the run's step progress, which the tenant-data
worker keeps on the tenant's record: reads and watchers see where a run
stands without asking the workflow (a query is a workflow task on this
worker's queue). The run's last append says the run has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio import workflow

from libs.contracts import TENANT_DATA, execute
from orchestrator.plan import EVENT_STEP
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2
from tenantry.tenantdb.v1 import tenantdb_pb2

Kind = tenant_pb2.TenantEvent.Kind

# Runs recorded before the audit log existed replay without it.
AUDIT_PATCH = "audit-log-v1"
# Runs since this one end with an append that says so, even with no event left to append.
RUN_ENDED_PATCH = "run-steps-v1"
# Runs since this one that start on a record already there (deletion, suspend,
# resume, clean-up) append their opening request before their first step.
RUN_OPENED_PATCH = "run-opened-v1"


class AuditLog:
    """Collects one run's events and appends them to the tenant's log."""

    def __init__(
        self,
        tenant_id: str,
        actor: str,
        *,
        enabled: bool,
        progress: Callable[[], orchestrator_pb2.RunProgress] | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.actor = actor
        self.enabled = enabled
        self._progress = progress
        self._ending = False  # the run is ending: appends say so
        self._ended_sent = False
        self._sequence = 0
        self._pending: list[tenant_pb2.TenantEvent] = []
        self._wanted = False  # an event recorded since the last append wants out now
        self._appending: asyncio.Task[None] | None = None

    @classmethod
    def for_run(
        cls, tenant_id: str, actor: str, *, progress: Callable[[], orchestrator_pb2.RunProgress] | None = None
    ) -> AuditLog:
        """The run's log; call once, at the start of the run (it may record a
        patch marker). `progress` gives the run's steps for each append."""
        return cls(tenant_id, actor, enabled=workflow.patched(AUDIT_PATCH), progress=progress)

    def record(
        self,
        kind: int,
        *,
        step: str = "",
        state: int = 0,
        detail: str = "",
        actor: str = "",
        urgent: bool = False,
    ) -> None:
        """Records an event; `urgent` appends it (and all pending) now."""
        if not self.enabled:
            return
        self._sequence += 1
        info = workflow.info()
        event = tenant_pb2.TenantEvent(
            kind=kind,  # type: ignore[arg-type]
            step=step,
            state=state,  # type: ignore[arg-type]
            actor=actor or self.actor,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            detail=detail,
            sequence=self._sequence,
        )
        event.time.FromDatetime(workflow.now())
        self._pending.append(event)
        self._wanted = self._wanted or urgent
        self._start_appending()

    def requested(self, operation: str, detail: str = "", *, actor: str = "") -> None:
        # The run's opening request goes out with the first state change.
        self.record(
            Kind.KIND_REQUESTED, step=operation, detail=detail, actor=actor, urgent=self._sequence > 0
        )

    async def opened(self, operation: str, detail: str = "") -> None:
        """Records the run's opening request and, in runs since RUN_OPENED_PATCH,
        appends it (with the run's steps) before the run does anything else:
        from then on the record says a run is under way, so a watcher follows
        it even while its first step is held up (a worker restarting, say)."""
        self.requested(operation, detail)
        if self.enabled and workflow.patched(RUN_OPENED_PATCH):
            await self.flushed()

    def state_changed(self, state: int, detail: str = "") -> None:
        self.record(Kind.KIND_STATE_CHANGED, state=state, detail=detail, urgent=True)

    def _start_appending(self) -> None:
        if self._wanted and self._pending and (self._appending is None or self._appending.done()):
            self._appending = asyncio.create_task(self._append())

    async def _append(self) -> None:
        while self._wanted and self._pending:
            self._wanted = False
            batch, self._pending = self._pending, []
            await self._send(batch)

    async def _send(self, batch: list[tenant_pb2.TenantEvent]) -> None:
        # The progress is taken when the batch goes out: it is at least as new as its events.
        request = tenantdb_pb2.AppendTenantEventsRequest(
            tenant_id=self.tenant_id, events=batch, progress=self._run_steps()
        )
        self._ended_sent = self._ended_sent or self._ending
        await execute(TENANT_DATA.rpc("AppendTenantEvents"), request, EVENT_STEP)

    def _run_steps(self) -> tenantdb_pb2.RunSteps | None:
        if self._progress is None:
            return None
        progress = self._progress()
        info = workflow.info()
        return tenantdb_pb2.RunSteps(
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            sequence=self._sequence,
            steps=progress.steps,
            current_steps=progress.current_steps,
            ended=self._ending,
        )

    async def flushed(self, *, final: bool = False) -> None:
        """Appends what is pending and waits until every event recorded so far
        is in the registry; `final` at the end of the run, whose last append
        then says the run has ended."""
        self._ending = self._ending or final
        self._wanted = True
        self._start_appending()
        while self._appending is not None and not self._appending.done():
            await asyncio.shield(self._appending)
            self._wanted = True
            self._start_appending()
        if self._appending is not None:
            self._appending.result()  # surface a failure rather than lose events
        if final and self.enabled and not self._ended_sent and workflow.patched(RUN_ENDED_PATCH):
            await self._send([])
