"""A tenant from a gRPC call to ACTIVE and back, across the real processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from psycopg.conninfo import conninfo_to_dict
from temporalio.client import Client

from libs import lifecycle
from libs.devstack.mailcatcher import read_messages
from libs.devstack.stack import Stack
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import DNS_ZONE, Providers, create, eventually, settle

State = tenant_pb2.Tenant.State


def mails_to(providers: Providers, tenant_id: str) -> list[str]:
    return [
        str(m["Subject"]) for m in read_messages(providers.maildir) if m["X-Tenantry-Tenant"] == tenant_id
    ]


def assert_no_secrets_leaked(stack: Stack, providers: Providers, tenant_id: str) -> None:
    """The admin's password and the client secret stay inside the identity
    worker: neither they nor their hashes are in the run's history or any log."""
    [(password_hash,)] = providers.sql(
        "SELECT password_hash FROM idp_local.users WHERE tenant_id = %s", tenant_id
    )
    [(secret_hash,)] = providers.sql(
        "SELECT secret_hash FROM idp_local.clients WHERE tenant_id = %s", tenant_id
    )

    async def history() -> str:
        client = await Client.connect(stack.temporal_address, data_converter=stack.data_converter())
        fetched = await client.get_workflow_handle(lifecycle.provision_workflow_id(tenant_id)).fetch_history()
        return fetched.to_json()

    text = asyncio.run(history())
    assert tenant_id in text  # the history is the run's
    logs = "\n".join(p.read_text(errors="replace") for p in stack.log_dir.glob("*.log"))
    for where in (text, logs):
        assert str(password_hash) not in where and str(secret_hash) not in where
        assert "$argon2" not in where and "sha256$" not in where
    assert "password" not in text.lower().replace("update_password", "")
    # Nor is the password of the tenant's database role, which only its secret holds.
    stored = providers.secretsmanager.get_secret_value(SecretId=f"tenantry/tenants/{tenant_id}/database")
    database_password = json.loads(stored["SecretString"])["password"]
    for where in (text, logs):
        assert database_password not in where


def test_each_process_connects_as_its_own_role_or_not_at_all(stack: Stack, providers: Providers) -> None:
    """The facade, the tenant-data worker and the identity store each hold
    sessions as their own role; the other processes are given no DSN."""
    for name in ("orchestrator", "infra", "notification"):
        assert "TENANTRY_DATABASE_URL" not in stack.services[name].env
    users = {
        name: conninfo_to_dict(stack.services[name].env["TENANTRY_DATABASE_URL"])["user"]
        for name in ("tenant_api", "tenantdb", "idp")
    }
    assert users == {"tenant_api": "tenantry_api", "tenantdb": "tenantry_tenantdb", "idp": "tenantry_idp"}
    sessions = {
        user
        for (user,) in providers.sql(
            "SELECT DISTINCT usename::text FROM pg_stat_activity WHERE usename IS NOT NULL"
        )
    }
    assert set(users.values()) <= sessions


def test_tenant_reaches_active_with_real_resources_then_delete_removes_them(
    api: tenant_service_pb2_grpc.TenantServiceStub,
    stack: Stack,
    providers: Providers,
    new_id: Callable[[], str],
) -> None:
    tid = new_id()
    accepted = create(api, tid, domains=[f"app.{tid}.{DNS_ZONE}", f"{tid}.example.com"])
    assert accepted.name == f"tenants/{tid}"
    assert accepted.state in (State.STATE_PENDING, State.STATE_PROVISIONING)

    tenant = settle(api, tid)
    assert tenant.state == State.STATE_ACTIVE, tenant.failure_reason
    assert providers.schema_exists(tid)
    assert providers.sql(
        f"SELECT value FROM tenant_{tid.replace('-', '_')}.settings WHERE key = 'display_name'"
    )
    assert providers.bucket_exists(tid)
    assert providers.dns_names(tid) == {f"{tid}.{DNS_ZONE}", f"app.{tid}.{DNS_ZONE}"}
    assert providers.identity_rows(tid) == 3  # realm, client, admin user
    kinds = {r.kind for r in tenant.resources}
    assert {
        "idp_realm",
        "idp_client",
        "idp_user",
        "db_schema",
        "db_credentials",
        "s3_bucket",
        "dns_record",
    } <= kinds
    assert providers.orphans(tid)["database role"] and providers.orphans(tid)["database secret"]
    eventually(lambda: len(mails_to(providers, tid)) == 1, what="welcome email")

    assert_no_secrets_leaked(stack, providers, tid)

    got = api.GetTenant(tenant_service_pb2.GetTenantRequest(name=f"tenants/{tid}")).tenant
    assert got.state == State.STATE_ACTIVE and got.display_name == "Acme Corp"

    deleting = api.DeleteTenant(
        tenant_service_pb2.DeleteTenantRequest(name=f"tenants/{tid}", hard_delete=True)
    ).tenant
    assert deleting.state == State.STATE_DEPROVISIONING
    gone = settle(api, tid)
    assert gone.state == State.STATE_DEPROVISIONED
    assert not providers.schema_exists(tid)
    assert "database role" not in providers.orphans(tid) and "database secret" not in providers.orphans(tid)
    assert not providers.bucket_exists(tid)
    assert providers.dns_names(tid) == set()
    assert providers.identity_rows(tid) == 0
    assert list(gone.resources) == []
    # Deleting again is harmless and changes nothing.
    again = api.DeleteTenant(tenant_service_pb2.DeleteTenantRequest(name=f"tenants/{tid}")).tenant
    assert again.state == State.STATE_DEPROVISIONED


def test_dns_failure_compensates_and_leaves_nothing_behind(
    api: tenant_service_pb2_grpc.TenantServiceStub, providers: Providers, new_id: Callable[[], str]
) -> None:
    tid = new_id()
    # Someone else already holds the tenant's hostname: a real, permanent DNS conflict.
    providers.route53.change_resource_record_sets(
        HostedZoneId=providers.zone_id(),
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": f"{tid}.{DNS_ZONE}",
                        "Type": "CNAME",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "someone-else.example.net"}],
                    },
                }
            ]
        },
    )
    create(api, tid)
    tenant = settle(api, tid)
    assert tenant.state == State.STATE_PROVISION_FAILED
    assert tenant.failed_step == "create_dns_records"
    assert "points elsewhere" in tenant.failure_reason or "already exists" in tenant.failure_reason
    assert not providers.schema_exists(tid)
    assert not providers.bucket_exists(tid)
    assert providers.identity_rows(tid) == 0
    assert list(tenant.resources) == []
    # The other party's record is untouched.
    assert providers.dns_names(tid) == {f"{tid}.{DNS_ZONE}"}
    eventually(lambda: len(mails_to(providers, tid)) == 1, what="failure email")
