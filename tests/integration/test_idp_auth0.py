"""The identity activities on the `auth0` provider, against the fake Auth0 in tests/fakes.

There is no Auth0 server here: the fake implements the documented shapes of
the Management API endpoints the adapter uses, and state is read back from it.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from libs.backup import BackupStore
from libs.config import ConfigError
from libs.contracts import IDENTITY
from libs.devstack.mailcatcher import read_messages
from services.idp.activities import IdentityActivities
from services.idp.providers import auth0
from services.idp.providers.auth0 import Auth0IdentityProvider, Auth0Settings
from tenantry.idp.v1 import idp_pb2 as pb
from tenantry.tenant.v1 import tenant_pb2
from tests.conftest import MailCatcher
from tests.fakes.auth0 import PASSWORD_REALM_GRANT, FakeAuth0
from tests.integration.conftest import Activities, assert_permanent, new_id
from tests.integration.conftest import provision_identity as provision
from tests.support.identity_export import read_export

CONNECTION = "Username-Password-Authentication"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAuth0]:
    server = FakeAuth0().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def healthy(fake: FakeAuth0) -> Iterator[None]:
    yield
    fake.fail_with = None
    if not fake.running:
        fake.start()


def settings(fake: FakeAuth0, **changes: Any) -> Auth0Settings:
    values = {
        "domain": fake.domain,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "base_url": fake.url,
        **changes,
    }
    return Auth0Settings(**values)


@pytest.fixture
async def provider(fake: FakeAuth0) -> AsyncIterator[Auth0IdentityProvider]:
    idp = Auth0IdentityProvider(settings(fake), timeout=2.0)
    await idp.open()
    yield idp
    await idp.close()


@pytest.fixture
def acts(provider: Auth0IdentityProvider) -> Activities:
    return Activities(IDENTITY, IdentityActivities(provider))


def boss(tid: str) -> str:
    return f"boss@{tid}.example.com"  # as provision_identity makes it


def admin(email: str) -> tenant_pb2.AdminContact:
    return tenant_pb2.AdminContact(email=email, given_name="Ada", family_name="Boss")


def snapshot(fake: FakeAuth0) -> Any:
    with fake.lock:
        state = copy.deepcopy(fake.state)
    return {k: v for k, v in vars(state).items()}


def orgs_named(fake: FakeAuth0, name: str) -> list[dict[str, Any]]:
    return [o for o in fake.state.orgs.values() if o["name"] == name]


def apps_named(fake: FakeAuth0, name: str) -> list[dict[str, Any]]:
    return [c for c in fake.state.clients.values() if c["name"] == name]


def users_with(fake: FakeAuth0, email: str) -> list[dict[str, Any]]:
    return [u for u in fake.state.users.values() if u["email"] == email]


async def test_provisioning_creates_exactly_one_of_each_and_is_idempotent(
    acts: Activities, fake: FakeAuth0
) -> None:
    tid = new_id()
    realm_id, client_id, user_id = await provision(acts, tid)

    [org] = orgs_named(fake, tid)
    assert org["id"] == realm_id and realm_id.startswith("org_")
    assert (org["display_name"], org["metadata"]) == ("Acme Corp", {"tenant_id": tid})
    assert [e["connection_id"] for e in fake.state.enabled_connections[realm_id]] == [fake.connection_id]

    [app] = apps_named(fake, f"{tid}-app")
    assert app["client_id"] == client_id
    assert app["app_type"] == "regular_web"
    assert app["callbacks"] == [f"https://{tid}.example.com/callback"]
    assert app["web_origins"] == app["allowed_origins"] == [f"https://{tid}.example.com"]
    assert app["grant_types"] == ["authorization_code", "refresh_token"]
    assert app["client_metadata"] == {"tenant_id": tid}

    [user] = users_with(fake, boss(tid))
    assert user["user_id"] == user_id and user_id.startswith("auth0|")
    assert (user["given_name"], user["family_name"]) == ("Ada", "Boss")
    assert user["identities"][0]["connection"] == CONNECTION
    assert user["app_metadata"] == {"tenant_id": tid, "tenantry_invited": True}
    assert len(user["password"]) >= 24
    assert fake.state.members[realm_id] == [user_id]
    [role] = [r for r in fake.state.roles.values() if r["name"] == "tenant-admin"]
    assert fake.state.member_roles[(realm_id, user_id)] == [role["id"]]
    [ticket] = [t for t in fake.state.tickets if t["user_id"] == user_id]
    assert ticket["organization_id"] == realm_id and ticket["mark_email_as_verified"] is True

    before = snapshot(fake)
    assert await provision(acts, tid) == (realm_id, client_id, user_id)
    # The email is compared without case, as Auth0 does.
    again = await acts.create_admin_user(
        pb.CreateAdminUserRequest(tenant_id=tid, admin=admin(" " + boss(tid).upper()))
    )
    assert again.user_id == user_id
    assert snapshot(fake) == before


async def test_a_second_run_converges_what_changed(acts: Activities, fake: FakeAuth0) -> None:
    tid = new_id()
    realm_id, client_id, user_id = await provision(acts, tid)
    renamed = pb.CreateRealmRequest(tenant_id=tid, display_name="Acme Corporation")
    assert (await acts.create_realm(renamed)).realm_id == realm_id
    assert fake.state.orgs[realm_id]["display_name"] == "Acme Corporation"
    changed = pb.CreateOidcClientRequest(tenant_id=tid, redirect_uris=["https://new.example/cb"])
    assert (await acts.create_oidc_client(changed)).client_id == client_id
    app = fake.state.clients[client_id]
    assert (app["callbacks"], app["web_origins"]) == (["https://new.example/cb"], [])
    contact = tenant_pb2.AdminContact(email=boss(tid), given_name="Ada", family_name="Lovelace")
    assert (
        await acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=tid, admin=contact))
    ).user_id == user_id
    assert fake.state.users[user_id]["family_name"] == "Lovelace"
    assert len([t for t in fake.state.tickets if t["user_id"] == user_id]) == 1


async def test_a_crash_between_user_and_ticket_is_repaired(acts: Activities, fake: FakeAuth0) -> None:
    tid = new_id()
    realm_id, _, user_id = await provision(acts, tid)
    fake.state.users[user_id]["app_metadata"]["tenantry_invited"] = False
    fake.state.members[realm_id].clear()
    assert (
        await acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=tid, admin=admin(boss(tid))))
    ).user_id == user_id
    assert fake.state.members[realm_id] == [user_id]
    assert len([t for t in fake.state.tickets if t["user_id"] == user_id]) == 2
    assert fake.state.users[user_id]["app_metadata"]["tenantry_invited"] is True


async def test_client_user_access_and_export_need_the_realm(acts: Activities, fake: FakeAuth0) -> None:
    tid = new_id()
    before = snapshot(fake)
    for rpc, request in (
        ("create_oidc_client", pb.CreateOidcClientRequest(tenant_id=tid)),
        ("create_admin_user", pb.CreateAdminUserRequest(tenant_id=tid, admin=admin(boss(tid)))),
        ("disable_tenant_access", pb.DisableTenantAccessRequest(tenant_id=tid)),
        ("enable_tenant_access", pb.EnableTenantAccessRequest(tenant_id=tid)),
        ("export_identity", pb.ExportIdentityRequest(tenant_id=tid, backup_id="run-1")),
    ):
        with pytest.raises(ApplicationError) as err:
            await getattr(acts, rpc)(request)
        assert_permanent(err, "NotFound")
    assert snapshot(fake) == before


async def test_concurrent_creates_make_one_of_each(acts: Activities, fake: FakeAuth0) -> None:
    tid = new_id()
    realm_request = pb.CreateRealmRequest(tenant_id=tid, display_name="Acme")
    realms = await asyncio.gather(*(acts.create_realm(realm_request) for _ in range(3)))
    client_request = pb.CreateOidcClientRequest(tenant_id=tid)
    clients = await asyncio.gather(*(acts.create_oidc_client(client_request) for _ in range(3)))
    user_request = pb.CreateAdminUserRequest(tenant_id=tid, admin=admin(f"{tid}@acme.example"))
    users = await asyncio.gather(*(acts.create_admin_user(user_request) for _ in range(3)))
    assert len({r.realm_id for r in realms}) == len({c.client_id for c in clients}) == 1
    assert len({u.user_id for u in users}) == 1
    assert len(orgs_named(fake, tid)) == len(apps_named(fake, f"{tid}-app")) == 1
    assert len(users_with(fake, f"{tid}@acme.example")) == 1


async def test_deletes_are_idempotent_and_the_realm_takes_everything(
    acts: Activities, fake: FakeAuth0
) -> None:
    tid = new_id()
    realm_id, client_id, user_id = await provision(acts, tid)
    second = await acts.create_admin_user(
        pb.CreateAdminUserRequest(tenant_id=tid, admin=admin(f"second@{tid}.example"))
    )

    for _ in range(2):
        await acts.delete_admin_user(pb.DeleteAdminUserRequest(tenant_id=tid, email=boss(tid).upper()))
        assert user_id not in fake.state.users
        assert fake.state.members[realm_id] == [second.user_id]
    for _ in range(2):
        await acts.delete_oidc_client(pb.DeleteOidcClientRequest(tenant_id=tid))
        assert client_id not in fake.state.clients
    await acts.create_oidc_client(pb.CreateOidcClientRequest(tenant_id=tid))
    for _ in range(2):
        await acts.delete_realm(pb.DeleteRealmRequest(tenant_id=tid))
        assert orgs_named(fake, tid) == [] and apps_named(fake, f"{tid}-app") == []
        assert second.user_id not in fake.state.users

    before = snapshot(fake)
    never = new_id()
    await acts.delete_admin_user(pb.DeleteAdminUserRequest(tenant_id=never, email="nobody@acme.example"))
    await acts.delete_oidc_client(pb.DeleteOidcClientRequest(tenant_id=never))
    await acts.delete_realm(pb.DeleteRealmRequest(tenant_id=never))
    assert snapshot(fake) == before


async def test_objects_of_another_tenant_conflict(acts: Activities, fake: FakeAuth0) -> None:
    owner, other = new_id(), new_id()
    await provision(acts, owner)
    # Objects named for `other` but carrying `owner`'s metadata (made by hand, or by a bug).
    with fake.lock:
        fake._create_org(params={}, body={"name": other, "metadata": {"tenant_id": owner}})
    before = snapshot(fake)
    for rpc, request in (
        ("create_realm", pb.CreateRealmRequest(tenant_id=other)),
        ("delete_realm", pb.DeleteRealmRequest(tenant_id=other)),
        ("disable_tenant_access", pb.DisableTenantAccessRequest(tenant_id=other)),
        ("enable_tenant_access", pb.EnableTenantAccessRequest(tenant_id=other)),
        ("export_identity", pb.ExportIdentityRequest(tenant_id=other, backup_id="run-1")),
    ):
        with pytest.raises(ApplicationError) as err:
            await getattr(acts, rpc)(request)
        assert_permanent(err, "Conflict")
        assert owner in str(err.value)
    assert snapshot(fake) == before

    third = new_id()
    await acts.create_realm(pb.CreateRealmRequest(tenant_id=third))
    with fake.lock:
        fake._create_client(params={}, body={"name": f"{third}-app", "client_metadata": {"tenant_id": owner}})
    before = snapshot(fake)
    with pytest.raises(ApplicationError) as err:
        await acts.create_oidc_client(pb.CreateOidcClientRequest(tenant_id=third))
    assert_permanent(err, "Conflict")
    # The owner's admin email, asked for as the third tenant's admin.
    with pytest.raises(ApplicationError) as err:
        await acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=third, admin=admin(boss(owner))))
    assert_permanent(err, "Conflict")
    with pytest.raises(ApplicationError) as err:
        await acts.delete_admin_user(pb.DeleteAdminUserRequest(tenant_id=third, email=boss(owner)))
    assert_permanent(err, "Conflict")
    assert snapshot(fake) == before


@pytest.mark.parametrize("status", [503, 500, 429])
async def test_a_failing_auth0_is_retryable(acts: Activities, fake: FakeAuth0, status: int) -> None:
    tid = new_id()
    fake.fail_with = status
    with pytest.raises(ApplicationError) as err:
        await acts.create_realm(pb.CreateRealmRequest(tenant_id=tid))
    assert (err.value.type, err.value.non_retryable) == ("ProviderUnavailable", False)
    assert str(status) in str(err.value)
    fake.fail_with = None
    assert orgs_named(fake, tid) == []
    await acts.create_realm(pb.CreateRealmRequest(tenant_id=tid))
    assert len(orgs_named(fake, tid)) == 1


async def test_an_unreachable_auth0_is_retryable(acts: Activities, fake: FakeAuth0) -> None:
    tid = new_id()
    fake.stop()
    for rpc, request in (
        ("create_realm", pb.CreateRealmRequest(tenant_id=tid)),
        ("delete_realm", pb.DeleteRealmRequest(tenant_id=tid)),
    ):
        with pytest.raises(ApplicationError) as err:
            await getattr(acts, rpc)(request)
        assert (err.value.type, err.value.non_retryable) == ("ProviderUnavailable", False)
        assert "unreachable" in str(err.value)
    fake.start()
    await acts.create_realm(pb.CreateRealmRequest(tenant_id=tid))
    assert len(orgs_named(fake, tid)) == 1


async def test_a_bad_request_is_invalid_argument(acts: Activities, fake: FakeAuth0) -> None:
    tid = new_id()
    await acts.create_realm(pb.CreateRealmRequest(tenant_id=tid))
    with pytest.raises(ApplicationError) as err:
        await acts.create_oidc_client(pb.CreateOidcClientRequest(tenant_id=tid, redirect_uris=["not a url"]))
    assert_permanent(err, "InvalidArgument")
    assert "absolute-uri" in str(err.value)
    assert apps_named(fake, f"{tid}-app") == []


async def test_the_token_is_fetched_once_and_renewed_after_a_401(fake: FakeAuth0) -> None:
    idp = Auth0IdentityProvider(settings(fake))
    acts = Activities(IDENTITY, IdentityActivities(idp))
    try:
        issued = fake.tokens_issued
        await provision(acts, new_id())
        await provision(acts, new_id())
        assert fake.tokens_issued == issued + 1
        fake.revoke_tokens()
        first = len(fake.requests)
        await provision(acts, new_id())
        assert fake.tokens_issued == issued + 2
        # Exactly one call answered 401; it was repeated with the new token.
        seen = [(r.method, r.path, r.status) for r in fake.requests[first:]]
        assert [s for s in seen if s[2] == 401] == [seen[0]]
        assert seen[1][1] == "/oauth/token" and seen[2][:2] == seen[0][:2] and seen[2][2] != 401
    finally:
        await idp.close()


async def test_the_token_is_renewed_before_it_expires(fake: FakeAuth0) -> None:
    fake.token_lifetime = 1  # renewed after half its life, as it is shorter than the margin
    idp = Auth0IdentityProvider(settings(fake))
    try:
        issued = fake.tokens_issued
        await idp.delete_realm(new_id())
        await idp.delete_realm(new_id())
        assert fake.tokens_issued == issued + 1
        await asyncio.sleep(0.6)
        await idp.delete_realm(new_id())
        assert fake.tokens_issued == issued + 2
    finally:
        fake.token_lifetime = 86400
        await idp.close()


async def test_wrong_credentials_are_refused_without_the_secret(
    fake: FakeAuth0, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-secret-" + new_id()
    idp = Auth0IdentityProvider(settings(fake, client_secret=wrong))
    acts = Activities(IDENTITY, IdentityActivities(idp))
    try:
        with pytest.raises(ApplicationError) as err:
            await acts.create_realm(pb.CreateRealmRequest(tenant_id=new_id()))
        assert_permanent(err, "InvalidArgument")
        assert "TENANTRY_AUTH0_CLIENT_ID" in str(err.value)
        assert wrong not in str(err.value) and wrong not in caplog.text
        assert wrong not in repr(settings(fake, client_secret=wrong))
    finally:
        await idp.close()


async def test_no_secret_leaves_the_worker(
    acts: Activities, fake: FakeAuth0, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    generated: list[str] = []
    real = auth0._new_password

    def recording() -> str:
        value = real()
        generated.append(value)
        return value

    monkeypatch.setattr(auth0, "_new_password", recording)
    caplog.set_level(logging.DEBUG)
    first = len(fake.requests)
    tid = new_id()
    responses = [*await provision(acts, tid), *await provision(acts, tid)]
    with pytest.raises(ApplicationError) as err:  # an error on the user path carries no secret either
        fake.fail_with = 503
        await acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=tid, admin=admin(boss(tid))))
    fake.fail_with = None

    [password] = generated
    requests = fake.requests[first:]
    carrying = [r for r in requests if password in r.body or password in r.query or password in r.path]
    assert [(r.method, r.path) for r in carrying] == [("POST", "/api/v2/users")]
    assert caplog.records, "the adapter logs what it does"
    tickets = [t["ticket"] for t in fake.state.tickets]
    app_secrets = [c["client_secret"] for c in fake.state.clients.values()]
    tokens = list(fake._valid_tokens)
    for secret in [password, fake.client_secret, *tickets, *app_secrets, *tokens]:
        assert secret not in caplog.text
        assert secret not in str(responses)
        assert secret not in str(err.value)
    # The application's secret is never even asked for.
    assert all(app_secret not in str(r) for r in requests for app_secret in app_secrets)


async def test_tickets_go_to_the_delivery_hook_only(
    fake: FakeAuth0, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    delivered: list[tuple[str, str]] = []

    async def deliver(email: str, url: str) -> None:
        delivered.append((email, url))

    idp = Auth0IdentityProvider(settings(fake), deliver_ticket=deliver)
    acts = Activities(IDENTITY, IdentityActivities(idp))
    try:
        tid = new_id()
        await provision(acts, tid)
        await provision(acts, tid)
    finally:
        await idp.close()
    [(email, url)] = delivered
    assert email == boss(tid)
    assert url == fake.state.tickets[-1]["ticket"]
    assert url not in caplog.text


# -- suspension and export ------------------------------------------------------


def sign_in(fake: FakeAuth0, client_id: str, email: str, password: str) -> httpx.Response:
    """A user signing in to the tenant's application with a password (password-realm grant)."""
    return httpx.post(
        f"{fake.url}/oauth/token",
        json={
            "grant_type": PASSWORD_REALM_GRANT,
            "client_id": client_id,
            "client_secret": fake.state.clients[client_id]["client_secret"],
            "username": email,
            "password": password,
            "realm": CONNECTION,
            "scope": "openid",
        },
    )


def with_password(fake: FakeAuth0, user_id: str) -> str:
    """Gives the user a password they know (as the set-password link would)."""
    password = "Pw-" + new_id()
    with fake.lock:
        fake.state.users[user_id]["password"] = password
    return password


async def test_disabling_blocks_exactly_the_tenants_members_and_enabling_unblocks_them(
    acts: Activities, fake: FakeAuth0
) -> None:
    tid, neighbour = new_id(), new_id()
    realm_id, client_id, user_id = await provision(acts, tid)
    with fake.lock:
        fake.state.clients[client_id]["grant_types"].append(PASSWORD_REALM_GRANT)
    password = with_password(fake, user_id)
    assert sign_in(fake, client_id, boss(tid), password).status_code == 200
    # A member an operator blocked by hand, and a member that is another tenant's user.
    by_hand = await acts.create_admin_user(
        pb.CreateAdminUserRequest(tenant_id=tid, admin=admin(f"blocked@{tid}.example"))
    )
    _, _, neighbours_user = await provision(acts, neighbour)
    with fake.lock:
        fake.state.users[by_hand.user_id]["blocked"] = True
        fake.state.members[realm_id].append(neighbours_user)
    untouched = copy.deepcopy([fake.state.users[by_hand.user_id], fake.state.users[neighbours_user]])

    states = []
    for _ in range(2):
        await acts.disable_tenant_access(pb.DisableTenantAccessRequest(tenant_id=tid))
        states.append(snapshot(fake))
    assert states[0] == states[1], "disabling twice is disabling once"
    user = fake.state.users[user_id]
    assert (user["blocked"], user["app_metadata"]["tenantry_blocked"]) == (True, tid)
    assert fake.state.orgs[realm_id]["metadata"] == {"tenant_id": tid, "tenantry_access": "disabled"}
    refused = sign_in(fake, client_id, boss(tid), password)
    assert (refused.status_code, refused.json()["error_description"]) == (401, "user is blocked")
    assert [fake.state.users[by_hand.user_id], fake.state.users[neighbours_user]] == untouched
    # A user made while the tenant is disabled is blocked as well.
    late = await acts.create_admin_user(
        pb.CreateAdminUserRequest(tenant_id=tid, admin=admin(f"late@{tid}.example"))
    )
    assert fake.state.users[late.user_id]["blocked"] is True
    # Provisioning steps run again (a retried step) do not lift the suspension.
    disabled = snapshot(fake)
    await provision(acts, tid)
    assert snapshot(fake) == disabled

    states = []
    for _ in range(2):
        await acts.enable_tenant_access(pb.EnableTenantAccessRequest(tenant_id=tid))
        states.append(snapshot(fake))
    assert states[0] == states[1], "enabling twice is enabling once"
    for uid in (user_id, late.user_id):
        assert fake.state.users[uid]["blocked"] is False
        assert "tenantry_blocked" not in fake.state.users[uid]["app_metadata"]
    assert fake.state.orgs[realm_id]["metadata"] == {"tenant_id": tid, "tenantry_access": "enabled"}
    assert [fake.state.users[by_hand.user_id], fake.state.users[neighbours_user]] == untouched
    assert sign_in(fake, client_id, boss(tid), password).status_code == 200


async def test_export_holds_the_organization_application_and_members_without_secrets(
    provider: Auth0IdentityProvider, fake: FakeAuth0, backups: BackupStore
) -> None:
    acts = Activities(IDENTITY, IdentityActivities(provider, backups=backups))
    tid, neighbour = new_id(), new_id()
    realm_id, client_id, user_id = await provision(acts, tid)
    _, _, neighbours_user = await provision(acts, neighbour)
    with fake.lock:
        fake.state.members[realm_id].append(neighbours_user)
    password = with_password(fake, user_id)

    response = await acts.export_identity(pb.ExportIdentityRequest(tenant_id=tid, backup_id="run-1"))
    assert response.backup.uri == f"s3://{backups.settings.bucket}/tenants/{tid}/run-1/identity.json"
    text, document = read_export(response.backup, tid, "auth0")
    app_secrets = [c["client_secret"] for c in fake.state.clients.values()]
    for secret in [password, fake.client_secret, *app_secrets, *fake._valid_tokens]:
        assert secret not in text
    assert (document["realm"]["id"], document["realm"]["name"], document["realm"]["display_name"]) == (
        realm_id,
        tid,
        "Acme Corp",
    )
    assert document["realm"]["enabled"] is True
    [client] = document["clients"]
    assert client["client_id"] == client_id
    assert client["redirect_uris"] == [f"https://{tid}.example.com/callback"]
    assert client["web_origins"] == [f"https://{tid}.example.com"]
    assert client["settings"]["grant_types"] == ["authorization_code", "refresh_token"]
    [user] = document["users"]  # the neighbour's user, a member too, is not this tenant's
    assert (user["id"], user["email"], user["given_name"], user["enabled"]) == (
        user_id,
        boss(tid),
        "Ada",
        True,
    )
    assert user["attributes"]["app_metadata"]["tenant_id"] == tid
    assert [r["name"] for r in user["roles"]["organization"]] == ["tenant-admin"]
    assert user["identities"] == [
        {"connection": CONNECTION, "provider": "auth0", "user_id": user_id.split("|")[1], "isSocial": False}
    ]

    await acts.disable_tenant_access(pb.DisableTenantAccessRequest(tenant_id=tid))
    again = await acts.export_identity(pb.ExportIdentityRequest(tenant_id=tid, backup_id="run-1"))
    assert again.backup.uri == response.backup.uri
    _, second = read_export(again.backup, tid, "auth0")
    assert second["realm"]["enabled"] is False
    assert [u["enabled"] for u in second["users"]] == [False]


def test_from_env(monkeypatch: pytest.MonkeyPatch, fake: FakeAuth0) -> None:
    for name in ("DOMAIN", "CLIENT_ID", "CLIENT_SECRET", "CONNECTION", "ADMIN_ROLE", "BASE_URL"):
        monkeypatch.delenv(f"TENANTRY_AUTH0_{name}", raising=False)
    monkeypatch.setenv("TENANTRY_AUTH0_CLIENT_ID", fake.client_id)
    monkeypatch.setenv("TENANTRY_AUTH0_CLIENT_SECRET", fake.client_secret)
    with pytest.raises(ConfigError, match="TENANTRY_AUTH0_DOMAIN"):
        Auth0IdentityProvider.from_env()
    monkeypatch.setenv("TENANTRY_AUTH0_DOMAIN", "https://bad/")
    with pytest.raises(ConfigError, match="TENANTRY_AUTH0_DOMAIN"):
        Auth0IdentityProvider.from_env()
    monkeypatch.setenv("TENANTRY_AUTH0_DOMAIN", fake.domain)
    monkeypatch.delenv("TENANTRY_AUTH0_CLIENT_SECRET")
    with pytest.raises(ConfigError, match="TENANTRY_AUTH0_CLIENT_SECRET") as err:
        Auth0IdentityProvider.from_env()
    assert fake.client_secret not in str(err.value)
    monkeypatch.setenv("TENANTRY_AUTH0_CLIENT_SECRET", fake.client_secret)
    monkeypatch.setenv("TENANTRY_AUTH0_BASE_URL", "ftp://x")
    with pytest.raises(ConfigError, match="TENANTRY_AUTH0_BASE_URL"):
        Auth0IdentityProvider.from_env()
    monkeypatch.setenv("TENANTRY_AUTH0_BASE_URL", fake.url)
    idp = Auth0IdentityProvider.from_env()
    assert idp._settings == settings(fake)
    assert (idp._settings.connection, idp._settings.admin_role) == (CONNECTION, "tenant-admin")


async def test_from_env_reaches_auth0(monkeypatch: pytest.MonkeyPatch, fake: FakeAuth0) -> None:
    monkeypatch.setenv("TENANTRY_AUTH0_DOMAIN", fake.domain)
    monkeypatch.setenv("TENANTRY_AUTH0_CLIENT_ID", fake.client_id)
    monkeypatch.setenv("TENANTRY_AUTH0_CLIENT_SECRET", fake.client_secret)
    monkeypatch.setenv("TENANTRY_AUTH0_BASE_URL", fake.url)
    monkeypatch.setenv("TENANTRY_AUTH0_CLIENT_SECRET", "wrong-secret")
    idp = Auth0IdentityProvider.from_env()
    try:
        with pytest.raises(ConfigError, match="refused the TENANTRY_AUTH0_") as raised:
            await idp.open()
        assert "wrong-secret" not in str(raised.value)
    finally:
        await idp.close()
    monkeypatch.setenv("TENANTRY_AUTH0_CLIENT_SECRET", fake.client_secret)
    monkeypatch.setenv("TENANTRY_AUTH0_CONNECTION", "no-such-connection")
    idp = Auth0IdentityProvider.from_env()
    try:
        with pytest.raises(ConfigError, match="TENANTRY_AUTH0_CONNECTION"):
            await idp.open()
    finally:
        await idp.close()


async def test_the_admin_gets_the_set_password_link_by_email_from_the_worker(
    fake: FakeAuth0, mail: MailCatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "DOMAIN": fake.domain,
        "CLIENT_ID": fake.client_id,
        "CLIENT_SECRET": fake.client_secret,
        "BASE_URL": fake.url,
    }.items():
        monkeypatch.setenv(f"TENANTRY_AUTH0_{name}", value)
    for name, value in mail.env.items():
        monkeypatch.setenv(name, value)
    idp = Auth0IdentityProvider.from_env()
    await idp.open()
    try:
        acts = Activities(IDENTITY, IdentityActivities(idp))
        tid = new_id()
        await acts.create_realm(pb.CreateRealmRequest(tenant_id=tid, display_name="Acme"))
        await acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=tid, admin=admin(boss(tid))))
    finally:
        await idp.close()
    [ticket] = [t["ticket"] for t in fake.state.tickets if t.get("organization_id")][-1:]
    [message] = [m for m in read_messages(mail.maildir) if m["To"] and boss(tid) in str(m["To"])]
    assert message["X-Tenantry-Notice"] == "SET_PASSWORD"
    assert ticket in message.get_content()
