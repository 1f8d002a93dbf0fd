"""What a command wrote, read back with the library (``Consumer.poll`` on the same directory), so
the command tests compare records, not the command's own report (produce, consume)."""

from __future__ import annotations

import pylog
from pylog import TopicPartition


def read_all(path, topic: str) -> list:
    """Every record of ``topic``, by partition then offset."""
    with pylog.open(path, auto_create_topics=False) as log:
        consumer = log.consumer(auto_offset_reset="earliest", enable_auto_commit=False)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        records = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for got in consumer.poll(timeout_ms=100, max_records=100_000).values():
                records.extend(got)
        return sorted(records, key=lambda r: (r.partition, r.offset))
