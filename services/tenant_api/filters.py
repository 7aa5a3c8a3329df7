"""ListTenants' `filter` (a subset of AIP-160) and `order_by` (AIP-132), as SQL.

Pure: parsing turns the request's strings into a `Query` that holds a WHERE
fragment with placeholders and its parameters (user values only ever travel
as parameters), the ORDER BY and keyset clauses of the order, and a
canonical spelling that page tokens are bound to. The grammar (see
ListTenantsRequest in tenant_service.proto):

    filter     = term { "AND" term }
    term       = comparison | "(" comparison { "OR" comparison } ")"
    comparison = field operator value

with `state` and `plan_tier` compared by `=`/`!=` to an enum name (prefix
optional), and `create_time`/`update_time` by `<`, `<=`, `>`, `>=`, `=` to an
RFC 3339 timestamp in double quotes. The comparisons of one OR group are of
one field. Errors are `FilterError`s whose message says what is wrong
without repeating the caller's values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql

from tenantry.tenant.v1 import tenant_pb2

MAX_FILTER = 1000
MAX_COMPARISONS = 20
DEFAULT_ORDER = "tenant_id"

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<op><=|>=|!=|=|<|>)
      | (?P<paren>[()])
      | "(?P<string>[^"\\]*)"
      | (?P<word>[A-Za-z0-9_][A-Za-z0-9_.:+-]*)
    )""",
    re.VERBOSE,
)
_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})")
_ENUM_FIELDS = {
    "state": ("STATE_", tenant_pb2.Tenant.State),
    "plan_tier": ("PLAN_TIER_", tenant_pb2.PlanTier),
}
_TIME_FIELDS = ("create_time", "update_time")
_ORDER_FIELDS = ("tenant_id", "create_time", "update_time")
_FIELDS_RULE = "state, plan_tier, create_time or update_time"


class FilterError(ValueError):
    """What is wrong with a filter or order_by, in words for a field violation."""


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    # An enum value name, or a timestamp as (datetime with microseconds, extra nanoseconds).
    value: str | tuple[datetime, int]

    def canonical(self) -> str:
        if isinstance(self.value, str):
            return f"{self.field} {self.op} {self.value}"
        stamp, nanos = self.value
        return f'{self.field} {self.op} "{stamp.isoformat(timespec="microseconds")[:26]}{nanos:03d}Z"'

    def where(self) -> tuple[sql.Composable, list[Any]]:
        column = sql.Identifier("t", self.field)
        if isinstance(self.value, str):
            return sql.SQL("{} {} %s").format(column, sql.SQL("=" if self.op == "=" else "<>")), [self.value]
        stamp, nanos = self.value
        if nanos:
            # The registry keeps microseconds: a time between two of them is
            # compared to the one on the side that keeps the meaning.
            if self.op == "=":
                return sql.SQL("FALSE"), []
            if self.op in ("<", ">="):
                stamp += timedelta(microseconds=1)
        return sql.SQL("{} {} %s").format(column, sql.SQL(self.op)), [stamp]


@dataclass(frozen=True)
class Order:
    field: str
    descending: bool

    def canonical(self) -> str:
        return f"{self.field} desc" if self.descending else self.field

    def clause(self) -> sql.Composable:
        """ORDER BY: the field, then tenant_id, both in the one direction (an index scan either way)."""
        direction = sql.SQL(" DESC" if self.descending else "")
        columns = [sql.Identifier("t", self.field)]
        if self.field != "tenant_id":
            columns.append(sql.Identifier("t", "tenant_id"))
        return sql.SQL(", ").join(sql.Composed([c, direction]) for c in columns)

    def after(self, key: Any, tenant_id: str) -> tuple[sql.Composable, list[Any]]:
        """The keyset condition: rows after the one with sort key `key` and `tenant_id`."""
        op = sql.SQL("<" if self.descending else ">")
        tid = sql.Identifier("t", "tenant_id")
        if self.field == "tenant_id":
            return sql.SQL("{} {} %s").format(tid, op), [tenant_id]
        # A row comparison: what the (field, tenant_id) index reads from.
        return sql.SQL("({}, {}) {} (%s, %s)").format(sql.Identifier("t", self.field), tid, op), [
            key,
            tenant_id,
        ]


@dataclass(frozen=True)
class Query:
    """A parsed filter and order: `groups` are ANDed, the comparisons of each ORed."""

    groups: tuple[tuple[Comparison, ...], ...]
    order: Order

    def canonical(self) -> str:
        """One spelling per query, whatever the spacing, prefixes or fraction digits used."""
        terms = []
        for group in self.groups:
            ors = " OR ".join(c.canonical() for c in group)
            terms.append(f"({ors})" if len(group) > 1 else ors)
        return f"{' AND '.join(terms)}|{self.order.canonical()}"

    def where(self) -> tuple[sql.Composable, list[Any]]:
        """The filter as a WHERE condition with %s placeholders, and its parameters (TRUE for none)."""
        parts: list[sql.Composable] = []
        params: list[Any] = []
        for group in self.groups:
            ors = []
            for comparison in group:
                fragment, values = comparison.where()
                ors.append(fragment)
                params.extend(values)
            parts.append(ors[0] if len(ors) == 1 else sql.SQL("({})").format(sql.SQL(" OR ").join(ors)))
        return (sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE")), params


DEFAULT_QUERY = Query(groups=(), order=Order(DEFAULT_ORDER, descending=False))


def parse(filter_text: str, order_by: str) -> Query:
    """The query of a ListTenants request; raises FilterError (parse each alone to know which field)."""
    return Query(groups=parse_filter(filter_text), order=parse_order(order_by))


def parse_order(text: str) -> Order:
    words = text.split()
    if not words:
        return Order(DEFAULT_ORDER, descending=False)
    if "," in text:
        raise FilterError("one field only; tenant_id always breaks ties")
    if (
        words[0] not in _ORDER_FIELDS
        or len(words) > 2
        or (len(words) == 2 and words[1] not in ("asc", "desc"))
    ):
        raise FilterError("must be tenant_id, create_time or update_time, optionally followed by desc")
    return Order(words[0], descending=len(words) == 2 and words[1] == "desc")


def parse_filter(text: str) -> tuple[tuple[Comparison, ...], ...]:
    if len(text) > MAX_FILTER:
        raise FilterError(f"at most {MAX_FILTER} characters")
    tokens = _tokens(text)
    groups: list[tuple[Comparison, ...]] = []
    i = 0
    while i < len(tokens):
        if groups:
            if tokens[i] == ("word", "OR"):
                raise FilterError(
                    "OR joins comparisons of one field in parentheses: (state = A OR state = B)"
                )
            i = _expect(tokens, i, ("word", "AND"), "expected AND between comparisons")
        if i < len(tokens) and tokens[i] == ("paren", "("):
            group = []
            i += 1
            while True:
                comparison, i = _comparison(tokens, i)
                group.append(comparison)
                if i < len(tokens) and tokens[i] == ("word", "OR"):
                    i += 1
                    continue
                i = _expect(tokens, i, ("paren", ")"), "expected OR or a closing parenthesis")
                break
            if len({c.field for c in group}) > 1:
                raise FilterError("the comparisons joined by OR must be of one field")
            groups.append(tuple(group))
        else:
            comparison, i = _comparison(tokens, i)
            groups.append((comparison,))
    if sum(len(g) for g in groups) > MAX_COMPARISONS:
        raise FilterError(f"at most {MAX_COMPARISONS} comparisons")
    return tuple(groups)


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens = []
    position = 0
    while position < len(text):
        if text[position:].isspace():
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise FilterError(
                f"unexpected character at position {position + 1 + _spaces(text, position)};"
                " values in double quotes have no quote or backslash"
            )
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _spaces(text: str, position: int) -> int:
    return len(text[position:]) - len(text[position:].lstrip())


def _expect(tokens: list[tuple[str, str]], i: int, token: tuple[str, str], problem: str) -> int:
    if i >= len(tokens) or tokens[i] != token:
        raise FilterError(problem)
    return i + 1


def _comparison(tokens: list[tuple[str, str]], i: int) -> tuple[Comparison, int]:
    if i + 3 > len(tokens):
        raise FilterError("expected a comparison such as state = ACTIVE")
    (field_kind, field), (op_kind, op), (value_kind, value) = tokens[i : i + 3]
    if field_kind != "word" or op_kind != "op":
        raise FilterError("expected a comparison such as state = ACTIVE")
    if field in _ENUM_FIELDS:
        prefix, enum = _ENUM_FIELDS[field]
        if op not in ("=", "!="):
            raise FilterError(f"{field} is compared with = or !=")
        name = value if value.startswith(prefix) else prefix + value
        names = enum.keys()  # an EnumTypeWrapper is no container
        if value_kind not in ("word", "string") or name not in names or name.endswith("_UNSPECIFIED"):
            known = ", ".join(n.removeprefix(prefix) for n in names if not n.endswith("_UNSPECIFIED"))
            raise FilterError(f"{field} is one of {known}")
        return Comparison(field, op, name), i + 3
    if field in _TIME_FIELDS:
        if op == "!=":
            raise FilterError(f"{field} is compared with <, <=, >, >= or =")
        if value_kind != "string":
            raise FilterError(
                f'{field} is compared with an RFC 3339 timestamp in double quotes, "2026-01-31T00:00:00Z"'
            )
        return Comparison(field, op, _timestamp(field, value)), i + 3
    raise FilterError(f"unknown field; filter on {_FIELDS_RULE}")


def _timestamp(field: str, text: str) -> tuple[datetime, int]:
    """A timestamp in UTC to the microsecond, and the nanoseconds beyond it."""
    match = _RFC3339.fullmatch(text)
    problem = f"{field}: not an RFC 3339 timestamp such as 2026-01-31T00:00:00Z (with Z or an offset)"
    if match is None:
        raise FilterError(problem)
    date, clock, fraction, zone = match.groups()
    digits = (fraction or "").ljust(9, "0")
    try:
        stamp = datetime.fromisoformat(f"{date}T{clock}.{digits[:6]}{'+00:00' if zone in 'Zz' else zone}")
        return stamp.astimezone(UTC), int(digits[6:])
    except (ValueError, OverflowError):  # 2026-02-30, or year 1 moved before year 1
        raise FilterError(problem) from None
