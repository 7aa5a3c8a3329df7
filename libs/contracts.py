"""Temporal wiring read from the proto contracts, the one place it is named.

Each domain's activities are a proto `service`; its task queue is the
`tenantry.options.v1.task_queue` service option and each activity's name is
the rpc's full name (`tenantry.idp.v1.IdentityActivities.CreateRealm`).
Workers bind implementations with `bind_activities`; workflows call
activities with `execute`, so neither side can name anything undeclared.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType

from libs import logs
from tenantry.idp.v1 import idp_pb2
from tenantry.infra.v1 import infra_pb2
from tenantry.notification.v1 import notification_pb2
from tenantry.options.v1 import options_pb2
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenantdb.v1 import tenantdb_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rpc:
    """One declared rpc: a Temporal activity or workflow."""

    name: str
    method: str
    task_queue: str
    input_type: type[Message]
    output_type: type[Message]

    @property
    def python_name(self) -> str:
        """The implementing method's name: `CreateRealm` -> `create_realm`."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.method).lower()


@dataclass(frozen=True)
class Contract:
    """A proto service read as a set of Temporal activities or workflows."""

    service: str
    task_queue: str
    rpcs: Mapping[str, Rpc]

    def rpc(self, method: str) -> Rpc:
        try:
            return self.rpcs[method]
        except KeyError:
            raise KeyError(f"{self.service} declares no rpc {method!r}") from None


def contract(descriptor: ServiceDescriptor) -> Contract:
    queue = descriptor.GetOptions().Extensions[options_pb2.task_queue]
    if not queue:
        raise ValueError(f"{descriptor.full_name} declares no tenantry.options.v1.task_queue")
    rpcs = {
        m.name: Rpc(
            name=m.full_name,
            method=m.name,
            task_queue=queue,
            input_type=GetMessageClass(m.input_type),
            output_type=GetMessageClass(m.output_type),
        )
        for m in descriptor.methods
    }
    return Contract(service=descriptor.full_name, task_queue=queue, rpcs=rpcs)


IDENTITY = contract(idp_pb2.DESCRIPTOR.services_by_name["IdentityActivities"])
INFRASTRUCTURE = contract(infra_pb2.DESCRIPTOR.services_by_name["InfrastructureActivities"])
NOTIFICATION = contract(notification_pb2.DESCRIPTOR.services_by_name["NotificationActivities"])
TENANT_DATA = contract(tenantdb_pb2.DESCRIPTOR.services_by_name["TenantDataActivities"])
WORKFLOWS = contract(orchestrator_pb2.DESCRIPTOR.services_by_name["TenantWorkflows"])
ACTIVITY_CONTRACTS = (IDENTITY, INFRASTRUCTURE, NOTIFICATION, TENANT_DATA)


def bind_activities(declared: Contract, implementation: object) -> list[Callable[..., Any]]:
    """Returns one Temporal activity per declared rpc, bound to `implementation`.

    The implementation has a method per rpc, named in snake case, taking the
    rpc's request and returning its response (sync or async). A missing
    method or a method with other types fails here, at worker start.
    """
    bound = []
    for rpc in declared.rpcs.values():
        method = getattr(implementation, rpc.python_name, None)
        if method is None:
            raise TypeError(f"{type(implementation).__name__} does not implement {rpc.name}")
        hints = inspect.get_annotations(method, eval_str=True)
        params = [p for p in inspect.signature(method).parameters.values()]
        if len(params) != 1 or hints.get(params[0].name) is not rpc.input_type:
            raise TypeError(f"{rpc.name} must take one {rpc.input_type.__name__}")
        if hints.get("return") is not rpc.output_type:
            raise TypeError(f"{rpc.name} must return {rpc.output_type.__name__}")
        bound.append(_activity(rpc, method))
    return bound


# How often every activity heartbeats while it runs, whatever it is doing:
# a worker that dies is then noticed at the step's (short) heartbeat timeout
# instead of its whole start-to-close timeout. The SDK sends at most one
# heartbeat per 0.8 x heartbeat timeout to the server. The first comes after
# this long, not at the start: the heartbeat timeout counts from the start
# too, and most activities end within a second, so they cost the server no
# heartbeat at all.
HEARTBEAT_EVERY = 1.0


def _activity(rpc: Rpc, method: Callable[..., Any]) -> Callable[..., Any]:
    run: Callable[..., Any]
    if inspect.iscoroutinefunction(method):

        async def run(request: Any) -> Any:
            beating = asyncio.create_task(_beat())
            try:
                return await method(request)
            finally:
                beating.cancel()

    else:

        def run(request: Any) -> Any:
            with _beating_thread():
                return method(request)

    run.__annotations__ = {"request": rpc.input_type, "return": rpc.output_type}
    run.__name__ = rpc.python_name
    run.__qualname__ = rpc.name
    return activity.defn(name=rpc.name)(run)


async def _beat() -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY)
        activity.heartbeat()


@contextmanager
def _beating_thread() -> Iterator[None]:
    """Heartbeats from a thread of its own while a sync activity runs in its thread."""
    stop = threading.Event()
    # The activity's context, so that activity.heartbeat() works in the other thread.
    context = contextvars.copy_context()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_EVERY):
            try:
                context.run(activity.heartbeat)
            except Exception as err:  # the worker is stopping: the activity ends with it
                log.debug("heartbeat failed: %s", err)

    thread = threading.Thread(target=beat, name="activity-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


@dataclass(frozen=True)
class StepOptions:
    """Timeouts and retries of one activity call, set once per step kind."""

    start_to_close: timedelta
    schedule_to_close: timedelta | None = None
    heartbeat: timedelta | None = None
    retry: RetryPolicy | None = None


async def execute(
    rpc: Rpc, request: Message, options: StepOptions, *, step: str = "", undo: bool = False
) -> Any:
    """Runs a declared activity on its declared queue from inside a workflow;
    `step` (and `undo`) name the plan step it is, for the worker's log lines
    (a header: it changes no command)."""
    if not isinstance(request, rpc.input_type):
        raise TypeError(f"{rpc.name} takes {rpc.input_type.__name__}, not {type(request).__name__}")
    with logs.calling(step, undo=undo):
        handle = workflow.start_activity(
            rpc.name,
            request,
            task_queue=rpc.task_queue,
            result_type=rpc.output_type,
            start_to_close_timeout=options.start_to_close,
            schedule_to_close_timeout=options.schedule_to_close,
            heartbeat_timeout=options.heartbeat,
            retry_policy=options.retry,
            # On a cancelled run, wait until the activity has really stopped (or
            # finished): only then can its effect be undone without a race.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
    return await handle
