"""Recorded histories of every kind of lifecycle run replay on today's
workflow code. A change to a workflow's command sequence that is not behind
`workflow.patched` breaks these: runs in flight would break the same way."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.common import HeaderCodecBehavior
from temporalio.worker import Replayer

from libs import codec
from libs.contracts import IDENTITY, INFRASTRUCTURE, TENANT_DATA, WORKFLOWS, execute
from libs.temporal import SANDBOX_RUNNER
from orchestrator.plan import PROVISION_STEP
from orchestrator.worker import WORKFLOWS as REGISTERED
from tenantry.idp.v1 import idp_pb2
from tenantry.infra.v1 import infra_pb2
from tenantry.orchestrator.v1 import orchestrator_pb2
from tenantry.tenantdb.v1 import tenantdb_pb2
from tests.bench.codec import history_payloads

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
# A ring of the test's own: recorded histories predate encryption, and pass
# through the codec unchanged, as they do in every process.
RING = codec.new_key_ring()


def replayer(workflows: list[type]) -> Replayer:
    """A replayer with the data converter every process has (libs/temporal.py connect)."""
    return Replayer(
        workflows=workflows,
        workflow_runner=SANDBOX_RUNNER,
        data_converter=codec.data_converter(RING),
        header_codec_behavior=HeaderCodecBehavior.CODEC,
    )


def history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_there_is_a_history_of_each_kind_of_run() -> None:
    names = {p.stem for p in HISTORIES}
    assert {
        "provision_pooled_succeeded",
        "provision_silo_succeeded",
        "provision_silo_compensated",
        "provision_bridge_cancelled",
        "deprovision_bridge_succeeded",
        # Recorded after the audit log, grace period, backup and suspend/resume:
        "provision_pooled_audited",
        "provision_bridge_audited_compensated",
        "provision_pooled_cancelled_by_caller",
        "deprovision_pooled_grace_elapsed_backed_up",
        "deprovision_bridge_grace_cancelled_by_undelete",
        "deprovision_silo_grace_ended_by_delete_now",
        "deprovision_silo_hard_delete_backed_up",
        "suspend_bridge_succeeded",
        "resume_bridge_succeeded",
    } <= names


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_history_replays_on_the_current_workflows(path: Path) -> None:
    result = await replayer(list(REGISTERED)).replay_workflow(history(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.stem}: {result.replay_failure}"


@pytest.mark.parametrize("stem", ["provision_pooled_audited", "provision_bridge_audited_compensated"])
async def test_an_encrypted_history_replays(stem: str) -> None:
    """The same run with every payload encrypted, as Temporal stores it now."""
    recorded = history(next(p for p in HISTORIES if p.stem == stem))
    sealer = codec.EncryptionCodec(RING)
    payloads = history_payloads(recorded)
    assert payloads
    for payload in payloads:
        payload.CopyFrom(sealer.encrypt(payload))
    assert b"json/protobuf" not in b"".join(e.SerializeToString() for e in recorded.events)
    result = await replayer(list(REGISTERED)).replay_workflow(recorded, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{stem}: {result.replay_failure}"
    # Without the key, the same history cannot be read: the payloads really are ciphertext.
    stranger = Replayer(
        workflows=list(REGISTERED),
        workflow_runner=SANDBOX_RUNNER,
        data_converter=codec.data_converter(codec.new_key_ring("other")),
    )
    assert (
        await stranger.replay_workflow(recorded, raise_on_replay_failure=False)
    ).replay_failure is not None


@workflow.defn(name=WORKFLOWS.rpc("ProvisionTenant").name)
class ReorderedProvision:
    """The provisioning workflow with two steps swapped and no patch: what a
    careless refactor would ship."""

    @workflow.run
    async def run(
        self, request: orchestrator_pb2.ProvisionTenantRequest
    ) -> orchestrator_pb2.ProvisionTenantResponse:
        tid = request.tenant.tenant_id
        await execute(
            INFRASTRUCTURE.rpc("CreateBucket"),
            infra_pb2.CreateBucketRequest(tenant_id=tid, plan_tier=request.tenant.plan_tier),
            PROVISION_STEP,
        )
        await execute(
            TENANT_DATA.rpc("MarkProvisioning"),
            tenantdb_pb2.MarkProvisioningRequest(
                tenant=request.tenant, workflow_id=workflow.info().workflow_id
            ),
            PROVISION_STEP,
        )
        await asyncio.gather(
            execute(IDENTITY.rpc("CreateRealm"), idp_pb2.CreateRealmRequest(tenant_id=tid), PROVISION_STEP),
        )
        return orchestrator_pb2.ProvisionTenantResponse()


async def test_an_unpatched_reordering_of_steps_fails_the_replay() -> None:
    path = next(p for p in HISTORIES if p.stem == "provision_pooled_succeeded")
    result = await replayer([ReorderedProvision]).replay_workflow(
        history(path), raise_on_replay_failure=False
    )
    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower()
