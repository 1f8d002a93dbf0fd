"""Partition assignors: Kafka's ``range``, ``roundrobin`` and ``cooperative-sticky``, result for result.

``assign(strategy, members, partitions_per_topic)`` returns, for every member id, the partitions that
Kafka's Java assignor of that name gives it for the same members and partitions:

- ``range``: apache/kafka clients/src/main/java/org/apache/kafka/clients/consumer/RangeAssignor.java
- ``roundrobin``: clients/src/main/java/org/apache/kafka/clients/consumer/RoundRobinAssignor.java
- ``cooperative-sticky``: clients/src/main/java/org/apache/kafka/clients/consumer/CooperativeStickyAssignor.java
  over clients/src/main/java/org/apache/kafka/clients/consumer/internals/AbstractStickyAssignor.java

Member order. ``range`` and ``roundrobin`` sort members as Kafka's ``AbstractPartitionAssignor.MemberInfo``
does: members with a ``group_instance_id`` (static members) first, by instance id, then the others by
member id. Strings compare as Java's ``String.compareTo`` (UTF-16 code units). Ties (two members with
one instance id) keep the input order below.

Input order. Kafka's leader puts the members into a ``java.util.HashMap`` keyed by member id, in the
order the JoinGroup response lists them (ConsumerCoordinator.onLeaderElected), and the sticky
assignor's result depends on that map's iteration order (which member keeps ``maxQuota`` partitions,
which of two same-generation claims is seen first). ``members`` is that list; this module recomputes
the HashMap's iteration order from Java's ``String.hashCode``, table size and bucket rules
(``_java_hash_order``), so the result equals Kafka's for the same list. The per-member lists come in
the order Java builds them too (range: topics in HashMap order of ``partitions_per_topic``).

What the assignors see. As ``AbstractPartitionAssignor.assign(Cluster, GroupSubscription)`` does, only
topics that some member subscribes to and that have at least one partition take part.

Sticky conflict rule (``AbstractStickyAssignor.allSubscriptionsEqual``): a partition claimed in
``owned`` by several members goes to the claim with the highest ``generation``; claims of one
generation cancel each other (the partition is then assigned afresh, and counts as transferring).
A negative generation means "none" (Kafka's DEFAULT_GENERATION, -1).

Cooperative handoff (KIP-429). ``assign("cooperative-sticky", ...)`` returns the *target*: what each
member should own once the rebalance settles. Kafka's CooperativeStickyAssignor itself returns the
target minus the partitions that change owner (``StickyAssignment.transferring``): its members keep
what stays, revoke what they own but were not given, and rejoin when they revoked something; in that
follow-up rebalance nobody owns the revoked partitions any more, so they go to their new owners.
``cooperative_sticky()`` returns both: ``.target`` and ``.first_round()`` (exactly the Java
assignor's output). What the coordinator must do with it:

- pass, per member, the partitions it owns now (``owned``) and the generation it got them in;
  only live members, and only partitions of topics the member still subscribes to (Kafka's consumer
  revokes the others before it rejoins). A dead member's partitions are simply not owned.
- each member keeps ``owned & target`` without interruption and revokes ``owned - target``;
- a partition in ``.transferring`` goes to its new member only after every member that owned it has
  revoked it (Kafka: the next rebalance; pylog may grant it the moment the release is recorded, as
  KIP-848's server-side handoff does); every other partition of the target may be granted at once.
  Then no two live members ever own one partition at the same instant.
- ``range`` and ``roundrobin`` are Kafka's EAGER protocol: every member revokes everything it owns
  before it takes its new assignment, and ``owned`` plays no part in their result.

Racks: pylog has none, so only Kafka's rack-unaware paths exist here (no member has a ``client.rack``).

Deviations, each where Kafka's own result would be invalid:
- An owned partition whose number is beyond its topic's partition count is ignored (Kafka keeps it and
  assigns a partition that does not exist, or throws IllegalStateException).
- A member with no topics never makes "all subscriptions equal" (Kafka's check starts from the first
  non-empty subscription it meets, so such a member may be handed partitions it did not subscribe to).
- The general sticky path's "move back to the previous owner" rule is skipped when that owner no longer
  subscribes to the topic (Kafka then assigns it to a non-subscriber, or throws NullPointerException).
- Java's HashMap turns a bucket of 9+ entries in a table of 64+ into a tree, whose iteration order is
  not reproduced; that needs 9 member ids (or 9 moved partitions of one topic between one pair of
  members) in one bucket, which random ids practically never produce.

Thread-safety: pure functions over their arguments; no shared state.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from pylog.types import TopicPartition

ASSIGNORS = ("range", "roundrobin", "cooperative-sticky")

# Kafka's AbstractStickyAssignor.DEFAULT_GENERATION: "no generation"
DEFAULT_GENERATION = -1


@dataclass(frozen=True)
class MemberSubscription:
    """One member as the assignor sees it (Kafka's ConsumerPartitionAssignor.Subscription)."""

    member_id: str
    group_instance_id: str | None = None
    topics: tuple[str, ...] = ()
    # what it owned before this rebalance, and the generation it got them in (sticky only)
    owned: tuple[TopicPartition, ...] = ()
    generation: int = DEFAULT_GENERATION


@dataclass(frozen=True)
class StickyAssignment:
    """The cooperative-sticky result: the target, and the partitions whose owner changes."""

    target: dict[str, list[TopicPartition]]
    # partition -> its member in the target; it must first be revoked by its current owner
    transferring: dict[TopicPartition, str] = field(default_factory=dict)

    def first_round(self) -> dict[str, list[TopicPartition]]:
        """The target without the transferring partitions: what Kafka's CooperativeStickyAssignor returns."""
        return {
            member: [tp for tp in partitions if tp not in self.transferring]
            for member, partitions in self.target.items()
        }


class AssignorError(ValueError):
    """Bad input to an assignor (unknown strategy, duplicate member id)."""


def assign(
    strategy: str, members: Sequence[MemberSubscription], partitions_per_topic: Mapping[str, int]
) -> dict[str, list[TopicPartition]]:
    """Every member's partitions under ``strategy`` (one of ASSIGNORS); see the module doc."""
    if strategy == "range":
        return _range(_checked(members), _subscribed(members, partitions_per_topic))
    if strategy == "roundrobin":
        return _roundrobin(_checked(members), _subscribed(members, partitions_per_topic))
    if strategy == "cooperative-sticky":
        return cooperative_sticky(members, partitions_per_topic).target
    raise AssignorError(f"unknown partition assignment strategy {strategy!r}; known: {ASSIGNORS}")


def cooperative_sticky(
    members: Sequence[MemberSubscription], partitions_per_topic: Mapping[str, int]
) -> StickyAssignment:
    """The cooperative-sticky target and its transferring partitions (Kafka's first round = first_round())."""
    members = _checked(members)
    ppt = _subscribed(members, partitions_per_topic)
    if not members:
        return StickyAssignment({})
    return _Sticky(members, ppt).run()


# ---------------------------------------------------------------------------------------------
# Java's orderings


def _java_key(text: str) -> bytes:
    """Sort key equal to Java's String.compareTo: UTF-16 code units, big-endian bytes compare alike."""
    return text.encode("utf-16-be", "surrogatepass")


def _java_string_hash(text: str) -> int:
    """java.lang.String.hashCode (over UTF-16 code units), as a signed 32-bit int."""
    h = 0
    units = text.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(units), 2):
        h = (31 * h + (units[i] << 8 | units[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def _java_tp_hash(tp: TopicPartition, topic_hash: int) -> int:
    """org.apache.kafka.common.TopicPartition.hashCode (31 * (31 + partition) + topic.hashCode())."""
    h = (31 * (31 + tp.partition) + topic_hash) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def _spread(h: int) -> int:
    """java.util.HashMap.hash: the hash with its high half folded into the low half (unsigned)."""
    h &= 0xFFFFFFFF
    return h ^ (h >> 16)


class _JavaHashOrder:
    """The iteration order of a java.util.HashMap/HashSet built with the default constructor.

    Entries iterate by bucket (``spread(hash) & (capacity - 1)``), and within a bucket in insertion
    order (a resize splits a bucket keeping relative order; a removal keeps the others' order). The
    table starts at 16 buckets and doubles when the size passes 3/4 of it, or when a bucket reaches 9
    entries while the table is under 64 buckets (HashMap.treeifyBin resizes instead of treeifying).
    """

    __slots__ = ("_buckets", "_capacity", "_entries", "_seq")

    def __init__(self) -> None:
        self._capacity = 16
        self._entries: dict[object, tuple[int, int]] = {}  # key -> (spread hash, insertion seq)
        self._buckets: dict[int, int] = {}  # bucket -> entries in it
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def add(self, key: object, java_hash: int) -> None:
        if key in self._entries:
            return  # a HashSet.add / HashMap.put of a present key moves nothing
        spread = _spread(java_hash)
        self._seq += 1
        self._entries[key] = (spread, self._seq)
        bucket = spread & (self._capacity - 1)
        in_bucket = self._buckets.get(bucket, 0) + 1
        self._buckets[bucket] = in_bucket
        if in_bucket >= 9 and self._capacity < 64:
            self._resize()
        if len(self._entries) > self._capacity * 3 // 4:
            self._resize()

    def remove(self, key: object) -> None:
        spread, _ = self._entries.pop(key)
        bucket = spread & (self._capacity - 1)
        self._buckets[bucket] -= 1

    def _resize(self) -> None:
        self._capacity *= 2
        mask = self._capacity - 1
        buckets: dict[int, int] = {}
        for spread, _ in self._entries.values():
            buckets[spread & mask] = buckets.get(spread & mask, 0) + 1
        self._buckets = buckets

    def first(self) -> object:
        """What ``iterator().next()`` returns."""
        mask = self._capacity - 1
        return min(self._entries.items(), key=lambda kv: (kv[1][0] & mask, kv[1][1]))[0]

    def order(self) -> list[object]:
        mask = self._capacity - 1
        return [k for k, _ in sorted(self._entries.items(), key=lambda kv: (kv[1][0] & mask, kv[1][1]))]


def _java_hash_order(names: Iterable[str]) -> list[str]:
    """``names`` in the iteration order of a java.util.HashMap they were put into, in this order."""
    table = _JavaHashOrder()
    for name in names:
        table.add(name, _java_string_hash(name))
    return table.order()  # type: ignore[return-value]


def _member_info_key(member: MemberSubscription) -> tuple[int, bytes]:
    """AbstractPartitionAssignor.MemberInfo's order: static members by instance id, then by member id."""
    if member.group_instance_id is not None:
        return (0, _java_key(member.group_instance_id))
    return (1, _java_key(member.member_id))


# ---------------------------------------------------------------------------------------------
# input


def _checked(members: Sequence[MemberSubscription]) -> list[MemberSubscription]:
    seen: set[str] = set()
    out = []
    for member in members:
        if member.member_id in seen:
            raise AssignorError(f"member id {member.member_id!r} appears twice")
        seen.add(member.member_id)
        out.append(member)
    return out


def _subscribed(
    members: Sequence[MemberSubscription], partitions_per_topic: Mapping[str, int]
) -> dict[str, int]:
    """The topics that take part: subscribed by someone and with partitions (dict order kept)."""
    wanted = {topic for member in members for topic in member.topics}
    return {topic: count for topic, count in partitions_per_topic.items() if topic in wanted and count > 0}


# ---------------------------------------------------------------------------------------------
# range


def _range(members: list[MemberSubscription], ppt: dict[str, int]) -> dict[str, list[TopicPartition]]:
    by_id = {m.member_id: m for m in members}
    order = [by_id[mid] for mid in _java_hash_order(m.member_id for m in members)]
    assignment: dict[str, list[TopicPartition]] = {m.member_id: [] for m in members}
    # RangeAssignor keeps its topics in a HashMap; each member's list follows that map's order
    for topic in _java_hash_order(ppt):
        count = ppt[topic]
        # stable sort over the subscription map's order, as Collections.sort does
        consumers = sorted((m for m in order if topic in m.topics), key=_member_info_key)
        if not consumers:
            continue
        per_consumer, extra = divmod(count, len(consumers))
        start = 0
        for member in consumers:
            if start >= count:
                break
            take = per_consumer + (1 if extra > 0 else 0)
            if take > per_consumer:
                extra -= 1
            assignment[member.member_id].extend(TopicPartition(topic, p) for p in range(start, start + take))
            start += take
    return assignment


# ---------------------------------------------------------------------------------------------
# roundrobin


def _roundrobin(members: list[MemberSubscription], ppt: dict[str, int]) -> dict[str, list[TopicPartition]]:
    if not members:
        return {}
    by_id = {m.member_id: m for m in members}
    ring = sorted((by_id[mid] for mid in _java_hash_order(by_id)), key=_member_info_key)
    subscribed = [set(m.topics) for m in ring]
    assignment: dict[str, list[TopicPartition]] = {m.member_id: [] for m in members}
    at = 0  # the ring position the next partition is offered to
    for topic in sorted(ppt, key=_java_key):
        for partition in range(ppt[topic]):
            while topic not in subscribed[at]:
                at = (at + 1) % len(ring)
            assignment[ring[at].member_id].append(TopicPartition(topic, partition))
            at = (at + 1) % len(ring)
    return assignment


# ---------------------------------------------------------------------------------------------
# cooperative-sticky


def _remove(items: list[TopicPartition], tp: TopicPartition) -> None:
    """java.util.List.remove(Object): the first occurrence, if any."""
    if tp in items:
        items.remove(tp)


class _SizeOrder:
    """AbstractStickyAssignor's TreeSet of members ordered by (assigned partition count, member id).

    Every size change of a member is bracketed by remove/add, as in Kafka, so the key stored at add
    time is the one to find it by.
    """

    __slots__ = ("_assignment", "_id_keys", "_keys", "_sorted")

    def __init__(self, assignment: dict[str, list[TopicPartition]], id_keys: dict[str, bytes]) -> None:
        self._assignment = assignment
        self._id_keys = id_keys
        self._sorted: list[tuple[int, bytes, str]] = []
        self._keys: dict[str, tuple[int, bytes, str]] = {}

    def add(self, member: str) -> None:
        if member in self._keys:
            return
        key = (len(self._assignment[member]), self._id_keys[member], member)
        self._keys[member] = key
        bisect.insort(self._sorted, key)

    def remove(self, member: str) -> None:
        key = self._keys.pop(member, None)
        if key is not None:
            del self._sorted[bisect.bisect_left(self._sorted, key)]

    def first(self) -> str:
        return self._sorted[0][2]

    def last(self) -> str:
        return self._sorted[-1][2]

    def __iter__(self) -> Iterator[str]:
        # a snapshot: callers may move members while they walk it (and stop right after)
        return iter([key[2] for key in self._sorted])


class _Movements:
    """AbstractStickyAssignor.PartitionMovements: where each moved partition came from and went to."""

    def __init__(self, topic_hashes: dict[str, int]) -> None:
        self._topic_hashes = topic_hashes
        self._by_topic: dict[str, dict[tuple[str, str], _JavaHashOrder]] = {}
        self._moves: dict[TopicPartition, tuple[str, str]] = {}

    def _drop(self, tp: TopicPartition) -> tuple[str, str]:
        pair = self._moves.pop(tp)
        pairs = self._by_topic[tp.topic]
        pairs[pair].remove(tp)
        if not len(pairs[pair]):
            del pairs[pair]
        if not pairs:
            del self._by_topic[tp.topic]
        return pair

    def _record(self, tp: TopicPartition, pair: tuple[str, str]) -> None:
        self._moves[tp] = pair
        pairs = self._by_topic.setdefault(tp.topic, {})
        if pair not in pairs:
            pairs[pair] = _JavaHashOrder()  # a fresh java.util.HashSet each time
        pairs[pair].add(tp, _java_tp_hash(tp, self._topic_hashes[tp.topic]))

    def move(self, tp: TopicPartition, old: str, new: str) -> None:
        if tp in self._moves:
            source, _ = self._drop(tp)
            if source != new:  # not going back where it came from
                self._record(tp, (source, new))
        else:
            self._record(tp, (old, new))

    def partition_to_move(self, tp: TopicPartition, old: str, new: str) -> TopicPartition:
        """Prefer undoing an earlier move of the topic from ``new`` to tp's original owner."""
        pairs = self._by_topic.get(tp.topic)
        if pairs is None:
            return tp
        if tp in self._moves:
            old = self._moves[tp][0]
        reverse = pairs.get((new, old))
        if reverse is None:
            return tp
        return reverse.first()  # type: ignore[return-value]


class _Sticky:
    """AbstractStickyAssignor.assignPartitions + CooperativeStickyAssignor's transferring set."""

    def __init__(self, members: list[MemberSubscription], ppt: dict[str, int]) -> None:
        self.ppt = ppt
        self.subs = {m.member_id: m for m in members}
        # the order Kafka iterates its subscriptions HashMap in
        self.order = _java_hash_order(m.member_id for m in members)
        self.id_keys = {mid: _java_key(mid) for mid in self.order}
        self.topic_keys = {t: _java_key(t) for t in ppt}
        self.topics_of = {mid: set(m.topics) for mid, m in self.subs.items()}

    @staticmethod
    def _generation(member: MemberSubscription) -> int:
        return member.generation if member.generation >= 0 else DEFAULT_GENERATION

    def _owned_in_range(self, member: MemberSubscription) -> list[TopicPartition]:
        seen: set[TopicPartition] = set()
        out = []
        for tp in member.owned:
            count = self.ppt.get(tp.topic)
            if count is not None and not 0 <= tp.partition < count:
                continue  # deviation: a partition that does not exist (see the module doc)
            if tp not in seen:
                seen.add(tp)
                out.append(tp)
        return out

    def run(self) -> StickyAssignment:
        owned_by: dict[str, list[TopicPartition]] = {}
        claimed_twice: set[TopicPartition] = set()
        self.max_generation = DEFAULT_GENERATION
        self.owned = {mid: self._owned_in_range(m) for mid, m in self.subs.items()}
        if self._all_subscriptions_equal(owned_by, claimed_twice):
            target, transferring = self._constrained(owned_by, claimed_twice)
        else:
            target = self._general(owned_by)
            transferring = self._transferring(target)
        return StickyAssignment(target, transferring)

    def _all_subscriptions_equal(
        self, owned_by: dict[str, list[TopicPartition]], claimed_twice: set[TopicPartition]
    ) -> bool:
        """Fills each member's valid owned partitions (generation rule) and tells if subscriptions agree."""
        all_equal = True
        first: set[str] | None = None
        owner_of: dict[TopicPartition, str] = {}
        for mid in self.order:
            member = self.subs[mid]
            if first is None:
                first = set(member.topics)
            elif all_equal and not (len(member.topics) == len(first) and first.issuperset(member.topics)):
                all_equal = False
            generation = self._generation(member)
            self.max_generation = max(self.max_generation, generation)
            mine: list[TopicPartition] = []
            owned_by[mid] = mine
            for tp in self.owned[mid]:
                if tp.topic not in self.ppt:
                    continue
                other = owner_of.get(tp)
                if other is None:
                    mine.append(tp)
                    owner_of[tp] = mid
                    continue
                other_generation = self._generation(self.subs[other])
                if generation == other_generation:
                    # two claims of one generation: neither keeps it
                    claimed_twice.add(tp)
                    _remove(owned_by[other], tp)
                    owner_of[tp] = mid
                elif generation > other_generation:
                    mine.append(tp)
                    _remove(owned_by[other], tp)
                    owner_of[tp] = mid
        return all_equal

    # -- every member subscribes to the same topics ---------------------------------------------

    def _constrained(
        self, owned_by: dict[str, list[TopicPartition]], claimed_twice: set[TopicPartition]
    ) -> tuple[dict[str, list[TopicPartition]], dict[TopicPartition, str]]:
        total = sum(self.ppt.values())
        consumers = len(owned_by)
        min_quota, extra_members = divmod(total, consumers)
        max_quota = min_quota + (1 if extra_members else 0)
        over_min = 0  # members that got max_quota > min_quota so far
        assignment: dict[str, list[TopicPartition]] = {mid: [] for mid in owned_by}
        maybe_revoked: dict[TopicPartition, str] = {}
        under_min: list[str] = []
        exactly_min: list[str] = []
        kept: set[TopicPartition] = set()
        transferring: dict[TopicPartition, str] = {}

        for mid in self.order:  # the owned-partitions HashMap iterates like the subscriptions one
            owned = sorted(owned_by[mid], key=lambda tp: (tp.partition, self.topic_keys[tp.topic]))
            owned = [tp for tp in owned if tp not in claimed_twice]
            mine = assignment[mid]
            if len(owned) < min_quota:
                mine.extend(owned)
                kept.update(owned)
                under_min.append(mid)
            elif len(owned) >= max_quota and over_min < extra_members:
                over_min += 1
                if over_min == extra_members:
                    exactly_min.clear()
                mine.extend(owned[:max_quota])
                kept.update(owned[:max_quota])
                for tp in owned[max_quota:]:
                    maybe_revoked[tp] = mid
            else:
                mine.extend(owned[:min_quota])
                kept.update(owned[:min_quota])
                for tp in owned[min_quota:]:
                    maybe_revoked[tp] = mid
                if over_min < extra_members:
                    exactly_min.append(mid)

        unassigned = [
            TopicPartition(topic, p)
            for topic in sorted(self.ppt, key=self.topic_keys.__getitem__)
            for p in range(self.ppt[topic])
            if TopicPartition(topic, p) not in kept
        ]
        under_min.sort(key=self.id_keys.__getitem__)
        exactly_min.sort(key=self.id_keys.__getitem__)

        # round robin over the members still under min_quota, then those at exactly min_quota
        at = 0  # a java.util.Iterator over under_min: index of its next element
        for tp in unassigned:
            if at < len(under_min):
                member = under_min[at]
                at += 1
            elif not under_min and not exactly_min:
                raise AssertionError("sticky assignor: no member left for an unassigned partition")
            elif not under_min:
                member = exactly_min.pop(0)
            else:
                member = under_min[0]
                at = 1
            mine = assignment[member]
            mine.append(tp)
            if (tp in maybe_revoked and maybe_revoked[tp] != member) or tp in claimed_twice:
                transferring[tp] = member
            if len(mine) == min_quota:
                at -= 1
                del under_min[at]
                exactly_min.append(member)
            elif len(mine) == max_quota:
                over_min += 1
        if under_min and over_min != extra_members:
            raise AssertionError("sticky assignor: members left under quota")
        return assignment, transferring

    # -- subscriptions differ ---------------------------------------------------------------------

    def _general(self, current: dict[str, list[TopicPartition]]) -> dict[str, list[TopicPartition]]:
        ppt = self.ppt
        consumers_of: dict[str, list[str]] = {t: [] for t in ppt}  # topic -> its potential consumers
        topics_of: dict[str, list[str]] = {}  # member -> its existing subscribed topics
        for mid in self.order:
            mine: list[str] = []
            topics_of[mid] = mine
            for topic in self.subs[mid].topics:
                if topic in ppt:
                    mine.append(topic)
                    consumers_of[topic].append(mid)
            current.setdefault(mid, [])
        self.consumers_of = consumers_of
        self.topic_sets_of = {mid: set(ts) for mid, ts in topics_of.items()}
        self.current = current
        owner: dict[TopicPartition, str] = {tp: mid for mid, tps in current.items() for tp in tps}
        self.owner = owner
        self.max_size_of = {mid: self._max_assignment_size(ts) for mid, ts in topics_of.items()}

        topic_order = sorted(ppt, key=lambda t: (len(consumers_of[t]), self.topic_keys[t]))
        all_partitions = [TopicPartition(t, p) for t in topic_order for p in range(ppt[t])]

        # the previous owner of each partition among members of an older generation (latest wins)
        previous: dict[TopicPartition, tuple[str, int]] = {}
        for mid in self.order:
            member = self.subs[mid]
            generation = self._generation(member)
            if generation < self.max_generation:
                for tp in member.owned:
                    had = previous.get(tp)
                    if had is None or generation > had[1]:
                        previous[tp] = (mid, generation)

        # keep owned partitions of subscribed topics; drop the rest
        revocation_required = False
        kept: set[TopicPartition] = set()
        for mid, tps in current.items():
            subscribed = self.topics_of[mid]
            still = []
            for tp in tps:
                if tp.topic not in consumers_of:
                    owner.pop(tp, None)
                elif tp.topic not in subscribed:
                    revocation_required = True  # (Kafka leaves its owner entry; it is overwritten below)
                else:
                    still.append(tp)
                    kept.add(tp)
            tps[:] = still
        unassigned = all_partitions if not kept else [tp for tp in all_partitions if tp not in kept]

        self.by_size = _SizeOrder(current, self.id_keys)
        for mid in current:
            self.by_size.add(mid)
        self.movements = _Movements({t: _java_string_hash(t) for t in ppt})
        self._balance(previous, unassigned, all_partitions, topics_of, revocation_required)
        return current

    def _max_assignment_size(self, topics: list[str]) -> int:
        if len(topics) == len(self.ppt):
            return sum(self.ppt.values())
        return sum(self.ppt[t] for t in topics)

    def _balance(
        self,
        previous: dict[TopicPartition, tuple[str, int]],
        unassigned: list[TopicPartition],
        all_partitions: list[TopicPartition],
        topics_of: dict[str, list[str]],
        revocation_required: bool,
    ) -> None:
        current, by_size = self.current, self.by_size
        initializing = not current[by_size.last()]

        for tp in unassigned:
            if not self.consumers_of[tp.topic]:
                continue
            for mid in by_size:
                if tp.topic in self.topic_sets_of[mid]:
                    by_size.remove(mid)
                    current[mid].append(tp)
                    self.owner[tp] = mid
                    by_size.add(mid)
                    break

        # only topics with two or more potential consumers can move
        fixed_topics = {t for t, cs in self.consumers_of.items() if len(cs) < 2}
        if fixed_topics:
            all_partitions[:] = [tp for tp in all_partitions if tp.topic not in fixed_topics]
            if unassigned is not all_partitions:
                unassigned[:] = [tp for tp in unassigned if tp.topic not in fixed_topics]

        fixed: dict[str, list[TopicPartition]] = {}
        for mid in topics_of:
            if not self._can_participate(mid):
                by_size.remove(mid)
                fixed[mid] = current.pop(mid)

        before = {mid: list(tps) for mid, tps in current.items()}
        before_owner = dict(self.owner)
        self.topic_owners: dict[str, dict[str, int]] = {}
        for mid, tps in current.items():
            for tp in tps:
                counts = self.topic_owners.setdefault(tp.topic, {})
                counts[mid] = counts.get(mid, 0) + 1

        if not revocation_required:
            self._reassign_all(unassigned, previous)
        performed = self._reassign_all(all_partitions, previous)

        if not initializing and performed and _balance_score(current) >= _balance_score(before):
            current.clear()
            current.update({mid: list(tps) for mid, tps in before.items()})
            self.owner.clear()
            self.owner.update(before_owner)

        for mid, tps in fixed.items():
            current[mid] = tps

    def _can_participate(self, mid: str) -> bool:
        tps = self.current[mid]
        if len(tps) < self.max_size_of[mid]:
            return True
        return any(len(self.consumers_of[tp.topic]) >= 2 for tp in tps)

    def _is_balanced(self) -> bool:
        """GeneralAssignmentBuilder.isBalanced: sizes within one, or no partition could move to a smaller member.

        Kafka walks every partition of every smaller member's topics; the same question per topic:
        is there a member that could take more (below its maximum) and an owner of that topic at
        least two partitions bigger? (A member that is itself the topic's biggest owner has none.)
        ``self.topic_owners`` counts each topic's partitions per owner. It only ends the
        reassignment loop early: a partition moves only when such a pair exists.
        """
        current, by_size = self.current, self.by_size
        smallest = len(current[by_size.first()])
        largest = len(current[by_size.last()])
        if smallest >= largest - 1:
            return True
        for topic, owners in self.topic_owners.items():
            biggest = max((len(current[owner]) for owner, count in owners.items() if count), default=0)
            for mid in self.consumers_of[topic]:
                mine = current.get(mid)
                if mine is not None and len(mine) < self.max_size_of[mid] and len(mine) + 1 < biggest:
                    return False
        return True

    def _reassign_all(
        self, partitions: list[TopicPartition], previous: dict[TopicPartition, tuple[str, int]]
    ) -> bool:
        current = self.current
        performed = False
        modified = True
        while modified:
            modified = False
            for tp in partitions:
                if self._is_balanced():
                    break
                mid = self.owner[tp]
                before = previous.get(tp)
                # deviation: only a previous owner still subscribed to the topic (see the module doc)
                if (
                    before is not None
                    and tp.topic in self.topic_sets_of[before[0]]
                    and len(current[mid]) > len(current[before[0]]) + 1
                ):
                    self._move(tp, before[0])
                    performed = modified = True
                    continue
                size = len(current[mid])
                if any(size > len(current[other]) + 1 for other in self.consumers_of[tp.topic]):
                    target = next(m for m in self.by_size if tp.topic in self.topic_sets_of[m])
                    self._move(tp, target)
                    performed = modified = True
        return performed

    def _move(self, tp: TopicPartition, new: str) -> None:
        moved = self.movements.partition_to_move(tp, self.owner[tp], new)
        old = self.owner[moved]
        self.by_size.remove(old)
        self.by_size.remove(new)
        self.movements.move(moved, old, new)
        self.current[old].remove(moved)
        self.current[new].append(moved)
        counts = self.topic_owners[moved.topic]
        counts[old] -= 1
        counts[new] = counts.get(new, 0) + 1
        self.owner[moved] = new
        self.by_size.add(new)
        self.by_size.add(old)

    def _transferring(self, target: dict[str, list[TopicPartition]]) -> dict[TopicPartition, str]:
        """CooperativeStickyAssignor.computePartitionsTransferringOwnership: added here, revoked there."""
        added: dict[TopicPartition, str] = {}
        revoked: set[TopicPartition] = set()
        for mid, tps in target.items():
            owned = set(self.subs[mid].owned)
            assigned = set(tps)
            for tp in tps:
                if tp not in owned:
                    added[tp] = mid
            revoked.update(tp for tp in self.subs[mid].owned if tp not in assigned)
        return {tp: mid for tp, mid in added.items() if tp in revoked}


def _balance_score(assignment: dict[str, list[TopicPartition]]) -> int:
    sizes = sorted(len(tps) for tps in assignment.values())
    # sum over pairs of |a - b|, in O(n log n): each size minus all smaller ones
    score = 0
    running = 0
    for i, size in enumerate(sizes):
        score += size * i - running
        running += size
    return score


__all__ = [
    "ASSIGNORS",
    "AssignorError",
    "MemberSubscription",
    "StickyAssignment",
    "assign",
    "cooperative_sticky",
]
