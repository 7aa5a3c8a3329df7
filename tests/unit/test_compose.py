"""deploy/compose.yaml: valid against the compose specification's own schema
(from compose-go on the Go module proxy, cached), every process present with
its health check, each worker scaled on its own, and no secret inline."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from libs import config

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
# compose-go's schema is the specification's (compose-spec/compose-spec's
# schema/compose-spec.json, vendored there); 2.17 wants a newer Go than here.
COMPOSE_GO = "github.com/compose-spec/compose-go/v2"
COMPOSE_GO_VERSION = "v2.16.2"
PROCESSES = {
    "tenant_api": "services.tenant_api",
    "orchestrator": "orchestrator",
    "tenantdb": "services.tenantdb",
    "idp": "services.idp",
    "infra": "services.infra",
    "notification": "services.notification",
}
WORKERS = set(PROCESSES) - {"tenant_api"}
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|_KEY$|CREDENTIAL|_DATABASE_.*URL")


def compose_schema() -> dict[str, Any]:
    cached = config.cache_dir("compose-spec") / COMPOSE_GO_VERSION / "compose-spec.json"
    if not cached.is_file():
        go = shutil.which("go")
        assert go, "fetching the compose schema needs Go (the module proxy)"
        listing = subprocess.run(
            [go, "mod", "download", "-json", f"{COMPOSE_GO}@{COMPOSE_GO_VERSION}"],
            capture_output=True,
            text=True,
            timeout=90,
            check=True,
        )
        source = Path(json.loads(listing.stdout)["Dir"]) / "schema" / "compose-spec.json"
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, cached)
    return json.loads(cached.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = compose_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # The schema does reject what compose would (a typo of a service key, say).
    broken = {
        **compose,
        "services": {**compose["services"], "idp": {**compose["services"]["idp"], "replica": 2}},
    }
    assert not validator.is_valid(broken)


def test_every_process_runs_with_its_own_health_check(compose: dict[str, Any]) -> None:
    services = compose["services"]
    images = set()
    for name, module in PROCESSES.items():
        service = services[name]
        assert service["command"] == ["python", "-m", module], name
        assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "libs.health", "check"], name
        assert service["environment"]["TENANTRY_HEALTH_ADDRESS"].startswith("0.0.0.0:"), name
        assert "payload_keys" in service["secrets"], name
        images.add(service["image"])
    assert len(images) == 1 and services["migrate"]["image"] in images
    assert services["migrate"]["command"] == ["python", "-m", "services.tenantdb.migrate"]
    for infrastructure in ("postgresql", "temporal"):
        assert services[infrastructure]["healthcheck"]["test"], infrastructure
    assert services["tenant_api"]["environment"]["TENANTRY_GRPC_ADDRESS"] == "0.0.0.0:50051"


def test_each_worker_is_scaled_on_its_own(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in WORKERS:
        replicas = services[name]["deploy"]["replicas"]
        assert isinstance(replicas, int) and replicas >= 1, name
        # A fixed host port would stop a second replica from starting.
        assert "ports" not in services[name], name


def _secret_values(environment: dict[str, Any]) -> list[str]:
    """Settings that look like credentials and hold a value rather than a file or a ${variable}."""
    found = []
    for key, value in environment.items():
        if not _SECRET_NAME.search(key) or key.endswith("_FILE"):
            continue
        if value is None or re.fullmatch(r"\$\{\w+\}", str(value)):
            continue
        found.append(key)
    return found


def test_no_secret_value_is_written_in_the_file(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        assert _secret_values(environment) == [], name
        for value in environment.values():
            # No DSN with a password (user:password@host).
            assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", str(value)), name
            if str(value).startswith("/run/secrets/"):
                assert str(value).removeprefix("/run/secrets/") in service["secrets"], (name, value)
        for env_file in service.get("env_file", []):
            assert env_file.startswith("secrets/"), (name, env_file)
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("secrets/")
    assert "/secrets/" in (ROOT / "deploy" / ".gitignore").read_text().split()


def test_every_tenantry_setting_is_one_the_code_reads(compose: dict[str, Any]) -> None:
    """A misspelt variable would be ignored silently by the process."""
    source = "\n".join(
        p.read_text()
        for package in ("libs", "services", "orchestrator")
        for p in (ROOT / package).rglob("*.py")
        if "devstack" not in p.parts
    )
    names = {
        key
        for name in (*PROCESSES, "migrate")
        for key in (compose["services"][name].get("environment") or {})
        if key.startswith("TENANTRY_")
    }
    assert names and sorted(n for n in names if f'"{n}"' not in source) == []
