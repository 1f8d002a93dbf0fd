"""The partitioner against Kafka: murmur2's vectors, kafka-python's murmur2, and the rules.

Vectors: apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java
(testMurmur2). kafka-python's ``kafka.partitioner.default.murmur2`` is an independent port of
Kafka's Utils.murmur2; the reference and the Rust twin must agree with it on any key.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from pylog import _native
from pylog.embedded import partitioner
from pylog.errors import UnknownTopicOrPartitionError

KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]

HASHES = {"reference": partitioner.murmur2, "native": _native.murmur2}


@pytest.mark.parametrize("impl", sorted(HASHES))
@pytest.mark.parametrize(("data", "expected"), KAFKA_VECTORS)
def test_murmur2_matches_kafkas_vectors(impl: str, data: bytes, expected: int) -> None:
    assert HASHES[impl](data) == expected


def _as_signed(h: int) -> int:
    h &= 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


@given(st.binary(max_size=80))
def test_murmur2_matches_kafka_python(data: bytes) -> None:
    expected = _as_signed(kafka_python_murmur2(data))
    assert partitioner.murmur2(data) == expected
    assert _native.murmur2(data) == expected
    assert _native.murmur2(bytearray(data)) == expected
    assert _native.murmur2(memoryview(data)) == expected


@given(st.binary(max_size=40), st.integers(min_value=1, max_value=1000))
def test_partition_for_key_is_kafkas_formula(key: bytes, partitions: int) -> None:
    expected = (kafka_python_murmur2(key) & 0x7FFFFFFF) % partitions
    assert partitioner.partition_for_key(key, partitions) == expected
    assert _native.partition_for_key(key, partitions) == expected


def test_to_positive_clears_the_sign_bit() -> None:
    assert partitioner.to_positive(-(2**31)) == 0
    assert partitioner.to_positive(-1) == 2**31 - 1
    assert partitioner.to_positive(5) == 5


def test_native_partition_for_key_refuses_bad_counts() -> None:
    with pytest.raises(ValueError):
        _native.partition_for_key(b"k", 0)
    with pytest.raises(TypeError):
        _native.murmur2("text")  # type: ignore[arg-type]


def test_explicit_partition_must_exist() -> None:
    assert partitioner.check_explicit_partition("t", 2, 3) == 2
    for bad in (3, -1):
        with pytest.raises(UnknownTopicOrPartitionError, match="partition"):
            partitioner.check_explicit_partition("t", bad, 3)
    for wrong in ("1", 1.0, True):
        with pytest.raises(TypeError):
            partitioner.check_explicit_partition("t", wrong, 3)


def test_sticky_partition_changes_only_when_its_batch_completes() -> None:
    sticky = partitioner.StickyPartitions(random.Random(7))
    first = sticky.partition("t", 6)
    assert all(sticky.partition("t", 6) == first for _ in range(100))
    sticky.batch_completed("t", (first + 1) % 6, 6)  # another partition's batch: no switch
    assert sticky.partition("t", 6) == first
    seen = set()
    previous = first
    for _ in range(200):
        sticky.batch_completed("t", previous, 6)
        current = sticky.partition("t", 6)
        assert current != previous  # StickyPartitionCache: a different partition
        seen.add(current)
        previous = current
    assert seen == set(range(6))  # uniform over the others: every partition comes up


def test_sticky_single_partition_stays() -> None:
    sticky = partitioner.StickyPartitions()
    assert sticky.partition("t", 1) == 0
    sticky.batch_completed("t", 0, 1)
    assert sticky.partition("t", 1) == 0


def test_user_partitioner_kafka_python_object() -> None:
    from kafka.partitioner import DefaultPartitioner

    user = partitioner.UserPartitioner(DefaultPartitioner())
    for key in (b"a", b"order-17", b"\x00" * 16):
        assert user("t", key, key, b"v", b"v", 6) == partitioner.partition_for_key(key, 6)


def test_user_partitioner_legacy_callable_and_bad_choice() -> None:
    calls = []

    def legacy(key, all_partitions, available):
        calls.append((key, all_partitions, available))
        return all_partitions[-1]

    user = partitioner.UserPartitioner(legacy)
    assert user("t", None, None, b"v", b"v", 3) == 2
    assert calls == [(None, [0, 1, 2], [0, 1, 2])]
    with pytest.raises(UnknownTopicOrPartitionError):
        partitioner.UserPartitioner(lambda k, a, b: 9)("t", None, None, None, None, 3)
    with pytest.raises(TypeError):
        partitioner.UserPartitioner(42)


def test_user_partitioner_on_new_batch_hook() -> None:
    from kafka.partitioner import StickyPartitioner

    kp = StickyPartitioner()
    user = partitioner.UserPartitioner(kp)
    first = user("t", None, None, b"v", b"v", 4)
    assert user("t", None, None, b"v", b"v", 4) == first
    user.batch_completed("t", first, 4)
    assert user("t", None, None, b"v", b"v", 4) != first
