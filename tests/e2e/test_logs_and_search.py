"""Following one tenant through the stack, as an operator would: every
process's log is JSON lines with the fields; the worker that ran each step
logged its start and finish with the tenant, workflow and run ids; the facade
logged each call; and `TenantId = "<id>"` finds the tenant's runs, with its
tier and state, in Temporal's visibility.

(tests/e2e/test_no_clear_personal_data.py scans the logs and Temporal's
files for personal data, raw, URL-quoted or in base64, and the stack's
secrets; tests/e2e/test_keycloak.py for the admin's email with Keycloak,
whose look-ups put it in URLs.)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from temporalio.client import Client

from libs import lifecycle, search
from libs.devstack.stack import Stack
from orchestrator.plan import STEPS, plan_for
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import create, eventually, settle
from tests.e2e.test_deletion import delete

State = tenant_pb2.Tenant.State
Status = tenant_pb2.StepStatus
FIELDS = {"time", "level", "service", "logger", "message"}


def process_logs(stack: Stack) -> dict[str, Path]:
    """The log of every Tenantry process of the stack (replicas too), by process name."""
    found = {name: p.log_path for name, p in stack.services.items()}
    if "codec_server" in stack.embedded:
        found["codec_server"] = stack.embedded["codec_server"].log_path
    return found


def read_lines(stack: Stack) -> list[tuple[str, dict[str, Any]]]:
    """(process, line) for every line of every process's log; each must be a JSON object with the fields."""
    lines = []
    bad = []
    for name, path in process_logs(stack).items():
        for number, text in enumerate(path.read_text(errors="replace").splitlines(), 1):
            try:
                line = json.loads(text)
            except ValueError:
                bad.append(f"{path.name}:{number}: not JSON: {text[:200]}")
                continue
            missing = FIELDS - set(line) if isinstance(line, dict) else FIELDS
            if missing:
                bad.append(f"{path.name}:{number}: lacks {sorted(missing)}: {text[:200]}")
                continue
            # A replica (`infra-1`) is the same service.
            if line["service"] != name.rsplit("-", 1)[0] and line["service"] != name:
                bad.append(f"{path.name}:{number}: service {line['service']!r}")
            lines.append((name, line))
    assert not bad, "\n".join(bad[:20])
    return lines


def steps_logged(lines: list[tuple[str, dict[str, Any]]], workflow_id: str, event: str) -> dict[str, str]:
    """Step -> the process that logged `event` for it in the run `workflow_id`."""
    return {
        line["step"]: name
        for name, line in lines
        if line.get("workflow_id") == workflow_id
        and line.get("event") == event
        and not line.get("undo")
        and line.get("step")
    }


def worker_of(step: str) -> str:
    """The process whose queue serves the step's activity (`tenantry-idp` -> idp)."""
    return STEPS[step].rpc.task_queue.removeprefix("tenantry-")


async def runs_of(stack: Stack, query: str) -> dict[str, dict[str, str | None]]:
    client = await Client.connect(stack.temporal_address)
    return {
        w.id: {k.name: w.typed_search_attributes.get(k) for k in search.KEYS}
        async for w in client.list_workflows(query)
    }


async def start_attributes(stack: Stack, workflow_id: str) -> list[str]:
    """The search attributes the run was started with (its first event)."""
    client = await Client.connect(stack.temporal_address)
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        return list(event.workflow_execution_started_event_attributes.search_attributes.indexed_fields)
    return []


@pytest.mark.timeout(240)
def test_one_tenant_followed_through_logs_and_search_attributes(
    api: tenant_service_pb2_grpc.TenantServiceStub, stack: Stack, new_id: Callable[[], str]
) -> None:
    tid, nobody = new_id(), new_id()
    with pytest.raises(grpc.RpcError) as missing:
        api.GetTenant(tenant_service_pb2.GetTenantRequest(name=f"tenants/{nobody}"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    create(api, tid)
    assert settle(api, tid).state == State.STATE_ACTIVE
    delete(api, tid, hard=True)
    gone = settle(api, tid)
    assert gone.state == State.STATE_DEPROVISIONED
    provisioning, deletion = lifecycle.provision_workflow_id(tid), lifecycle.deprovision_workflow_id(tid)
    provision_steps = set(plan_for(tenant_pb2.PLAN_TIER_POOLED).provision_steps)
    deletion_steps = {
        s.step for s in gone.steps if s.step in STEPS and s.status == Status.STEP_STATUS_COMPLETED
    }
    assert {"mark_deprovisioning", "delete_bucket", "mark_deprovisioned"} <= deletion_steps

    # The last steps (the welcome, the last notice) end after the state they follow.
    def all_finished() -> bool:
        lines = read_lines(stack)
        return provision_steps <= set(steps_logged(lines, provisioning, "step_finished")) and (
            deletion_steps <= set(steps_logged(lines, deletion, "step_finished"))
        )

    eventually(all_finished, timeout=60, what="a finish line for every step", interval=1.0)
    lines = read_lines(stack)
    for workflow_id, steps in ((provisioning, provision_steps), (deletion, deletion_steps)):
        for event in ("step_started", "step_finished"):
            logged = steps_logged(lines, workflow_id, event)
            assert {s: logged.get(s) for s in steps} == {s: worker_of(s) for s in steps}, (workflow_id, event)
    step_lines = [
        line for _, line in lines if line.get("workflow_id") in (provisioning, deletion) and line.get("step")
    ]
    assert {line["tenant_id"] for line in step_lines} == {tid}
    assert all(line["run_id"] and line["activity"].startswith("tenantry.") for line in step_lines)
    assert all(
        line["level"] == "INFO"
        for line in step_lines
        if line.get("event") in ("step_started", "step_finished")
    )

    # The facade: one line per call, with its code and the tenant.
    calls = {
        (line["rpc"], line["code"])
        for name, line in lines
        if name.startswith("tenant_api") and line.get("event") == "rpc" and line.get("tenant_id") == tid
    }
    assert {("CreateTenant", "OK"), ("DeleteTenant", "OK"), ("WatchTenant", "OK")} <= calls
    refused = [
        line["code"]
        for name, line in lines
        if name.startswith("tenant_api")
        and line.get("rpc") == "GetTenant"
        and line.get("tenant_id") == nobody
    ]
    assert refused == ["NOT_FOUND"]

    # Temporal's visibility: every run of the tenant, with its tier and the state it left.
    expected = {
        provisioning: {"TenantId": tid, "PlanTier": "POOLED", "TenantState": "ACTIVE"},
        deletion: {"TenantId": tid, "PlanTier": "POOLED", "TenantState": "DEPROVISIONED"},
    }
    found: dict[str, dict[str, str | None]] = {}

    def listed() -> bool:
        found.clear()
        found.update(asyncio.run(runs_of(stack, f'TenantId = "{tid}"')))
        return found == expected

    try:
        eventually(listed, timeout=20, what=f"the runs of {tid} listed by TenantId")
    except AssertionError:
        assert found == expected  # shows what was listed
    assert set(asyncio.run(runs_of(stack, f'TenantId = "{tid}" AND TenantState = "ACTIVE"'))) == {
        provisioning
    }
    # The facade started each run with its tenant and tier (the state comes from the run).
    for workflow_id in (provisioning, deletion):
        assert set(asyncio.run(start_attributes(stack, workflow_id))) == {"TenantId", "PlanTier"}
