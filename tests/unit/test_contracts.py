"""The proto contracts are the one place Temporal wiring is named: every
declared rpc has exactly one implementation, on the declared queue, with the
declared types, and the orchestrator calls nothing undeclared."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest
from temporalio import activity, workflow

from libs import contracts
from orchestrator import worker as orchestrator_worker

ROOT = Path(__file__).resolve().parents[2]
DOMAIN_WORKERS = sorted(p.parent.name for p in (ROOT / "services").glob("*/worker.py"))


def activities_class(domain: str) -> type:
    module = importlib.import_module(f"services.{domain}.activities")
    [cls] = [c for name, c in inspect.getmembers(module, inspect.isclass) if name.endswith("Activities")
             and c.__module__ == module.__name__]  # fmt: skip
    return cls


def test_every_activity_contract_is_served_by_exactly_one_worker() -> None:
    served = [importlib.import_module(f"services.{d}.worker").CONTRACT for d in DOMAIN_WORKERS]
    assert sorted(c.service for c in served) == sorted(c.service for c in contracts.ACTIVITY_CONTRACTS)


@pytest.mark.parametrize("domain", DOMAIN_WORKERS)
def test_each_worker_implements_every_declared_rpc_with_the_declared_types(domain: str) -> None:
    contract = importlib.import_module(f"services.{domain}.worker").CONTRACT
    cls = activities_class(domain)
    bound = contracts.bind_activities(contract, cls.__new__(cls))
    definitions = [activity._Definition.must_from_callable(fn) for fn in bound]
    assert {d.name for d in definitions} == {rpc.name for rpc in contract.rpcs.values()}
    for definition in definitions:
        rpc = contract.rpcs[definition.name.rsplit(".", 1)[-1]]
        assert definition.arg_types == [rpc.input_type]
        assert definition.ret_type is rpc.output_type
    # No public method that the contract does not declare.
    public = {n for n, _ in inspect.getmembers(cls, inspect.isfunction) if not n.startswith("_")}
    assert public == {rpc.python_name for rpc in contract.rpcs.values()}


def test_activity_names_and_queues_come_from_proto() -> None:
    rpc = contracts.IDENTITY.rpc("CreateRealm")
    assert rpc.name == "tenantry.idp.v1.IdentityActivities.CreateRealm"
    assert rpc.task_queue == "tenantry-idp"
    queues = [c.task_queue for c in (*contracts.ACTIVITY_CONTRACTS, contracts.WORKFLOWS)]
    assert len(set(queues)) == len(queues)
    assert contracts.WORKFLOWS.task_queue == "tenantry-orchestrator"


def test_binding_refuses_a_missing_or_mistyped_implementation() -> None:
    class Missing:
        pass

    with pytest.raises(TypeError, match="does not implement"):
        contracts.bind_activities(contracts.NOTIFICATION, Missing())

    class Mistyped:
        def send_notice(self, request: str) -> str:
            return request

    with pytest.raises(TypeError, match="must take"):
        contracts.bind_activities(contracts.NOTIFICATION, Mistyped())


def test_orchestrator_registers_exactly_the_declared_workflows() -> None:
    definitions = [workflow._Definition.must_from_class(cls) for cls in orchestrator_worker.WORKFLOWS]
    assert {d.name for d in definitions} == {rpc.name for rpc in contracts.WORKFLOWS.rpcs.values()}
    for definition in definitions:
        rpc = contracts.WORKFLOWS.rpcs[definition.name.rsplit(".", 1)[-1]]
        hints = inspect.get_annotations(definition.run_fn, eval_str=True)
        assert hints["request"] is rpc.input_type and hints["return"] is rpc.output_type


def test_orchestrator_calls_only_declared_rpcs_through_the_contracts() -> None:
    sources = "\n".join(p.read_text() for p in (ROOT / "orchestrator").rglob("*.py"))
    assert "execute_activity(" not in sources, "call activities through libs.contracts.execute"
    by_name = {c.service.rsplit(".", 1)[-1]: c for c in contracts.ACTIVITY_CONTRACTS}
    aliases = {"IDENTITY": "IdentityActivities", "INFRASTRUCTURE": "InfrastructureActivities",
               "NOTIFICATION": "NotificationActivities", "TENANT_DATA": "TenantDataActivities"}  # fmt: skip
    calls = re.findall(r"\b([A-Z_]+)\.rpc\(\"(\w+)\"\)", sources)
    assert calls, "expected the orchestrator to name its activities"
    for alias, method in calls:
        if alias == "WORKFLOWS":
            continue
        assert method in by_name[aliases[alias]].rpcs, f"{alias}.{method} is not declared in proto"
