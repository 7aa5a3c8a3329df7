"""The identity activities on the `keycloak` provider, against a real Keycloak.

Each test runs in both layouts (realm per tenant, organization per tenant)
and reads back what it made through Keycloak's admin API.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from keycloak import KeycloakAdmin
from temporalio.exceptions import ApplicationError

from libs.backup import BackupStore
from libs.config import ConfigError
from libs.contracts import IDENTITY
from libs.devstack.keycloak import KeycloakServer
from libs.devstack.mailcatcher import read_messages
from libs.devstack.processes import free_port
from services.idp import providers
from services.idp.activities import IdentityActivities
from services.idp.providers.keycloak import KeycloakIdentityProvider
from tenantry.idp.v1 import idp_pb2 as pb
from tenantry.tenant.v1 import tenant_pb2
from tests.conftest import MailCatcher
from tests.integration.conftest import Activities, assert_permanent, new_id
from tests.integration.conftest import provision_identity as provision
from tests.support.identity_export import read_export
from tests.support.keycloak_browser import (
    SET_PASSWORD_LINK,
    SignInRefused,
    claims,
    refresh,
    set_password_from_link,
    sign_in,
)

SHARED_REALM = "tenants"


def provider_for(
    keycloak: KeycloakServer, mail: MailCatcher, mode: str, url: str | None = None
) -> KeycloakIdentityProvider:
    host, _, port = mail.address.rpartition(":")
    return KeycloakIdentityProvider(
        url or keycloak.url,
        admin_username=keycloak.admin_username,
        admin_password=keycloak.admin_password,
        mode=mode,
        shared_realm=SHARED_REALM,
        smtp_host=host,
        smtp_port=int(port),
        smtp_username=mail.username,
        smtp_password=mail.password,
    )


@pytest.fixture(scope="module", params=["realm", "organization"])
async def provider(
    request: pytest.FixtureRequest, keycloak: KeycloakServer, mail: MailCatcher
) -> AsyncIterator[KeycloakIdentityProvider]:
    kc = provider_for(keycloak, mail, request.param)
    await kc.open()
    yield kc
    await kc.close()


@pytest.fixture(scope="module")
def acts(provider: KeycloakIdentityProvider) -> Activities:
    return Activities(IDENTITY, IdentityActivities(provider))


class Admin:
    """Reads Keycloak back through its admin API, one logged-in client per realm."""

    def __init__(self, keycloak: KeycloakServer) -> None:
        self.keycloak = keycloak
        self._realms: dict[str, KeycloakAdmin] = {}

    def __call__(self, realm: str) -> KeycloakAdmin:
        if realm not in self._realms:
            self._realms[realm] = KeycloakAdmin(
                server_url=self.keycloak.url,
                username=self.keycloak.admin_username,
                password=self.keycloak.admin_password,
                realm_name=realm,
                user_realm_name="master",
            )
        return self._realms[realm]

    def realm_names(self) -> set[str]:
        return {r["realm"] for r in self("master").get_realms()}


@pytest.fixture(scope="module")
def kc(keycloak: KeycloakServer) -> Iterator[Admin]:
    yield Admin(keycloak)


def realm_of(provider: KeycloakIdentityProvider, tid: str) -> str:
    return f"tenant-{tid}" if provider.mode == "realm" else SHARED_REALM


def admin_contact(tid: str) -> tenant_pb2.AdminContact:
    # Per tenant: in organization mode all admins share one realm, where emails are unique.
    return tenant_pb2.AdminContact(email=f"boss@{tid}.example.com", given_name="Ada", family_name="Boss")


def organizations(kc: Admin, tid: str) -> list[dict[str, Any]]:
    found = kc(SHARED_REALM).get_organizations(
        {"search": tid, "exact": "true", "briefRepresentation": "false"}
    )
    return [org for org in found if org["alias"] == tid]


def snapshot(kc: Admin, provider: KeycloakIdentityProvider, tid: str) -> dict[str, Any]:
    """Everything Keycloak holds for the tenant, as the admin API shows it."""
    realm = realm_of(provider, tid)
    admin = kc(realm)
    users = admin.get_users({"email": f"boss@{tid}.example.com"})
    state: dict[str, Any] = {
        "clients": [c for c in admin.get_clients() if c["clientId"] == f"{tid}-app"],
        "users": users,
        "user_client_roles": [
            admin.get_composite_client_roles_of_user(u["id"], admin.get_client_id("realm-management"))
            for u in users
        ],
        "user_realm_roles": [
            sorted(r["name"] for r in admin.get_realm_roles_of_user(u["id"])) for u in users
        ],
    }
    if provider.mode == "realm":
        state["realm"] = admin.get_realm(realm) if realm in kc.realm_names() else None
    else:
        orgs = organizations(kc, tid)
        state["orgs"] = orgs
        state["members"] = [sorted(m["id"] for m in admin.get_organization_members(o["id"])) for o in orgs]
    return state


async def test_provision_creates_exactly_the_expected_things(
    acts: Activities, provider: KeycloakIdentityProvider, kc: Admin, mail: MailCatcher
) -> None:
    tid = new_id()
    realm_id, client_id, user_id = await provision(acts, tid)
    realm = realm_of(provider, tid)
    admin = kc(realm)

    if provider.mode == "realm":
        assert realm_id == realm == f"tenant-{tid}"
        rep = admin.get_realm(realm)
        assert rep["displayName"] == "Acme Corp"
        assert rep["bruteForceProtected"] and rep["loginWithEmailAllowed"] and rep["resetPasswordAllowed"]
        assert rep["sslRequired"] == "external"
        assert rep["attributes"]["tenant_id"] == tid
    else:
        rep = kc("master").get_realm(SHARED_REALM)
        assert rep["organizationsEnabled"] is True
        (org,) = organizations(kc, tid)
        assert org["id"] == realm_id
        assert (org["name"], org["description"], org["attributes"]) == (
            tid,
            "Acme Corp",
            {"tenant_id": [tid]},
        )
        assert [d["name"] for d in org["domains"]] == [f"{tid}.example.com"]
    assert (rep["smtpServer"]["host"], rep["smtpServer"]["port"]) == tuple(mail.address.split(":"))
    # STARTTLS and AUTH as the catcher requires; Keycloak never reads the password back.
    smtp = rep["smtpServer"]
    assert (smtp["starttls"], smtp["auth"], smtp["user"]) == ("true", "true", mail.username)
    assert smtp.get("password") != mail.password

    (client,) = [c for c in admin.get_clients() if c["clientId"] == f"{tid}-app"]
    assert client_id == f"{tid}-app"
    assert client["redirectUris"] == [f"https://{tid}.example.com/callback"]
    assert client["webOrigins"] == [f"https://{tid}.example.com"]
    assert client["attributes"]["pkce.code.challenge.method"] == "S256"
    assert client["attributes"]["tenant_id"] == tid
    assert client["publicClient"] is False and client["standardFlowEnabled"] is True
    assert client["directAccessGrantsEnabled"] is False and client["implicitFlowEnabled"] is False
    assert admin.get_client_secrets(client["id"])["value"]  # made by Keycloak, never seen by Tenantry

    (user,) = admin.get_users({"email": f"boss@{tid}.example.com"})
    assert user["id"] == user_id
    assert (user["username"], user["email"], user["firstName"], user["lastName"]) == (
        f"boss@{tid}.example.com",
        f"boss@{tid}.example.com",
        "Ada",
        "Boss",
    )
    assert user["attributes"]["tenant_id"] == [tid]
    assert user["emailVerified"] is True and user["enabled"] is True
    assert user["requiredActions"] == ["UPDATE_PASSWORD"]
    assert not admin.get_credentials(user_id), "no password is set by Tenantry"
    management = admin.get_client_id("realm-management")
    direct = {r["name"] for r in admin.get_client_roles_of_user(user_id, management)}
    realm_roles = {r["name"] for r in admin.get_realm_roles_of_user(user_id)}
    if provider.mode == "realm":
        assert direct == {"realm-admin"}
    else:
        # The organization's admin, not an administrator of the shared realm.
        assert direct == set()
        assert f"org-admin-{tid}" in realm_roles
        assert [m["id"] for m in admin.get_organization_members(realm_id)] == [user_id]


async def test_every_activity_twice_changes_nothing(
    acts: Activities, provider: KeycloakIdentityProvider, kc: Admin, mail: MailCatcher
) -> None:
    tid = new_id()
    first = await provision(acts, tid)
    before = snapshot(kc, provider, tid)
    mails_before = len(read_messages(mail.maildir))
    assert await provision(acts, tid) == first
    assert snapshot(kc, provider, tid) == before
    assert len(read_messages(mail.maildir)) == mails_before, "the set-password email is sent once"
    assert len(before["clients"]) == len(before["users"]) == 1
    if provider.mode == "organization":
        assert len(before["orgs"]) == 1


async def test_deprovision_removes_everything_and_repeats(
    acts: Activities, provider: KeycloakIdentityProvider, kc: Admin
) -> None:
    tid = new_id()
    _, _, user_id = await provision(acts, tid)
    realm = realm_of(provider, tid)
    admin = kc(realm)
    email = f"boss@{tid}.example.com"
    for _ in range(2):
        await acts.delete_admin_user(pb.DeleteAdminUserRequest(tenant_id=tid, email=email.upper()))
        assert admin.get_users({"email": email}) == []
    for _ in range(2):
        await acts.delete_oidc_client(pb.DeleteOidcClientRequest(tenant_id=tid))
        assert admin.get_client_id(f"{tid}-app") is None
    # The realm (or organization) takes what is left with it: a second admin, a new client.
    await acts.create_oidc_client(pb.CreateOidcClientRequest(tenant_id=tid))
    await acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=tid, admin=admin_contact(tid)))
    for _ in range(2):
        await acts.delete_realm(pb.DeleteRealmRequest(tenant_id=tid))
        if provider.mode == "realm":
            assert realm not in kc.realm_names()
        else:
            assert organizations(kc, tid) == []
            assert admin.get_users({"q": f"tenant_id:{tid}"}) == []
            assert admin.get_client_id(f"{tid}-app") is None
            assert f"org-admin-{tid}" not in {r["name"] for r in admin.get_realm_roles()}
    never = new_id()
    await acts.delete_admin_user(pb.DeleteAdminUserRequest(tenant_id=never, email=email))
    await acts.delete_oidc_client(pb.DeleteOidcClientRequest(tenant_id=never))
    await acts.delete_realm(pb.DeleteRealmRequest(tenant_id=never))
    assert user_id


async def test_client_user_access_and_export_need_the_realm(acts: Activities) -> None:
    tid = new_id()
    for call in (
        acts.create_oidc_client(pb.CreateOidcClientRequest(tenant_id=tid)),
        acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=tid, admin=admin_contact(tid))),
        acts.disable_tenant_access(pb.DisableTenantAccessRequest(tenant_id=tid)),
        acts.enable_tenant_access(pb.EnableTenantAccessRequest(tenant_id=tid)),
        acts.export_identity(pb.ExportIdentityRequest(tenant_id=tid, backup_id="run-1")),
    ):
        with pytest.raises(ApplicationError) as err:
            await call
        assert_permanent(err, "NotFound")


async def test_what_another_tenant_owns_conflicts(
    acts: Activities, provider: KeycloakIdentityProvider, kc: Admin
) -> None:
    tid, other = new_id(), new_id()
    # The tenant's realm or organization, made by someone else.
    if provider.mode == "realm":
        kc("master").create_realm(
            {"realm": f"tenant-{tid}", "enabled": True, "attributes": {"tenant_id": other}}
        )
    else:
        kc(SHARED_REALM).create_organization(
            {
                "name": tid,
                "alias": tid,
                "attributes": {"tenant_id": [other]},
                "domains": [{"name": f"{tid}.test"}],
            }
        )
    before = snapshot(kc, provider, tid)
    for call in (
        acts.create_realm(pb.CreateRealmRequest(tenant_id=tid, display_name="Mine")),
        acts.delete_realm(pb.DeleteRealmRequest(tenant_id=tid)),
        acts.create_oidc_client(pb.CreateOidcClientRequest(tenant_id=tid)),
        acts.disable_tenant_access(pb.DisableTenantAccessRequest(tenant_id=tid)),
        acts.enable_tenant_access(pb.EnableTenantAccessRequest(tenant_id=tid)),
        acts.export_identity(pb.ExportIdentityRequest(tenant_id=tid, backup_id="run-1")),
    ):
        with pytest.raises(ApplicationError) as err:
            await call
        assert_permanent(err, "Conflict")
        assert other in str(err.value)
    assert snapshot(kc, provider, tid) == before, "the other tenant's realm or organization is untouched"

    # A user with the admin's email that belongs to another tenant.
    owner = new_id()
    await provision(acts, owner)
    taken = f"boss@{owner}.example.com"
    if provider.mode == "realm":
        held = kc(f"tenant-{owner}")
        user = held.get_user(held.get_user_id(taken))
        held.update_user(user["id"], {**user, "attributes": {**user["attributes"], "tenant_id": [other]}})
        victim, realm = owner, f"tenant-{owner}"
    else:
        victim, realm = new_id(), SHARED_REALM
        await acts.create_realm(pb.CreateRealmRequest(tenant_id=victim, domains=[f"{victim}.example.com"]))
    with pytest.raises(ApplicationError) as err:
        await acts.create_admin_user(
            pb.CreateAdminUserRequest(tenant_id=victim, admin=tenant_pb2.AdminContact(email=taken))
        )
    assert_permanent(err, "Conflict")
    with pytest.raises(ApplicationError) as err:
        await acts.delete_admin_user(pb.DeleteAdminUserRequest(tenant_id=victim, email=taken))
    assert_permanent(err, "Conflict")
    assert len(kc(realm).get_users({"email": taken})) == 1

    if provider.mode == "organization":
        # Organizations own their domains.
        with pytest.raises(ApplicationError) as err:
            await acts.create_realm(
                pb.CreateRealmRequest(tenant_id=new_id(), domains=[f"{owner}.example.com"])
            )
        assert_permanent(err, "Conflict")


# The role per tenant exists in organization mode only.
@pytest.mark.parametrize("provider", ["organization"], indirect=True)
async def test_an_org_admin_role_made_by_someone_else_is_never_adopted_or_deleted(
    acts: Activities, provider: KeycloakIdentityProvider, kc: Admin
) -> None:
    assert provider.mode == "organization"
    tid = new_id()
    role_name = f"org-admin-{tid}"
    shared = kc(SHARED_REALM)
    shared.create_realm_role({"name": role_name, "description": "made by hand"})
    try:
        await acts.create_realm(pb.CreateRealmRequest(tenant_id=tid, domains=[f"{tid}.example.com"]))
        with pytest.raises(ApplicationError) as err:
            await acts.create_admin_user(pb.CreateAdminUserRequest(tenant_id=tid, admin=admin_contact(tid)))
        assert_permanent(err, "Conflict")

        await acts.delete_realm(pb.DeleteRealmRequest(tenant_id=tid))

        assert organizations(kc, tid) == []
        role = shared.get_realm_role(role_name)
        assert (role["description"], role.get("attributes") or {}) == ("made by hand", {})
    finally:
        shared.delete_realm_role(role_name)


async def test_keycloak_unreachable_is_retryable(keycloak: KeycloakServer, mail: MailCatcher) -> None:
    for mode in ("realm", "organization"):
        down = provider_for(keycloak, mail, mode, url=f"http://127.0.0.1:{free_port()}")
        acts = Activities(IDENTITY, IdentityActivities(down))
        with pytest.raises(ApplicationError) as err:
            await acts.create_realm(pb.CreateRealmRequest(tenant_id=new_id(), display_name="x"))
        assert err.value.non_retryable is False
        assert err.value.type == "ProviderUnavailable"
        assert keycloak.admin_password not in str(err.value)
        await down.close()


async def test_expired_or_revoked_admin_tokens_are_renewed(
    acts: Activities, provider: KeycloakIdentityProvider
) -> None:
    connection = provider._connection
    tid = new_id()
    await acts.create_realm(pb.CreateRealmRequest(tenant_id=tid, display_name="x"))
    assert connection.token is not None
    # Past its lifetime: refreshed before the call.
    connection._expires_at = connection.expires_at.replace(year=2000)  # type: ignore[union-attr]
    await acts.create_realm(pb.CreateRealmRequest(tenant_id=tid, display_name="x"))
    # Revoked, refresh token included (a Keycloak restarted on a new database): a new login.
    connection.token = {**connection.token, "access_token": "revoked", "refresh_token": "revoked"}
    await acts.create_realm(pb.CreateRealmRequest(tenant_id=tid, display_name="x"))
    assert connection.token["access_token"] != "revoked"


# -- the admin's first sign-in ------------------------------------------------


async def test_admin_sets_password_from_the_email_and_signs_in(
    acts: Activities,
    provider: KeycloakIdentityProvider,
    kc: Admin,
    keycloak: KeycloakServer,
    mail: MailCatcher,
) -> None:
    tid = new_id()
    await provision(acts, tid)
    email = f"boss@{tid}.example.com"
    sent = [m for m in read_messages(mail.maildir) if m["To"] == email]
    assert len(sent) == 1
    body = sent[0].get_body(("plain",))
    assert body is not None
    links = SET_PASSWORD_LINK.findall(body.get_content())
    assert len(links) == 1

    password = secrets.token_urlsafe(16)
    set_password_from_link(links[0], password)
    realm = realm_of(provider, tid)
    admin = kc(realm)
    user_id = admin.get_user_id(email)
    assert admin.get_user(user_id)["requiredActions"] == []

    client = admin.get_client(admin.get_client_id(f"{tid}-app"))
    secret = admin.get_client_secrets(client["id"])["value"]
    tokens = sign_in(
        keycloak, realm, f"{tid}-app", secret, f"https://{tid}.example.com/callback", email, password
    )
    access = claims(tokens["access_token"])
    assert access["azp"] == f"{tid}-app"
    assert access["email"] == email
    assert access["sub"] == user_id
    if provider.mode == "organization":
        assert f"org-admin-{tid}" in access["realm_access"]["roles"]


# -- suspension: sign-in off and on --------------------------------------------


class SignedIn:
    """A tenant whose admin has a password, and what its app needs to sign them in."""

    def __init__(
        self, kc: Admin, keycloak: KeycloakServer, provider: KeycloakIdentityProvider, tid: str
    ) -> None:
        self.keycloak, self.tid = keycloak, tid
        self.realm = realm_of(provider, tid)
        admin = kc(self.realm)
        self.email = f"boss@{tid}.example.com"
        self.user_id = admin.get_user_id(self.email)
        self.password = secrets.token_urlsafe(16)
        admin.set_user_password(self.user_id, self.password, temporary=False)
        self.secret = admin.get_client_secrets(admin.get_client_id(f"{tid}-app"))["value"]

    def sign_in(self) -> dict[str, Any]:
        callback = f"https://{self.tid}.example.com/callback"
        return sign_in(
            self.keycloak, self.realm, f"{self.tid}-app", self.secret, callback, self.email, self.password
        )

    def refresh(self, tokens: dict[str, Any]) -> Any:
        return refresh(self.keycloak, self.realm, f"{self.tid}-app", self.secret, tokens["refresh_token"])


async def test_a_disabled_tenant_cannot_sign_in_until_enabled(
    acts: Activities, provider: KeycloakIdentityProvider, kc: Admin, keycloak: KeycloakServer
) -> None:
    tid = new_id()
    await provision(acts, tid)
    tenant = SignedIn(kc, keycloak, provider, tid)
    before = tenant.sign_in()
    if provider.mode == "organization":
        # A tenant in the same shared realm, which must keep signing in.
        neighbour_id = new_id()
        await provision(acts, neighbour_id)
        neighbour = SignedIn(kc, keycloak, provider, neighbour_id)

    states = []
    for _ in range(2):
        await acts.disable_tenant_access(pb.DisableTenantAccessRequest(tenant_id=tid))
        states.append(snapshot(kc, provider, tid))
    disabled = states[0]
    assert states[1] == disabled, "disabling twice is disabling once"
    if provider.mode == "realm":
        assert disabled["realm"]["enabled"] is False
        revoked_before = disabled["realm"]["notBefore"]
        refused = "Realm not enabled"
    else:
        # Keycloak 26.4 signs the members of a disabled organization in (it only
        # drops the organization claim): the disabled client is what refuses them.
        assert [o["enabled"] for o in disabled["orgs"]] == [False]
        assert [c["enabled"] for c in disabled["clients"]] == [False]
        revoked_before = disabled["clients"][0]["notBefore"]
        refused = "Client disabled"
    assert claims(before["access_token"])["iat"] < revoked_before
    with pytest.raises(SignInRefused, match=refused):
        tenant.sign_in()
    assert tenant.refresh(before).status_code in (400, 401, 403)
    if provider.mode == "organization":
        neighbour.sign_in()
    # Provisioning steps run again (a retried step) do not lift the suspension.
    await provision(acts, tid)
    assert snapshot(kc, provider, tid) == disabled

    states = []
    for _ in range(2):
        await acts.enable_tenant_access(pb.EnableTenantAccessRequest(tenant_id=tid))
        states.append(snapshot(kc, provider, tid))
    enabled = states[0]
    assert states[1] == enabled, "enabling twice is enabling once"
    if provider.mode == "realm":
        assert enabled["realm"]["enabled"] is True
    else:
        assert [o["enabled"] for o in enabled["orgs"]] == [True]
        assert [c["enabled"] for c in enabled["clients"]] == [True]
    # Keycloak revokes by whole seconds: a token of the revoked second would be stale.
    await asyncio.sleep(max(0.0, revoked_before - time.time()))
    after = tenant.sign_in()
    assert claims(after["access_token"])["sub"] == tenant.user_id
    # What was issued before the suspension stays revoked; what is new works.
    stale = tenant.refresh(before)
    assert (stale.status_code, stale.json()["error"]) == (400, "invalid_grant")
    assert tenant.refresh(after).status_code == 200


async def test_export_holds_the_tenant_and_no_secret(
    provider: KeycloakIdentityProvider, kc: Admin, keycloak: KeycloakServer, backups: BackupStore
) -> None:
    acts = Activities(IDENTITY, IdentityActivities(provider, backups=backups))
    tid = new_id()
    realm_id, _, user_id = await provision(acts, tid)
    tenant = SignedIn(kc, keycloak, provider, tid)
    if provider.mode == "organization":
        other = new_id()  # another tenant in the shared realm: never in this export
        await provision(acts, other)

    response = await acts.export_identity(pb.ExportIdentityRequest(tenant_id=tid, backup_id="run-1"))
    assert response.backup.uri == f"s3://{backups.settings.bucket}/tenants/{tid}/run-1/identity.json"
    text, document = read_export(response.backup, tid, "keycloak")
    for secret in (tenant.secret, tenant.password, keycloak.admin_password, "**********"):
        assert secret not in text

    realm = document["realm"]
    if provider.mode == "realm":
        assert (realm["id"], realm["name"], realm["display_name"]) == (
            kc("master").get_realm(f"tenant-{tid}")["id"],
            f"tenant-{tid}",
            "Acme Corp",
        )
        assert realm["attributes"]["tenant_id"] == tid
        # Keycloak's own realm export comes along, without the realm's keys.
        source = document["source"]["keycloak_realm"]
        assert source["realm"] == f"tenant-{tid}"
        assert "org.keycloak.keys.KeyProvider" not in source.get("components", {})
        assert "privateKey" not in text
    else:
        assert (realm["id"], realm["name"], realm["display_name"]) == (realm_id, tid, "Acme Corp")
        assert realm["domains"] == [f"{tid}.example.com"]
        assert realm["attributes"] == {"tenant_id": [tid]}
        assert [c["client_id"] for c in document["clients"]] == [f"{tid}-app"]
        assert other not in text
    assert realm["enabled"] is True
    [client] = [c for c in document["clients"] if c["client_id"] == f"{tid}-app"]
    assert client["redirect_uris"] == [f"https://{tid}.example.com/callback"]
    assert client["web_origins"] == [f"https://{tid}.example.com"]
    assert client["settings"]["attributes"]["pkce.code.challenge.method"] == "S256"
    [user] = [u for u in document["users"] if u["email"] == tenant.email]
    assert user["id"] == user_id
    assert (user["given_name"], user["family_name"], user["enabled"]) == ("Ada", "Boss", True)
    assert user["attributes"]["tenant_id"] == [tid]
    if provider.mode == "realm":
        assert user["roles"]["clients"]["realm-management"] == ["realm-admin"]
    else:
        assert f"org-admin-{tid}" in user["roles"]["realm"]
        assert [u["id"] for u in document["users"]] == [user_id]

    # The same backup id writes the same object again, with the same content but the time.
    again = await acts.export_identity(pb.ExportIdentityRequest(tenant_id=tid, backup_id="run-1"))
    assert again.backup.uri == response.backup.uri
    _, second = read_export(again.backup, tid, "keycloak")
    assert {**second, "exported_at": None} == {**document, "exported_at": None}


def test_keycloak_settings_are_checked_at_worker_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTRY_IDP_PROVIDER", "keycloak")
    for name in ("URL", "ADMIN_PASSWORD", "MODE"):
        monkeypatch.delenv(f"TENANTRY_KEYCLOAK_{name}", raising=False)
    with pytest.raises(ConfigError, match="TENANTRY_KEYCLOAK_URL is not set"):
        providers.from_env()
    monkeypatch.setenv("TENANTRY_KEYCLOAK_URL", "keycloak:8080")
    with pytest.raises(ConfigError, match="TENANTRY_KEYCLOAK_URL='keycloak:8080' is not an http"):
        providers.from_env()
    monkeypatch.setenv("TENANTRY_KEYCLOAK_URL", "http://127.0.0.1:8080")
    with pytest.raises(ConfigError, match="TENANTRY_KEYCLOAK_ADMIN_PASSWORD is not set"):
        providers.from_env()
    monkeypatch.setenv("TENANTRY_KEYCLOAK_ADMIN_PASSWORD", "not-shown")
    monkeypatch.setenv("TENANTRY_KEYCLOAK_MODE", "galaxy")
    with pytest.raises(
        ConfigError, match="TENANTRY_KEYCLOAK_MODE='galaxy' is not one of realm, organization"
    ):
        providers.from_env()
    monkeypatch.setenv("TENANTRY_KEYCLOAK_MODE", "organization")
    provider = providers.from_env()
    assert isinstance(provider, KeycloakIdentityProvider) and provider.mode == "organization"
    assert "not-shown" not in repr(provider)


async def test_the_worker_refuses_to_start_with_wrong_credentials(
    keycloak: KeycloakServer, mail: MailCatcher
) -> None:
    wrong = KeycloakServer(
        url=keycloak.url,
        admin_username=keycloak.admin_username,
        admin_password="wrong",
        management_url=keycloak.management_url,
    )
    provider = provider_for(wrong, mail, "realm")
    with pytest.raises(
        ConfigError, match="refused the admin credentials in TENANTRY_KEYCLOAK_ADMIN"
    ) as raised:
        await provider.open()
    assert "wrong" not in str(raised.value)
    await provider.close()
    unreachable = provider_for(keycloak, mail, "realm", url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError, match="cannot reach Keycloak at TENANTRY_KEYCLOAK_URL"):
        await unreachable.open(wait=1)
    await unreachable.close()
