"""The TypeScript client (clients/ts) against the end-to-end stack: its own
node:test suite (`npm test`: tsc, then `node --test`) with the stack's
address and credentials from `client_env`. Passes only when every expected
test passed: one skipped, todo or missing fails here too."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "ts"
# Written by `npm test` (package.json) next to its spec output on stdout.
TAP = CLIENT / "dist" / "test-results.tap"
EXPECTED = {
    # test/lifecycle.test.ts, against the stack
    "a tenant's lifecycle, called with a client certificate and with a bearer token",
    "ListTenants pages through next_page_token",
    "errors carry ErrorInfo and BadRequest field violations",
    # test/errors.test.ts, without it
    "apiError reads ErrorInfo and BadRequest field violations off the wire",
    "apiError of an error without BadRequest has no field violations",
    "apiError of an error without ErrorInfo has no reason",
}
# A top-level result line of node:test's TAP reporter: `ok 3 - name # SKIP`.
RESULT = re.compile(r"^(not ok|ok) \d+ - (.*?)(?: # (SKIP|TODO)\b.*)?$")
# Inside node:test's own per-test timeouts (at most 300 s, test/lifecycle.test.ts).
NPM_TEST_TIMEOUT = 420


def _npm() -> str:
    npm = shutil.which("npm")
    assert npm is not None, "the TypeScript client's tests need Node.js and npm on PATH"
    return npm


def _run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            args, cwd=CLIENT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as expired:
        shown = "\n".join(str(out) for out in (expired.stdout, expired.stderr) if out)
        pytest.fail(f"{' '.join(args)} did not finish within {timeout}s:\n{shown}")


def results(tap: str) -> dict[str, str]:
    """Each top-level test's outcome: `ok`, `not ok`, `SKIP` or `TODO`."""
    found = {}
    for line in tap.splitlines():
        matched = RESULT.match(line)  # subtests are indented, so never match
        if matched:
            status, name, directive = matched.groups()
            found[name.replace("\\#", "#")] = directive or status
    return found


def test_results_reads_passes_failures_and_directives() -> None:
    tap = "\n".join(
        [
            "TAP version 13",
            "ok 1 - passes",
            "not ok 2 - fails",
            "ok 3 - skipped # SKIP no stack",
            "ok 4 - later # TODO",
            "    ok 1 - a subtest",
            "1..4",
        ]
    )
    assert results(tap) == {"passes": "ok", "fails": "not ok", "skipped": "SKIP", "later": "TODO"}


@pytest.mark.timeout(600)
def test_typescript_client_suite_passes_against_the_stack(client_env: dict[str, str]) -> None:
    npm = _npm()
    env = {**os.environ, **client_env, "NO_COLOR": "1"}
    if not (CLIENT / "node_modules").is_dir():
        installed = _run([npm, "ci", "--no-audit", "--no-fund"], env, timeout=300)
        assert installed.returncode == 0, f"npm ci failed:\n{installed.stdout}\n{installed.stderr}"
    TAP.unlink(missing_ok=True)
    ran = _run([npm, "test"], env, timeout=NPM_TEST_TIMEOUT)
    output = f"exit {ran.returncode}\n--- stdout\n{ran.stdout}\n--- stderr\n{ran.stderr}"
    assert ran.returncode == 0, output
    assert TAP.is_file(), f"npm test wrote no {TAP.name}\n{output}"
    outcomes = results(TAP.read_text())
    assert {name: outcomes.get(name, "missing") for name in EXPECTED} == dict.fromkeys(EXPECTED, "ok"), output
    # A test added to the suite is added here too, so that it cannot be skipped unnoticed.
    assert set(outcomes) == EXPECTED, output
