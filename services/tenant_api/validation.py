"""Checks and normalises API input before anything is started."""

from __future__ import annotations

import re
from datetime import timedelta

from libs import namespace
from libs.lifecycle import (
    DEFAULT_GRACE_PERIOD,
    MAX_GRACE_PERIOD,
    TENANT_ID_RULE,
    reserved_tenant_id,
    valid_tenant_id,
)
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2

MAX_DISPLAY_NAME = 200
MAX_PERSON_NAME = 100
MAX_DOMAINS = 10
MAX_EMAIL = 254
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Violations = list[tuple[str, str]]


def valid_hostname(name: str) -> bool:
    labels = name.split(".")
    return (
        len(name) <= 253
        and len(labels) >= 2
        and all(_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def valid_email(address: str) -> bool:
    local, at, domain = address.rpartition("@")
    return (
        bool(at)
        and len(address) <= MAX_EMAIL
        and bool(_EMAIL_LOCAL.fullmatch(local))
        and valid_hostname(domain)
    )


def tenant_id(value: str, field: str, violations: Violations, *, new: bool = False) -> None:
    """Checks a tenant id; a `new` one (a tenant to create) must not be reserved.

    Names of existing tenants are only checked for form, so that one made
    before an id was reserved can still be read and deleted.
    """
    if not value:
        violations.append((field, "required"))
    elif not valid_tenant_id(value):
        violations.append((field, f"must be {TENANT_ID_RULE}"))
    elif new and reserved_tenant_id(value):
        violations.append((field, "is reserved for the platform; choose another"))


def tenant_id_from_name(name: str, violations: Violations, *, field: str = "name") -> str:
    prefix, _, tid = name.partition("/")
    if prefix != "tenants" or not tid:
        violations.append((field, "must be tenants/{tenant_id}"))
        return ""
    tenant_id(tid, field, violations)
    return tid


def create_tenant(
    request: tenant_service_pb2.CreateTenantRequest, *, dns_zone: str | None = None
) -> tuple[tenant_pb2.Tenant, Violations]:
    """Returns the normalised tenant to create and what is wrong with the request.

    `dns_zone` is the managed DNS zone (default: TENANTRY_DNS_ZONE, read as
    the infrastructure worker reads it): inside it a tenant's domains must be
    its own `<id>.<zone>` or names under it.
    """
    zone = namespace.dns_zone() if dns_zone is None else dns_zone
    violations: Violations = []
    tenant_id(request.tenant_id, "tenant_id", violations, new=True)
    given = request.tenant
    if not request.HasField("tenant"):
        violations.append(("tenant", "required"))
    display_name = given.display_name.strip()
    if not display_name:
        violations.append(("tenant.display_name", "required"))
    elif len(display_name) > MAX_DISPLAY_NAME or _CONTROL.search(display_name):
        violations.append(
            ("tenant.display_name", f"at most {MAX_DISPLAY_NAME} characters, no control characters")
        )
    if (
        given.plan_tier not in tenant_pb2.PlanTier.values()
        or given.plan_tier == tenant_pb2.PLAN_TIER_UNSPECIFIED
    ):
        violations.append(
            ("tenant.plan_tier", "required: one of PLAN_TIER_POOLED, PLAN_TIER_BRIDGE, PLAN_TIER_SILO")
        )
    domains = [namespace.normal_domain(d) for d in given.domains]
    if len(domains) > MAX_DOMAINS:
        violations.append(("tenant.domains", f"at most {MAX_DOMAINS} domains"))
    for i, domain in enumerate(domains):
        if not valid_hostname(domain):
            violations.append((f"tenant.domains[{i}]", "must be a hostname such as app.example.com"))
        elif domain in domains[:i]:
            violations.append((f"tenant.domains[{i}]", "duplicate"))
        elif problem := namespace.zone_domain_problem(domain, tenant_id=request.tenant_id, zone=zone):
            violations.append((f"tenant.domains[{i}]", problem))
    # Email is the admin's user name: compared and stored lowercase.
    email = given.admin.email.strip().lower()
    if not email:
        violations.append(("tenant.admin.email", "required"))
    elif not valid_email(email):
        violations.append(("tenant.admin.email", "must be an email address such as ada@example.com"))
    for field in ("given_name", "family_name"):
        value = getattr(given.admin, field)
        if len(value) > MAX_PERSON_NAME or _CONTROL.search(value):
            violations.append(
                (f"tenant.admin.{field}", f"at most {MAX_PERSON_NAME} characters, no control characters")
            )
    tenant = tenant_pb2.Tenant(
        tenant_id=request.tenant_id,
        display_name=display_name,
        plan_tier=given.plan_tier,
        domains=domains,
        admin=tenant_pb2.AdminContact(
            email=email,
            given_name=given.admin.given_name.strip(),
            family_name=given.admin.family_name.strip(),
        ),
    )
    return tenant, violations


def page_size(value: int, violations: Violations, *, default: int = DEFAULT_PAGE_SIZE) -> int:
    if value < 0:
        violations.append(("page_size", "must not be negative"))
    return min(value or default, MAX_PAGE_SIZE)


def grace_period(request: tenant_service_pb2.DeleteTenantRequest, violations: Violations) -> timedelta:
    """The wait a deletion asks for: none for a hard delete, else the request's or the default."""
    given = request.HasField("grace_period")
    if request.hard_delete:
        if given:
            violations.append(("grace_period", "not allowed with hard_delete, which has no grace period"))
        return timedelta(0)
    if not given:
        return DEFAULT_GRACE_PERIOD
    period = request.grace_period
    rule = f"must be from 1 second to {MAX_GRACE_PERIOD.days} days; use hard_delete for none"
    # Checked on the raw fields first: a huge value would overflow a timedelta.
    if period.seconds < 0 or period.nanos < 0 or period.seconds > MAX_GRACE_PERIOD.total_seconds():
        violations.append(("grace_period", rule))
        return timedelta(0)
    wait = period.ToTimedelta()
    if not timedelta(seconds=1) <= wait <= MAX_GRACE_PERIOD:
        violations.append(("grace_period", rule))
    return wait
