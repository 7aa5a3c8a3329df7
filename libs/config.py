"""Configuration from environment variables, checked when a process starts.

Every process reads only the settings it needs; a missing or malformed one
stops the process at once with a message that names the variable.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


class ConfigError(Exception):
    """A setting is missing or wrong; the message names the variable."""


def _get(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value == "":
        raise ConfigError(f"{name} is not set")
    return value


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = _get(name, default)
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def _int(name: str, default: int) -> int:
    raw = _get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive")
    return value


def _address(name: str, default: str | None = None) -> str:
    value = _get(name, default)
    if not re.fullmatch(r"[^\s:]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", value):
        raise ConfigError(f"{name}={value!r} is not host:port")
    return value


@dataclass(frozen=True)
class TemporalSettings:
    address: str
    namespace: str
    # Temporal Cloud / mTLS: an API key enables TLS; a CA-less TLS uses system roots.
    api_key: str | None
    tls: bool

    @classmethod
    def from_env(cls) -> TemporalSettings:
        api_key = os.environ.get("TEMPORAL_API_KEY") or None
        return cls(
            address=_address("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
            namespace=_get("TEMPORAL_NAMESPACE", "default"),
            api_key=api_key,
            tls=api_key is not None or os.environ.get("TEMPORAL_TLS", "") in ("1", "true"),
        )


@dataclass(frozen=True)
class WorkerSettings:
    # Where the process answers grpc.health.v1 (empty: no health endpoint).
    health_address: str | None
    max_concurrent_activities: int
    max_concurrent_workflow_tasks: int

    @classmethod
    def from_env(cls) -> WorkerSettings:
        health = os.environ.get("TENANTRY_HEALTH_ADDRESS") or None
        return cls(
            health_address=_address("TENANTRY_HEALTH_ADDRESS") if health else None,
            max_concurrent_activities=_int("TENANTRY_MAX_CONCURRENT_ACTIVITIES", 32),
            max_concurrent_workflow_tasks=_int("TENANTRY_MAX_CONCURRENT_WORKFLOW_TASKS", 32),
        )


def database_url() -> str:
    """The PostgreSQL DSN of the tenant registry."""
    value = _get("TENANTRY_DATABASE_URL")
    if not value.startswith(("postgresql://", "postgres://")):
        raise ConfigError("TENANTRY_DATABASE_URL must be a postgresql:// URL")
    return value


def choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    """A setting that must be one of `allowed` (a provider name, say)."""
    return _choice(name, default, allowed)


def required(name: str, default: str | None = None) -> str:
    """A setting that must be present."""
    return _get(name, default)


def address(name: str, default: str | None = None) -> str:
    """A host:port setting."""
    return _address(name, default)


def integer(name: str, default: int) -> int:
    """A positive whole-number setting."""
    return _int(name, default)


def cache_dir(kind: str) -> Path:
    """Where downloaded or built tools of `kind` are kept, outside the work
    tree: TENANTRY_CACHE_DIR, else ~/.cache/tenantry."""
    root = os.environ.get("TENANTRY_CACHE_DIR") or str(Path.home() / ".cache" / "tenantry")
    return Path(root) / kind


def optional(name: str) -> str | None:
    """A setting that may be absent (empty counts as absent)."""
    return os.environ.get(name) or None


def readable_file(name: str) -> Path:
    """A setting naming a file that must exist and be readable."""
    path = Path(_get(name))
    try:
        with path.open("rb"):
            pass
    except OSError as err:
        raise ConfigError(f"{name}={str(path)!r} cannot be read: {err.strerror}") from None
    return path
