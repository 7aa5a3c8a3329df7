"""The tenant's own application service on ECS (bridge and silo tiers).

One task definition family `tenantry-<tenant>` and one service
`tenant-<tenant>` per tenant, both tagged with the tenant id, on the shared
cluster or on the tenant's own (silo). The tag is what makes a service of
that name held by anyone else (untagged, or tagged for another tenant) a
conflict rather than something to take over, scale or delete. A family is
only ever one tenant's: revisions are listed by exact family, whatever the
listing's `familyPrefix` matches.

What "stable" means (`rollout_of`): ECS starts a new PRIMARY deployment for
every update and keeps the previous one ACTIVE until its tasks have drained;
CreateService and UpdateService return before any task runs. A revision is
stable when the PRIMARY deployment runs it, no other deployment is left, and
the deployment and the service each run as many tasks as they want (what the
`services-stable` waiter of the ECS API checks, plus the revision), and its
`rolloutState` is COMPLETED: ECS moves it there once the new tasks have
stayed up, so a task that starts and then fails is not taken for success
(a deployment without a rollout state goes by the counts). A rollout the
circuit breaker FAILED is a failure at once. The poll loop checks this
itself rather than calling the waiter, so that it heartbeats on every poll
within the deploy timeout.

Suspension scales the service to zero and remembers the count it had in a
tag on the service (SUSPENDED_COUNT_TAG), written before the scale-down so
that an attempt cut short in between loses nothing. Resume scales back to
that count, drops the tag and waits until the service is steady
(`is_steady`, the waiter's check): a scale starts no new deployment, so the
rollout state says nothing.

How moto (server mode, libs/devstack/embedded.py) behaves, from its source
(moto/ecs/models.py): it runs no tasks, and it is started with
MOTO_ECS_SERVICE_RUNNING set to the count a service gets (DESIRED_COUNT).
CreateService then gives the service and its one PRIMARY deployment that
many running tasks, with rolloutState COMPLETED when it is at least the
desired count and IN_PROGRESS for ever otherwise. UpdateService never starts
a deployment: the PRIMARY one keeps the first task definition and its
counts; a new desired count sets the service's running count to it at once.
So on moto a new service of the default count is stable at once, one that
wants more tasks never is, an update to a new revision never is (the tests'
rollback), and a resume is steady at once. None of that needs code here.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from enum import Enum
from typing import Any, NoReturn

import botocore.exceptions

from libs.lifecycle import valid_tenant_id
from services.infra.providers import (
    TENANT_TAG,
    Conflict,
    DeployedService,
    DeploymentFailed,
    Unavailable,
)
from services.infra.providers.aws import error_code, faults_as_unavailable

log = logging.getLogger(__name__)

CONTAINER_NAME = "app"
# The count a service gets; the same for every tier today. The dev stack's
# moto runs this many tasks per service (MOTO_ECS_SERVICE_RUNNING).
DESIRED_COUNT = 1
# On a suspended service: the desired count it had, which resume restores.
SUSPENDED_COUNT_TAG = "tenantry:suspended-desired-count"
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,254}")
_COUNT = re.compile(r"[0-9]{1,6}")
_REVISION_ARN = re.compile(r":task-definition/([A-Za-z0-9_-]{1,255}):[0-9]+$")
_SILO_CLUSTER_PREFIX = "tenantry-"


class Rollout(Enum):
    STABLE = "stable"
    FAILED = "failed"
    IN_PROGRESS = "in progress"


def rollout_of(service: dict[str, Any], revision: str) -> Rollout:
    """Where the rollout of `revision` stands, from a DescribeServices entry (see the module doc)."""
    deployments = service.get("deployments", [])
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    if primary is None or primary.get("taskDefinition") != revision:
        return Rollout.IN_PROGRESS
    state = primary.get("rolloutState")
    if state == "FAILED":
        return Rollout.FAILED
    # An INACTIVE deployment has been replaced entirely; an ACTIVE one still drains.
    draining = [d for d in deployments if d is not primary and d.get("status") != "INACTIVE"]
    if (
        not draining
        and state in (None, "COMPLETED")
        and primary.get("runningCount") == primary.get("desiredCount")
        and service.get("runningCount") == service.get("desiredCount")
    ):
        return Rollout.STABLE
    return Rollout.IN_PROGRESS


def is_steady(service: dict[str, Any]) -> bool:
    """One deployment left and as many tasks running as desired (the `services-stable` waiter)."""
    deployments = service.get("deployments", [])
    return len(deployments) == 1 and service.get("runningCount") == service.get("desiredCount")


def family_of(tenant_id: str) -> str:
    return f"tenantry-{tenant_id}"


def family_of_revision(arn: str) -> str | None:
    """The family of a task definition ARN (`...:task-definition/<family>:<revision>`)."""
    found = _REVISION_ARN.search(arn)
    return found.group(1) if found else None


def service_name_of(tenant_id: str) -> str:
    return f"tenant-{tenant_id}"


def silo_cluster_of(tenant_id: str) -> str:
    """The cluster name the silo module (deploy/iac/tenant) gives a tenant."""
    return f"{_SILO_CLUSTER_PREFIX}{tenant_id}"


def is_silo_cluster_name(cluster: str) -> bool:
    """Whether `silo_cluster_of` gives this name to some possible tenant."""
    return cluster.startswith(_SILO_CLUSTER_PREFIX) and valid_tenant_id(
        cluster.removeprefix(_SILO_CLUSTER_PREFIX)
    )


def _tags(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["key"]: t["value"] for t in tags or []}


class EcsDeployment:
    """`Deployment` on ECS: a task definition family and a service per tenant.

    `timeout` bounds each wait for a stable (or steady) service, polled every
    `poll_interval` seconds; `desired_count` is the count a service gets.
    """

    def __init__(
        self,
        client: Any,
        *,
        cluster: str,
        image: str,
        timeout: float,
        poll_interval: float = 5.0,
        desired_count: int = DESIRED_COUNT,
    ) -> None:
        self._ecs = client
        self._cluster = cluster
        self._image = image
        self._timeout = timeout
        self._poll_interval = poll_interval
        self._desired_count = desired_count

    @property
    def cluster(self) -> str:
        return self._cluster

    @classmethod
    def find_or_create_cluster(
        cls, client: Any, cluster: str, *, image: str, timeout: float, poll_interval: float = 5.0
    ) -> EcsDeployment:
        """Finds the shared cluster, creating it when missing (development and tests)."""
        deployment = cls(client, cluster=cluster, image=image, timeout=timeout, poll_interval=poll_interval)
        with faults_as_unavailable(f"finding ECS cluster {cluster}"):
            deployment._ensure_cluster(cluster, tenant_id=None)
        log.info("deploying tenant services on ECS cluster %s", cluster)
        return deployment

    # --- create ------------------------------------------------------------

    def ensure_service(
        self, tenant_id: str, *, cluster: str | None, progress: Callable[[], None] = lambda: None
    ) -> DeployedService:
        if cluster is not None and not _CLUSTER_NAME.fullmatch(cluster):
            raise DeploymentFailed(f"cluster {cluster[:64]!r} is not an ECS cluster name")
        cluster = cluster or self._cluster
        name = service_name_of(tenant_id)
        with faults_as_unavailable(f"deploying service {name}"):
            if cluster != self._cluster:
                self._ensure_cluster(cluster, tenant_id=tenant_id)
            current = self._describe(cluster, name)
            if current is not None and _tags(current.get("tags")).get(TENANT_TAG) != tenant_id:
                # Untagged or another tenant's: never taken over.
                raise Conflict(f"ECS service {name} on {cluster} already exists and is not this tenant's")
            revision = self._revision(tenant_id, running=current["taskDefinition"] if current else None)
            if current is None:
                return self._create(cluster, name, tenant_id, revision, progress)
            if current["taskDefinition"] != revision:
                return self._update(cluster, current, revision, progress)
            if current.get("desiredCount") != self._desired_count:
                self._ecs.update_service(cluster=cluster, service=name, desiredCount=self._desired_count)
            if self._wait(cluster, name, revision, progress):
                return DeployedService(service=current["serviceArn"], revision=revision)
            # An earlier attempt started this update and was cut short: the
            # revision of the other deployment (on ECS the old one, ACTIVE
            # while it drains; on moto the PRIMARY that never moved on) is
            # the one to go back to.
            previous = next(
                (
                    d["taskDefinition"]
                    for d in current.get("deployments", [])
                    if d.get("taskDefinition") not in (None, revision)
                ),
                None,
            )
            if previous is None:
                raise DeploymentFailed(
                    f"ECS service {name} did not become stable on {revision} within {self._timeout:g}s"
                )
            self._roll_back(cluster, name, revision, previous, progress)

    def _create(
        self, cluster: str, name: str, tenant_id: str, revision: str, progress: Callable[[], None]
    ) -> DeployedService:
        try:
            created = self._ecs.create_service(
                cluster=cluster,
                serviceName=name,
                taskDefinition=revision,
                desiredCount=self._desired_count,
                deploymentConfiguration={
                    # The breaker tells us (rolloutState FAILED) instead of
                    # retrying for ever; the rollback is ours, so that it is
                    # the same on every provider.
                    "deploymentCircuitBreaker": {"enable": True, "rollback": False},
                },
                # Tagged in the same call: a service of ours is never untagged.
                tags=[{"key": TENANT_TAG, "value": tenant_id}],
                propagateTags="SERVICE",
            )["service"]
        except botocore.exceptions.ClientError as err:
            # Another attempt of this activity created it in the meantime.
            if error_code(err) != "InvalidParameterException" or self._describe(cluster, name) is None:
                raise
            raise Unavailable(f"ECS service {name} is being created concurrently") from err
        log.info("created ECS service %s on %s with %s", name, cluster, revision)
        if not self._wait(cluster, name, revision, progress):
            # Nothing to roll back to: the workflow compensates with DeleteDeployment.
            raise DeploymentFailed(
                f"ECS service {name} did not become stable on {revision} within {self._timeout:g}s"
            )
        return DeployedService(service=created["serviceArn"], revision=revision)

    def _update(
        self, cluster: str, current: dict[str, Any], revision: str, progress: Callable[[], None]
    ) -> DeployedService:
        name, previous = current["serviceName"], current["taskDefinition"]
        log.info("updating ECS service %s from %s to %s", name, previous, revision)
        self._ecs.update_service(
            cluster=cluster, service=name, taskDefinition=revision, desiredCount=self._desired_count
        )
        if self._wait(cluster, name, revision, progress):
            return DeployedService(service=current["serviceArn"], revision=revision)
        self._roll_back(cluster, name, revision, previous, progress)

    def _roll_back(
        self, cluster: str, name: str, revision: str, previous: str, progress: Callable[[], None]
    ) -> NoReturn:
        log.warning(
            "ECS service %s did not become stable on %s; rolling back to %s", name, revision, previous
        )
        self._ecs.update_service(cluster=cluster, service=name, taskDefinition=previous)
        back = self._wait(cluster, name, previous, progress)
        # The failed revision goes, so that the next attempt registers (and tries) it afresh.
        self._ecs.deregister_task_definition(taskDefinition=revision)
        raise DeploymentFailed(
            f"ECS service {name} did not become stable on {revision} within {self._timeout:g}s; "
            f"rolled back to {previous}" + ("" if back else " (not stable yet)")
        )

    def _wait(self, cluster: str, name: str, revision: str, progress: Callable[[], None]) -> bool:
        """Polls until `revision` is stable (True), failed or out of time (False)."""
        deadline = time.monotonic() + self._timeout
        while True:
            service = self._describe(cluster, name)
            if service is None:
                raise Unavailable(f"ECS service {name} disappeared while being deployed")
            rollout = rollout_of(service, revision)
            if rollout is not Rollout.IN_PROGRESS:
                return rollout is Rollout.STABLE
            progress()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(self._poll_interval, remaining))

    def _revision(self, tenant_id: str, *, running: str | None) -> str:
        """The running revision or the family's latest if it is what we want, else a new one."""
        family = family_of(tenant_id)
        candidates = [running] if running else []
        active = self._active_revisions(family)
        if active:
            # Sorted here: moto ignores `sort`.
            candidates.append(max(active, key=lambda arn: int(arn.rsplit(":", 1)[-1])))
        for arn in candidates:
            definition = self._ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
            if definition.get("status") == "ACTIVE" and self._is_wanted(definition, tenant_id):
                return str(definition["taskDefinitionArn"])
        registered = self._ecs.register_task_definition(
            family=family,
            containerDefinitions=[self._container(tenant_id)],
            tags=[{"key": TENANT_TAG, "value": tenant_id}],
        )["taskDefinition"]
        log.info("registered %s", registered["taskDefinitionArn"])
        return str(registered["taskDefinitionArn"])

    def _container(self, tenant_id: str) -> dict[str, Any]:
        return {
            "name": CONTAINER_NAME,
            "image": self._image,
            "essential": True,
            "cpu": 256,
            "memory": 512,
            "environment": [{"name": "TENANT_ID", "value": tenant_id}],
        }

    def _is_wanted(self, definition: dict[str, Any], tenant_id: str) -> bool:
        containers = definition.get("containerDefinitions", [])
        if len(containers) != 1:
            return False
        wanted = self._container(tenant_id)
        return all(containers[0].get(key) == wanted[key] for key in ("name", "image", "environment"))

    # --- delete ------------------------------------------------------------

    def delete_service(self, tenant_id: str, *, progress: Callable[[], None] = lambda: None) -> None:
        name = service_name_of(tenant_id)
        silo = silo_cluster_of(tenant_id)
        with faults_as_unavailable(f"deleting service {name}"):
            for cluster in dict.fromkeys([self._cluster, silo]):
                self._delete_from(cluster, name, tenant_id)
                progress()
            self._deregister_family(tenant_id, progress)
            if silo != self._cluster:
                self._delete_silo_cluster(silo, tenant_id)

    def _delete_from(self, cluster: str, name: str, tenant_id: str) -> None:
        current = self._describe_if_cluster(cluster, name)
        if current is None:
            return
        if _tags(current.get("tags")).get(TENANT_TAG) != tenant_id:
            log.warning(
                "ECS service %s on %s is not tenant %s's; leaving it in place", name, cluster, tenant_id
            )
            return
        try:
            if current.get("desiredCount", 0) > 0:
                self._ecs.update_service(cluster=cluster, service=name, desiredCount=0)
            self._ecs.delete_service(cluster=cluster, service=name, force=True)
        except botocore.exceptions.ClientError as err:
            if error_code(err) not in ("ServiceNotFoundException", "ServiceNotActiveException"):
                raise
        log.info("deleted ECS service %s on %s", name, cluster)

    def _deregister_family(self, tenant_id: str, progress: Callable[[], None]) -> None:
        for arn in self._active_revisions(family_of(tenant_id)):
            try:
                self._ecs.deregister_task_definition(taskDefinition=arn)
            except botocore.exceptions.ClientError as err:
                if error_code(err) != "ClientException":  # already gone
                    raise
            progress()

    def _delete_silo_cluster(self, cluster: str, tenant_id: str) -> None:
        found = self._find_cluster(cluster)
        if found is None:
            return
        if _tags(found.get("tags")).get(TENANT_TAG) != tenant_id:
            return
        try:
            self._ecs.delete_cluster(cluster=cluster)
        except botocore.exceptions.ClientError as err:
            code = error_code(err)
            if code == "ClusterNotFoundException":
                return
            if code in ("ClusterContainsServicesException", "ClusterContainsTasksException"):
                # The service is still draining: a later attempt finishes the job.
                raise Unavailable(f"ECS cluster {cluster} still drains tenant {tenant_id}'s service") from err
            raise
        log.info("deleted ECS cluster %s", cluster)

    # --- suspend and resume -----------------------------------------------

    def suspend_service(self, tenant_id: str, *, progress: Callable[[], None] = lambda: None) -> None:
        name = service_name_of(tenant_id)
        with faults_as_unavailable(f"suspending service {name}"):
            for cluster, current in self._services_of(tenant_id, doing="suspend"):
                count = int(current.get("desiredCount", 0))
                remembered = _tags(current.get("tags")).get(SUSPENDED_COUNT_TAG)
                if remembered is None:
                    # Tagged before scaling down, so that a retry after a crash in
                    # between finds the count; a suspended service keeps the first one.
                    self._ecs.tag_resource(
                        resourceArn=current["serviceArn"],
                        tags=[{"key": SUSPENDED_COUNT_TAG, "value": str(count)}],
                    )
                if count != 0:
                    self._ecs.update_service(cluster=cluster, service=name, desiredCount=0)
                log.info(
                    "suspended ECS service %s on %s (remembered desired count %s)",
                    name,
                    cluster,
                    remembered if remembered is not None else count,
                )
                progress()

    def resume_service(self, tenant_id: str, *, progress: Callable[[], None] = lambda: None) -> None:
        """See `Deployment.resume_service`.

        A service that is not steady within the deploy timeout raises
        `Unavailable`, a retryable fault, rather than `DeploymentFailed`: the
        revision ran before the suspension, so what holds a scale-up back is
        most likely capacity or a slow start, and a retry (the count is set
        already) only waits again. The workflow's activity timeout bounds it.
        """
        name = service_name_of(tenant_id)
        with faults_as_unavailable(f"resuming service {name}"):
            found = self._services_of(tenant_id, doing="resume")
            for cluster, current in found:
                count = int(current.get("desiredCount", 0))
                remembered = _tags(current.get("tags")).get(SUSPENDED_COUNT_TAG)
                wanted = _count_to_restore(remembered, current=count, default=self._desired_count)
                if wanted != count:
                    self._ecs.update_service(cluster=cluster, service=name, desiredCount=wanted)
                if remembered is not None:
                    self._ecs.untag_resource(resourceArn=current["serviceArn"], tagKeys=[SUSPENDED_COUNT_TAG])
                log.info("resuming ECS service %s on %s with %d tasks", name, cluster, wanted)
            for cluster, _ in found:
                self._wait_steady(cluster, name, progress)

    def _services_of(self, tenant_id: str, *, doing: str) -> list[tuple[str, dict[str, Any]]]:
        """The tenant's service on the shared cluster and on its own (silo), those that exist.

        Raises `Conflict` before anything is changed if a service of that name
        on either is not the tenant's (untagged, or another tenant's).
        """
        name = service_name_of(tenant_id)
        found = []
        for cluster in dict.fromkeys([self._cluster, silo_cluster_of(tenant_id)]):
            current = self._describe_if_cluster(cluster, name)
            if current is None:
                continue
            if _tags(current.get("tags")).get(TENANT_TAG) != tenant_id:
                raise Conflict(f"ECS service {name} on {cluster} is not this tenant's; not changed")
            found.append((cluster, current))
        if not found:
            # Pooled tenants have no service, and a removed one has nothing left to scale.
            log.info("tenant %s has no ECS service; nothing to %s", tenant_id, doing)
        return found

    def _wait_steady(self, cluster: str, name: str, progress: Callable[[], None]) -> None:
        """Polls until the service is steady; raises `Unavailable` when out of time."""
        deadline = time.monotonic() + self._timeout
        while True:
            service = self._describe(cluster, name)
            if service is None:
                raise Unavailable(f"ECS service {name} disappeared while being resumed")
            if is_steady(service):
                return
            progress()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(
                    f"ECS service {name} on {cluster} runs {service.get('runningCount', 0)} of "
                    f"{service.get('desiredCount', 0)} tasks after {self._timeout:g}s"
                )
            time.sleep(min(self._poll_interval, remaining))

    # --- shared ------------------------------------------------------------

    def _active_revisions(self, family: str) -> list[str]:
        """The ARNs of the family's ACTIVE revisions, and of no other family's.

        The filter is ours: `familyPrefix` is documented as the full family
        name (moto matches it exactly), but its name says prefix, and a
        prefix match would hand tenant `ab` the revisions of tenant `abc`.
        """
        return [
            arn
            for page in self._ecs.get_paginator("list_task_definitions").paginate(
                familyPrefix=family, status="ACTIVE"
            )
            for arn in page["taskDefinitionArns"]
            if family_of_revision(arn) == family
        ]

    def _ensure_cluster(self, cluster: str, *, tenant_id: str | None) -> None:
        """Finds the cluster or creates it; a tenant's own cluster is tagged, and must be its."""
        found = self._find_cluster(cluster)
        if found is None:
            tags = [{"key": TENANT_TAG, "value": tenant_id}] if tenant_id else []
            log.warning("ECS cluster %s is missing; creating it", cluster)
            self._ecs.create_cluster(clusterName=cluster, tags=tags)
            return
        owner = _tags(found.get("tags")).get(TENANT_TAG)
        if tenant_id is not None and owner is not None and owner != tenant_id:
            raise Conflict(f"ECS cluster {cluster} belongs to another tenant")

    def _find_cluster(self, cluster: str) -> dict[str, Any] | None:
        found = self._ecs.describe_clusters(clusters=[cluster], include=["TAGS"])["clusters"]
        active = [c for c in found if c.get("status") == "ACTIVE"]
        return active[0] if active else None

    def _describe_if_cluster(self, cluster: str, name: str) -> dict[str, Any] | None:
        """As `_describe`, and None when the cluster itself is missing."""
        try:
            return self._describe(cluster, name)
        except botocore.exceptions.ClientError as err:
            if error_code(err) == "ClusterNotFoundException":
                return None
            raise

    def _describe(self, cluster: str, name: str) -> dict[str, Any] | None:
        """The service as DescribeServices gives it, with tags; None when missing or deleted."""
        found = self._ecs.describe_services(cluster=cluster, services=[name], include=["TAGS"])["services"]
        live = [s for s in found if s.get("status") != "INACTIVE"]
        return live[0] if live else None


def _count_to_restore(remembered: str | None, *, current: int, default: int) -> int:
    """The desired count a resumed service gets.

    The remembered one when it is a positive count. Otherwise (no tag, a
    service that was at zero already when suspended, a tag edited by hand) a
    service at zero gets `default`, since a resumed tenant must serve, and
    a running one keeps its own (it is resumed already, or was never
    suspended), so a second resume changes nothing.
    """
    if remembered is not None and _COUNT.fullmatch(remembered) and int(remembered) > 0:
        return int(remembered)
    if remembered not in (None, "0"):
        log.warning("ignoring remembered desired count %r", remembered[:32])
    return current if current > 0 else default
