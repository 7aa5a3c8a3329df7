"""The `tenantry` CLI without a server: parsing, what it prints, its errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from google.protobuf import timestamp_pb2
from google.rpc import status_pb2

from services.tenant_api import errors
from services.tenant_api.cli import output, parsing
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2

State = tenant_pb2.Tenant.State
Outcome = tenant_pb2.Operation.Outcome
# 2026-12-02 13:57:25 UTC
T0 = 1796219845


def stamp(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def status_of(error: errors.ApiError) -> status_pb2.Status:
    """The google.rpc.Status the server sends for `error`, as the client reads it."""
    trailers = dict(error.to_status().trailing_metadata)
    return status_pb2.Status.FromString(trailers["grpc-status-details-bin"])


def failed_tenant() -> tenant_pb2.Tenant:
    tenant = tenant_pb2.Tenant(
        tenant_id="acme",
        display_name="Acme Corp",
        plan_tier=tenant_pb2.PLAN_TIER_BRIDGE,
        state=State.STATE_PROVISION_FAILED,
        domains=["app.acme.example.com"],
        admin=tenant_pb2.AdminContact(email="ada@acme.example.com"),
        failed_step="create_bucket",
        failure_reason="injected failure in CreateBucket",
        create_time=stamp(T0),
        update_time=stamp(T0 + 65),
        leftover_resources=[
            tenant_pb2.LeftoverResource(
                step="create_realm", kind="idp_realm", id="tenant-acme", domain="idp", reason="gone away"
            )
        ],
    )
    operation = tenant.last_operation
    operation.kind = tenant_pb2.Operation.KIND_PROVISION
    operation.outcome = Outcome.OUTCOME_FAILED
    operation.failed_step, operation.failure_reason = "create_bucket", "injected failure in CreateBucket"
    operation.failure_type = "Conflict"
    operation.end_time.CopyFrom(stamp(T0 + 65))
    return tenant


# -- parsing --------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--plaintext", "--address", "api:1", "get", "acme"],
        ["get", "acme", "--json", "--plaintext", "--address", "api:1"],
        ["get", "--json", "acme", "--address=api:1", "--plaintext"],
        ["--json", "get", "acme", "--plaintext", "--address", "api:1"],
    ],
)
def test_global_options_mean_the_same_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = parsing.parse(argv)
    assert (args.command, args.tenant_id, args.json, args.plaintext, args.address) == (
        "get",
        "acme",
        True,
        True,
        "api:1",
    )


def test_an_option_left_out_after_the_subcommand_keeps_the_default_or_the_earlier_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TENANTRY_ADDRESS", "from-env:9")
    monkeypatch.setenv("TENANTRY_CA_FILE", "/etc/ca.pem")
    args = parsing.parse(["list", "--page-size", "5"])
    assert (args.address, str(args.ca_file), args.json, args.timeout) == (
        "from-env:9",
        "/etc/ca.pem",
        False,
        None,
    )
    assert parsing.parse(["--address", "first:1", "list"]).address == "first:1"
    # Given twice: the one after the subcommand wins.
    assert parsing.parse(["--address", "first:1", "list", "--address", "second:2"]).address == "second:2"
    delete = parsing.parse(["delete", "acme", "--timeout", "2.5", "--grace", "7d", "--json"])
    assert (delete.timeout, delete.grace.seconds, delete.json, delete.hard) == (2.5, 7 * 86400, True, False)


@pytest.mark.parametrize(
    "argv",
    [
        ["get"],  # no tenant id
        ["get", "acme", "--jsn"],
        ["delete", "acme", "--grace", "7 days"],
        ["list", "--timeout", "0"],
        ["create", "acme", "--name", "A"],  # no --admin-email
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parsing.parse(argv)
    assert exited.value.code == 2
    assert "usage: tenantry" in capsys.readouterr().err


# -- values and text --------------------------------------------------------------


def test_times_are_utc_and_say_so() -> None:
    assert output.when(stamp(T0)) == "2026-12-02 13:57:25 UTC"
    assert output.when(stamp(T0, 123_456_789), millis=True) == "2026-12-02 13:57:25.123 UTC"
    assert output.when(timestamp_pb2.Timestamp()) == "-"


def test_get_shows_state_tier_times_the_failure_and_what_is_left() -> None:
    text = output.describe(failed_tenant())
    lines = text.splitlines()
    assert lines[0] == "acme  PROVISION_FAILED  Acme Corp"
    assert "  tier      bridge" in lines
    assert "  created   2026-12-02 13:57:25 UTC" in lines
    assert "  updated   2026-12-02 13:58:30 UTC" in lines
    assert "  failed    at create_bucket: injected failure in CreateBucket" in lines
    assert "  left      idp/idp_realm  tenant-acme  from create_realm: gone away" in lines
    assert (
        "  last run  provision failed at create_bucket: injected failure in CreateBucket (Conflict),"
        " ended 2026-12-02 13:58:30 UTC"
    ) in lines


def test_get_shows_the_trace_of_the_last_run_when_it_was_traced() -> None:
    tenant = failed_tenant()
    assert "trace" not in output.describe(tenant)
    tenant.last_operation.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    lines = output.describe(tenant).splitlines()
    assert "  trace     4bf92f3577b34da6a3ce929d0e0e4736 (the last run's, in the trace backend)" in lines


def test_a_cancelled_run_says_it_was_cancelled() -> None:
    tenant = failed_tenant()
    tenant.failure_reason = tenant.last_operation.failure_reason = "cancelled"
    tenant.failed_step = tenant.last_operation.failed_step = ""
    tenant.last_operation.outcome = Outcome.OUTCOME_CANCELLED
    text = output.describe(tenant)
    assert "  cancelled provisioning was cancelled; what it did is undone" in text.splitlines()
    assert "provision cancelled; what it did is undone, ended 2026-12-02 13:58:30 UTC" in text
    assert "failed at" not in text and "at :" not in text
    tenant.failed_step = tenant.last_operation.failed_step = "create_bucket"
    assert "cancelled during create_bucket" in output.describe(tenant)


def test_get_shows_the_purge_time_and_how_far_a_run_is() -> None:
    tenant = tenant_pb2.Tenant(
        tenant_id="acme",
        state=State.STATE_DEPROVISIONING,
        plan_tier=tenant_pb2.PLAN_TIER_POOLED,
        purge_time=stamp(T0 + 3600),
        current_steps=["grace_period"],
        steps=[
            tenant_pb2.StepProgress(step="read_record", status=tenant_pb2.STEP_STATUS_COMPLETED),
            tenant_pb2.StepProgress(step="grace_period", status=tenant_pb2.STEP_STATUS_RUNNING),
            tenant_pb2.StepProgress(step="drop_schema", status=tenant_pb2.STEP_STATUS_PENDING),
            tenant_pb2.StepProgress(step="delete_realm", status=tenant_pb2.STEP_STATUS_PENDING),
        ],
    )
    lines = output.describe(tenant).splitlines()
    assert "  purge at  2026-12-02 14:57:25 UTC (`tenantry undelete acme` until then)" in lines
    assert "  progress  [#####...............] 1/4  grace_period" in lines
    assert output.progress(tenant) == "acme  DEPROVISIONING   [#####...............] 1/4  grace_period"


def test_list_is_an_aligned_table_with_a_header() -> None:
    tenants = [
        failed_tenant(),
        tenant_pb2.Tenant(
            tenant_id="a-much-longer-tenant-id",
            display_name="Ünïcode GmbH",
            state=State.STATE_ACTIVE,
            plan_tier=tenant_pb2.PLAN_TIER_SILO,
            create_time=stamp(T0 - 86400),
        ),
    ]
    lines = output.tenant_table(tenants).splitlines()
    assert lines[0].split() == ["ID", "STATE", "TIER", "CREATED", "UPDATED", "NAME"]
    assert len(lines) == 3
    # Every column starts where its header does.
    for header in ("STATE", "TIER", "CREATED", "UPDATED", "NAME"):
        column = lines[0].index(header)
        assert all(line[column - 2 : column] == "  " and line[column] != " " for line in lines[1:]), header
    assert lines[1].startswith("acme                     PROVISION_FAILED  bridge  2026-12-02 13:57:25 UTC")
    assert lines[2].endswith("2026-12-01 13:57:25 UTC  -                        Ünïcode GmbH")
    assert all(line == line.rstrip() for line in lines)


def test_events_are_a_table_with_times_and_their_zone() -> None:
    events = [
        tenant_pb2.TenantEvent(
            time=stamp(T0, 5_000_000),
            kind=tenant_pb2.TenantEvent.KIND_REQUESTED,
            step="deprovision",
            actor="spiffe://tenantry.local/dev/admin",
            detail="grace period 1:00:00",
        ),
        tenant_pb2.TenantEvent(
            time=stamp(T0 + 1),
            kind=tenant_pb2.TenantEvent.KIND_STATE_CHANGED,
            state=State.STATE_DEPROVISIONING,
            actor="spiffe://tenantry.local/dev/admin",
        ),
    ]
    lines = output.event_table(events).splitlines()
    assert lines[0].split() == ["TIME", "EVENT", "STEP/STATE", "ACTOR", "DETAIL"]
    assert lines[1].startswith("2026-12-02 13:57:25.005 UTC  REQUESTED      deprovision     spiffe://")
    assert lines[2].startswith("2026-12-02 13:57:26.000 UTC  STATE_CHANGED  DEPROVISIONING  spiffe://")
    assert lines[1].endswith("grace period 1:00:00") and lines[2].endswith("admin")


# -- JSON -----------------------------------------------------------------------


def test_json_is_one_document_per_result_and_one_line_per_streamed_item() -> None:
    tenant = failed_tenant()
    document = output.json_document(tenant)
    assert json.loads(document)["failureReason"] == "injected failure in CreateBucket"
    assert json.loads(document)["state"] == "STATE_PROVISION_FAILED"
    update = tenant_service_pb2.WatchTenantResponse(
        tenant=tenant, events=[tenant_pb2.TenantEvent(kind=tenant_pb2.TenantEvent.KIND_REQUESTED)]
    )
    for message in (tenant, update, update.events[0]):
        line = output.json_line(message)
        assert "\n" not in line and ": " not in line
        assert json.loads(line) == json.loads(output.json_document(message))
    assert json.loads(output.json_line(update))["tenant"]["tenantId"] == "acme"


# -- errors ---------------------------------------------------------------------


def test_errors_name_the_flags_not_the_api_fields() -> None:
    error = errors.invalid(
        [
            ("tenant_id", "must be a DNS label"),
            ("tenant.admin.email", "must be an email address such as ada@example.com"),
            ("tenant.display_name", "required"),
            ("tenant.domains[1]", "duplicate"),
            ("tenant.domains[7]", "duplicate"),
        ]
    )
    text = output.explain(
        "INVALID_ARGUMENT", error.message, status_of(error), ["a.example.com", "b.example.com"]
    )
    assert text.splitlines() == [
        "error: INVALID_ARGUMENT: invalid request",
        "  TENANT_ID: must be a DNS label",
        "  --admin-email: must be an email address such as ada@example.com",
        "  --name: required",
        "  --domain b.example.com: duplicate",
        "  --domain #8: duplicate",
    ]


def test_field_names_inside_a_message_become_flags() -> None:
    grace = errors.invalid([("grace_period", "must be from 1 second to 365 days; use hard_delete for none")])
    text = output.explain("INVALID_ARGUMENT", grace.message, status_of(grace))
    assert "  --grace: must be from 1 second to 365 days; use --hard for none" in text.splitlines()
    assert "hard_delete" not in text and "grace_period" not in text
    stopped = errors.operation_failed(
        "acme",
        "delete",
        "backup_schema",
        "Timeout",
        "stopped at backup_schema: DeleteTenant with skip_backup removes it",
    )
    text = output.explain("UNAVAILABLE", stopped.message, status_of(stopped))
    assert text.splitlines() == [
        "error: UNAVAILABLE: stopped at backup_schema: DeleteTenant with --skip-backup removes it",
        "  OPERATION_FAILED at backup_schema (Timeout)",
    ]
    # Plain words stay words.
    assert (
        output.in_flags("the name of the filter, not a tenant_id")
        == "the name of the filter, not a TENANT_ID"
    )
    busy = errors.unavailable("registry")
    assert output.explain("UNAVAILABLE", busy.message, status_of(busy)).splitlines() == [
        "error: UNAVAILABLE: registry is unavailable; retry with backoff",
        "  retry in 1 s or later",
    ]


def test_a_refusal_with_field_details_keeps_the_servers_message() -> None:
    """Only INVALID_ARGUMENT's summary is replaced by the flag lines; an
    ALREADY_EXISTS says why (here: the id belongs to a deleted tenant)."""
    error = errors.tenant_deleted("acme", datetime(2026, 12, 2, 14, 3, 4, tzinfo=UTC))
    text = output.explain("ALREADY_EXISTS", error.message, status_of(error))
    headline = text.splitlines()[0]
    assert headline.startswith("error: ALREADY_EXISTS: tenant 'acme' was deleted on 2026-12-02 14:03:04 UTC")
    assert "TENANT_ID:" in text
