"""Tenant isolation at the running API: reserved ids and another tenant's names are refused."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from libs.devstack.stack import Stack
from tenantry.tenant.v1 import tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import DNS_ZONE, details
from tests.e2e.test_api import workflow_runs
from tests.support.tenants import tenant_spec


def test_reserved_ids_and_another_tenants_zone_names_are_refused_and_start_nothing(
    api: tenant_service_pb2_grpc.TenantServiceStub, stack: Stack, new_id: Callable[[], str]
) -> None:
    victim = new_id()
    attempts = [
        ("backups", tenant_spec("backups"), "tenant_id"),
        (new_id(), tenant_spec(domains=[f"Sub.{victim.upper()}.{DNS_ZONE}."]), "tenant.domains[0]"),
    ]
    for tenant_id, spec, field in attempts:
        with pytest.raises(grpc.RpcError) as raised:
            api.CreateTenant(tenant_service_pb2.CreateTenantRequest(tenant_id=tenant_id, tenant=spec))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        info, fields = details(raised.value)
        assert (info.reason, fields) == ("INVALID_ARGUMENT", [field])
        assert workflow_runs(stack, tenant_id) == 0
