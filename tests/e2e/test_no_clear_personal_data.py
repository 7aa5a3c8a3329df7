"""No personal data in clear where Temporal keeps it or where a process logs.

After a tenant is provisioned, another's provisioning fails (so failure text
and a failure notice are recorded) and the first is deleted, the bytes of
Temporal's SQLite files (the WAL too) and of every log file must not hold an
admin's email, names, the display name, a domain or a payload key: neither
raw nor in base64 (the codec server protocol and JSON histories carry
payloads in base64). The admin's temporary password never leaves the
identity worker (proto/internal/tenantry/idp/v1/idp.proto), so it is not in any
payload to look for.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import string
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.converter import DataConverter

from libs import codec, lifecycle
from libs.devstack.stack import Stack
from services.tenant_api.servicer import SPEC_MEMO
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import create, inject_failure, settle
from tests.e2e.test_deletion import delete

State = tenant_pb2.Tenant.State


def _word(length: int = 10) -> str:
    return "".join(random.choices(string.ascii_lowercase, k=length))


def _person() -> dict[str, str]:
    """Strings found nowhere else: a match can only be this admin's data."""
    mark = _word()
    return {
        "email": f"ottoline.{mark}@quarrendon-{mark}.example.org",
        "given name": f"Ottoline{mark.capitalize()}",
        "family name": f"Quarrendon{mark.capitalize()}",
        "display name": f"Bramblewick Holdings {mark.capitalize()}",
        "domain": f"portal.bramblewick-{mark}.example.net",
    }


def _spec(person: dict[str, str]) -> dict[str, object]:
    return {
        "display_name": person["display name"],
        "domains": [person["domain"]],
        "admin": tenant_pb2.AdminContact(
            email=person["email"], given_name=person["given name"], family_name=person["family name"]
        ),
    }


def forms(value: bytes) -> Iterator[bytes]:
    """`value` raw, as in a URL's query (an HTTP client's request line), and
    each run of base64 that encodes it wherever it sits in a longer base64
    string (one per alignment, the partial ends dropped)."""
    yield value
    quoted = urllib.parse.quote_from_bytes(value, safe="").encode()
    if quoted != value:
        yield quoted
    for shift in range(3):
        part = value[shift:]
        whole = part[: len(part) - len(part) % 3]
        if len(whole) >= 6:
            yield base64.b64encode(whole)


async def provisioning_memo(stack: Stack, tenant_id: str, *, decoded: bool = False) -> Any:
    converter = stack.data_converter() if decoded else None
    client = await Client.connect(stack.temporal_address, data_converter=converter or DataConverter.default)
    description = await client.get_workflow_handle(lifecycle.provision_workflow_id(tenant_id)).describe()
    if decoded:
        return await description.memo_value(SPEC_MEMO, type_hint=tenant_pb2.Tenant)
    return description.raw_description.workflow_execution_info.memo.fields


def stored_files(stack: Stack) -> list[Path]:
    temporal = sorted(p for p in (stack.state_dir / "temporal").iterdir() if p.is_file())
    assert any(p.name.endswith(".sqlite") for p in temporal), temporal
    return temporal + sorted(p for p in stack.log_dir.rglob("*") if p.is_file())


def stack_secrets(stack: Stack) -> dict[str, bytes]:
    """Every other secret the dev stack made: the database roles' and the mail
    relay's passwords, the page-token key, the codec sign-in secret, and the
    private keys of its certificates (their base64 body)."""
    found: dict[str, bytes] = {}
    for path in sorted(stack.secrets_dir.iterdir()):
        if path.name.endswith("-key.pem"):
            body = b"".join(line for line in path.read_bytes().splitlines() if not line.startswith(b"-----"))
            found[path.name] = body[:48]
        elif path.suffix not in (".pem", ".toml", ".json"):
            found[path.name] = path.read_bytes().strip()
    names = set(found)
    assert {"smtp-password", "page-token.key", "codec-sign-in", "dev-admin-key.pem"} <= names, names
    assert any(n.startswith("database-") for n in names), names
    return found


def test_no_personal_data_or_key_in_clear_in_temporal_or_logs(
    api: tenant_service_pb2_grpc.TenantServiceStub,
    stack: Stack,
    fault_rules: Path,
    new_id: Callable[[], str],
) -> None:
    kept, failed = new_id(), new_id()
    people = {kept: _person(), failed: _person()}
    inject_failure(fault_rules, failed, "UpsertDnsRecords")
    try:
        for tid, person in people.items():
            create(api, tid, **_spec(person))
        assert settle(api, kept).state == State.STATE_ACTIVE
        gone = settle(api, failed)
        assert (gone.state, gone.failed_step) == (State.STATE_PROVISION_FAILED, "create_dns_records")
        assert gone.failure_reason  # failure text was recorded
    finally:
        inject_failure(fault_rules, failed, None)
    delete(api, kept, hard=True)
    assert settle(api, kept).state == State.STATE_DEPROVISIONED

    ring = json.loads(stack.payload_keys_file.read_text())
    secrets = {f"payload key {k}": base64.b64decode(v) for k, v in ring["keys"].items()}
    secrets |= {f"payload key {k} (base64)": v.encode() for k, v in ring["keys"].items()}
    secrets |= stack_secrets(stack)
    needles = {
        f"{tid} {what}": value.encode() for tid, person in people.items() for what, value in person.items()
    } | secrets
    found = []
    for path in stored_files(stack):
        data = path.read_bytes()
        for what, value in needles.items():
            if any(form in data for form in forms(value)):
                found.append(f"{what} in {path.relative_to(stack.state_dir)}")
    assert not found, "\n".join(found)

    # The provisioning memo holds the spec: ciphertext for a client without
    # the key ring, the spec itself for one with it.
    memo = asyncio.run(provisioning_memo(stack, kept))
    assert memo[SPEC_MEMO].metadata["encoding"] == codec.ENCODING
    spec = asyncio.run(provisioning_memo(stack, kept, decoded=True))
    assert spec.admin.email == people[kept]["email"]
