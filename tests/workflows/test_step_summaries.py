"""Each activity a run schedules names its plan step in its summary (the
Temporal UI shows it; the workers' trace spans carry it as `step`)."""

from __future__ import annotations

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError

from tests.workflows.support import FakeDomains, running, start_provision


async def test_each_activity_names_its_step_and_an_undo_the_step_it_undoes(client: Client) -> None:
    fakes = FakeDomains()
    fakes.fail.add("CreateBucket")
    async with running(client, fakes):
        _, handle = await start_provision(client)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    summaries: dict[str, set[str]] = {}
    async for event in handle.fetch_history_events():
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            continue
        name = event.activity_task_scheduled_event_attributes.activity_type.name.rsplit(".", 1)[-1]
        summary = ""
        if event.user_metadata.HasField("summary"):
            summary = client.data_converter.payload_converter.from_payload(event.user_metadata.summary, str)
        summaries.setdefault(name, set()).add(summary)
    assert summaries["MarkProvisioning"] == {"mark_provisioning"}
    assert summaries["CreateRealm"] == {"create_realm"}
    assert summaries["CreateBucket"] == {"create_bucket"}
    assert summaries["DeleteRealm"] == {"undo create_realm"}
    assert summaries["DropTenantSchema"] == {"undo create_schema"}
    assert summaries["MarkProvisionFailed"] == {"mark_provision_failed"}
    assert summaries["SendNotice"] == {"send_failure_notice"}
    # The audit log's appends are not steps.
    assert summaries["AppendTenantEvents"] == {""}
