"""Processes dying: nothing is lost, runs finish once the process is back."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from libs.devstack.stack import Stack
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import Providers, create, settle

State = tenant_pb2.Tenant.State


@pytest.mark.parametrize("victim", ["infra", "idp", "orchestrator"])
def test_a_process_killed_mid_provision_and_restarted_still_brings_the_tenant_to_active(
    api: tenant_service_pb2_grpc.TenantServiceStub,
    stack: Stack,
    providers: Providers,
    new_id: Callable[[], str],
    victim: str,
) -> None:
    tid = new_id()
    create(api, tid)
    stack.services[victim].kill()  # SIGKILL: no chance to finish or hand anything back
    time.sleep(1.5)
    tenant = api.GetTenant(tenant_service_pb2.GetTenantRequest(name=f"tenants/{tid}")).tenant
    assert tenant.state in (State.STATE_PENDING, State.STATE_PROVISIONING)
    stack.start_service(victim)
    tenant = settle(api, tid)
    assert tenant.state == State.STATE_ACTIVE, tenant.failure_reason
    assert providers.bucket_exists(tid) and providers.schema_exists(tid)
    assert providers.identity_rows(tid) == 3  # no duplicate realm, client or user


def test_sigterm_stops_a_worker_gracefully(stack: Stack) -> None:
    assert stack.services["notification"].stop() == 0
    stack.start_service("notification")
    assert stack.services["tenant_api"].stop() == 0
    stack.start_service("tenant_api")
