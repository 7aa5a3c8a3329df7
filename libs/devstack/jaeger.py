"""Jaeger, the trace backend of `make dev` and the tests: built once from its
source on the Go module proxy into ~/.cache/tenantry/bin, run with in-memory
storage, an OTLP receiver and the query API on ports of our choosing.

`cmd/jaeger` of Jaeger v1.7x is the v2 binary (an OpenTelemetry collector
with Jaeger's storage and query extensions); it is configured by one YAML
file, written into the stack's state dir at each start. A build from the
module source has no UI assets (they are built from the jaeger-ui repository
for releases): its query port serves the API (`/api/traces/<trace id>`,
`/api/v3/...`) and a placeholder page.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from libs import config
from libs.devstack.processes import ManagedProcess, free_port

CACHE_BIN = config.cache_dir("bin")
JAEGER_MODULE = "github.com/jaegertracing/jaeger"
# The newest release line approved here (v1.76 is served, not approved).
JAEGER_VERSION = "v1.75.0"
# Enough for a dev session or a test run; the oldest traces go first.
MAX_TRACES = 20000


def find_binary() -> Path:
    """TENANTRY_JAEGER_BINARY, else the one `install()` built; RuntimeError if none."""
    configured = os.environ.get("TENANTRY_JAEGER_BINARY")
    candidate = Path(configured) if configured else CACHE_BIN / "jaeger"
    if not os.access(candidate, os.X_OK):
        raise RuntimeError(
            f"no Jaeger binary at {candidate}: build it with `make jaeger`"
            " (python -m libs.devstack.jaeger install)"
        )
    return candidate


def install(dest: Path = CACHE_BIN, *, version: str = JAEGER_VERSION) -> Path:
    """Builds `cmd/jaeger` from the Go module proxy into `dest` and returns the binary.

    `go install` refuses the module (its go.mod has a replace directive), so
    it is required as a tool of a scratch module and built there. Needs Go;
    several minutes on 2 cores, run at low priority.
    """
    target = dest / "jaeger"
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("building Jaeger needs the Go toolchain (go) on PATH")
    dest.mkdir(parents=True, exist_ok=True)
    partial = dest / "jaeger.partial"
    with tempfile.TemporaryDirectory(prefix="jaeger-build-") as scratch:
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        for argv in (
            [go, "mod", "init", "tenantry.local/jaeger-build"],
            [go, "get", "-tool", f"{JAEGER_MODULE}/cmd/jaeger@{version}"],
            [
                *nice,
                go,
                "build",
                "-trimpath",
                "-ldflags=-s -w",
                "-o",
                str(partial),
                f"{JAEGER_MODULE}/cmd/jaeger",
            ],
        ):
            subprocess.run(argv, cwd=scratch, check=True)
    partial.replace(target)
    return target


def write_config(path: Path, *, otlp_port: int, query_port: int) -> Path:
    """The collector's configuration: OTLP over gRPC in, memory storage, the
    query API out; its other listeners (the query gRPC API) on a free
    loopback port, its own metrics off."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON is YAML: no YAML writer needed.
    settings = {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            "telemetry": {
                "resource": {"service.name": "jaeger"},
                "metrics": {"level": "none"},
                "logs": {"level": "warn"},
            },
        },
        "extensions": {
            "jaeger_query": {
                "storage": {"traces": "memory"},
                # Jaeger would trace its own queries into the store it serves.
                "enable_tracing": False,
                "http": {"endpoint": f"127.0.0.1:{query_port}"},
                "grpc": {"endpoint": f"127.0.0.1:{free_port()}"},
            },
            "jaeger_storage": {"backends": {"memory": {"memory": {"max_traces": MAX_TRACES}}}},
        },
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{otlp_port}"}}}},
        "processors": {"batch": {"timeout": "100ms"}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memory"}},
    }
    path.write_text(json.dumps(settings, indent=2) + "\n")
    return path


def _services_listed(query_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{query_port}/api/services", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def jaeger_server(state_dir: Path, *, otlp_port: int, query_port: int, log_dir: Path) -> ManagedProcess:
    """Jaeger with in-memory storage: spans over OTLP/gRPC on `otlp_port`, the query API on `query_port`."""
    binary = find_binary()
    config_file = write_config(state_dir / "config.yaml", otlp_port=otlp_port, query_port=query_port)
    return ManagedProcess(
        "jaeger",
        [str(binary), "--config", str(config_file)],
        log_dir=log_dir,
        ready=lambda: _services_listed(query_port),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Jaeger for the dev stack")
    parser.add_argument("command", choices=("install",))
    parser.parse_args()
    print(install())


if __name__ == "__main__":
    main()
