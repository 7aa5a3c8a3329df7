"""The whole product as `make dev` runs it: every process its own OS process."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import botocore.config
import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakGetError
from temporalio.api.enums.v1 import PendingActivityState, PendingWorkflowTaskState
from temporalio.client import Client

from libs import contracts, lifecycle
from libs.devstack.stack import Stack
from services.infra.providers.iac import S3State
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.support.oidc import AUDIENCE, LocalIssuer, local_issuer
from tests.support.tenants import tenant_spec

DNS_ZONE = "tenants.tenantry.test"
# Callers of the e2e tests, each with a client certificate of its own; all may do everything.
E2E_PRINCIPALS = "spiffe://tenantry.local/e2e/"
E2E_GRANTS = f"""
[[grants]]
certificate = "{E2E_PRINCIPALS}*"
roles = ["admin", "break-glass"]
"""


def principal(who: str) -> str:
    """The audit actor of the e2e caller `who` (see the `callers` fixture)."""
    return E2E_PRINCIPALS + who


@pytest.fixture(scope="session")
def fault_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workers' fault-injection rules (see libs/faults.py): none at first."""
    rules = tmp_path_factory.mktemp("faults") / "rules.json"
    rules.write_text("{}")
    return rules


# Seconds between WatchTenant heartbeats on the e2e stack.
WATCH_HEARTBEAT = 2


# The subject of the bearer tokens the client suites (clients/go, clients/ts) present.
CLIENT_SUBJECT = "e2e-clients"


@pytest.fixture(scope="session")
def token_issuer() -> Iterator[LocalIssuer]:
    """An OIDC issuer on loopback whose tokens the e2e stack accepts next to client certificates."""
    with local_issuer() as issuer:
        yield issuer


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, fault_rules: Path, token_issuer: LocalIssuer
) -> Iterator[Stack]:
    token_grant = (
        f'[[grants]]\nissuer = "{token_issuer.url}"\nsubject = "{CLIENT_SUBJECT}"\nroles = ["admin"]\n'
    )
    started = Stack(
        tmp_path_factory.mktemp("stack"),
        extra_env={
            "TENANTRY_OIDC_ISSUER": token_issuer.url,
            "TENANTRY_OIDC_AUDIENCE": AUDIENCE,
            "TENANTRY_FAULT_INJECTION_FILE": str(fault_rules),
            # The fault matrix creates hundreds of tenants in bursts as one caller.
            "TENANTRY_MUTATIONS_PER_MINUTE": "60000",
            "TENANTRY_MUTATION_BURST": "1000",
            # ... and watches each of a batch's cases (up to 50 at once) to its end.
            "TENANTRY_MAX_WATCH_STREAMS": "100",
            # Heartbeats of quiet watch streams every few seconds (not 30), so that a
            # test sees them (test_api_contract.py); skipped by settle() and the CLI alike.
            "TENANTRY_WATCH_HEARTBEAT_SECONDS": str(WATCH_HEARTBEAT),
            # Traces go to the stack's Jaeger, but only of calls that ask for it with
            # a sampled `traceparent` (test_traces.py): the rest of the suite records none.
            "OTEL_TRACES_SAMPLER": "parentbased_always_off",
        },
        grants=E2E_GRANTS + token_grant,
        traces=True,
        # Every process serves Prometheus metrics on a free port of its own (test_metrics.py).
        metrics=True,
    ).start()
    yield started
    started.stop()


_RULES_LOCK = threading.Lock()


def inject_failure(rules: Path, tenant_id: str, rpc: str | list[dict[str, object]] | None) -> None:
    """Sets the fault rules of this tenant in every worker (see libs/faults.py):
    an rpc name makes it fail for good before it runs; None removes them."""
    with _RULES_LOCK:
        current = json.loads(rules.read_text())
        if rpc is None:
            current.pop(tenant_id, None)
        else:
            current[tenant_id] = rpc
        # Workers read the file before every activity: replace it whole, never half-written.
        partial = rules.with_name(rules.name + ".partial")
        partial.write_text(json.dumps(current))
        os.replace(partial, rules)


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[tenant_service_pb2_grpc.TenantServiceStub]:
    """The API as the developer (the dev stack's admin certificate)."""
    with stack.channel() as channel:
        yield tenant_service_pb2_grpc.TenantServiceStub(channel)


@pytest.fixture(scope="session")
def callers(stack: Stack) -> Iterator[Callable[[str], tenant_service_pb2_grpc.TenantServiceStub]]:
    """The API as the e2e caller `who`: its own certificate, so its own audit actor, `principal(who)`."""
    channels: dict[str, grpc.Channel] = {}

    def stub(who: str) -> tenant_service_pb2_grpc.TenantServiceStub:
        if who not in channels:
            assert stack.access is not None
            pair = stack.access.ca.client(f"e2e-{who}", uri=principal(who))
            channels[who] = stack.channel(pair)
        return tenant_service_pb2_grpc.TenantServiceStub(channels[who])

    yield stub
    for channel in channels.values():
        channel.close()


@pytest.fixture(scope="session")
def client_env(stack: Stack, token_issuer: LocalIssuer) -> dict[str, str]:
    """What a client suite in another language (clients/go, clients/ts) reads to
    call the e2e stack: its address, the CA, a client certificate of its own
    (audit actor `principal("clients")`, admin) and a bearer token of
    CLIENT_SUBJECT (admin) to present on top of it."""
    assert stack.access is not None
    pair = stack.access.ca.client("e2e-clients", uri=principal("clients"))
    return {
        "TENANTRY_ADDRESS": stack.grpc_address,
        "TENANTRY_CA_FILE": str(stack.access.ca.ca_file),
        "TENANTRY_CLIENT_CERT_FILE": str(pair.cert),
        "TENANTRY_CLIENT_KEY_FILE": str(pair.key),
        # Valid for the whole session (the suites take minutes, not hours).
        "TENANTRY_BEARER_TOKEN": token_issuer.token(CLIENT_SUBJECT, exp=int(time.time()) + 4 * 3600),
        # The audit actors of the two (libs.auth.Principal.id).
        "TENANTRY_CERT_ACTOR": principal("clients"),
        "TENANTRY_TOKEN_ACTOR": f"{token_issuer.url}#{CLIENT_SUBJECT}",
    }


@pytest.fixture
def new_id() -> Callable[[], str]:
    return lambda: f"e2e-{uuid.uuid4().hex[:10]}"


def create(
    api: tenant_service_pb2_grpc.TenantServiceStub, tenant_id: str, **changes: object
) -> tenant_pb2.Tenant:
    request = tenant_service_pb2.CreateTenantRequest(
        tenant_id=tenant_id, tenant=tenant_spec(tenant_id, **changes)
    )
    return api.CreateTenant(request).tenant


def settle(
    api: tenant_service_pb2_grpc.TenantServiceStub, tenant_id: str, timeout: float = 120
) -> tenant_pb2.Tenant:
    """Follows WatchTenant until the tenant settles; returns its last state."""
    last = None
    request = tenant_service_pb2.WatchTenantRequest(name=f"tenants/{tenant_id}")
    for update in api.WatchTenant(request, timeout=timeout):
        last = update.tenant
    assert last is not None
    return last


def details(err: grpc.RpcError) -> tuple[error_details_pb2.ErrorInfo, list[str]]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status in the trailers"
    info, fields = error_details_pb2.ErrorInfo(), []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
        elif not detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            assert detail.Unpack(info)
    return info, fields


def eventually(
    check: Callable[[], bool], timeout: float = 30, what: str = "condition", *, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout}s"
        time.sleep(interval)


class Providers:
    """Reads the real providers directly, to check what a tenant has."""

    def __init__(self, stack: Stack) -> None:
        assert stack.postgres is not None
        self.keycloak = stack.keycloak if stack.idp == "keycloak" else None
        self.db_url = stack.postgres.url
        aws = {
            "endpoint_url": stack.aws_endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "embedded",
            "aws_secret_access_key": "embedded",
            # As many connections as the fault matrix has cases at once.
            "config": botocore.config.Config(max_pool_connections=32),
        }
        self.s3 = boto3.client("s3", **aws)
        self.route53 = boto3.client("route53", **aws)
        self.ecs = boto3.client("ecs", **aws)
        self.secretsmanager = boto3.client("secretsmanager", **aws)
        # The infra worker's defaults: TENANTRY_IAC_STATE_BUCKET, _KEY_PREFIX, _REGION.
        self.iac_state = S3State(
            self.s3, bucket="tenantry.iac-state", key_prefix="tenants", region="us-east-1", path_style=True
        )
        self.maildir: Path = stack.maildir

    def sql(self, query: str, *params: object) -> list[tuple[object, ...]]:
        with psycopg.connect(self.db_url) as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def schema_exists(self, tenant_id: str) -> bool:
        name = f"tenant_{tenant_id.replace('-', '_')}"
        return bool(self.sql("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", name))

    def identity_rows(self, tenant_id: str) -> int:
        """The tenant's realm, client and users in the local identity store (none with Keycloak)."""
        if self.keycloak is not None:
            return 0
        return sum(
            len(self.sql(f"SELECT 1 FROM idp_local.{table} WHERE tenant_id = %s", tenant_id))
            for table in ("realms", "clients", "users")
        )

    def database_secrets(self, tenant_id: str) -> list[str]:
        """The secrets tagged with the tenant (its database credentials)."""
        pages = self.secretsmanager.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "tag-value", "Values": [tenant_id]}]
        )
        return [
            s["Name"]
            for page in pages
            for s in page["SecretList"]
            if {"Key": "tenantry:tenant-id", "Value": tenant_id} in s.get("Tags", [])
        ]

    def bucket_exists(self, tenant_id: str) -> bool:
        return any(b["Name"] == f"tenantry-{tenant_id}" for b in self.s3.list_buckets()["Buckets"])

    def zone_id(self) -> str:
        zones = self.route53.list_hosted_zones_by_name(DNSName=DNS_ZONE)["HostedZones"]
        [zone] = [z for z in zones if z["Name"].rstrip(".") == DNS_ZONE]
        return str(zone["Id"])

    def dns_names(self, tenant_id: str) -> set[str]:
        """Names of the CNAME records that carry the tenant id as a label."""
        records = self.route53.list_resource_record_sets(HostedZoneId=self.zone_id())["ResourceRecordSets"]
        return {
            r["Name"].rstrip(".")
            for r in records
            if r["Type"] == "CNAME" and tenant_id in r["Name"].split(".")
        }

    def ecs_services(self, tenant_id: str) -> list[str]:
        """The tenant's live ECS services, in any cluster."""
        found = []
        for cluster in self.ecs.list_clusters()["clusterArns"]:
            arns = self.ecs.list_services(cluster=cluster)["serviceArns"]
            if arns:
                # With TAGS, as every caller: moto toggles the tags of its answers per request, for all.
                described = self.ecs.describe_services(cluster=cluster, services=arns, include=["TAGS"])[
                    "services"
                ]
                mine = f"tenant-{tenant_id}"
                found += [
                    s["serviceArn"] for s in described if s["serviceName"] == mine and s["status"] == "ACTIVE"
                ]
        return found

    def task_definitions(self, tenant_id: str) -> list[str]:
        listed = self.ecs.list_task_definitions(familyPrefix=f"tenantry-{tenant_id}", status="ACTIVE")
        return list(listed["taskDefinitionArns"])

    def iac_resources(self, tenant_id: str) -> list[str]:
        """The resources the tenant's IaC state still holds (a destroyed stack's state is empty)."""
        return self.iac_state.resources(tenant_id) or []

    def keycloak_objects(self, tenant_id: str) -> list[str]:
        """The tenant's realm in the stack's Keycloak (realm mode), if it has one."""
        keycloak = self.keycloak
        if keycloak is None:
            return []
        admin = KeycloakAdmin(
            server_url=keycloak.url,
            username=keycloak.admin_username,
            password=keycloak.admin_password,
            realm_name="master",
            user_realm_name="master",
        )
        realm = f"tenant-{tenant_id}"
        # This realm only: listing every realm fails (400) while another test's realm is being deleted.
        try:
            admin.get_realm(realm)
        except KeycloakGetError as err:
            if err.response_code == 404:
                return []
            raise
        return [realm]

    def orphans(self, tenant_id: str) -> dict[str, object]:
        """Everything any provider still holds for the tenant (empty when clean)."""
        found: dict[str, object] = {
            "keycloak realm": self.keycloak_objects(tenant_id),
            "bucket": self.bucket_exists(tenant_id),
            "dns records": self.dns_names(tenant_id),
            "schema": self.schema_exists(tenant_id),
            "database role": self.sql(
                "SELECT rolname FROM pg_roles WHERE rolname = %s", f"tenant_{tenant_id.replace('-', '_')}"
            ),
            "database secret": self.database_secrets(tenant_id),
            "identity rows": self.identity_rows(tenant_id),
            "ecs services": self.ecs_services(tenant_id),
            "task definitions": self.task_definitions(tenant_id),
            "iac state": self.iac_resources(tenant_id),
            "resource records": self.sql(
                "SELECT kind FROM registry.tenant_resources WHERE tenant_id = %s", tenant_id
            ),
        }
        return {what: value for what, value in found.items() if value}


@pytest.fixture(scope="session")
def providers(stack: Stack) -> Providers:
    return Providers(stack)


# Processes a fault test may freeze or kill, with the contract each serves.
VICTIMS = {"infra": contracts.INFRASTRUCTURE, "idp": contracts.IDENTITY, "orchestrator": contracts.WORKFLOWS}


def wait_until_victim_holds_a_task(stack: Stack, tenant_id: str, victim: str, timeout: float = 20) -> str:
    """Waits until Temporal has handed the (frozen) victim a task of this run;
    returns what it holds."""

    async def held() -> str:
        client = await Client.connect(stack.temporal_address, data_converter=stack.data_converter())
        handle = client.get_workflow_handle(lifecycle.provision_workflow_id(tenant_id))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                raw = (await handle.describe()).raw_description
            except Exception:  # not started yet
                raw = None
            if raw is not None and victim == "orchestrator":
                task = raw.pending_workflow_task
                if task.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_STARTED:
                    return "workflow task"
            elif raw is not None:
                prefix = VICTIMS[victim].service + "."
                for pending in raw.pending_activities:
                    started = pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                    if started and pending.activity_type.name.startswith(prefix):
                        return pending.activity_type.name
            await asyncio.sleep(0.05)
        raise AssertionError(f"{victim} was never handed a task of {tenant_id}")

    return asyncio.run(held())
