"""Generates every language's code from proto/ (never edited by hand).

- Python, for every module (public API and internal contracts), into
  libs/gen with grpcio-tools;
- Go, TypeScript and the API reference, for the public API (proto/api)
  only, with buf and the pinned local plugins of buf.gen.yaml, into
  clients/go, clients/ts/src/gen and docs/api.

`python -m libs.codegen` regenerates all of it; `--check` fails when any
committed file differs from what the protos generate, or when a vendored
googleapis file (proto/vendor) differs from the installed
googleapis-common-protos (CI runs it). The plugins are installed when
missing: the Go ones from tools/proto/go.mod into the tool cache, protoc-gen-es
with `npm ci` in clients/ts.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

from libs import config
from libs.devstack.gotools import install_tools

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"
API_DIR = PROTO_DIR / "api"
INTERNAL_DIR = PROTO_DIR / "internal"
VENDOR_DIR = PROTO_DIR / "vendor"
GEN_DIR = ROOT / "libs" / "gen"
TS_DIR = ROOT / "clients" / "ts"
GO_TOOLS_DIR = ROOT / "tools" / "proto"
# What buf.gen.yaml writes, relative to ROOT (clients/go holds hand-written
# code too: only its generated tree is compared).
BUF_OUTPUTS = ("clients/go/tenantry", "clients/ts/src/gen", "docs/api")
GO_PLUGINS = ("protoc-gen-go", "protoc-gen-go-grpc", "protoc-gen-doc")
# Only real gRPC services get gRPC stubs; activity contracts are not served.
GRPC_PACKAGES = ("tenantry/tenant/",)


def _protos(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """The Python code of the public and internal modules (google/* comes from googleapis-common-protos)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    protos = _protos(API_DIR) + _protos(INTERNAL_DIR)
    well_known = str(resources.files("grpc_tools") / "_proto")
    base = ["grpc_tools.protoc", *(f"-I{d}" for d in (API_DIR, INTERNAL_DIR, VENDOR_DIR)), f"-I{well_known}"]
    outputs = [f"--python_out={out_dir}", f"--pyi_out={out_dir}"]
    if protoc.main([*base, *outputs, *protos]) != 0:
        raise SystemExit("protoc failed")
    grpc_protos = [p for p in protos if p.startswith(GRPC_PACKAGES)]
    if protoc.main([*base, f"--grpc_python_out={out_dir}", *grpc_protos]) != 0:
        raise SystemExit("protoc (grpc) failed")


def plugins_bin() -> Path:
    return config.cache_dir("bin") / "protoc-plugins"


def install_plugins() -> None:
    """The Go plugins (pinned by tools/proto/go.mod) and protoc-gen-es (pinned by
    clients/ts/package-lock.json), each installed once."""
    install_tools(
        GO_TOOLS_DIR, plugins_bin(), GO_PLUGINS, what="generating the Go client and the API reference"
    )
    if not (TS_DIR / "node_modules" / ".bin" / "protoc-gen-es").exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("generating the TypeScript client needs Node.js and npm")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=TS_DIR, check=True)


def generate_clients(out_root: Path) -> None:
    """buf.gen.yaml's outputs (Go, TypeScript, the reference) under `out_root`."""
    install_plugins()
    buf = Path(sys.executable).with_name("buf")
    env = {**os.environ, "PATH": f"{plugins_bin()}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(
        [str(buf), "generate", "--template", "buf.gen.yaml", "--output", str(out_root)],
        cwd=ROOT,
        env=env,
        check=True,
    )


def _differences(left: Path, right: Path) -> list[str]:
    names = {p.relative_to(left) for p in left.rglob("*") if p.is_file()}
    names |= {p.relative_to(right) for p in right.rglob("*") if p.is_file()}
    return sorted(
        str(n)
        for n in names
        if not (
            (left / n).is_file() and (right / n).is_file() and filecmp.cmp(left / n, right / n, shallow=False)
        )
    )


def vendored_differences() -> list[str]:
    """Vendored googleapis files that are not the installed package's."""
    from google.api import field_behavior_pb2  # the package whose files are vendored

    installed = Path(field_behavior_pb2.__file__).parents[2]  # site-packages/google/api/…
    return [
        f"proto/vendor/{name} (not googleapis-common-protos' own: copy it again)"
        for name in _protos(VENDOR_DIR)
        if not (installed / name).is_file()
        or not filecmp.cmp(VENDOR_DIR / name, installed / name, shallow=False)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if any generated file is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh / "libs" / "gen")
        generate_clients(fresh)
        outputs = ("libs/gen", *BUF_OUTPUTS)
        if args.check:
            stale = vendored_differences()
            for out in outputs:
                stale += [f"{out}/{n}" for n in _differences(fresh / out, ROOT / out)]
            if stale:
                print("generated code is stale; run `make proto`:", *stale, sep="\n  ", file=sys.stderr)
                raise SystemExit(1)
            print("generated code is up to date")
            return
        for out in outputs:
            shutil.rmtree(ROOT / out, ignore_errors=True)
            shutil.copytree(fresh / out, ROOT / out)
        print(f"generated {', '.join(outputs)}")
