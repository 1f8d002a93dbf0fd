"""Choosing a record's partition, exactly as Kafka's Java producer does.

Rules, in order (clients/src/main/java/org/apache/kafka/clients/producer/KafkaProducer.java
``partition``; clients/src/main/java/org/apache/kafka/clients/producer/internals/BuiltInPartitioner.java):

1. An explicit ``partition`` is honoured; one outside ``[0, partitions)`` raises
   ``UnknownTopicOrPartitionError`` (Kafka's producer waits for metadata holding it and times out;
   kafka-python raises a ValueError — we raise the typed error at once).
2. A user ``partitioner`` (kafka-python's signature, see ``UserPartitioner``) decides every other
   record, keyed or not.
3. A keyed record goes to ``toPositive(murmur2(key)) % partitions``
   (BuiltInPartitioner.partitionForKey; murmur2 and toPositive are
   clients/src/main/java/org/apache/kafka/common/utils/Utils.java), so a key lands on the partition
   Kafka's own producer would choose.
4. A record without key goes to the topic's *sticky* partition, which changes when a batch of that
   partition completes (is handed to the engine: full, lingered, flushed). This is KIP-480's rule
   (StickyPartitionCache: the next partition is a random one different from the previous one). We do
   not take KIP-794's refinement (BuiltInPartitioner switches after ``batch.size`` bytes and weighs
   partitions by broker queue sizes): there are no broker queues here, and with batches cut at
   ``batch_size`` both rules switch at the same records when a producer is busy.

``murmur2`` here is the reference (pure Python); ``pylog._native.murmur2`` (native/src/
producer_partitioner.rs) is its Rust twin, and tests/test_partitioner.py holds both to Kafka's vectors.

Thread-safety: ``StickyPartitions`` is used under the producer core's lock; the functions are pure.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Any

from pylog.errors import UnknownTopicOrPartitionError

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes | bytearray | memoryview) -> int:
    """Kafka's ``Utils.murmur2``: a signed 32-bit result, as Java's ``int``."""
    data = bytes(data)
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    tail = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:tail]):
        k = (k * _M) & _MASK32
        k ^= k >> 24
        k = (k * _M) & _MASK32
        h = ((h * _M) & _MASK32) ^ k
    rest = length & 3
    if rest:
        if rest == 3:
            h ^= data[tail + 2] << 16
        if rest >= 2:
            h ^= data[tail + 1] << 8
        h ^= data[tail]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(n: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit (not ``abs``: ``abs(MIN_VALUE)`` overflows)."""
    return n & 0x7FFFFFFF


def partition_for_key(key: bytes | bytearray | memoryview, partitions: int) -> int:
    """BuiltInPartitioner.partitionForKey."""
    return to_positive(murmur2(key)) % partitions


def check_explicit_partition(topic: str, partition: object, partitions: int) -> int:
    """An explicit ``partition=`` argument: an int in ``[0, partitions)``."""
    if isinstance(partition, bool) or not isinstance(partition, int):
        raise TypeError(f"partition must be an int, not {type(partition).__name__}")
    if not 0 <= partition < partitions:
        raise UnknownTopicOrPartitionError(
            f"partition {partition} of topic {topic!r} does not exist (the topic has {partitions})"
        )
    return partition


class StickyPartitions:
    """KIP-480's sticky partition per topic (StickyPartitionCache)."""

    def __init__(self, rng: random.Random | None = None):
        self._rng = rng or random.Random()
        self._current: dict[str, int] = {}

    def partition(self, topic: str, partitions: int) -> int:
        current = self._current.get(topic)
        if current is None or current >= partitions:
            current = self._current[topic] = self._rng.randrange(partitions)
        return current

    def batch_completed(self, topic: str, partition: int, partitions: int) -> None:
        """A batch of ``partition`` completed: if it was the sticky one, pick another (a random
        partition different from it, as StickyPartitionCache.nextPartition)."""
        if self._current.get(topic) != partition:
            return
        if partitions <= 1:
            self._current[topic] = 0
            return
        choice = self._rng.randrange(partitions - 1)
        self._current[topic] = choice + 1 if choice >= partition else choice


class ClusterView:
    """The ``cluster`` argument a kafka-python partitioner receives: every partition is available
    (an embedded log has no leaders to lose)."""

    def __init__(self, topic: str, partitions: int):
        self._topic = topic
        self._partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {self._topic}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self._partitions) if topic == self._topic else None

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return set(self._partitions) if topic == self._topic else set()


class UserPartitioner:
    """Adapts kafka-python's partitioner shapes to one call ``(topic, key, serialized_key, value,
    serialized_value, partitions) -> int``:

    - an object with ``partition(topic, key, serialized_key, value, serialized_value, cluster)``
      (kafka-python 3's ``kafka.partitioner.Partitioner``; ``on_new_batch(topic, cluster,
      prev_partition)`` is called when a batch completes, if it exists);
    - a plain callable ``partitioner(serialized_key, all_partitions, available_partitions)``
      (kafka-python 1.x/2.0's signature; the lists are sorted partition ids).
    """

    def __init__(self, partitioner: Any):
        method = getattr(partitioner, "partition", None)
        if callable(method):
            self._object: Any = partitioner
            self._callable: Callable[..., Any] | None = None
        elif callable(partitioner):
            self._object = None
            self._callable = partitioner
        else:
            raise TypeError("partitioner must have a partition() method or be callable")

    def __call__(
        self, topic: str, key: Any, serialized_key: Any, value: Any, serialized_value: Any, partitions: int
    ) -> int:
        if self._callable is not None:
            ids = list(range(partitions))
            chosen = self._callable(serialized_key, ids, ids)
        else:
            chosen = self._object.partition(
                topic, key, serialized_key, value, serialized_value, ClusterView(topic, partitions)
            )
        if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < partitions:
            raise UnknownTopicOrPartitionError(
                f"the partitioner chose partition {chosen!r} for topic {topic!r}, which has {partitions}"
            )
        return chosen

    def batch_completed(self, topic: str, partition: int, partitions: int) -> None:
        hook = getattr(self._object, "on_new_batch", None) if self._object is not None else None
        if hook is not None:
            hook(topic, ClusterView(topic, partitions), partition)
