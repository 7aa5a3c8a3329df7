"""Fault rules for every tenant (`"*"` in libs/faults.py's rules file), on a
real Temporal dev server: the interceptor the workers use, fake activities."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from libs.faults import EVERY_TENANT, FaultInjection, fired_dir
from tenantry.tenant.v1 import tenant_pb2
from tests.workflows.support import FakeDomains, running, start_provision

DELAY = 0.3


async def durations(handle: WorkflowHandle[Any, Any], method: str) -> list[float]:
    """Seconds from scheduled to completed of each of the run's `method` activities."""
    scheduled: dict[int, float] = {}
    out = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name.endswith(f".{method}"):
                scheduled[event.event_id] = event.event_time.ToDatetime().timestamp()
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            started = scheduled.get(event.activity_task_completed_event_attributes.scheduled_event_id)
            if started is not None:
                out.append(event.event_time.ToDatetime().timestamp() - started)
    return out


async def test_a_delay_for_every_tenant_slows_each_tenants_activity_every_time(
    client: Client, tmp_path: Path
) -> None:
    rules = tmp_path / "faults.json"
    rule = {"rpc": "CreateOidcClient", "mode": "delay_before", "seconds": DELAY, "once": False}
    rules.write_text(json.dumps({EVERY_TENANT: [rule]}))
    fakes = FakeDomains()
    async with running(client, fakes, interceptors=[FaultInjection(rules)]):
        handles = [(await start_provision(client))[1] for _ in range(2)]
        results = [await h.result() for h in handles]
    assert [r.state for r in results] == [tenant_pb2.Tenant.STATE_ACTIVE] * 2
    for handle in handles:
        [slow] = await durations(handle, "CreateOidcClient")
        [fast] = await durations(handle, "CreateRealm")
        assert slow >= DELAY > fast
    # Not a rule that fires once: nothing marks it as fired.
    assert not fired_dir(rules).exists()


async def test_a_failure_for_every_tenant_fails_any_tenant(client: Client, tmp_path: Path) -> None:
    rules = tmp_path / "faults.json"
    rules.write_text(json.dumps({EVERY_TENANT: ["CreateBucket"]}))
    fakes = FakeDomains()
    async with running(client, fakes, interceptors=[FaultInjection(rules)]):
        _, handle = await start_provision(client)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    # The interceptor stopped it before the (fake) activity ran; the earlier steps were undone.
    assert not fakes.called("CreateBucket")
    assert fakes.called("DeleteRealm")
    [marked] = fakes.called("MarkProvisionFailed")
    assert marked.failed_step == "create_bucket"
