"""Word count over a topic: a producer writes lines, a consumer counts the words.

    python examples/word_count.py [DIR]

Lines are keyed by their first word, so every line starting with the same word lands on the same
partition (Kafka's murmur2 partitioner). The consumer reads every partition from the beginning and
stops after one idle second (``consumer_timeout_ms``).
"""

from __future__ import annotations

import collections
import sys
import tempfile

import pylog

TEXT = """\
the log is the core abstraction
producers append records to the log
consumers read the log at their own pace
a table is the compacted log of its changes
"""


def main(directory: str) -> collections.Counter[str]:
    with pylog.open(directory) as log:
        log.create_topic("lines", partitions=3)
        with log.producer(value_serializer=str.encode, key_serializer=str.encode) as producer:
            for line in TEXT.splitlines():
                producer.send("lines", key=line.split()[0], value=line)

        counts: collections.Counter[str] = collections.Counter()
        consumer = log.consumer(
            "lines",
            group_id="word-count",
            auto_offset_reset="earliest",
            consumer_timeout_ms=1000,
            value_deserializer=bytes.decode,
        )
        with consumer:
            for record in consumer:  # ends after consumer_timeout_ms without records
                counts.update(record.value.split())
        return counts


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        counts = main(sys.argv[1] if len(sys.argv) > 1 else tmp)
    for word, n in counts.most_common(3):
        print(f"{word} {n}")
