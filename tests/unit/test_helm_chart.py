"""deploy/helm/tenantry: lint-clean, and what `helm template` renders is valid
Kubernetes (kubernetes-validate's schemas) and valid KEDA (the openAPIV3Schema
of KEDA's own CRDs), for each value set a user starts from; and the facts a
deployment depends on hold in it: one Deployment per process, one
ScaledObject per worker on the task queue proto declares, probes on the port
the process listens on for health, no credential in a ConfigMap, only the API
reachable, a grace period longer than the drain.

helm is built by `make helm` (make test does); KEDA's CRDs come from the Go
module proxy into the cache on first use (libs/devstack/helm.py)."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from libs.contracts import ACTIVITY_CONTRACTS, WORKFLOWS
from libs.devstack.helm import find, keda_crd_schemas
from libs.devstack.stack import SERVICES

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "tenantry"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion; grpc probes
# are GA from 1.27) and the newest whose schemas kubernetes-validate ships.
KUBERNETES_VERSION = "1.27.0"
KUBERNETES_VERSIONS = (KUBERNETES_VERSION, kubernetes_validate.utils.latest_version())
# The API's drain (services/tenant_api/server.py: server.stop(grace=10)).
API_DRAIN_SECONDS = 10
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}

# Distinctive credentials given inline: none may show up anywhere but in a Secret.
PAYLOAD_KEYS = '{"current": "k1", "keys": {"k1": "cGF5bG9hZC1rZXktaW4tdGVzdA=="}}'
API_DATABASE_URL = "postgresql://api:pw-of-api-in-test@db/tenantry"
KEYCLOAK_PASSWORD = "pw-of-keycloak-in-test"
TEMPORAL_API_KEY = "temporal-api-key-in-test"
INLINE_SECRETS = {
    "secrets": {"values": {"TENANTRY_PAYLOAD_KEYS": PAYLOAD_KEYS}},
    "temporal": {"apiKey": {"value": TEMPORAL_API_KEY}},
    "processes": {
        "api": {"secrets": {"values": {"TENANTRY_DATABASE_URL": API_DATABASE_URL}}},
        "idp": {"secrets": {"values": {"TENANTRY_KEYCLOAK_ADMIN_PASSWORD": KEYCLOAK_PASSWORD}}},
    },
}
SECRET_VALUES = {PAYLOAD_KEYS, API_DATABASE_URL, KEYCLOAK_PASSWORD, TEMPORAL_API_KEY}

VALUE_SETS: dict[str, list[str]] = {
    "defaults": [],
    "temporal-cloud": ["-f", str(CHART / "examples" / "temporal-cloud.yaml")],
    "self-hosted-mtls": ["-f", str(CHART / "examples" / "self-hosted-mtls.yaml")],
    "keda-off": ["--set", "keda.enabled=false"],
    "inline-secrets": ["-f", "{inline_secrets}"],
}

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def helm() -> Path:
    found = find()
    assert found is not None, "helm is missing: `make helm` builds it into the cache"
    return found


def _helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def value_args(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Value set -> helm's arguments for it."""
    inline = tmp_path_factory.mktemp("helm") / "inline-secrets.yaml"
    inline.write_text(yaml.safe_dump(INLINE_SECRETS))
    return {name: [a.format(inline_secrets=inline) for a in args] for name, args in VALUE_SETS.items()}


@pytest.fixture(scope="module")
def rendered(helm: Path, value_args: dict[str, list[str]]) -> dict[str, list[dict[str, Any]]]:
    """Value set -> the objects `helm template` renders for it."""
    out = {}
    for name, args in value_args.items():
        done = _helm(helm, "template", "tenantry", str(CHART), "--kube-version", KUBERNETES_VERSION, *args)
        assert done.returncode == 0, f"{name}: {done.stderr}"
        out[name] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return out


def _kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _by_name(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in _kind(objects, kind)}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _module(deployment: dict[str, Any]) -> str:
    command = _container(deployment)["command"]
    assert command[:2] == ["python", "-m"], command
    return str(command[2])


def _env(objects: list[dict[str, Any]], deployment: dict[str, Any]) -> dict[str, str]:
    """The container's settings from its ConfigMaps (envFrom), later ones winning as in Kubernetes."""
    maps = _by_name(objects, "ConfigMap")
    env: dict[str, str] = {}
    for source in _container(deployment)["envFrom"]:
        if "configMapRef" in source:
            env |= maps[source["configMapRef"]["name"]]["data"]
    return env


def _deployments(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for deployment in _kind(objects, "Deployment"):
        yield _module(deployment), deployment


def _queues_from_proto() -> dict[str, str]:
    """Module run by a worker -> the task queue its proto service declares."""
    queues = {}
    for contract in (*ACTIVITY_CONTRACTS, WORKFLOWS):
        domain = contract.service.split(".")[1]  # tenantry.<domain>.v1.<Service>
        module = domain if domain == "orchestrator" else f"services.{domain}"
        queues[module] = contract.task_queue
    return queues


WORKER_QUEUES = _queues_from_proto()
API_MODULE = SERVICES["tenant_api"]


def test_queues_from_proto_cover_every_worker() -> None:
    assert set(WORKER_QUEUES) == set(SERVICES.values()) - {API_MODULE}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint(helm: Path, value_args: dict[str, list[str]], value_set: str) -> None:
    done = _helm(
        helm, "lint", "--strict", str(CHART), "--kube-version", KUBERNETES_VERSION, *value_args[value_set]
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused (the API server would drop
    them silently, and a misspelt field would do nothing)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {
        k: _strict(v) if k in {"properties", "items", "additionalProperties"} else v
        for k, v in schema.items()
    }
    if "properties" in schema:
        strict["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            strict["additionalProperties"] = False
    return strict


@pytest.fixture(scope="module")
def keda() -> dict[str, Any]:
    return {kind: _strict(schema) for kind, schema in keda_crd_schemas().items()}


def test_the_strict_keda_schema_refuses_a_misspelt_field(keda: dict[str, Any]) -> None:
    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"name": "x"}, "triggers": [{"type": "temporal", "metadata": {}}]},
    }
    jsonschema.validate(scaled, keda["ScaledObject"])
    scaled["spec"]["minReplicas"] = 1  # the HPA's name, not KEDA's minReplicaCount
    with pytest.raises(jsonschema.ValidationError, match="minReplicas"):
        jsonschema.validate(scaled, keda["ScaledObject"])


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_object_is_valid(
    rendered: dict[str, list[dict[str, Any]]], keda: dict[str, Any], value_set: str
) -> None:
    for obj in rendered[value_set]:
        where = f"{value_set}: {obj['kind']} {obj['metadata']['name']}"
        if obj["kind"] in KEDA_KINDS:
            try:
                jsonschema.validate(obj, keda[obj["kind"]])
            except jsonschema.ValidationError as err:
                pytest.fail(f"{where}: {err.message} at {list(err.absolute_path)}")
        else:
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as err:
                    pytest.fail(f"{where} (Kubernetes {version}): {err.message} at {list(err.path)}")


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_one_deployment_per_process(rendered: dict[str, list[dict[str, Any]]], value_set: str) -> None:
    modules = [module for module, _ in _deployments(rendered[value_set])]
    assert sorted(modules) == sorted(SERVICES.values())


@pytest.mark.parametrize("value_set", ["defaults", "temporal-cloud", "self-hosted-mtls"])
def test_one_scaled_object_per_worker_on_its_proto_queue(
    rendered: dict[str, list[dict[str, Any]]], value_set: str
) -> None:
    objects = rendered[value_set]
    deployments = _by_name(objects, "Deployment")
    queues = {}
    for scaled in _kind(objects, "ScaledObject"):
        target = deployments[scaled["spec"]["scaleTargetRef"]["name"]]
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["type"] == "temporal"
        queues[_module(target)] = trigger["metadata"]["taskQueue"]
        assert int(trigger["metadata"]["targetQueueSize"]) > 0
        assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
        # The scaler owns the replica count.
        assert "replicas" not in target["spec"]
    assert queues == WORKER_QUEUES
    assert not _kind(objects, "HorizontalPodAutoscaler")


def test_without_keda_each_worker_has_a_cpu_autoscaler(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["keda-off"]
    assert not _kind(objects, "ScaledObject") and not _kind(objects, "TriggerAuthentication")
    deployments = _by_name(objects, "Deployment")
    scaled = {}
    for hpa in _kind(objects, "HorizontalPodAutoscaler"):
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        scaled[_module(deployments[hpa["spec"]["scaleTargetRef"]["name"]])] = hpa
    assert set(scaled) == set(WORKER_QUEUES)


@pytest.mark.parametrize(
    ("value_set", "parameters"),
    [("temporal-cloud", {"apiKey"}), ("self-hosted-mtls", {"cert", "key", "ca"}), ("defaults", None)],
)
def test_keda_authenticates_to_temporal_as_the_workers_do(
    rendered: dict[str, list[dict[str, Any]]], value_set: str, parameters: set[str] | None
) -> None:
    objects = rendered[value_set]
    auths = _by_name(objects, "TriggerAuthentication")
    refs = {
        (t.get("authenticationRef") or {}).get("name")
        for s in _kind(objects, "ScaledObject")
        for t in s["spec"]["triggers"]
    }
    if parameters is None:
        assert not auths and refs == {None}
        return
    (name,) = auths
    assert refs == {name}
    assert {ref["parameter"] for ref in auths[name]["spec"]["secretTargetRef"]} == parameters


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_probes_point_at_the_health_port_the_process_listens_on(
    rendered: dict[str, list[dict[str, Any]]], value_set: str
) -> None:
    objects = rendered[value_set]
    for module, deployment in _deployments(objects):
        env = _env(objects, deployment)
        container = _container(deployment)
        health_port = int(env["TENANTRY_HEALTH_ADDRESS"].rsplit(":", 1)[1])
        assert env["TENANTRY_HEALTH_ADDRESS"].startswith("0.0.0.0:"), module
        # The kubelet's grpc probes speak plaintext.
        assert env["TENANTRY_HEALTH_TLS"] == "off", module
        assert health_port in {p["containerPort"] for p in container["ports"]}, module
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == health_port, (module, probe)
        if module == API_MODULE:
            grpc_port = int(env["TENANTRY_GRPC_ADDRESS"].rsplit(":", 1)[1])
            (service,) = _kind(objects, "Service")
            assert {p["containerPort"] for p in container["ports"] if p["name"] == "grpc"} == {grpc_port}
            assert (
                service["spec"]["selector"].items()
                <= deployment["spec"]["template"]["metadata"]["labels"].items()
            )


def test_no_secret_value_in_a_config_map(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["inline-secrets"]
    in_secrets = {
        base64.b64decode(value).decode()
        for secret in _kind(objects, "Secret")
        for value in secret["data"].values()
    }
    assert in_secrets >= SECRET_VALUES
    for config_map in _kind(objects, "ConfigMap"):
        for key, value in config_map["data"].items():
            for secret in SECRET_VALUES:
                assert secret not in value, f"{config_map['metadata']['name']}: {key}"
    # And the processes get them, from the Secrets.
    deployments = dict(_deployments(objects))
    api = _container(deployments[API_MODULE])
    assert any("secretRef" in s and s["secretRef"]["name"].endswith("-api") for s in api["envFrom"])
    for _, deployment in deployments.items():
        (key,) = _container(deployment)["env"]
        assert key["name"] == "TEMPORAL_API_KEY" and "secretKeyRef" in key["valueFrom"]


def test_a_credential_put_in_config_fails_the_release(helm: Path) -> None:
    done = _helm(
        helm,
        "template",
        "tenantry",
        str(CHART),
        "--set-string",
        "processes.tenantdb.config.TENANTRY_DATABASE_URL=x",
    )
    assert done.returncode != 0
    assert "processes.tenantdb: TENANTRY_DATABASE_URL is a credential" in done.stderr


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_only_the_api_takes_connections(rendered: dict[str, list[dict[str, Any]]], value_set: str) -> None:
    objects = rendered[value_set]
    policies = _kind(objects, "NetworkPolicy")
    for module, deployment in _deployments(objects):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (policy,) = (p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items())
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        ingress_ports = {
            port["port"] for rule in policy["spec"].get("ingress") or [] for port in rule["ports"]
        }
        if module == API_MODULE:
            assert "grpc" in ingress_ports
        else:
            assert ingress_ports <= {"metrics"}, module
        egress_ports = {port["port"] for rule in policy["spec"]["egress"] for port in rule["ports"]}
        assert {53, 7233} <= egress_ports, module


def test_workers_take_no_connections_by_default(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["defaults"]
    workers = [p for p in _kind(objects, "NetworkPolicy") if not p["metadata"]["name"].endswith("-api")]
    assert len(workers) == len(WORKER_QUEUES)
    assert all(p["spec"]["ingress"] in ([], None) for p in workers)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_grace_period_outlasts_the_drain(rendered: dict[str, list[dict[str, Any]]], value_set: str) -> None:
    objects = rendered[value_set]
    for module, deployment in _deployments(objects):
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        env = _env(objects, deployment)
        drain = API_DRAIN_SECONDS if module == API_MODULE else int(env["TENANTRY_DRAIN_SECONDS"])
        assert grace > drain, module


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_each_process_has_a_disruption_budget(
    rendered: dict[str, list[dict[str, Any]]], value_set: str
) -> None:
    objects = rendered[value_set]
    budgets = _kind(objects, "PodDisruptionBudget")
    for module, deployment in _deployments(objects):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, module
