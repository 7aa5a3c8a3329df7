"""OIDC issuers for the authentication tests.

`LocalIssuer` is a small real HTTP issuer (discovery document and JWKS) whose
tokens the tests shape at will: expired, not yet valid, another issuer,
another audience, a rotated key. `KeycloakCallers` is a realm on the suite's
real Keycloak with one service-account client per role, whose tokens come
from the client-credentials grant.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from keycloak import KeycloakAdmin

from libs.devstack.keycloak import KeycloakServer

AUDIENCE = "tenantry-api"


@dataclass
class LocalIssuer:
    """An issuer at `url` (loopback) signing with its current RSA key; `rotate()` makes a new one."""

    url: str = ""
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    current: str = ""
    jwks_fetches: int = 0

    def rotate(self) -> str:
        kid = uuid.uuid4().hex[:8]
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.current = kid
        return kid

    def jwks(self) -> dict[str, Any]:
        found = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            found.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": found}

    def token(self, subject: str = "svc", *, kid: str | None = None, **claims: Any) -> str:
        """A token of this issuer for AUDIENCE, valid for five minutes, with
        `claims` changed (None removes a claim)."""
        now = int(time.time())
        body = {"iss": self.url, "sub": subject, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 300}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        kid = kid or self.current
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@contextmanager
def local_issuer() -> Iterator[LocalIssuer]:
    issuer = LocalIssuer()
    issuer.rotate()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/.well-known/openid-configuration":
                body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
            elif self.path == "/jwks":
                issuer.jwks_fetches += 1
                body = issuer.jwks()
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# Realm role of Keycloak -> Tenantry role, as the access policy maps them.
KEYCLOAK_ROLES = {
    "tenantry-viewer": "viewer",
    "tenantry-operator": "operator",
    "tenantry-admin": "admin",
    "tenantry-break-glass": "break-glass",
}


@dataclass
class KeycloakCallers:
    """Service-account clients of one realm: `client id -> secret`."""

    server: KeycloakServer
    realm: str
    secrets: dict[str, str]

    @property
    def issuer(self) -> str:
        return f"{self.server.url}/realms/{self.realm}"

    def token(self, client_id: str) -> str:
        reply = httpx.post(
            f"{self.issuer}/protocol/openid-connect/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, self.secrets[client_id]),
            timeout=30,
        )
        reply.raise_for_status()
        return str(reply.json()["access_token"])

    def policy(self) -> str:
        """The access policy's grants: a realm role gives the Tenantry role of the same name."""
        return "".join(
            f'\n[[grants]]\nissuer = "{self.issuer}"\nclaim = "realm_access.roles"\n'
            f'value = "{kc_role}"\nroles = ["{role}"]\n'
            for kc_role, role in KEYCLOAK_ROLES.items()
        )


def keycloak_callers(
    server: KeycloakServer, clients: dict[str, list[str]], *, audience: dict[str, str]
) -> KeycloakCallers:
    """A realm with a confidential service-account client per entry of
    `clients` (client id -> its realm roles); each token's `aud` is
    `audience[client id]` (AUDIENCE unless given)."""
    realm = f"callers-{uuid.uuid4().hex[:8]}"
    client_secrets = {cid: secrets.token_urlsafe(24) for cid in clients}
    representation = {
        "realm": realm,
        "enabled": True,
        "roles": {"realm": [{"name": name} for name in KEYCLOAK_ROLES]},
        "clients": [
            {
                "clientId": cid,
                "enabled": True,
                "publicClient": False,
                "secret": client_secrets[cid],
                "serviceAccountsEnabled": True,
                "standardFlowEnabled": False,
                "directAccessGrantsEnabled": False,
                "protocolMappers": [
                    {
                        "name": "audience",
                        "protocol": "openid-connect",
                        "protocolMapper": "oidc-audience-mapper",
                        "config": {
                            "included.custom.audience": audience.get(cid, AUDIENCE),
                            "access.token.claim": "true",
                            "id.token.claim": "false",
                        },
                    }
                ],
            }
            for cid in clients
        ],
        "users": [
            {
                "username": f"service-account-{cid}",
                "enabled": True,
                "serviceAccountClientId": cid,
                "realmRoles": roles,
            }
            for cid, roles in clients.items()
        ],
    }
    admin = KeycloakAdmin(
        server_url=server.url,
        username=server.admin_username,
        password=server.admin_password,
        realm_name="master",
    )
    admin.create_realm(representation)
    return KeycloakCallers(server, realm, client_secrets)
