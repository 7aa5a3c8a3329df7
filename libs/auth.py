"""Who is calling and what they may do.

A caller is a `Principal`, verified from a client certificate (its URI SAN,
SPIFFE style, or DNS SAN) or an OIDC bearer token (signature against the
issuer's JWKS, `iss`, `aud`, `exp`, `nbf`). The access policy, one TOML file,
gives principals roles, optionally only for some tenants; a role is a set of
the permissions declared in proto (tenantry.options.v1.Permission).

Shared by the facade and the codec server; neither decides anything on the
text of an error, only on its `reason`.
"""

from __future__ import annotations

import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography import x509

from libs import config
from libs.config import ConfigError
from tenantry.options.v1 import options_pb2

Permission = options_pb2.Permission
VIEW = Permission.PERMISSION_VIEW
OPERATE = Permission.PERMISSION_OPERATE
ADMIN = Permission.PERMISSION_ADMIN
DELETE_WITHOUT_BACKUP = Permission.PERMISSION_DELETE_WITHOUT_BACKUP

# Roles are fixed sets of permissions: the policy file assigns roles, never
# single permissions, so what "operator" means is the same everywhere.
ROLES: dict[str, frozenset[int]] = {
    "viewer": frozenset({VIEW}),
    "operator": frozenset({VIEW, OPERATE}),
    "admin": frozenset({VIEW, OPERATE, ADMIN}),
    # Deleting without a backup cannot be undone: it is never part of another role.
    "break-glass": frozenset({DELETE_WITHOUT_BACKUP}),
}
# Asymmetric algorithms only: "none" and shared-secret HS* tokens are refused.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
CLOCK_SKEW = 30.0
# An unknown `kid` makes the verifier fetch the JWKS again, at most this often,
# so tokens with made-up key ids cannot turn into a flood of fetches.
JWKS_REFRESH_INTERVAL = 10.0
JWKS_TIMEOUT = 2.0


class AuthenticationError(Exception):
    """The caller's credentials are missing or not valid; `reason` is UPPER_SNAKE."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class IssuerUnavailable(Exception):
    """The token issuer's keys could not be fetched (a dependency outage, not a bad token)."""


@dataclass(frozen=True)
class Principal:
    """A verified caller. `id` is what the audit log records as the actor."""

    id: str
    kind: str  # "certificate", "token" or "unauthenticated"
    claims: Mapping[str, Any] = field(default_factory=dict)
    # The certificate's identities (URI and DNS SANs), for matching grants.
    names: tuple[str, ...] = ()


# --- client certificates ------------------------------------------------------------------------


def certificate_principal(pem: bytes) -> Principal:
    """The principal of a client certificate that TLS already verified.

    The identity is the URI SAN (SPIFFE style), else the DNS SAN; a
    certificate without either names nobody and is refused.
    """
    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    uris = tuple(san.get_values_for_type(x509.UniformResourceIdentifier))
    dns = tuple(san.get_values_for_type(x509.DNSName))
    if not uris and not dns:
        raise AuthenticationError(
            "CERTIFICATE_WITHOUT_IDENTITY",
            "the client certificate has no URI or DNS subject alternative name",
        )
    return Principal(id=(uris or dns)[0], kind="certificate", names=uris + dns)


# --- OIDC bearer tokens -------------------------------------------------------------------------


class TokenVerifier:
    """Checks OIDC access tokens of one issuer for one audience.

    The issuer's JWKS is fetched on first use (from `jwks_url`, or found
    through the issuer's discovery document), kept, and fetched again when a
    token names a key id it does not hold (key rotation).
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        ca_file: Path | None = None,
        clock_skew: float = CLOCK_SKEW,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._jwks_url = jwks_url
        self._verify: str | bool = str(ca_file) if ca_file else True
        self._skew = clock_skew
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> TokenVerifier | None:
        """TENANTRY_OIDC_ISSUER and TENANTRY_OIDC_AUDIENCE, with optional
        TENANTRY_OIDC_JWKS_URL and TENANTRY_OIDC_CA_FILE; None when no issuer is set."""
        issuer = config.optional("TENANTRY_OIDC_ISSUER")
        if issuer is None:
            return None
        ca = config.optional("TENANTRY_OIDC_CA_FILE")
        return cls(
            issuer=issuer,
            audience=config.required("TENANTRY_OIDC_AUDIENCE"),
            jwks_url=config.optional("TENANTRY_OIDC_JWKS_URL"),
            ca_file=config.readable_file("TENANTRY_OIDC_CA_FILE") if ca else None,
        )

    def needs_keys(self, token: str) -> bool:
        """True when checking `token` would first fetch the JWKS (do it off the event loop)."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return False
        return kid not in self._keys and self._may_fetch()

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; AuthenticationError says why one is not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("TOKEN_MALFORMED", "the bearer token is not a JWT") from None
        if header.get("alg") not in ALGORITHMS:
            raise AuthenticationError(
                "TOKEN_ALGORITHM_REFUSED", "the bearer token's algorithm is not accepted"
            )
        key = self._key(str(header.get("kid", "")))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[header["alg"]],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._skew,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("TOKEN_EXPIRED", "the bearer token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("TOKEN_NOT_YET_VALID", "the bearer token is not valid yet") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError(
                "TOKEN_WRONG_ISSUER", "the bearer token is from another issuer"
            ) from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError(
                "TOKEN_WRONG_AUDIENCE", "the bearer token is not meant for this service"
            ) from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError(
                "TOKEN_BAD_SIGNATURE", "the bearer token's signature is wrong"
            ) from None
        except jwt.PyJWTError:
            raise AuthenticationError("TOKEN_INVALID", "the bearer token is not valid") from None
        return Principal(id=f"{claims['iss']}#{claims['sub']}", kind="token", claims=claims)

    def _key(self, kid: str) -> Any:
        key = self._keys.get(kid)
        if key is None and self._may_fetch():
            self._fetch()
            key = self._keys.get(kid)
        if key is None:
            raise AuthenticationError("TOKEN_UNKNOWN_KEY", "the bearer token is signed with an unknown key")
        return key.key

    def _may_fetch(self) -> bool:
        return time.monotonic() - self._fetched_at >= JWKS_REFRESH_INTERVAL

    def _fetch(self) -> None:
        with self._lock:
            if not self._may_fetch():
                return  # another thread fetched while this one waited
            try:
                with httpx.Client(timeout=JWKS_TIMEOUT, verify=self._verify) as http:
                    url = self._jwks_url or self._discover(http)
                    reply = http.get(url)
                    reply.raise_for_status()
                    keys = jwt.PyJWKSet.from_dict(reply.json()).keys
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as err:
                # Back off as after a success: a dead issuer is asked once per interval, not per call.
                self._fetched_at = time.monotonic()
                raise IssuerUnavailable(
                    f"cannot fetch the keys of {self.issuer}: {type(err).__name__}"
                ) from None
            self._keys = {str(k.key_id): k for k in keys if k.key_id}
            self._fetched_at = time.monotonic()

    def _discover(self, http: httpx.Client) -> str:
        reply = http.get(f"{self.issuer}/.well-known/openid-configuration")
        reply.raise_for_status()
        self._jwks_url = str(reply.json()["jwks_uri"])
        return self._jwks_url


# --- the access policy --------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """Roles for the principals one rule matches, for all tenants or some."""

    roles: tuple[str, ...]
    permissions: frozenset[int]
    certificate: str | None = None
    issuer: str | None = None
    subject: str | None = None
    claim: str | None = None
    value: str | None = None
    tenants: frozenset[str] | None = None
    tenants_claim: str | None = None

    def matches(self, principal: Principal) -> bool:
        if self.certificate is not None:
            if principal.kind != "certificate":
                return False
            if self.certificate.endswith("/*"):
                return any(n.startswith(self.certificate[:-1]) for n in principal.names)
            return self.certificate in principal.names
        if principal.kind != "token" or principal.claims.get("iss") != self.issuer:
            return False
        if self.subject is not None and principal.claims.get("sub") != self.subject:
            return False
        if self.claim is not None:
            found = _claim(principal.claims, self.claim)
            values = found if isinstance(found, list) else [found]
            return self.value in [str(v) for v in values if v is not None]
        return True

    def tenants_of(self, principal: Principal) -> frozenset[str] | None:
        """The tenants this grant covers for `principal`; None is all of them."""
        if self.tenants_claim is None:
            return self.tenants
        found = _claim(principal.claims, self.tenants_claim)
        values = found if isinstance(found, list) else [found]
        return frozenset(str(v) for v in values if isinstance(v, str) and v)


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


_GRANT_KEYS = {"roles", "certificate", "issuer", "subject", "claim", "value", "tenants", "tenants_claim"}


class AccessPolicy:
    """The grants of the access policy file (TENANTRY_ACCESS_POLICY_FILE)."""

    def __init__(self, grants: list[Grant]) -> None:
        self.grants = grants

    @classmethod
    def from_env(cls) -> AccessPolicy:
        return cls.load(config.readable_file("TENANTRY_ACCESS_POLICY_FILE"))

    @classmethod
    def load(cls, path: Path) -> AccessPolicy:
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"the access policy {path} cannot be read: {err}") from None
        extra = set(document) - {"grants"}
        if extra:
            raise ConfigError(f"the access policy {path} has unknown sections: {', '.join(sorted(extra))}")
        return cls([_grant(path, i, g) for i, g in enumerate(document.get("grants", []))])

    def scope(self, principal: Principal, permission: int) -> frozenset[str] | None:
        """The tenants on which `principal` has `permission`: None for all, an
        empty set for none."""
        if principal.kind == "unauthenticated":
            return None
        tenants: set[str] = set()
        for grant in self.grants:
            if permission in grant.permissions and grant.matches(principal):
                covered = grant.tenants_of(principal)
                if covered is None:
                    return None
                tenants |= covered
        return frozenset(tenants)

    def allows(self, principal: Principal, permission: int, tenant_id: str | None) -> bool:
        """Whether `principal` has `permission` on `tenant_id` (None: on every tenant)."""
        scope = self.scope(principal, permission)
        return scope is None or (tenant_id is not None and tenant_id in scope)


def _grant(path: Path, index: int, raw: Any) -> Grant:
    where = f"{path} grants[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} is not a table")
    unknown = set(raw) - _GRANT_KEYS
    if unknown:
        raise ConfigError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    roles = raw.get("roles")
    if not isinstance(roles, list) or not roles or not all(r in ROLES for r in roles):
        raise ConfigError(f"{where}: roles must be a non-empty list of {', '.join(ROLES)}")
    certificate = raw.get("certificate")
    issuer = raw.get("issuer")
    if (certificate is None) == (issuer is None):
        raise ConfigError(f"{where} needs exactly one of certificate or issuer")
    if certificate is not None and any(k in raw for k in ("subject", "claim", "value", "tenants_claim")):
        raise ConfigError(f"{where}: subject, claim, value and tenants_claim apply to token grants only")
    if ("claim" in raw) != ("value" in raw):
        raise ConfigError(f"{where}: claim and value go together")
    if issuer is not None and not any(k in raw for k in ("subject", "claim")):
        raise ConfigError(
            f"{where}: a token grant needs a subject or a claim (an issuer alone matches anyone)"
        )
    tenants = raw.get("tenants")
    if tenants is not None and (
        not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants)
    ):
        raise ConfigError(f"{where}: tenants must be a list of tenant ids")
    if tenants is not None and "tenants_claim" in raw:
        raise ConfigError(f"{where}: tenants and tenants_claim exclude each other")
    return Grant(
        roles=tuple(roles),
        permissions=frozenset().union(*(ROLES[r] for r in roles)),
        certificate=certificate,
        issuer=issuer.rstrip("/") if issuer else None,
        subject=raw.get("subject"),
        claim=raw.get("claim"),
        value=str(raw["value"]) if "value" in raw else None,
        tenants=frozenset(tenants) if tenants is not None else None,
        tenants_claim=raw.get("tenants_claim"),
    )
