"""The fault matrix: every step of every tier's provisioning and
deprovisioning, with a fault as production has them (libs/faults.py):

- `before`: the step fails for good before it runs;
- `after`: the step does its work, then fails for good;
- `timeout_after`: the step does its work, then hangs until its attempt times out;
- `crash_after`: the step does its work, then its worker is SIGKILLed before it reports.

Each run must settle in a state that says what happened, and the orphan scan
of every provider must find nothing that should not be there: nothing at all
after a failed provisioning or a finished deletion, exactly the tier's
resources (no duplicate) after a provisioning that recovered. A deletion
that stopped says where, and DeleteTenant again finishes it.

Cases of one (phase, mode) run concurrently on the shared stack; a killed
worker is restarted by a supervisor, as an orchestrator of processes would.
With TENANTRY_FAULT_MATRIX_REPORT set, the outcome of every case is written
there as a Markdown table.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from libs.devstack.stack import Stack
from libs.faults import fired_dir
from orchestrator.plan import STEPS, plan_for
from tenantry.tenant.v1 import tenant_pb2, tenant_service_pb2, tenant_service_pb2_grpc
from tests.e2e.conftest import DNS_ZONE, Providers, create, details, inject_failure, settle

State = tenant_pb2.Tenant.State
TIERS = {
    "pooled": tenant_pb2.PLAN_TIER_POOLED,
    "bridge": tenant_pb2.PLAN_TIER_BRIDGE,
    "silo": tenant_pb2.PLAN_TIER_SILO,
}
MODES = ("before", "after", "timeout_after", "crash_after")
# The notice of each notice step (all three are SendNotice).
NOTICES = {
    "send_welcome": "NOTICE_KIND_WELCOME",
    "send_deletion_notice": "NOTICE_KIND_DELETION_SCHEDULED",
    "send_deprovisioned": "NOTICE_KIND_DEPROVISIONED",
}
BACKUP_STEPS = ("backup_schema", "export_identity")
# Steps before the deletion has the tenant: a failure there changes nothing.
UNCLAIMED_STEPS = ("read_record", "mark_deprovisioning")
# How many cases of a batch run at once: enough to overlap, few enough for two
# cores; more where cases mostly wait (for a timed-out attempt, a restart): two
# waves of a deprovision batch instead of four.
CONCURRENCY = {"before": 8, "after": 8, "timeout_after": 25, "crash_after": 25}
# Steps of a deletion's grace period: their cases delete with one (1 s); the
# others delete at once, which runs the same backup and removal steps.
GRACE_STEPS = ("disable_access", "suspend_deployment", "send_deletion_notice")
SETTLE_TIMEOUT = 240.0
_REPORT_LOCK = threading.Lock()


@dataclass(frozen=True)
class Case:
    phase: str
    tier: str
    step: str
    mode: str

    @property
    def plan(self):  # type: ignore[no-untyped-def]
        return plan_for(TIERS[self.tier])

    def rule(self) -> list[dict[str, object]]:
        rule: dict[str, object] = {"rpc": STEPS[self.step].rpc.method, "mode": self.mode}
        if self.step in NOTICES:
            rule["when"] = {"kind": NOTICES[self.step]}
        return [rule]


@dataclass
class Outcome:
    case: Case
    tid: str = ""
    state: str = ""
    said: str = ""
    orphans: str = ""
    problems: list[str] | None = None

    def fail(self, problem: str) -> None:
        self.problems = [*(self.problems or []), problem]


def steps_of(phase: str, tier: str) -> list[str]:
    plan = plan_for(TIERS[tier])
    if phase == "provision":
        return list(plan.provision_steps)
    return [s for s in plan.teardown_steps(grace=True, backup=True) if s != "grace_period"]


def cases(phase: str, mode: str) -> list[Case]:
    return [Case(phase, tier, step, mode) for tier in TIERS for step in steps_of(phase, tier)]


@pytest.fixture
def restarting(stack: Stack) -> Iterator[list[str]]:
    """Restarts any Tenantry process that dies while the test runs; yields the names restarted."""
    with supervised(stack) as restarted:
        yield restarted


@contextmanager
def supervised(stack: Stack) -> Iterator[list[str]]:
    """Restarts any of the stack's Tenantry processes that dies meanwhile; yields the names restarted."""
    stop = threading.Event()
    restarted: list[str] = []

    def watch() -> None:
        while not stop.wait(0.2):
            for name, process in list(stack.services.items()):
                if stop.is_set():  # the stack may be stopping: restart nothing more
                    return
                if process.running:
                    continue
                restarted.append(name)
                try:
                    stack.start_service(name)
                except Exception as err:  # killed again while starting: look again
                    print(f"restarting {name}: {err}")

    watcher = threading.Thread(target=watch, name="restarter", daemon=True)
    watcher.start()
    try:
        yield restarted
    finally:
        # Also when the test failed: a restarter left running would start
        # processes of a stack that has been stopped, outliving the session.
        stop.set()
        # A restart under way waits for its process to be ready (up to a minute).
        watcher.join(timeout=90)
    assert not watcher.is_alive(), "the restarter did not stop"


def expected_resources(providers: Providers, tid: str, tier: str) -> list[str]:
    """What is wrong with an ACTIVE tenant's resources: missing, extra or duplicated."""
    held = providers.orphans(tid)
    identity = "keycloak realm" if providers.keycloak else "identity rows"
    wanted = {
        "bucket",
        "dns records",
        "schema",
        "database role",
        "database secret",
        identity,
        "resource records",
    }
    if tier != "pooled":
        wanted |= {"ecs services", "task definitions"}
    if tier == "silo":
        wanted.add("iac state")
    wrong = [f"missing {w}" for w in sorted(wanted - set(held))]
    wrong += [f"unexpected {w}" for w in sorted(set(held) - wanted)]
    if held.get("identity rows", 3) != 3:
        wrong.append(f"identity rows {held['identity rows']} (want 3: one realm, client, admin)")
    if held.get("dns records") and held["dns records"] != {f"{tid}.{DNS_ZONE}"}:
        wrong.append(f"dns records {held['dns records']}")
    for kind in ("ecs services", "task definitions"):
        if len(held.get(kind) or [None]) != 1:  # type: ignore[arg-type]
            wrong.append(f"{kind} {held.get(kind)}")
    return wrong


def run_case(
    case: Case, api: tenant_service_pb2_grpc.TenantServiceStub, providers: Providers, rules: Path
) -> Outcome:
    tid = f"m-{uuid.uuid4().hex[:10]}"
    outcome = Outcome(case, tid)
    try:
        if case.phase == "provision":
            provision_case(case, tid, api, providers, rules, outcome)
        else:
            deprovision_case(case, tid, api, providers, rules, outcome)
    except Exception as err:  # a case that breaks is a finding of the matrix, not an abort of it
        outcome.fail(f"{type(err).__name__}: {err}")
    finally:
        inject_failure(rules, tid, None)
    return outcome


def provision_case(
    case: Case,
    tid: str,
    api: tenant_service_pb2_grpc.TenantServiceStub,
    providers: Providers,
    rules: Path,
    outcome: Outcome,
) -> None:
    inject_failure(rules, tid, case.rule())
    create(api, tid, plan_tier=TIERS[case.tier])
    tenant = settle(api, tid, timeout=SETTLE_TIMEOUT)
    outcome.state = State.Name(tenant.state).removeprefix("STATE_")
    # A notice never fails a tenant; a fault that a retry gets past neither.
    recovers = case.step in NOTICES or case.mode in ("timeout_after", "crash_after")
    if recovers:
        if tenant.state != State.STATE_ACTIVE:
            outcome.fail(f"want ACTIVE, got {outcome.state} ({tenant.failed_step}: {tenant.failure_reason})")
        wrong = expected_resources(providers, tid, case.tier)
        outcome.orphans = "none extra" if not wrong else "; ".join(wrong)
        if wrong:
            outcome.fail(outcome.orphans)
        if case.step in NOTICES and case.mode in ("before", "after"):
            status = {s.step: s.status for s in tenant.steps}
            outcome.said = "send_welcome FAILED"
            if status.get("send_welcome") != tenant_pb2.STEP_STATUS_FAILED:
                outcome.fail("the failed welcome is not shown")
        return
    outcome.said = f"{tenant.failed_step}: {tenant.failure_reason[:40]}"
    if tenant.state != State.STATE_PROVISION_FAILED:
        outcome.fail(f"want PROVISION_FAILED, got {outcome.state}")
    if tenant.failed_step != case.step or "injected failure" not in tenant.failure_reason:
        outcome.fail(f"does not say what happened: {tenant.failed_step!r}: {tenant.failure_reason!r}")
    if tenant.leftover_resources:
        outcome.fail(f"leftovers {list(tenant.leftover_resources)}")
    left = providers.orphans(tid)
    outcome.orphans = "none" if not left else str(left)
    if left:
        outcome.fail(f"orphans {left}")


def deprovision_case(
    case: Case,
    tid: str,
    api: tenant_service_pb2_grpc.TenantServiceStub,
    providers: Providers,
    rules: Path,
    outcome: Outcome,
) -> None:
    create(api, tid, plan_tier=TIERS[case.tier])
    if (state := settle(api, tid, timeout=SETTLE_TIMEOUT).state) != State.STATE_ACTIVE:
        outcome.fail(f"could not provision: {State.Name(state)}")
        return
    everything = providers.orphans(tid)
    inject_failure(rules, tid, case.rule())
    refused = None
    try:
        delete(api, tid, grace=case.step in GRACE_STEPS)
    except grpc.RpcError as err:
        refused = err
    tenant = settle(api, tid, timeout=SETTLE_TIMEOUT)
    outcome.state = State.Name(tenant.state).removeprefix("STATE_")
    stops = case.mode in ("before", "after") and case.step not in NOTICES
    # MarkDeprovisioned that did its work: the tenant is gone, which is the truth.
    stops = stops and not (case.step == "mark_deprovisioned" and case.mode == "after")
    if (
        stops
        and case.step in UNCLAIMED_STEPS
        and not (case.step == "mark_deprovisioning" and case.mode == "after")
    ):
        # The run could not take the tenant over: the request says so, the tenant is untouched.
        outcome.said = f"DeleteTenant {refused.code().name if refused else 'OK'}"
        if refused is None or details(refused)[0].reason != "OPERATION_FAILED":
            outcome.fail(f"want OPERATION_FAILED from DeleteTenant, got {refused!r}")
        held = providers.orphans(tid)
        if tenant.state != State.STATE_ACTIVE or held != everything:
            outcome.fail(f"the tenant changed: {outcome.state}, held {held} (had {everything})")
    elif stops:
        outcome.said = f"{tenant.failed_step}: {tenant.failure_reason[:40]}"
        if tenant.state != State.STATE_DEPROVISION_FAILED:
            outcome.fail(f"want DEPROVISION_FAILED, got {outcome.state}")
        if tenant.failed_step != case.step or "injected failure" not in tenant.failure_reason:
            outcome.fail(f"does not say what happened: {tenant.failed_step!r}: {tenant.failure_reason!r}")
        if case.step in BACKUP_STEPS:
            if "the backup could not be taken" not in tenant.failure_reason:
                outcome.fail("a failed backup does not say so")
            if (held := providers.orphans(tid)) != everything:
                gone = {k: v for k, v in everything.items() if held.get(k) != v}
                outcome.fail(
                    f"something was removed although the backup could not be taken: {gone}, now {held}"
                )
    elif tenant.state != State.STATE_DEPROVISIONED:
        outcome.fail(
            f"want DEPROVISIONED, got {outcome.state} ({tenant.failed_step}: {tenant.failure_reason})"
        )
    if tenant.state != State.STATE_DEPROVISIONED:
        # The cause is fixed; DeleteTenant again resumes (or starts) the deletion.
        inject_failure(rules, tid, None)
        delete(api, tid, grace=False)
        tenant = settle(api, tid, timeout=SETTLE_TIMEOUT)
        outcome.state += f" → {State.Name(tenant.state).removeprefix('STATE_')}"
        if tenant.state != State.STATE_DEPROVISIONED:
            outcome.fail(f"a second DeleteTenant ended {State.Name(tenant.state)}: {tenant.failure_reason}")
    left = providers.orphans(tid)
    outcome.orphans = "none" if not left else str(left)
    if left:
        outcome.fail(f"orphans {left}")
    if tenant.state == State.STATE_DEPROVISIONED and sorted(b.kind for b in tenant.backups) != [
        "db_schema",
        "identity",
    ]:
        outcome.fail(f"backups {[b.kind for b in tenant.backups]}")


def delete(api: tenant_service_pb2_grpc.TenantServiceStub, tid: str, *, grace: bool) -> None:
    request = tenant_service_pb2.DeleteTenantRequest(name=f"tenants/{tid}", hard_delete=not grace)
    if grace:
        request.grace_period.CopyFrom(Duration(seconds=1))
    api.DeleteTenant(request, timeout=60)


def report(phase: str, mode: str, outcomes: list[Outcome]) -> None:
    path = os.environ.get("TENANTRY_FAULT_MATRIX_REPORT")
    if not path:
        return
    rows = [
        f"| {phase} | {o.case.tier} | {o.case.step} | {mode} | {o.state} | {o.said} | {o.orphans} |"
        f" {'ok' if not o.problems else 'FAIL: ' + '; '.join(o.problems)} |"
        for o in outcomes
    ]
    with _REPORT_LOCK, open(path, "a") as out:
        out.write("\n".join(rows) + "\n")


def run_batch(
    batch: list[Case],
    api: tenant_service_pb2_grpc.TenantServiceStub,
    providers: Providers,
    rules: Path,
    restarted: list[str],
    label: str,
) -> None:
    """Runs the cases concurrently, reports them, and fails with every case that went wrong."""
    with ThreadPoolExecutor(max_workers=CONCURRENCY[batch[0].mode]) as pool:
        outcomes = list(pool.map(lambda c: run_case(c, api, providers, rules), batch))
    if batch[0].mode == "crash_after":
        # Every case's fault fired, killing the worker of its step (two at
        # once in one worker are one death, so the restarts may be fewer). A
        # case that never got that far says why among its own problems.
        fired = {m.name.split(".", 1)[0] for m in fired_dir(rules).glob("*.crash_after")}
        for outcome in outcomes:
            if outcome.tid not in fired:
                outcome.fail("its crash never fired")
        assert restarted
    report(label, batch[0].mode, outcomes)
    bad = [o for o in outcomes if o.problems]
    assert not bad, "\n".join(f"{o.case.tier}/{o.case.step}: {'; '.join(o.problems or [])}" for o in bad)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("phase", ["provision", "deprovision"])
def test_every_step_under_every_fault_settles_and_leaves_nothing_behind(
    api: tenant_service_pb2_grpc.TenantServiceStub,
    providers: Providers,
    fault_rules: Path,
    restarting: list[str],
    phase: str,
    mode: str,
) -> None:
    run_batch(cases(phase, mode), api, providers, fault_rules, restarting, phase)
