"""A tenant's runs are found by their search attributes (libs/search.py) on a
real dev server, and the worker's step lines name the plan step the
orchestrator ran each activity as (libs/logs.py StepLog)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.worker import Replayer

from libs import contracts, lifecycle, logs, search
from libs.config import ConfigError
from libs.temporal import SANDBOX_RUNNER
from orchestrator.plan import plan_for
from orchestrator.worker import WORKFLOWS
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenant.v1 import tenant_pb2
from tests.workflows.support import SILO, FakeDomains, running, start_provision

State = tenant_pb2.Tenant.State


async def listed(client: Client, query: str, expected: int) -> dict[str, dict[str, str | None]]:
    """The runs the visibility query finds (workflow id -> our attributes), once it finds `expected`."""
    deadline = time.monotonic() + 20
    while True:
        found = {
            w.id: {k.name: w.typed_search_attributes.get(k) for k in search.KEYS}
            async for w in client.list_workflows(query)
        }
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


@pytest.mark.timeout(120)
async def test_every_run_of_a_tenant_is_found_by_tenant_id_with_its_tier_and_state(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="temporalio.activity")
    fakes = FakeDomains(record_tier=SILO)
    deprovision = contracts.WORKFLOWS.rpc("DeprovisionTenant")
    async with running(client, fakes, interceptors=[logs.StepLog()]):
        tenant_id, provisioning = await start_provision(client, SILO)
        assert (await provisioning.result()).state == State.STATE_ACTIVE
        deletion = await client.start_workflow(
            deprovision.name,
            orchestrator_pb2.DeprovisionTenantRequest(tenant_id=tenant_id, requested_by="test"),
            id=lifecycle.deprovision_workflow_id(tenant_id),
            task_queue=deprovision.task_queue,
            result_type=deprovision.output_type,
        )
        assert (await deletion.result()).state == State.STATE_DEPROVISIONED

    # Started without attributes (no facade here): the runs set them as they go.
    runs = await listed(client, f'TenantId = "{tenant_id}"', 2)
    assert runs == {
        provisioning.id: {"TenantId": tenant_id, "PlanTier": "SILO", "TenantState": "ACTIVE"},
        deletion.id: {"TenantId": tenant_id, "PlanTier": "SILO", "TenantState": "DEPROVISIONED"},
    }
    active = await listed(client, f'TenantId = "{tenant_id}" AND TenantState = "ACTIVE"', 1)
    assert set(active) == {provisioning.id}

    # One line as each step started and one as it finished, naming the step.
    lines = [
        r for r in caplog.records if getattr(r, "temporal_activity", {}).get("workflow_id") == provisioning.id
    ]
    started = [r.step for r in lines if getattr(r, "event", "") == "step_started"]
    finished = [r.step for r in lines if getattr(r, "event", "") == "step_finished"]
    steps = sorted(plan_for(SILO).provision_steps)
    assert (sorted(started), sorted(finished)) == (steps, steps)
    assert all(r.levelno == logging.INFO for r in lines)

    # The runs' own histories (the patch's upserts, the step headers) replay.
    replayer = Replayer(
        workflows=list(WORKFLOWS),
        workflow_runner=SANDBOX_RUNNER,
        data_converter=client.data_converter,
        interceptors=[logs.StepLog()],
    )
    for handle in (provisioning, deletion):
        result = await replayer.replay_workflow(await handle.fetch_history(), raise_on_replay_failure=False)
        assert result.replay_failure is None, result.replay_failure


@pytest.mark.timeout(60)
async def test_a_namespace_without_the_attributes_is_refused_with_the_command_that_adds_them(
    client: Client,
) -> None:
    await search.check_registered(client)  # the dev server of the tests has them
    other = f"no-attributes-{time.time_ns()}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=other, workflow_execution_retention_period=Duration(seconds=86400))
    )
    elsewhere = await Client.connect(client.service_client.config.target_host, namespace=other)
    with pytest.raises(ConfigError) as refused:
        await search.check_registered(elsewhere)
    assert "temporal operator search-attribute create" in str(refused.value)
    assert "--name TenantId --type Keyword" in str(refused.value)
