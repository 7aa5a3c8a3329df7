"""The benchmark's baseline is the pooled plan: its steps' activities on their
queues, and the run's audit appends (the history check is in
tests/workflows/test_bench_baseline.py)."""

from __future__ import annotations

from collections import Counter

import pytest

from libs.contracts import TENANT_DATA
from orchestrator.plan import STEPS, plan_for
from tenantry.tenant.v1 import tenant_pb2
from tests.bench import baseline

POOLED = plan_for(tenant_pb2.PLAN_TIER_POOLED)


def test_the_baseline_runs_every_pooled_step_on_its_queue_and_three_appends() -> None:
    steps = [(STEPS[s].rpc.name, STEPS[s].rpc.task_queue) for s in POOLED.provision_steps]
    append = (TENANT_DATA.rpc("AppendTenantEvents").name, TENANT_DATA.task_queue)
    assert Counter(baseline.activities(POOLED)) == Counter(steps) + Counter({append: 3})
    # In the plan's order, the appends aside.
    assert [a for a in baseline.activities(POOLED) if a != append] == steps


def test_the_baseline_runs_the_workflows_graph() -> None:
    assert baseline.stages(POOLED) == (
        (("mark_provisioning",),),
        (
            (baseline.APPEND,),
            ("create_realm", "create_oidc_client", "create_admin_user"),
            ("create_schema",),
            ("create_bucket",),
            ("create_dns_records",),
        ),
        (("record_resources",),),
        (("mark_active",),),
        ((baseline.APPEND,), ("send_welcome",)),
        ((baseline.APPEND,),),
    )


@pytest.mark.parametrize("tier", [tenant_pb2.PLAN_TIER_BRIDGE, tenant_pb2.PLAN_TIER_SILO])
def test_tiers_with_long_steps_have_no_baseline(tier: int) -> None:
    # Their extra appends depend on timing (a long step's start goes out at once).
    with pytest.raises(ValueError):
        baseline.stages(plan_for(tier))
