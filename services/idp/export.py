"""The identity export: one JSON document per tenant and backup, never holding a secret.

Shape (`tenantry.identity-export/v1`): a header (`format`, `tenant_id`,
`exported_at`, `provider`) and the provider's `realm`, `clients`, `users` and
`source` (see `IdentityExport`). Providers leave secrets out of what they
read; this module removes anything secret-like once more, whatever a provider
or a future version of its server returns: keys named like a secret, a
password, a credential, a salted hash, a private key or a token.

Lists of clients and users are sorted and keys are written sorted, so two
exports of an unchanged tenant differ only in `exported_at`.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from services.idp.providers import IdentityExport

FORMAT = "tenantry.identity-export/v1"
KIND = "identity"
FILE = "identity.json"
CONTENT_TYPE = "application/json"

# Compared with the key lower-cased and stripped of everything but letters
# and digits (`client_secret`, `clientSecret` and `secret.creation.time`
# all contain `secret`).
_SECRET_PARTS = ("secret", "privatekey", "hashedsaltedvalue", "credentialdata")
_SECRET_SUFFIXES = ("password", "credential", "credentials")
_SECRET_KEYS = frozenset(
    {"salt", "token", "accesstoken", "refreshtoken", "idtoken", "registrationaccesstoken", "ticket"}
)


def is_secret_key(key: str) -> bool:
    """Whether a key names something an export must never hold."""
    normal = re.sub(r"[^a-z0-9]", "", key.lower())
    return (
        normal in _SECRET_KEYS
        or any(part in normal for part in _SECRET_PARTS)
        or normal.endswith(_SECRET_SUFFIXES)
    )


def without_secrets(value: Any) -> Any:
    """`value` with every secret-like key dropped, at any depth."""
    if isinstance(value, dict):
        return {k: without_secrets(v) for k, v in value.items() if not is_secret_key(str(k))}
    if isinstance(value, list | tuple):
        return [without_secrets(v) for v in value]
    return value


def _sorted(items: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    return sorted(items, key=lambda item: tuple(str(item.get(k) or "") for k in keys))


def document(tenant_id: str, content: IdentityExport, *, exported_at: datetime) -> bytes:
    """The export as UTF-8 JSON."""
    body: dict[str, Any] = {
        "format": FORMAT,
        "tenant_id": tenant_id,
        "exported_at": exported_at.isoformat(timespec="seconds"),
        "provider": content.provider,
        "realm": content.realm,
        "clients": _sorted(content.clients, "client_id", "id"),
        "users": _sorted(content.users, "username", "email", "id"),
    }
    if content.source:
        body["source"] = content.source
    return json.dumps(without_secrets(body), sort_keys=True, indent=1, ensure_ascii=False).encode()
