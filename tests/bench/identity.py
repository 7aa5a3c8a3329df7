"""Per-step latency of the identity domain for each provider, and Keycloak's
start time. Part of `make bench`; `python -m tests.bench.identity --tenants N`.

Each step is the activity method itself (what the idp worker runs), called
in sequence for N tenants: realm, client, admin user, then the deletes.
Auth0 runs against tests/fakes/auth0.py (no Auth0 server can run here), so
its figures measure the adapter, not Auth0.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from libs.devstack.embedded import Postgres, mail_catcher
from libs.devstack.keycloak import KeycloakServer, keycloak_server
from libs.devstack.processes import free_port
from services.idp.activities import IdentityActivities
from services.idp.providers import IdentityProvider
from services.idp.providers.auth0 import Auth0IdentityProvider, Auth0Settings
from services.idp.providers.keycloak import KeycloakIdentityProvider
from services.idp.providers.local import LocalIdentityStore
from tenantry.idp.v1 import idp_pb2 as pb
from tenantry.tenant.v1 import tenant_pb2
from tests.fakes.auth0 import FakeAuth0

STEPS = ("create_realm", "create_oidc_client", "create_admin_user", "delete_admin_user", "delete_oidc_client",
         "delete_realm")  # fmt: skip


def requests(tid: str) -> dict[str, Any]:
    email = f"admin@{tid}.example.com"
    return {
        "create_realm": pb.CreateRealmRequest(
            tenant_id=tid, display_name="Bench", domains=[f"{tid}.example.com"]
        ),
        "create_oidc_client": pb.CreateOidcClientRequest(
            tenant_id=tid,
            redirect_uris=[f"https://{tid}.example.com/cb"],
            web_origins=[f"https://{tid}.example.com"],
        ),
        "create_admin_user": pb.CreateAdminUserRequest(
            tenant_id=tid, admin=tenant_pb2.AdminContact(email=email)
        ),
        "delete_admin_user": pb.DeleteAdminUserRequest(tenant_id=tid, email=email),
        "delete_oidc_client": pb.DeleteOidcClientRequest(tenant_id=tid),
        "delete_realm": pb.DeleteRealmRequest(tenant_id=tid),
    }


async def measure(provider: IdentityProvider, n: int) -> dict[str, list[float]]:
    await provider.open()
    activities = IdentityActivities(provider)
    timings: dict[str, list[float]] = {step: [] for step in STEPS}
    try:
        for i in range(n + 1):
            tid = f"idb-{uuid.uuid4().hex[:8]}"
            for step, request in requests(tid).items():
                started = time.perf_counter()
                await getattr(activities, step)(request)
                if i:  # the first tenant warms connections and caches
                    timings[step].append(time.perf_counter() - started)
    finally:
        await provider.close()
    return timings


async def bench(n: int) -> None:
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="tenantry-idbench-") as tmp:
        state = Path(tmp)
        smtp_port = free_port()
        catcher = mail_catcher(state / "mail", port=smtp_port, log_dir=state / "logs").start().wait_ready()
        postgres = Postgres.start(state / "pg", delete_on_stop=True)
        kc_port, kc_management, password = free_port(), free_port(), secrets.token_urlsafe(18)
        kc = keycloak_server(
            state / "kc",
            port=kc_port,
            management_port=kc_management,
            admin_password=password,
            log_dir=state / "logs",
        )
        started = time.perf_counter()
        kc.start().wait_ready()
        kc_start = time.perf_counter() - started
        fake = FakeAuth0().start()
        try:
            server = KeycloakServer.local(
                port=kc_port, management_port=kc_management, admin_password=password
            )
            factories: dict[str, Callable[[], IdentityProvider]] = {
                "local": lambda: LocalIdentityStore(postgres.url),
                **{
                    f"keycloak {mode}": (
                        lambda mode=mode: KeycloakIdentityProvider(  # type: ignore[misc]
                            server.url,
                            admin_username=server.admin_username,
                            admin_password=server.admin_password,
                            mode=mode,
                            shared_realm="bench",
                            smtp_host="127.0.0.1",
                            smtp_port=smtp_port,
                            # The benchmark's catcher is plaintext, without AUTH.
                            smtp_starttls=False,
                        )
                    )
                    for mode in ("realm", "organization")
                },
                "auth0 (fake)": lambda: Auth0IdentityProvider(
                    Auth0Settings(
                        domain=fake.domain,
                        client_id=fake.client_id,
                        client_secret=fake.client_secret,
                        base_url=fake.url,
                    )
                ),
            }
            for name, factory in factories.items():
                results[name] = await measure(factory(), n)
        finally:
            fake.stop()
            kc.stop()
            postgres.stop()
            catcher.stop()
    print(f"\nKeycloak 26 start (dev mode, fresh database): {kc_start:.1f} s")
    print(f"identity step latency, p50 / p95 in ms over {n} tenants")
    print(f"{'step':<20}" + "".join(f"{name:>22}" for name in results))
    for step in STEPS:
        cells = []
        for timings in results.values():
            values = sorted(timings[step])
            p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
            cells.append(f"{statistics.median(values) * 1000:>9.0f} / {p95 * 1000:<8.0f}")
        print(f"{step:<20}" + "".join(f"{cell:>22}" for cell in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=20)
    asyncio.run(bench(parser.parse_args().tenants))


if __name__ == "__main__":
    main()
