"""helm, and KEDA's CRD schemas, for the checks of deploy/helm/tenantry
(`make test`; tests/unit/test_helm_chart.py).

helm is pinned by tools/helm/go.mod and built once into the cache with
`go install tool` (`make helm`; `python -m libs.devstack.helm`). KEDA's CRDs
come from the same place its controller is built from: the Go module proxy
(`go mod download`), so the checks need no cluster and no network after the
first download.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from libs import config
from libs.devstack.gotools import install_tools

ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = ROOT / "tools" / "helm"
KEDA_MODULE = "github.com/kedacore/keda/v2"
# The KEDA the chart's ScaledObjects and TriggerAuthentications are written for.
KEDA_VERSION = "v2.17.2"


def helm_bin() -> Path:
    return config.cache_dir("bin") / "helm-tools"


def find() -> Path | None:
    """The helm to use: the cache's, else one on PATH."""
    cached = helm_bin() / "helm"
    if cached.exists():
        return cached
    found = shutil.which("helm")
    return Path(found) if found else None


def _pinned(module: str) -> str:
    """The version tools/helm/go.mod requires of `module`."""
    found = re.search(rf"^\s*{re.escape(module)} (v\S+)", (TOOLS_DIR / "go.mod").read_text(), re.MULTILINE)
    if found is None:
        raise RuntimeError(f"tools/helm/go.mod requires no {module}")
    return found.group(1)


def _ldflags() -> list[str]:
    """What helm's own Makefile links in: its version, and the Kubernetes
    version `helm template` / `lint` assume (client-go v0.N -> 1.N), else 1.20."""
    kube_minor = _pinned("k8s.io/client-go").split(".")[1]
    flags = [f"-X helm.sh/helm/v3/internal/version.version={_pinned('helm.sh/helm/v3')}"]
    for package in ("pkg/lint/rules", "pkg/chartutil"):
        flags += [
            f"-X helm.sh/helm/v3/{package}.k8sVersionMajor=1",
            f"-X helm.sh/helm/v3/{package}.k8sVersionMinor={kube_minor}",
        ]
    return flags


def install() -> Path:
    """Builds the pinned helm into the cache (unless it is there) and returns it."""
    install_tools(TOOLS_DIR, helm_bin(), ("helm",), what="building helm", ldflags=_ldflags())
    return helm_bin() / "helm"


def keda_crd_schemas(version: str = KEDA_VERSION) -> dict[str, dict[str, Any]]:
    """Kind (ScaledObject, TriggerAuthentication, …) -> the openAPIV3Schema of
    its served version in KEDA's CRDs, cached as JSON."""
    cached = config.cache_dir("keda") / f"crd-schemas-{version}.json"
    if cached.exists():
        schemas: dict[str, dict[str, Any]] = json.loads(cached.read_text())
        return schemas
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("fetching KEDA's CRDs needs the Go toolchain (go) on PATH")
    listing = subprocess.run(
        [go, "mod", "download", "-json", f"{KEDA_MODULE}@{version}"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "GOWORK": "off"},
    )
    bases = Path(json.loads(listing.stdout)["Dir"]) / "config" / "crd" / "bases"
    schemas = {}
    for crd_file in sorted(bases.glob("keda.sh_*.yaml")):
        crd = yaml.safe_load(crd_file.read_text())
        (served,) = (v for v in crd["spec"]["versions"] if v.get("served"))
        schemas[crd["spec"]["names"]["kind"]] = served["schema"]["openAPIV3Schema"]
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    partial.write_text(json.dumps(schemas))
    partial.replace(cached)
    return schemas


if __name__ == "__main__":
    print(install())
    print(f"KEDA {KEDA_VERSION} CRD schemas: {', '.join(sorted(keda_crd_schemas()))}")
