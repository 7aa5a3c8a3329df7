"""The command line: global options accepted before or after the subcommand."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from google.protobuf import duration_pb2

from tenantry.tenant.v1 import tenant_pb2

# Where `make dev` keeps the developer's credentials (run from the repository).
DEV_SECRETS = Path(".state") / "secrets"
TIERS = {
    "pooled": tenant_pb2.PLAN_TIER_POOLED,
    "bridge": tenant_pb2.PLAN_TIER_BRIDGE,
    "silo": tenant_pb2.PLAN_TIER_SILO,
}
DESCRIPTION = """A command line over the TenantService gRPC API.

Options before or after the subcommand mean the same. Results go to stdout
(with --json: one JSON document per result, JSON lines for list, events and
watch); progress and errors go to stderr. Exit codes: 0 success, 1 the API
refused the call or the run failed, 2 bad usage, 3 the API cannot be
reached, 130 interrupted, 141 the reader closed the pipe."""


def duration(text: str) -> duration_pb2.Duration:
    """`90s`, `15m`, `2h`, `30d` as a Duration."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise argparse.ArgumentTypeError("a number followed by s, m, h or d (for example 30d)")
    return duration_pb2.Duration(seconds=int(text[:-1]) * units[text[-1]])


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError("a number of seconds above 0")
    return value


def _credential(variable: str, dev_file: str) -> Path | None:
    named = os.environ.get(variable)
    if named:
        return Path(named)
    dev = DEV_SECRETS / dev_file
    return dev if dev.exists() else None


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options of every call. The top parser holds the defaults; each
    subcommand takes the same options without defaults (SUPPRESS), so one
    given after the subcommand overrides and one left out keeps the top's."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("connection and output (before or after the subcommand)")
    group.add_argument(
        "--address",
        default=default(os.environ.get("TENANTRY_ADDRESS", "127.0.0.1:50051")),
        help="host:port of the API ($TENANTRY_ADDRESS; 127.0.0.1:50051)",
    )
    # Credentials: the dev stack's (in .state/secrets) unless the environment names others.
    group.add_argument(
        "--ca-file",
        type=Path,
        default=default(_credential("TENANTRY_CA_FILE", "ca.pem")),
        help="CA of the server's certificate ($TENANTRY_CA_FILE)",
    )
    group.add_argument(
        "--cert-file",
        type=Path,
        default=default(_credential("TENANTRY_CLIENT_CERT_FILE", "dev-admin.pem")),
        help="client certificate ($TENANTRY_CLIENT_CERT_FILE)",
    )
    group.add_argument(
        "--key-file",
        type=Path,
        default=default(_credential("TENANTRY_CLIENT_KEY_FILE", "dev-admin-key.pem")),
        help="its key ($TENANTRY_CLIENT_KEY_FILE)",
    )
    group.add_argument(
        "--token-file",
        type=Path,
        default=default(os.environ.get("TENANTRY_TOKEN_FILE")),
        help="an OIDC access token ($TENANTRY_TOKEN_FILE)",
    )
    group.add_argument(
        "--plaintext",
        action="store_true",
        default=default(False),
        help="no TLS (a server run with TENANTRY_AUTH=none)",
    )
    group.add_argument(
        "--timeout",
        type=_seconds,
        default=default(None),
        help="seconds each call may take (watching is not limited)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="JSON on stdout: an object per result, JSON lines for list, events and watch",
    )


def _watch_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--watch", action="store_true", help="follow progress (on stderr) until the run settles"
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="tenantry", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _global_options(top, defaults=True)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, *, tenant: bool = True) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=text, description=text)
        _global_options(cmd, defaults=False)
        if tenant:
            cmd.add_argument("tenant_id", metavar="TENANT_ID")
        return cmd

    create = command("create", "provision a tenant")
    create.add_argument("--name", required=True, help="display name")
    create.add_argument("--tier", choices=sorted(TIERS), default="pooled")
    create.add_argument("--domain", action="append", default=[], help="repeat for several")
    create.add_argument("--admin-email", required=True)
    create.add_argument("--admin-given-name", default="")
    create.add_argument("--admin-family-name", default="")
    _watch_option(create)
    command("get", "show a tenant")
    command("watch", "follow a tenant's progress until no run is under way")
    delete = command("delete", "deprovision, after a grace period (30 days unless --grace or --hard)")
    delete.add_argument("--grace", type=duration, help="grace period, for example 7d or 90s")
    delete.add_argument("--hard", action="store_true", help="no grace period (a backup is still taken)")
    delete.add_argument("--skip-backup", action="store_true", help="remove without a backup")
    _watch_option(delete)
    command("undelete", "restore a tenant whose deletion is in its grace period")
    command("suspend", "disable sign-in and scale the tenant's deployment to zero")
    command("resume", "undo a suspend")
    _watch_option(command("cancel", "cancel the provisioning run under way (what it did is undone)"))
    _watch_option(command("retry", "provision a PROVISION_FAILED tenant again"))
    command("cleanup", "remove again what a failed provisioning left behind")
    command("events", "show the tenant's audit log, oldest first")
    listing = command("list", "list tenants", tenant=False)
    listing.add_argument("--page-size", type=int, default=100, help="tenants per call (up to 1000)")
    listing.add_argument(
        "--filter",
        default="",
        help="for example 'state = ACTIVE AND create_time >= \"2026-01-01T00:00:00Z\"'",
    )
    listing.add_argument("--order-by", default="", help="tenant_id, create_time or update_time, then desc")
    return top


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    return parser().parse_args(argv)
