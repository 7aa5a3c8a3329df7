"""`tenantry`: a command line over the TenantService gRPC API."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
from google.protobuf import duration_pb2, json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc

State = tenant_pb2.Tenant.State
DONE = (
    tenant_pb2.STEP_STATUS_COMPLETED,
    tenant_pb2.STEP_STATUS_COMPENSATED,
    tenant_pb2.STEP_STATUS_SKIPPED,
    tenant_pb2.STEP_STATUS_COMPENSATION_FAILED,
)
# States in which the last run failed: `create`, `watch`, `retry` and `delete --watch` exit 1.
FAILED_STATES = (State.STATE_PROVISION_FAILED, State.STATE_DEPROVISION_FAILED)
# Where `make dev` keeps the developer's credentials (run from the repository).
DEV_SECRETS = Path(".state") / "secrets"
TIERS = {
    "pooled": tenant_pb2.PLAN_TIER_POOLED,
    "bridge": tenant_pb2.PLAN_TIER_BRIDGE,
    "silo": tenant_pb2.PLAN_TIER_SILO,
}


def _name(tenant_id: str) -> str:
    return tenant_id if tenant_id.startswith("tenants/") else f"tenants/{tenant_id}"


def _short(value: int, enum: object, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix)  # type: ignore[attr-defined, no-any-return]


def describe(tenant: tenant_pb2.Tenant) -> str:
    lines = [
        f"{tenant.tenant_id}  {_short(tenant.state, State, 'STATE_')}  {tenant.display_name}",
        f"  tier      {_short(tenant.plan_tier, tenant_pb2.PlanTier, 'PLAN_TIER_')}",
        f"  domains   {', '.join(tenant.domains) or '-'}",
        f"  admin     {tenant.admin.email}",
    ]
    if tenant.failed_step or tenant.failure_reason:
        lines.append(f"  failed    at {tenant.failed_step or '?'}: {tenant.failure_reason}")
    lines += [
        f"  left      {r.domain}/{r.kind}  {r.id or '(id unknown)'}  from {r.step}: {r.reason}"
        for r in tenant.leftover_resources
    ]
    if tenant.leftover_resources:
        lines.append(f"            (`tenantry cleanup {tenant.tenant_id}` tries to remove them again)")
    operation = tenant.last_operation
    if operation.kind:
        kind = _short(operation.kind, tenant_pb2.Operation.Kind, "KIND_").lower()
        outcome = _short(operation.outcome, tenant_pb2.Operation.Outcome, "OUTCOME_").lower()
        why = f" at {operation.failed_step}: {operation.failure_reason}" if operation.failure_reason else ""
        lines.append(f"  last run  {kind} {outcome}{why}")
    if tenant.HasField("purge_time"):
        lines.append(
            f"  purge at  {tenant.purge_time.ToDatetime():%Y-%m-%d %H:%M:%S} UTC (undelete until then)"
        )
    lines += [f"  resource  {r.domain}/{r.kind}  {r.id}" for r in tenant.resources]
    lines += [f"  backup    {b.kind}  {b.uri}  {b.size_bytes} bytes" for b in tenant.backups]
    return "\n".join(lines)


def event_line(event: tenant_pb2.TenantEvent) -> str:
    kind = _short(event.kind, tenant_pb2.TenantEvent.Kind, "KIND_")
    what = (
        _short(event.state, State, "STATE_")
        if event.kind == tenant_pb2.TenantEvent.KIND_STATE_CHANGED
        else event.step
    )
    detail = f"  {event.detail}" if event.detail else ""
    return f"{event.time.ToDatetime():%Y-%m-%d %H:%M:%S.%f}  {kind:<16} {what:<24} {event.actor}{detail}"


def duration(text: str) -> duration_pb2.Duration:
    """`90s`, `15m`, `2h`, `30d` as a Duration."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise argparse.ArgumentTypeError("a number followed by s, m, h or d (for example 30d)")
    return duration_pb2.Duration(seconds=int(text[:-1]) * units[text[-1]])


def progress_line(tenant: tenant_pb2.Tenant, width: int = 20) -> str:
    state = _short(tenant.state, State, "STATE_")
    if not tenant.steps:
        return f"{tenant.tenant_id}  {state}"
    done = sum(1 for s in tenant.steps if s.status in DONE)
    filled = round(width * done / len(tenant.steps))
    bar = "#" * filled + "." * (width - filled)
    return f"{tenant.tenant_id}  {state:<16} [{bar}] {done}/{len(tenant.steps)}  {tenant.current_step or '-'}"


def watch(stub: tenant_service_pb2_grpc.TenantServiceStub, tenant_id: str) -> tenant_pb2.Tenant:
    last = tenant_pb2.Tenant()
    tty = sys.stdout.isatty()
    for update in stub.WatchTenant(tenant_service_pb2.WatchTenantRequest(name=_name(tenant_id))):
        last = update.tenant
        if update.heartbeat:
            continue  # nothing changed
        print(("\r\033[K" if tty else "") + progress_line(last), end="" if tty else "\n", flush=True)
    if tty:
        print()
    return last


def _events(
    stub: tenant_service_pb2_grpc.TenantServiceStub, tenant_id: str
) -> Iterator[tenant_pb2.TenantEvent]:
    token = ""
    while True:
        request = tenant_service_pb2.ListTenantEventsRequest(parent=_name(tenant_id), page_token=token)
        reply = stub.ListTenantEvents(request)
        yield from reply.events
        token = reply.next_page_token
        if not token:
            return


def _pages(stub: tenant_service_pb2_grpc.TenantServiceStub, page_size: int) -> Iterator[tenant_pb2.Tenant]:
    token = ""
    while True:
        reply = stub.ListTenants(tenant_service_pb2.ListTenantsRequest(page_size=page_size, page_token=token))
        yield from reply.tenants
        token = reply.next_page_token
        if not token:
            return


def explain(err: grpc.RpcError) -> str:
    lines = [f"error: {err.code().name}: {err.details()}"]  # type: ignore[attr-defined]
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for detail in status.details if status else ():
        bad, info = error_details_pb2.BadRequest(), error_details_pb2.ErrorInfo()
        if detail.Unpack(bad):
            lines += [f"  {v.field}: {v.description}" for v in bad.field_violations]
        elif detail.Unpack(info) and info.metadata.get("failed_step"):
            lines.append(
                f"  {info.reason} at {info.metadata['failed_step']} ({info.metadata.get('failure_type', '')})"
            )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tenantry", description=__doc__)
    top.add_argument("--address", default=os.environ.get("TENANTRY_ADDRESS", "127.0.0.1:50051"))
    # Credentials: the dev stack's (in .state/secrets) unless the environment names others.
    top.add_argument("--ca-file", type=Path, default=_credential("TENANTRY_CA_FILE", "ca.pem"))
    top.add_argument(
        "--cert-file", type=Path, default=_credential("TENANTRY_CLIENT_CERT_FILE", "dev-admin.pem")
    )
    top.add_argument(
        "--key-file", type=Path, default=_credential("TENANTRY_CLIENT_KEY_FILE", "dev-admin-key.pem")
    )
    top.add_argument(
        "--token-file", type=Path, default=os.environ.get("TENANTRY_TOKEN_FILE"), help="an OIDC access token"
    )
    top.add_argument("--plaintext", action="store_true", help="no TLS (a server run with TENANTRY_AUTH=none)")
    top.add_argument("--json", action="store_true", help="print tenants as JSON")
    sub = top.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="provision a tenant")
    create.add_argument("tenant_id")
    create.add_argument("--name", required=True, help="display name")
    create.add_argument("--tier", choices=sorted(TIERS), default="pooled")
    create.add_argument("--domain", action="append", default=[], help="repeat for several")
    create.add_argument("--admin-email", required=True)
    create.add_argument("--admin-given-name", default="")
    create.add_argument("--admin-family-name", default="")
    create.add_argument("--watch", action="store_true", help="follow progress until settled")
    for verb, text in (
        ("get", "show a tenant"),
        ("watch", "follow a tenant's progress"),
        ("delete", "deprovision, after a grace period (30 days unless --grace or --hard)"),
        ("undelete", "restore a tenant whose deletion is in its grace period"),
        ("suspend", "disable sign-in and scale the tenant's deployment to zero"),
        ("resume", "undo a suspend"),
        ("cancel", "cancel the provisioning run under way (what it did is undone)"),
        ("retry", "provision a PROVISION_FAILED tenant again"),
        ("cleanup", "remove again what a failed provisioning left behind"),
        ("events", "show the tenant's audit log"),
    ):
        cmd = sub.add_parser(verb, help=text)
        cmd.add_argument("tenant_id")
        if verb in ("delete", "cancel", "retry"):
            cmd.add_argument("--watch", action="store_true", help="follow progress until settled")
        if verb == "delete":
            cmd.add_argument("--grace", type=duration, help="grace period, for example 7d or 90s")
            cmd.add_argument("--hard", action="store_true", help="no grace period (a backup is still taken)")
            cmd.add_argument("--skip-backup", action="store_true", help="remove without a backup")
    listing = sub.add_parser("list", help="list tenants")
    listing.add_argument("--page-size", type=int, default=100)
    return top


def _credential(variable: str, dev_file: str) -> Path | None:
    named = os.environ.get(variable)
    if named:
        return Path(named)
    dev = DEV_SECRETS / dev_file
    return dev if dev.exists() else None


def channel_of(args: argparse.Namespace) -> grpc.Channel:
    """A TLS channel with the client certificate and/or bearer token given."""
    if args.plaintext:
        return grpc.insecure_channel(args.address)
    roots = args.ca_file.read_bytes() if args.ca_file else None
    pair = (
        (args.key_file.read_bytes(), args.cert_file.read_bytes())
        if args.cert_file and args.key_file
        else None
    )
    credentials = grpc.ssl_channel_credentials(roots, *(pair or (None, None)))
    if args.token_file:
        token = args.token_file.read_text().strip()
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    return grpc.secure_channel(args.address, credentials)


def run(args: argparse.Namespace) -> int:
    with channel_of(args) as channel:
        stub = tenant_service_pb2_grpc.TenantServiceStub(channel)
        show = (
            (lambda t: print(json_format.MessageToJson(t))) if args.json else (lambda t: print(describe(t)))
        )
        tenant: tenant_pb2.Tenant | None = None
        if args.command == "create":
            request = tenant_service_pb2.CreateTenantRequest(
                tenant_id=args.tenant_id,
                tenant=tenant_pb2.Tenant(
                    display_name=args.name,
                    plan_tier=TIERS[args.tier],
                    domains=args.domain,
                    admin=tenant_pb2.AdminContact(
                        email=args.admin_email,
                        given_name=args.admin_given_name,
                        family_name=args.admin_family_name,
                    ),
                ),
            )
            tenant = stub.CreateTenant(request).tenant
        elif args.command == "get":
            tenant = stub.GetTenant(tenant_service_pb2.GetTenantRequest(name=_name(args.tenant_id))).tenant
        elif args.command == "delete":
            deletion = tenant_service_pb2.DeleteTenantRequest(
                name=_name(args.tenant_id), hard_delete=args.hard, skip_backup=args.skip_backup
            )
            if args.grace is not None:
                deletion.grace_period.CopyFrom(args.grace)
            tenant = stub.DeleteTenant(deletion).tenant
        elif args.command == "undelete":
            tenant = stub.UndeleteTenant(
                tenant_service_pb2.UndeleteTenantRequest(name=_name(args.tenant_id))
            ).tenant
        elif args.command == "suspend":
            tenant = stub.SuspendTenant(
                tenant_service_pb2.SuspendTenantRequest(name=_name(args.tenant_id))
            ).tenant
        elif args.command == "resume":
            tenant = stub.ResumeTenant(
                tenant_service_pb2.ResumeTenantRequest(name=_name(args.tenant_id))
            ).tenant
        elif args.command == "events":
            for event in _events(stub, args.tenant_id):
                print(json_format.MessageToJson(event) if args.json else event_line(event))
            return 0
        elif args.command == "cancel":
            request_cancel = tenant_service_pb2.CancelProvisioningRequest(name=_name(args.tenant_id))
            tenant = stub.CancelProvisioning(request_cancel).tenant
        elif args.command == "retry":
            request_retry = tenant_service_pb2.RetryProvisioningRequest(name=_name(args.tenant_id))
            tenant = stub.RetryProvisioning(request_retry).tenant
        elif args.command == "cleanup":
            request_cleanup = tenant_service_pb2.CleanUpTenantRequest(name=_name(args.tenant_id))
            tenant = stub.CleanUpTenant(request_cleanup).tenant
        elif args.command == "list":
            for listed in _pages(stub, args.page_size):
                print(json_format.MessageToJson(listed) if args.json else progress_line(listed))
            return 0
        if args.command == "watch" or getattr(args, "watch", False):
            tenant = watch(stub, args.tenant_id)
        if tenant is not None:
            show(tenant)
            failed = tenant.state in FAILED_STATES or (
                args.command == "cleanup" and bool(tenant.leftover_resources)
            )
            return 1 if failed and args.command in ("create", "watch", "retry", "cleanup", "delete") else 0
    return 0


def main() -> None:
    args = parser().parse_args()
    try:
        raise SystemExit(run(args))
    except grpc.RpcError as err:
        print(explain(err), file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
