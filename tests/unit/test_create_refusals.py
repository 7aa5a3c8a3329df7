"""CreateTenant's refusals of an id that is taken: which fields differ (named,
never shown), and a deleted tenant's id (never reused)."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2

from services.tenant_api import errors
from services.tenant_api.servicer import _delete_time, _differences
from tenantry.tenant.v1 import tenant_pb2
from tests.support.tenants import tenant_spec

Operation = tenant_pb2.Operation


def tenant(**changes: object) -> tenant_pb2.Tenant:
    spec = tenant_spec("acme", **changes)
    spec.tenant_id = "acme"
    return spec


def details(error: errors.ApiError) -> tuple[status_pb2.Status, error_details_pb2.ErrorInfo, list[str]]:
    status = status_pb2.Status.FromString(
        dict(error.to_status().trailing_metadata)["grpc-status-details-bin"]
    )
    info, fields = error_details_pb2.ErrorInfo(), []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
        else:
            assert detail.Unpack(info)
    return status, info, fields


def test_the_same_settings_differ_in_nothing() -> None:
    assert _differences(tenant(), tenant()) == []


def test_each_differing_setting_is_named_by_its_api_path() -> None:
    other = tenant(
        display_name="Other",
        plan_tier=tenant_pb2.PLAN_TIER_SILO,
        domains=["app.acme.example.com", "www.acme.example.com"],
        admin=tenant_pb2.AdminContact(email="bo@acme.example.com", given_name="Ada", family_name="X"),
    )
    assert _differences(tenant(), other) == [
        "tenant.display_name",
        "tenant.plan_tier",
        "tenant.domains",
        "tenant.admin.email",
        "tenant.admin.family_name",
    ]


def test_already_exists_names_the_fields_and_shows_no_value() -> None:
    other = tenant_pb2.AdminContact(email="bo@b.example.com", family_name="Lovelace")
    differs = _differences(tenant(), tenant(admin=other))
    error = errors.already_exists("acme", differs)
    status, info, fields = details(error)
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert (info.reason, info.metadata["tenant_id"]) == ("TENANT_ALREADY_EXISTS", "acme")
    assert info.metadata["differs"] == "tenant.admin.email,tenant.admin.given_name" == ",".join(fields)
    assert "tenant.admin.email" in status.message and "tenant.admin.given_name" in status.message
    assert "@" not in status.message and "Ada" not in status.message


def test_a_deleted_tenant_is_named_with_its_deletion_time() -> None:
    ended = Timestamp()
    ended.FromDatetime(datetime(2026, 12, 2, 14, 3, 4, 500000, tzinfo=UTC))
    deleted = tenant(state=tenant_pb2.Tenant.STATE_DEPROVISIONED)
    deleted.last_operation.CopyFrom(
        Operation(kind=Operation.KIND_DEPROVISION, outcome=Operation.OUTCOME_SUCCEEDED, end_time=ended)
    )
    deleted.update_time.FromDatetime(datetime(2026, 12, 3, tzinfo=UTC))  # a later change: not the deletion
    when = _delete_time(deleted)
    assert when == datetime(2026, 12, 2, 14, 3, 4, 500000, tzinfo=UTC)
    status, info, fields = details(errors.tenant_deleted("acme", when))
    assert status.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert (info.reason, dict(info.metadata)) == (
        "TENANT_DELETED",
        {"tenant_id": "acme", "delete_time": "2026-12-02T14:03:04Z"},
    )
    assert fields == ["tenant_id"]
    assert "'acme' was deleted on 2026-12-02 14:03:04 UTC" in status.message
    assert "cannot be reused" in status.message and "choose another tenant id" in status.message
    # Without a deletion run on the record (an old one), its last change says when.
    deleted.ClearField("last_operation")
    assert _delete_time(deleted) == datetime(2026, 12, 3, tzinfo=UTC)
