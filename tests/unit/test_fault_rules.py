"""Reading the fault-injection rules file (libs/faults.py): a tenant's own
rules and the rules for every tenant (`"*"`)."""

from __future__ import annotations

import json
from pathlib import Path

from libs.faults import EVERY_TENANT, Rule, rules_for


def write(tmp_path: Path, rules: object) -> Path:
    path = tmp_path / "faults.json"
    path.write_text(json.dumps(rules))
    return path


def test_rules_for_every_tenant_apply_to_any_tenant_after_its_own(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "acme": "CreateBucket",
            EVERY_TENANT: [{"rpc": "CreateRealm", "mode": "delay_before", "seconds": 0.2, "once": False}],
        },
    )
    slow = Rule(rpc="CreateRealm", mode="delay_before", once=False, seconds=0.2)
    assert rules_for(path, "acme") == [Rule(rpc="CreateBucket"), slow]
    assert rules_for(path, "beta") == [slow]


def test_delay_before_fires_once_unless_the_rule_says_otherwise(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            EVERY_TENANT: [
                {"rpc": "A", "mode": "delay_before"},
                {"rpc": "B", "mode": "delay_before", "once": False},
            ]
        },
    )
    assert [rule.once for rule in rules_for(path, "any")] == [True, False]


def test_no_rules_without_a_readable_object(tmp_path: Path) -> None:
    assert rules_for(tmp_path / "missing.json", "acme") == []
    assert rules_for(write(tmp_path, ["*"]), "acme") == []
