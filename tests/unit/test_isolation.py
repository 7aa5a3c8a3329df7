"""Tenant isolation rules: reserved ids, tenant namespaces and the platform names kept out of them."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from libs import lifecycle, namespace
from libs.backup import BackupSettings
from libs.config import ConfigError
from services.tenant_api import validation
from tests.unit.test_validation import fields, request

ZONE = namespace.DEFAULT_DNS_ZONE


def domain_problems(tenant_id: str, domains: list[str], *, zone: str | None = ZONE) -> dict[str, str]:
    req = request(tenant_id=tenant_id, tenant__domains=domains)
    _, violations = validation.create_tenant(req, dns_zone=zone)
    return dict(violations)


# --- reserved tenant ids -----------------------------------------------------


def test_every_reserved_id_would_otherwise_be_a_valid_tenant_id() -> None:
    # No dead entries: each one is refused because it is reserved, not for its form.
    asked = "backups admin api app www system platform tenantry internal root status mail auth login"
    asked += " static cdn dns default public master"  # and `ns`, below: too short for an id anyway
    assert set(asked.split()) <= lifecycle.RESERVED_TENANT_IDS
    assert all(lifecycle.valid_tenant_id(reserved) for reserved in lifecycle.RESERVED_TENANT_IDS)


@pytest.mark.parametrize("reserved", sorted(lifecycle.RESERVED_TENANT_IDS))
def test_reserved_ids_are_refused_at_the_api_on_the_tenant_id_field(reserved: str) -> None:
    req = request(tenant_id=reserved, tenant__domains=[])
    _, violations = validation.create_tenant(req, dns_zone=ZONE)
    assert violations == [("tenant_id", "is reserved for the platform; choose another")]


@pytest.mark.parametrize("reserved", sorted(lifecycle.RESERVED_TENANT_IDS))
def test_reserved_ids_are_refused_by_workers(reserved: str) -> None:
    with pytest.raises(ApplicationError) as refused:
        lifecycle.checked_tenant_id(reserved)
    assert refused.value.type == "InvalidArgument"
    assert refused.value.non_retryable
    assert "reserved" in str(refused.value)


def test_names_too_short_for_a_tenant_id_need_no_reservation() -> None:
    for short in ("ns", "mx", "id", "db"):
        assert fields(request(tenant_id=short)) == {"tenant_id"}


def test_an_existing_tenant_with_a_reserved_id_can_still_be_named() -> None:
    # Reads and deletes name tenants that exist; only new ids are refused.
    violations: validation.Violations = []
    assert validation.tenant_id_from_name("tenants/backups", violations) == "backups"
    assert violations == []


def test_tenant_id_naming_finds_the_tenant_a_name_belongs_to() -> None:
    assert lifecycle.tenant_id_naming("tenantry-acme", prefix="tenantry-") == "acme"
    assert lifecycle.tenant_id_naming("tenant-acme", prefix="tenant-") == "acme"
    assert lifecycle.tenant_id_naming("acme-app", suffix="-app") == "acme"
    assert lifecycle.tenant_id_naming("tenantry-backups", prefix="tenantry-") is None  # reserved
    assert lifecycle.tenant_id_naming("tenantry-a", prefix="tenantry-") is None  # not an id
    assert lifecycle.tenant_id_naming("tenantry", prefix="tenantry-") is None
    assert lifecycle.tenant_id_naming("tenants", prefix="tenant-") is None  # Keycloak's shared realm


# --- domains in the managed zone ----------------------------------------------


@pytest.mark.parametrize(
    "domain",
    [
        f"victim.{ZONE}",
        f"x.victim.{ZONE}",
        f"Victim.{ZONE}.",
        f" X.VICTIM.{ZONE.upper()}. ",
        f"evilvictim.{ZONE}",
        f"www.{ZONE}",
        ZONE,
        f"attacker-x.{ZONE}",
    ],
)
def test_another_tenants_names_in_the_zone_are_refused_at_the_api(domain: str) -> None:
    problems = domain_problems("attacker", ["attacker.example.com", domain])
    assert list(problems) == ["tenant.domains[1]"]
    assert f"attacker.{ZONE}" in problems["tenant.domains[1]"]


@pytest.mark.parametrize(
    "domain", [f"victim.{ZONE}", f"sub.victim.{ZONE}", f"a.b.victim.{ZONE}", f"Sub.Victim.{ZONE}."]
)
def test_the_tenants_own_subtree_is_accepted(domain: str) -> None:
    tenant, violations = validation.create_tenant(
        request(tenant_id="victim", tenant__domains=[domain]), dns_zone=ZONE
    )
    assert violations == []
    assert list(tenant.domains) == [namespace.normal_domain(domain)]


def test_domains_outside_the_zone_are_not_the_zones_business() -> None:
    assert domain_problems("acme", ["victim.example.com", f"victim.{ZONE}.example.com"]) == {}


def test_the_api_reads_the_zone_as_the_infrastructure_worker_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTRY_DNS_ZONE", "Corp.Example.")
    assert domain_problems("acme", ["victim.corp.example"], zone=None) != {}
    assert domain_problems("acme", [f"victim.{ZONE}"], zone=None) == {}
    monkeypatch.setenv("TENANTRY_DNS_ZONE", "not a zone")
    with pytest.raises(ConfigError, match="TENANTRY_DNS_ZONE"):
        domain_problems("acme", [], zone=None)


# --- platform names outside the tenant namespaces ---------------------------


def test_a_backup_bucket_a_tenant_could_be_given_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="TENANTRY_BACKUP_BUCKET.*TENANTRY_BUCKET_PREFIX"):
        namespace.check_backup_bucket("tenantry-acme", "tenantry")
    namespace.check_backup_bucket("tenantry-backups", "tenantry")  # `backups` is reserved
    namespace.check_backup_bucket("corp-backups-eu", "tenantry")


@pytest.mark.parametrize(
    "variables",
    [
        {"TENANTRY_BACKUP_BUCKET": "tenantry-acme"},
        {"TENANTRY_BUCKET_PREFIX": "corp", "TENANTRY_BACKUP_BUCKET": "corp-data"},
        {"TENANTRY_BACKUP_BUCKET": "Not_A_Bucket"},
    ],
)
def test_backup_settings_refuse_a_bucket_in_the_tenant_namespace(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="TENANTRY_BACKUP_BUCKET"):
        BackupSettings.from_env()


def test_backup_settings_default_is_outside_the_tenant_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TENANTRY_BACKUP_BUCKET", raising=False)
    monkeypatch.delenv("TENANTRY_BUCKET_PREFIX", raising=False)
    assert BackupSettings.from_env().bucket == "tenantry-backups"


@pytest.mark.parametrize("worker", ["services.tenantdb.worker", "services.idp.worker"])
async def test_workers_that_write_backups_refuse_such_a_bucket_at_start(
    monkeypatch: pytest.MonkeyPatch, worker: str
) -> None:
    import importlib

    monkeypatch.setenv("TENANTRY_BACKUP_BUCKET", "tenantry-acme")
    monkeypatch.setenv("TENANTRY_DATABASE_URL", "postgresql://127.0.0.1:1/never")
    monkeypatch.setenv("TENANTRY_IDP_PROVIDER", "local")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    with pytest.raises(ConfigError, match="TENANTRY_BACKUP_BUCKET"):
        await importlib.import_module(worker).run()


def test_an_app_hostname_in_a_tenants_subtree_is_a_config_error() -> None:
    for inside in (f"shop.{ZONE}", f"www.acme.{ZONE}"):
        with pytest.raises(ConfigError, match="TENANTRY_APP_HOSTNAME.*TENANTRY_DNS_ZONE"):
            namespace.check_app_hostname(inside, ZONE)
    for outside in ("app.tenantry.test", f"app.{ZONE}", f"x.status.{ZONE}", ZONE):
        namespace.check_app_hostname(outside, ZONE)
