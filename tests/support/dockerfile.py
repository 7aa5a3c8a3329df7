"""Reads deploy/Dockerfile into stages of instructions, so that tests check
and replay the file itself rather than a copy of what it says."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


@dataclass
class Instruction:
    keyword: str
    args: str

    def words(self) -> list[str]:
        """The arguments as a JSON array (exec form) or shell words."""
        if self.args.startswith("["):
            return list(json.loads(self.args))
        return shlex.split(self.args)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """ENV key=value pairs, in order (a later one wins)."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.args):
                key, _, value = word.partition("=")
                values[key] = value
        return values

    def args(self) -> dict[str, str]:
        """ARG defaults of this stage."""
        return dict(w.partition("=")[::2] for i in self.all("ARG") for w in i.words())

    def copies(self) -> list[tuple[str | None, list[str], str]]:
        """COPY instructions as (from stage or None for the context, sources, destination)."""
        found = []
        for instruction in self.all("COPY"):
            words = instruction.words()
            source_stage = None
            while words[0].startswith("--"):
                flag = words.pop(0)
                if flag.startswith("--from="):
                    source_stage = flag.removeprefix("--from=")
            found.append((source_stage, words[:-1], words[-1]))
        return found


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse(path: Path = DOCKERFILE) -> Dockerfile:
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), " ".join(rest.split())
        if keyword == "FROM":
            words = rest.split()
            stages.append(Stage(base=words[0], name=words[2] if len(words) == 3 else None))
        elif not stages and keyword == "ARG":
            name, _, default = rest.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append(Instruction(keyword, rest))
    return Dockerfile(global_args, stages)
