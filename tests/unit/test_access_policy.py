"""The access policy file: what it grants, and what it refuses to load."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs import auth
from libs.auth import AccessPolicy, Principal
from libs.config import ConfigError

ISSUER = "https://idp.example.test/realms/platform"


def load(tmp_path: Path, text: str) -> AccessPolicy:
    path = tmp_path / "access.toml"
    path.write_text(text)
    return AccessPolicy.load(path)


def token(sub: str, **claims: object) -> Principal:
    return Principal(id=f"{ISSUER}#{sub}", kind="token", claims={"iss": ISSUER, "sub": sub, **claims})


def cert(*names: str) -> Principal:
    return Principal(id=names[0], kind="certificate", names=names)


def test_grants_by_certificate_claim_subject_and_tenant(tmp_path: Path) -> None:
    policy = load(
        tmp_path,
        f"""
[[grants]]
certificate = "spiffe://example.test/ns/ops/*"
roles = ["operator"]

[[grants]]
issuer = "{ISSUER}/"
claim = "realm_access.roles"
value = "tenantry-admin"
roles = ["admin", "break-glass"]

[[grants]]
issuer = "{ISSUER}"
subject = "portal"
roles = ["viewer"]
tenants = ["acme"]

[[grants]]
issuer = "{ISSUER}"
subject = "claims-portal"
roles = ["viewer"]
tenants_claim = "tenant"
""",
    )
    ops = cert("spiffe://example.test/ns/ops/sa/runner")
    assert policy.allows(ops, auth.OPERATE, "acme") and not policy.allows(ops, auth.ADMIN, "acme")
    assert not policy.allows(cert("spiffe://example.test/ns/opsx"), auth.VIEW, "acme")
    admin = token("svc", realm_access={"roles": ["tenantry-admin"]})
    assert policy.allows(admin, auth.DELETE_WITHOUT_BACKUP, None)
    assert not policy.allows(token("svc", realm_access={"roles": ["other"]}), auth.VIEW, "acme")
    assert policy.scope(token("portal"), auth.VIEW) == {"acme"}
    assert policy.scope(token("portal"), auth.OPERATE) == frozenset()
    assert policy.scope(token("claims-portal", tenant="beta"), auth.VIEW) == {"beta"}
    # A token of another issuer never matches, whatever it claims.
    forged = Principal(id="x", kind="token", claims={"iss": "https://evil.test", "sub": "portal"})
    assert policy.scope(forged, auth.VIEW) == frozenset()
    # A certificate grant never matches a token with the same text as its subject.
    assert not policy.allows(token("spiffe://example.test/ns/ops/sa/runner"), auth.VIEW, "acme")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[grants]]\ncertificate = "a"\nroles = ["root"]\n', "roles must be a non-empty list"),
        ('[[grants]]\nroles = ["viewer"]\n', "exactly one of certificate or issuer"),
        (f'[[grants]]\nissuer = "{ISSUER}"\nroles = ["viewer"]\n', "an issuer alone matches anyone"),
        ('[[grants]]\ncertificate = "a"\nsubject = "b"\nroles = ["viewer"]\n', "token grants only"),
        (
            f'[[grants]]\nissuer = "{ISSUER}"\nclaim = "x"\nroles = ["viewer"]\n',
            "claim and value go together",
        ),
        ('[[grants]]\ncertificate = "a"\nroles = ["viewer"]\ntenant = ["x"]\n', "unknown keys: tenant"),
        ("[roles]\nviewer = 1\n", "unknown sections: roles"),
        ("not toml = = 1", "cannot be read"),
    ],
)
def test_a_wrong_policy_stops_the_process_with_a_clear_message(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text)
