"""Reading back an identity export from the backup location, for the
identity tests of every provider."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import boto3

# Keys no export may hold, whatever their case.
FORBIDDEN_KEYS = ("secret", "privatekey", "hashedsaltedvalue", "password", "credentials", "salt")


def forbidden_keys(value: Any, path: str = "") -> list[str]:
    """Where `value` holds a key named like a secret, at any depth."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            normal = str(key).lower().replace("_", "")
            if "secret" in normal or normal in FORBIDDEN_KEYS:
                found.append(f"{path}/{key}")
            found += forbidden_keys(item, f"{path}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += forbidden_keys(item, f"{path}/{i}")
    return found


def read_export(backup: Any, tenant_id: str, provider: str) -> tuple[str, dict[str, Any]]:
    """The export downloaded from the backup location, checked against its
    description and for secret-like keys; returns its text and its JSON."""
    assert backup.kind == "identity"
    bucket, _, key = backup.uri.removeprefix("s3://").partition("/")
    assert key == f"tenants/{tenant_id}/{key.split('/')[2]}/identity.json"
    got = boto3.client("s3").get_object(Bucket=bucket, Key=key)
    body = got["Body"].read()
    assert got["ContentType"] == "application/json"
    assert (backup.size_bytes, backup.sha256) == (len(body), hashlib.sha256(body).hexdigest())
    document = json.loads(body)
    assert (document["format"], document["tenant_id"], document["provider"]) == (
        "tenantry.identity-export/v1",
        tenant_id,
        provider,
    )
    exported = datetime.fromisoformat(document["exported_at"])
    assert abs((datetime.now(UTC) - exported).total_seconds()) < 120
    assert forbidden_keys(document) == []
    return body.decode(), document
