"""The whole embedded stack and every Tenantry process, each its own OS process.

`make dev` runs `python -m libs.devstack` (see __main__.py); the end-to-end
tests and the benchmark start the same Stack with free ports.
"""

from __future__ import annotations

import os
import secrets
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from temporalio.converter import DataConverter

from libs import codec
from libs.codec import KeyRing
from libs.devstack import aws, database_roles
from libs.devstack.access import DevAccess
from libs.devstack.certs import KeyPair, LocalCA
from libs.devstack.embedded import Postgres, mail_catcher, moto_server, temporal_server
from libs.devstack.jaeger import jaeger_server
from libs.devstack.keycloak import KeycloakServer, keycloak_server
from libs.devstack.mailcatcher import USERNAME as MAIL_USERNAME
from libs.devstack.mailcatcher import password_file
from libs.devstack.payload_keys import codec_sign_in_secret, payload_key_ring
from libs.devstack.processes import ManagedProcess, free_port, grpc_serving, python_module
from libs.devstack.world import (
    PortUse,
    check_aws,
    check_identity,
    check_ports,
    identity_setting,
    recorded_identity,
)

# Process name -> module run with `python -m`. Domain workers first, then the
# orchestrator, then the API: each is ready before anything calls it.
SERVICES = {
    "tenantdb": "services.tenantdb",
    "idp": "services.idp",
    "infra": "services.infra",
    "notification": "services.notification",
    "orchestrator": "orchestrator",
    "tenant_api": "services.tenant_api",
}


@dataclass
class Ports:
    temporal: int = field(default_factory=free_port)
    temporal_ui: int | None = None
    # The dev server's Prometheus endpoint (`/metrics`), when a benchmark counts its requests.
    temporal_metrics: int | None = None
    grpc: int = field(default_factory=free_port)
    moto: int = field(default_factory=free_port)
    smtp: int = field(default_factory=free_port)
    keycloak: int = field(default_factory=free_port)
    codec: int = field(default_factory=free_port)
    # Jaeger (`traces=True`): spans in over OTLP/gRPC, the query API out.
    otlp: int = field(default_factory=free_port)
    jaeger: int = field(default_factory=free_port)
    # The first of the processes' Prometheus endpoints (`make dev`: each process
    # the next port, in SERVICES order); None: a free port each.
    metrics: int | None = None


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


class Stack:
    def __init__(
        self,
        state_dir: Path,
        ports: Ports | None = None,
        *,
        idp: str = "local",
        keycloak_mode: str = "realm",
        keycloak: KeycloakServer | None = None,
        extra_env: dict[str, str] | None = None,
        grants: str = "",
        ca: LocalCA | None = None,
        keep_aws: bool = False,
        traces: bool = False,
        metrics: bool = False,
    ) -> None:
        """`idp` picks the identity provider: `local`, or `keycloak` on the
        given server (or on one this stack starts). `ca` signs the stack's
        certificates (a given Keycloak must trust it); else its own.
        `keep_aws`: the AWS emulator's state survives a restart on the same
        state dir (libs/devstack/aws.py; `make dev`), at the cost of
        handling one AWS request at a time; else it starts empty each time.
        `traces`: Jaeger runs too, and every Tenantry process exports its
        spans there (libs/tracing.py).
        `metrics`: every process serves Prometheus metrics on its own port
        (`metrics_addresses`, libs/metrics.py)."""
        self.state_dir = state_dir.resolve()
        self.idp = idp
        self.keycloak_mode = keycloak_mode
        self.keycloak = keycloak
        self.log_dir = self.state_dir / "logs"
        self.secrets_dir = self.state_dir / "secrets"
        self.access: DevAccess | None = None
        self.maildir = self.state_dir / "mail"
        self.ports = ports or Ports()
        self.extra_env = extra_env or {}
        self.grants = grants
        self.keep_aws = keep_aws
        self.traces = traces
        self.metrics = metrics
        # Process (as in `services`) -> host:port of its Prometheus endpoint (`/metrics`).
        self.metrics_addresses: dict[str, str] = {}
        # AWS requests of earlier runs replayed at the last start (`keep_aws`).
        self.aws_replayed = 0
        self.embedded: dict[str, ManagedProcess] = {}
        self.services: dict[str, ManagedProcess] = {}
        self.postgres: Postgres | None = None
        self._ca = ca
        # Process -> its own DSN (database_roles.py); processes not listed get none.
        self.database_urls: dict[str, str] = {}

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    def channel(self, client: KeyPair | None = None) -> grpc.Channel:
        """A channel to the API that presents `client` (the developer's admin certificate by default)."""
        assert self.access is not None, "start_embedded() first"
        return grpc.secure_channel(self.grpc_address, self.access.channel_credentials(client))

    def aio_channel(self, client: KeyPair | None = None) -> grpc.aio.Channel:
        """As `channel`, for asyncio callers."""
        assert self.access is not None, "start_embedded() first"
        return grpc.aio.secure_channel(self.grpc_address, self.access.channel_credentials(client))

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.ports.temporal}"

    @property
    def jaeger_endpoint(self) -> str:
        """Jaeger's query API (`/api/traces/<trace id>`), when the stack runs it."""
        return f"http://127.0.0.1:{self.ports.jaeger}"

    @property
    def aws_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.moto}"

    @property
    def aws_recording(self) -> Path:
        """Every AWS request of the state dir's life, replayed at start (`keep_aws`)."""
        return self.state_dir / "aws" / "recording.jsonl"

    def aws_settings(self) -> dict[str, str]:
        """boto3 client arguments that reach the stack's AWS emulator."""
        return {
            "endpoint_url": self.aws_endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "embedded",
            "aws_secret_access_key": "embedded",
        }

    @property
    def keycloak_admin_file(self) -> Path:
        """The password of the own Keycloak's bootstrap admin (user `admin`)."""
        return self.secrets_dir / "keycloak-admin-password"

    def port_uses(self) -> list[PortUse]:
        """The ports the stack will listen on, with how an operator changes each."""
        p = self.ports
        uses = [
            PortUse(p.grpc, "gRPC API", "GRPC_PORT", "--grpc-port"),
            PortUse(p.temporal, "Temporal", "TEMPORAL_PORT", "--temporal-port"),
            PortUse(p.moto, "AWS emulator", "AWS_PORT", "--aws-port"),
            PortUse(p.smtp, "mail catcher", "SMTP_PORT", "--smtp-port"),
            PortUse(p.codec, "codec server", "CODEC_PORT", "--codec-port"),
        ]
        if self.metrics and p.metrics:
            uses += [
                PortUse(p.metrics + i, f"{name} metrics", "METRICS_PORT", "--metrics-port")
                for i, name in enumerate(SERVICES)
            ]
        if p.temporal_ui:
            uses.append(PortUse(p.temporal_ui, "Temporal UI", "UI_PORT", "--ui-port"))
        if self.traces:
            uses.append(PortUse(p.otlp, "Jaeger OTLP", "OTLP_PORT", "--otlp-port"))
            uses.append(PortUse(p.jaeger, "Jaeger", "JAEGER_PORT", "--jaeger-port"))
        if self.idp == "keycloak" and self.keycloak is None:
            uses.append(PortUse(p.keycloak, "Keycloak", "KEYCLOAK_PORT", "--keycloak-port"))
        return uses

    @property
    def codec_endpoint(self) -> str:
        """The codec server the Temporal UI decodes payloads with (services/codec_server)."""
        return f"http://127.0.0.1:{self.ports.codec}"

    @property
    def payload_keys_file(self) -> Path:
        return self.secrets_dir / "payload-keys.json"

    @property
    def codec_sign_in_file(self) -> Path:
        """What an operator pastes into the codec server's /login."""
        return self.secrets_dir / "codec-sign-in"

    def data_converter(self) -> DataConverter:
        """The converter the stack's processes use: a client of a test or a
        benchmark that reads results or failures of their runs needs it."""
        return codec.data_converter(
            KeyRing.parse(self.payload_keys_file.read_text(), source=str(self.payload_keys_file))
        )

    def start(self) -> Stack:
        try:
            self.start_embedded()
            for name in SERVICES:
                self.start_service(name)
            if self.env()["TENANTRY_PAYLOAD_ENCRYPTION"] != "off":  # nothing to decode otherwise
                self.start_codec_server()
        except BaseException:
            self.stop()
            raise
        return self

    def start_embedded(self) -> None:
        """Starts the embedded providers; raises StartupError (a line for the
        operator) if a port is taken or the state dir does not fit this stack."""
        check_ports(self.port_uses())
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.access = DevAccess.create(self.secrets_dir, ca=self.ca, grants=self.grants)
        payload_key_ring(self.secrets_dir)
        codec_sign_in_secret(self.secrets_dir)
        self.embedded = {
            "temporal": temporal_server(
                self.state_dir / "temporal",
                port=self.ports.temporal,
                ui_port=self.ports.temporal_ui,
                log_dir=self.log_dir,
                ui_codec_endpoint=self.codec_endpoint,
                metrics_port=self.ports.temporal_metrics,
            ),
            "moto": moto_server(
                port=self.ports.moto,
                log_dir=self.log_dir,
                recording=self.aws_recording if self.keep_aws else None,
            ),
            "mailcatcher": mail_catcher(
                self.maildir,
                port=self.ports.smtp,
                log_dir=self.log_dir,
                tls=self.ca.server(),
                password_file=password_file(self.state_dir / "secrets"),
            ),
        }
        if self.traces:
            self.embedded["jaeger"] = jaeger_server(
                self.state_dir / "jaeger",
                otlp_port=self.ports.otlp,
                query_port=self.ports.jaeger,
                log_dir=self.log_dir,
            )
        identity = identity_setting(self.idp, self.keycloak_mode)
        if recorded_identity(self.state_dir) not in (None, identity):
            # Perhaps refused: find out before Keycloak is even set up.
            check_identity(self.state_dir, identity, self._start_postgres())
        if self.idp == "keycloak" and self.keycloak is None:
            self.keycloak = self._own_keycloak()
        for process in self.embedded.values():
            process.start()
        database = self.postgres.url if self.postgres else self._start_postgres()
        check_identity(self.state_dir, identity, database)
        for process in self.embedded.values():
            process.wait_ready()
        if self.keep_aws:
            # Before any process calls AWS: the replay must be alone to draw the same ids.
            self.aws_replayed = aws.restore(self.aws_endpoint, self.aws_recording)
            check_aws(database, self.aws_settings(), self.aws_recording)

    def _start_postgres(self) -> str:
        """Starts PostgreSQL and migrates it; returns the administrator's DSN."""
        self.postgres = Postgres.start(self.state_dir / "postgres")
        self.database_urls = database_roles.prepare(self.postgres.url, self.state_dir / "secrets")
        return self.postgres.url

    def _own_keycloak(self) -> KeycloakServer:
        state = self.state_dir / "keycloak"
        state.mkdir(parents=True, exist_ok=True)
        # The bootstrap admin is made on the first start only: its password is
        # kept as long as the data, with the stack's other secrets.
        secret = self.keycloak_admin_file
        secret.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not secret.exists() and (state / "admin-password").exists():
            (state / "admin-password").rename(secret)  # where state dirs made before kept it
        if not secret.exists():
            secret.touch(mode=0o600)
            secret.write_text(secrets.token_urlsafe(18))
        password = secret.read_text().strip()
        management = free_port()
        self.embedded["keycloak"] = keycloak_server(
            state,
            port=self.ports.keycloak,
            management_port=management,
            admin_password=password,
            log_dir=self.log_dir,
            truststore=self.ca.ca_file,
        )
        return KeycloakServer.local(
            port=self.ports.keycloak, management_port=management, admin_password=password
        )

    def env(self) -> dict[str, str]:
        """The settings every Tenantry process gets (see README, Configuration); the
        database's are each process's own (`service_env`)."""
        assert self.postgres is not None, "start_embedded() first"
        return {
            # Each process names itself in its spans (libs/tracing.py).
            **{k: v for k, v in os.environ.items() if k != "OTEL_SERVICE_NAME"},
            **self._trace_env(),
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_ACCESS_KEY_ID": "embedded",
            "AWS_SECRET_ACCESS_KEY": "embedded",
            "AWS_DEFAULT_REGION": "us-east-1",
            "TENANTRY_SMTP_ADDRESS": f"127.0.0.1:{self.ports.smtp}",
            # The catcher requires STARTTLS (its certificate from the stack's CA) and AUTH.
            "TENANTRY_SMTP_USERNAME": MAIL_USERNAME,
            "TENANTRY_SMTP_PASSWORD_FILE": str(password_file(self.state_dir / "secrets")),
            "TENANTRY_SMTP_CA_FILE": str(self.ca.ca_file),
            "TENANTRY_GRPC_ADDRESS": self.grpc_address,
            "TENANTRY_IAC_STATE_DIR": str(self.state_dir / "iac"),
            # moto grants SES sender verification at once (used when TENANTRY_NOTIFY_PROVIDER=ses).
            "TENANTRY_SES_VERIFY_SENDER": "true",
            "TENANTRY_IDP_PROVIDER": self.idp,
            **(self.keycloak.env() if self.keycloak else {}),
            "TENANTRY_KEYCLOAK_MODE": self.keycloak_mode,
            "TENANTRY_PAGE_TOKEN_KEY_FILE": str(self._page_token_key()),
            # Every payload in Temporal encrypted (libs/codec.py), also when the
            # caller's environment switched it off for processes of its own.
            "TENANTRY_PAYLOAD_KEYS_FILE": str(self.payload_keys_file),
            "TENANTRY_PAYLOAD_ENCRYPTION": "on",
            **self.extra_env,
        }

    def _trace_env(self) -> dict[str, str]:
        if not self.traces:
            return {}
        return {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.ports.otlp}",
            # A run's spans reach Jaeger within a second of its end (the SDK waits 5 s).
            "OTEL_BSP_SCHEDULE_DELAY": os.environ.get("OTEL_BSP_SCHEDULE_DELAY", "500"),
        }

    def _page_token_key(self) -> Path:
        """The key every facade replica signs page tokens with: made once, private (0600)."""
        path = self.state_dir / "secrets" / "page-token.key"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
        return path

    @property
    def ca(self) -> LocalCA:
        """The stack's certificate authority: in `<state_dir>/secrets`, unless one was given."""
        if self._ca is None:
            self._ca = LocalCA(self.state_dir / "secrets")
        return self._ca

    def service_env(self, name: str) -> dict[str, str]:
        """`env()` with the process's own DSN, or none for a process without a role."""
        env = {k: v for k, v in self.env().items() if k != "TENANTRY_DATABASE_URL"}
        if name in self.database_urls:
            env["TENANTRY_DATABASE_URL"] = self.database_urls[name]
        return env

    def start_service(
        self, name: str, *, replica: int = 0, env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        """Starts the process (`replica` > 0: another one of it, named `<name>-<replica>`;
        `env` on top of its settings)."""
        health = f"127.0.0.1:{free_port()}"
        given = env
        env = {**self.service_env(name), "TENANTRY_HEALTH_ADDRESS": health, **(env or {})}
        # Every health endpoint serves TLS with the stack's server certificate;
        # the API also requires client certificates on its own address.
        server = self.ca.server()
        env |= {"TENANTRY_TLS_CERT_FILE": str(server.cert), "TENANTRY_TLS_KEY_FILE": str(server.key)}
        credentials = grpc.ssl_channel_credentials(self.ca.ca_file.read_bytes())
        key = f"{name}-{replica}" if replica else name
        # Each process its own endpoint (one inherited from the caller's environment would clash).
        env.pop("TENANTRY_METRICS_ADDRESS", None)
        if given and "TENANTRY_METRICS_ADDRESS" in given:
            env["TENANTRY_METRICS_ADDRESS"] = given["TENANTRY_METRICS_ADDRESS"]
        elif self.metrics:
            first = self.ports.metrics
            port = first + list(SERVICES).index(name) if first and not replica else free_port()
            env["TENANTRY_METRICS_ADDRESS"] = f"127.0.0.1:{port}"
        if env.get("TENANTRY_METRICS_ADDRESS"):
            self.metrics_addresses[key] = env["TENANTRY_METRICS_ADDRESS"]
        else:
            self.metrics_addresses.pop(key, None)
        if name == "tenant_api":
            assert self.access is not None
            env.update(self.access.api_env())
        process = ManagedProcess(
            key,
            python_module(SERVICES[name]),
            log_dir=self.log_dir,
            env=env,
            ready=lambda: grpc_serving(health, credentials=credentials),
        )
        self.services[key] = process
        return process.start().wait_ready()

    def start_codec_server(self) -> ManagedProcess:
        """The codec server: the Temporal UI's operator decodes payloads there."""
        assert self.access is not None, "start_embedded() first"
        ui = f"http://127.0.0.1:{self.ports.temporal_ui}" if self.ports.temporal_ui else ""
        env = {
            **self.env(),
            "TENANTRY_CODEC_ADDRESS": f"127.0.0.1:{self.ports.codec}",
            "TENANTRY_CODEC_CORS_ORIGIN": ui,
            "TENANTRY_CODEC_SIGN_IN_FILE": str(self.codec_sign_in_file),
            # Bearer tokens too when TENANTRY_OIDC_ISSUER is set: the API's policy says who operates.
            "TENANTRY_ACCESS_POLICY_FILE": str(self.access.policy_file),
        }
        process = ManagedProcess(
            "codec_server",
            python_module("services.codec_server"),
            log_dir=self.log_dir,
            env=env,
            ready=lambda: _http_ok(f"{self.codec_endpoint}/healthz"),
        )
        self.embedded["codec_server"] = process
        return process.start().wait_ready()

    def restart(self, name: str) -> ManagedProcess:
        self.services[name].stop()
        return self.start_service(name)

    def stop(self) -> None:
        for process in reversed(list(self.services.values())):
            process.stop()
        for process in self.embedded.values():
            process.stop()
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None
