"""CPU cost of payload encryption (libs/codec.py) per provisioning run. Part
of `make bench`; `python -m tests.bench.codec --runs N`.

A recorded history of one pooled provisioning run (every workflow and
activity input and result, memo and failure payload of it) is encoded and
decoded N times with the codec every process uses; the figures are CPU ms
per run, so they add to each run's cost in the workers, the API and the
orchestrator together (each payload is encoded once and decoded about once
by its reader; a worker replaying a history from cache miss decodes again).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.api.history.v1 import MarkerRecordedEventAttributes
from temporalio.client import WorkflowHistory

from libs.codec import EncryptionCodec, new_key_ring

HISTORY = Path(__file__).parents[1] / "replay" / "histories" / "provision_pooled_audited.json"


# Not run through a codec: search attributes (the server indexes them) and
# markers (the SDK core writes and reads a patch marker's details itself).
_UNCODED = (SearchAttributes, MarkerRecordedEventAttributes)


def payloads_of(message: Message) -> Iterator[Payload]:
    """Every payload in `message` that the codec encodes, in place."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            values = value.values()
            if field.message_type.fields_by_name["value"].message_type is None:
                continue
        elif field.is_repeated:
            values = value
        else:
            values = [value]
        for item in values:
            if isinstance(item, Payload):
                yield item
            elif not isinstance(item, _UNCODED):
                yield from payloads_of(item)


def history_payloads(history: WorkflowHistory) -> list[Payload]:
    return [p for event in history.events for p in payloads_of(event)]


async def measure(runs: int) -> dict[str, list[float]]:
    history = WorkflowHistory.from_json(HISTORY.stem, HISTORY.read_text())
    originals = history_payloads(history)
    codec = EncryptionCodec(new_key_ring())
    times: dict[str, list[float]] = {"encode": [], "decode": []}
    for _ in range(runs):
        start = time.process_time()
        sealed = await codec.encode(originals)
        middle = time.process_time()
        opened = await codec.decode(sealed)
        end = time.process_time()
        assert opened == originals
        times["encode"].append((middle - start) * 1000)
        times["decode"].append((end - middle) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    history = WorkflowHistory.from_json(HISTORY.stem, HISTORY.read_text())
    payloads = history_payloads(history)
    size = sum(p.ByteSize() for p in payloads)
    times = asyncio.run(measure(args.runs))
    print(
        f"codec: {len(payloads)} payloads ({size / 1024:.1f} KiB) of one provisioning run, {args.runs} runs"
    )
    for what, values in times.items():
        ordered = sorted(values)
        p95 = ordered[int(len(ordered) * 0.95) - 1] if len(ordered) >= 20 else ordered[-1]
        print(
            f"  {what:<6} CPU ms per run: median {statistics.median(values):.3f}, p95 {p95:.3f}, "
            f"per payload {statistics.median(values) / len(payloads) * 1000:.1f} µs"
        )


if __name__ == "__main__":
    main()
