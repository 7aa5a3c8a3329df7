"""What the infrastructure activities need from a cloud, and the adapters to it.

Adapters raise `Conflict` for a resource held by someone else and
`Unavailable` for a fault a retry may fix; the activities turn those into
the shared error vocabulary. Anything else propagates and Temporal retries.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from libs import config, namespace

# The shared provider errors, re-exported for this domain's adapters.
from libs.errors import Conflict as Conflict
from libs.errors import ErrorType, ProviderError
from libs.errors import Unavailable as Unavailable
from libs.lifecycle import TENANT_ID_PATTERN

# Tags that mark a bucket as ours and say for whom.
TENANT_TAG = "tenantry:tenant-id"
PLAN_TIER_TAG = "tenantry:plan-tier"

_HOSTNAME = namespace.HOSTNAME
# S3's rules for a general purpose bucket name (3 to 63 characters, no "..",
# not an IP address, none of the reserved prefixes and suffixes).
_BUCKET_NAME = re.compile(
    r"(?!xn--|sthree-|amzn-s3-demo-)(?!.*\.\.)(?!\d+\.\d+\.\d+\.\d+$)"
    r"(?!.*(-s3alias|--ol-s3|\.mrap|--x-s3|--table-s3)$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
)
# Object key prefixes: path segments of safe characters, no leading or trailing "/".
_KEY_PREFIX = re.compile(r"[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*")
_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+){1,3}")
# ECS cluster names; lower case here so that a setting's case cannot matter.
ECS_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,254}")
# registry/path:tag or @digest, no spaces; the registry checks the rest.
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/:-]{0,254}(@sha256:[0-9a-f]{64})?")


class Storage(Protocol):
    """Object storage: one bucket per tenant."""

    def ensure_bucket(self, name: str, *, tenant_id: str, tags: Mapping[str, str]) -> None:
        """Creates the bucket (private, encrypted, versioned, tagged) or re-applies that to ours.

        Raises `Conflict`, changing nothing, if the name is taken by another
        account or tenant or by a bucket without this tenant's tag.
        """
        ...

    def delete_bucket(
        self, name: str, *, tenant_id: str, progress: Callable[[], None] = lambda: None
    ) -> None:
        """Deletes every object version and the bucket; a missing or foreign one, or an
        untagged one without this tenant's claim, is left alone.

        `progress` is called after each batch of deletions (the activity heartbeats).
        """
        ...


class Dns(Protocol):
    """DNS records in one managed zone, each marked with the tenant that owns it."""

    @property
    def zone(self) -> str:
        """The managed zone's name, without the final dot."""
        ...

    def ensure_cnames(self, names: Sequence[str], *, target: str, tenant_id: str, ttl: int) -> None:
        """Points each name at `target`; raises `Conflict` if a name is held by anyone else."""
        ...

    def delete_cnames(self, names: Sequence[str], *, tenant_id: str) -> None:
        """Deletes the tenant's records of these names; missing or foreign ones are left alone."""
        ...


@dataclass(frozen=True)
class DeployedService:
    """A tenant's running application: the service and the revision it runs."""

    service: str
    revision: str


class Deployment(Protocol):
    """The tenant's own application service (bridge and silo tiers)."""

    def ensure_service(
        self, tenant_id: str, *, cluster: str | None, progress: Callable[[], None] = lambda: None
    ) -> DeployedService:
        """Registers the revision, creates or updates the service and waits until it is stable.

        `cluster` is the tenant's own cluster (silo), else the shared one is
        used. An update that does not become stable is rolled back to the
        previous revision and raises `DeploymentFailed`; a service of that
        name held by another tenant raises `Conflict`. `progress` is called
        on every poll (the activity heartbeats).
        """
        ...

    def delete_service(self, tenant_id: str, *, progress: Callable[[], None] = lambda: None) -> None:
        """Scales the service to 0, deletes it and every revision; missing or foreign is left alone."""
        ...

    def suspend_service(self, tenant_id: str, *, progress: Callable[[], None] = lambda: None) -> None:
        """Scales the service to zero tasks, remembering on the service the count it had.

        Suspending a suspended service keeps the count first remembered. A
        tenant without a service is left alone (success); a service of that
        name held by another tenant raises `Conflict` and is not touched.
        """
        ...

    def resume_service(self, tenant_id: str, *, progress: Callable[[], None] = lambda: None) -> None:
        """Scales the service back to the remembered count, forgets it and waits until it is stable.

        Without a remembered count, a service at zero gets the default count
        and a running one keeps its own, so resuming twice changes nothing.
        A tenant without a service is left alone (success); another tenant's
        service raises `Conflict`. A service not stable within the deploy
        timeout raises `Unavailable` (see the adapter). `progress` is called
        on every poll (the activity heartbeats).
        """
        ...


@dataclass(frozen=True)
class IacResult:
    """What an apply left behind: the module's plain string outputs."""

    outputs: Mapping[str, str]
    # False when the plan found nothing to change.
    changed: bool


class Infrastructure(Protocol):
    """Dedicated infrastructure of a tenant (silo tier), as code with state per tenant."""

    def apply(
        self, tenant_id: str, *, variables: Mapping[str, str], progress: Callable[[], None] = lambda: None
    ) -> IacResult:
        """Plans and applies the tenant's module; returns its non-sensitive string outputs.

        Raises `IacFailed` when the tool fails; `progress` is called every
        few seconds while it runs (the activity heartbeats, and a cancelled
        activity's heartbeat raises, which stops the tool).
        """
        ...

    def destroy(
        self, tenant_id: str, *, expect_state: bool = False, progress: Callable[[], None] = lambda: None
    ) -> None:
        """Destroys the tenant's resources, keeping its (then empty) state as the proof.

        No state at all is success unless `expect_state` (the tenant's record
        lists a stack): then it raises `IacStateMissing`, since the state was
        lost and the infrastructure may still exist. An empty state (destroyed
        before) is success either way.
        """
        ...


class DeploymentFailed(ProviderError):
    """A revision did not become stable (and was rolled back); retrying the same one will not help."""

    error_type = ErrorType.INVALID_ARGUMENT


class IacFailed(ProviderError):
    """The IaC tool exited with an error (a bad module, a refused change)."""

    error_type = ErrorType.INVALID_ARGUMENT


class IacStateLocked(Unavailable):
    """Another run holds the tenant's state lock and did not release it in time; a retry waits again."""


class IacStateMissing(ProviderError):
    """A stack the tenant's record lists has no state: it was lost, its infrastructure may remain."""

    error_type = ErrorType.NOT_FOUND


@dataclass(frozen=True)
class Providers:
    storage: Storage
    dns: Dns
    deployment: Deployment
    infrastructure: Infrastructure


@dataclass(frozen=True)
class InfraSettings:
    storage_provider: str
    dns_provider: str
    bucket_prefix: str
    dns_zone: str
    app_hostname: str
    dns_ttl: int
    ecs_cluster: str
    app_image: str
    deploy_timeout: int
    iac_binary: Path
    # Scratch space only: every run gets a fresh folder, removed when it ends.
    iac_work_dir: Path
    iac_module_dir: Path
    iac_timeout: int
    # Where the state lives: one object per tenant, `<prefix>/<tenant>/terraform.tfstate`.
    iac_state_bucket: str
    iac_state_key_prefix: str
    iac_state_region: str

    def __post_init__(self) -> None:
        # The application's host name must not be one a tenant can claim.
        namespace.check_app_hostname(self.app_hostname, self.dns_zone)

    @classmethod
    def from_env(cls) -> InfraSettings:
        # Imported here: they import this module for its protocols and errors.
        from services.infra.providers import ecs, iac

        ecs_cluster = _matching("TENANTRY_ECS_CLUSTER", "tenantry", ECS_NAME)
        if ecs.is_silo_cluster_name(ecs_cluster):
            # Else one tenant's own cluster would be the shared one, which its IaC would then hold.
            raise config.ConfigError(
                f"TENANTRY_ECS_CLUSTER={ecs_cluster!r} is the name a silo tenant's own cluster gets "
                f"({ecs.silo_cluster_of('<tenant id>')}); choose another"
            )
        bucket_prefix = namespace.bucket_prefix()
        return cls(
            storage_provider=config.choice("TENANTRY_STORAGE_PROVIDER", "s3", ("s3",)),
            dns_provider=config.choice("TENANTRY_DNS_PROVIDER", "route53", ("route53",)),
            # Shared with the workers that read the backup bucket and the API that checks domains.
            bucket_prefix=bucket_prefix,
            dns_zone=namespace.dns_zone(),
            app_hostname=_matching("TENANTRY_APP_HOSTNAME", "app.tenantry.test", _HOSTNAME),
            dns_ttl=config.integer("TENANTRY_DNS_TTL", 300),
            ecs_cluster=ecs_cluster,
            app_image=_image("TENANTRY_APP_IMAGE", "public.ecr.aws/tenantry/app:latest"),
            deploy_timeout=config.integer("TENANTRY_DEPLOY_TIMEOUT_SECONDS", 300),
            iac_binary=iac.find_binary(),
            iac_work_dir=iac.work_dir(),
            iac_module_dir=iac.module_dir(),
            iac_timeout=config.integer("TENANTRY_IAC_TIMEOUT_SECONDS", 1800),
            iac_state_bucket=_state_bucket(bucket_prefix),
            iac_state_key_prefix=_key_prefix("TENANTRY_IAC_STATE_KEY_PREFIX", "tenants"),
            iac_state_region=_matching(
                "TENANTRY_IAC_STATE_REGION",
                os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                _REGION,
            ),
        )


def _state_bucket(bucket_prefix: str) -> str:
    """TENANTRY_IAC_STATE_BUCKET, by default `<bucket prefix>.iac-state`: never a tenant's bucket name.

    A tenant's bucket is `<prefix>-<tenant id>` and neither part can hold a
    dot, so a name with a dot is outside that namespace whatever the tenant
    ids; a configured name that a tenant bucket could take is refused.
    """
    name = "TENANTRY_IAC_STATE_BUCKET"
    value = _matching(name, f"{bucket_prefix}.iac-state", _BUCKET_NAME)
    if re.fullmatch(f"{re.escape(bucket_prefix)}-{TENANT_ID_PATTERN.pattern}", value):
        raise config.ConfigError(
            f"{name}={value!r} could be the bucket of tenant {value[len(bucket_prefix) + 1 :]!r}"
        )
    return value


def _matching(name: str, default: str, pattern: re.Pattern[str]) -> str:
    return namespace.setting(name, default, pattern)


def _key_prefix(name: str, default: str) -> str:
    value = config.required(name, default).strip("/")
    if not _KEY_PREFIX.fullmatch(value):
        raise config.ConfigError(f"{name}={value!r} is not a key prefix of lower-case path segments")
    return value


def _image(name: str, default: str) -> str:
    value = config.required(name, default)
    if not _IMAGE.fullmatch(value):
        raise config.ConfigError(f"{name}={value!r} is not a container image reference")
    return value


def is_hostname(value: str) -> bool:
    """A lower-case DNS host name of at least two labels, without the final dot."""
    return _HOSTNAME.fullmatch(value) is not None


def from_env(settings: InfraSettings) -> Providers:
    """Builds the configured adapters; the DNS one finds (or creates) its zone now."""
    # Only one adapter of each kind exists today; the settings name them so
    # that adding one (GCS, Cloudflare) is a choice, not a code change here.
    import boto3

    from services.infra.providers import aws, ecs, iac, route53, s3

    s3_client, route53_client = aws.clients()
    state = iac.S3State(
        # The state bucket's own region: a tenant bucket's may differ one day.
        boto3.session.Session().client("s3", region_name=settings.iac_state_region, config=aws.CLIENT_CONFIG),
        bucket=settings.iac_state_bucket,
        key_prefix=settings.iac_state_key_prefix,
        region=settings.iac_state_region,
        path_style=bool(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")),
    )
    return Providers(
        # Claims of buckets being created live in the platform's own bucket, the state's.
        storage=s3.S3Storage(s3_client, claims=state),
        dns=route53.Route53Dns.find_or_create_zone(route53_client, settings.dns_zone),
        deployment=ecs.EcsDeployment.find_or_create_cluster(
            aws.client("ecs"),
            settings.ecs_cluster,
            image=settings.app_image,
            timeout=settings.deploy_timeout,
        ),
        infrastructure=iac.TofuInfrastructure(
            binary=settings.iac_binary,
            module_dir=settings.iac_module_dir,
            work_dir=settings.iac_work_dir,
            state=state,
            timeout=settings.iac_timeout,
        ),
    )
