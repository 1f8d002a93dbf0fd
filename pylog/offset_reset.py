"""The rule of ``reset_offsets`` (kafka-consumer-groups.sh ``--reset-offsets``), shared by backends.

tools/src/main/java/org/apache/kafka/tools/consumer/group/ConsumerGroupCommand.java: the target
(``--to-earliest``, ``--to-latest``, ``--to-offset``, ``--to-datetime``, ``--shift-by``) is
computed per partition from its log start, end, the offset found for a timestamp and the
committed offset, then clamped to ``[start, end]`` (the tool's ``checkOffsetsRange``). Each
backend gathers those numbers its own way (engine handles; Kafka's ListOffsets) and applies the
result its own way; the arithmetic lives here once. Pure functions; thread-safe.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping

from pylog.errors import NoOffsetForPartitionError, UnknownTopicOrPartitionError
from pylog.types import TopicPartition


def reset_target(to: object) -> tuple[str, int]:
    """``reset_offsets``'s ``to`` as ``(kind, amount)``: ``("earliest"|"latest", 0)``,
    ``("offset", n)``, ``("timestamp", ms)`` (from ``{"timestamp": ms}`` or an aware
    ``datetime``) or ``("shift", n)`` (from ``{"shift": n}``). A naive datetime is a
    ``ValueError`` (which zone would it be?); anything else a ``TypeError``."""
    if isinstance(to, str) and to in ("earliest", "latest"):
        return to, 0
    if _is_int(to):
        return "offset", int(to)  # type: ignore[call-overload]
    if isinstance(to, datetime.datetime):
        if to.tzinfo is None:
            raise ValueError("reset_offsets(to=datetime) needs an aware datetime (with tzinfo)")
        return "timestamp", int(to.timestamp() * 1000)
    if isinstance(to, Mapping) and len(to) == 1:
        ((key, value),) = to.items()
        if key in ("timestamp", "shift") and _is_int(value):
            return key, int(value)
    raise TypeError(
        "reset_offsets(to=...) takes 'earliest', 'latest', an int offset, {'timestamp': ms}, "
        f"{{'shift': n}} or an aware datetime: {to!r}"
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def checked_partitions(topic: str, count: int, partitions: Iterable[int]) -> list[int]:
    """``partitions`` of a topic of ``count`` partitions, each once, in order;
    ``UnknownTopicOrPartitionError`` for one it does not have."""
    if isinstance(partitions, (str, bytes)) or not isinstance(partitions, Iterable):
        raise TypeError(f"partitions must be an iterable of partition numbers, not {partitions!r}")
    chosen: list[int] = []
    for partition in partitions:
        if not _is_int(partition):
            raise TypeError(f"a partition number must be an int, not {partition!r}")
        if not 0 <= partition < count:
            raise UnknownTopicOrPartitionError(
                f"topic {topic!r} has no partition {partition} (it has {count}: 0..{count - 1})"
            )
        if partition not in chosen:
            chosen.append(partition)
    return sorted(chosen)


def reset_offset_targets(
    group_id: str,
    kind: str,
    amount: int,
    ranges: Mapping[TopicPartition, tuple[int, int, int | None]],
    committed: Mapping[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """The new committed offset of each partition of ``ranges`` (``tp -> (start, end, found)``,
    ``found`` the first offset at or after the timestamp of a ``"timestamp"`` target, else None)
    for ``(kind, amount)`` from ``reset_target``; ``committed`` the group's offsets now (a shift
    of a partition without one raises ``NoOffsetForPartitionError``)."""
    new: dict[TopicPartition, int] = {}
    for tp, (start, end, found) in ranges.items():
        if kind == "earliest":
            wanted = start
        elif kind == "latest":
            wanted = end
        elif kind == "timestamp":
            wanted = end if found is None else found
        elif kind == "shift":
            if tp not in committed:
                raise NoOffsetForPartitionError(
                    f"cannot shift the offset of {tp.topic}-{tp.partition} for group {group_id!r}: "
                    "it has no committed offset"
                )
            wanted = committed[tp] + amount
        else:
            wanted = amount
        new[tp] = min(max(wanted, start), end)
    return new
