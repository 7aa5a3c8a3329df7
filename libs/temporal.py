"""Temporal client and worker bootstrap shared by every process."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import HeaderCodecBehavior
from temporalio.service import RetryConfig, RPCError
from temporalio.worker import Interceptor, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from libs import codec, logs, metrics, tracing
from libs.config import ConfigError, TemporalSettings, WorkerSettings
from libs.contracts import Contract, bind_activities
from libs.faults import FaultInjection
from libs.health import HealthEndpoint

log = logging.getLogger(__name__)

# Generated protobuf modules and our shared libs are deterministic and
# side-effect free: pass them through the sandbox instead of re-importing
# them on every workflow run (measured: the re-import dominates task time).
SANDBOX_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        # opentelemetry: the tracing interceptor's context must be the process's own.
        "tenantry",
        "libs",
        "google.protobuf",
        "opentelemetry",
    )
)


async def connect(
    settings: TemporalSettings | None = None,
    *,
    wait: timedelta = timedelta(seconds=60),
    retry_config: RetryConfig | None = None,
) -> Client:
    """Connects to Temporal, retrying while the server is still starting.

    Every payload is encrypted with the key ring the environment names (see
    libs/codec.py): without one this refuses, unless encryption is switched
    off explicitly. `retry_config` bounds how long each call retries a server
    that does not answer (the SDK's default retries for about ten seconds).
    """
    settings = settings or TemporalSettings.from_env()
    converter = codec.data_converter_from_env()
    deadline = asyncio.get_running_loop().time() + wait.total_seconds()
    while True:
        try:
            return await Client.connect(
                settings.address,
                namespace=settings.namespace,
                api_key=settings.api_key,
                tls=settings.tls,
                rpc_metadata=settings.rpc_metadata,
                retry_config=retry_config,
                # Workers built on this client take their worker side too.
                interceptors=tracing.temporal_interceptors(),
                data_converter=converter,
                runtime=metrics.runtime(),
                # Headers too: an interceptor may put tenant data there.
                header_codec_behavior=(
                    HeaderCodecBehavior.CODEC if converter.payload_codec else HeaderCodecBehavior.NO_CODEC
                ),
            )
        except (RuntimeError, RPCError) as err:
            if asyncio.get_running_loop().time() > deadline:
                raise ConfigError(f"cannot reach Temporal at {settings.address}: {err}") from err
            await asyncio.sleep(0.5)


async def run_worker(
    *,
    task_queue: str,
    activities: Sequence[Callable[..., Any]] = (),
    workflows: Sequence[type] = (),
    client: Client | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
    graceful_shutdown: timedelta | None = None,
) -> None:
    """Polls one task queue until SIGTERM or SIGINT, then drains and exits
    (`graceful_shutdown`, else TENANTRY_DRAIN_SECONDS, 10 by default).

    Sync activities run in a thread pool sized to the worker's concurrency,
    so blocking SDKs (boto3, python-keycloak) never block the event loop.
    """
    settings = WorkerSettings.from_env()
    client = client or await connect()
    health = (
        HealthEndpoint(settings.health_address, tls=settings.health_tls) if settings.health_address else None
    )
    with concurrent.futures.ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as pool:
        worker = Worker(
            client,
            task_queue=task_queue,
            activities=list(activities),
            workflows=list(workflows),
            activity_executor=pool,
            workflow_runner=SANDBOX_RUNNER,
            max_concurrent_activities=settings.max_concurrent_activities,
            max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
            graceful_shutdown_timeout=graceful_shutdown or timedelta(seconds=settings.drain_seconds),
            interceptors=_interceptors(),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if health:
            await health.start()
        running = asyncio.create_task(worker.run())
        if health:
            await health.set_serving(True)
        log.info("worker polling %s", task_queue)
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if health:
            await health.set_serving(False)
        if not running.done():
            log.info("draining %s", task_queue)
            await worker.shutdown()
        stopped.cancel()
        await running
        if on_shutdown:
            await on_shutdown()
        if health:
            await health.stop()
        log.info("worker stopped")


async def run_activity_worker(
    contract: Contract, implementation: object, *, close: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Polls the contract's task queue with `implementation`'s activities until SIGTERM.

    `close` releases what the activities use: after draining, and also when
    the worker never ran (Temporal unreachable), so it must be safe to call twice.
    """
    try:
        await run_worker(
            task_queue=contract.task_queue,
            activities=bind_activities(contract, implementation),
            on_shutdown=close,
        )
    finally:
        if close:
            await close()


def _profile_threads() -> list[Any]:
    """Profiles this thread and every thread started from now on; returns the profiles."""
    import cProfile

    profiles = [cProfile.Profile()]

    def start_in_thread(*_: Any) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()  # replaces this hook for the rest of the thread

    threading.setprofile(start_in_thread)
    profiles[0].enable()
    return profiles


def _write_profile(profiles: list[Any], path: Path) -> None:
    import pstats

    for profile in profiles:
        profile.disable()
    threading.setprofile(None)  # type: ignore[arg-type]
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        stats.add(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    stats.dump_stats(path)


def _interceptors() -> list[Interceptor]:
    rules = os.environ.get("TENANTRY_FAULT_INJECTION_FILE")
    # Step lines outside the faults: an injected fault shows as the step's failure.
    return [metrics.WorkflowMetrics(), logs.StepLog(), *([FaultInjection(Path(rules))] if rules else [])]


def main(process: str, entry: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Runs a process's async entry point; a config error exits 2 with its message.

    With TENANTRY_PROFILE_DIR set, the process is profiled (cProfile, every
    thread) and writes `<dir>/<process>.prof` when it stops: a benchmark's
    tool (tests/bench/provision.py --profile), never on in production.
    """
    code = 0
    profile_dir = os.environ.get("TENANTRY_PROFILE_DIR")
    profiling = _profile_threads() if profile_dir else None
    try:
        logs.configure(process)
        tracing.configure(process)  # only with OTEL_* settings (libs/tracing.py)
        asyncio.run(entry())
    except ConfigError as err:
        logging.getLogger(process).error("%s: configuration error: %s", process, err)
        code = 2
    if profile_dir and profiling is not None:
        _write_profile(profiling, Path(profile_dir) / f"{process}.prof")
    # The SDK's Rust threads can outlive interpreter finalisation and abort
    # it (temporalio/sdk-python#300); everything is drained by now, so leave
    # without finalising.
    tracing.shutdown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
