"""A real Keycloak for `make dev` and the tests: the server distribution from
Maven Central, run in dev mode with the machine's JDK on a loopback port.

The distribution (org.keycloak:keycloak-quarkus-dist, zip) is fetched with
Maven into a cache outside the work tree and unpacked there once. A server
never writes into that copy: it runs from a home of its own under its state
directory, made of symlinks to the distribution's read-only parts (jars,
themes) and copies of what Keycloak writes (the Quarkus build in
lib/quarkus, conf, data). So two servers never share a database, a
transaction log or a build, and deleting the state directory forgets the
server completely.

`start-dev` re-runs the Quarkus build ("augmentation", ~10 s on 2 cores) when
the build in lib/quarkus is not the dev one. The first server to finish it
saves the result next to the distribution, and later homes start from that
copy, which skips the step (measured: ready in ~15 s instead of ~26 s).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from libs import config
from libs.devstack.processes import ManagedProcess

VERSION = "26.4.7"
ARTIFACT = f"org.keycloak:keycloak-quarkus-dist:{VERSION}:zip"
ADMIN_USERNAME = "admin"

# Parts of the distribution that a running server only reads; a home links them.
_SHARED = ("lib/lib", "lib/app", "themes", "providers")
# Parts it may write (the build, its configuration); a home gets a copy.
_COPIED = ("bin", "conf", "lib/quarkus-run.jar", "version.txt")
_BUILD = "lib/quarkus"
# Where the dev build made by a first server is kept, next to the distribution.
_DEV_BUILD = "dev-build"


@dataclass(frozen=True)
class KeycloakServer:
    """How to reach a running Keycloak and its bootstrap admin (master realm)."""

    url: str
    admin_username: str
    admin_password: str
    management_url: str

    @classmethod
    def local(
        cls, *, port: int, management_port: int, admin_password: str, admin_username: str = ADMIN_USERNAME
    ) -> KeycloakServer:
        """The server that `keycloak_server` starts with these settings."""
        return cls(
            url=f"http://127.0.0.1:{port}",
            admin_username=admin_username,
            admin_password=admin_password,
            management_url=f"http://127.0.0.1:{management_port}",
        )

    def env(self) -> dict[str, str]:
        """The settings of the Keycloak identity provider for this server."""
        return {
            "TENANTRY_KEYCLOAK_URL": self.url,
            "TENANTRY_KEYCLOAK_ADMIN_USERNAME": self.admin_username,
            "TENANTRY_KEYCLOAK_ADMIN_PASSWORD": self.admin_password,
        }

    def __repr__(self) -> str:  # the password stays out of logs and test reports
        return f"KeycloakServer(url={self.url!r}, admin_username={self.admin_username!r})"


def cache_dir() -> Path:
    """Where Keycloak's distribution is kept (see libs.config.cache_dir)."""
    return config.cache_dir("keycloak")


def keycloak_distribution() -> Path:
    """The unpacked Keycloak server distribution (its home directory).

    Fetched with Maven (from ~/.m2 when it is there, else Maven Central) and
    unpacked once; concurrent callers each unpack into a temporary directory
    and the first rename wins, so nobody ever sees half a distribution.
    """
    cache = cache_dir()
    home = cache / f"keycloak-{VERSION}-dist"
    if (home / "bin" / "kc.sh").is_file():
        return home
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (`mvn`) is needed to fetch the Keycloak distribution")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".unpack-") as tmp:
        work = Path(tmp)
        fetched = subprocess.run(
            [mvn, "-q", "dependency:copy", f"-Dartifact={ARTIFACT}", f"-DoutputDirectory={work}"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        archive = work / f"keycloak-quarkus-dist-{VERSION}.zip"
        if fetched.returncode != 0 or not archive.is_file():
            raise RuntimeError(f"mvn could not fetch {ARTIFACT}:\n{fetched.stdout}{fetched.stderr}")
        _unzip(archive, work / "unpacked")
        unpacked = work / "unpacked" / f"keycloak-{VERSION}"
        try:
            unpacked.rename(home)
        except OSError:
            if not (home / "bin" / "kc.sh").is_file():
                raise
            # Another process won the race; its copy is as good as ours.
    return home


def _unzip(archive: Path, target: Path) -> None:
    """Extracts keeping the Unix modes (zipfile alone drops kc.sh's execute bit)."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            path = Path(zf.extract(info, target))
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                path.chmod(mode)


def _make_home(distribution: Path, home: Path) -> None:
    """A server home under the state dir: links to the shared parts, copies of the rest."""
    if (home / "bin" / "kc.sh").is_file():
        return  # a restart keeps the home, its build and its data
    if home.exists():
        shutil.rmtree(home)  # left half-made by an interrupted start
    partial = home.with_name(home.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "lib").mkdir(parents=True)
    for part in _SHARED:
        (partial / part).symlink_to(distribution / part, target_is_directory=True)
    for part in _COPIED:
        source = distribution / part
        if source.is_dir():
            shutil.copytree(source, partial / part, symlinks=True)
        else:
            shutil.copy2(source, partial / part)
    dev_build = distribution.parent / f"{distribution.name}-{_DEV_BUILD}"
    shutil.copytree(dev_build if dev_build.is_dir() else distribution / _BUILD, partial / _BUILD)
    partial.rename(home)


def _save_dev_build(distribution: Path, home: Path) -> None:
    """Keeps the dev build a server has made, for the next homes (atomic, first wins)."""
    dev_build = distribution.parent / f"{distribution.name}-{_DEV_BUILD}"
    if dev_build.is_dir():
        return
    with tempfile.TemporaryDirectory(dir=distribution.parent, prefix=".build-") as tmp:
        staged = Path(tmp) / "build"
        shutil.copytree(home / _BUILD, staged)
        try:
            staged.rename(dev_build)
        except OSError:
            if not dev_build.is_dir():
                raise


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def keycloak_server(
    state_dir: Path,
    *,
    port: int,
    management_port: int,
    admin_password: str,
    log_dir: Path,
    admin_username: str = ADMIN_USERNAME,
    truststore: Path | None = None,
) -> ManagedProcess:
    """Keycloak in dev mode on 127.0.0.1:`port`, with its data under `state_dir`.

    Ready when the management interface's /health/ready answers 200. The
    bootstrap admin is created in the master realm on the first start only
    (Keycloak keeps it in the database afterwards). `truststore` (a PEM CA
    file) is trusted besides the JDK's roots for what Keycloak connects to:
    the mail relay's STARTTLS, say.
    """
    distribution = keycloak_distribution()
    state_dir.mkdir(parents=True, exist_ok=True)
    home = state_dir / "home"
    _make_home(distribution, home)
    database = state_dir / "h2" / "keycloakdb"
    argv = [
        str(home / "bin" / "kc.sh"), "start-dev",
        "--http-host", "127.0.0.1",
        "--http-port", str(port),
        "--http-management-port", str(management_port),
        "--health-enabled=true",
        # An explicit H2 file, so the database is the state dir's whatever the home.
        f"--db-url=jdbc:h2:file:{database};NON_KEYWORDS=VALUE",
    ]  # fmt: skip
    if truststore is not None:
        # A runtime option: the dev build above is reused as it is.
        argv.append(f"--truststore-paths={truststore.resolve()}")
    env = {
        **os.environ,
        "KC_BOOTSTRAP_ADMIN_USERNAME": admin_username,
        "KC_BOOTSTRAP_ADMIN_PASSWORD": admin_password,
        # kc.sh's default takes 70% of the machine's memory; a dev server needs far less.
        "JAVA_OPTS_KC_HEAP": os.environ.get("JAVA_OPTS_KC_HEAP", "-Xms64m -Xmx1g"),
    }
    ready_url = f"http://127.0.0.1:{management_port}/health/ready"

    def ready() -> bool:
        if not _http_ok(ready_url):
            return False
        _save_dev_build(distribution, home)
        return True

    return ManagedProcess("keycloak", argv, log_dir=log_dir, env=env, ready=ready, ready_timeout=180)


__all__ = ["KeycloakServer", "cache_dir", "keycloak_distribution", "keycloak_server"]
