"""Who may call the API: the authentication and authorization matrix.

The real facade (create_server) on the session's Temporal and PostgreSQL,
serving TLS with required client certificates (mTLS), or bearer tokens of
the suite's real Keycloak (client-credentials grant) and of a local issuer
whose tokens the tests shape (expired, another issuer, a rotated key...).
Every role is tried against every rpc, table-driven: a call is allowed when
it gets past the access checks (to NOT_FOUND, INVALID_ARGUMENT or OK on a
tenant that does not exist), refused when it is PERMISSION_DENIED naming
the permission.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from temporalio.client import Client

from libs import auth, lifecycle
from libs.auth import AccessPolicy, TokenVerifier
from libs.contracts import WORKFLOWS
from libs.devstack.certs import KeyPair, LocalCA
from libs.devstack.keycloak import KeycloakServer
from services.tenant_api.auth import REQUIRED, Access, Limits
from services.tenant_api.registry import Registry
from services.tenant_api.server import create_server
from services.tenant_api.servicer import TenantService
from services.tenantdb.providers import TenantSpec
from services.tenantdb.providers.postgres import PostgresTenantData
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_service_pb2 as api_pb2
from tenantry.tenant.v1 import tenant_service_pb2_grpc
from tests.support.oidc import AUDIENCE, KeycloakCallers, LocalIssuer, keycloak_callers, local_issuer

SPIFFE = "spiffe://tenantry.test/callers/"
# A tenant that exists (for tenant-scoped grants) and one that does not.
OURS = "acc-ours"
THEIRS = "acc-theirs"
MISSING = "acc-missing"
ROLES = ("viewer", "operator", "admin")
# A request per rpc that gets past the access checks without changing anything.
REQUESTS: dict[str, Message] = {
    "CreateTenant": api_pb2.CreateTenantRequest(tenant_id=MISSING),  # no tenant: INVALID_ARGUMENT
    "GetTenant": api_pb2.GetTenantRequest(name=f"tenants/{MISSING}"),
    "ListTenants": api_pb2.ListTenantsRequest(),
    "DeleteTenant": api_pb2.DeleteTenantRequest(name=f"tenants/{MISSING}"),
    "UndeleteTenant": api_pb2.UndeleteTenantRequest(name=f"tenants/{MISSING}"),
    "SuspendTenant": api_pb2.SuspendTenantRequest(name=f"tenants/{MISSING}"),
    "ResumeTenant": api_pb2.ResumeTenantRequest(name=f"tenants/{MISSING}"),
    "ListTenantEvents": api_pb2.ListTenantEventsRequest(parent=f"tenants/{MISSING}"),
    "WatchTenant": api_pb2.WatchTenantRequest(name=f"tenants/{MISSING}"),
    "CancelProvisioning": api_pb2.CancelProvisioningRequest(name=f"tenants/{MISSING}"),
    "RetryProvisioning": api_pb2.RetryProvisioningRequest(name=f"tenants/{MISSING}"),
    "CleanUpTenant": api_pb2.CleanUpTenantRequest(name=f"tenants/{MISSING}"),
}
SKIP_BACKUP = api_pb2.DeleteTenantRequest(name=f"tenants/{MISSING}", skip_backup=True)
Stub = tenant_service_pb2_grpc.TenantServiceStub
# What an allowed call of REQUESTS answers: the tenant does not exist, or the request is incomplete.
PAST_THE_CHECKS = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OK)


def test_every_rpc_declares_its_permission_in_proto() -> None:
    assert set(REQUESTS) == set(REQUIRED)
    assert all(REQUIRED.values()), "an rpc without a permission would be refused to everyone"


def allowed(role: str, rpc: str) -> bool:
    return REQUIRED[rpc] in auth.ROLES[role]


# --- the servers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(ca: LocalCA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyPair]:
    """A client certificate per caller; `untrusted` is signed by another CA."""
    made = {who: ca.client(who, uri=SPIFFE + who) for who in (*ROLES, "breakglass", "scoped", "nobody")}
    made["dns-viewer"] = ca.client("dns-viewer", dns="reporting.internal.test")
    made["no-identity"] = ca.issue("no-identity", "no identity", [], ExtendedKeyUsageOID.CLIENT_AUTH)
    made["untrusted"] = LocalCA(tmp_path_factory.mktemp("other-ca")).client("untrusted", uri=SPIFFE + "admin")
    return made


@pytest.fixture(scope="module")
def keycloak_tokens(keycloak: KeycloakServer) -> KeycloakCallers:
    return keycloak_callers(
        keycloak,
        {
            "viewer-svc": ["tenantry-viewer"],
            "operator-svc": ["tenantry-operator"],
            "admin-svc": ["tenantry-admin"],
            "breakglass-svc": ["tenantry-admin", "tenantry-break-glass"],
            "stranger-svc": [],
            "elsewhere-svc": ["tenantry-admin"],
        },
        audience={"elsewhere-svc": "another-api"},
    )


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    with local_issuer() as running:
        yield running


@pytest.fixture(scope="module")
def policy_file(
    tmp_path_factory: pytest.TempPathFactory, keycloak_tokens: KeycloakCallers, issuer: LocalIssuer
) -> Path:
    grants = [
        *(f'[[grants]]\ncertificate = "{SPIFFE}{role}"\nroles = ["{role}"]\n' for role in ROLES),
        f'[[grants]]\ncertificate = "{SPIFFE}breakglass"\nroles = ["admin", "break-glass"]\n',
        f'[[grants]]\ncertificate = "{SPIFFE}scoped"\nroles = ["operator"]\ntenants = ["{OURS}"]\n',
        '[[grants]]\ncertificate = "reporting.internal.test"\nroles = ["viewer"]\n',
        f'[[grants]]\nissuer = "{issuer.url}"\nsubject = "svc"\nroles = ["viewer"]\n',
        f'[[grants]]\nissuer = "{issuer.url}"\nsubject = "portal"\n'
        'tenants_claim = "tenant"\nroles = ["viewer"]\n',
    ]
    path = tmp_path_factory.mktemp("access-policy") / "access.toml"
    path.write_text("\n".join(grants) + keycloak_tokens.policy())
    return path


@pytest.fixture(scope="module")
async def registry(postgres_url: str) -> AsyncIterator[Registry]:
    store = PostgresTenantData(postgres_url, max_connections=2)
    await store.open()
    try:
        for tid in (OURS, THEIRS):
            spec = TenantSpec(
                tenant_id=tid,
                display_name="Access Corp",
                plan_tier="PLAN_TIER_POOLED",
                domains=(f"{tid}.example.com",),
                admin_email=f"ada@{tid}.example.com",
            )
            await store.mark_provisioning(spec, f"provision-{tid}")
            await store.mark_active(tid)
    finally:
        await store.close()
    opened = Registry(postgres_url)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture(scope="module")
async def temporal(temporal_address: str) -> Client:
    return await Client.connect(temporal_address)


@pytest.fixture(scope="module")
async def provisioning(postgres_url: str, temporal: Client) -> AsyncIterator[str]:
    """A tenant whose provisioning run is under way (on a queue no worker
    polls, so it stays so): WatchTenant of it stays open."""
    tid = f"acc-busy-{uuid.uuid4().hex[:6]}"
    workflow_id = lifecycle.provision_workflow_id(tid)
    store = PostgresTenantData(postgres_url, max_connections=1)
    await store.open()
    try:
        spec = TenantSpec(
            tenant_id=tid,
            display_name="Busy Corp",
            plan_tier="PLAN_TIER_POOLED",
            domains=(),
            admin_email="ada@busy.example.com",
        )
        await store.mark_provisioning(spec, workflow_id)
    finally:
        await store.close()
    run = await temporal.start_workflow(
        WORKFLOWS.rpc("ProvisionTenant").name,
        orchestrator_pb2.ProvisionTenantRequest(),
        id=workflow_id,
        task_queue=f"nobody-{uuid.uuid4().hex}",
    )
    yield tid
    await run.terminate()


@asynccontextmanager
async def facade(
    temporal: Client, registry: Registry, access: Access, limits: Limits | None = None
) -> AsyncIterator[str]:
    service = TenantService(temporal, registry)
    server, port, _ = create_server(
        "127.0.0.1:0", temporal, registry, access=access, limits=limits, service=service
    )
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await service.close()
        await server.stop(grace=None)


def server_access(ca: LocalCA, policy_file: Path, **options: Any) -> Access:
    server = ca.server()
    return Access(
        cert_file=server.cert, key_file=server.key, policy=AccessPolicy.load(policy_file), **options
    )


@pytest.fixture(scope="module")
async def mtls(ca: LocalCA, policy_file: Path, temporal: Client, registry: Registry) -> AsyncIterator[str]:
    async with facade(
        temporal, registry, server_access(ca, policy_file, client_ca_file=ca.ca_file)
    ) as address:
        yield address


@pytest.fixture(scope="module")
async def keycloak_api(
    ca: LocalCA, policy_file: Path, temporal: Client, registry: Registry, keycloak_tokens: KeycloakCallers
) -> AsyncIterator[str]:
    verifier = TokenVerifier(issuer=keycloak_tokens.issuer, audience=AUDIENCE)
    async with facade(temporal, registry, server_access(ca, policy_file, tokens=verifier)) as address:
        yield address


@pytest.fixture(scope="module")
async def local_api(
    ca: LocalCA, policy_file: Path, temporal: Client, registry: Registry, issuer: LocalIssuer
) -> AsyncIterator[str]:
    verifier = TokenVerifier(issuer=issuer.url, audience=AUDIENCE, clock_skew=5)
    async with facade(temporal, registry, server_access(ca, policy_file, tokens=verifier)) as address:
        yield address


# --- callers ------------------------------------------------------------------------------------


def channel(
    address: str, ca: LocalCA, *, cert: KeyPair | None = None, token: str | None = None
) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(
        ca.ca_file.read_bytes(), cert.key_bytes() if cert else None, cert.cert_bytes() if cert else None
    )
    if token is not None:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    return grpc.aio.secure_channel(address, credentials)


async def call(stub: Stub, rpc: str, request: Message) -> tuple[grpc.StatusCode, error_details_pb2.ErrorInfo]:
    """The status of one call and its ErrorInfo (empty when it succeeded)."""
    code, info, _ = await call_with_retry(stub, rpc, request)
    return code, info


async def call_with_retry(
    stub: Stub, rpc: str, request: Message
) -> tuple[grpc.StatusCode, error_details_pb2.ErrorInfo, float | None]:
    """As `call`, with RetryInfo's delay in seconds (None without one)."""
    try:
        if rpc == "WatchTenant":
            async for _ in stub.WatchTenant(request, timeout=10):
                break
        else:
            await getattr(stub, rpc)(request, timeout=10)
    except grpc.aio.AioRpcError as err:
        return (err.code(), *_details(err))
    return grpc.StatusCode.OK, error_details_pb2.ErrorInfo(), None


def _details(err: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, float | None]:
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    delay = None
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            detail.Unpack(retry)
            delay = retry.retry_delay.ToTimedelta().total_seconds()
    return info, delay


async def matrix(stub: Stub) -> dict[str, tuple[grpc.StatusCode, str]]:
    """Each rpc's status code and the permission it was refused for."""
    seen = {}
    for rpc, request in REQUESTS.items():
        code, info = await call(stub, rpc, request)
        seen[rpc] = (code, info.metadata.get("permission", ""))
    return seen


def check_matrix(role: str | None, seen: dict[str, tuple[grpc.StatusCode, str]]) -> None:
    for rpc, (code, permission) in seen.items():
        assert code != grpc.StatusCode.UNAUTHENTICATED, (role, rpc)
        if role is not None and allowed(role, rpc):
            assert code != grpc.StatusCode.PERMISSION_DENIED, (role, rpc)
            assert code in (
                grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.OK,
            ), (
                role,
                rpc,
                code,
            )
        else:
            assert code == grpc.StatusCode.PERMISSION_DENIED, (role, rpc, code)
            assert permission == auth.options_pb2.Permission.Name(REQUIRED[rpc]), (role, rpc)


# --- mTLS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [*ROLES, "nobody"])
async def test_mtls_each_role_against_each_rpc(
    mtls: str, ca: LocalCA, certs: dict[str, KeyPair], role: str
) -> None:
    async with channel(mtls, ca, cert=certs[role]) as ch:
        check_matrix(role if role in ROLES else None, await matrix(Stub(ch)))


async def test_mtls_dns_identity_and_skip_backup_needs_break_glass(
    mtls: str, ca: LocalCA, certs: dict[str, KeyPair]
) -> None:
    async with channel(mtls, ca, cert=certs["dns-viewer"]) as ch:
        check_matrix("viewer", await matrix(Stub(ch)))
    async with channel(mtls, ca, cert=certs["admin"]) as ch:
        code, info = await call(Stub(ch), "DeleteTenant", SKIP_BACKUP)
    assert (code, info.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    assert info.metadata["permission"] == "PERMISSION_DELETE_WITHOUT_BACKUP"
    async with channel(mtls, ca, cert=certs["breakglass"]) as ch:
        code, _ = await call(Stub(ch), "DeleteTenant", SKIP_BACKUP)
    assert code == grpc.StatusCode.NOT_FOUND  # past the access checks


async def test_a_tenant_scoped_principal_reaches_only_its_tenant(
    mtls: str, ca: LocalCA, certs: dict[str, KeyPair]
) -> None:
    async with channel(mtls, ca, cert=certs["scoped"]) as ch:
        stub = Stub(ch)
        ours = await stub.GetTenant(api_pb2.GetTenantRequest(name=f"tenants/{OURS}"))
        assert ours.tenant.tenant_id == OURS
        for name in (f"tenants/{THEIRS}", f"tenants/{MISSING}", "tenants/", "garbage"):
            code, info = await call(stub, "GetTenant", api_pb2.GetTenantRequest(name=name))
            assert (code, info.metadata["permission"]) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "PERMISSION_VIEW",
            )
        code, _ = await call(stub, "SuspendTenant", api_pb2.SuspendTenantRequest(name=f"tenants/{THEIRS}"))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        listed = await stub.ListTenants(api_pb2.ListTenantsRequest(page_size=1000))
        assert [t.tenant_id for t in listed.tenants] == [OURS]


@pytest.mark.parametrize("who", ["no-identity", None])
async def test_mtls_without_an_identity_or_a_certificate_is_refused(
    mtls: str, ca: LocalCA, certs: dict[str, KeyPair], who: str | None
) -> None:
    async with channel(mtls, ca, cert=certs[who] if who else None) as ch:
        code, info = await call(Stub(ch), "GetTenant", REQUESTS["GetTenant"])
    if who is None:
        # The TLS handshake itself needs a client certificate: no call reaches the service.
        assert code == grpc.StatusCode.UNAVAILABLE
    else:
        assert (code, info.reason) == (grpc.StatusCode.UNAUTHENTICATED, "CERTIFICATE_WITHOUT_IDENTITY")


async def test_an_untrusted_certificate_never_reaches_the_service(
    mtls: str, ca: LocalCA, certs: dict[str, KeyPair]
) -> None:
    # Its SAN names an admin, but another CA signed it: the handshake fails
    # (grpcio verifies client certificates in TLS, before any call exists).
    async with channel(mtls, ca, cert=certs["untrusted"]) as ch:
        code, _ = await call(Stub(ch), "ListTenants", REQUESTS["ListTenants"])
    assert code == grpc.StatusCode.UNAVAILABLE


# --- Keycloak tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "role"),
    [("viewer-svc", "viewer"), ("operator-svc", "operator"), ("admin-svc", "admin"), ("stranger-svc", None)],
)
async def test_keycloak_tokens_each_role_against_each_rpc(
    keycloak_api: str, ca: LocalCA, keycloak_tokens: KeycloakCallers, client: str, role: str | None
) -> None:
    async with channel(keycloak_api, ca, token=keycloak_tokens.token(client)) as ch:
        check_matrix(role, await matrix(Stub(ch)))


async def test_keycloak_break_glass_role_allows_skip_backup(
    keycloak_api: str, ca: LocalCA, keycloak_tokens: KeycloakCallers
) -> None:
    async with channel(keycloak_api, ca, token=keycloak_tokens.token("admin-svc")) as ch:
        code, info = await call(Stub(ch), "DeleteTenant", SKIP_BACKUP)
    assert (code, info.metadata["permission"]) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DELETE_WITHOUT_BACKUP",
    )
    async with channel(keycloak_api, ca, token=keycloak_tokens.token("breakglass-svc")) as ch:
        code, _ = await call(Stub(ch), "DeleteTenant", SKIP_BACKUP)
    assert code == grpc.StatusCode.NOT_FOUND


def _tampered(token: str) -> str:
    head, body, signature = token.split(".")
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    return ".".join((head, body, flipped))


@pytest.mark.parametrize(
    ("credential", "reason"),
    [
        (lambda kc: None, "CREDENTIALS_MISSING"),
        (lambda kc: "not-a-jwt", "TOKEN_MALFORMED"),
        (lambda kc: _tampered(kc.token("admin-svc")), "TOKEN_BAD_SIGNATURE"),
        (lambda kc: kc.token("elsewhere-svc"), "TOKEN_WRONG_AUDIENCE"),
    ],
    ids=["none", "malformed", "bad-signature", "wrong-audience"],
)
async def test_bad_keycloak_credentials_are_unauthenticated(
    keycloak_api: str,
    ca: LocalCA,
    keycloak_tokens: KeycloakCallers,
    credential: Callable[[KeycloakCallers], str | None],
    reason: str,
) -> None:
    async with channel(keycloak_api, ca, token=credential(keycloak_tokens)) as ch:
        for rpc in ("GetTenant", "CreateTenant", "WatchTenant"):
            code, info = await call(Stub(ch), rpc, REQUESTS[rpc])
            assert (code, info.reason, info.domain) == (
                grpc.StatusCode.UNAUTHENTICATED,
                reason,
                "tenantry.dev",
            )


# --- tokens shaped by a local issuer ------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        # Times are seconds from when the test runs (the token is made then).
        ({"exp": -60}, "TOKEN_EXPIRED"),
        ({"nbf": 120}, "TOKEN_NOT_YET_VALID"),
        ({"iss": "https://issuer.elsewhere.test"}, "TOKEN_WRONG_ISSUER"),
        ({"aud": "another-api"}, "TOKEN_WRONG_AUDIENCE"),
        ({"exp": None}, "TOKEN_INVALID"),
    ],
    ids=["expired", "not-yet-valid", "wrong-issuer", "wrong-audience", "no-expiry"],
)
async def test_bad_tokens_are_unauthenticated(
    local_api: str, ca: LocalCA, issuer: LocalIssuer, claims: dict[str, Any], reason: str
) -> None:
    now = int(time.time())
    timed = {k: now + v if k in ("exp", "nbf") and v is not None else v for k, v in claims.items()}
    token = issuer.token(**timed)
    async with channel(local_api, ca, token=token) as ch:
        code, info = await call(Stub(ch), "GetTenant", REQUESTS["GetTenant"])
    assert (code, info.reason) == (grpc.StatusCode.UNAUTHENTICATED, reason)


async def test_small_clock_skew_is_tolerated(local_api: str, ca: LocalCA, issuer: LocalIssuer) -> None:
    # Skew 5 s (see local_api): a token 2 s "from the future" or 2 s past expiry still counts.
    now = int(time.time())
    for claims in ({"nbf": now + 2, "iat": now + 2}, {"exp": now - 2}):
        async with channel(local_api, ca, token=issuer.token(**claims)) as ch:
            code, _ = await call(Stub(ch), "GetTenant", REQUESTS["GetTenant"])
        assert code == grpc.StatusCode.NOT_FOUND, claims


async def test_a_rotated_key_is_fetched_once_and_made_up_key_ids_fetch_nothing(
    ca: LocalCA, temporal: Client, registry: Registry, tmp_path: Path
) -> None:
    with local_issuer() as issuer:
        await _rotation(ca, temporal, registry, tmp_path, issuer)


async def _rotation(
    ca: LocalCA, temporal: Client, registry: Registry, tmp_path: Path, issuer: LocalIssuer
) -> None:
    policy = tmp_path / "access.toml"
    policy.write_text(f'[[grants]]\nissuer = "{issuer.url}"\nsubject = "svc"\nroles = ["viewer"]\n')
    verifier = TokenVerifier(issuer=issuer.url, audience=AUDIENCE, refresh_interval=1.0)
    async with facade(temporal, registry, server_access(ca, policy, tokens=verifier)) as address:

        async def get(token: str) -> tuple[grpc.StatusCode, str]:
            async with channel(address, ca, token=token) as ch:
                code, info = await call(Stub(ch), "GetTenant", REQUESTS["GetTenant"])
            return code, info.reason

        assert (await get(issuer.token()))[0] == grpc.StatusCode.NOT_FOUND
        fetched = issuer.jwks_fetches
        issuer.rotate()
        # The new key is fetched as soon as the refresh interval allows.
        deadline = time.monotonic() + 10
        while (answer := await get(issuer.token()))[0] != grpc.StatusCode.NOT_FOUND:
            assert answer == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_UNKNOWN_KEY")
            assert time.monotonic() < deadline, "the rotated key was never fetched"
        assert issuer.jwks_fetches == fetched + 1
        # Made-up key ids: refused, and at most one fetch per interval however many arrive.
        forged = issuer.token(kid=issuer.rotate())
        del issuer.keys[issuer.current]
        issuer.current = next(iter(issuer.keys))
        started = time.monotonic()
        for _ in range(20):
            assert await get(forged) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_UNKNOWN_KEY")
        assert issuer.jwks_fetches - (fetched + 1) <= 1 + int(time.monotonic() - started)


async def test_tenants_from_a_token_claim(local_api: str, ca: LocalCA, issuer: LocalIssuer) -> None:
    async with channel(local_api, ca, token=issuer.token("portal", tenant=OURS)) as ch:
        stub = Stub(ch)
        assert (
            await stub.GetTenant(api_pb2.GetTenantRequest(name=f"tenants/{OURS}"))
        ).tenant.tenant_id == OURS
        code, _ = await call(stub, "GetTenant", api_pb2.GetTenantRequest(name=f"tenants/{THEIRS}"))
        assert code == grpc.StatusCode.PERMISSION_DENIED


# --- both at once, limits, start-up ----------------------------------------------------------------


async def test_certificates_and_tokens_together_the_token_names_the_caller(
    ca: LocalCA,
    certs: dict[str, KeyPair],
    policy_file: Path,
    temporal: Client,
    registry: Registry,
    keycloak_tokens: KeycloakCallers,
) -> None:
    verifier = TokenVerifier(issuer=keycloak_tokens.issuer, audience=AUDIENCE)
    access = server_access(ca, policy_file, client_ca_file=ca.ca_file, tokens=verifier)
    async with facade(temporal, registry, access) as address:
        async with channel(address, ca, cert=certs["viewer"]) as ch:
            check_matrix("viewer", await matrix(Stub(ch)))
        # The workload's certificate says viewer, its token says admin: the token decides.
        async with channel(address, ca, cert=certs["viewer"], token=keycloak_tokens.token("admin-svc")) as ch:
            check_matrix("admin", await matrix(Stub(ch)))
        async with channel(address, ca, cert=certs["admin"], token="forged") as ch:
            code, info = await call(Stub(ch), "GetTenant", REQUESTS["GetTenant"])
        assert (code, info.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MALFORMED")


async def test_limits_per_principal(
    ca: LocalCA,
    certs: dict[str, KeyPair],
    policy_file: Path,
    temporal: Client,
    registry: Registry,
    provisioning: str,
) -> None:
    limits = Limits(
        mutations_per_second=0.5, mutation_burst=2, watch_streams=1, stream_duration=timedelta(seconds=6)
    )
    access = server_access(ca, policy_file, client_ca_file=ca.ca_file)
    async with (
        facade(temporal, registry, access, limits) as address,
        channel(address, ca, cert=certs["operator"]) as ch,
        channel(address, ca, cert=certs["admin"]) as other_ch,
    ):
        stub, other = Stub(ch), Stub(other_ch)
        suspend = REQUESTS["SuspendTenant"]
        for _ in range(2):
            assert (await call(stub, "SuspendTenant", suspend))[0] == grpc.StatusCode.NOT_FOUND
        code, info, delay = await call_with_retry(stub, "SuspendTenant", suspend)
        assert (code, info.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
        assert delay is not None and 0 < delay <= 2.0
        # Reads are not limited, and another principal has its own budget.
        assert (await call(stub, "GetTenant", REQUESTS["GetTenant"]))[0] == grpc.StatusCode.NOT_FOUND
        assert (await call(other, "SuspendTenant", suspend))[0] == grpc.StatusCode.NOT_FOUND

        # One open WatchTenant stream per principal, and none outlives the longest duration.
        watching = api_pb2.WatchTenantRequest(name=f"tenants/{provisioning}")
        watch = stub.WatchTenant(watching, timeout=30)
        first = await watch.read()
        assert first.tenant.tenant_id == provisioning
        code, info = await call(stub, "WatchTenant", watching)
        assert (code, info.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_STREAMS")
        assert (await call(other, "WatchTenant", REQUESTS["WatchTenant"]))[0] == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            while await watch.read() is not grpc.aio.EOF:
                pass
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert _details(ended.value)[0].reason == "STREAM_DURATION_LIMIT"
        # Its slot is free again.
        again = stub.WatchTenant(watching, timeout=30)
        assert (await again.read()).tenant.tenant_id == provisioning
        again.cancel()


def test_the_facade_refuses_to_start_without_authentication(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTRY_", "TEMPORAL_"))}
    base = {**env, "TENANTRY_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    cases = [
        ({}, "TENANTRY_TLS_CERT_FILE is not set"),
        ({"TENANTRY_AUTH": "none", "TENANTRY_GRPC_ADDRESS": "0.0.0.0:50999"}, "only on a loopback address"),
    ]
    for extra, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "services.tenant_api"],
            env={**base, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
        assert "Traceback" not in done.stderr
