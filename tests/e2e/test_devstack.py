"""`make dev` as an operator meets it: stopped and started again on its state
dir, with another identity provider, with a port taken. Its own stacks (the
session stack's state dir is fresh and never restarted): one made with a
tenant, then only what each check needs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.devstack.mailcatcher import read_messages
from libs.devstack.processes import free_port
from libs.devstack.stack import SERVICES, Ports, Stack
from libs.devstack.world import StartupError, recorded_identity
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import Providers, create, eventually, settle

State = tenant_pb2.Tenant.State
PROBE = "probe/binary.bin"


@dataclass(frozen=True)
class Made:
    state_dir: Path
    ports: Ports
    tenant_id: str
    world: dict[str, object]
    welcome: str


def aws_world(providers: Providers, tenant_id: str) -> dict[str, object]:
    """What AWS holds for the tenant, ids included (moto draws the zone id and
    the secret's ARN suffix at random: equal after a restart only if replayed
    with the same draws)."""
    return {
        "bucket": providers.bucket_exists(tenant_id),
        "zone id": providers.zone_id(),
        "dns records": providers.dns_names(tenant_id),
        "ecs services": providers.ecs_services(tenant_id),
        "task definitions": providers.task_definitions(tenant_id),
        "database secret arns": sorted(
            providers.secretsmanager.describe_secret(SecretId=name)["ARN"]
            for name in providers.database_secrets(tenant_id)
        ),
        "iac state": providers.iac_resources(tenant_id),
        "iac state object": providers.iac_state.read(tenant_id),
        "binary object": providers.s3.get_object(Bucket=f"tenantry-{tenant_id}", Key=PROBE)["Body"].read(),
    }


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    """A state dir on which the dev stack, as `make dev` runs it (AWS kept),
    made an ACTIVE silo tenant (bucket, DNS records, ECS service, IaC state),
    then stopped."""
    state_dir, ports, tid = tmp_path_factory.mktemp("devstack"), Ports(), "restart-silo"
    stack = Stack(state_dir, ports, keep_aws=True)
    try:
        stack.start()
        with stack.channel() as channel:
            api = tenant_service_pb2_grpc.TenantServiceStub(channel)
            create(api, tid, plan_tier=tenant_pb2.PLAN_TIER_SILO)
            tenant = settle(api, tid)
        assert tenant.state == State.STATE_ACTIVE, tenant.failure_reason
        providers = Providers(stack)
        # Bytes that are no text: the recording must keep a body as it was sent.
        probe = bytes(range(256)) + os.urandom(4096)
        providers.s3.put_object(Bucket=f"tenantry-{tid}", Key=PROBE, Body=probe)
        world = aws_world(providers, tid)
        assert world["binary object"] == probe

        def welcomes() -> list[str]:
            return [
                m.get_body(("plain",)).get_content()  # type: ignore[union-attr]
                for m in read_messages(stack.maildir)
                if m["X-Tenantry-Notice"] == "NOTICE_KIND_WELCOME" and m["X-Tenantry-Tenant"] == tid
            ]

        eventually(lambda: bool(welcomes()), what="the welcome email")  # sent after ACTIVE
        [welcome] = welcomes()
    finally:
        stack.stop()
    assert world["bucket"] and world["dns records"] and world["ecs services"] and world["iac state"]
    yield Made(state_dir, ports, tid, world, welcome)


def desired_count(providers: Providers, tenant_id: str) -> int:
    [arn] = providers.ecs_services(tenant_id)
    cluster = arn.split("/")[1]
    [service] = providers.ecs.describe_services(cluster=cluster, services=[arn])["services"]
    return int(service["desiredCount"])


def test_aws_state_survives_a_restart_with_the_same_ids(made: Made) -> None:
    again = Stack(made.state_dir, made.ports, keep_aws=True)
    try:
        again.start_embedded()
        providers = Providers(again)
        assert aws_world(providers, made.tenant_id) == made.world
        # What failed in the trial: the next operation on the tenant, which needs its resources.
        for name in SERVICES:
            again.start_service(name)
        with again.channel() as channel:
            api = tenant_service_pb2_grpc.TenantServiceStub(channel)
            name = f"tenants/{made.tenant_id}"
            suspended = api.SuspendTenant(tenant_service_pb2.SuspendTenantRequest(name=name)).tenant
            assert suspended.state == State.STATE_SUSPENDED, suspended.failure_reason
            assert desired_count(providers, made.tenant_id) == 0
            resumed = api.ResumeTenant(tenant_service_pb2.ResumeTenantRequest(name=name)).tenant
            assert resumed.state == State.STATE_ACTIVE, resumed.failure_reason
            assert desired_count(providers, made.tenant_id) > 0
    finally:
        again.stop()


def test_the_local_welcome_promises_no_link(made: Made) -> None:
    text = " ".join(made.welcome.split())
    assert "local identity store" in text
    assert "sends no password link" in text
    assert "link to choose" not in text


def test_another_identity_provider_is_refused_before_it_starts(made: Made) -> None:
    other = Stack(made.state_dir, Ports(), idp="keycloak", keep_aws=True)
    with pytest.raises(StartupError) as refused:
        other.start()
    message = str(refused.value)
    assert "1 tenant(s)" in message and "were made with IDP=local" in message
    assert "make dev IDP=local" in message and "make clean" in message
    assert not (made.state_dir / "keycloak").exists(), "Keycloak was set up before the refusal"
    assert recorded_identity(made.state_dir) == {"idp": "local"}
    assert other.postgres is None and not any(p.running for p in other.embedded.values())


def test_a_lost_aws_state_is_said_plainly(made: Made) -> None:
    lost = made.state_dir / "aws-lost"
    shutil.move(made.state_dir / "aws", lost)  # as a state dir from before recordings were kept
    stack = Stack(made.state_dir, made.ports, keep_aws=True)
    try:
        with pytest.raises(StartupError) as refused:
            stack.start_embedded()
    finally:
        stack.stop()
        shutil.rmtree(made.state_dir / "aws", ignore_errors=True)
        shutil.move(lost, made.state_dir / "aws")
    message = str(refused.value)
    assert f"bucket tenantry-{made.tenant_id} of tenant {made.tenant_id}" in message
    assert "make clean" in message


def test_a_taken_port_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        flags = {
            flag: str(free_port())
            for flag in ("--temporal-port", "--ui-port", "--aws-port", "--smtp-port", "--codec-port")
        }
        done = subprocess.run(
            [sys.executable, "-m", "libs.devstack", "--state-dir", str(tmp_path / "state"),
             "--grpc-port", str(taken), *(x for pair in flags.items() for x in pair)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode != 0
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert f"port {taken} (gRPC API) is in use" in line
    assert "make dev GRPC_PORT=<port>" in line and "--grpc-port" in line
    assert not (tmp_path / "state").exists(), "something started before the check"
