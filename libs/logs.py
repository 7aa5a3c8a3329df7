"""Process-wide logging: one line per event, with what it is about.

Every process logs JSON lines (`TENANTRY_LOG_FORMAT=json`, the default when
stderr is not a terminal) or readable text (`text`, the default on a
terminal). Each line has `time`, `level`, `service` (the process), `logger`
and `message`, and where they exist:

- `tenant_id`, `workflow_id`, `run_id`, `workflow_type`: inside a workflow
  (`workflow.logger`) or an activity, read from the SDK's context, so every
  logger an activity's code uses gets them, not only `activity.logger`;
- `activity`, `step`, `attempt`: inside an activity; `step` is the plan
  step (orchestrator/plan.py) the workflow ran it as, which travels with the
  activity in a header (`StepLog`), and `undo` is true for its compensation;
- `rpc`, `tenant_id`: while the facade handles a call (`bind`);
- `trace_id`, `span_id`: of the current OpenTelemetry span, when the API is
  installed and a span is current;
- whatever a call passes in `extra` (`event`, `duration_ms`, `code`, ...).

No personal data and no secrets: request-level loggers of the HTTP and AWS
clients (which log URLs with admin emails in their query, and bucket and
record names) stay at WARNING, whatever TENANTRY_LOG_LEVEL says.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from temporalio import activity, workflow
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from libs import config
from libs.lifecycle import tenant_of_workflow

try:  # the traces' SDK is optional: without it, lines carry no trace ids
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - depends on the installed packages
    _otel_trace = None  # type: ignore[assignment]

FORMATS = ("auto", "json", "text")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Loggers that log each HTTP request's URL (httpx: Keycloak user look-ups
# carry the admin's email in the query) or object names (botocore).
QUIET = ("botocore", "boto3", "urllib3", "s3transfer", "httpx", "httpcore", "hpack")
# The header in which the orchestrator tells a worker which plan step an activity is.
STEP_HEADER = "tenantry-step"
# Standard LogRecord attributes; anything else on a record came from `extra`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
# Read from the SDK's context (or set by this module); never copied from `extra` twice.
_CONTEXT_FIELDS = (
    "tenant_id",
    "workflow_id",
    "run_id",
    "workflow_type",
    "activity",
    "step",
    "undo",
    "attempt",
    "rpc",
    "trace_id",
    "span_id",
)
_SDK_EXTRAS = frozenset({"temporal_workflow", "temporal_activity", "temporal_log", "activity_info"})


@dataclass(frozen=True)
class StepOf:
    """The plan step an activity runs as (from the orchestrator's header)."""

    step: str
    undo: bool = False


# What a workflow's activity call is, for the header (set around start_activity).
_CALLING: contextvars.ContextVar[StepOf | None] = contextvars.ContextVar("tenantry_calling", default=None)
# The step of the activity running in this context (set by StepLog).
_RUNNING: contextvars.ContextVar[StepOf | None] = contextvars.ContextVar("tenantry_running", default=None)
# The facade call being handled: its fields, and the task that handles it.
_BOUND: contextvars.ContextVar[tuple[asyncio.Task[Any] | None, Mapping[str, Any]] | None] = (
    contextvars.ContextVar("tenantry_bound", default=None)
)


def configure(process: str) -> logging.Logger:
    """Sets up the root logger of a process named `process`; returns its logger."""
    level = os.environ.get("TENANTRY_LOG_LEVEL", "INFO").upper()
    if level not in LEVELS:
        raise config.ConfigError(f"TENANTRY_LOG_LEVEL={level!r} is not one of {', '.join(LEVELS)}")
    chosen = config.choice("TENANTRY_LOG_FORMAT", "auto", FORMATS)
    as_json = chosen == "json" or (chosen == "auto" and not _is_terminal(sys.stderr))
    handler = _LineHandler(sys.stderr.fileno())
    handler.addFilter(_Context())
    handler.setFormatter(JsonFormatter(process) if as_json else TextFormatter(process))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The ids are fields of the line; the SDK would append them to every message too.
    activity.logger.activity_info_on_message = False
    workflow.logger.workflow_info_on_message = False
    logging.captureWarnings(True)
    _log_uncaught(process)
    _forward_core_logs()
    return logging.getLogger(process)


def core_logging() -> LoggingConfig:
    """The SDK core's (Rust) log lines, forwarded to Python logging so they
    are lines like every other. A process that builds its own Temporal
    Runtime (for metrics, say) passes this as TelemetryConfig(logging=...)."""
    return LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )


def _forward_core_logs() -> None:
    # Only if no client or worker has made the default runtime yet (the
    # first call wins; a later Runtime of the process must use core_logging()).
    try:
        Runtime.set_default(Runtime(telemetry=TelemetryConfig(logging=core_logging())))
    except RuntimeError:
        logging.getLogger(__name__).debug("the Temporal runtime exists already; core logs unchanged")


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _LineHandler(logging.Handler):
    """Writes each record as one line with one write(2): a process killed
    mid-way never leaves half a line in front of its successor's."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
        except Exception:
            self.handleError(record)


def _log_uncaught(process: str) -> None:
    """Uncaught and unraisable exceptions become log lines too (with their traceback in the line)."""
    logger = logging.getLogger(process)

    def main_thread(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        logger.critical("uncaught %s", kind.__name__, exc_info=(kind, value, tb))

    def other_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread else "?"
        logger.error(
            "uncaught %s in thread %s",
            args.exc_type.__name__,
            name,
            exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
        )

    def unraisable(args: Any) -> None:
        # What the interpreter would print as "Exception ignored in: ..." (a __del__ that failed, say).
        kind = type(args.exc_value) if args.exc_value is not None else args.exc_type
        logger.warning(
            "%s: %s",
            args.err_msg or "exception ignored",
            repr(args.object)[:200],
            exc_info=(kind, args.exc_value, args.exc_traceback) if args.exc_value is not None else None,
        )

    sys.excepthook = main_thread
    threading.excepthook = other_thread
    sys.unraisablehook = unraisable


# -- context -------------------------------------------------------------------


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Every line the current task logs meanwhile carries `fields` (the
    facade's rpc and tenant id). Tasks started meanwhile that outlive the
    call (a shared listener, say) do not: they are not about this call."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    token = _BOUND.set((task, fields))
    try:
        yield
    finally:
        _BOUND.reset(token)


def current_step() -> StepOf | None:
    """The plan step of the activity running here, if the orchestrator named one."""
    return _RUNNING.get()


def context_fields() -> dict[str, Any]:
    """What is known here of the tenant, the run, the activity and the trace."""
    fields: dict[str, Any] = {}
    if activity.in_activity():
        info = activity.info()
        fields |= {
            "workflow_id": info.workflow_id,
            "run_id": info.workflow_run_id,
            "workflow_type": info.workflow_type,
            "activity": info.activity_type,
            "attempt": info.attempt,
        }
        running = _RUNNING.get()
        if running is not None:
            fields["step"] = running.step
            if running.undo:
                fields["undo"] = True
    bound = _BOUND.get()
    if bound is not None:
        task, values = bound
        try:
            here = asyncio.current_task()
        except RuntimeError:
            here = None
        if task is None or task is here:
            fields |= {k: v for k, v in values.items() if v not in (None, "")}
    fields |= _trace_ids()
    return fields


def _trace_ids() -> dict[str, str]:
    if _otel_trace is None:
        return {}
    try:
        context = _otel_trace.get_current_span().get_span_context()
    except Exception:  # a broken tracer must never break a log line
        return {}
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


class _Context(logging.Filter):
    """Puts the context's fields on each record (`record.tenantry`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields: dict[str, Any] = {}
        sdk_workflow = getattr(record, "temporal_workflow", None)
        if isinstance(sdk_workflow, Mapping):
            fields |= {
                "workflow_id": sdk_workflow.get("workflow_id"),
                "run_id": sdk_workflow.get("run_id"),
                "workflow_type": sdk_workflow.get("workflow_type"),
            }
        fields |= context_fields()
        for name in _CONTEXT_FIELDS:  # set by the caller's `extra`: theirs wins
            value = record.__dict__.get(name)
            if value not in (None, ""):
                fields[name] = value
        if "tenant_id" not in fields and fields.get("workflow_id"):
            tenant = tenant_of_workflow(str(fields["workflow_id"]))
            if tenant:
                fields["tenant_id"] = tenant
        record.tenantry = {k: v for k, v in fields.items() if v not in (None, "")}
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v
        for k, v in record.__dict__.items()
        if k not in _RECORD_FIELDS
        and k not in _SDK_EXTRAS
        and k not in _CONTEXT_FIELDS
        and k != "tenantry"
        and not k.startswith("_")
    }


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, service, logger, message, context, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = getattr(record, "tenantry", {})
        line |= {k: context[k] for k in _CONTEXT_FIELDS if k in context}
        for key, value in _extras(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The readable form: time, level, process, logger, message, then the context as k=v."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = {**getattr(record, "tenantry", {}), **_extras(record)}
        if not fields:
            return text
        head, newline, rest = text.partition("\n")
        shown = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{head} [{shown}]{newline}{rest}"


# -- step lines ------------------------------------------------------------------


@contextmanager
def calling(step: str, *, undo: bool = False) -> Iterator[None]:
    """Inside a workflow: the activity started meanwhile runs as plan step `step`."""
    token = _CALLING.set(StepOf(step, undo) if step else None)
    try:
        yield
    finally:
        _CALLING.reset(token)


def step_called() -> StepOf | None:
    """Inside a workflow, while an activity is started: the plan step it runs as (`calling`)."""
    return _CALLING.get()


class StepLog(Interceptor):
    """An INFO line when an activity of a plan step starts and when it ends
    (WARNING when it fails), in the worker that runs it; and, in the
    orchestrator, the header that names the step.

    Activities that are no step (audit appends) log at DEBUG. Headers are
    not compared on replay, so runs in flight replay unchanged.
    """

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _StepLines(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor] | None:
        return _StepHeaderInbound


class _StepHeaderInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_StepHeaderOutbound(outbound))


class _StepHeaderOutbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        calling = _CALLING.get()
        if calling is not None:
            value = {"step": calling.step, "undo": True} if calling.undo else {"step": calling.step}
            payload = workflow.payload_converter().to_payload(value)
            input.headers = {**input.headers, STEP_HEADER: payload}
        return super().start_activity(input)


class _StepLines(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        step = _step_from(input)
        token = _RUNNING.set(step)
        level = logging.INFO if step is not None else logging.DEBUG
        what = _describe(step) if step is not None else f"activity {activity.info().activity_type}"
        named = {"step": step.step, "undo": step.undo or None} if step is not None else {}
        kind = "step" if step is not None else "activity"
        started = time.monotonic()
        activity.logger.log(level, "%s started", what, extra={"event": f"{kind}_started", **named})
        try:
            result = await self.next.execute_activity(input)
        except BaseException as err:
            ms = _ms_since(started)
            ended = "cancelled" if isinstance(err, asyncio.CancelledError) else "failed"
            activity.logger.warning(
                "%s %s after %.0f ms: %s",
                what,
                ended,
                ms,
                _error_type(err),
                extra={
                    "event": f"{kind}_{ended}",
                    "duration_ms": ms,
                    "error_type": _error_type(err),
                    **named,
                },
            )
            raise
        else:
            ms = _ms_since(started)
            activity.logger.log(
                level,
                "%s finished in %.0f ms",
                what,
                ms,
                extra={"event": f"{kind}_finished", "duration_ms": ms, **named},
            )
            return result
        finally:
            _RUNNING.reset(token)


def _step_from(input: ExecuteActivityInput) -> StepOf | None:
    payload = input.headers.get(STEP_HEADER)
    if payload is None:
        return None
    try:
        value = activity.payload_converter().from_payload(payload, dict)
    except Exception:  # a header this worker cannot read is no reason to fail the step
        return None
    step = value.get("step") if isinstance(value, dict) else None
    return StepOf(str(step), bool(value.get("undo"))) if step else None


def _describe(step: StepOf) -> str:
    return f"undo of {step.step}" if step.undo else f"step {step.step}"


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _error_type(err: BaseException) -> str:
    kind = getattr(err, "type", None)
    return str(kind) if isinstance(kind, str) and kind else type(err).__name__
