"""Fault injection for end-to-end tests of compensation, off unless asked for.

With TENANTRY_FAULT_INJECTION_FILE set, a worker reads that JSON file before
each activity: `{"<tenant id>": "<Rpc name>"}` makes that rpc fail for that
tenant with a permanent error, as a provider that refuses would. Everything
else runs for real, so a test proves that the real compensations remove
real resources. Never set in production: the worker logs a warning.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

log = logging.getLogger(__name__)

INJECTED = "InjectedFault"


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

    def execute_activity(self, input: ExecuteActivityInput) -> Any:
        rpc = activity.info().activity_type.rsplit(".", 1)[-1]
        tenant_id = _tenant_id(input.args[0]) if input.args else ""
        if tenant_id and self._failing(tenant_id) == rpc:
            raise ApplicationError(f"injected failure in {rpc}", type=INJECTED, non_retryable=True)
        return self.next.execute_activity(input)

    def _failing(self, tenant_id: str) -> str | None:
        try:
            rules = json.loads(self._rules.read_text())
        except (OSError, ValueError):
            return None
        return rules.get(tenant_id) if isinstance(rules, dict) else None


def _tenant_id(request: Any) -> str:
    if hasattr(request, "tenant_id") and request.tenant_id:
        return str(request.tenant_id)
    tenant = getattr(request, "tenant", None)
    return str(getattr(tenant, "tenant_id", "") or "")
