"""The infrastructure activities: proto requests in, provider calls, proto responses out."""

from __future__ import annotations

from temporalio import activity

from libs import errors, namespace
from libs.errors import ErrorType, provider_errors
from libs.lifecycle import checked_tenant_id
from services.infra.providers import PLAN_TIER_TAG, TENANT_TAG, InfraSettings, Providers, is_hostname
from tenantry.infra.v1 import infra_pb2
from tenantry.tenant.v1 import tenant_pb2


def _heartbeat() -> None:
    if activity.in_activity():
        activity.heartbeat()


def _checked_plan_tier(value: int) -> str:
    """The plan tier's name, or a non-retryable InvalidArgument."""
    if value not in tenant_pb2.PlanTier.values() or value == tenant_pb2.PLAN_TIER_UNSPECIFIED:
        raise errors.permanent(ErrorType.INVALID_ARGUMENT, f"plan_tier {value} is not a plan tier")
    return tenant_pb2.PlanTier.Name(value)


class InfrastructureActivities:
    """Implements tenantry.infra.v1.InfrastructureActivities; every method is idempotent."""

    def __init__(self, providers: Providers, settings: InfraSettings) -> None:
        self._storage = providers.storage
        self._dns = providers.dns
        self._deployment = providers.deployment
        self._infrastructure = providers.infrastructure
        self._settings = settings

    def _bucket_name(self, tenant_id: str) -> str:
        return f"{self._settings.bucket_prefix}-{tenant_id}"

    def create_bucket(self, request: infra_pb2.CreateBucketRequest) -> infra_pb2.CreateBucketResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        _checked_plan_tier(request.plan_tier)
        name = self._bucket_name(tenant_id)
        tags = {TENANT_TAG: tenant_id, PLAN_TIER_TAG: tenant_pb2.PlanTier.Name(request.plan_tier)}
        with provider_errors():
            self._storage.ensure_bucket(name, tenant_id=tenant_id, tags=tags)
        return infra_pb2.CreateBucketResponse(bucket=name)

    def delete_bucket(self, request: infra_pb2.DeleteBucketRequest) -> infra_pb2.DeleteBucketResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        with provider_errors():
            self._storage.delete_bucket(
                self._bucket_name(tenant_id), tenant_id=tenant_id, progress=_heartbeat
            )
        return infra_pb2.DeleteBucketResponse()

    def upsert_dns_records(
        self, request: infra_pb2.UpsertDnsRecordsRequest
    ) -> infra_pb2.UpsertDnsRecordsResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        names = self._record_names(tenant_id, request.domains)
        with provider_errors():
            self._dns.ensure_cnames(
                names, target=self._settings.app_hostname, tenant_id=tenant_id, ttl=self._settings.dns_ttl
            )
        return infra_pb2.UpsertDnsRecordsResponse(record_names=names)

    def delete_dns_records(
        self, request: infra_pb2.DeleteDnsRecordsRequest
    ) -> infra_pb2.DeleteDnsRecordsResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        names = self._record_names(tenant_id, request.domains, claiming=False)
        with provider_errors():
            self._dns.delete_cnames(names, tenant_id=tenant_id)
        return infra_pb2.DeleteDnsRecordsResponse()

    def create_deployment(
        self, request: infra_pb2.CreateDeploymentRequest
    ) -> infra_pb2.CreateDeploymentResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        _checked_plan_tier(request.plan_tier)
        # A silo tenant's own cluster comes from its infrastructure's outputs.
        cluster = request.infrastructure.get("cluster") or None
        with provider_errors():
            deployed = self._deployment.ensure_service(tenant_id, cluster=cluster, progress=_heartbeat)
        return infra_pb2.CreateDeploymentResponse(service=deployed.service, revision=deployed.revision)

    def delete_deployment(
        self, request: infra_pb2.DeleteDeploymentRequest
    ) -> infra_pb2.DeleteDeploymentResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        with provider_errors():
            self._deployment.delete_service(tenant_id, progress=_heartbeat)
        return infra_pb2.DeleteDeploymentResponse()

    def suspend_deployment(
        self, request: infra_pb2.SuspendDeploymentRequest
    ) -> infra_pb2.SuspendDeploymentResponse:
        """Scales the tenant's service to zero, remembering its count.

        A tenant without a service (pooled, or its deployment already removed)
        succeeds with nothing done: a suspension must not fail for want of
        something to scale down.
        """
        tenant_id = checked_tenant_id(request.tenant_id)
        with provider_errors():
            self._deployment.suspend_service(tenant_id, progress=_heartbeat)
        return infra_pb2.SuspendDeploymentResponse()

    def resume_deployment(
        self, request: infra_pb2.ResumeDeploymentRequest
    ) -> infra_pb2.ResumeDeploymentResponse:
        """Scales the tenant's service back to its remembered count and waits until it is stable.

        A tenant without a service succeeds with nothing done, as for suspend.
        """
        tenant_id = checked_tenant_id(request.tenant_id)
        with provider_errors():
            self._deployment.resume_service(tenant_id, progress=_heartbeat)
        return infra_pb2.ResumeDeploymentResponse()

    def apply_infrastructure(
        self, request: infra_pb2.ApplyInfrastructureRequest
    ) -> infra_pb2.ApplyInfrastructureResponse:
        tenant_id = checked_tenant_id(request.tenant_id)
        tier = _checked_plan_tier(request.plan_tier)
        with provider_errors():
            result = self._infrastructure.apply(tenant_id, variables={"plan_tier": tier}, progress=_heartbeat)
        return infra_pb2.ApplyInfrastructureResponse(outputs=dict(result.outputs))

    def destroy_infrastructure(
        self, request: infra_pb2.DestroyInfrastructureRequest
    ) -> infra_pb2.DestroyInfrastructureResponse:
        """Destroys the tenant's stack; its empty state stays behind as the proof.

        With `expect_state` (the tenant's record lists a stack), no state at
        all is a non-retryable NotFound: the state was lost and the
        infrastructure may still exist. Without it (a compensation), no state
        is success.
        """
        tenant_id = checked_tenant_id(request.tenant_id)
        with provider_errors():
            self._infrastructure.destroy(tenant_id, expect_state=request.expect_state, progress=_heartbeat)
        return infra_pb2.DestroyInfrastructureResponse()

    def _record_names(self, tenant_id: str, domains: list[str], *, claiming: bool = True) -> list[str]:
        """`<tenant>.<zone>` and each of the tenant's domains that lies strictly inside the zone.

        A domain in the zone outside `<tenant>.<zone>` and its subtree is an
        InvalidArgument when `claiming` (the API refuses it too; not every
        caller goes through it). A deletion keeps it (a tenant made before
        the rule may hold one), as only records carrying this tenant's owner
        record are ever deleted.
        """
        zone = self._dns.zone
        names = [f"{tenant_id}.{zone}"]
        # Messages name the domain by its place: a domain may be personal data.
        for index, raw in enumerate(domains):
            domain = namespace.normal_domain(raw)
            if not is_hostname(domain):
                raise errors.permanent(ErrorType.INVALID_ARGUMENT, f"domains[{index}] is not a host name")
            problem = namespace.zone_domain_problem(domain, tenant_id=tenant_id, zone=zone)
            if problem and claiming:
                raise errors.permanent(ErrorType.INVALID_ARGUMENT, f"domains[{index}]: {problem}")
            if domain.endswith(f".{zone}") and domain not in names:
                names.append(domain)
        return names
