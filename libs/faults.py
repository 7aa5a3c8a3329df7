"""Fault injection for end-to-end tests of compensation, off unless asked for.

With TENANTRY_FAULT_INJECTION_FILE set, a worker reads that JSON file before
each activity. It maps a tenant id to the rpc that misbehaves for it, or to
a list of rules:

    {"acme": "CreateBucket",
     "beta": [{"rpc": "CreateBucket", "mode": "crash_after"},
              {"rpc": "DeleteBucket", "mode": "before", "once": false}]}

Modes, each the way a fault shows in production:
- `before` (a bare rpc name means this): raise a non-retryable error before
  the activity runs, as a provider that refuses would.
- `after`: run the real activity, then raise non-retryable: the work is done
  but the step reports a failure.
- `timeout_after`: run the real activity, then hang without heartbeating
  until the attempt has timed out; Temporal retries it.
- `crash_after`: run the real activity, then SIGKILL this worker before it
  reports; Temporal retries it on another worker once the heartbeat times out.
- `delay_before`: wait `seconds` (heartbeating) before running: an attempt
  that is simply slow (benchmarks kill its worker meanwhile).

`timeout_after`, `crash_after` and `delay_before` fire once per tenant, rpc
and mode across every worker process (a marker file next to the rules), so
the retry runs normally; `before` and `after` fire on every attempt unless
the rule says `"once": true`. A rule with `"when": {"<field>": <value>}`
applies only to requests whose fields have those values (an enum by name or
number): `{"rpc": "SendNotice", "when": {"kind": "NOTICE_KIND_DEPROVISIONED"}}`.
The key `"*"` holds rules for every tenant, checked after the tenant's own:
`{"*": [{"rpc": "CreateRealm", "mode": "delay_before", "seconds": 0.2,
"once": false}]}` makes every attempt of every tenant's CreateRealm 200 ms
slower (the scale-out benchmark, tests/bench/scale.py); a `"*"` rule that
fires once still fires once per tenant. Everything else runs for real, so a
test proves that the real compensations remove real resources. Never set in
production: the worker logs a warning.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

log = logging.getLogger(__name__)

INJECTED = "InjectedFault"
# The rules file's key for rules that apply to every tenant.
EVERY_TENANT = "*"
MODES = ("before", "after", "timeout_after", "crash_after", "delay_before")
_ONCE_BY_DEFAULT = frozenset({"timeout_after", "crash_after", "delay_before"})


@dataclass(frozen=True)
class Rule:
    rpc: str
    mode: str = "before"
    once: bool = False
    seconds: float = 0.0
    when: tuple[tuple[str, object], ...] = ()

    @classmethod
    def parse(cls, raw: object) -> Rule | None:
        if isinstance(raw, str):
            return cls(rpc=raw)
        if not isinstance(raw, dict) or not isinstance(raw.get("rpc"), str):
            return None
        mode = raw.get("mode", "before")
        if mode not in MODES:
            log.warning("ignoring a fault rule with mode %r", mode)
            return None
        once = raw.get("once", mode in _ONCE_BY_DEFAULT)
        when = raw.get("when", {})
        return cls(
            rpc=raw["rpc"],
            mode=mode,
            once=bool(once),
            seconds=float(raw.get("seconds", 0)),
            when=tuple(sorted(when.items())) if isinstance(when, dict) else (),
        )

    def matches(self, rpc: str, request: Any) -> bool:
        return rpc == self.rpc and all(_field_is(request, name, value) for name, value in self.when)


def rules_for(path: Path, tenant_id: str) -> list[Rule]:
    """The rules of a tenant in the file, its own before those for every
    tenant; none when the file is missing or unreadable."""
    try:
        everything = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(everything, dict):
        return []
    items: list[object] = []
    for key in (tenant_id, EVERY_TENANT):
        raw = everything.get(key)
        items += raw if isinstance(raw, list) else [raw] if raw is not None else []
    return [rule for rule in map(Rule.parse, items) if rule is not None]


def fired_dir(rules: Path) -> Path:
    """Where the markers of rules that fire once are kept."""
    return rules.with_name(rules.name + ".fired")


class FaultInjection(Interceptor):
    def __init__(self, rules: Path) -> None:
        self._rules = rules
        log.warning("fault injection is ON (rules in %s): for tests only", rules)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self._rules)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, rules: Path) -> None:
        super().__init__(next)
        self._rules = rules

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        rpc = activity.info().activity_type.rsplit(".", 1)[-1]
        tenant_id = _tenant_id(input.args[0]) if input.args else ""
        request = input.args[0] if input.args else None
        rules = rules_for(self._rules, tenant_id) if tenant_id else []
        rule = next((r for r in rules if r.matches(rpc, request)), None)
        if rule is None or (rule.once and not self._first_time(tenant_id, rule)):
            return await self.next.execute_activity(input)
        log.warning("injecting %s into %s for tenant %s", rule.mode, rpc, tenant_id)
        if rule.mode == "before":
            raise _injected(rpc, "before it ran")
        if rule.mode == "delay_before":
            await _heartbeating_sleep(rule.seconds)
            return await self.next.execute_activity(input)
        result = await self.next.execute_activity(input)
        if rule.mode == "after":
            raise _injected(rpc, "after it did its work")
        if rule.mode == "crash_after":
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)
        # timeout_after: no heartbeat from here on, so the attempt times out
        # (its heartbeat timeout, or start-to-close when it has none), and
        # whatever this attempt returns afterwards is discarded.
        info = activity.info()
        timeout = info.heartbeat_timeout or info.start_to_close_timeout
        await asyncio.sleep(2 * timeout.total_seconds() + 1 if timeout else 60)
        return result

    def _first_time(self, tenant_id: str, rule: Rule) -> bool:
        """True for the first worker to get here with this rule (an exclusive marker file)."""
        folder = fired_dir(self._rules)
        folder.mkdir(exist_ok=True)
        try:
            fd = os.open(folder / f"{tenant_id}.{rule.rpc}.{rule.mode}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.close(fd)
        return True


def _injected(rpc: str, when: str) -> ApplicationError:
    return ApplicationError(f"injected failure in {rpc} {when}", type=INJECTED, non_retryable=True)


async def _heartbeating_sleep(seconds: float) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        activity.heartbeat()
        await asyncio.sleep(min(1.0, left))


def _field_is(request: Any, name: str, value: object) -> bool:
    """The request's field `name` has `value` (an enum field by its number or its name)."""
    descriptor = getattr(request, "DESCRIPTOR", None)
    field = descriptor.fields_by_name.get(name) if descriptor is not None else None
    if field is None:
        return False
    actual = getattr(request, name)
    if field.enum_type is not None and isinstance(value, str):
        known = field.enum_type.values_by_name.get(value)
        return known is not None and known.number == actual
    return bool(actual == value)


def _tenant_id(request: Any) -> str:
    if hasattr(request, "tenant_id") and request.tenant_id:
        return str(request.tenant_id)
    tenant = getattr(request, "tenant", None)
    return str(getattr(tenant, "tenant_id", "") or "")
