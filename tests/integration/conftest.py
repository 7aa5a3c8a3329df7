"""What the integration tests of the workers share: the activities called through
ActivityEnvironment, the database, the backup location, the infra worker's settings."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from libs.backup import BackupSettings, BackupStore
from libs.contracts import Contract, bind_activities
from libs.devstack import database_roles
from services.infra import providers
from services.infra.activities import InfrastructureActivities
from tenantry.idp.v1 import idp_pb2
from tenantry.tenant.v1 import tenant_pb2
from tests.conftest import Aws


class Activities:
    """Calls the bound Temporal activities by python name, through ActivityEnvironment."""

    def __init__(self, contract: Contract, instance: object) -> None:
        bound = bind_activities(contract, instance)
        self.fns = {rpc.python_name: fn for rpc, fn in zip(contract.rpcs.values(), bound, strict=True)}

    def __getattr__(self, name: str) -> Callable[[Any], Awaitable[Any]]:
        fn = self.fns[name]
        return lambda request: ActivityEnvironment().run(fn, request)


@pytest.fixture(scope="session")
def database_urls(postgres_url: str, state_dir: Path) -> dict[str, str]:
    """Each process's own DSN (tenantdb, tenant_api, idp), as the dev stack makes them:
    the tests run the workers and the facade as their roles, not as the superuser."""
    return database_roles.prepare(postgres_url, state_dir / "secrets")


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    conn = await psycopg.AsyncConnection.connect(postgres_url, autocommit=True)
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
def backups(aws: Aws) -> BackupStore:
    """A backup location in moto with a bucket of the test module's own."""
    return BackupStore(BackupSettings(bucket=f"backups-{uuid.uuid4().hex[:12]}", retention_days=1))


def new_id() -> str:
    return "t-" + uuid.uuid4().hex[:12]


async def fetch(db: psycopg.AsyncConnection, query: str, *params: Any) -> list[tuple]:
    cur = await db.execute(query, params)
    return await cur.fetchall()


def assert_permanent(err: pytest.ExceptionInfo[ApplicationError], error_type: str) -> None:
    assert err.value.type == error_type
    assert err.value.non_retryable is True


async def provision_identity(acts: Activities, tid: str) -> tuple[str, str, str]:
    """Realm, client and admin (boss@<tid>.example.com) through the identity
    activities; returns their ids."""
    realm = await acts.create_realm(
        idp_pb2.CreateRealmRequest(tenant_id=tid, display_name="Acme Corp", domains=[f"{tid}.example.com"])
    )
    client = await acts.create_oidc_client(
        idp_pb2.CreateOidcClientRequest(
            tenant_id=tid,
            redirect_uris=[f"https://{tid}.example.com/callback"],
            web_origins=[f"https://{tid}.example.com"],
        )
    )
    admin = tenant_pb2.AdminContact(email=f"boss@{tid}.example.com", given_name="Ada", family_name="Boss")
    user = await acts.create_admin_user(idp_pb2.CreateAdminUserRequest(tenant_id=tid, admin=admin))
    return realm.realm_id, client.client_id, user.user_id


@pytest.fixture(scope="module")
def s3(aws: Aws) -> Any:
    return boto3.client("s3")


@pytest.fixture(scope="module")
def route53(aws: Aws) -> Any:
    return boto3.client("route53")


@pytest.fixture(scope="module")
def settings(aws: Aws, tmp_path_factory: pytest.TempPathFactory) -> providers.InfraSettings:
    """The infra worker's settings against the session's moto; IaC state in a bucket of its own."""
    with pytest.MonkeyPatch.context() as env:
        # Not the default ./.state/iac: tests leave nothing in the work tree.
        env.setenv("TENANTRY_IAC_STATE_DIR", str(tmp_path_factory.mktemp("iac")))
        env.setenv("TENANTRY_IAC_STATE_BUCKET", f"iac-state.{uuid.uuid4().hex[:12]}")
        return providers.InfraSettings.from_env()


@pytest.fixture(scope="module")
def built(settings: providers.InfraSettings) -> providers.Providers:
    return providers.from_env(settings)


@pytest.fixture(scope="module")
def infra(built: providers.Providers, settings: providers.InfraSettings) -> InfrastructureActivities:
    return InfrastructureActivities(built, settings)
