"""Generates the Python code for every proto under proto/ into libs/gen.

`python -m libs.codegen` regenerates; `python -m libs.codegen --check` fails
when the committed code differs from what the protos generate (CI runs it).
Generated files are never edited by hand.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
GEN_DIR = ROOT / "libs" / "gen"
# Only real gRPC services get gRPC stubs; activity contracts are not served.
GRPC_PACKAGES = ("tenantry/tenant/",)


def generate(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    protos = sorted(p.relative_to(PROTO_DIR).as_posix() for p in PROTO_DIR.rglob("*.proto"))
    well_known = str(resources.files("grpc_tools") / "_proto")
    base = ["grpc_tools.protoc", f"-I{PROTO_DIR}", f"-I{well_known}"]
    outputs = [f"--python_out={out_dir}", f"--pyi_out={out_dir}"]
    if protoc.main([*base, *outputs, *protos]) != 0:
        raise SystemExit("protoc failed")
    grpc_protos = [p for p in protos if p.startswith(GRPC_PACKAGES)]
    if protoc.main([*base, f"--grpc_python_out={out_dir}", *grpc_protos]) != 0:
        raise SystemExit("protoc (grpc) failed")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if libs/gen is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        if args.check:
            stale = _differences(fresh, GEN_DIR) if GEN_DIR.exists() else ["libs/gen is missing"]
            if stale:
                print("generated code is stale; run `make proto`:", *stale, sep="\n  ", file=sys.stderr)
                raise SystemExit(1)
            print("generated code is up to date")
            return
        shutil.rmtree(GEN_DIR, ignore_errors=True)
        shutil.copytree(fresh, GEN_DIR)
        print(f"generated {sum(1 for _ in GEN_DIR.rglob('*.py'))} modules into {GEN_DIR.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
