"""Which activity each provisioning step calls, for tests that inject a
failure at a step or check what a run called: read from the step table."""

from __future__ import annotations

from orchestrator.plan import STEPS, TierPlan

_SILO = TierPlan(own_deployment=True, dedicated_infrastructure=True)
# Every provisioning step of the silo plan (the largest) that is an activity, in plan order.
STEP_RPC = {name: STEPS[name].rpc.method for name in _SILO.provision_steps if name != "send_welcome"}
