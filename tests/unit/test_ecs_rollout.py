"""The pure checks of the ECS adapter, against DescribeServices entries as ECS gives them.

The shapes are those of the ECS API reference (a PRIMARY deployment and the
ACTIVE one it replaces, their counts and `rolloutState`), and the one moto
gives without MOTO_ECS_SERVICE_RUNNING, which once passed for stable.
"""

from __future__ import annotations

from typing import Any

import pytest

from libs import config
from services.infra import providers
from services.infra.providers.ecs import (
    EcsDeployment,
    Rollout,
    family_of_revision,
    is_silo_cluster_name,
    is_steady,
    rollout_of,
)

R1 = "arn:aws:ecs:us-east-1:123456789012:task-definition/tenantry-acme:1"
R2 = "arn:aws:ecs:us-east-1:123456789012:task-definition/tenantry-acme:2"


def deployment(
    status: str, revision: str, *, desired: int, running: int, state: str | None = "IN_PROGRESS"
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "status": status,
        "taskDefinition": revision,
        "desiredCount": desired,
        "runningCount": running,
        "pendingCount": max(desired - running, 0),
    }
    if state is not None:
        entry["rolloutState"] = state
    return entry


def service(*deployments: dict[str, Any], desired: int = 1, running: int) -> dict[str, Any]:
    return {"desiredCount": desired, "runningCount": running, "deployments": list(deployments)}


@pytest.mark.parametrize(
    ("described", "expected"),
    [
        pytest.param(
            service(deployment("PRIMARY", R2, desired=1, running=1, state="COMPLETED"), running=1),
            Rollout.STABLE,
            id="completed and running all",
        ),
        pytest.param(
            service(deployment("PRIMARY", R2, desired=1, running=0), running=0),
            Rollout.IN_PROGRESS,
            id="just created, no task yet",
        ),
        pytest.param(
            # What moto gives without MOTO_ECS_SERVICE_RUNNING: once taken for stable.
            {
                "desiredCount": 1,
                "runningCount": 0,
                "pendingCount": 1,
                "deployments": [
                    {
                        "status": "PRIMARY",
                        "taskDefinition": R2,
                        "desiredCount": 1,
                        "runningCount": 0,
                        "pendingCount": 1,
                        "failedTasks": 0,
                        "rolloutState": "IN_PROGRESS",
                    }
                ],
            },
            Rollout.IN_PROGRESS,
            id="moto without running tasks",
        ),
        pytest.param(
            service(
                deployment("PRIMARY", R2, desired=1, running=1),
                deployment("ACTIVE", R1, desired=0, running=1, state=None),
                running=2,
            ),
            Rollout.IN_PROGRESS,
            id="new tasks run, old ones draining",
        ),
        pytest.param(
            service(
                deployment("PRIMARY", R2, desired=1, running=0),
                deployment("ACTIVE", R1, desired=1, running=1, state="COMPLETED"),
                running=1,
            ),
            Rollout.IN_PROGRESS,
            id="update started",
        ),
        pytest.param(
            service(deployment("PRIMARY", R2, desired=2, running=1), desired=2, running=1),
            Rollout.IN_PROGRESS,
            id="running fewer than desired",
        ),
        pytest.param(
            service(deployment("PRIMARY", R2, desired=1, running=0, state="COMPLETED"), running=0),
            Rollout.IN_PROGRESS,
            id="completed once, task since stopped",
        ),
        pytest.param(
            service(deployment("PRIMARY", R2, desired=1, running=1, state="COMPLETED"), desired=2, running=1),
            Rollout.IN_PROGRESS,
            id="service wants more than it runs",
        ),
        pytest.param(
            service(deployment("PRIMARY", R2, desired=1, running=1), running=1),
            Rollout.IN_PROGRESS,
            id="running all, rollout not completed yet",
        ),
        pytest.param(
            service(deployment("PRIMARY", R2, desired=1, running=1, state=None), running=1),
            Rollout.STABLE,
            id="no rollout state, one deployment running all",
        ),
        pytest.param(
            service(
                deployment("PRIMARY", R2, desired=1, running=1, state="COMPLETED"),
                deployment("INACTIVE", R1, desired=0, running=0, state=None),
                running=1,
            ),
            Rollout.STABLE,
            id="replaced deployment left as INACTIVE",
        ),
        pytest.param(
            service(
                deployment("PRIMARY", R2, desired=1, running=0, state="FAILED"),
                deployment("ACTIVE", R1, desired=1, running=1, state="COMPLETED"),
                running=1,
            ),
            Rollout.FAILED,
            id="circuit breaker failed it",
        ),
        pytest.param(
            # moto after UpdateService to R2: the PRIMARY deployment stays on R1.
            service(deployment("PRIMARY", R1, desired=1, running=1, state="COMPLETED"), running=1),
            Rollout.IN_PROGRESS,
            id="primary on another revision",
        ),
        pytest.param(service(running=0), Rollout.IN_PROGRESS, id="no deployment"),
    ],
)
def test_rollout_of_a_described_service(described: dict[str, Any], expected: Rollout) -> None:
    assert rollout_of(described, R2) is expected


@pytest.mark.parametrize(
    ("described", "expected"),
    [
        (service(deployment("PRIMARY", R1, desired=2, running=2), desired=2, running=2), True),
        (service(deployment("PRIMARY", R1, desired=0, running=0), desired=0, running=0), True),
        (service(deployment("PRIMARY", R1, desired=2, running=1), desired=2, running=1), False),
        (service(deployment("PRIMARY", R1, desired=1, running=0), desired=1, running=0), False),
        (
            service(
                deployment("PRIMARY", R2, desired=2, running=2),
                deployment("ACTIVE", R1, desired=0, running=1),
                desired=2,
                running=2,
            ),
            False,
        ),
    ],
)
def test_steady_state_of_a_described_service(described: dict[str, Any], expected: bool) -> None:
    assert is_steady(described) is expected


def test_the_family_of_a_revision_is_the_whole_family_name() -> None:
    assert family_of_revision(R1) == "tenantry-acme"
    assert family_of_revision(R1.replace("tenantry-acme", "tenantry-acmex")) == "tenantry-acmex"
    assert family_of_revision(R1) != family_of_revision(R1.replace("tenantry-acme", "tenantry-acmex"))
    assert family_of_revision("tenantry-acme") is None


def test_silo_cluster_names_are_those_of_valid_tenant_ids() -> None:
    assert is_silo_cluster_name("tenantry-acme")
    assert not is_silo_cluster_name("tenantry")
    assert not is_silo_cluster_name("tenantry-shared-")  # no tenant id ends with a hyphen
    assert not is_silo_cluster_name("shared-acme")


@pytest.mark.parametrize("cluster", ["tenantry-acme", "TENANTRY-t-0a1b2c3d"])
def test_a_shared_cluster_named_like_a_silo_tenants_is_refused_at_start(
    cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTRY_ECS_CLUSTER", cluster)

    with pytest.raises(config.ConfigError, match="TENANTRY_ECS_CLUSTER"):
        providers.InfraSettings.from_env()


class PrefixListing:
    """An ECS client whose ListTaskDefinitions matched `familyPrefix` as a prefix."""

    def __init__(self, arns: list[str]) -> None:
        self._arns = arns

    def get_paginator(self, operation: str) -> PrefixListing:
        assert operation == "list_task_definitions"
        return self

    def paginate(self, *, familyPrefix: str, status: str) -> list[dict[str, list[str]]]:
        return [{"taskDefinitionArns": [arn for arn in self._arns if f"/{familyPrefix}" in arn]}]


def test_a_family_s_revisions_are_its_own_even_if_the_listing_matched_by_prefix() -> None:
    ab = R1.replace("tenantry-acme", "tenantry-ab")
    abc = [R1.replace("tenantry-acme", "tenantry-abc"), R2.replace("tenantry-acme", "tenantry-abc")]
    deployment = EcsDeployment(PrefixListing([ab, *abc]), cluster="tenantry", image="x:1", timeout=1)

    # What both the choice of a revision and the removal of a tenant's family go by.
    assert deployment._active_revisions("tenantry-ab") == [ab]
    assert deployment._active_revisions("tenantry-abc") == abc
