"""`make bench`: every performance figure of issue 11 in one table.

Runs, one after the other on a stack of its own each: provisioning
throughput and CPU against the raw-Temporal baseline (tests/bench/provision.py),
watchers and reads (tests/bench/reads.py), a registry of 100,000 tenants
(tests/bench/registry_scale.py). Each row names the command that reproduces it.
"""

from __future__ import annotations

import argparse
import asyncio

from tests.bench import provision, reads, registry_scale


def table(rows: list[dict[str, str]]) -> str:
    lines = ["| figure | value | goal | command |", "|---|---|---|---|"]
    lines += [f"| {r['figure']} | {r['value']} | {r['goal']} | `{r['command'].strip('`')}` |" for r in rows]
    return "\n".join(lines)


async def everything(tenants: int, registry_tenants: int) -> list[dict[str, str]]:
    rows = await provision.rows(tenants)
    rows += await reads.rows()
    rows += await registry_scale.run(registry_tenants)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=100, help="provisioned per throughput run")
    parser.add_argument("--registry-tenants", type=int, default=100_000)
    args = parser.parse_args()
    rows = asyncio.run(everything(args.tenants, args.registry_tenants))
    print("\n" + table(rows))


if __name__ == "__main__":
    main()
