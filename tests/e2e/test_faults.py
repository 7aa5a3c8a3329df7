"""Processes dying mid-run: nothing is lost, runs finish once the process is back."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest

from libs.devstack.stack import Stack
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import VICTIMS, Providers, create, settle, wait_until_victim_holds_a_task

State = tenant_pb2.Tenant.State


@pytest.mark.parametrize("victim", sorted(VICTIMS))
def test_a_process_killed_holding_a_task_and_restarted_still_brings_the_tenant_to_active(
    api: tenant_service_pb2_grpc.TenantServiceStub,
    stack: Stack,
    providers: Providers,
    new_id: Callable[[], str],
    victim: str,
) -> None:
    tid = new_id()
    process = stack.services[victim]
    assert process.popen is not None
    # Frozen, the process still holds its polls: Temporal hands it a task it
    # will never finish. Killed then, it dies in the middle of that task.
    os.kill(process.popen.pid, signal.SIGSTOP)
    try:
        create(api, tid)
        held = wait_until_victim_holds_a_task(stack, tid, victim)
    finally:
        process.kill()
    assert held
    stack.start_service(victim)
    tenant = settle(api, tid)
    assert tenant.state == State.STATE_ACTIVE, tenant.failure_reason
    assert providers.bucket_exists(tid) and providers.schema_exists(tid)
    assert providers.identity_rows(tid) == 3  # no duplicate realm, client or user
    assert providers.dns_names(tid) == {f"{tid}.tenants.tenantry.test"}


def test_sigterm_stops_processes_gracefully(stack: Stack) -> None:
    for name in ("notification", "orchestrator", "tenant_api"):
        assert stack.services[name].stop() == 0, f"{name} did not exit cleanly on SIGTERM"
        stack.start_service(name)
