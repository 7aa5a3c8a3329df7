"""The dev stack's credentials: a local CA, the API's server certificate, a
developer client certificate with the admin role, and the access policy
that says so. Kept in `<state dir>/secrets`, made once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from libs.devstack.certs import KeyPair, LocalCA

# The developer's identity: the URI SAN of its client certificate.
DEV_ADMIN = "spiffe://tenantry.local/dev/admin"
DEV_ADMIN_CERT = "dev-admin"
POLICY_FILE = "access.toml"
_POLICY = f"""# Who may do what on the dev stack's API (see the README, Access).
# The developer certificate ({DEV_ADMIN_CERT}.pem) may do everything, also delete without a backup.
[[grants]]
certificate = "{DEV_ADMIN}"
roles = ["admin", "break-glass"]
"""


@dataclass(frozen=True)
class DevAccess:
    ca: LocalCA
    server: KeyPair
    admin: KeyPair
    policy_file: Path

    @classmethod
    def create(cls, secrets_dir: Path, *, grants: str = "") -> DevAccess:
        """`grants` adds to the policy (TOML `[[grants]]` tables) when it is first written."""
        ca = LocalCA(secrets_dir)
        policy = secrets_dir / POLICY_FILE
        if not policy.exists():
            policy.write_text(_POLICY + grants)
        return cls(ca, ca.server(), ca.client(DEV_ADMIN_CERT, uri=DEV_ADMIN), policy)

    def api_env(self) -> dict[str, str]:
        """The tenant API's settings: TLS with required client certificates, and the policy."""
        return {
            "TENANTRY_TLS_CERT_FILE": str(self.server.cert),
            "TENANTRY_TLS_KEY_FILE": str(self.server.key),
            "TENANTRY_TLS_CLIENT_CA_FILE": str(self.ca.ca_file),
            "TENANTRY_ACCESS_POLICY_FILE": str(self.policy_file),
        }

    def client_env(self) -> dict[str, str]:
        """What the CLI reads to call the API as the developer."""
        return {
            "TENANTRY_CA_FILE": str(self.ca.ca_file),
            "TENANTRY_CLIENT_CERT_FILE": str(self.admin.cert),
            "TENANTRY_CLIENT_KEY_FILE": str(self.admin.key),
        }

    def channel_credentials(self, client: KeyPair | None = None) -> grpc.ChannelCredentials:
        """Credentials that trust the local CA and present `client` (the developer by default)."""
        pair = client or self.admin
        return grpc.ssl_channel_credentials(self.ca.ca_file.read_bytes(), pair.key_bytes(), pair.cert_bytes())
