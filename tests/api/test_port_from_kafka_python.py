"""A small kafka-python program, ported by changing only how its clients are constructed.

The issue's promise: ``KafkaProducer(bootstrap_servers=..., **config)`` becomes
``log.producer(**config)`` and ``KafkaConsumer(*topics, bootstrap_servers=..., **config)`` becomes
``log.consumer(*topics, **config)``; every other line of the program (sends, futures, iteration,
commits, offsets, the kafka-python types) stays as it was written for kafka-python 3.0. The program
below is such a port: a json order feed and a billing consumer group that commits after each
record, stops when the feed is idle (``consumer_timeout_ms``), and is restarted to show that it
resumes after its committed offsets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pylog
from pylog import OffsetAndMetadata, TopicPartition  # was: from kafka import ...
from pylog.errors import CommitFailedError  # was: from kafka.errors import ...

TOPIC = "orders"


def produce_orders(make_producer: Callable[..., Any], count: int) -> list[Any]:
    """kafka-python code: a json producer with string keys, waiting on every future."""
    producer = make_producer(
        value_serializer=lambda v: json.dumps(v).encode("utf-8"),
        key_serializer=lambda k: k.encode("utf-8"),
        acks="all",
        linger_ms=5,
        retries=3,
    )
    futures = [
        producer.send(TOPIC, {"id": i, "amount": 10 * i}, key=f"customer-{i % 3}") for i in range(count)
    ]
    producer.flush()
    metadata = [f.get(timeout=10) for f in futures]
    producer.close()
    return metadata


def bill(
    make_consumer: Callable[..., Any], idle_ms: int
) -> tuple[list[dict], dict[TopicPartition, int | None], dict]:
    """kafka-python code: a group member that commits after processing each record."""
    consumer = make_consumer(
        TOPIC,
        group_id="billing",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=idle_ms,
        value_deserializer=lambda m: json.loads(m.decode("utf-8")),
        key_deserializer=lambda k: k.decode("utf-8"),
    )
    seen = []
    for message in consumer:
        seen.append({"key": message.key, "partition": message.partition, **message.value})
        tp = TopicPartition(message.topic, message.partition)
        try:
            consumer.commit({tp: OffsetAndMetadata(message.offset + 1, "", -1)})
        except CommitFailedError:  # a rebalance took the partition: the next owner redoes it
            continue
    partitions = [TopicPartition(TOPIC, p) for p in sorted(consumer.partitions_for_topic(TOPIC))]
    committed = {tp: consumer.committed(tp) for tp in partitions}
    end = consumer.end_offsets(partitions)
    consumer.close()
    return seen, committed, end


def test_kafka_python_program_ports_by_changing_constructors(log: pylog.Log) -> None:
    # why more on a broker: the iteration's idle timeout also counts the group join (FindCoordinator,
    # JoinGroup, SyncGroup, OffsetFetch round trips) before the first record, as kafka-python's does
    idle_ms = 3000 if log.engine == "kafka" else 500
    log.create_topic(TOPIC, partitions=3)

    metadata = produce_orders(log.producer, 30)  # was: lambda **c: KafkaProducer(bootstrap_servers=..., **c)
    assert [m.topic for m in metadata] == [TOPIC] * 30
    assert {m.partition for m in metadata} <= {0, 1, 2}

    # was: lambda *t, **c: KafkaConsumer(*t, bootstrap_servers=..., **c)
    seen, committed, end = bill(log.consumer, idle_ms)
    assert sorted(r["id"] for r in seen) == list(range(30))
    assert sum(r["amount"] for r in seen) == 10 * sum(range(30))
    by_key_partition = {(r["key"], r["partition"]) for r in seen}
    assert len({key for key, _ in by_key_partition}) == len(by_key_partition)  # one partition per key
    assert committed == end
    assert all(isinstance(offset, int) for offset in committed.values())
    assert sum(end.values()) == 30

    # the same program restarted: it resumes after its commits and finds nothing new
    produce_orders(log.producer, 3)
    again, committed, end = bill(log.consumer, idle_ms)
    assert sorted(r["id"] for r in again) == [0, 1, 2]
    assert committed == end
