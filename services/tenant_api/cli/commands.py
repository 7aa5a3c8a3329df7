"""Running a parsed command against the API, and what the process exits with."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Iterator

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.tenant_api.cli import output, parsing
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2
from tenantry.tenant.v1.tenant_service_pb2_grpc import TenantServiceStub as Stub

State = tenant_pb2.Tenant.State

# Exit codes (README, "The CLI").
OK = 0
REFUSED = 1  # the API answered with an error, or the run followed ended failed
USAGE = 2  # argparse's own
UNREACHABLE = 3  # no answer from the API: nothing listens, TLS failed, connection lost
INTERRUPTED = 130  # Ctrl-C
PIPE_CLOSED = 141  # the reader went away (`| head`), as for a process SIGPIPE ends

# States in which the last run failed: the commands that follow a run exit 1.
FAILED_STATES = (State.STATE_PROVISION_FAILED, State.STATE_DEPROVISION_FAILED)
RUN_COMMANDS = ("create", "watch", "retry", "cleanup", "delete")


class UsageError(Exception):
    """A bad option found after parsing (a credential file that cannot be read)."""


def _name(tenant_id: str) -> str:
    return tenant_id if tenant_id.startswith("tenants/") else f"tenants/{tenant_id}"


class Printer:
    """Results to stdout, progress to stderr (a bar redrawn in place on a terminal)."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        self._redrawing = False

    def result(self, tenant: tenant_pb2.Tenant) -> None:
        print(output.json_document(tenant) if self.as_json else output.describe(tenant))

    def item(self, line: str) -> None:
        print(line)

    def progress(self, tenant: tenant_pb2.Tenant) -> None:
        line = output.progress(tenant)
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K" + line)
            self._redrawing = True
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def progress_done(self) -> None:
        if self._redrawing:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._redrawing = False


def _read(path: object, option: str) -> bytes:
    try:
        return path.read_bytes()  # type: ignore[attr-defined, no-any-return]
    except OSError as err:
        raise UsageError(f"cannot read {option} {path}: {err.strerror}") from None


def channel_of(args: argparse.Namespace) -> grpc.Channel:
    """A TLS channel with the client certificate and/or bearer token given."""
    if args.plaintext:
        return grpc.insecure_channel(args.address)
    roots = _read(args.ca_file, "--ca-file") if args.ca_file else None
    pair = (
        (_read(args.key_file, "--key-file"), _read(args.cert_file, "--cert-file"))
        if args.cert_file and args.key_file
        else None
    )
    credentials = grpc.ssl_channel_credentials(roots, *(pair or (None, None)))
    if args.token_file:
        token = _read(args.token_file, "--token-file").decode().strip()
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    return grpc.secure_channel(args.address, credentials)


def _connected(channel: grpc.Channel) -> Callable[[], bool]:
    """Whether the channel has ever been READY: a deadline before that is a
    failure to connect, not a slow answer."""
    seen = threading.Event()

    def changed(connectivity: grpc.ChannelConnectivity) -> None:
        if connectivity == grpc.ChannelConnectivity.READY:
            seen.set()

    channel.subscribe(changed, try_to_connect=False)
    return seen.is_set


def watch(stub: Stub, tenant_id: str, printer: Printer, *, lines: bool) -> tenant_pb2.Tenant:
    """Follows the tenant until no run is under way: each update as a JSON
    line on stdout (`lines`), or as the progress bar on stderr."""
    last = tenant_pb2.Tenant()
    try:
        for update in stub.WatchTenant(tenant_service_pb2.WatchTenantRequest(name=_name(tenant_id))):
            if update.heartbeat:
                continue  # nothing changed
            last = update.tenant
            if lines:
                print(output.json_line(update), flush=True)  # a reader sees each update as it comes
            else:
                printer.progress(last)
    finally:
        printer.progress_done()  # whatever follows starts on a line of its own
    return last


def _events(stub: Stub, tenant_id: str, timeout: float | None) -> Iterator[list[tenant_pb2.TenantEvent]]:
    token = ""
    while True:
        request = tenant_service_pb2.ListTenantEventsRequest(parent=_name(tenant_id), page_token=token)
        reply = stub.ListTenantEvents(request, timeout=timeout)
        yield list(reply.events)
        token = reply.next_page_token
        if not token:
            return


def _tenants(stub: Stub, args: argparse.Namespace) -> Iterator[list[tenant_pb2.Tenant]]:
    token = ""
    while True:
        request = tenant_service_pb2.ListTenantsRequest(
            page_size=args.page_size, page_token=token, filter=args.filter, order_by=args.order_by
        )
        reply = stub.ListTenants(request, timeout=args.timeout)
        yield list(reply.tenants)
        token = reply.next_page_token
        if not token:
            return


def _listing(
    pages: Iterator[list[tenant_pb2.Tenant]] | Iterator[list[tenant_pb2.TenantEvent]],
    args: argparse.Namespace,
) -> None:
    """JSON lines as the pages come, or one table once all are in (its columns fit every row)."""
    if args.json:
        for page in pages:
            for item in page:
                print(output.json_line(item))
            sys.stdout.flush()
        return
    items = [item for page in pages for item in page]
    if args.command == "list":
        print(output.tenant_table(items))  # type: ignore[arg-type]
    else:
        print(output.event_table(items))  # type: ignore[arg-type]


def _call(stub: Stub, args: argparse.Namespace) -> tenant_pb2.Tenant | None:
    """The command's one call; the tenant it answers with (None for watch)."""
    name, timeout = _name(getattr(args, "tenant_id", "")), args.timeout
    command = args.command
    if command == "create":
        request = tenant_service_pb2.CreateTenantRequest(
            tenant_id=args.tenant_id,
            tenant=tenant_pb2.Tenant(
                display_name=args.name,
                plan_tier=parsing.TIERS[args.tier],
                domains=args.domain,
                admin=tenant_pb2.AdminContact(
                    email=args.admin_email,
                    given_name=args.admin_given_name,
                    family_name=args.admin_family_name,
                ),
            ),
        )
        return stub.CreateTenant(request, timeout=timeout).tenant
    if command == "get":
        return stub.GetTenant(tenant_service_pb2.GetTenantRequest(name=name), timeout=timeout).tenant
    if command == "delete":
        deletion = tenant_service_pb2.DeleteTenantRequest(
            name=name, hard_delete=args.hard, skip_backup=args.skip_backup
        )
        if args.grace is not None:
            deletion.grace_period.CopyFrom(args.grace)
        return stub.DeleteTenant(deletion, timeout=timeout).tenant
    calls: dict[str, Callable[[], tenant_pb2.Tenant]] = {
        "undelete": lambda: (
            stub.UndeleteTenant(tenant_service_pb2.UndeleteTenantRequest(name=name), timeout=timeout).tenant
        ),
        "suspend": lambda: (
            stub.SuspendTenant(tenant_service_pb2.SuspendTenantRequest(name=name), timeout=timeout).tenant
        ),
        "resume": lambda: (
            stub.ResumeTenant(tenant_service_pb2.ResumeTenantRequest(name=name), timeout=timeout).tenant
        ),
        "cancel": lambda: (
            stub.CancelProvisioning(
                tenant_service_pb2.CancelProvisioningRequest(name=name), timeout=timeout
            ).tenant
        ),
        "retry": lambda: (
            stub.RetryProvisioning(
                tenant_service_pb2.RetryProvisioningRequest(name=name), timeout=timeout
            ).tenant
        ),
        "cleanup": lambda: (
            stub.CleanUpTenant(tenant_service_pb2.CleanUpTenantRequest(name=name), timeout=timeout).tenant
        ),
    }
    return calls[command]() if command in calls else None


def run(args: argparse.Namespace, stub: Stub) -> int:
    """Runs the command; its exit code (an API error raises grpc.RpcError)."""
    printer = Printer(as_json=args.json)
    if args.command == "list":
        _listing(_tenants(stub, args), args)
        return OK
    if args.command == "events":
        _listing(_events(stub, args.tenant_id, args.timeout), args)
        return OK
    tenant = _call(stub, args)
    if args.command == "watch":
        tenant = watch(stub, args.tenant_id, printer, lines=args.json)
        if args.json:
            return REFUSED if tenant.state in FAILED_STATES else OK
    elif getattr(args, "watch", False):
        assert tenant is not None
        printer.progress(tenant)  # where the run stands as the call answered
        tenant = watch(stub, args.tenant_id, printer, lines=False)
    assert tenant is not None
    printer.result(tenant)
    # A clean-up succeeds when nothing is left, though the tenant stays PROVISION_FAILED.
    failed = bool(tenant.leftover_resources) if args.command == "cleanup" else tenant.state in FAILED_STATES
    return REFUSED if failed and args.command in RUN_COMMANDS else OK


def _status(err: grpc.RpcError) -> status_pb2.Status | None:
    try:
        return rpc_status.from_call(err)  # type: ignore[arg-type]
    except ValueError:
        return None  # a status that does not match its call: show the call's code and message


def refusal(err: grpc.RpcError, args: argparse.Namespace, connected: Callable[[], bool]) -> tuple[int, str]:
    """The exit code and the message of a failed call. The server's own
    errors carry an ErrorInfo; UNAVAILABLE without one is the transport's
    (nothing listens, no route, TLS handshake failed, connection lost), and
    so is a deadline that passed before the channel ever connected."""
    code: grpc.StatusCode = err.code()  # type: ignore[attr-defined]
    message: str = err.details() or ""  # type: ignore[attr-defined]
    status = _status(err)
    answered = status is not None and any(
        d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR) for d in status.details
    )
    if not answered and (
        code == grpc.StatusCode.UNAVAILABLE or (code == grpc.StatusCode.DEADLINE_EXCEEDED and not connected())
    ):
        return UNREACHABLE, (
            f"error: cannot reach the API at {args.address}: {message}\n"
            "  (is it running? --address or $TENANTRY_ADDRESS names it)"
        )
    domains = args.domain if args.command == "create" else ()
    return REFUSED, output.explain(code.name, message, status, domains)


def _quiet_stdout() -> None:
    """After the reader of stdout went away: nothing more to write, and
    Python's own flush at exit must not complain either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def execute(args: argparse.Namespace) -> int:
    """Runs the command and turns every way it can end into an exit code."""
    try:
        try:
            channel = channel_of(args)
        except UsageError as err:
            print(f"tenantry: error: {err}", file=sys.stderr)
            return USAGE
        with channel:
            connected = _connected(channel)
            try:
                code = run(args, Stub(channel))
            except grpc.RpcError as err:
                code, message = refusal(err, args, connected)
                sys.stdout.flush()
                print(message, file=sys.stderr)
                return code
            # Flushed here, where a closed pipe is still caught, not at exit.
            sys.stdout.flush()
            return code
    except BrokenPipeError:
        _quiet_stdout()
        return PIPE_CLOSED
    except KeyboardInterrupt:
        if sys.stderr.isatty():
            sys.stderr.write("\n")  # off the line of ^C (and of a progress bar)
        return INTERRUPTED


def main(argv: list[str] | None = None) -> None:
    """The `tenantry` entry point."""
    raise SystemExit(execute(parsing.parse(argv)))
