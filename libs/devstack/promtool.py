"""promtool, which checks and unit-tests the alert rules in deploy/prometheus
(`make test`): built once from Prometheus's source on the Go module proxy
into the cache (`make promtool`; `python -m libs.devstack.promtool`).

Built as OpenTofu is (libs/devstack/tofu.py): the module is
fetched with `go mod download` and built in a writable copy, so directives
in its go.mod that `go install module@version` refuses do not matter.
Service-discovery plugins are left out (build tag `remove_all_sd`):
promtool's rule checks need none of them, and they are most of the build.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from libs import config

PROMETHEUS_MODULE = "github.com/prometheus/prometheus"
PROMETHEUS_VERSION = "v0.316.0"
CACHE_BIN = config.cache_dir("bin")


def find() -> Path | None:
    """The promtool to use: the cache's, else one on PATH."""
    cached = CACHE_BIN / "promtool"
    if cached.exists():
        return cached
    found = shutil.which("promtool")
    return Path(found) if found else None


def install(dest: Path = CACHE_BIN, *, version: str = PROMETHEUS_VERSION) -> Path:
    """Builds promtool into `dest` (unless it is there) and returns it. Needs Go."""
    target = dest / "promtool"
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("building promtool needs the Go toolchain (go) on PATH")
    listing = subprocess.run(
        [go, "mod", "download", "-json", f"{PROMETHEUS_MODULE}@{version}"],
        check=True,
        capture_output=True,
        text=True,
    )
    source = Path(json.loads(listing.stdout)["Dir"])
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="prometheus-src-") as scratch:
        tree = Path(scratch) / "src"
        # The module cache is read-only; the build wants to write next to the source.
        shutil.copytree(source, tree)
        for path in tree.rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)
        partial = dest / "promtool.partial"
        subprocess.run(
            [
                go,
                "build",
                "-trimpath",
                "-tags",
                "remove_all_sd",
                "-ldflags=-s -w",
                "-o",
                str(partial),
                "./cmd/promtool",
            ],
            cwd=tree,
            check=True,
            # The module ships a go.work naming folders its zip leaves out.
            env={**os.environ, "GOWORK": "off"},
        )
        partial.replace(target)
    return target


if __name__ == "__main__":
    print(install(version=sys.argv[1] if sys.argv[1:] else PROMETHEUS_VERSION))
