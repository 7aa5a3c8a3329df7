"""What the CLI prints: text for people, JSON for programs, errors in terms
of the command line (flags, not API fields)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from tenantry.tenant.v1 import tenant_pb2

State = tenant_pb2.Tenant.State
Outcome = tenant_pb2.Operation.Outcome
DONE = (
    tenant_pb2.STEP_STATUS_COMPLETED,
    tenant_pb2.STEP_STATUS_COMPENSATED,
    tenant_pb2.STEP_STATUS_SKIPPED,
    tenant_pb2.STEP_STATUS_COMPENSATION_FAILED,
)
# The request fields the server names in its errors, as the command line spells them.
FLAGS = {
    "name": "TENANT_ID",
    "parent": "TENANT_ID",
    "tenant_id": "TENANT_ID",
    "tenant.display_name": "--name",
    "tenant.plan_tier": "--tier",
    "tenant.domains": "--domain",
    "tenant.admin.email": "--admin-email",
    "tenant.admin.given_name": "--admin-given-name",
    "tenant.admin.family_name": "--admin-family-name",
    "grace_period": "--grace",
    "hard_delete": "--hard",
    "skip_backup": "--skip-backup",
    "page_size": "--page-size",
    "filter": "--filter",
    "order_by": "--order-by",
}
# Field names inside a message: only the unmistakable ones (dotted or
# snake_case), so that "name" or "filter" in a sentence stays a word.
_FIELD_WORDS = re.compile(
    r"(?<![\w.-])("
    + "|".join(re.escape(f) for f in sorted(FLAGS, key=len, reverse=True) if "." in f or "_" in f)
    + r")(\[\d+\])?(?![\w.])"
)


# -- values ---------------------------------------------------------------------


def when(stamp: timestamp_pb2.Timestamp, *, millis: bool = False) -> str:
    """A timestamp in UTC with its zone: `2026-12-02 13:57:25 UTC`; `-` when unset."""
    if not stamp.seconds and not stamp.nanos:
        return "-"
    moment = stamp.ToDatetime(tzinfo=UTC)
    text = f"{moment:%Y-%m-%d %H:%M:%S}"
    if millis:
        text += f".{moment.microsecond // 1000:03d}"
    return f"{text} UTC"


def _short(value: int, enum: object, prefix: str) -> str:
    try:
        return enum.Name(value).removeprefix(prefix)  # type: ignore[attr-defined, no-any-return]
    except ValueError:
        return str(value)  # a value newer than this CLI


def state(tenant: tenant_pb2.Tenant) -> str:
    return _short(tenant.state, State, "STATE_")


def tier(tenant: tenant_pb2.Tenant) -> str:
    return _short(tenant.plan_tier, tenant_pb2.PlanTier, "PLAN_TIER_").lower()


# -- JSON -----------------------------------------------------------------------


def json_document(message: Message) -> str:
    """One result as one JSON document (proto3 JSON, as `buf curl` prints it)."""
    return json.dumps(json_format.MessageToDict(message), indent=2, ensure_ascii=False)


def json_line(message: Message) -> str:
    """One item of a stream (list, events, watch) as one compact line."""
    return json.dumps(json_format.MessageToDict(message), separators=(",", ":"), ensure_ascii=False)


# -- tenants --------------------------------------------------------------------


def bar(tenant: tenant_pb2.Tenant, width: int = 20) -> str:
    """`[########............] 4/10  create_bucket`: the steps done of the run's plan."""
    done = sum(1 for s in tenant.steps if s.status in DONE)
    filled = round(width * done / len(tenant.steps)) if tenant.steps else 0
    meter = "#" * filled + "." * (width - filled)
    return f"[{meter}] {done}/{len(tenant.steps)}  {','.join(tenant.current_steps) or '-'}"


def progress(tenant: tenant_pb2.Tenant) -> str:
    """`acme  PROVISIONING     [########............] 4/10  create_bucket`"""
    if not tenant.steps:
        return f"{tenant.tenant_id}  {state(tenant)}"
    return f"{tenant.tenant_id}  {state(tenant):<16} {bar(tenant)}"


def _cancelled(tenant: tenant_pb2.Tenant) -> bool:
    operation = tenant.last_operation
    return operation.outcome == Outcome.OUTCOME_CANCELLED or (
        not operation.kind and tenant.failure_reason == "cancelled"
    )


def last_run(operation: tenant_pb2.Operation) -> str:
    """`provision failed at create_bucket: <reason> (Conflict), ended 2026-… UTC`"""
    kind = _short(operation.kind, tenant_pb2.Operation.Kind, "KIND_").lower().replace("_", "-")
    outcome = _short(operation.outcome, Outcome, "OUTCOME_").lower()
    if operation.outcome == Outcome.OUTCOME_CANCELLED:
        during = f" during {operation.failed_step}" if operation.failed_step else ""
        text = f"{kind} cancelled{during}; what it did is undone"
    elif operation.failure_reason:
        at = f" at {operation.failed_step}" if operation.failed_step else ""
        kind_of = f" ({operation.failure_type})" if operation.failure_type else ""
        text = f"{kind} {outcome}{at}: {operation.failure_reason}{kind_of}"
    else:
        text = f"{kind} {outcome}"
    if operation.HasField("end_time"):
        text += f", ended {when(operation.end_time)}"
    elif operation.HasField("start_time"):
        text += f", since {when(operation.start_time)}"
    return text


def describe(tenant: tenant_pb2.Tenant) -> str:
    """A tenant for people: what it is, how it stands, and why it failed."""
    lines = [
        f"{tenant.tenant_id}  {state(tenant)}  {tenant.display_name}",
        f"  tier      {tier(tenant)}",
        f"  domains   {', '.join(tenant.domains) or '-'}",
        f"  admin     {tenant.admin.email or '-'}",
        f"  created   {when(tenant.create_time)}",
        f"  updated   {when(tenant.update_time)}",
    ]
    if _cancelled(tenant):
        during = f" during {tenant.failed_step}" if tenant.failed_step else ""
        lines.append(f"  cancelled provisioning was cancelled{during}; what it did is undone")
    elif tenant.failed_step or tenant.failure_reason:
        lines.append(f"  failed    at {tenant.failed_step or '?'}: {tenant.failure_reason or '?'}")
    lines += [
        f"  left      {r.domain}/{r.kind}  {r.id or '(id unknown)'}  from {r.step}: {r.reason}"
        for r in tenant.leftover_resources
    ]
    if tenant.leftover_resources:
        lines.append(f"            (`tenantry cleanup {tenant.tenant_id}` tries to remove them again)")
    if tenant.last_operation.kind:
        lines.append(f"  last run  {last_run(tenant.last_operation)}")
    if tenant.last_operation.trace_id:
        lines.append(f"  trace     {tenant.last_operation.trace_id} (the last run's, in the trace backend)")
    if tenant.HasField("purge_time"):
        lines.append(
            f"  purge at  {when(tenant.purge_time)} (`tenantry undelete {tenant.tenant_id}` until then)"
        )
    if tenant.steps and tenant.current_steps:
        lines.append(f"  progress  {bar(tenant)}")
    lines += [f"  resource  {r.domain}/{r.kind}  {r.id}" for r in tenant.resources]
    lines += [f"  backup    {b.kind}  {b.uri}  {b.size_bytes} bytes" for b in tenant.backups]
    return "\n".join(lines)


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns aligned to their widest cell, two spaces apart; the last
    column (free text of any width) is not padded."""
    cells = [list(header), *(list(r) for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])), row[-1]]).rstrip()
        for row in cells
    )


def tenant_table(tenants: Iterable[tenant_pb2.Tenant]) -> str:
    return table(
        ("ID", "STATE", "TIER", "CREATED", "UPDATED", "NAME"),
        (
            (t.tenant_id, state(t), tier(t), when(t.create_time), when(t.update_time), t.display_name)
            for t in tenants
        ),
    )


def event_table(events: Iterable[tenant_pb2.TenantEvent]) -> str:
    def what(event: tenant_pb2.TenantEvent) -> str:
        if event.kind == tenant_pb2.TenantEvent.KIND_STATE_CHANGED:
            return _short(event.state, State, "STATE_")
        return event.step or "-"

    return table(
        ("TIME", "EVENT", "STEP/STATE", "ACTOR", "DETAIL"),
        (
            (
                when(e.time, millis=True),
                _short(e.kind, tenant_pb2.TenantEvent.Kind, "KIND_"),
                what(e),
                e.actor or "-",
                e.detail,
            )
            for e in events
        ),
    )


# -- errors ---------------------------------------------------------------------


def flag_of(field: str, domains: Sequence[str] = ()) -> str:
    """An API field path as the command line spells it (`tenant.admin.email` ->
    `--admin-email`; `tenant.domains[1]` -> `--domain <the second one given>`)."""
    match = re.fullmatch(r"(.*?)\[(\d+)\]", field)
    base, index = (match.group(1), int(match.group(2))) if match else (field, None)
    flag = FLAGS.get(base)
    if flag is None:
        return field
    if index is not None:
        return f"{flag} {domains[index]}" if index < len(domains) else f"{flag} #{index + 1}"
    return flag


def in_flags(text: str, domains: Sequence[str] = ()) -> str:
    """A server message with the API fields it names put as flags."""
    return _FIELD_WORDS.sub(lambda m: flag_of(m.group(0), domains), text)


def explain(code: str, message: str, status: status_pb2.Status | None, domains: Sequence[str] = ()) -> str:
    """An error the API returned, for people: the code and message, each bad
    field as its flag, and what ErrorInfo and RetryInfo add."""
    bad, info, retry = (
        error_details_pb2.BadRequest(),
        error_details_pb2.ErrorInfo(),
        error_details_pb2.RetryInfo(),
    )
    violations: list[str] = []
    extra: list[str] = []
    for detail in status.details if status else ():
        if detail.Unpack(bad):
            violations += [
                f"  {flag_of(v.field, domains)}: {in_flags(v.description, domains)}"
                for v in bad.field_violations
            ]
        elif detail.Unpack(info):
            if info.metadata.get("failed_step"):
                failure_type = info.metadata.get("failure_type", "")
                extra.append(
                    f"  {info.reason} at {info.metadata['failed_step']}"
                    + (f" ({failure_type})" if failure_type else "")
                )
            elif info.metadata.get("permission"):
                extra.append(f"  missing permission {info.metadata['permission']}")
        elif detail.Unpack(retry):
            extra.append(f"  retry in {retry.retry_delay.ToTimedelta().total_seconds():g} s or later")
    if violations and code == "INVALID_ARGUMENT":
        # The server's summary lists API fields; the lines below name the flags.
        headline = f"error: {code}: invalid request"
    else:
        headline = f"error: {code}: {in_flags(message, domains)}"
    return "\n".join([headline, *violations, *extra])
