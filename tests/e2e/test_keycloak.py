"""The whole product with IDP=keycloak: a real Keycloak behind the identity
worker, driven over gRPC; the admin signs in after setting a password from
the emailed link; Keycloak down for 30 s in the middle of a run."""

from __future__ import annotations

import asyncio
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from keycloak import KeycloakAdmin
from temporalio.client import Client

from libs import lifecycle
from libs.devstack.certs import LocalCA
from libs.devstack.keycloak import KeycloakServer
from libs.devstack.mailcatcher import read_messages
from libs.devstack.stack import Stack
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.conftest import RunningKeycloak
from tests.e2e.conftest import Providers, create, eventually, settle
from tests.e2e.test_fault_matrix import Case, run_batch, supervised
from tests.support.keycloak_browser import (
    SET_PASSWORD_LINK,
    SignInRefused,
    claims,
    set_password_from_link,
    sign_in,
)

State = tenant_pb2.Tenant.State


@pytest.fixture(scope="module")
def kc_fault_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rules = tmp_path_factory.mktemp("kc-faults") / "rules.json"
    rules.write_text("{}")
    return rules


@pytest.fixture(scope="module")
def kc_stack(
    tmp_path_factory: pytest.TempPathFactory, keycloak: KeycloakServer, kc_fault_rules: Path, ca: LocalCA
) -> Iterator[Stack]:
    # The session's Keycloak trusts the session CA: the stack's mail catcher gets its certificate from it.
    stack = Stack(
        tmp_path_factory.mktemp("kc-stack"),
        idp="keycloak",
        keycloak=keycloak,
        extra_env={"TENANTRY_FAULT_INJECTION_FILE": str(kc_fault_rules)},
        ca=ca,
    ).start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def kc_api(kc_stack: Stack) -> Iterator[tenant_service_pb2_grpc.TenantServiceStub]:
    with kc_stack.channel() as channel:
        yield tenant_service_pb2_grpc.TenantServiceStub(channel)


def admin_api(keycloak: KeycloakServer, realm: str) -> KeycloakAdmin:
    return KeycloakAdmin(
        server_url=keycloak.url,
        username=keycloak.admin_username,
        password=keycloak.admin_password,
        realm_name=realm,
        user_realm_name="master",
    )


async def provision_history(stack: Stack, tenant_id: str) -> str:
    client = await Client.connect(stack.temporal_address)
    history = await client.get_workflow_handle(lifecycle.provision_workflow_id(tenant_id)).fetch_history()
    return history.to_json()


def realm_names(keycloak: KeycloakServer) -> list[str]:
    return [r["realm"] for r in admin_api(keycloak, "master").get_realms()]


def test_tenant_with_keycloak_reaches_active_and_its_admin_signs_in(
    kc_api: tenant_service_pb2_grpc.TenantServiceStub,
    kc_stack: Stack,
    keycloak: KeycloakServer,
    new_id: Callable[[], str],
) -> None:
    tid = new_id()
    email = f"ada@{tid}.example.com"
    create(kc_api, tid, admin=tenant_pb2.AdminContact(email=email, given_name="Ada", family_name="Lovelace"))
    tenant = settle(kc_api, tid)
    assert tenant.state == State.STATE_ACTIVE, tenant.failure_reason
    realm = f"tenant-{tid}"
    assert {"idp_realm", "idp_client", "idp_user"} <= {r.kind for r in tenant.resources}
    assert realm_names(keycloak).count(realm) == 1

    # Keycloak emails the set-password link through the realm's SMTP settings.
    def link() -> list[str]:
        return [
            found
            for message in read_messages(kc_stack.maildir)
            if message["To"] == email
            for found in SET_PASSWORD_LINK.findall(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
        ]

    eventually(lambda: len(link()) == 1, what="the set-password email")
    password = secrets.token_urlsafe(16)
    set_password_from_link(link()[0], password)
    admin = admin_api(keycloak, realm)
    client = admin.get_client(admin.get_client_id(f"{tid}-app"))
    secret = admin.get_client_secrets(client["id"])["value"]
    tokens = sign_in(
        keycloak, realm, f"{tid}-app", secret, f"https://{tid}.example.com/oauth/callback", email, password
    )
    access = claims(tokens["access_token"])
    assert (access["azp"], access["email"]) == (f"{tid}-app", email)

    # The secret scan: no credential of this run is in its history or any log.
    history = asyncio.run(provision_history(kc_stack, tid))
    logs = "\n".join(p.read_text(errors="replace") for p in kc_stack.log_dir.glob("*.log"))
    assert tid in history and tid in logs
    for name, value in {
        "Keycloak admin password": keycloak.admin_password,
        "client secret": secret,
        "set-password link": link()[0].split("key=", 1)[1],
        "admin's password": password,
        "access token": tokens["access_token"],
    }.items():
        assert value not in history, f"{name} in workflow history"
        assert value not in logs, f"{name} in a log"

    # Suspended, the admin cannot sign in; resumed, they can again.
    name = f"tenants/{tid}"
    suspended = kc_api.SuspendTenant(tenant_service_pb2.SuspendTenantRequest(name=name)).tenant
    assert suspended.state == State.STATE_SUSPENDED
    assert admin_api(keycloak, "master").get_realm(realm)["enabled"] is False
    with pytest.raises(SignInRefused):
        sign_in(
            keycloak,
            realm,
            f"{tid}-app",
            secret,
            f"https://{tid}.example.com/oauth/callback",
            email,
            password,
        )
    resumed = kc_api.ResumeTenant(tenant_service_pb2.ResumeTenantRequest(name=name)).tenant
    assert resumed.state == State.STATE_ACTIVE
    sign_in(
        keycloak, realm, f"{tid}-app", secret, f"https://{tid}.example.com/oauth/callback", email, password
    )

    kc_api.DeleteTenant(tenant_service_pb2.DeleteTenantRequest(name=name, hard_delete=True))
    gone = settle(kc_api, tid)
    assert gone.state == State.STATE_DEPROVISIONED
    # The identity backup came from Keycloak, without the client secret.
    [export] = [b for b in gone.backups if b.kind == "identity"]
    bucket, _, key = export.uri.removeprefix("s3://").partition("/")
    s3 = boto3.client(
        "s3",
        endpoint_url=kc_stack.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="embedded",
        aws_secret_access_key="embedded",
    )
    exported = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    assert email in exported and secret not in exported
    assert realm not in realm_names(keycloak)
    # Nor the admin's email: the identity worker's look-ups by email carry it
    # in URLs, which the HTTP client logs at INFO (libs/logs.py keeps it quiet).
    logs = "\n".join(p.read_text(errors="replace") for p in kc_stack.log_dir.glob("*.log"))
    for form in (email, urllib.parse.quote(email, safe="")):
        assert form not in logs, f"the admin's email ({form}) in a log"


def test_keycloak_down_for_30s_mid_provision_then_the_run_completes_without_duplicates(
    kc_api: tenant_service_pb2_grpc.TenantServiceStub,
    keycloak_process: RunningKeycloak,
    new_id: Callable[[], str],
) -> None:
    keycloak = keycloak_process.server
    tid = new_id()
    email = f"ada@{tid}.example.com"
    keycloak_process.process.stop()
    try:
        create(kc_api, tid, admin=tenant_pb2.AdminContact(email=email))
        time.sleep(30)
        during = kc_api.GetTenant(tenant_service_pb2.GetTenantRequest(name=f"tenants/{tid}")).tenant
        # Still trying, not failed: the identity step is being retried.
        assert during.state == State.STATE_PROVISIONING
        steps = {s.step: s.status for s in during.steps}
        assert steps["create_realm"] == tenant_pb2.STEP_STATUS_RUNNING
    finally:
        keycloak_process.process.start().wait_ready()
    tenant = settle(kc_api, tid, timeout=180)
    assert tenant.state == State.STATE_ACTIVE, tenant.failure_reason
    realm = f"tenant-{tid}"
    assert realm_names(keycloak).count(realm) == 1
    users = admin_api(keycloak, realm).get_users({"email": email, "exact": True})
    assert len(users) == 1


# The identity steps of the fault matrix (test_fault_matrix.py), against Keycloak.
KEYCLOAK_STEPS = {
    "provision": ("create_realm", "create_oidc_client", "create_admin_user"),
    "deprovision": (
        "disable_access",
        "export_identity",
        "delete_admin_user",
        "delete_oidc_client",
        "delete_realm",
    ),
}


@pytest.mark.parametrize("mode", ["after", "crash_after"])
def test_identity_steps_under_faults_leave_no_realm_behind(
    kc_api: tenant_service_pb2_grpc.TenantServiceStub, kc_stack: Stack, kc_fault_rules: Path, mode: str
) -> None:
    batch = [Case(phase, "pooled", step, mode) for phase, steps in KEYCLOAK_STEPS.items() for step in steps]
    with supervised(kc_stack) as restarted:
        run_batch(batch, kc_api, Providers(kc_stack), kc_fault_rules, restarted, "keycloak")
