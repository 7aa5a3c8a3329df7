"""Go tools pinned by a `tool` directive in a go.mod under tools/ (go.sum holds
their hashes), installed with `go install tool` into a folder of the cache.

Shared by the protoc plugins (tools/proto, libs/codegen.py) and helm
(tools/helm, libs/devstack/helm.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path


def install_tools(
    module_dir: Path, target: Path, names: Iterable[str], *, what: str, ldflags: Sequence[str] = ()
) -> None:
    """Installs every tool of `module_dir`'s go.mod into `target`, unless all of
    `names` are there and were built from the same go.sum (and `ldflags`, added
    to the linker's `-s -w`). `what` names the need in the error when Go is missing."""
    # A stamp of the pins: a changed go.sum installs them again.
    stamp = target / ".go.sum"
    pins = (module_dir / "go.sum").read_text() + "".join(f"// ldflags {flag}\n" for flag in ldflags)
    if all((target / n).exists() for n in names) and stamp.exists() and stamp.read_text() == pins:
        return
    go = shutil.which("go")
    if go is None:
        raise SystemExit(f"{what} needs the Go toolchain (go)")
    target.mkdir(parents=True, exist_ok=True)
    # GOWORK=off: the tools' module stands alone, whatever go.work is around.
    env = {**os.environ, "GOBIN": str(target), "GOWORK": "off", "GOFLAGS": "-trimpath"}
    linker = " ".join(("-s", "-w", *ldflags))
    subprocess.run([go, "install", f"-ldflags={linker}", "tool"], cwd=module_dir, env=env, check=True)
    stamp.write_text(pins)
