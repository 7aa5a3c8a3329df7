"""CPU time of each process of a benchmarked stack, read with psutil."""

from __future__ import annotations

import os
from collections.abc import Mapping

import psutil


def cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """User + system CPU seconds of a process and, with `tree`, of its live
    descendants and of the children it has reaped (PostgreSQL's backends)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)] if tree else [root]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            t = process.cpu_times()
        except psutil.NoSuchProcess:
            continue  # ended meanwhile: its parent counts it once reaped
        total += t.user + t.system
        if tree:
            total += t.children_user + t.children_system
    return total


class CpuMeter:
    """CPU seconds each named process spends between start() and stop().

    The benchmark's own process is counted without its children (they are
    the stack, counted by name)."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._started: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        return {name: cpu_seconds(pid, tree=pid != os.getpid()) for name, pid in self.pids.items()}

    def start(self) -> CpuMeter:
        self._started = self._read()
        return self

    def stop(self) -> dict[str, float]:
        now = self._read()
        self.spent = {name: now[name] - self._started[name] for name in self.pids}
        return self.spent


def table(per_run: Mapping[str, Mapping[str, float]], runs: Mapping[str, int]) -> str:
    """CPU ms per run by process, one column per measured phase (`per_run`: phase -> process -> seconds)."""
    phases = list(per_run)
    names = list(dict.fromkeys(n for spent in per_run.values() for n in spent))
    lines = [f"{'CPU ms per run':<18}" + "".join(f"{p:>14}" for p in phases)]
    for name in names:
        cells = "".join(
            f"{per_run[p][name] * 1000 / runs[p]:>14.1f}" if name in per_run[p] else f"{'-':>14}"
            for p in phases
        )
        lines.append(f"{name:<18}{cells}")
    totals = "".join(f"{sum(per_run[p].values()) * 1000 / runs[p]:>14.1f}" for p in phases)
    lines.append(f"{'total':<18}{totals}")
    return "\n".join(lines)
