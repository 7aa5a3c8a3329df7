"""Configuration from environment variables, checked when a process starts.

Every process reads only the settings it needs; a missing or malformed one
stops the process at once with a message that names the variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.envconfig import ClientConfigProfile
from temporalio.service import TLSConfig


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


_ADDRESS = r"[^\s:]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}"


def _address(name: str, default: str | None = None) -> str:
    value = _get(name, default)
    if not re.fullmatch(_ADDRESS, value):
        raise ConfigError(f"{name}={value!r} is not host:port")
    return value


def _file(name: str, value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"{name}={value!r} is not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as err:
        raise ConfigError(f"{name}={value!r} cannot be read: {err.strerror}") from None
    return path


# TEMPORAL_TLS values the SDK understands; any other (say "off") would turn TLS on.
_TEMPORAL_BOOLEANS = ("true", "false", "1", "0")


@dataclass(frozen=True)
class TemporalSettings:
    """How to reach Temporal, from the SDK's environment configuration
    (`temporalio.envconfig`): TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
    TEMPORAL_API_KEY, TEMPORAL_TLS, TEMPORAL_TLS_SERVER_CA_CERT_PATH,
    TEMPORAL_TLS_CLIENT_CERT_PATH / _KEY_PATH (or the _DATA forms),
    TEMPORAL_TLS_SERVER_NAME, TEMPORAL_GRPC_META_*, and a TOML file
    (TEMPORAL_CONFIG_FILE, profile TEMPORAL_PROFILE) under them.
    """

    address: str
    namespace: str
    # An API key turns TLS on (system roots unless a CA is given).
    api_key: str | None = field(default=None, repr=False)
    # The SDK's TLSConfig holds the client key in its repr: keep it out of ours.
    tls: bool | TLSConfig = field(default=False, repr=False)
    rpc_metadata: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TemporalSettings:
        """Loads the profile as the SDK does and checks what it would let through:
        a missing file, a client certificate without its key, a TEMPORAL_TLS it
        would read as "on", an API key over plaintext."""
        environ = os.environ if env is None else env
        tls_flag = environ.get("TEMPORAL_TLS")
        if tls_flag is not None and tls_flag.lower() not in _TEMPORAL_BOOLEANS:
            raise ConfigError(f"TEMPORAL_TLS={tls_flag!r} is not one of {', '.join(_TEMPORAL_BOOLEANS)}")
        config_file = environ.get("TEMPORAL_CONFIG_FILE")
        if config_file and not Path(config_file).is_file():
            # The SDK would silently use no file at all.
            raise ConfigError(f"TEMPORAL_CONFIG_FILE={config_file!r} is not a file")
        try:
            profile = ClientConfigProfile.load(
                environ.get("TEMPORAL_PROFILE") or None, override_env_vars=dict(environ)
            )
        except Exception as err:  # the SDK's core raises its own ConfigError (bad TOML, unknown profile)
            raise ConfigError(
                f"Temporal client configuration (TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE): {err}"
            ) from None
        if profile.tls is not None:
            for name, source in (
                ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", profile.tls.server_root_ca_cert),
                ("TEMPORAL_TLS_CLIENT_CERT_PATH", profile.tls.client_cert),
                ("TEMPORAL_TLS_CLIENT_KEY_PATH", profile.tls.client_private_key),
            ):
                if isinstance(source, Path) and not source.is_file():
                    raise ConfigError(f"{name}={str(source)!r} is not a file")
            if (profile.tls.client_cert is None) != (profile.tls.client_private_key is None):
                raise ConfigError(
                    "TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH must be set together"
                )
        connect = profile.to_client_connect_config()
        address = connect.get("target_host") or "127.0.0.1:7233"
        if not re.fullmatch(_ADDRESS, address):
            raise ConfigError(f"TEMPORAL_ADDRESS={address!r} is not host:port")
        tls = connect.get("tls", False)
        api_key = connect.get("api_key") or None
        if api_key is not None and tls is False:
            raise ConfigError("TEMPORAL_API_KEY is set but TEMPORAL_TLS=false: the key would travel in clear")
        return cls(
            address=address,
            namespace=connect.get("namespace") or "default",
            api_key=api_key,
            tls=tls,
            rpc_metadata=dict(connect.get("rpc_metadata") or {}),
        )

    @property
    def uses_tls(self) -> bool:
        return self.tls is not False

    @property
    def client_certificate(self) -> bool:
        return isinstance(self.tls, TLSConfig) and self.tls.client_cert is not None


@dataclass(frozen=True)
class ServerTls:
    """A server certificate and, to require client certificates, the CA that signs them."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    @classmethod
    def from_env(cls) -> ServerTls | None:
        """TENANTRY_TLS_CERT_FILE and TENANTRY_TLS_KEY_FILE (both or neither),
        TENANTRY_TLS_CLIENT_CA_FILE; None when no certificate is configured."""
        cert = os.environ.get("TENANTRY_TLS_CERT_FILE") or None
        key = os.environ.get("TENANTRY_TLS_KEY_FILE") or None
        client_ca = os.environ.get("TENANTRY_TLS_CLIENT_CA_FILE") or None
        if cert is None and key is None:
            if client_ca is not None:
                raise ConfigError(
                    "TENANTRY_TLS_CLIENT_CA_FILE needs TENANTRY_TLS_CERT_FILE and TENANTRY_TLS_KEY_FILE"
                )
            return None
        if cert is None or key is None:
            raise ConfigError("TENANTRY_TLS_CERT_FILE and TENANTRY_TLS_KEY_FILE must be set together")
        return cls(
            cert_file=_file("TENANTRY_TLS_CERT_FILE", cert),
            key_file=_file("TENANTRY_TLS_KEY_FILE", key),
            client_ca_file=_file("TENANTRY_TLS_CLIENT_CA_FILE", client_ca) if client_ca else None,
        )


@dataclass(frozen=True)
class WorkerSettings:
    # Where the process answers grpc.health.v1 (empty: no health endpoint).
    health_address: str | None
    max_concurrent_activities: int
    max_concurrent_workflow_tasks: int
    # The health endpoint's certificate: the TLS settings of the public API, one certificate per pod.
    health_tls: ServerTls | None = None
    # How long SIGTERM waits for running activities before cancelling them.
    drain_seconds: int = 10

    @classmethod
    def from_env(cls) -> WorkerSettings:
        health = os.environ.get("TENANTRY_HEALTH_ADDRESS") or None
        return cls(
            health_address=_address("TENANTRY_HEALTH_ADDRESS") if health else None,
            max_concurrent_activities=_int("TENANTRY_MAX_CONCURRENT_ACTIVITIES", 32),
            max_concurrent_workflow_tasks=_int("TENANTRY_MAX_CONCURRENT_WORKFLOW_TASKS", 32),
            health_tls=ServerTls.from_env() if health and health_tls_on() else None,
            drain_seconds=_int("TENANTRY_DRAIN_SECONDS", 10),
        )


def health_tls_on() -> bool:
    """TENANTRY_HEALTH_TLS (on by default): off serves the health address in
    plaintext even when the process has a certificate, for probes that cannot
    speak TLS (Kubernetes' `grpc` probes; deploy/helm/tenantry)."""
    return _choice("TENANTRY_HEALTH_TLS", "on", ("on", "off")) == "on"


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
    return _file(name, _get(name))
