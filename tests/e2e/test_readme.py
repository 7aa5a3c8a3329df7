"""The README's examples, run as written: every `.venv/bin/tenantry` and
`buf curl` command of its ```sh blocks, in order, against the end-to-end
stack, each expected to exit as its comment says (`# exits N`; else 0).

The examples' tenant ids become fresh ones (the session stack is shared),
and the dev stack's address, credentials (`S=`) and fault-injection file
(`F=`) become this stack's. An example that stops working fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.devstack.stack import Stack

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# What a README example calls; a block with one of these is run (a bare
# `tenantry` or `buf`, not on the PATH of a fresh clone, fails there).
VERBS = "create|get|list|watch|delete|undelete|suspend|resume|cancel|retry|cleanup|events"
CALLS = re.compile(
    rf"^\s*(\.venv/bin/tenantry\s|tenantry\s+(-\S+\s+)*({VERBS})\b|(\.venv/bin/)?buf\s+curl\s|grpcurl\s)",
    re.M,
)
# The example tenant ids, the dev stack's address and its files, as the README writes them.
EXAMPLE_IDS = ("acme", "beta", "globex")
DEV_ADDRESS = "127.0.0.1:50051"
SECRETS = "S=.state/secrets"
FAULTS = "F=.state/faults.json"
EXITS = re.compile(r"#[^'\"\n]*\bexits (\d+)\b")
ASSIGNMENT = re.compile(r"^[A-Z][A-Z0-9_]*=\S+$")
# Beyond what a deletion or a cancelled slow step needs.
COMMAND_TIMEOUT = 90


@dataclass(frozen=True)
class Command:
    text: str  # as in the README, continuation lines included
    line: int  # where it starts in README.md

    @property
    def exits(self) -> int:
        found = EXITS.search(self.text)
        return int(found.group(1)) if found else 0


@dataclass(frozen=True)
class Block:
    line: int
    commands: tuple[Command, ...]


def fenced_blocks(text: str) -> Iterator[tuple[str, int, str]]:
    """(language, first line number, body) of every fenced block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^\s*```(\S*)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        start = i + 1
        i = start
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            i += 1
        yield opening.group(1), start + 1, "\n".join(lines[start:i])
        i += 1


def commands(body: str, first_line: int) -> list[Command]:
    """The shell commands of a block: continuation lines (a trailing `\\`, an
    open quote) joined; comment lines on their own are notes for the reader."""
    found: list[Command] = []
    current: list[str] = []
    start = first_line
    for number, line in enumerate(body.splitlines(), first_line):
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not current:
            start = number
        current.append(line)
        text = "\n".join(current)
        if text.rstrip().endswith("\\"):
            continue
        try:
            shlex.split(text, comments=True)
        except ValueError:
            continue  # a quote left open: the command goes on
        found.append(Command(text, start))
        current = []
    assert not current, f"README.md:{start}: a command that never ends"
    return found


def readme_blocks() -> list[Block]:
    blocks = []
    for language, line, body in fenced_blocks(README.read_text()):
        if not CALLS.search(body):
            continue
        assert language == "sh", f"README.md:{line}: an example outside a ```sh block is not run here"
        blocks.append(Block(line, tuple(commands(body, line))))
    return blocks


BLOCKS = readme_blocks()


def test_the_readme_examples_are_found() -> None:
    """The parser sees the story the README tells (a broken parse would test nothing)."""
    found = [c.text for b in BLOCKS for c in b.commands]
    assert len(BLOCKS) >= 3
    assert ".venv/bin/tenantry list" in found
    for verb in ("create", "get", "watch", "suspend", "resume", "delete", "undelete", "events"):
        assert any(re.match(rf"\.venv/bin/tenantry {verb} acme\b", c) for c in found), verb
    for verb in ("cancel", "retry", "cleanup"):
        assert any(re.match(rf"\.venv/bin/tenantry {verb} beta\b", c) for c in found), verb
    assert sum(".venv/bin/buf curl" in c for c in found) >= 3
    assert not any(c.startswith("grpcurl") for c in found), "grpcurl is not installed by make install"
    retries = [c.exits for b in BLOCKS for c in b.commands if "tenantry retry beta" in c.text]
    assert retries == [1, 0]


def substitutions(stack: Stack, fault_rules: Path) -> dict[str, str]:
    assert stack.access is not None
    secrets = stack.access.ca.ca_file.parent
    for name, path in (
        ("ca.pem", stack.access.ca.ca_file),
        ("dev-admin.pem", stack.access.admin.cert),
        ("dev-admin-key.pem", stack.access.admin.key),
    ):
        assert secrets / name == path, f"the README's $S/{name} is not this stack's {path}"
    run = uuid.uuid4().hex[:8]
    return {
        **{example: f"rd-{example}-{run}" for example in EXAMPLE_IDS},
        DEV_ADDRESS: stack.grpc_address,
        SECRETS: f"S={shlex.quote(str(secrets))}",
        FAULTS: f"F={shlex.quote(str(fault_rules))}",
    }


def substituted(text: str, values: dict[str, str]) -> str:
    for old, new in values.items():
        pattern = rf"\b{re.escape(old)}\b" if old in EXAMPLE_IDS else re.escape(old)
        text = re.sub(pattern, lambda _, new=new: new, text)
    return text


@pytest.mark.timeout(300)
@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}" for b in BLOCKS])
def test_a_readme_example_runs_as_written(block: Block, stack: Stack, fault_rules: Path) -> None:
    values = substitutions(stack, fault_rules)
    assert stack.access is not None
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TENANTRY_")},
        **stack.access.client_env(),
        "TENANTRY_ADDRESS": stack.grpc_address,
    }
    rules_before = fault_rules.read_bytes()
    # Assignments (`S=...`) hold for the rest of the block, as in one shell.
    prelude: list[str] = []
    try:
        for command in block.commands:
            script = substituted(command.text, values)
            if ASSIGNMENT.match(script.strip()):
                prelude.append(script.strip())
                continue
            done = subprocess.run(
                ["bash", "-c", "set -o pipefail\n" + "\n".join([*prelude, script])],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
            )
            said = f"README.md:{command.line}: {script}\nexit {done.returncode}\n{done.stdout}{done.stderr}"
            assert done.returncode == command.exits, said
            # The output names the tenant it is about (its format is the CLI's own).
            named = [values[e] for e in EXAMPLE_IDS if values[e] in script]
            if named and " events " not in f" {script} " and not script.startswith("echo "):
                assert named[0] in done.stdout + done.stderr, said
    finally:
        # Other tests' fault rules, as they were (replaced whole: workers read it at any time).
        partial = fault_rules.with_name(fault_rules.name + ".partial")
        partial.write_bytes(rules_before)
        os.replace(partial, fault_rules)
