"""A tenant's database credentials, kept in AWS Secrets Manager (moto in dev and tests).

One secret per tenant, `tenantry/tenants/<id>/database`, tagged with the
tenant id like the tenant's other resources. It holds what the tenant's
application needs to connect as the tenant's own role (RDS's secret layout:
engine, host, port, dbname, username, password, and the schema). The
password is made here once and read back on every retry, so a role made by
an activity that failed afterwards keeps the password its secret holds;
only the secret's ARN leaves this worker (as a resource record), never the
password: not in a result, a log or an error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

import botocore.exceptions
from psycopg.conninfo import conninfo_to_dict

from libs import aws
from libs.aws import error_code, faults_as_unavailable
from services.tenantdb.providers import Conflict

log = logging.getLogger(__name__)

# The infra domain's tag (services/infra/providers): one scan finds every tenant resource.
TENANT_TAG = "tenantry:tenant-id"
_PASSWORD_BYTES = 32


def secret_name(tenant_id: str) -> str:
    return f"tenantry/tenants/{tenant_id}/database"


@dataclass(frozen=True)
class DatabaseCredentials:
    """The secret's ARN (what may be recorded) and the role's password (what may not)."""

    reference: str
    password: str = field(repr=False)


class TenantCredentials:
    """Gets or makes, and deletes, the tenants' database secrets; AWS settings from the environment."""

    def __init__(self, dsn: str, client: Any | None = None) -> None:
        """`dsn` is the worker's: its host, port and database (not its user) go into each secret."""
        info = conninfo_to_dict(dsn)
        self._connection = {
            "engine": "postgres",
            "host": str(info.get("host") or "localhost"),
            "port": int(info.get("port") or 5432),
            "dbname": str(info.get("dbname") or info.get("user") or ""),
        }
        self._client = client or aws.client("secretsmanager", read_timeout=30)

    async def ensure(self, tenant_id: str, *, username: str, schema: str) -> DatabaseCredentials:
        """The tenant's credentials: those in its secret, or new ones in a new secret."""
        return await asyncio.to_thread(self._ensure, tenant_id, username, schema)

    async def delete(self, tenant_id: str) -> None:
        """Deletes the tenant's secret at once (no recovery window); absent is fine."""
        await asyncio.to_thread(self._delete, tenant_id)

    def _ensure(self, tenant_id: str, username: str, schema: str) -> DatabaseCredentials:
        name = secret_name(tenant_id)
        password = secrets.token_urlsafe(_PASSWORD_BYTES)
        value = {**self._connection, "username": username, "password": password, "schema": schema}
        with faults_as_unavailable("create the database secret"):
            try:
                made = self._client.create_secret(
                    Name=name,
                    SecretString=json.dumps(value),
                    Description=f"Database credentials of tenant {tenant_id}",
                    Tags=[{"Key": TENANT_TAG, "Value": tenant_id}],
                )
                log.info("tenant %s: database secret %s created", tenant_id, name)
                return DatabaseCredentials(reference=made["ARN"], password=password)
            except botocore.exceptions.ClientError as err:
                if error_code(err) != "ResourceExistsException":
                    raise
        # Made by an earlier attempt (or a twin): its password is the role's.
        with faults_as_unavailable("read the database secret"):
            described = self._client.describe_secret(SecretId=name)
            tags = {t["Key"]: t["Value"] for t in described.get("Tags", [])}
            if tags.get(TENANT_TAG) != tenant_id:
                raise Conflict(f"secret {name} exists and is not tenant {tenant_id}'s")
            stored = json.loads(self._client.get_secret_value(SecretId=name)["SecretString"])
        return DatabaseCredentials(reference=described["ARN"], password=str(stored["password"]))

    def _delete(self, tenant_id: str) -> None:
        name = secret_name(tenant_id)
        with faults_as_unavailable("delete the database secret"):
            try:
                described = self._client.describe_secret(SecretId=name)
            except botocore.exceptions.ClientError as err:
                if error_code(err) == "ResourceNotFoundException":
                    return
                raise
            tags = {t["Key"]: t["Value"] for t in described.get("Tags", [])}
            if tags.get(TENANT_TAG) != tenant_id:
                raise Conflict(f"secret {name} is not tenant {tenant_id}'s; left in place")
            try:
                self._client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
            except botocore.exceptions.ClientError as err:
                if error_code(err) != "ResourceNotFoundException":
                    raise
        log.info("tenant %s: database secret %s deleted", tenant_id, name)
