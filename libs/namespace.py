"""Where tenants' names live, and the settings that place the platform's outside them.

A tenant's resources are named from its id: the bucket
`<TENANTRY_BUCKET_PREFIX>-<id>` and, in the managed DNS zone, `<id>.<zone>`
and names under it. A platform resource must have a name no tenant can
produce, or that tenant could create, adopt or delete it; the settings read
here are checked for that when a process starts (`ConfigError` naming the
variables). Every process that reads one of these settings reads it here,
with one default and one rule.
"""

from __future__ import annotations

import re

from libs import config
from libs.config import ConfigError
from libs.lifecycle import tenant_id_naming

BUCKET_PREFIX_VARIABLE = "TENANTRY_BUCKET_PREFIX"
DEFAULT_BUCKET_PREFIX = "tenantry"
BACKUP_BUCKET_VARIABLE = "TENANTRY_BACKUP_BUCKET"
DEFAULT_BACKUP_BUCKET = "tenantry-backups"
DNS_ZONE_VARIABLE = "TENANTRY_DNS_ZONE"
DEFAULT_DNS_ZONE = "tenants.tenantry.test"
APP_HOSTNAME_VARIABLE = "TENANTRY_APP_HOSTNAME"
DEFAULT_APP_HOSTNAME = "app.tenantry.test"

# A lower-case host name of at least two labels, without the final dot.
HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]")
# With "-" and a tenant id of up to 32 characters, a bucket name stays within S3's 63.
BUCKET_PREFIX = re.compile(r"[a-z0-9][a-z0-9-]{1,28}[a-z0-9]")
# S3's rules for a bucket name (lower case only, so names compare exactly).
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def setting(name: str, default: str, pattern: re.Pattern[str]) -> str:
    """A name-like setting, lower case and without a final dot, matching `pattern`."""
    value = config.required(name, default).lower().rstrip(".")
    if not pattern.fullmatch(value):
        raise ConfigError(f"{name}={value!r} is not a valid name")
    return value


def normal_domain(raw: str) -> str:
    """A domain as it is compared and stored: trimmed, lower case, without final dots."""
    return raw.strip().lower().rstrip(".")


# -- buckets ------------------------------------------------------------------


def bucket_prefix() -> str:
    """TENANTRY_BUCKET_PREFIX, checked against the backup bucket (read with its default)."""
    prefix = setting(BUCKET_PREFIX_VARIABLE, DEFAULT_BUCKET_PREFIX, BUCKET_PREFIX)
    check_backup_bucket(_backup_bucket_setting(), prefix)
    return prefix


def backup_bucket() -> str:
    """TENANTRY_BACKUP_BUCKET, checked against the bucket prefix (read with its default)."""
    bucket = _backup_bucket_setting()
    check_backup_bucket(bucket, setting(BUCKET_PREFIX_VARIABLE, DEFAULT_BUCKET_PREFIX, BUCKET_PREFIX))
    return bucket


def check_backup_bucket(bucket: str, prefix: str) -> None:
    """Refuses a backup bucket that is some tenant's bucket name `<prefix>-<id>`.

    That tenant's CreateBucket would find the bucket, its DeleteBucket would
    empty it, and every tenant's backups with it. With the defaults
    (`tenantry-backups`, prefix `tenantry`) it holds because `backups` is reserved.
    """
    tenant = tenant_id_naming(bucket, prefix=f"{prefix}-")
    if tenant is not None:
        raise ConfigError(
            f"{BACKUP_BUCKET_VARIABLE}={bucket!r} is the bucket name of tenant {tenant!r} under"
            f" {BUCKET_PREFIX_VARIABLE}={prefix!r}; choose a backup bucket outside `{prefix}-<tenant id>`"
        )


def _backup_bucket_setting() -> str:
    bucket = config.required(BACKUP_BUCKET_VARIABLE, DEFAULT_BACKUP_BUCKET)
    if not BUCKET.fullmatch(bucket):
        raise ConfigError(f"{BACKUP_BUCKET_VARIABLE}={bucket!r} is not an S3 bucket name")
    return bucket


# -- the managed DNS zone -----------------------------------------------------


def dns_zone() -> str:
    """TENANTRY_DNS_ZONE: the zone that holds the tenants' `<id>.<zone>` names."""
    return setting(DNS_ZONE_VARIABLE, DEFAULT_DNS_ZONE, HOSTNAME)


def app_hostname() -> str:
    """TENANTRY_APP_HOSTNAME: the shared application host that tenants' records point at."""
    return setting(APP_HOSTNAME_VARIABLE, DEFAULT_APP_HOSTNAME, HOSTNAME)


def in_zone(domain: str, zone: str) -> bool:
    """Whether a normal domain is the zone or a name inside it."""
    return domain == zone or domain.endswith(f".{zone}")


def zone_domain_problem(domain: str, *, tenant_id: str, zone: str) -> str | None:
    """Why a tenant may not hold this normal domain in the zone, or None.

    Inside the zone a tenant holds only its own subtree, `<id>.<zone>` and
    names under it, so that no tenant can take another's `<id>.<zone>`
    (or a name under it) before that tenant exists. Domains outside the zone
    are not the zone's business.
    """
    if not in_zone(domain, zone):
        return None
    own = f"{tenant_id}.{zone}"
    if domain == own or domain.endswith(f".{own}"):
        return None
    return f"inside the managed zone {zone} only {own} and names under it are this tenant's"


def check_app_hostname(app_hostname: str, zone: str) -> None:
    """Refuses an application host name (TENANTRY_APP_HOSTNAME) inside some tenant's subtree of the zone.

    That tenant could list the name as one of its domains and point it at
    the application: the platform's host name would be a tenant's record.
    """
    if not app_hostname.endswith(f".{zone}"):
        return
    label = app_hostname[: -len(zone) - 1].rsplit(".", 1)[-1]
    tenant = tenant_id_naming(label)
    if tenant is not None:
        raise ConfigError(
            f"TENANTRY_APP_HOSTNAME={app_hostname!r} lies under {tenant}.{zone}, the names of tenant"
            f" {tenant!r} in {DNS_ZONE_VARIABLE}={zone!r}; put the application outside the zone or"
            " under a reserved name"
        )
