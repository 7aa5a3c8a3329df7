"""A valid tenant spec for tests that build CreateTenant requests."""

from __future__ import annotations

from tenantry.tenant.v1 import tenant_pb2


def tenant_spec(tenant_id: str = "acme", **changes: object) -> tenant_pb2.Tenant:
    """A valid tenant; its domain is its own (a domain belongs to one tenant)."""
    spec = tenant_pb2.Tenant(
        display_name="Acme Corp",
        plan_tier=tenant_pb2.PLAN_TIER_POOLED,
        domains=[f"{tenant_id}.example.com"],
        admin=tenant_pb2.AdminContact(email="ada@acme.example.com", given_name="Ada", family_name="Lovelace"),
    )
    for key, value in changes.items():
        if key == "domains":
            del spec.domains[:]
            spec.domains.extend(value)  # type: ignore[arg-type]
        elif key == "admin":
            spec.admin.CopyFrom(value)  # type: ignore[arg-type]
        else:
            setattr(spec, key, value)
    return spec
