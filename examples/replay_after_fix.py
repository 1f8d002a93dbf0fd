"""Replay after a fix: reprocess a topic from a point in time with corrected code.

    python examples/replay_after_fix.py [DIR]

A buggy consumer in group "totals" sums order amounts but drops the cents. After the fix we do not
need the orders again from anywhere else: the log still has them. We rewind the group to the first
order at or after a timestamp (``reset_offsets(..., to=<aware datetime>)``, Kafka's ListOffsets rule) and
reprocess exactly those records.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime

import pylog

BASE_MS = 1_700_000_000_000


def total(log: pylog.Log, amount_of) -> float:
    consumer = log.consumer(
        "orders",
        group_id="totals",
        auto_offset_reset="earliest",
        consumer_timeout_ms=500,
        enable_auto_commit=False,
    )
    with consumer:
        result = sum(amount_of(r.value) for r in consumer)
        consumer.commit()
    return result


def main(directory: str) -> tuple[float, float]:
    with pylog.open(directory) as log:
        log.create_topic("orders", partitions=2)
        with log.producer() as producer:
            for i in range(100):  # one order a second, 1.25 each
                producer.send("orders", value=b"1.25", timestamp_ms=BASE_MS + i * 1000)
        buggy = total(log, lambda v: int(float(v)))  # the bug: cents dropped
        # the fix: rewind the group to the orders of the last 50 seconds and reprocess them
        log.reset_offsets("totals", "orders", to=datetime.fromtimestamp((BASE_MS + 50_000) / 1000, UTC))
        fixed = total(log, lambda v: float(v))
        return buggy, fixed


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        buggy, fixed = main(sys.argv[1] if len(sys.argv) > 1 else tmp)
    print(f"buggy total of all orders {buggy:.2f}; replayed last 50 orders: {fixed:.2f}")
