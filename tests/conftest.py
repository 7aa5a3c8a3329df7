"""Session-wide embedded servers, started once and stopped at the end.

Each fixture starts real software (see libs/devstack/embedded.py); a test
that needs one asks for it by name.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs import codec
from libs.devstack.certs import LocalCA
from libs.devstack.embedded import Postgres, mail_catcher, moto_server, temporal_server
from libs.devstack.keycloak import KeycloakServer, keycloak_server
from libs.devstack.mailcatcher import USERNAME as MAIL_USERNAME
from libs.devstack.mailcatcher import password_file
from libs.devstack.processes import ManagedProcess, free_port

# Processes and clients a test starts on its own (a worker replica, the API
# against the test's Temporal) connect as the test's plain clients do, with
# no codec; the embedded Stack (libs/devstack/stack.py) encrypts, as `make dev`.
os.environ.setdefault(codec.SWITCH, "off")


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="session")
def ca(state_dir: Path) -> LocalCA:
    """The session's certificate authority (as the dev stack's, in `secrets`)."""
    return LocalCA(state_dir / "secrets")


@pytest.fixture(scope="session")
def postgres_url(state_dir: Path) -> Iterator[str]:
    server = Postgres.start(state_dir / "pgdata", delete_on_stop=True)
    yield server.url
    server.stop()


@dataclass(frozen=True)
class Aws:
    endpoint_url: str
    env: dict[str, str]


@contextmanager
def moto_aws(log_dir: Path) -> Iterator[Aws]:
    """A moto server, with the standard AWS settings pointing at it meanwhile."""
    port = free_port()
    server = moto_server(port=port, log_dir=log_dir).start().wait_ready()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield Aws(endpoint_url=endpoint, env=env)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture(scope="session")
def aws(state_dir: Path) -> Iterator[Aws]:
    with moto_aws(state_dir / "logs") as running:
        yield running


@dataclass(frozen=True)
class MailCatcher:
    """The session's mail catcher: STARTTLS (a certificate of the session CA) and AUTH required."""

    address: str
    maildir: Path
    username: str
    password_file: Path
    ca_file: Path

    @property
    def env(self) -> dict[str, str]:
        """The SMTP settings of a sender that reaches it."""
        return {
            "TENANTRY_SMTP_ADDRESS": self.address,
            "TENANTRY_SMTP_USERNAME": self.username,
            "TENANTRY_SMTP_PASSWORD_FILE": str(self.password_file),
            "TENANTRY_SMTP_CA_FILE": str(self.ca_file),
        }

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()


@pytest.fixture(scope="session")
def mail(state_dir: Path, ca: LocalCA) -> Iterator[MailCatcher]:
    port = free_port()
    maildir = state_dir / "mail"
    secret = password_file(state_dir / "secrets")
    server = mail_catcher(
        maildir, port=port, log_dir=state_dir / "logs", tls=ca.server(), password_file=secret
    ).start()
    server.wait_ready()
    yield MailCatcher(
        address=f"127.0.0.1:{port}",
        maildir=maildir,
        username=MAIL_USERNAME,
        password_file=secret,
        ca_file=ca.ca_file,
    )
    server.stop()


@pytest.fixture(scope="session")
def temporal_address(state_dir: Path) -> Iterator[str]:
    port = free_port()
    server = temporal_server(state_dir / "temporal", port=port, ui_port=None, log_dir=state_dir / "logs")
    server.start().wait_ready()
    yield f"127.0.0.1:{port}"
    server.stop()


@dataclass
class RunningKeycloak:
    server: KeycloakServer
    process: ManagedProcess


@pytest.fixture(scope="session")
def keycloak_process(tmp_path_factory: pytest.TempPathFactory, ca: LocalCA) -> Iterator[RunningKeycloak]:
    """One real Keycloak (dev mode, fresh database) for the whole session,
    trusting the session CA (the mail catcher's certificate); a fault test
    may stop and start its process (the data survives)."""
    state = tmp_path_factory.mktemp("keycloak")
    port, management_port = free_port(), free_port()
    password = secrets.token_urlsafe(18)
    process = keycloak_server(
        state,
        port=port,
        management_port=management_port,
        admin_password=password,
        log_dir=state / "logs",
        truststore=ca.ca_file,
    )
    try:
        process.start().wait_ready()
    except BaseException:
        process.stop()  # a JVM left behind would hold its ports and memory
        raise
    server = KeycloakServer.local(port=port, management_port=management_port, admin_password=password)
    yield RunningKeycloak(server, process)
    process.stop()


@pytest.fixture(scope="session")
def keycloak(keycloak_process: RunningKeycloak) -> KeycloakServer:
    return keycloak_process.server
