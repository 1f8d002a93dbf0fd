"""The client layer's value types, with kafka-python's names and field orders.

Each is a named tuple (immutable, hashable where its fields are, cheap to build from Rust), so a
kafka-python program that unpacks or indexes them keeps working:

- ``TopicPartition(topic, partition)``: a dict key throughout the API.
- ``OffsetAndMetadata(offset, metadata, leader_epoch)``: what ``commit`` takes; ``offset`` is the
  *next* offset to read, as in Kafka. ``leader_epoch`` is -1 (pylog has no leaders).
- ``RecordMetadata``: what a producer's future resolves to.
- ``TopicDescription`` / ``PartitionDescription``: what ``Log.describe_topic`` returns (pylog's own).
- ``ConsumerRecord``: what ``poll`` returns. ``headers`` is a list of ``(str, bytes)`` pairs;
  ``serialized_*_size`` are -1 for a null key/value, as in Kafka; ``checksum`` is None (v2 batches
  carry one CRC per batch, not per record); ``leader_epoch`` is -1.
- ``OffsetAndTimestamp(offset, timestamp, leader_epoch)``: what ``offsets_for_times`` maps a
  partition to (kafka-python's ``kafka.structs.OffsetAndTimestamp``).
"""

from __future__ import annotations

from typing import NamedTuple


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class OffsetAndMetadata(NamedTuple):
    offset: int
    metadata: str = ""
    leader_epoch: int = -1


class RecordMetadata(NamedTuple):
    topic: str
    partition: int
    topic_partition: TopicPartition
    offset: int
    timestamp: int
    checksum: int | None
    serialized_key_size: int
    serialized_value_size: int
    serialized_header_size: int


class ConsumerRecord(NamedTuple):
    topic: str
    partition: int
    leader_epoch: int
    offset: int
    timestamp: int
    timestamp_type: int  # 0 CreateTime, 1 LogAppendTime
    key: object
    value: object
    headers: list[tuple[str, bytes | None]]
    checksum: int | None
    serialized_key_size: int
    serialized_value_size: int
    serialized_header_size: int


class OffsetAndTimestamp(NamedTuple):
    offset: int
    timestamp: int
    leader_epoch: int = -1


class PartitionDescription(NamedTuple):
    """One partition in ``Log.describe_topic``: its offsets now, its bytes on disk and, on a
    compacted topic, the cleaner's view (docs/compaction.md)."""

    partition: int
    start_offset: int
    end_offset: int
    size_bytes: int
    #: dirty / (clean + dirty) bytes of the sealed segments; None unless the policy has compact
    dirty_ratio: float | None = None
    #: the first dirty offset (``cleaner-offset-checkpoint``): every record below it is compacted;
    #: None unless the policy has compact
    clean_offset: int | None = None
    #: why the background cleaner skips this partition (its last error), or None
    uncleanable: str | None = None


class TopicDescription(NamedTuple):
    """What ``Log.describe_topic`` returns. ``topic_id`` is Kafka's Uuid string (as in each
    partition's ``partition.metadata``); ``config`` holds the topic's overrides under Kafka's names
    (``pylog.LogConfig.from_mapping(config)`` gives the effective settings)."""

    name: str
    topic_id: str
    partitions: tuple[PartitionDescription, ...]
    config: dict[str, object]


__all__ = [
    "ConsumerRecord",
    "OffsetAndMetadata",
    "OffsetAndTimestamp",
    "PartitionDescription",
    "RecordMetadata",
    "TopicDescription",
    "TopicPartition",
]
