"""The assignors (pylog/embedded/assignors.py) against Kafka's own assignors.

Three layers:
1. Worked examples ported as data from Kafka's assignor tests (apache/kafka
   clients/src/test/java/org/apache/kafka/clients/consumer/RangeAssignorTest.java,
   RoundRobinAssignorTest.java, CooperativeStickyAssignorTest.java and
   internals/AbstractStickyAssignorTest.java); each names its Java test method. Kafka's tests fill a
   java.util.HashMap in the order consumer1, consumer2, ...; the member lists below keep that order.
2. A differential test: Kafka 4.4.0's real RangeAssignor, RoundRobinAssignor and
   CooperativeStickyAssignor (tests/java/AssignorHarness.java, one JVM for every case) on seeded
   random groups, compared list for list. Skipped with the reason when Java or Kafka's jars are
   missing, except in CI (tests/kafka_tools.py).
3. Properties over hypothesis-generated groups: each partition of a subscribed topic exactly once and
   only to a subscriber, balance, stickiness, and the cooperative handoff rule.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka_tools import require_kafka

from pylog.embedded.assignors import (
    ASSIGNORS,
    AssignorError,
    MemberSubscription,
    StickyAssignment,
    _java_hash_order,
    _java_string_hash,
    assign,
    cooperative_sticky,
)
from pylog.types import TopicPartition

HARNESS = Path(__file__).resolve().parent / "java" / "AssignorHarness.java"


def tp(topic: str, partition: int) -> TopicPartition:
    return TopicPartition(topic, partition)


def member(
    member_id: str,
    topics: tuple[str, ...] | list[str],
    owned: list[TopicPartition] | tuple[TopicPartition, ...] = (),
    generation: int = -1,
    instance: str | None = None,
) -> MemberSubscription:
    return MemberSubscription(member_id, instance, tuple(topics), tuple(owned), generation)


def as_sets(assignment: dict[str, list[TopicPartition]]) -> dict[str, set[TopicPartition]]:
    return {m: set(tps) for m, tps in assignment.items()}


# ------------------------------------------------------------------------------------------------
# 1. worked examples: range (RangeAssignorTest)

T1, T2, T3 = "topic1", "topic2", "topic3"

RANGE_EXAMPLES: list[
    tuple[str, list[MemberSubscription], dict[str, int], dict[str, list[TopicPartition]]]
] = [
    ("testOneConsumerNoTopic", [member("consumer1", [])], {}, {"consumer1": []}),
    ("testOneConsumerNonexistentTopic", [member("consumer1", [T1])], {}, {"consumer1": []}),
    (
        "testOneConsumerOneTopic",
        [member("consumer1", [T1])],
        {T1: 3},
        {"consumer1": [tp(T1, 0), tp(T1, 1), tp(T1, 2)]},
    ),
    (
        "testOnlyAssignsPartitionsFromSubscribedTopics",
        [member("consumer1", [T1])],
        {T1: 3, "other": 3},
        {"consumer1": [tp(T1, 0), tp(T1, 1), tp(T1, 2)]},
    ),
    (
        "testOneConsumerMultipleTopics",
        [member("consumer1", [T1, T2])],
        {T1: 1, T2: 2},
        {"consumer1": [tp(T1, 0), tp(T2, 0), tp(T2, 1)]},
    ),
    (
        "testTwoConsumersOneTopicOnePartition",
        [member("consumer1", [T1]), member("consumer2", [T1])],
        {T1: 1},
        {"consumer1": [tp(T1, 0)], "consumer2": []},
    ),
    (
        "testTwoConsumersOneTopicTwoPartitions",
        [member("consumer1", [T1]), member("consumer2", [T1])],
        {T1: 2},
        {"consumer1": [tp(T1, 0)], "consumer2": [tp(T1, 1)]},
    ),
    (
        "testMultipleConsumersMixedTopics",
        [member("consumer1", [T1]), member("consumer2", [T1, T2]), member("consumer3", [T1])],
        {T1: 3, T2: 2},
        {
            "consumer1": [tp(T1, 0)],
            "consumer2": [tp(T1, 1), tp(T2, 0), tp(T2, 1)],
            "consumer3": [tp(T1, 2)],
        },
    ),
    (
        "testTwoConsumersTwoTopicsSixPartitions",
        [member("consumer1", [T1, T2]), member("consumer2", [T1, T2])],
        {T1: 3, T2: 3},
        {"consumer1": [tp(T1, 0), tp(T1, 1), tp(T2, 0), tp(T2, 1)], "consumer2": [tp(T1, 2), tp(T2, 2)]},
    ),
    (
        # the instance ids decide, not the member ids
        "testTwoStaticConsumersTwoTopicsSixPartitions",
        [
            member("consumer-b", [T1, T2], instance="instance1"),
            member("consumer-a", [T1, T2], instance="instance2"),
        ],
        {T1: 3, T2: 3},
        {"consumer-b": [tp(T1, 0), tp(T1, 1), tp(T2, 0), tp(T2, 1)], "consumer-a": [tp(T1, 2), tp(T2, 2)]},
    ),
    (
        # a static member sorts before a dynamic one
        "testOneStaticConsumerAndOneDynamicConsumerTwoTopicsSixPartitions",
        [member("consumer-b", [T1, T2], instance="instance1"), member("consumer-a", [T1, T2])],
        {T1: 3, T2: 3},
        {"consumer-b": [tp(T1, 0), tp(T1, 1), tp(T2, 0), tp(T2, 1)], "consumer-a": [tp(T1, 2), tp(T2, 2)]},
    ),
]


@pytest.mark.parametrize(
    ("members", "ppt", "expected"), [c[1:] for c in RANGE_EXAMPLES], ids=[c[0] for c in RANGE_EXAMPLES]
)
def test_range_examples(
    members: list[MemberSubscription], ppt: dict[str, int], expected: dict[str, Any]
) -> None:
    assert assign("range", members, ppt) == expected


def _static_trio(topics: list[str]) -> list[MemberSubscription]:
    return [member(f"consumer{i}", topics, instance=f"instance{i}") for i in (1, 2, 3)]


def test_range_static_member_assignment_persistent() -> None:
    # RangeAssignorTest.testStaticMemberRangeAssignmentPersistent
    ppt = {T1: 5, T2: 4}
    members = [*_static_trio([T1, T2]), member("consumer4", [T1, T2])]
    expected = {
        "consumer1": [tp(T1, 0), tp(T1, 1), tp(T2, 0)],
        "consumer2": [tp(T1, 2), tp(T2, 1)],
        "consumer3": [tp(T1, 3), tp(T2, 2)],
        "consumer4": [tp(T1, 4), tp(T2, 3)],
    }
    assert assign("range", members, ppt) == expected
    # the dynamic member is replaced by another: the static members keep their partitions
    members = [*_static_trio([T1, T2]), member("consumer5", [T1, T2])]
    expected["consumer5"] = expected.pop("consumer4")
    assert assign("range", members, ppt) == expected


def _by_instance(
    members: list[MemberSubscription], assignment: dict[str, list[TopicPartition]]
) -> dict[str, Any]:
    return {m.group_instance_id: assignment[m.member_id] for m in members if m.group_instance_id}


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (
            # RangeAssignorTest.testStaticMemberRangeAssignmentPersistentAfterMemberIdChanges
            "range",
            {
                "instance1": [tp(T1, 0), tp(T1, 1), tp(T2, 0), tp(T2, 1)],
                "instance2": [tp(T1, 2), tp(T1, 3), tp(T2, 2), tp(T2, 3)],
                "instance3": [tp(T1, 4), tp(T2, 4)],
            },
        ),
        (
            # RoundRobinAssignorTest.testStaticMemberRoundRobinAssignmentPersistentAfterMemberIdChanges
            "roundrobin",
            {
                "instance1": [tp(T1, 0), tp(T1, 3), tp(T2, 1), tp(T2, 4)],
                "instance2": [tp(T1, 1), tp(T1, 4), tp(T2, 2)],
                "instance3": [tp(T1, 2), tp(T2, 0), tp(T2, 3)],
            },
        ),
    ],
)
def test_static_assignment_persistent_after_member_id_changes(
    strategy: str, expected: dict[str, Any]
) -> None:
    ppt = {T1: 5, T2: 5}
    members = _static_trio([T1, T2])
    assert _by_instance(members, assign(strategy, members, ppt)) == expected
    # the members rejoin under new member ids (consumer3 -> consumer4, consumer2 -> consumer5)
    renamed = [
        members[0],
        member("consumer4", [T1, T2], instance="instance3"),
        member("consumer5", [T1, T2], instance="instance2"),
    ]
    assert _by_instance(renamed, assign(strategy, renamed, ppt)) == expected


# ------------------------------------------------------------------------------------------------
# worked examples: roundrobin (RoundRobinAssignorTest)

T = "topic"

ROUNDROBIN_EXAMPLES: list[
    tuple[str, list[MemberSubscription], dict[str, int], dict[str, list[TopicPartition]]]
] = [
    ("testOneConsumerNoTopic", [member("consumer", [])], {}, {"consumer": []}),
    ("testOneConsumerNonexistentTopic", [member("consumer", [T])], {}, {"consumer": []}),
    (
        "testOneConsumerOneTopic",
        [member("consumer", [T])],
        {T: 3},
        {"consumer": [tp(T, 0), tp(T, 1), tp(T, 2)]},
    ),
    (
        "testOnlyAssignsPartitionsFromSubscribedTopics",
        [member("consumer", [T])],
        {T: 3, "other": 3},
        {"consumer": [tp(T, 0), tp(T, 1), tp(T, 2)]},
    ),
    (
        "testOneConsumerMultipleTopics",
        [member("consumer", [T1, T2])],
        {T1: 1, T2: 2},
        {"consumer": [tp(T1, 0), tp(T2, 0), tp(T2, 1)]},
    ),
    (
        "testTwoConsumersOneTopicOnePartition",
        [member("consumer1", [T]), member("consumer2", [T])],
        {T: 1},
        {"consumer1": [tp(T, 0)], "consumer2": []},
    ),
    (
        "testTwoConsumersOneTopicTwoPartitions",
        [member("consumer1", [T]), member("consumer2", [T])],
        {T: 2},
        {"consumer1": [tp(T, 0)], "consumer2": [tp(T, 1)]},
    ),
    (
        "testMultipleConsumersMixedTopics",
        [member("consumer1", [T1]), member("consumer2", [T1, T2]), member("consumer3", [T1])],
        {T1: 3, T2: 2},
        {
            "consumer1": [tp(T1, 0)],
            "consumer2": [tp(T1, 1), tp(T2, 0), tp(T2, 1)],
            "consumer3": [tp(T1, 2)],
        },
    ),
    (
        "testTwoDynamicConsumersTwoTopicsSixPartitions",
        [member("consumer1", [T1, T2]), member("consumer2", [T1, T2])],
        {T1: 3, T2: 3},
        {"consumer1": [tp(T1, 0), tp(T1, 2), tp(T2, 1)], "consumer2": [tp(T1, 1), tp(T2, 0), tp(T2, 2)]},
    ),
    (
        "testTwoStaticConsumersTwoTopicsSixPartitions",
        [
            member("consumer-b", [T1, T2], instance="instance1"),
            member("consumer-a", [T1, T2], instance="instance2"),
        ],
        {T1: 3, T2: 3},
        {"consumer-b": [tp(T1, 0), tp(T1, 2), tp(T2, 1)], "consumer-a": [tp(T1, 1), tp(T2, 0), tp(T2, 2)]},
    ),
    (
        "testOneStaticConsumerAndOneDynamicConsumerTwoTopicsSixPartitions",
        [member("consumer-b", [T1, T2], instance="instance1"), member("consumer-a", [T1, T2])],
        {T1: 3, T2: 3},
        {"consumer-b": [tp(T1, 0), tp(T1, 2), tp(T2, 1)], "consumer-a": [tp(T1, 1), tp(T2, 0), tp(T2, 2)]},
    ),
]


@pytest.mark.parametrize(
    ("members", "ppt", "expected"),
    [c[1:] for c in ROUNDROBIN_EXAMPLES],
    ids=[c[0] for c in ROUNDROBIN_EXAMPLES],
)
def test_roundrobin_examples(
    members: list[MemberSubscription], ppt: dict[str, int], expected: dict[str, Any]
) -> None:
    assert assign("roundrobin", members, ppt) == expected


def test_roundrobin_static_member_assignment_persistent() -> None:
    # RoundRobinAssignorTest.testStaticMemberRoundRobinAssignmentPersistent
    ppt = {T1: 3, T2: 3}
    members = [*_static_trio([T1, T2]), member("consumer4", [T1, T2])]
    expected = {
        "consumer1": [tp(T1, 0), tp(T2, 1)],
        "consumer2": [tp(T1, 1), tp(T2, 2)],
        "consumer3": [tp(T1, 2)],
        "consumer4": [tp(T2, 0)],
    }
    assert assign("roundrobin", members, ppt) == expected
    members = [*_static_trio([T1, T2]), member("consumer5", [T1, T2])]
    expected["consumer5"] = expected.pop("consumer4")
    assert assign("roundrobin", members, ppt) == expected


# ------------------------------------------------------------------------------------------------
# worked examples: cooperative-sticky (AbstractStickyAssignorTest run by CooperativeStickyAssignorTest)
#
# Kafka's tests call CooperativeStickyAssignor.assignPartitions, which returns the first round
# (StickyAssignment.first_round()); its verifyValidityAndBalance then replays rebalances until nobody
# revokes anything and the assertions after it see that settled assignment (settle() below).
# Owned partitions carry generation 1 (the tests' generationId) unless stated.


def _revoked(
    members: list[MemberSubscription], assignment: dict[str, list[TopicPartition]]
) -> set[TopicPartition]:
    return {p for m in members for p in m.owned if p not in set(assignment[m.member_id])}


def _added(
    members: list[MemberSubscription], assignment: dict[str, list[TopicPartition]]
) -> set[TopicPartition]:
    return {p for m in members for p in assignment[m.member_id] if p not in set(m.owned)}


def settle(
    members: list[MemberSubscription], ppt: dict[str, int], generation: int = 1
) -> tuple[list[MemberSubscription], dict[str, list[TopicPartition]]]:
    """CooperativeStickyAssignorTest.verifyValidityAndBalance: rebalance until nobody revokes."""
    assignment = cooperative_sticky(members, ppt).first_round()
    for _ in range(5):
        # the cooperative rule: nothing is given to a member in the round its owner revokes it
        assert not (_added(members, assignment) & _revoked(members, assignment))
        if not _revoked(members, assignment):
            return members, assignment
        members = [
            MemberSubscription(
                m.member_id, m.group_instance_id, m.topics, tuple(assignment[m.member_id]), generation
            )
            for m in members
        ]
        assignment = cooperative_sticky(members, ppt).first_round()
    raise AssertionError("more than 4 follow-up rebalances")


def kafka_balanced(members: list[MemberSubscription], assignment: dict[str, list[TopicPartition]]) -> None:
    """AbstractStickyAssignorTest.verifyValidityAndBalance's checks."""
    topics_of = {m.member_id: set(m.topics) for m in members}
    assert set(assignment) == set(topics_of)
    for mid, tps in assignment.items():
        assert all(p.topic in topics_of[mid] for p in tps), (mid, tps)
    ids = sorted(assignment)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            assert not set(assignment[a]) & set(assignment[b]), (a, b)
            if abs(len(assignment[a]) - len(assignment[b])) > 1:
                # two members more than one apart must not share a topic (else one could move)
                assert not {p.topic for p in assignment[a]} & {p.topic for p in assignment[b]}, (a, b)


def fully_balanced(assignment: dict[str, list[TopicPartition]]) -> bool:
    sizes = [len(tps) for tps in assignment.values()]
    return max(sizes) - min(sizes) <= 1


C1, C2, C3, C4 = "consumer1", "consumer2", "consumer3", "consumer4"


def test_sticky_no_topic_and_nonexistent_topic() -> None:
    # AbstractStickyAssignorTest.testOneConsumerNoTopic / testOneConsumerNonexistentTopic
    assert assign("cooperative-sticky", [member("consumer", [])], {}) == {"consumer": []}
    assert assign("cooperative-sticky", [member("consumer", [T])], {}) == {"consumer": []}
    # testOnlyAssignsPartitionsFromSubscribedTopics
    got = assign("cooperative-sticky", [member("consumer", [T])], {T: 3, "other": 3})
    assert got == {"consumer": [tp(T, 0), tp(T, 1), tp(T, 2)]}


STICKY_FIRST_ROUND: list[
    tuple[
        str,
        list[MemberSubscription],
        dict[str, int],
        dict[str, list[TopicPartition]],
        dict[TopicPartition, str],
    ]
] = [
    (
        "testMultipleConsumersMixedTopicSubscriptions",
        [member(C1, [T1]), member(C2, [T1, T2]), member(C3, [T1])],
        {T1: 3, T2: 2},
        {C1: [tp(T1, 0), tp(T1, 2)], C2: [tp(T2, 0), tp(T2, 1)], C3: [tp(T1, 1)]},
        {},
    ),
    (
        "testTwoConsumersTwoTopicsSixPartitions",
        [member(C1, [T1, T2]), member(C2, [T1, T2])],
        {T1: 3, T2: 3},
        {C1: [tp(T1, 0), tp(T1, 2), tp(T2, 1)], C2: [tp(T1, 1), tp(T2, 0), tp(T2, 2)]},
        {},
    ),
    (
        "testConsumerOwningMinQuotaExpectedMaxQuota",
        [member(C1, [T1, T2], [tp(T1, 0), tp(T2, 1)], 1), member(C2, [T1, T2], [tp(T1, 1), tp(T2, 2)], 1)],
        {T1: 2, T2: 3},
        {C1: [tp(T1, 0), tp(T2, 1), tp(T2, 0)], C2: [tp(T1, 1), tp(T2, 2)]},
        {},
    ),
    (
        "testAllConsumersAreUnderMinQuota",
        [
            member(C1, [T1, T2], [tp(T1, 0)], 1),
            member(C2, [T1, T2], [tp(T1, 1)], 1),
            member(C3, [T1, T2], [], 1),
        ],
        {T1: 2, T2: 3},
        {C1: [tp(T1, 0), tp(T2, 1)], C2: [tp(T1, 1), tp(T2, 2)], C3: [tp(T2, 0)]},
        {},
    ),
    (
        # topic2-0 moves from consumer1 to consumer3: withheld until consumer1 revoked it
        "testMaxQuotaConsumerMoreThanNumExpectedMaxCapacityMembers",
        [
            member(C1, [T1, T2], [tp(T1, 0), tp(T2, 0)], 1),
            member(C2, [T1, T2], [tp(T1, 1), tp(T2, 1)], 1),
            member(C3, [T1, T2], [], 1),
        ],
        {T1: 2, T2: 2},
        {C1: [tp(T1, 0)], C2: [tp(T1, 1), tp(T2, 1)], C3: []},
        {tp(T2, 0): C3},
    ),
    (
        # CooperativeStickyAssignorTest: topic-0 claimed by two members of one generation
        "testAllConsumersHaveOwnedPartitionInvalidatedWhenClaimedByMultipleConsumersInSameGeneration"
        "WithEqualPartitionsPerConsumer",
        [
            member(C1, [T], [tp(T, 0), tp(T, 1)], 1),
            member(C2, [T], [tp(T, 0), tp(T, 2)], 1),
            member(C3, [T], [], 1),
        ],
        {T: 3},
        {C1: [tp(T, 1)], C2: [tp(T, 2)], C3: []},
        {tp(T, 0): C3},
    ),
    (
        "testAllConsumersHaveOwnedPartitionInvalidatedWhenClaimedByMultipleConsumersInSameGeneration"
        "WithUnequalPartitionsPerConsumer",
        [
            member(C1, [T], [tp(T, 0), tp(T, 1)], 1),
            member(C2, [T], [tp(T, 0), tp(T, 2)], 1),
            member(C3, [T], [], 1),
        ],
        {T: 4},
        {C1: [tp(T, 1), tp(T, 3)], C2: [tp(T, 2)], C3: []},
        {tp(T, 0): C3},
    ),
]


@pytest.mark.parametrize(
    ("members", "ppt", "first_round", "transferring"),
    [c[1:] for c in STICKY_FIRST_ROUND],
    ids=[c[0] for c in STICKY_FIRST_ROUND],
)
def test_sticky_first_round_examples(
    members: list[MemberSubscription],
    ppt: dict[str, int],
    first_round: dict[str, list[TopicPartition]],
    transferring: dict[TopicPartition, str],
) -> None:
    result = cooperative_sticky(members, ppt)
    assert result.first_round() == first_round
    assert result.transferring == transferring
    # the target is the first round plus what is withheld
    for partition, new_owner in transferring.items():
        assert partition in result.target[new_owner]
    _, settled = settle(members, ppt)
    kafka_balanced(members, settled)
    assert fully_balanced(settled)


SETTLED_EXAMPLES: list[
    tuple[str, list[MemberSubscription], dict[str, int], dict[str, list[TopicPartition]]]
] = [
    (
        "testMaxQuotaConsumerMoreThanNumExpectedMaxCapacityMembers",
        STICKY_FIRST_ROUND[4][1],
        {T1: 2, T2: 2},
        {C1: [tp(T1, 0)], C2: [tp(T1, 1), tp(T2, 1)], C3: [tp(T2, 0)]},
    ),
    (
        "testPartitionsTransferringOwnershipIncludeThePartitionClaimedByMultipleConsumersInSameGeneration",
        [
            member(C1, [T], [tp(T, 0), tp(T, 1)], 1),
            member(C2, [T], [tp(T, 0), tp(T, 2)], 1),
            member(C3, [T], [], 1),
        ],
        {T: 3},
        {C1: [tp(T, 1)], C2: [tp(T, 2)], C3: [tp(T, 0)]},
    ),
]


@pytest.mark.parametrize(
    ("members", "ppt", "expected"), [c[1:] for c in SETTLED_EXAMPLES], ids=[c[0] for c in SETTLED_EXAMPLES]
)
def test_sticky_settled_examples(
    members: list[MemberSubscription], ppt: dict[str, int], expected: dict[str, Any]
) -> None:
    _, settled = settle(members, ppt)
    assert settled == expected


SET_EXAMPLES: list[tuple[str, list[MemberSubscription], dict[str, int], dict[str, set[TopicPartition]]]] = [
    (
        # the stale generation's claims lose; no partition is transferring
        "testOwnedPartitionsAreInvalidatedForConsumerWithStaleGeneration",
        [
            member(C1, [T, T2], [tp(T, 0), tp(T, 2), tp(T2, 1)], 10),
            member(C2, [T, T2], [tp(T, 0), tp(T, 2), tp(T2, 1)], 9),
        ],
        {T: 3, T2: 3},
        {C1: {tp(T, 0), tp(T, 2), tp(T2, 1)}, C2: {tp(T, 1), tp(T2, 0), tp(T2, 2)}},
    ),
    (
        "testOwnedPartitionsAreInvalidatedForConsumerWithNoGeneration",
        [
            member(C1, [T, T2], [tp(T, 0), tp(T, 2), tp(T2, 1)], 10),
            member(C2, [T, T2], [tp(T, 0), tp(T, 2), tp(T2, 1)], -1),
        ],
        {T: 3, T2: 3},
        {C1: {tp(T, 0), tp(T, 2), tp(T2, 1)}, C2: {tp(T, 1), tp(T2, 0), tp(T2, 2)}},
    ),
    (
        "testEnsurePartitionsAssignedToHighestGeneration",
        [
            member(C1, [T, T2, T3], [tp(T, 0), tp(T2, 0), tp(T3, 0)], 10),
            member(C2, [T, T2, T3], [tp(T, 1), tp(T2, 1), tp(T3, 1)], 9),
            member(C3, [T, T2, T3], [tp(T2, 1), tp(T3, 0), tp(T3, 2)], 8),
        ],
        {T: 3, T2: 3, T3: 3},
        {
            C1: {tp(T, 0), tp(T2, 0), tp(T3, 0)},
            C2: {tp(T, 1), tp(T2, 1), tp(T3, 1)},
            C3: {tp(T, 2), tp(T2, 2), tp(T3, 2)},
        },
    ),
    (
        "testOwnedPartitionsAreInvalidatedForConsumerWithMultipleGeneration",
        [
            member(C1, [T, T2], [tp(T, 0), tp(T2, 1), tp(T, 1)], 10),
            member(C2, [T, T2], [tp(T, 0), tp(T2, 1), tp(T2, 2)], 8),
        ],
        {T: 3, T2: 3},
        {C1: {tp(T, 0), tp(T2, 1), tp(T, 1)}, C2: {tp(T, 2), tp(T2, 2), tp(T2, 0)}},
    ),
]


@pytest.mark.parametrize(
    ("members", "ppt", "expected"), [c[1:] for c in SET_EXAMPLES], ids=[c[0] for c in SET_EXAMPLES]
)
def test_sticky_generation_examples(
    members: list[MemberSubscription], ppt: dict[str, int], expected: dict[str, set[TopicPartition]]
) -> None:
    result = cooperative_sticky(members, ppt)
    assert as_sets(result.target) == expected
    assert result.transferring == {}


def test_sticky_no_reassignment_on_current_members() -> None:
    # AbstractStickyAssignorTest.testNoReassignmentOnCurrentMembers
    topics = [T, T2, T3, T1]
    members = [
        member(C1, topics, [], -1),
        member(C2, topics, [tp(T, 0), tp(T2, 0), tp(T1, 0)], 9),
        member(C3, topics, [tp(T3, 2), tp(T2, 2), tp(T1, 1)], 8),
        member(C4, topics, [tp(T3, 1), tp(T, 1), tp(T, 2)], 7),
    ]
    result = cooperative_sticky(members, {T: 3, T1: 3, T2: 3, T3: 3})
    assert set(result.target[C1]) == {tp(T1, 2), tp(T2, 1), tp(T3, 0)}
    assert result.transferring == {}
    kafka_balanced(members, result.target)
    assert fully_balanced(result.target)


def test_sticky_add_remove_consumer_one_topic() -> None:
    # AbstractStickyAssignorTest.testAddRemoveConsumerOneTopic
    ppt = {T: 3}
    first = cooperative_sticky([member(C1, [T])], ppt)
    assert first.target == {C1: [tp(T, 0), tp(T, 1), tp(T, 2)]}
    members = [member(C1, [T], first.target[C1], 1), member(C2, [T], [], 1)]
    second = cooperative_sticky(members, ppt)
    assert second.transferring == {tp(T, 2): C2}
    _, settled = settle(members, ppt)
    assert settled == {C1: [tp(T, 0), tp(T, 1)], C2: [tp(T, 2)]}
    third = cooperative_sticky([member(C2, [T], settled[C2], 1)], ppt)
    assert set(third.target[C2]) == {tp(T, 0), tp(T, 1), tp(T, 2)}
    assert third.transferring == {}


def test_sticky_stickiness() -> None:
    # AbstractStickyAssignorTest.testStickiness: four members, three partitions; the first leaves
    ppt = {T1: 3}
    members = [member(c, [T1]) for c in (C1, C2, C3, C4)]
    first = cooperative_sticky(members, ppt)
    assert first.transferring == {}
    assert all(len(tps) <= 1 for tps in first.target.values())
    rest = [member(c, [T1], first.target[c], 1) for c in (C2, C3, C4)]
    second = cooperative_sticky(rest, ppt)
    assert second.transferring == {}
    for c in (C2, C3, C4):
        assert len(second.target[c]) == 1
        assert set(first.target[c]) <= set(second.target[c])


def test_sticky_three_generations_unequal_subscriptions() -> None:
    # AbstractStickyAssignorTest.testSubscriptionNotEqualAndAssignSamePartitionWith3Generation
    ppt = {T: 6, T1: 1}
    for g1, g2, g3 in [(1, 2, 3), (1, 3, 2), (2, 1, 3), (2, 3, 1), (3, 1, 2), (3, 2, 1)]:
        members = [
            member(C1, [T], [tp(T, 0), tp(T, 2)], g1),
            member(C2, [T], [tp(T, 1), tp(T, 2), tp(T, 3)], g2),
            member(C3, [T], [tp(T, 2), tp(T, 4), tp(T, 5)], g3),
            member(C4, [T1], [tp(T1, 0)], 2),
        ]
        target = cooperative_sticky(members, ppt).target
        everything = [p for tps in target.values() for p in tps]
        assert len(everything) == len(set(everything)) == 7
        assert all(1 <= len(tps) <= 2 for tps in target.values())


def test_sticky_deleted_topics() -> None:
    # AbstractStickyAssignorTest.testAssignmentUpdatedForDeletedTopic
    target = assign("cooperative-sticky", [member("consumer", [T1, T2, T3])], {T1: 1, T3: 100})
    assert len(target["consumer"]) == 101
    # testNoExceptionThrownWhenOnlySubscribedTopicDeleted
    owned = assign("cooperative-sticky", [member("consumer", [T])], {T: 3})["consumer"]
    assert assign("cooperative-sticky", [member("consumer", [T], owned, 1)], {}) == {"consumer": []}


# ------------------------------------------------------------------------------------------------
# Java's hashing and ordering, which the results depend on


def test_java_string_hash() -> None:
    # values of java.lang.String.hashCode
    assert _java_string_hash("") == 0
    assert _java_string_hash("a") == 97
    assert _java_string_hash("hello") == 99162322
    assert _java_string_hash("consumer1") == -421004549
    # U+1F600 is two UTF-16 code units (0xD83D, 0xDE00): 31 * 0xD83D + 0xDE00
    assert _java_string_hash("\U0001f600") == 31 * 0xD83D + 0xDE00


def test_java_hash_order() -> None:
    # a 16-bucket table: "b" (98) and "a" (97) land in buckets 2 and 1
    assert _java_hash_order(["b", "a"]) == ["a", "b"]
    # keys of one bucket keep their insertion order: "Aa" and "BB" share a hash (2112)
    assert _java_hash_order(["BB", "Aa"]) == ["BB", "Aa"]
    assert _java_hash_order(["Aa", "BB"]) == ["Aa", "BB"]


# ------------------------------------------------------------------------------------------------
# input errors and documented deviations


def test_unknown_strategy_and_duplicate_members() -> None:
    with pytest.raises(AssignorError, match="unknown partition assignment strategy"):
        assign("sticky", [member("a", [T])], {T: 1})
    for strategy in ASSIGNORS:
        with pytest.raises(AssignorError, match="appears twice"):
            assign(strategy, [member("a", [T]), member("a", [T])], {T: 1})
        assert assign(strategy, [], {T: 3}) == {}


def test_member_without_topics_gets_nothing() -> None:
    # Kafka's "all subscriptions equal" check skips an empty first subscription (HashMap order puts
    # "a" first here) and could hand it partitions; pylog never gives a member a topic it did not ask for
    members = [member("a", []), member("b", [T]), member("c", [T])]
    for strategy in ASSIGNORS:
        got = assign(strategy, members, {T: 4})
        assert got["a"] == []
        assert sorted(got["b"] + got["c"]) == [tp(T, p) for p in range(4)]


def test_owned_partition_beyond_the_topic_is_ignored() -> None:
    # a topic recreated with fewer partitions: Kafka 4.4.0 answers the first group with
    # {"a": [topic-7, topic-0, topic-1]} and throws IllegalStateException on the second
    alone = [member("a", [T], [tp(T, 7)], 3)]
    assert as_sets(cooperative_sticky(alone, {T: 2}).target) == {"a": {tp(T, 0), tp(T, 1)}}
    pair = [member("a", [T], [tp(T, 7)], 3), member("b", [T], [tp(T, 1)], 3)]
    result = cooperative_sticky(pair, {T: 2})
    assert result.target == {"a": [tp(T, 0)], "b": [tp(T, 1)]} and result.transferring == {}


def test_previous_owner_no_longer_subscribed_is_not_given_back() -> None:
    # "old" owned t-0..t-3 in generation 4 and now subscribes to another topic; Kafka's general path
    # looks "old" up among the members that may still move and throws NullPointerException (where
    # "old" may move, it hands the partition back to it, a topic it no longer reads)
    members = [
        member("old", ["u"], [tp(T, 0), tp(T, 1), tp(T, 2), tp(T, 3)], 4),
        member("busy", [T], [tp(T, 0), tp(T, 1), tp(T, 2), tp(T, 3)], 5),
        member("idle", [T], [], 5),
    ]
    target = cooperative_sticky(members, {T: 4, "u": 1}).target
    kafka_balanced(members, target)
    assert target["old"] == [tp("u", 0)]
    assert sorted(map(len, (target["busy"], target["idle"]))) == [2, 2]
    # here "old" may move, and Kafka 4.4.0 gives it topic-0 and topic-1 besides u-1
    owned = tuple(tp(T, p) for p in range(6))
    members = [member("old", ["u"], owned, 4), member("busy", [T], owned, 5), member("idle", [T, "u"], [], 5)]
    target = cooperative_sticky(members, {T: 6, "u": 2}).target
    kafka_balanced(members, target)
    assert {p.topic for p in target["old"]} == {"u"}


# ------------------------------------------------------------------------------------------------
# 2. differential test against Kafka's real assignors

TOPIC_POOL = ["t0", "orders", "a.b", "x-y_z", "Topic9", "zz", "payments-v2"]


def _member_id(rng: random.Random) -> str:
    return rng.choice(
        [
            f"consumer-{rng.getrandbits(32):08x}",  # like Kafka's client-generated ids (shorter)
            f"m{rng.randint(0, 99)}",
            f"c-{rng.randint(0, 9)}",
            f"consumer-1-{rng.getrandbits(64):016x}",
        ]
    )


def _random_group(rng: random.Random, max_members: int) -> tuple[list[MemberSubscription], dict[str, int]]:
    """One rebalance: random members, subscriptions, claims (with conflicts) and generations."""
    topics = rng.sample(TOPIC_POOL, rng.randint(1, 5))
    ppt = {t: rng.choice([0, 1, 2, 3, 7]) if rng.random() < 0.1 else rng.randint(1, 14) for t in topics}
    ids: list[str] = []
    while len(ids) < rng.randint(1, max_members):
        candidate = _member_id(rng)
        if candidate not in ids:
            ids.append(candidate)
    same = rng.random() < 0.5
    common = rng.sample(topics, rng.randint(1, len(topics)))
    top = rng.randint(1, 9)
    raw = []
    for k, mid in enumerate(ids):
        instance = f"instance-{rng.randint(0, 50)}-{k}" if rng.random() < 0.4 else None
        subscribed = common if same else rng.sample([*topics, "ghost"], rng.randint(1, len(topics)))
        raw.append((mid, instance, tuple(subscribed), [], rng.choice([-1, top - 2, top - 1, top, top])))
    if rng.random() < 0.8:
        for topic, count in ppt.items():
            for p in range(count):
                if rng.random() < 0.75:
                    for _ in range(2 if rng.random() < 0.1 else 1):  # sometimes claimed twice
                        rng.choice(raw)[3].append(tp(topic, p))
        if rng.random() < 0.2:
            rng.choice(raw)[3].append(tp("deleted", 0))
    newest = max(r[4] for r in raw)
    members = []
    for mid, instance, subscribed, owned, generation in raw:
        if generation < newest:
            # what Kafka's consumer does before rejoining: drop partitions of unsubscribed topics
            owned = [p for p in owned if p.topic in subscribed]
        rng.shuffle(owned)
        members.append(MemberSubscription(mid, instance, subscribed, tuple(dict.fromkeys(owned)), generation))
    return members, ppt


def _rebalance_chain(
    rng: random.Random, max_members: int
) -> list[tuple[list[MemberSubscription], dict[str, int]]]:
    """Successive rebalances of one group: joins, leaves, resubscriptions, stale members, new partitions."""
    topics = rng.sample(TOPIC_POOL, rng.randint(1, 6))
    ppt = {t: rng.randint(1, 30) for t in topics}
    uneven = rng.random() < 0.7

    def pick() -> tuple[str, ...]:
        return tuple(rng.sample(topics, rng.randint(1, len(topics)))) if uneven else tuple(topics)

    ids = [f"consumer-{rng.getrandbits(40):010x}" for _ in range(rng.randint(2, max_members))]
    subs = {i: pick() for i in ids}
    owned: dict[str, tuple[TopicPartition, ...]] = dict.fromkeys(ids, ())
    generations = dict.fromkeys(ids, -1)
    rounds = []
    for generation in range(1, rng.randint(3, 7)):
        members = [MemberSubscription(i, None, subs[i], owned[i], generations[i]) for i in ids]
        rounds.append((members, dict(ppt)))
        result = cooperative_sticky(members, ppt)
        applied = result.target if rng.random() < 0.6 else result.first_round()
        for i in ids:
            owned[i], generations[i] = tuple(applied[i]), generation
        event = rng.random()
        if event < 0.3 and len(ids) > 1:
            ids.remove(rng.choice(ids))
        elif event < 0.6:
            new = f"consumer-{rng.getrandbits(40):010x}"
            ids.append(new)
            subs[new], owned[new], generations[new] = pick(), (), -1
        elif event < 0.8 and uneven:
            i = rng.choice(ids)
            subs[i] = pick()
            owned[i] = tuple(p for p in owned[i] if p.topic in subs[i])
        else:
            i = rng.choice(ids)
            generations[i] = max(-1, generations[i] - rng.randint(1, 2))
        if rng.random() < 0.2:
            ppt[rng.choice(topics)] += rng.randint(1, 5)
    return rounds


def _differential_cases() -> list[tuple[str, list[MemberSubscription], dict[str, int]]]:
    rng = random.Random(20261201)
    cases = []
    for _ in range(250):
        members, ppt = _random_group(rng, 8)
        cases += [(strategy, members, ppt) for strategy in ASSIGNORS]
    for _ in range(20):
        # more than 12 and 24 members: Kafka's member HashMap grows to 32 and 64 buckets
        members, ppt = _random_group(rng, 60)
        cases += [(strategy, members, ppt) for strategy in ASSIGNORS]
    while sum(s == "cooperative-sticky" for s, _, _ in cases) < 600:
        cases += [("cooperative-sticky", m, p) for m, p in _rebalance_chain(rng, rng.choice([6, 12, 40]))]
    # seeds whose groups reach the sticky assignor's rarer paths: found by breaking the "give it back
    # to the previous owner" rule (random groups 2136, 2296) and the "undo an earlier move" choice of
    # PartitionMovements (the rest) and keeping the seeds where the result changed
    for seed in (2136, 2296, 2586):
        members, ppt = _random_group(random.Random(seed), 8)
        cases.append(("cooperative-sticky", members, ppt))
    for seed in (427, 777, 1589, 1607, 1679, 2307, 2641):
        chain_rng = random.Random(seed)
        cases += [
            ("cooperative-sticky", m, p)
            for m, p in _rebalance_chain(chain_rng, chain_rng.choice([6, 12, 40]))
        ]
    # 9 member ids in one HashMap bucket: Java resizes the 16-bucket table early (treeifyBin)
    for _ in range(10):
        members, ppt = _random_group(rng, 14)
        while len(members) < 10:
            members, ppt = _random_group(rng, 14)
        renamed = [
            replace(m, member_id=mid) for m, mid in zip(members, _colliding_ids(len(members)), strict=False)
        ]
        cases += [(strategy, renamed, ppt) for strategy in ASSIGNORS]
    return cases


def _colliding_ids(count: int) -> list[str]:
    """``count`` member ids, the first nine (at most) in one bucket of a 16-bucket java.util.HashMap."""
    same, other = [], []
    n = 0
    while len(same) < min(count, 9) or len(other) < count - min(count, 9):
        mid = f"member-{n}"
        h = _java_string_hash(mid) & 0xFFFFFFFF
        (same if ((h ^ (h >> 16)) & 15) == 5 else other).append(mid)
        n += 1
    return (same[: min(count, 9)] + other)[:count]


def _case_json(strategy: str, members: list[MemberSubscription], ppt: dict[str, int]) -> dict[str, Any]:
    return {
        "strategy": strategy,
        "partitions": [[t, n] for t, n in ppt.items()],
        "members": [
            {
                "id": m.member_id,
                "instance": m.group_instance_id,
                "topics": list(m.topics),
                "owned": [[p.topic, p.partition] for p in m.owned],
                "generation": m.generation,
            }
            for m in members
        ],
    }


def _decode(assignment: list[Any]) -> dict[str, list[TopicPartition]]:
    return {mid: [tp(t, p) for t, p in tps] for mid, tps in assignment}


@pytest.fixture(scope="module")
def kafka_verdicts() -> list[tuple[tuple[str, list[MemberSubscription], dict[str, int]], dict[str, Any]]]:
    libs = require_kafka()
    cases = _differential_cases()
    done = subprocess.run(
        ["java", "-Xmx512m", "-cp", f"{libs}/*", str(HARNESS)],
        input=json.dumps({"cases": [_case_json(*c) for c in cases]}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    verdicts = [json.loads(line[5:]) for line in done.stdout.splitlines() if line.startswith("CASE ")]
    assert len(verdicts) == len(cases), done.stderr[-3000:]
    return list(zip(cases, verdicts, strict=True))


def _describe(members: list[MemberSubscription], ppt: dict[str, int]) -> str:
    return f"partitions_per_topic={ppt!r}\nmembers=[\n" + "".join(f"    {m!r},\n" for m in members) + "]"


@pytest.mark.parametrize("strategy", ASSIGNORS)
def test_matches_kafka(strategy: str, kafka_verdicts: list[Any]) -> None:
    checked = 0
    for (case_strategy, members, ppt), verdict in kafka_verdicts:
        if case_strategy != strategy:
            continue
        assert "error" not in verdict, f"Kafka threw {verdict['error']} on\n{_describe(members, ppt)}"
        if strategy == "cooperative-sticky":
            result = cooperative_sticky(members, ppt)
            mine = {"target": result.target, "assignment": result.first_round()}
            theirs = {"target": _decode(verdict["target"]), "assignment": _decode(verdict["assignment"])}
        else:
            mine = {"assignment": assign(strategy, members, ppt)}
            theirs = {"assignment": _decode(verdict["assignment"])}
            if strategy == "range":
                # RangeAssignor returns a HashMap filled in the subscriptions' order: its iteration
                # order is the HashMap order this module recomputes
                order = _java_hash_order(m.member_id for m in members)
                assert list(theirs["assignment"]) == order, _describe(members, ppt)
        assert mine == theirs, f"pylog and Kafka differ on\n{_describe(members, ppt)}"
        checked += 1
    assert checked >= 250


# ------------------------------------------------------------------------------------------------
# 3. properties

# why a cap: the CI profile's 600 examples per property would take a minute here; 100 keep the file fast
PROPERTY_EXAMPLES = 100


@st.composite
def groups(
    draw: st.DrawFn, same_subscriptions: bool | None = None
) -> tuple[list[MemberSubscription], dict[str, int]]:
    """A group whose claims are consistent (each partition owned once, by a subscriber)."""
    topics = draw(st.lists(st.sampled_from(TOPIC_POOL), min_size=1, max_size=4, unique=True))
    ppt = {t: draw(st.integers(0, 12)) for t in topics}
    ids = draw(
        st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True), min_size=1, max_size=9, unique=True)
    )
    same = draw(st.booleans()) if same_subscriptions is None else same_subscriptions
    common = tuple(topics)
    subs = {
        i: common if same else tuple(draw(st.lists(st.sampled_from(topics), min_size=1, unique=True)))
        for i in ids
    }
    owned: dict[str, list[TopicPartition]] = {i: [] for i in ids}
    for topic, count in ppt.items():
        readers = [i for i in ids if topic in subs[i]]
        for p in range(count):
            if readers and draw(st.booleans()):
                owned[draw(st.sampled_from(readers))].append(tp(topic, p))
    generation = draw(st.integers(1, 5))
    members = [
        MemberSubscription(i, draw(st.none() | st.just(f"inst-{i}")), subs[i], tuple(owned[i]), generation)
        for i in ids
    ]
    return members, ppt


def _check_complete_and_valid(
    members: list[MemberSubscription], ppt: dict[str, int], got: dict[str, list[TopicPartition]]
) -> None:
    assert set(got) == {m.member_id for m in members}
    subscribed = {t for m in members for t in m.topics}
    expected = Counter(tp(t, p) for t, n in ppt.items() if t in subscribed for p in range(n))
    assert Counter(p for tps in got.values() for p in tps) == expected  # each exactly once
    topics_of = {m.member_id: set(m.topics) for m in members}
    assert all(p.topic in topics_of[mid] for mid, tps in got.items() for p in tps)  # only to a subscriber


@settings(max_examples=PROPERTY_EXAMPLES)
@given(groups())
def test_every_partition_once_to_a_subscriber(group: tuple[list[MemberSubscription], dict[str, int]]) -> None:
    members, ppt = group
    for strategy in ASSIGNORS:
        _check_complete_and_valid(members, ppt, assign(strategy, members, ppt))


@settings(max_examples=PROPERTY_EXAMPLES)
@given(groups())
def test_range_balances_each_topic(group: tuple[list[MemberSubscription], dict[str, int]]) -> None:
    members, ppt = group
    got = assign("range", members, ppt)
    for topic in ppt:
        counts = [sum(p.topic == topic for p in got[m.member_id]) for m in members if topic in m.topics]
        if counts:
            assert max(counts) - min(counts) <= 1


@settings(max_examples=PROPERTY_EXAMPLES)
@given(groups(same_subscriptions=True))
def test_equal_subscriptions_are_fully_balanced(
    group: tuple[list[MemberSubscription], dict[str, int]],
) -> None:
    members, ppt = group
    for strategy in ("roundrobin", "cooperative-sticky"):
        assert fully_balanced(assign(strategy, members, ppt))


@settings(max_examples=PROPERTY_EXAMPLES)
@given(groups())
def test_sticky_balance_and_cooperative_handoff(
    group: tuple[list[MemberSubscription], dict[str, int]],
) -> None:
    members, ppt = group
    result = cooperative_sticky(members, ppt)
    kafka_balanced(members, result.target)
    first = result.first_round()
    # no partition goes to a new member in the round its owner gives it up
    assert not (_added(members, first) & _revoked(members, first))
    # everything withheld is a move: owned by another member, in the new owner's target
    owners = {p: m.member_id for m in members for p in m.owned}
    for partition, new_owner in result.transferring.items():
        assert partition in result.target[new_owner] and owners[partition] != new_owner
    assert isinstance(result, StickyAssignment)


@settings(max_examples=PROPERTY_EXAMPLES)
@given(groups(same_subscriptions=True))
def test_sticky_keeps_what_it_can(group: tuple[list[MemberSubscription], dict[str, int]]) -> None:
    members, ppt = group
    target = cooperative_sticky(members, ppt).target
    total = sum(ppt.values())
    min_quota = total // len(members)
    for m in members:
        kept = set(m.owned) & set(target[m.member_id])
        assert len(kept) >= min(len(m.owned), min_quota)
    # a settled group stays where it is; when one member leaves, the others keep everything
    settled = [
        MemberSubscription(m.member_id, m.group_instance_id, m.topics, tuple(target[m.member_id]), 7)
        for m in members
    ]
    again = cooperative_sticky(settled, ppt)
    assert as_sets(again.target) == as_sets(target) and again.transferring == {}
    if len(settled) > 1:
        rest = settled[1:]
        after = cooperative_sticky(rest, ppt)
        for m in rest:
            assert set(m.owned) <= set(after.target[m.member_id])
        assert after.transferring == {}
