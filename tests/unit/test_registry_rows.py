"""The registry's row -> proto shortcuts read what json_format and FromDatetime read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from services.tenant_api import registry
from tenantry.tenant.v1 import tenant_pb2

OPERATIONS: list[dict[str, Any]] = [
    # What the tenant-data worker writes (_operation_json): names as in proto, microseconds, Z.
    {
        "kind": "KIND_PROVISION",
        "outcome": "OUTCOME_FAILED",
        "workflow_id": "provision-acme",
        "run_id": "r1",
        "failed_step": "create_bucket",
        "failure_reason": "quota",
        "failure_type": "Conflict",
        "start_time": "2026-01-02T03:04:05.123456Z",
        "end_time": "2026-01-02T03:05:00.000000Z",
    },
    {"kind": "KIND_SUSPEND", "outcome": "OUTCOME_RUNNING", "start_time": "2026-01-02T03:04:05.000001Z"},
    # A newer worker's field and enum value: skipped, as ParseDict(ignore_unknown_fields) does.
    {"kind": "KIND_FROM_THE_FUTURE", "outcome": "OUTCOME_SUCCEEDED", "new_field": {"a": 1}},
    # Other proto JSON spellings go to the general parser.
    {
        "kind": "KIND_RESUME",
        "start_time": "2026-01-02T03:04:05.123456789Z",
        "end_time": "2026-01-02T05:04:05+02:00",
    },
    {"kind": 3, "outcome": "OUTCOME_CANCELLED", "workflowId": "w", "failureReason": "stop"},
    {},
]


@pytest.mark.parametrize("value", OPERATIONS)
def test_last_operation_reads_as_json_format_reads_it(value: dict[str, Any]) -> None:
    expected = tenant_pb2.Operation()
    json_format.ParseDict(value, expected, ignore_unknown_fields=True)
    got = tenant_pb2.Operation()
    registry._operation(value, got)
    assert got == expected


def test_every_field_of_operation_has_a_fast_reader() -> None:
    # A field added to Operation without one would send every row to the slow parser.
    fields = {f.name for f in tenant_pb2.Operation.DESCRIPTOR.fields}
    assert set(registry._OPERATION_FIELDS) == fields - registry.DERIVED_OPERATION_FIELDS


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        datetime(1960, 6, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 6, 1, 12, tzinfo=timezone(timedelta(hours=-7))),
    ],
)
def test_timestamps_read_as_from_datetime_reads_them(value: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(value)
    assert registry._timestamp(value) == expected
