"""Input validation of the public API: what is refused and how it is normalised."""

from __future__ import annotations

import pytest

from services.tenant_api import validation
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2


def request(**overrides: object) -> tenant_service_pb2.CreateTenantRequest:
    tenant = tenant_pb2.Tenant(
        display_name="Acme Corp",
        plan_tier=tenant_pb2.PLAN_TIER_POOLED,
        domains=["acme.example.com"],
        admin=tenant_pb2.AdminContact(email="ada@acme.example.com", given_name="Ada"),
    )
    req = tenant_service_pb2.CreateTenantRequest(tenant_id="acme", tenant=tenant)
    for path, value in overrides.items():
        target: object = req
        *parents, leaf = path.split("__")
        for part in parents:
            target = getattr(target, part)
        if isinstance(value, list):
            del getattr(target, leaf)[:]
            getattr(target, leaf).extend(value)
        else:
            setattr(target, leaf, value)
    return req


def fields(req: tenant_service_pb2.CreateTenantRequest) -> set[str]:
    _, violations = validation.create_tenant(req)
    return {f for f, _ in violations}


def test_a_good_request_passes_and_is_normalised() -> None:
    tenant, violations = validation.create_tenant(
        request(tenant__domains=[" Acme.Example.COM. "], tenant__admin__email="Ada@Acme.example.com")
    )
    assert violations == []
    assert list(tenant.domains) == ["acme.example.com"]
    assert tenant.admin.email == "ada@acme.example.com"
    assert tenant.tenant_id == "acme"


@pytest.mark.parametrize(
    "tenant_id",
    ["", "a", "ab", "Acme", "1acme", "acme-", "ac_me", "a" * 33, 'a"; drop schema registry; --', "acme.corp"],
)
def test_bad_tenant_ids_are_refused(tenant_id: str) -> None:
    assert fields(request(tenant_id=tenant_id)) == {"tenant_id"}


@pytest.mark.parametrize("tenant_id", ["abc", "acme-corp", "a" * 32, "t0-1"])
def test_good_tenant_ids_pass(tenant_id: str) -> None:
    assert fields(request(tenant_id=tenant_id)) == set()


@pytest.mark.parametrize(
    "domain",
    [
        "localhost",
        "-a.example.com",
        "a..example.com",
        "exa mple.com",
        "a" * 64 + ".com",
        "10.0.0.1",
        "x.y_z.com",
    ],
)
def test_bad_domains_are_refused(domain: str) -> None:
    assert fields(request(tenant__domains=[domain])) == {"tenant.domains[0]"}


def test_duplicate_and_too_many_domains_are_refused() -> None:
    assert fields(request(tenant__domains=["a.example.com", "A.example.com"])) == {"tenant.domains[1]"}
    assert "tenant.domains" in fields(request(tenant__domains=[f"d{i}.example.com" for i in range(11)]))


@pytest.mark.parametrize(
    "email", ["", "ada", "ada@", "@example.com", "ada@localhost", "a da@example.com", "a" * 250 + "@x.com"]
)
def test_bad_emails_are_refused(email: str) -> None:
    assert fields(request(tenant__admin__email=email)) == {"tenant.admin.email"}


def test_unknown_and_unset_tiers_are_refused_and_every_tier_is_accepted() -> None:
    assert fields(request(tenant__plan_tier=0)) == {"tenant.plan_tier"}
    assert fields(request(tenant__plan_tier=99)) == {"tenant.plan_tier"}
    for tier in (tenant_pb2.PLAN_TIER_POOLED, tenant_pb2.PLAN_TIER_BRIDGE, tenant_pb2.PLAN_TIER_SILO):
        assert fields(request(tenant__plan_tier=tier)) == set()


def test_oversize_and_control_characters_are_refused() -> None:
    assert fields(request(tenant__display_name="x" * 201)) == {"tenant.display_name"}
    assert fields(request(tenant__display_name="   ")) == {"tenant.display_name"}
    assert fields(request(tenant__display_name="bad\x00name")) == {"tenant.display_name"}
    assert fields(request(tenant__admin__given_name="x" * 101)) == {"tenant.admin.given_name"}


def test_missing_tenant_reports_every_field() -> None:
    req = tenant_service_pb2.CreateTenantRequest(tenant_id="acme")
    assert {"tenant", "tenant.display_name", "tenant.plan_tier", "tenant.admin.email"} <= fields(req)


def test_names_must_be_tenant_resource_names() -> None:
    for name, ok in [("tenants/acme", True), ("acme", False), ("tenants/", False), ("projects/acme", False)]:
        violations: validation.Violations = []
        validation.tenant_id_from_name(name, violations)
        assert (violations == []) is ok, name


def test_page_size_defaults_and_caps() -> None:
    violations: validation.Violations = []
    assert validation.page_size(0, violations) == validation.DEFAULT_PAGE_SIZE
    assert validation.page_size(5000, violations) == validation.MAX_PAGE_SIZE
    assert violations == []
    validation.page_size(-1, violations)
    assert violations == [("page_size", "must not be negative")]
