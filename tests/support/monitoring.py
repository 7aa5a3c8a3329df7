"""What deploy/ says about metrics: the dashboard's and the alert rules' PromQL."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "tenantry-rules.yaml"
DASHBOARD = DEPLOY / "grafana" / "tenantry.json"


def dashboard_expressions() -> list[str]:
    """Every query of every panel of the Grafana dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert len(found) >= 10, "the dashboard's panels were not found"
    return found


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def metric_names(expression: str) -> set[str]:
    """The Tenantry and Temporal metric names a PromQL expression selects
    (not its functions, labels, label values or durations)."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expression)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    return {
        n
        for n in re.findall(r"\b[a-z_][a-z0-9_]*\b(?!\s*\()", bare)
        if n.startswith(("tenantry_", "temporal_"))
    }
