"""What the infrastructure activities need from a cloud, and the adapters to it.

Adapters raise `Conflict` for a resource held by someone else and
`Unavailable` for a fault a retry may fix; the activities turn those into
the shared error vocabulary. Anything else propagates and Temporal retries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from libs import config

# The shared provider errors, re-exported for this domain's adapters.
from libs.errors import Conflict as Conflict
from libs.errors import Unavailable as Unavailable

# Tags that mark a bucket as ours and say for whom.
TENANT_TAG = "tenantry:tenant-id"
PLAN_TIER_TAG = "tenantry:plan-tier"

_HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]")
# With "-" and a tenant id of up to 32 characters, a bucket name stays within S3's 63.
_BUCKET_PREFIX = re.compile(r"[a-z0-9][a-z0-9-]{1,28}[a-z0-9]")


class Storage(Protocol):
    """Object storage: one bucket per tenant."""

    def ensure_bucket(self, name: str, *, tenant_id: str, tags: Mapping[str, str]) -> None:
        """Creates the bucket (private, encrypted, versioned, tagged) or re-applies that to ours.

        Raises `Conflict` if the name is taken by another account or tenant.
        """
        ...

    def delete_bucket(
        self, name: str, *, tenant_id: str, progress: Callable[[], None] = lambda: None
    ) -> None:
        """Deletes every object version and the bucket; a missing or foreign bucket is left alone.

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
class Providers:
    storage: Storage
    dns: Dns


@dataclass(frozen=True)
class InfraSettings:
    storage_provider: str
    dns_provider: str
    bucket_prefix: str
    dns_zone: str
    app_hostname: str
    dns_ttl: int

    @classmethod
    def from_env(cls) -> InfraSettings:
        return cls(
            storage_provider=config.choice("TENANTRY_STORAGE_PROVIDER", "s3", ("s3",)),
            dns_provider=config.choice("TENANTRY_DNS_PROVIDER", "route53", ("route53",)),
            bucket_prefix=_matching("TENANTRY_BUCKET_PREFIX", "tenantry", _BUCKET_PREFIX),
            dns_zone=_matching("TENANTRY_DNS_ZONE", "tenants.tenantry.test", _HOSTNAME),
            app_hostname=_matching("TENANTRY_APP_HOSTNAME", "app.tenantry.test", _HOSTNAME),
            dns_ttl=config.integer("TENANTRY_DNS_TTL", 300),
        )


def _matching(name: str, default: str, pattern: re.Pattern[str]) -> str:
    value = config.required(name, default).lower().rstrip(".")
    if not pattern.fullmatch(value):
        raise config.ConfigError(f"{name}={value!r} is not a valid name")
    return value


def is_hostname(value: str) -> bool:
    """A lower-case DNS host name of at least two labels, without the final dot."""
    return _HOSTNAME.fullmatch(value) is not None


def from_env(settings: InfraSettings) -> Providers:
    """Builds the configured adapters; the DNS one finds (or creates) its zone now."""
    # Only one adapter of each kind exists today; the settings name them so
    # that adding one (GCS, Cloudflare) is a choice, not a code change here.
    from services.infra.providers import aws, route53, s3

    s3_client, route53_client = aws.clients()
    return Providers(
        storage=s3.S3Storage(s3_client),
        dns=route53.Route53Dns.find_or_create_zone(route53_client, settings.dns_zone),
    )
