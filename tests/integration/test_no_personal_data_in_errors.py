"""Error messages of the activities hold no personal data (an admin's email,
a domain): they become failure reasons in the registry and the API, and the
SDK logs a failed activity's message in clear (the payload codec does not
reach logs). The tenant id and a field's place name the problem instead."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from temporalio.exceptions import ApplicationError

from libs.backup import BackupStore
from libs.contracts import IDENTITY, TENANT_DATA
from services.idp.activities import IdentityActivities
from services.idp.providers.local import LocalIdentityStore
from services.tenantdb.activities import TenantDataActivities
from services.tenantdb.providers.postgres import PostgresTenantData
from services.tenantdb.providers.secrets import TenantCredentials
from tenantry.idp.v1 import idp_pb2
from tenantry.tenantdb.v1 import tenantdb_pb2
from tests.integration.conftest import Activities, assert_permanent, new_id
from tests.integration.test_notification import (  # noqa: F401 - refusing_server is a fixture
    activities_for,
    fails_with,
    plaintext,
    refusing_server,
    welcome,
)
from tests.integration.test_tenantdb import tenant


@pytest.fixture(scope="module")
async def identity(database_urls: dict[str, str]) -> AsyncIterator[Activities]:
    store = LocalIdentityStore(database_urls["idp"], max_connections=2)
    await store.open()
    yield Activities(IDENTITY, IdentityActivities(store))
    await store.close()


@pytest.fixture(scope="module")
async def tenant_data(database_urls: dict[str, str], backups: BackupStore) -> AsyncIterator[Activities]:
    store = PostgresTenantData(database_urls["tenantdb"], max_connections=2)
    await store.open()
    credentials = TenantCredentials(database_urls["tenantdb"])
    yield Activities(TENANT_DATA, TenantDataActivities(store, backups=backups, credentials=credentials))
    await store.close()


def test_a_refused_or_deferred_recipient_is_not_in_the_message(
    monkeypatch: pytest.MonkeyPatch,
    refusing_server: str,  # noqa: F811
) -> None:
    notify = activities_for(monkeypatch, plaintext(refusing_server))
    tid = new_id()
    for recipient, error_type in (
        (f"nobody@{tid}.example.com", "InvalidArgument"),
        (f"busy@{tid}.example.com", "ProviderUnavailable"),
    ):
        error = fails_with(error_type, notify, welcome(tid, recipient=recipient))
        assert recipient not in error.message and f"{tid}.example.com" not in error.message


def test_a_recipient_that_is_not_an_address_is_not_in_the_message(
    monkeypatch: pytest.MonkeyPatch,
    refusing_server: str,  # noqa: F811
) -> None:
    notify = activities_for(monkeypatch, plaintext(refusing_server))
    error = fails_with("InvalidArgument", notify, welcome(new_id(), recipient="Ada Quarrendon at home"))
    assert "Quarrendon" not in error.message


async def test_a_domain_of_another_realm_is_not_in_the_conflict(identity: Activities) -> None:
    owner, other = new_id(), new_id()
    domain = f"portal.{owner}.example.org"
    await identity.create_realm(idp_pb2.CreateRealmRequest(tenant_id=owner, domains=[domain]))
    with pytest.raises(ApplicationError) as err:
        await identity.create_realm(idp_pb2.CreateRealmRequest(tenant_id=other, domains=[domain]))
    assert_permanent(err, "Conflict")
    assert domain not in str(err.value) and owner in str(err.value)


async def test_a_domain_another_tenant_holds_is_not_in_the_conflict(tenant_data: Activities) -> None:
    owner, other = new_id(), new_id()
    domain = f"portal.{owner}.example.org"
    await tenant_data.mark_provisioning(
        tenantdb_pb2.MarkProvisioningRequest(tenant=tenant(owner, domains=[domain]), workflow_id="p-1")
    )
    with pytest.raises(ApplicationError) as err:
        await tenant_data.mark_provisioning(
            tenantdb_pb2.MarkProvisioningRequest(tenant=tenant(other, domains=[domain]), workflow_id="p-2")
        )
    assert_permanent(err, "Conflict")
    assert domain not in str(err.value) and owner in str(err.value)
