"""The processes' log lines (libs/logs.py), read from a real child process's
stderr: JSON lines with the fields, text on request, and no email from an
HTTP client's request logging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# A process as libs.temporal.main sets one up, that logs as the workers do.
SCRIPT = textwrap.dedent(
    """
    import http.server, logging, threading, warnings
    import httpx
    from libs import logs

    logs.configure("probe")
    log = logging.getLogger("services.probe")
    log.info("plain line")
    with logs.bind(rpc="GetTenant", tenant_id="acme"):
        log.warning("inside a call", extra={"event": "rpc", "duration_ms": 1.5})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    warnings.warn("a library complains")

    class Broken:
        def __del__(self):
            raise RuntimeError("in a finalizer")

    Broken()

    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # What python-keycloak's async client does to find the admin by email.
    httpx.get(f"http://127.0.0.1:{server.server_port}/users", params={"email": "ada.lovelace@example.org"})
    server.shutdown()
    log.info("done")
    """
)


def _run(env: dict[str, str] | None = None) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("TENANTRY_")}, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()


@pytest.mark.timeout(90)
def test_a_process_logs_json_lines_with_its_fields_and_no_email_from_http_requests() -> None:
    lines = _run({"TENANTRY_LOG_LEVEL": "DEBUG"})
    parsed = [json.loads(line) for line in lines]  # every line, or this raises
    assert all({"time", "level", "service", "logger", "message"} <= set(p) for p in parsed), parsed
    assert {p["service"] for p in parsed} == {"probe"}
    by_message = {p["message"]: p for p in parsed}
    assert by_message["plain line"]["level"] == "INFO"
    assert by_message["plain line"]["time"].endswith("Z")
    inside = by_message["inside a call"]
    assert (inside["rpc"], inside["tenant_id"], inside["event"], inside["duration_ms"]) == (
        "GetTenant",
        "acme",
        "rpc",
        1.5,
    )
    assert "tenant_id" not in by_message["done"]  # the call's fields end with it
    assert "ValueError: boom" in by_message["it failed"]["exception"]
    assert any("a library complains" in p["message"] for p in parsed)
    assert any("RuntimeError: in a finalizer" in p.get("exception", "") for p in parsed)
    # Even at DEBUG the HTTP client's request lines (URLs with the email) stay out.
    assert not [line for line in lines if "ada.lovelace" in line or "ada.lovelace%40" in line]


@pytest.mark.timeout(90)
def test_text_lines_on_request() -> None:
    lines = _run({"TENANTRY_LOG_FORMAT": "text"})
    [inside] = [line for line in lines if "inside a call" in line]
    assert " WARNING probe services.probe: inside a call [" in inside
    assert "rpc=GetTenant" in inside and "tenant_id=acme" in inside
    with pytest.raises(ValueError):
        json.loads(inside)


TRACED = textwrap.dedent(
    """
    import logging
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from libs import logs

    logs.configure("probe")
    trace.set_tracer_provider(TracerProvider())
    log = logging.getLogger("services.probe")
    log.info("outside")
    with trace.get_tracer("probe").start_as_current_span("step") as span:
        ids = span.get_span_context()
        log.info("inside %032x %016x", ids.trace_id, ids.span_id)
    """
)


@pytest.mark.timeout(90)
def test_a_line_inside_a_span_carries_its_trace_and_span_ids() -> None:
    pytest.importorskip("opentelemetry.sdk.trace", reason="the traces' SDK is not installed")
    done = subprocess.run(
        [sys.executable, "-c", TRACED],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith(("TENANTRY_", "OTEL_"))},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    outside, inside = (json.loads(line) for line in done.stderr.splitlines())
    assert "trace_id" not in outside and "span_id" not in outside
    _, trace_id, span_id = inside["message"].split()
    assert (inside["trace_id"], inside["span_id"]) == (trace_id, span_id)
