"""ListTenants' filter and order_by: what parses, the SQL it makes, what is refused and why."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.tenant_api import filters
from services.tenant_api.filters import FilterError


def sql_of(text: str, order_by: str = "") -> tuple[str, list[object]]:
    where, params = filters.parse(text, order_by).where()
    return where.as_string(None), params


def test_an_empty_filter_is_everything_in_id_order() -> None:
    query = filters.parse("", "")
    assert query == filters.DEFAULT_QUERY
    assert sql_of("") == ("TRUE", [])
    assert query.order.clause().as_string(None) == '"t"."tenant_id"'


def test_enum_names_with_or_without_their_prefix_are_one_comparison() -> None:
    for text in ("state = ACTIVE", "state=STATE_ACTIVE", ' state  =  "ACTIVE" '):
        assert sql_of(text) == ('"t"."state" = %s', ["STATE_ACTIVE"]), text
    assert sql_of("plan_tier != POOLED") == ('"t"."plan_tier" <> %s', ["PLAN_TIER_POOLED"])
    assert (
        filters.parse("state = ACTIVE", "").canonical() == filters.parse("state=STATE_ACTIVE", "").canonical()
    )


def test_values_are_parameters_never_sql_text() -> None:
    text, params = sql_of('state = ACTIVE AND create_time >= "2026-01-01T00:00:00Z"')
    assert text == '"t"."state" = %s AND "t"."create_time" >= %s'
    assert params == ["STATE_ACTIVE", datetime(2026, 1, 1, tzinfo=UTC)]
    assert "ACTIVE" not in text and "2026" not in text


def test_or_groups_of_one_field_in_parentheses() -> None:
    text, params = sql_of("(state = ACTIVE OR state = SUSPENDED) AND plan_tier = SILO")
    assert text == '("t"."state" = %s OR "t"."state" = %s) AND "t"."plan_tier" = %s'
    assert params == ["STATE_ACTIVE", "STATE_SUSPENDED", "PLAN_TIER_SILO"]


def test_timestamps_take_offsets_and_nanoseconds_without_changing_the_meaning() -> None:
    # An offset is the same instant in UTC.
    _, params = sql_of('update_time < "2026-01-01T02:00:00+02:00"')
    assert params == [datetime(2026, 1, 1, tzinfo=UTC)]
    # The registry keeps microseconds: >= and < of a time between two round up, > and <= down.
    base = datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    up = datetime(2026, 1, 1, 0, 0, 0, 123457, tzinfo=UTC)
    for op, want in ((">=", up), ("<", up), (">", base), ("<=", base)):
        assert sql_of(f'create_time {op} "2026-01-01T00:00:00.123456789Z"')[1] == [want], op
    assert sql_of('create_time = "2026-01-01T00:00:00.123456789Z"') == ("FALSE", [])
    assert sql_of('create_time = "2026-01-01T00:00:00.123456000Z"')[1] == [base]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("state = FOO", "state is one of PENDING, PROVISIONING, ACTIVE"),
        ("state = UNSPECIFIED", "state is one of"),
        ("state < ACTIVE", "state is compared with = or !="),
        ("plan_tier = GOLD", "plan_tier is one of POOLED, BRIDGE, SILO"),
        ("display_name = x", "unknown field; filter on state, plan_tier, create_time or update_time"),
        ("state = ACTIVE OR state = SUSPENDED", "OR joins comparisons of one field in parentheses"),
        ("(state = ACTIVE OR plan_tier = SILO)", "the comparisons joined by OR must be of one field"),
        ("(state = ACTIVE", "expected OR or a closing parenthesis"),
        ("state = ACTIVE AND", "expected a comparison"),
        ("state = ACTIVE plan_tier = SILO", "expected AND between comparisons"),
        ("state = ACTIVE and plan_tier = SILO", "expected AND between comparisons"),
        ("NOT state = ACTIVE", "expected a comparison"),
        ("create_time > 2026-01-01T00:00:00Z", "an RFC 3339 timestamp in double quotes"),
        ('create_time > "2026-01-01"', "not an RFC 3339 timestamp"),
        ('create_time > "2026-02-30T00:00:00Z"', "not an RFC 3339 timestamp"),
        ('create_time > "2026-01-01T00:00:00"', "not an RFC 3339 timestamp"),
        ('create_time > "0001-01-01T00:00:00+01:00"', "not an RFC 3339 timestamp"),
        ('create_time != "2026-01-01T00:00:00Z"', "compared with <, <=, >, >= or ="),
        ('state = "A\\"', "unexpected character at position 9"),
        ("state = ACTIVE; DROP TABLE x", "unexpected character at position 15"),
        ("x" * 1001, "at most 1000 characters"),
        (" AND ".join(["state = ACTIVE"] * 21), "at most 20 comparisons"),
    ],
)
def test_a_bad_filter_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(FilterError) as err:
        filters.parse_filter(text)
    assert problem in str(err.value)


def test_a_problem_does_not_repeat_the_callers_value() -> None:
    with pytest.raises(FilterError) as err:
        filters.parse_filter('create_time > "ada@example.com"')
    assert "ada" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "clause", "after"),
    [
        ("", '"t"."tenant_id"', '"t"."tenant_id" > %s'),
        ("tenant_id desc", '"t"."tenant_id" DESC', '"t"."tenant_id" < %s'),
        (
            "create_time",
            '"t"."create_time", "t"."tenant_id"',
            '("t"."create_time", "t"."tenant_id") > (%s, %s)',
        ),
        (
            "  update_time   desc ",
            '"t"."update_time" DESC, "t"."tenant_id" DESC',
            '("t"."update_time", "t"."tenant_id") < (%s, %s)',
        ),
        (
            "create_time asc",
            '"t"."create_time", "t"."tenant_id"',
            '("t"."create_time", "t"."tenant_id") > (%s, %s)',
        ),
    ],
)
def test_each_order_has_a_keyset_condition_in_its_direction(text: str, clause: str, after: str) -> None:
    order = filters.parse_order(text)
    assert order.clause().as_string(None) == clause
    condition, params = order.after("key", "acme")
    assert condition.as_string(None) == after
    assert params == (["acme"] if order.field == "tenant_id" else ["key", "acme"])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name", "must be tenant_id, create_time or update_time"),
        ("create_time descending", "optionally followed by desc"),
        ("create_time desc, tenant_id", "one field only; tenant_id always breaks ties"),
        ("create_time DESC", "optionally followed by desc"),
    ],
)
def test_a_bad_order_by_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(FilterError) as err:
        filters.parse_order(text)
    assert problem in str(err.value)


def test_the_canonical_form_tells_queries_apart_and_spellings_not() -> None:
    canonical = {
        filters.parse(f, o).canonical()
        for f, o in [
            ("state = ACTIVE", ""),
            ("state = STATE_ACTIVE", "tenant_id"),
            (" state=ACTIVE ", "tenant_id asc"),
        ]
    }
    assert len(canonical) == 1
    others = [
        ("state = ACTIVE", "tenant_id desc"),
        ("state = SUSPENDED", ""),
        ("state != ACTIVE", ""),
        ('create_time > "2026-01-01T00:00:00Z"', ""),
        ('create_time > "2026-01-01T00:00:00.000001Z"', ""),
    ]
    assert len({filters.parse(f, o).canonical() for f, o in others} | canonical) == len(others) + 1
    same = ['create_time > "2026-01-01T01:00:00+01:00"', 'create_time > "2026-01-01T00:00:00.000000000Z"']
    assert len({filters.parse(f, "").canonical() for f in same}) == 1
