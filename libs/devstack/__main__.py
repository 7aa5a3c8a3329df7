"""`make dev`: the embedded stack and every Tenantry process, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from libs.devstack.stack import Ports, Stack
from libs.devstack.world import StartupError, check_ports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--state-dir", type=Path, default=Path(".state"), help="where all state and logs are kept"
    )
    # The Makefile's GRPC_PORT, TEMPORAL_PORT, ... (README, `make dev`) pass these.
    parser.add_argument("--grpc-port", type=int, default=50051)
    parser.add_argument("--temporal-port", type=int, default=7233)
    parser.add_argument("--ui-port", type=int, default=8233)
    parser.add_argument("--aws-port", type=int, default=5050)
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--keycloak-port", type=int, default=8080)
    parser.add_argument("--codec-port", type=int, default=8234)
    parser.add_argument("--otlp-port", type=int, default=4317, help="Jaeger's OTLP/gRPC receiver")
    parser.add_argument("--jaeger-port", type=int, default=16686, help="Jaeger's query API")
    parser.add_argument(
        "--metrics-port", type=int, default=9464, help="the first process's Prometheus port; each next one +1"
    )
    parser.add_argument("--idp", choices=("local", "keycloak"), default="local", help="identity provider")
    parser.add_argument("--keycloak-mode", choices=("realm", "organization"), default="realm")
    args = parser.parse_args()
    stack = Stack(
        args.state_dir,
        Ports(
            temporal=args.temporal_port,
            temporal_ui=args.ui_port,
            grpc=args.grpc_port,
            moto=args.aws_port,
            smtp=args.smtp_port,
            keycloak=args.keycloak_port,
            codec=args.codec_port,
            otlp=args.otlp_port,
            jaeger=args.jaeger_port,
            metrics=args.metrics_port,
        ),
        idp=args.idp,
        keycloak_mode=args.keycloak_mode,
        # What `make dev` made is there after a restart, in AWS too.
        keep_aws=True,
        traces=True,
        metrics=True,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        check_ports(stack.port_uses())  # before anything starts, and before we say it does
        print(f"starting the embedded stack in {stack.state_dir} (logs in {stack.log_dir}) ...", flush=True)
        stack.start()
    except (StartupError, RuntimeError, TimeoutError) as err:
        # One line that says what to do (a taken port, a state dir made
        # otherwise, a process that did not come up and its log), no traceback.
        print(f"make dev: {err}", file=sys.stderr, flush=True)
        sys.exit(1)
    identity = stack.idp
    if stack.keycloak:
        identity += f" at {stack.keycloak.url} (a {stack.keycloak_mode} per tenant)"
        if "keycloak" in stack.embedded:
            identity += (
                f"\n               admin console {stack.keycloak.url}/admin: user"
                f" {stack.keycloak.admin_username}, password in {stack.keycloak_admin_file}"
            )
    scrape = "\n               ".join(
        f"http://{address}/metrics  {name}" for name, address in stack.metrics_addresses.items()
    )
    # The CLI's default address is the default port's.
    cli = ".venv/bin/tenantry" + ("" if args.grpc_port == 50051 else f" --address {stack.grpc_address}")
    print(
        f"""
Tenantry is running.
  gRPC API     {stack.grpc_address}   (mTLS: {cli} list calls as the developer, admin)
  Credentials  {stack.secrets_dir} (ca.pem, dev-admin.pem, access.toml: who may do what)
  Temporal UI  http://127.0.0.1:{args.ui_port}   (history is encrypted; to read it decoded:)
  Codec server {stack.codec_endpoint}   (sign in once at {stack.codec_endpoint}/login with the
               secret in {stack.codec_sign_in_file}; in the UI's codec settings turn on
               "Include cross-origin credentials")
  Temporal     {stack.temporal_address}
  AWS (moto)   {stack.aws_endpoint}   (kept in {stack.aws_recording}: {stack.aws_replayed} earlier
               requests replayed; `make clean` starts over)
  Traces       {stack.jaeger_endpoint}   (Jaeger; `tenantry get` names a run's trace id:
               {stack.jaeger_endpoint}/api/traces/<trace id>; a source build has no UI pages)
  Identity     {identity}
  Mail         {stack.maildir} (a Maildir: one file per message received)
  Metrics      {scrape}
               (rules and a dashboard: deploy/prometheus, deploy/grafana)
Press Ctrl-C to stop every process.""",
        flush=True,
    )
    while not stop.wait(1):
        for name, process in {**stack.embedded, **stack.services}.items():
            if not process.running:
                print(f"{name} exited; see {process.log_path}. Stopping.", flush=True)
                stop.set()
    print("stopping ...", flush=True)
    stack.stop()
    print("stopped.", flush=True)


if __name__ == "__main__":
    main()
