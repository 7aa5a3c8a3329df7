"""The Go client (clients/go) against the whole stack: its own suite, run by
`go test` with the environment of the client_env fixture, and its code
vetted and gofmt'd.

The first run downloads the client's modules from the Go module proxy into
the default module cache; later runs build from the caches."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from libs.devstack.stack import Stack

pytestmark = pytest.mark.e2e
GO_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "go"
# Every test of the suite: each must print `--- PASS`, so one that was skipped
# (or renamed away) fails here instead of passing unnoticed.
EXPECTED_TESTS = (
    # Against the stack (lifecycle_test.go).
    "TestLifecycle",
    "TestListTenantsPages",
    "TestBadRequestNamesEveryWrongField",
    "TestTokenTakesPrecedenceOverTheCertificate",
    # Without it (errors_test.go).
    "TestDetailsReadsErrorInfoAndEveryFieldViolation",
    "TestDetailsReadsMetadataAndRetryInfo",
    "TestDetailsOfErrorsWithoutThem",
    "TestTokenIsABearerHeaderOnlyOverTLS",
    "TestNewClientRefusesIncompleteConfig",
)
# The caller's flags kept; the later -mod wins.
GOFLAGS = f"{os.environ.get('GOFLAGS', '')} -mod=readonly".strip()


def go(*args: str, env: dict[str, str] | None = None, timeout: float) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("go")
    assert binary is not None, "the Go client's tests need the Go toolchain (go) on PATH"
    return subprocess.run(
        [binary, *args],
        cwd=GO_CLIENT,
        # go.mod and go.sum as committed, with the Go that is installed; the default caches.
        env={**os.environ, "GOFLAGS": GOFLAGS, "GOTOOLCHAIN": "local", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.timeout(300)
def test_go_client_is_tidy_vetted_and_formatted() -> None:
    # go.mod requires what the code (generated code included) imports, no more.
    tidy = go("mod", "tidy", "-diff", timeout=240)
    assert tidy.returncode == 0, f"clients/go needs `go mod tidy`:\n{tidy.stdout}{tidy.stderr}"
    vet = go("vet", "./...", timeout=240)
    assert vet.returncode == 0, vet.stdout + vet.stderr
    goroot = go("env", "GOROOT", timeout=30).stdout.strip()
    gofmt = subprocess.run(
        [str(Path(goroot) / "bin" / "gofmt"), "-l", "."],
        cwd=GO_CLIENT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert gofmt.returncode == 0, gofmt.stderr
    assert gofmt.stdout == "", f"not gofmt'd (run gofmt -w in clients/go):\n{gofmt.stdout}"


# go test's own -timeout (10 min) ends a hung suite with every goroutine's
# stack, before this test's timeout does.
@pytest.mark.timeout(900)
def test_go_client_passes_its_suite_against_the_stack(stack: Stack, client_env: dict[str, str]) -> None:
    result = go("test", "-count=1", "-v", "-timeout", "10m", "./...", env=client_env, timeout=780)
    output = result.stdout + result.stderr
    print(output)  # pytest shows it for a failure (and with -rP)
    assert result.returncode == 0, "go test failed: its output is above"
    passed = set(re.findall(r"^\s*--- PASS: (\S+) ", output, re.M))
    missing = [name for name in EXPECTED_TESTS if name not in passed]
    assert not missing, f"these tests did not pass (skipped or not run): {missing}"
