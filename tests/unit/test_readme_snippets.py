"""The README's Go and TypeScript examples are the tested ones: each is the
region between `README: begin` and `README: end` of a client suite that
`make test` runs against the live stack (tests/e2e/test_client_go.py,
test_client_ts.py), quoted verbatim (dedented)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "go": ROOT / "clients" / "go" / "lifecycle_test.go",
    "ts": ROOT / "clients" / "ts" / "test" / "lifecycle.test.ts",
}


def region(source: Path) -> str:
    lines = source.read_text().splitlines(keepends=True)
    begin = next(i for i, line in enumerate(lines) if line.strip() == "// README: begin")
    end = next(i for i, line in enumerate(lines) if line.strip() == "// README: end")
    assert begin < end, f"{source}: README: begin must come before README: end"
    # Go indents with tabs; the README with four spaces.
    return textwrap.dedent("".join(lines[begin + 1 : end]).expandtabs(4))


@pytest.mark.parametrize("language", sorted(EXAMPLES))
def test_the_readme_quotes_the_tested_example(language: str) -> None:
    block = f"```{language}\n{region(EXAMPLES[language])}```\n"
    assert block in (ROOT / "README.md").read_text(), (
        f"README.md must quote {EXAMPLES[language].relative_to(ROOT)}'s README region as:\n{block}"
    )
