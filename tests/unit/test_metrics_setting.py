"""TENANTRY_METRICS_ADDRESS as a process reads it: a bad value or a port that
is taken stops the process with a line naming the setting (exit 2), before it
connects to anything; the endpoint serves Tenantry's metrics and the SDK's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from libs.devstack.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(60)


def _orchestrator(address: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TENANTRY_METRICS_ADDRESS": address,
        "TENANTRY_PAYLOAD_ENCRYPTION": "off",
        # Nothing listens there: the process must stop before it gets that far.
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    return subprocess.run(
        [sys.executable, "-m", "orchestrator"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )


def test_a_taken_port_stops_the_process_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        done = _orchestrator(address)
    assert done.returncode == 2, done.stderr
    assert f"TENANTRY_METRICS_ADDRESS: cannot serve metrics on {address}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_value_that_is_no_address_stops_the_process() -> None:
    done = _orchestrator("metrics")
    assert done.returncode == 2
    assert "TENANTRY_METRICS_ADDRESS='metrics' is not host:port" in done.stderr


def test_the_endpoint_serves_what_the_meter_records() -> None:
    address = f"127.0.0.1:{free_port()}"
    script = (
        "import urllib.request\n"
        "from libs import metrics\n"
        "metrics.meter().create_counter(metrics.API_REQUESTS).add(3, {'method': 'GetTenant', 'code': 'OK'})\n"
        f"print(urllib.request.urlopen('http://{address}/metrics', timeout=5).read().decode())\n"
    )
    env = {**os.environ, "TENANTRY_METRICS_ADDRESS": address}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert 'tenantry_api_requests_total{code="OK",method="GetTenant"' in done.stdout
    assert "} 3" in done.stdout
    # Unset, there is no endpoint and the meter records nothing.
    env.pop("TENANTRY_METRICS_ADDRESS")
    quiet = (
        "from libs import metrics\n"
        "assert metrics.runtime() is None\n"
        "metrics.meter().create_counter('x').add(1)\n"
    )
    subprocess.run([sys.executable, "-c", quiet], env=env, cwd=ROOT, timeout=30, check=True)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://{address}/metrics", timeout=2)
