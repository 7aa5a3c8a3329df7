"""The tenant's application deployment on ECS, against a real moto server over HTTP.

moto runs no tasks; started by the fixtures with MOTO_ECS_SERVICE_RUNNING=1, it
gives every new service one running task and never moves a deployment on (see
services/infra/providers/ecs.py). So a new service of the default count is stable
by the real check, one that wants two tasks never is, and an update to a new
revision never is. The pure checks are tested in tests/unit/test_ecs_rollout.py.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import boto3
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from services.infra import providers
from services.infra.activities import InfrastructureActivities
from services.infra.providers.ecs import EcsDeployment, Rollout, rollout_of
from tenantry.infra.v1 import infra_pb2
from tenantry.tenant.v1 import tenant_pb2

IMAGE = "public.ecr.aws/tenantry/app:1.0"


@pytest.fixture(scope="module")
def ecs(aws: Any) -> Any:
    return boto3.client("ecs")


def activities_with(
    built: providers.Providers,
    settings: providers.InfraSettings,
    *,
    image: str = IMAGE,
    timeout: float = 5,
    desired_count: int = 1,
) -> InfrastructureActivities:
    from services.infra.providers import aws

    deployment = EcsDeployment(
        aws.client("ecs"),
        cluster=settings.ecs_cluster,
        image=image,
        timeout=timeout,
        poll_interval=0.05,
        desired_count=desired_count,
    )
    return InfrastructureActivities(dataclasses.replace(built, deployment=deployment), settings)


@pytest.fixture
def infra(built: providers.Providers, settings: providers.InfraSettings) -> InfrastructureActivities:
    return activities_with(built, settings)


@pytest.fixture
def tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def create(tenant_id: str, **infrastructure: str) -> infra_pb2.CreateDeploymentRequest:
    return infra_pb2.CreateDeploymentRequest(
        tenant_id=tenant_id, plan_tier=tenant_pb2.PLAN_TIER_BRIDGE, infrastructure=infrastructure
    )


def run(fn: Any, request: Any, heartbeats: list[Any] | None = None) -> Any:
    env = ActivityEnvironment()
    if heartbeats is not None:
        env.on_heartbeat = lambda *details: heartbeats.append(details)
    return env.run(fn, request)


def service_of(ecs: Any, cluster: str, tenant_id: str) -> dict[str, Any] | None:
    found = ecs.describe_services(cluster=cluster, services=[f"tenant-{tenant_id}"], include=["TAGS"])[
        "services"
    ]
    live = [s for s in found if s["status"] != "INACTIVE"]
    return live[0] if live else None


def revisions(ecs: Any, tenant_id: str, status: str = "ACTIVE") -> list[str]:
    return ecs.list_task_definitions(familyPrefix=f"tenantry-{tenant_id}", status=status)[
        "taskDefinitionArns"
    ]


SUSPENDED_TAG = "tenantry:suspended-desired-count"


def suspend(tenant_id: str) -> infra_pb2.SuspendDeploymentRequest:
    return infra_pb2.SuspendDeploymentRequest(tenant_id=tenant_id)


def resume(tenant_id: str) -> infra_pb2.ResumeDeploymentRequest:
    return infra_pb2.ResumeDeploymentRequest(tenant_id=tenant_id)


def tags_of(ecs: Any, arn: str) -> dict[str, str]:
    return {t["key"]: t["value"] for t in ecs.list_tags_for_resource(resourceArn=arn)["tags"]}


def test_worker_start_creates_the_shared_cluster(
    ecs: Any, settings: providers.InfraSettings, built: Any
) -> None:
    clusters = ecs.describe_clusters(clusters=[settings.ecs_cluster], include=["TAGS"])["clusters"]
    assert [c["status"] for c in clusters] == ["ACTIVE"]


def test_deployment_is_created_stable_and_tagged(
    infra: InfrastructureActivities, ecs: Any, settings: providers.InfraSettings, tenant_id: str
) -> None:
    response = run(infra.create_deployment, create(tenant_id))

    service = service_of(ecs, settings.ecs_cluster, tenant_id)
    assert service is not None
    assert response.service == service["serviceArn"]
    assert service["serviceName"] == f"tenant-{tenant_id}"
    assert (service["desiredCount"], service["runningCount"]) == (1, 1)
    assert service["taskDefinition"] == response.revision
    assert rollout_of(service, response.revision) is Rollout.STABLE
    definition = ecs.describe_task_definition(taskDefinition=response.revision, include=["TAGS"])
    assert definition["taskDefinition"]["family"] == f"tenantry-{tenant_id}"
    [container] = definition["taskDefinition"]["containerDefinitions"]
    assert container["image"] == IMAGE
    assert container["environment"] == [{"name": "TENANT_ID", "value": tenant_id}]
    assert definition["tags"] == [{"key": "tenantry:tenant-id", "value": tenant_id}]
    assert ecs.list_tags_for_resource(resourceArn=response.service)["tags"] == [
        {"key": "tenantry:tenant-id", "value": tenant_id}
    ]


def test_create_deployment_twice_gives_one_service_and_one_revision(
    infra: InfrastructureActivities, ecs: Any, settings: providers.InfraSettings, tenant_id: str
) -> None:
    first = run(infra.create_deployment, create(tenant_id))
    second = run(infra.create_deployment, create(tenant_id))

    assert second == first
    names = [a for a in ecs.list_services(cluster=settings.ecs_cluster)["serviceArns"] if tenant_id in a]
    assert names == [first.service]
    assert revisions(ecs, tenant_id) == [first.revision]


def test_update_that_does_not_stabilise_rolls_back_to_the_previous_revision(
    built: providers.Providers, ecs: Any, settings: providers.InfraSettings, tenant_id: str
) -> None:
    first = run(activities_with(built, settings).create_deployment, create(tenant_id))
    # A new image is a new revision; moto never rolls a deployment on to it.
    update = activities_with(built, settings, image="public.ecr.aws/tenantry/app:2.0", timeout=0.3)
    heartbeats: list[Any] = []

    with pytest.raises(ApplicationError) as caught:
        run(update.create_deployment, create(tenant_id), heartbeats)

    assert caught.value.type == "InvalidArgument" and caught.value.non_retryable
    assert "rolled back to" in str(caught.value) and first.revision in str(caught.value)
    assert "not stable yet" not in str(caught.value)
    service = service_of(ecs, settings.ecs_cluster, tenant_id)
    assert service is not None and service["taskDefinition"] == first.revision
    # Back on the previous revision, and stable there by the real check.
    assert rollout_of(service, first.revision) is Rollout.STABLE
    # The failed revision is deregistered; the good one is kept.
    assert revisions(ecs, tenant_id) == [first.revision]
    assert len(revisions(ecs, tenant_id, "INACTIVE")) == 1
    assert len(heartbeats) >= 2  # the wait heartbeats on every poll


def test_new_service_that_never_becomes_stable_fails_and_is_left_for_the_compensation(
    built: providers.Providers, ecs: Any, settings: providers.InfraSettings, tenant_id: str
) -> None:
    # Two tasks wanted, and moto runs one: the rollout stays IN_PROGRESS.
    starved = activities_with(built, settings, timeout=0.3, desired_count=2)
    heartbeats: list[Any] = []

    with pytest.raises(ApplicationError) as caught:
        run(starved.create_deployment, create(tenant_id), heartbeats)

    assert caught.value.type == "InvalidArgument" and caught.value.non_retryable
    assert "did not become stable" in str(caught.value)
    assert len(heartbeats) >= 2  # the wait heartbeats on every poll
    service = service_of(ecs, settings.ecs_cluster, tenant_id)
    assert service is not None
    assert (service["desiredCount"], service["runningCount"]) == (2, 1)
    assert rollout_of(service, service["taskDefinition"]) is Rollout.IN_PROGRESS
    # What the workflow's compensation does: DeleteDeployment removes it all.
    run(starved.delete_deployment, infra_pb2.DeleteDeploymentRequest(tenant_id=tenant_id))
    assert service_of(ecs, settings.ecs_cluster, tenant_id) is None
    assert revisions(ecs, tenant_id) == []


def test_an_update_cut_short_is_rolled_back_by_the_next_attempt(
    built: providers.Providers, ecs: Any, settings: providers.InfraSettings, tenant_id: str
) -> None:
    first = run(activities_with(built, settings).create_deployment, create(tenant_id))
    image = "public.ecr.aws/tenantry/app:3.0"
    # What an attempt that died right after UpdateService leaves behind.
    started = ecs.register_task_definition(
        family=f"tenantry-{tenant_id}",
        containerDefinitions=[
            {
                "name": "app",
                "image": image,
                "essential": True,
                "cpu": 256,
                "memory": 512,
                "environment": [{"name": "TENANT_ID", "value": tenant_id}],
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster=settings.ecs_cluster, service=f"tenant-{tenant_id}", taskDefinition=started)

    retry = activities_with(built, settings, image=image, timeout=0.3)
    with pytest.raises(ApplicationError) as caught:
        run(retry.create_deployment, create(tenant_id))

    assert caught.value.non_retryable and "rolled back to" in str(caught.value)
    service = service_of(ecs, settings.ecs_cluster, tenant_id)
    assert service is not None and service["taskDefinition"] == first.revision
    assert revisions(ecs, tenant_id) == [first.revision]


def test_delete_removes_service_and_every_revision_twice_ok(
    built: providers.Providers, ecs: Any, settings: providers.InfraSettings, tenant_id: str
) -> None:
    infra = activities_with(built, settings)
    run(infra.create_deployment, create(tenant_id))
    # A second revision, as an earlier update would have left.
    ecs.register_task_definition(
        family=f"tenantry-{tenant_id}", containerDefinitions=[{"name": "app", "image": "x:1", "memory": 64}]
    )
    assert len(revisions(ecs, tenant_id)) == 2

    delete = infra_pb2.DeleteDeploymentRequest(tenant_id=tenant_id)
    run(infra.delete_deployment, delete)
    run(infra.delete_deployment, delete)

    assert service_of(ecs, settings.ecs_cluster, tenant_id) is None
    assert revisions(ecs, tenant_id) == []


def test_delete_of_a_tenant_without_deployment_succeeds(
    infra: InfrastructureActivities, tenant_id: str
) -> None:
    run(infra.delete_deployment, infra_pb2.DeleteDeploymentRequest(tenant_id=tenant_id))


def test_another_tenants_service_is_a_conflict_and_survives_delete(
    infra: InfrastructureActivities, ecs: Any, settings: providers.InfraSettings, tenant_id: str
) -> None:
    arn = ecs.register_task_definition(
        family="someone-else", containerDefinitions=[{"name": "app", "image": "x:1", "memory": 64}]
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(
        cluster=settings.ecs_cluster,
        serviceName=f"tenant-{tenant_id}",
        taskDefinition=arn,
        desiredCount=1,
        tags=[{"key": "tenantry:tenant-id", "value": "someone-else"}],
    )

    with pytest.raises(ApplicationError) as caught:
        run(infra.create_deployment, create(tenant_id))

    assert caught.value.type == "Conflict" and caught.value.non_retryable
    run(infra.delete_deployment, infra_pb2.DeleteDeploymentRequest(tenant_id=tenant_id))
    service = service_of(ecs, settings.ecs_cluster, tenant_id)
    assert service is not None and service["taskDefinition"] == arn


def test_an_untagged_service_of_the_tenants_name_is_a_conflict_and_never_changed(
    infra: InfrastructureActivities, ecs: Any, settings: providers.InfraSettings, tenant_id: str
) -> None:
    revision = ecs.register_task_definition(
        family="someone-else", containerDefinitions=[{"name": "app", "image": "x:1", "memory": 64}]
    )["taskDefinition"]["taskDefinitionArn"]
    arn = ecs.create_service(
        cluster=settings.ecs_cluster,
        serviceName=f"tenant-{tenant_id}",
        taskDefinition=revision,
        desiredCount=2,
    )["service"]["serviceArn"]

    for fn, request in (
        (infra.create_deployment, create(tenant_id)),
        (infra.suspend_deployment, suspend(tenant_id)),
        (infra.resume_deployment, resume(tenant_id)),
    ):
        with pytest.raises(ApplicationError) as caught:
            run(fn, request)
        assert caught.value.type == "Conflict" and caught.value.non_retryable
    # Removing the tenant leaves a service that is not its own in place.
    run(infra.delete_deployment, infra_pb2.DeleteDeploymentRequest(tenant_id=tenant_id))

    service = service_of(ecs, settings.ecs_cluster, tenant_id)
    assert service is not None and service["serviceArn"] == arn
    assert (service["taskDefinition"], service["desiredCount"]) == (revision, 2)
    assert tags_of(ecs, arn) == {}
    assert revisions(ecs, tenant_id) == []  # nothing registered for it either


def test_a_tenant_whose_id_prefixes_anothers_never_touches_its_revisions(
    infra: InfrastructureActivities, ecs: Any, settings: providers.InfraSettings
) -> None:
    # moto matches `familyPrefix` exactly, as ECS documents it; the family
    # filter that holds if it matched by prefix is tested in tests/unit.
    ab = f"t-{uuid.uuid4().hex[:10]}"
    abc = f"{ab}c"
    longer = run(infra.create_deployment, create(abc))

    shorter = run(infra.create_deployment, create(ab))
    run(infra.delete_deployment, infra_pb2.DeleteDeploymentRequest(tenant_id=ab))

    # ab got a revision of its own family, not abc's latest.
    assert f":task-definition/tenantry-{ab}:" in shorter.revision
    assert revisions(ecs, ab) == [] and service_of(ecs, settings.ecs_cluster, ab) is None
    assert revisions(ecs, abc) == [longer.revision]
    service = service_of(ecs, settings.ecs_cluster, abc)
    assert service is not None and service["taskDefinition"] == longer.revision


def test_silo_deployment_goes_to_the_tenants_cluster_and_delete_removes_it(
    infra: InfrastructureActivities, ecs: Any, settings: providers.InfraSettings, tenant_id: str
) -> None:
    cluster = f"tenantry-{tenant_id}"

    response = run(infra.create_deployment, create(tenant_id, cluster=cluster))

    assert f":service/{cluster}/" in response.service
    found = ecs.describe_clusters(clusters=[cluster], include=["TAGS"])["clusters"]
    assert found[0]["tags"] == [{"key": "tenantry:tenant-id", "value": tenant_id}]
    assert service_of(ecs, settings.ecs_cluster, tenant_id) is None

    run(infra.delete_deployment, infra_pb2.DeleteDeploymentRequest(tenant_id=tenant_id))

    assert [
        c
        for c in ecs.describe_clusters(clusters=[cluster], include=["TAGS"])["clusters"]
        if c["status"] == "ACTIVE"
    ] == []
    assert revisions(ecs, tenant_id) == []


def test_bad_cluster_name_is_invalid_argument(infra: InfrastructureActivities, tenant_id: str) -> None:
    with pytest.raises(ApplicationError) as caught:
        run(infra.create_deployment, create(tenant_id, cluster="no spaces/allowed"))
    assert caught.value.type == "InvalidArgument" and caught.value.non_retryable


# --- suspend and resume -------------------------------------------------------


def deployed(
    infra: InfrastructureActivities, ecs: Any, cluster: str, tenant_id: str, *, count: int, silo: bool = False
) -> dict[str, Any]:
    """The tenant's service, deployed by the activity, then scaled to `count` (not the default).

    `silo`: `cluster` is the tenant's own, named by its infrastructure; else the shared one.
    """
    run(infra.create_deployment, create(tenant_id, **({"cluster": cluster} if silo else {})))
    ecs.update_service(cluster=cluster, service=f"tenant-{tenant_id}", desiredCount=count)
    service = service_of(ecs, cluster, tenant_id)
    assert service is not None and service["desiredCount"] == count
    return service


def test_suspend_scales_to_zero_and_remembers_the_count_twice_ok(
    infra: InfrastructureActivities, ecs: Any, settings: providers.InfraSettings, tenant_id: str
) -> None:
    arn = deployed(infra, ecs, settings.ecs_cluster, tenant_id, count=3)["serviceArn"]

    run(infra.suspend_deployment, suspend(tenant_id))

    service = service_of(ecs, settings.ecs_cluster, tenant_id)
    assert service is not None and service["desiredCount"] == 0
    assert tags_of(ecs, arn) == {"tenantry:tenant-id": tenant_id, SUSPENDED_TAG: "3"}

    # Suspended already: the remembered count stays, it does not become 0.
    run(infra.suspend_deployment, suspend(tenant_id))

    service = service_of(ecs, settings.ecs_cluster, tenant_id)
    assert service is not None and service["desiredCount"] == 0
    assert tags_of(ecs, arn) == {"tenantry:tenant-id": tenant_id, SUSPENDED_TAG: "3"}


def test_resume_restores_the_remembered_count_and_drops_the_tag_twice_ok(
    infra: InfrastructureActivities, ecs: Any, settings: providers.InfraSettings, tenant_id: str
) -> None:
    arn = deployed(infra, ecs, settings.ecs_cluster, tenant_id, count=3)["serviceArn"]
    run(infra.suspend_deployment, suspend(tenant_id))

    for _ in range(2):
        run(infra.resume_deployment, resume(tenant_id))

        service = service_of(ecs, settings.ecs_cluster, tenant_id)
        assert service is not None
        assert (service["desiredCount"], service["runningCount"]) == (3, 3)
        assert tags_of(ecs, arn) == {"tenantry:tenant-id": tenant_id}


class NeverRunning:
    """An ECS client whose services never get a task running, as when capacity is short."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def describe_services(self, **kwargs: Any) -> Any:
        answer = self._client.describe_services(**kwargs)
        for service in answer["services"]:
            service["runningCount"] = 0
        return answer


def test_resume_waits_heartbeating_and_a_service_not_steady_in_time_is_retryable(
    built: providers.Providers,
    infra: InfrastructureActivities,
    ecs: Any,
    settings: providers.InfraSettings,
    tenant_id: str,
) -> None:
    from services.infra.providers import aws

    arn = deployed(infra, ecs, settings.ecs_cluster, tenant_id, count=2)["serviceArn"]
    run(infra.suspend_deployment, suspend(tenant_id))
    starved = EcsDeployment(
        NeverRunning(aws.client("ecs")),
        cluster=settings.ecs_cluster,
        image=IMAGE,
        timeout=0.3,
        poll_interval=0.05,
    )
    slow = InfrastructureActivities(dataclasses.replace(built, deployment=starved), settings)
    heartbeats: list[Any] = []

    with pytest.raises(ApplicationError) as caught:
        run(slow.resume_deployment, resume(tenant_id), heartbeats)

    assert caught.value.type == "ProviderUnavailable" and not caught.value.non_retryable
    assert "runs 0 of 2 tasks" in str(caught.value)
    assert len(heartbeats) >= 2  # the wait heartbeats on every poll
    # The count is set and the tag gone already: the retry only waits again.
    run(infra.resume_deployment, resume(tenant_id))
    service = service_of(ecs, settings.ecs_cluster, tenant_id)
    assert service is not None and service["desiredCount"] == 2
    assert tags_of(ecs, arn) == {"tenantry:tenant-id": tenant_id}


def test_resume_without_a_remembered_count_gives_a_stopped_service_the_default(
    infra: InfrastructureActivities, ecs: Any, settings: providers.InfraSettings, tenant_id: str
) -> None:
    deployed(infra, ecs, settings.ecs_cluster, tenant_id, count=0)

    run(infra.resume_deployment, resume(tenant_id))

    service = service_of(ecs, settings.ecs_cluster, tenant_id)
    assert service is not None and service["desiredCount"] == 1


def test_suspend_and_resume_of_a_tenant_without_deployment_succeed(
    infra: InfrastructureActivities, ecs: Any, settings: providers.InfraSettings, tenant_id: str
) -> None:
    run(infra.suspend_deployment, suspend(tenant_id))
    run(infra.resume_deployment, resume(tenant_id))

    assert service_of(ecs, settings.ecs_cluster, tenant_id) is None


def test_suspend_and_resume_of_another_tenants_service_are_conflicts_and_change_nothing(
    infra: InfrastructureActivities, ecs: Any, settings: providers.InfraSettings, tenant_id: str
) -> None:
    revision = ecs.register_task_definition(
        family="someone-else", containerDefinitions=[{"name": "app", "image": "x:1", "memory": 64}]
    )["taskDefinition"]["taskDefinitionArn"]
    arn = ecs.create_service(
        cluster=settings.ecs_cluster,
        serviceName=f"tenant-{tenant_id}",
        taskDefinition=revision,
        desiredCount=2,
        tags=[{"key": "tenantry:tenant-id", "value": "someone-else"}],
    )["service"]["serviceArn"]

    for fn, request in (
        (infra.suspend_deployment, suspend(tenant_id)),
        (infra.resume_deployment, resume(tenant_id)),
    ):
        with pytest.raises(ApplicationError) as caught:
            run(fn, request)
        assert caught.value.type == "Conflict" and caught.value.non_retryable

    service = service_of(ecs, settings.ecs_cluster, tenant_id)
    assert service is not None and service["desiredCount"] == 2
    assert tags_of(ecs, arn) == {"tenantry:tenant-id": "someone-else"}


def test_silo_deployment_is_suspended_and_resumed_on_the_tenants_cluster(
    infra: InfrastructureActivities, ecs: Any, settings: providers.InfraSettings, tenant_id: str
) -> None:
    cluster = f"tenantry-{tenant_id}"
    arn = deployed(infra, ecs, cluster, tenant_id, count=2, silo=True)["serviceArn"]
    assert service_of(ecs, settings.ecs_cluster, tenant_id) is None

    run(infra.suspend_deployment, suspend(tenant_id))

    service = service_of(ecs, cluster, tenant_id)
    assert service is not None and service["desiredCount"] == 0
    assert tags_of(ecs, arn)[SUSPENDED_TAG] == "2"

    run(infra.resume_deployment, resume(tenant_id))

    service = service_of(ecs, cluster, tenant_id)
    assert service is not None and service["desiredCount"] == 2
    assert SUSPENDED_TAG not in tags_of(ecs, arn)

    # A suspended deployment is removed like any other.
    run(infra.suspend_deployment, suspend(tenant_id))
    run(infra.delete_deployment, infra_pb2.DeleteDeploymentRequest(tenant_id=tenant_id))
    assert service_of(ecs, cluster, tenant_id) is None
