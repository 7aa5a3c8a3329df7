"""OpenTofu for silo tenants in development and the tests (`make iac`):
built once from its source on the Go module proxy into the cache
(`python -m libs.devstack.tofu install`). deploy/Dockerfile builds the same
release (its TOFU_VERSION argument; tests/unit/test_deploy_image.py keeps
the two equal). The infra worker only finds a binary
(services/infra/providers/iac.py), it never builds one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from libs import config

CACHE_BIN = config.cache_dir("bin")
# 1.10 is the newest line whose module builds with the Go toolchain installed here.
TOFU_VERSION = "v1.10.6"
TOFU_MODULE = "github.com/opentofu/opentofu"


def install(dest: Path = CACHE_BIN, *, version: str = TOFU_VERSION) -> Path:
    """Builds OpenTofu from its source on the Go module proxy into `dest` and returns the binary.

    `go install <module>/cmd/tofu@version` is refused (OpenTofu's go.mod has
    replace directives), so the source is fetched with `go mod download` and
    built in a scratch copy. Needs Go; takes a few minutes on 2 cores.
    """
    target = dest / "tofu"
    if target.exists():
        return target
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("building OpenTofu needs the Go toolchain (go) on PATH")
    listing = subprocess.run(
        [go, "mod", "download", "-json", f"{TOFU_MODULE}@{version}"],
        check=True,
        capture_output=True,
        text=True,
    )
    source = Path(json.loads(listing.stdout)["Dir"])
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tofu-src-") as scratch:
        tree = Path(scratch) / "src"
        # The module cache is read-only; the build wants to write next to the source.
        shutil.copytree(source, tree)
        for path in tree.rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)
        partial = dest / "tofu.partial"
        subprocess.run(
            [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(partial), "./cmd/tofu"],
            cwd=tree,
            check=True,
        )
        partial.replace(target)
    return target


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m libs.devstack.tofu install")
    print(install())
