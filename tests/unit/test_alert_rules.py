"""The alert rules in deploy/prometheus: valid for Prometheus (`promtool check
rules`), and each alert fires, and stays quiet, as its own unit test file says
(`promtool test rules`). promtool is built by `make promtool` (make test does)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from libs.devstack.promtool import find
from tests.support.monitoring import RULES, dashboard_expressions, metric_names

PROMETHEUS = RULES.parent
UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yaml"))

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def promtool() -> Path:
    found = find()
    assert found is not None, "promtool is missing: `make promtool` builds it into the cache"
    return found


def _run(promtool: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *map(str, args)], capture_output=True, text=True, timeout=60, cwd=PROMETHEUS
    )


def _alerts() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def test_the_rules_are_valid(promtool: Path) -> None:
    done = _run(promtool, "check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in done.stdout


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    """One test file per alert, and in it at least one case where it fires and one where it does not."""
    tested: dict[str, tuple[bool, bool]] = {}
    for path in UNIT_TESTS:
        spec = yaml.safe_load(path.read_text())
        assert spec["rule_files"] == ["../tenantry-rules.yaml"], path.name
        names = {case["alertname"] for test in spec["tests"] for case in test["alert_rule_test"]}
        assert len(names) == 1, f"{path.name} tests {sorted(names)}: one alert per file"
        (name,) = names
        cases = [case for test in spec["tests"] for case in test["alert_rule_test"]]
        tested[name] = (any(c["exp_alerts"] for c in cases), any(not c["exp_alerts"] for c in cases))
    assert sorted(tested) == sorted(_alerts())
    assert all(fires and quiet for fires, quiet in tested.values()), tested


@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=[p.name for p in UNIT_TESTS])
def test_an_alert_behaves_as_its_unit_test_says(promtool: Path, unit_test: Path) -> None:
    done = _run(promtool, "test", "rules", unit_test)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_dashboard_query_is_promql(promtool: Path) -> None:
    for expression in dashboard_expressions():
        done = _run(promtool, "--experimental", "promql", "format", expression)
        assert done.returncode == 0, f"{expression}\n{done.stderr}"
    assert _run(promtool, "--experimental", "promql", "format", "sum by (kind (up)").returncode != 0


def test_metric_names_are_read_from_promql() -> None:
    expression = (
        'sum by (tier) (increase(tenantry_run_duration_seconds_bucket{kind="provision", le="300"}[30m]))'
        " / on (tier) group_left sum(temporal_worker_task_slots_used)"
    )
    assert metric_names(expression) == {
        "tenantry_run_duration_seconds_bucket",
        "temporal_worker_task_slots_used",
    }


def test_a_broken_expectation_fails(promtool: Path, tmp_path: Path) -> None:
    """The unit tests can fail: an alert expected where none fires is reported."""
    spec = yaml.safe_load((PROMETHEUS / "tests" / "leftover-resources.test.yaml").read_text())
    spec["rule_files"] = [str(RULES)]
    quiet = next(c for c in spec["tests"][0]["alert_rule_test"] if not c["exp_alerts"])
    quiet["exp_alerts"] = [{"exp_labels": {"severity": "ticket"}}]
    broken = tmp_path / "broken.test.yaml"
    broken.write_text(yaml.safe_dump(spec))
    done = _run(promtool, "test", "rules", broken)
    assert done.returncode != 0
    assert "TenantryLeftoverResources" in done.stdout + done.stderr
