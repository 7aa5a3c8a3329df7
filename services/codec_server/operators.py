"""Who may use the codec server: operators, by OIDC bearer token (checked as
the API checks it, with the same access policy) or, in the dev stack, by a
sign-in secret. The HTTP side is server.py."""

from __future__ import annotations

import hmac
import logging
from typing import Protocol

from libs import auth, config
from libs.auth import AccessPolicy, AuthenticationError, IssuerUnavailable, TokenVerifier

log = logging.getLogger(__name__)


class Unauthenticated(Exception):
    """No credentials, or credentials that do not verify: 401."""


class Forbidden(Exception):
    """A verified caller who is not an operator: 403."""


class Authorizer(Protocol):
    """Who may use the codec server: verifies the caller and checks the operator role."""

    def authorize(self, authorization: str | None, cookie: str | None) -> str:
        """The operator the request's credentials name.

        Args:
            authorization: the `Authorization` header, if any.
            cookie: the `Cookie` header, if any (this server's own session
                cookie is checked before the authorizer is asked).

        Raises:
            Unauthenticated: no credentials, or ones that do not verify.
            Forbidden (or PermissionError): a caller who is not an operator.
        """
        ...


class AuthUnavailable(Exception):
    """The token issuer's keys cannot be fetched: 503, try again."""


def _bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class OperatorTokens:
    """OIDC bearer tokens, verified by libs.auth; the access policy must give
    the caller the operator role (PERMISSION_OPERATE) on every tenant, as a
    codec server decodes the payloads of every tenant's runs."""

    def __init__(self, tokens: TokenVerifier, policy: AccessPolicy) -> None:
        self.tokens = tokens
        self.policy = policy

    def authorize(self, authorization: str | None, cookie: str | None) -> str:
        token = _bearer(authorization)
        if token is None:
            raise Unauthenticated
        try:
            principal = self.tokens.verify(token)
        except AuthenticationError as err:
            log.info("refused a token: %s", err.reason)
            raise Unauthenticated from None
        except IssuerUnavailable:
            raise AuthUnavailable from None
        if not self.policy.allows(principal, auth.OPERATE, None):
            log.info("refused %s: not an operator of every tenant", principal.id)
            raise Forbidden
        return principal.id


class LocalSignIn:
    """The dev stack's operator: whoever holds the sign-in secret in its state
    directory (TENANTRY_CODEC_SIGN_IN_FILE, made beside the payload key ring,
    which decrypts everything anyway). The dev server's UI has no login and so
    no token; this is what the operator pastes into /login once."""

    PRINCIPAL = "local-operator"

    def __init__(self, secret: str) -> None:
        if len(secret) < 32:
            raise config.ConfigError(
                "TENANTRY_CODEC_SIGN_IN_FILE holds too short a secret (32 characters at least)"
            )
        self._secret = secret.encode()

    def authorize(self, authorization: str | None, cookie: str | None) -> str:
        token = _bearer(authorization)
        if token is None or not hmac.compare_digest(token.encode(), self._secret):
            raise Unauthenticated
        return self.PRINCIPAL


class AnyOf:
    """The first authorizer that knows the caller; refusals other than "unknown" stand."""

    def __init__(self, *authorizers: Authorizer) -> None:
        self.authorizers = authorizers

    def authorize(self, authorization: str | None, cookie: str | None) -> str:
        for authorizer in self.authorizers:
            try:
                return authorizer.authorize(authorization, cookie)
            except Unauthenticated:
                continue
        raise Unauthenticated


def authorizer_from_env() -> Authorizer:
    """Operators by OIDC bearer token (TENANTRY_OIDC_ISSUER, _AUDIENCE and the
    access policy TENANTRY_ACCESS_POLICY_FILE, as the API), by the dev stack's
    sign-in secret (TENANTRY_CODEC_SIGN_IN_FILE), or both; with neither the
    process refuses to start."""
    found: list[Authorizer] = []
    tokens = TokenVerifier.from_env()
    if tokens is not None:
        found.append(OperatorTokens(tokens, AccessPolicy.from_env()))
    if config.optional("TENANTRY_CODEC_SIGN_IN_FILE"):
        path = config.readable_file("TENANTRY_CODEC_SIGN_IN_FILE")
        found.append(LocalSignIn(path.read_text().strip()))
    if not found:
        raise config.ConfigError(
            "no way to authenticate operators: set TENANTRY_OIDC_ISSUER (bearer tokens) "
            "or TENANTRY_CODEC_SIGN_IN_FILE (the dev stack's sign-in secret)"
        )
    return found[0] if len(found) == 1 else AnyOf(*found)
