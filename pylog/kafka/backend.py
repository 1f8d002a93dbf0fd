"""KafkaBackend: the ``pylog.backend.Backend`` surface over a real Kafka cluster.

``pylog.open("kafka://host:port,...", **settings)`` builds one. It owns:

- the connection settings: ``properties`` (librdkafka properties from
  ``pylog.kafka.settings.client_properties``; every confluent client made for this log gets a
  copy) and ``timeout_ms``, the bound of every blocking admin or metadata call;
- one ``confluent_kafka.admin.AdminClient``, made lazily on first use (so opening a log never
  fails on an unreachable cluster: the first call that needs it raises ``KafkaConnectionError``
  or ``KafkaTimeoutError`` within ``timeout_ms``) and made again in a forked child (librdkafka's
  threads do not survive a fork);
- a snapshot of the cluster's metadata (topic -> partition count), at most
  ``METADATA_MAX_AGE_S`` old on the hit path of ``partitions_for`` and dropped by every change
  this backend makes; a topic missing from it is always asked for again before it is unknown;
- ``metadata_version()``: a counter this process keeps, bumped whenever a fresh metadata
  snapshot shows another set of topics or partition counts than the one before (Kafka has no
  such number; pattern subscriptions and added partitions watch it).

Validation comes first and is the embedded backend's own (topic names: ``pylog.embedded.topics``;
config overrides: ``pylog.config.LogConfig.from_mapping``; partition counts), so bad input gets
the same error on both backends; what the cluster answers then goes through
``pylog.kafka.errors.translate``, the one mapping of Kafka's error codes.

Kafka's admin operations are asynchronous where the embedded ones are not: ``create_topic``
returns once every partition has a leader in the metadata, and ``delete_topic`` once the topic
is gone from it, so that a produce right after a create, or a create of the same name right
after a delete, works as on the embedded backend. Every wait is bounded by ``timeout_ms``.

What has no Kafka counterpart raises ``pylog.errors.UnsupportedError`` (the embedded internals
``partition_log``, ``fetcher``, ``group_member``, ``group_store``; ``compact`` and
``apply_retention``, which the brokers do themselves). docs/kafka.md lists every difference.

Thread-safety: every method may be called from any thread (the AdminClient is thread-safe; the
snapshot and the counter are replaced under ``_lock``). After ``close()`` every call raises
``ClientClosedError``.
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaException, TopicCollection
from confluent_kafka import TopicPartition as KafkaTopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from pylog.embedded import topics as layout
from pylog.embedded.backend import _KNOWN_CONFIG_KEYS, _partition_count, normalized_config
from pylog.embedded.group_store import GroupDescription, MemberDescription, check_group_id
from pylog.errors import (
    ClientClosedError,
    CommitFailedError,
    GroupIdNotFoundError,
    InvalidConfigError,
    KafkaTimeoutError,
    NonEmptyGroupError,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    UnsupportedError,
)
from pylog.forking import keep_forever
from pylog.kafka.errors import is_code, kafka_error_of, raise_for, translate
from pylog.kafka.settings import client_properties
from pylog.offset_reset import checked_partitions, reset_offset_targets, reset_target
from pylog.partition import CleanResult, RetentionResult, as_int
from pylog.types import OffsetAndMetadata, PartitionDescription, TopicDescription, TopicPartition

#: how old a metadata snapshot may be when ``partitions_for`` answers a known topic from it
#: (another client's topic changes show within this; this backend's own at once)
METADATA_MAX_AGE_S = 1.0
#: Kafka's internal topics (clients/src/main/java/org/apache/kafka/common/internals/Topic.java:
#: GROUP_METADATA_TOPIC_NAME, TRANSACTION_STATE_TOPIC_NAME, SHARE_GROUP_STATE_TOPIC_NAME), left
#: out of ``list_topics`` as the embedded backend has none
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__share_group_state"})
#: what ``describe_topic`` gives as ``size_bytes``: the partitions' files are on the brokers, and
#: confluent-kafka's AdminClient has no DescribeLogDirs (docs/kafka.md)
UNKNOWN_SIZE = -1
#: what ``describe_group`` gives where Kafka's DescribeGroups answer carries nothing: the
#: generation, a member's process id and its epoch
UNKNOWN_GENERATION = -1
UNKNOWN_PID = -1
UNKNOWN_EPOCH = -1
#: Kafka's group states (ConsumerGroupState) by the embedded backend's names
#: (group-coordinator/src/main/java/org/apache/kafka/coordinator/group/classic/ClassicGroupState.java)
_GROUP_STATES = {
    ConsumerGroupState.EMPTY: "Empty",
    ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
    ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
    ConsumerGroupState.STABLE: "Stable",
}
#: the per-partition answers of a leader being elected or moving: asked again until the deadline
_LEADER_MOVING = (
    "NOT_LEADER_FOR_PARTITION",
    "LEADER_NOT_AVAILABLE",
    "REPLICA_NOT_AVAILABLE",
    "FENCED_LEADER_EPOCH",
    "UNKNOWN_LEADER_EPOCH",
    "OFFSET_NOT_AVAILABLE",
)
#: a group's coordinator moving or loading: group requests are sent again until the deadline
_COORDINATOR_MOVING = ("NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "COORDINATOR_NOT_AVAILABLE")
#: the first and the longest pause between two looks while waiting for the metadata to change
_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.1


def _to_kafka(key: str, value: Any) -> str:
    """A normalized config value (``normalized_config``) as the string Kafka's configs take.
    pylog's ``compression.type=none`` is Kafka's ``uncompressed`` (Kafka has no "none":
    server-common/src/main/java/org/apache/kafka/server/record/BrokerCompressionType.java)."""
    if key == "compression.type" and value == "none":
        return "uncompressed"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _from_kafka(key: str, value: str) -> str:
    """Kafka's string of a config value as pylog's rules read it (``_to_kafka`` undone)."""
    return "none" if key == "compression.type" and value == "uncompressed" else value


def topic_id_string(uuid: Any) -> str:
    """A confluent ``Uuid`` in Kafka's string form: its 16 bytes in URL-safe base64 without
    padding (clients/src/main/java/org/apache/kafka/common/Uuid.java ``toString``), the form of
    the embedded backend's topic ids (confluent's own ``str`` uses the standard alphabet)."""
    mask = (1 << 64) - 1
    raw = (uuid.get_most_significant_bits() & mask).to_bytes(8, "big") + (
        uuid.get_least_significant_bits() & mask
    ).to_bytes(8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _all_led(name: str, count: int) -> Any:
    """A test of a metadata answer: ``name`` has ``count`` partitions, each with a leader."""

    def led(metadata: Any) -> bool:
        topic = metadata.topics.get(name)
        return (
            topic is not None
            and len(topic.partitions) == count
            and all(p.leader >= 0 and p.error is None for p in topic.partitions.values())
        )

    return led


def _check_partition_number(topic: str, count: int, partition: object) -> None:
    """``UnknownTopicOrPartitionError`` unless ``partition`` is an int naming one of the topic's
    (the embedded backend's rule and text)."""
    if isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition < count:
        raise UnknownTopicOrPartitionError(f"topic {topic!r} has no partition {partition!r} (it has {count})")


def _retriable(error: KafkaException) -> bool:
    """Whether the request may succeed if asked again: a leader being elected or moving (Kafka's
    retriable partition errors, clients/src/main/java/org/apache/kafka/common/protocol/Errors.java;
    confluent's ``retriable()`` is not set on the per-partition errors of admin results)."""
    kafka_error = kafka_error_of(error)
    return kafka_error is not None and (bool(kafka_error.retriable()) or is_code(error, *_LEADER_MOVING))


def _partitions_of(assignment: Any) -> frozenset[TopicPartition]:
    """A confluent ``MemberAssignment`` as pylog ``TopicPartition``s."""
    if assignment is None:
        return frozenset()
    return frozenset(TopicPartition(tp.topic, tp.partition) for tp in assignment.topic_partitions)


class _Deadline:
    """The end of one call's ``timeout_ms``: what is left of it, in seconds, for each step."""

    __slots__ = ("end", "what")

    def __init__(self, timeout_ms: int, what: str):
        self.end = time.monotonic() + timeout_ms / 1000.0
        self.what = what

    def left(self) -> float:
        """Seconds left (at least 1 ms, so librdkafka gets a positive timeout); raises
        ``KafkaTimeoutError`` once the time is up."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise KafkaTimeoutError(f"{self.what}: no answer within the timeout")
        return max(left, 0.001)

    def expired(self) -> bool:
        return time.monotonic() >= self.end


class KafkaBackend:
    """One Kafka cluster behind a ``pylog.Log`` (see the module docstring)."""

    engine = "kafka"

    def __init__(self, url: str, *, auto_create_topics: bool = True, **settings: Any):
        properties, timeout_ms = client_properties(url, settings)
        #: the URL as given (``Log.path``)
        self.path = url
        self.auto_create_topics = bool(auto_create_topics)
        #: librdkafka properties shared by every client of this cluster: give each a copy
        self.properties: dict[str, Any] = properties
        #: the bound, in ms, of every blocking admin or metadata call
        self.timeout_ms = timeout_ms
        self._lock = threading.Lock()
        self._closed = False
        self._admin: AdminClient | None = None
        self._admin_pid = -1
        #: topic -> partition count, from the last metadata request, and when it was taken
        self._topics: dict[str, int] = {}
        self._topics_at = -1.0
        self._version = 0

    # --- the admin client and the metadata snapshot -------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError(f"the log {self.path} is closed")

    @property
    def admin(self) -> AdminClient:
        """The one ``AdminClient`` of this backend (made on first use; again after a fork)."""
        self._check_open()
        admin = self._admin
        if admin is not None and self._admin_pid == os.getpid():
            return admin
        with self._lock:
            self._check_open()
            if self._admin is None or self._admin_pid != os.getpid():
                try:
                    # why a fresh one after fork: librdkafka's threads are not in the child; the
                    # parent's handle is left alone (destroying it here would touch them)
                    _keep_inherited(self._admin, self._admin_pid)
                    self._admin = AdminClient(dict(self.properties))
                except KafkaException as error:
                    raise translate(error, f"connect to {self.path}") from error
                self._admin_pid = os.getpid()
            return self._admin

    def _wait(self, future: Any, deadline: _Deadline) -> Any:
        """The result of an admin future, its Kafka error translated; bounded by ``deadline``
        (librdkafka's own request timeout fails it first; this is the safety net)."""
        try:
            return future.result(timeout=deadline.left() + 1.0)
        except KafkaException as error:
            raise translate(error, deadline.what) from error
        except TimeoutError as error:  # concurrent.futures.TimeoutError is TimeoutError (3.11)
            raise KafkaTimeoutError(f"{deadline.what}: no answer within the timeout") from error

    def _ask_group(self, send: Any, deadline: _Deadline) -> Any:
        """The result of the group request ``send()`` makes (it returns the request's future),
        sent again while the group's coordinator is moving or still loading the group
        (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE: a fresh
        cluster loads __consumer_offsets on first use), until the deadline."""
        pause = _POLL_FIRST_S
        while True:
            try:
                return send().result(timeout=deadline.left() + 1.0)
            except KafkaException as error:
                if not is_code(error, *_COORDINATOR_MOVING) or deadline.end - time.monotonic() <= pause:
                    raise translate(error, deadline.what) from error
            except TimeoutError as error:
                raise KafkaTimeoutError(f"{deadline.what}: no answer within the timeout") from error
            time.sleep(pause)
            pause = min(pause * 2, _POLL_MAX_S)

    def _fetch_metadata(self, deadline: _Deadline) -> dict[str, int]:
        """Ask the cluster for every topic's partition count; refresh the snapshot and the version."""
        try:
            metadata = self.admin.list_topics(timeout=deadline.left())
        except KafkaException as error:
            raise translate(error, deadline.what) from error
        topics = {
            name: len(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.error is None or topic.partitions
        }
        with self._lock:
            if topics != self._topics:
                self._version += 1
            self._topics = topics
            self._topics_at = time.monotonic()
        return topics

    def _forget_metadata(self) -> None:
        """Drop the snapshot: the next call asks the cluster (after a change made here)."""
        with self._lock:
            self._topics_at = -1.0

    def _metadata(self, what: str) -> dict[str, int]:
        return self._fetch_metadata(_Deadline(self.timeout_ms, what))

    # --- metadata, used by producers and consumers ----------------------------------------------------

    def partitions_for(self, topic: str, *, create: bool = False) -> int:
        """The partition count of ``topic``; with ``create`` and ``auto_create_topics`` an unknown
        topic is created (1 partition, the cluster's default config). Raises
        ``UnknownTopicOrPartitionError`` or, for an illegal name, ``InvalidTopicError``."""
        self._check_open()
        if time.monotonic() - self._topics_at < METADATA_MAX_AGE_S:
            count = self._topics.get(topic)
            if count is not None:
                return count
        layout.validate_topic_name(topic)
        count = self._metadata(f"look up topic {topic!r}").get(topic)
        if count is not None:
            return count
        if create and self.auto_create_topics:
            with contextlib.suppress(TopicAlreadyExistsError):  # made by another client meanwhile
                self.create_topic(topic)
            count = self._metadata(f"look up topic {topic!r}").get(topic)
            if count is not None:
                return count
        raise UnknownTopicOrPartitionError(f"unknown topic {topic!r}")

    def list_topics(self) -> list[str]:
        """The names of all topics but Kafka's internal ones, sorted."""
        self._check_open()
        return sorted(name for name in self._metadata("list topics") if name not in INTERNAL_TOPICS)

    def metadata_version(self) -> int:
        """A number that grows whenever this process sees another set of topics or partition
        counts in the cluster's metadata than it saw before (asks the cluster each call)."""
        self._check_open()
        self._metadata("read the cluster metadata")
        return self._version

    def _await_metadata(self, deadline: _Deadline, done: Any) -> None:
        """Ask for the metadata until ``done(metadata)`` holds; ``KafkaTimeoutError`` at the deadline."""
        pause = _POLL_FIRST_S
        while True:
            metadata = self.admin.list_topics(timeout=deadline.left())
            if done(metadata):
                self._forget_metadata()
                return
            if deadline.end - time.monotonic() <= pause:
                raise KafkaTimeoutError(f"{deadline.what}: the cluster's metadata did not show it in time")
            time.sleep(pause)
            pause = min(pause * 2, _POLL_MAX_S)

    # --- topic admin -------------------------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1, config: Mapping[str, Any] | None = None) -> None:
        """Create ``name`` with ``partitions`` partitions (the cluster's default replication
        factor) and Kafka-named ``config`` overrides; returns once every partition has a leader."""
        self._check_open()
        layout.validate_topic_name(name)
        count = _partition_count(partitions, "partitions")
        overrides = {key: _to_kafka(key, value) for key, value in normalized_config(config).items()}
        deadline = _Deadline(self.timeout_ms, f"create topic {name!r}")
        self._change_topic(
            name,
            lambda seconds: self.admin.create_topics(
                [NewTopic(name, count, config=overrides)], operation_timeout=seconds, request_timeout=seconds
            ),
            deadline,
        )
        self._await_leaders(name, count, deadline)

    def _change_topic(self, name: str, send: Any, deadline: _Deadline) -> None:
        """Send one topic admin request (``send(seconds)`` makes it and returns its futures by
        topic) and wait for its answer; the metadata snapshot is dropped either way."""
        try:
            self._wait(send(deadline.left())[name], deadline)
        finally:
            self._forget_metadata()

    def _await_leaders(self, name: str, count: int, deadline: _Deadline) -> None:
        """Wait until each of the ``count`` partitions of ``name`` has a leader in the metadata
        and that leader serves it."""
        with _translated(deadline.what):
            self._await_metadata(deadline, _all_led(name, count))
        # why also ask the leaders: the metadata names a leader before it serves the partition
        # (a ListOffsets right after gets NOT_LEADER_OR_FOLLOWER); a produce or describe after
        # create_topic must find the partitions ready, as on the embedded backend
        self._offsets(
            [TopicPartition(name, p) for p in range(count)], OffsetSpec.latest(), deadline, new=True
        )

    def delete_topic(self, name: str) -> None:
        """Delete ``name``; returns once it is gone from the cluster's metadata."""
        self._check_open()
        layout.validate_topic_name(name)
        deadline = _Deadline(self.timeout_ms, f"delete topic {name!r}")
        self._change_topic(
            name,
            lambda seconds: self.admin.delete_topics(
                [name], operation_timeout=seconds, request_timeout=seconds
            ),
            deadline,
        )
        with _translated(deadline.what):
            self._await_metadata(deadline, lambda metadata: name not in metadata.topics)

    def describe_topic(self, name: str) -> TopicDescription:
        """The topic's id, config overrides and, per partition, its start and end offsets.
        ``size_bytes`` is -1 and the cleaner's fields are None: the partitions' files are the
        brokers' (docs/kafka.md)."""
        self._check_open()
        layout.validate_topic_name(name)
        deadline = _Deadline(self.timeout_ms, f"describe topic {name!r}")
        # why all requests before any wait: they run in parallel in librdkafka's threads
        described = self.admin.describe_topics(TopicCollection([name]), request_timeout=deadline.left())[name]
        configs = self._submit_configs(name, deadline)
        info = self._wait(described, deadline)
        tps = [TopicPartition(name, p.id) for p in sorted(info.partitions, key=lambda p: p.id)]
        config = self._overrides(self._wait(configs, deadline))
        start_of = self._offsets(tps, OffsetSpec.earliest(), deadline)
        end_of = self._offsets(tps, OffsetSpec.latest(), deadline)
        partitions = tuple(
            PartitionDescription(
                partition=tp.partition,
                start_offset=start_of[tp],
                end_offset=end_of[tp],
                size_bytes=UNKNOWN_SIZE,
            )
            for tp in tps
        )
        return TopicDescription(
            name=name, topic_id=topic_id_string(info.topic_id), partitions=partitions, config=config
        )

    def _submit_configs(self, name: str, deadline: _Deadline) -> Any:
        """The future of a DescribeConfigs request for topic ``name``."""
        futures = self.admin.describe_configs(
            [ConfigResource(ResourceType.TOPIC, name)], request_timeout=deadline.left()
        )
        return next(iter(futures.values()))

    @staticmethod
    def _overrides(entries: Mapping[str, Any]) -> dict[str, Any]:
        """The topic's own overrides (source DYNAMIC_TOPIC_CONFIG; not the brokers' defaults),
        sorted by name. A key pylog knows gets its normalized value, as the embedded backend
        gives; another (set on the cluster by other tools) stays Kafka's string."""
        out: dict[str, Any] = {}
        for key in sorted(entries):
            entry = entries[key]
            if int(getattr(entry.source, "value", entry.source)) != ConfigSource.DYNAMIC_TOPIC_CONFIG.value:
                continue
            value: Any = entry.value
            if key in _KNOWN_CONFIG_KEYS:
                with contextlib.suppress(InvalidConfigError):  # a value Kafka takes and pylog would not
                    value = normalized_config({key: _from_kafka(key, value)})[key]
            out[key] = value
        return out

    def _offsets(
        self,
        tps: Iterable[TopicPartition],
        spec: OffsetSpec,
        deadline: _Deadline,
        *,
        missing: bool = False,
        new: bool = False,
    ) -> dict[TopicPartition, int]:
        """ListOffsets of each of ``tps`` (``spec``: earliest, latest or a timestamp). A retriable
        answer (NOT_LEADER_OR_FOLLOWER, LEADER_NOT_AVAILABLE...: a leader just elected or moving)
        is asked again until the deadline; so is UNKNOWN_TOPIC_OR_PART when the partitions are
        ``new`` (the leader may not have applied the metadata that made them yet). Else with
        ``missing``, a partition whose topic is gone is left out instead of raising
        ``UnknownTopicOrPartitionError``."""
        pending = [KafkaTopicPartition(tp.topic, tp.partition) for tp in tps]
        out: dict[TopicPartition, int] = {}
        pause = _POLL_FIRST_S
        while pending:
            futures = self.admin.list_offsets(dict.fromkeys(pending, spec), request_timeout=deadline.left())
            again: list[KafkaTopicPartition] = []
            for asked, future in futures.items():
                tp = TopicPartition(asked.topic, asked.partition)
                try:
                    out[tp] = future.result(timeout=deadline.left() + 1.0).offset
                except KafkaException as error:
                    unknown = is_code(error, "UNKNOWN_TOPIC_OR_PART")
                    retry = (new and unknown) or _retriable(error)
                    if retry and deadline.end - time.monotonic() > pause:
                        again.append(asked)
                        continue
                    if unknown and missing and not new:
                        continue
                    raise translate(error, deadline.what) from error
                except TimeoutError as error:
                    raise KafkaTimeoutError(f"{deadline.what}: no answer within the timeout") from error
            pending = again
            if pending:
                time.sleep(pause)
                pause = min(pause * 2, _POLL_MAX_S)
        return out

    def _partition_count_now(self, topic: str, deadline: _Deadline) -> int:
        """``topic``'s partition count from a fresh metadata request."""
        count = self._fetch_metadata(deadline).get(topic)
        if count is None:
            raise UnknownTopicOrPartitionError(f"unknown topic {topic!r}")
        return count

    def alter_topic_config(self, name: str, config: Mapping[str, Any]) -> None:
        """Set (or, with a None value, remove) config overrides of ``name``, validated as the
        embedded backend does (the result as a whole) and then sent as one
        IncrementalAlterConfigs request (SET / DELETE per key)."""
        self._check_open()
        layout.validate_topic_name(name)
        if not isinstance(config, Mapping):
            raise InvalidConfigError(f"config must be a mapping of Kafka config names, not {config!r}")
        for key in config:
            if key not in _KNOWN_CONFIG_KEYS:
                raise InvalidConfigError(
                    f"unknown config key {key!r}; known keys: {', '.join(sorted(_KNOWN_CONFIG_KEYS))}"
                )
        deadline = _Deadline(self.timeout_ms, f"alter the config of topic {name!r}")
        current = self._overrides(self._wait(self._submit_configs(name, deadline), deadline))
        merged = {key: value for key, value in current.items() if key in _KNOWN_CONFIG_KEYS}
        for key, value in config.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        normalized = normalized_config(merged)
        entries = [
            ConfigEntry(key, None, incremental_operation=AlterConfigOpType.DELETE)
            if value is None
            else ConfigEntry(
                key, _to_kafka(key, normalized[key]), incremental_operation=AlterConfigOpType.SET
            )
            for key, value in config.items()
        ]
        if not entries:
            return
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
        for future in self.admin.incremental_alter_configs(
            [resource], request_timeout=deadline.left()
        ).values():
            self._wait(future, deadline)

    def create_partitions(self, name: str, total: int) -> None:
        """Grow ``name`` to ``total`` partitions (``InvalidPartitionsError`` unless larger); returns
        once every partition has a leader."""
        self._check_open()
        layout.validate_topic_name(name)
        count = _partition_count(total, "total")
        deadline = _Deadline(self.timeout_ms, f"add partitions to topic {name!r}")
        self._change_topic(
            name,
            lambda seconds: self.admin.create_partitions(
                [NewPartitions(name, count)], operation_timeout=seconds, request_timeout=seconds
            ),
            deadline,
        )
        self._await_leaders(name, count, deadline)

    # --- compaction and retention -------------------------------------------------------------------

    def compact(
        self, topic: str | None = None, *, partitions: Iterable[int] | None = None
    ) -> dict[TopicPartition, CleanResult]:
        """Not on a Kafka cluster: each broker's log cleaner compacts on its own schedule."""
        self._check_open()
        raise UnsupportedError(
            "compact() runs the embedded backend's cleaner now; a Kafka cluster's brokers compact "
            "their own logs when they choose (log.cleaner.* broker settings, the topic's "
            "min.cleanable.dirty.ratio and min/max.compaction.lag.ms)"
        )

    def apply_retention(self, topic: str | None = None) -> dict[TopicPartition, RetentionResult]:
        """Not on a Kafka cluster: each broker applies retention on its own schedule."""
        self._check_open()
        raise UnsupportedError(
            "apply_retention() runs the embedded backend's retention now; a Kafka cluster's "
            "brokers apply retention.ms / retention.bytes themselves (every "
            "log.retention.check.interval.ms); delete_records() drops records now"
        )

    def delete_records(self, topic: str, offsets: Mapping[int, int]) -> dict[TopicPartition, int]:
        """Kafka's DeleteRecords: move each given partition's log start up to its offset (``-1``:
        the end offset); the new low watermarks. Checked as the embedded backend does before
        anything is sent: ``UnknownTopicOrPartitionError`` for an unknown topic or partition,
        ``OffsetOutOfRangeError`` for an offset outside ``[start, end]`` (Kafka itself answers
        success below the start)."""
        self._check_open()
        layout.validate_topic_name(topic)
        if not isinstance(offsets, Mapping):
            raise TypeError(f"offsets must be a mapping of partition to offset, not {type(offsets).__name__}")
        deadline = _Deadline(self.timeout_ms, f"delete records of topic {topic!r}")
        count = self._partition_count_now(topic, deadline)
        wanted: dict[TopicPartition, int] = {}
        for partition, offset in offsets.items():
            _check_partition_number(topic, count, partition)
            offset = as_int(offset, "offset")
            if offset < -1:
                raise OffsetOutOfRangeError(
                    f"cannot delete records before offset {offset} (-1 means the end)"
                )
            wanted[TopicPartition(topic, partition)] = offset
        start_of = self._offsets(wanted, OffsetSpec.earliest(), deadline)
        end_of = self._offsets(wanted, OffsetSpec.latest(), deadline)
        targets: list[KafkaTopicPartition] = []
        for tp, offset in wanted.items():
            start, end = start_of[tp], end_of[tp]
            target = end if offset == -1 else offset
            if not start <= target <= end:
                raise OffsetOutOfRangeError(
                    f"cannot delete records of {tp.topic}-{tp.partition} before offset {target}: the log is "
                    f"[{start}, {end}]"
                )
            targets.append(KafkaTopicPartition(tp.topic, tp.partition, target))
        if not targets:
            return {}
        seconds = deadline.left()
        futures = self.admin.delete_records(targets, request_timeout=seconds, operation_timeout=seconds)
        return {
            TopicPartition(k.topic, k.partition): self._wait(future, deadline).low_watermark
            for k, future in futures.items()
        }

    # --- group admin ---------------------------------------------------------------------------------

    def list_groups(self) -> list[str]:
        """The ids of the cluster's consumer groups (those with only committed offsets too), sorted."""
        self._check_open()
        deadline = _Deadline(self.timeout_ms, "list consumer groups")
        result = self._ask_group(
            lambda: self.admin.list_consumer_groups(request_timeout=deadline.left()), deadline
        )
        if result.errors:
            raise translate(result.errors[0], deadline.what)
        return sorted(listing.group_id for listing in result.valid)

    def _describe(self, group_id: str, deadline: _Deadline) -> Any:
        """confluent's ``ConsumerGroupDescription`` of ``group_id``; ``GroupIdNotFoundError`` for
        a group the coordinator does not know (it answers with the state Dead)."""
        described = self._ask_group(
            lambda: self.admin.describe_consumer_groups([group_id], request_timeout=deadline.left())[
                group_id
            ],
            deadline,
        )
        if described.state == ConsumerGroupState.DEAD:
            raise GroupIdNotFoundError(f"unknown group {group_id!r}")
        return described

    def _committed(self, group_id: str, deadline: _Deadline) -> dict[TopicPartition, OffsetAndMetadata]:
        """The group's committed offsets (OffsetFetch of every partition it committed)."""
        result = self._ask_group(
            lambda: self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group_id)], request_timeout=deadline.left()
            )[group_id],
            deadline,
        )
        out: dict[TopicPartition, OffsetAndMetadata] = {}
        for found in sorted(result.topic_partitions or (), key=lambda tp: (tp.topic, tp.partition)):
            raise_for(found.error, deadline.what)
            if found.offset >= 0:  # OFFSET_INVALID (-1001): nothing committed
                epoch = -1 if found.leader_epoch is None else found.leader_epoch
                out[TopicPartition(found.topic, found.partition)] = OffsetAndMetadata(
                    found.offset, found.metadata or "", epoch
                )
        return out

    def describe_group(self, group_id: str) -> GroupDescription:
        """State, members, assignment, committed offsets and lag, as the embedded backend's
        ``GroupDescription``; Kafka's states by the same names. What Kafka's answer lacks (the
        generation, members' pids and epochs, subscriptions) is filled as docs/kafka.md says."""
        self._check_open()
        check_group_id(group_id)
        deadline = _Deadline(self.timeout_ms, f"describe group {group_id!r}")
        described = self._describe(group_id, deadline)
        committed = self._committed(group_id, deadline)
        members: list[MemberDescription] = []
        owners: dict[TopicPartition, str] = {}
        for member in described.members:
            owned = _partitions_of(member.assignment)
            target = owned if member.target_assignment is None else _partitions_of(member.target_assignment)
            owners.update(dict.fromkeys(owned, member.member_id))
            members.append(
                MemberDescription(
                    member_id=member.member_id,
                    group_instance_id=member.group_instance_id,
                    client_host=(member.host or "").lstrip("/"),
                    client_pid=UNKNOWN_PID,
                    member_epoch=UNKNOWN_EPOCH,
                    subscription=frozenset(tp.topic for tp in owned | target),
                    assignment=owned,
                    target=target,
                )
            )
        wanted = sorted(set(committed) | set(owners))
        ends = self._offsets(wanted, OffsetSpec.latest(), deadline, missing=True)
        lag: dict[TopicPartition, int | None] = {}
        for tp in wanted:
            end, offset = ends.get(tp), committed.get(tp)
            lag[tp] = None if end is None or offset is None else max(end - offset.offset, 0)
        state = _GROUP_STATES.get(described.state, "Unknown")
        return GroupDescription(
            group_id=group_id,
            state=state,
            protocol=described.partition_assignor or None,
            generation=UNKNOWN_GENERATION,
            members=tuple(members),
            assignment=owners,
            committed=committed,
            lag=lag,
        )

    def delete_group(self, group_id: str) -> None:
        """Delete a group and its committed offsets: ``NonEmptyGroupError`` while it has live
        members, ``GroupIdNotFoundError`` for an unknown one (the coordinator's answers)."""
        self._check_open()
        check_group_id(group_id)
        deadline = _Deadline(self.timeout_ms, f"delete group {group_id!r}")
        self._ask_group(
            lambda: self.admin.delete_consumer_groups([group_id], request_timeout=deadline.left())[group_id],
            deadline,
        )

    def reset_offsets(
        self,
        group_id: str,
        topic: str,
        to: Any = "earliest",
        *,
        partitions: Iterable[int] | None = None,
        dry_run: bool = False,
    ) -> dict[TopicPartition, int]:
        """Set the group's committed offsets of ``topic`` (every partition, or ``partitions``),
        the rule of ``pylog.offset_reset`` over Kafka's ListOffsets and OffsetFetch, written
        with AlterConsumerGroupOffsets. Refused (``NonEmptyGroupError``) while the group has
        live members, except ``dry_run``, which writes nothing. Returns the offsets set (or
        that would be)."""
        self._check_open()
        check_group_id(group_id)
        kind, amount = reset_target(to)
        layout.validate_topic_name(topic)
        deadline = _Deadline(self.timeout_ms, f"reset the offsets of group {group_id!r} on {topic!r}")
        count = self._partition_count_now(topic, deadline)
        chosen = range(count) if partitions is None else checked_partitions(topic, count, partitions)
        tps = [TopicPartition(topic, partition) for partition in chosen]
        start_of = self._offsets(tps, OffsetSpec.earliest(), deadline)
        end_of = self._offsets(tps, OffsetSpec.latest(), deadline)
        found_at = (
            self._offsets(tps, OffsetSpec.for_timestamp(amount), deadline) if kind == "timestamp" else {}
        )
        ranges = {
            tp: (start_of[tp], end_of[tp], found_at[tp] if found_at.get(tp, -1) >= 0 else None) for tp in tps
        }
        if not dry_run:
            # why ask first: Kafka's coordinator refuses an admin commit to a group with members
            # too, but with UNKNOWN_MEMBER_ID; asking gives the embedded backend's error and text
            with contextlib.suppress(GroupIdNotFoundError):  # a new group: the reset makes it
                live = len(self._describe(group_id, deadline).members)
                if live:
                    raise NonEmptyGroupError(
                        f"group {group_id!r} has {live} live members: stop them before resetting"
                    )
        committed = {
            tp: meta.offset for tp, meta in self._committed(group_id, deadline).items() if tp.topic == topic
        }
        new = reset_offset_targets(group_id, kind, amount, ranges, committed)
        if dry_run or not new:
            return new
        request = ConsumerGroupTopicPartitions(
            group_id, [KafkaTopicPartition(tp.topic, tp.partition, offset) for tp, offset in new.items()]
        )
        try:
            result = self._ask_group(
                lambda: self.admin.alter_consumer_group_offsets([request], request_timeout=deadline.left())[
                    group_id
                ],
                deadline,
            )
            for written in result.topic_partitions or ():
                raise_for(written.error, deadline.what)
        except CommitFailedError as error:  # members joined between the look and the write
            raise NonEmptyGroupError(
                f"group {group_id!r} has live members: stop them before resetting"
            ) from error
        return new

    # --- the clients' cores -------------------------------------------------------------------------

    def new_consumer(self, topics: tuple[str, ...], config: dict[str, Any]) -> Any:
        """A ``pylog.kafka.consumer.KafkaConsumer`` (a ``pylog.Consumer``) of this cluster."""
        self._check_open()
        from pylog.kafka.consumer import KafkaConsumer

        return KafkaConsumer(self, *topics, **config)

    def producer_core(self, config: Any) -> Any:
        """The ``confluent_kafka.Producer``-based core behind a ``pylog.Producer``."""
        self._check_open()
        from pylog.kafka.producer_core import KafkaProducerCore

        return KafkaProducerCore(self, config)

    def fetcher(self, config: Any) -> Any:
        """Not here: a Kafka consumer is one ``confluent_kafka.Consumer`` (``new_consumer``)."""
        raise UnsupportedError("the embedded fetcher does not exist on a Kafka cluster; use new_consumer()")

    def group_member(self, **settings: Any) -> Any:
        """Not here: the cluster's group coordinator runs the groups."""
        raise UnsupportedError("the embedded group member does not exist on a Kafka cluster")

    @property
    def group_store(self) -> Any:
        """Not here: the cluster's group coordinator keeps the groups."""
        raise UnsupportedError("the embedded group store does not exist on a Kafka cluster")

    def partition_log(self, tp: TopicPartition) -> Any:
        """Not here: a cluster's partitions are the brokers' files."""
        raise UnsupportedError("a Kafka cluster's partitions have no local engine handle")

    def check_partition(self, tp: TopicPartition) -> None:
        """Not here: a cluster's partitions are the brokers' files."""
        raise UnsupportedError("a Kafka cluster's partitions have no local engine handle")

    def close(self) -> None:
        """Drop the admin client (librdkafka's destroy of an admin client does not wait on
        brokers); idempotent. Later calls raise ``ClientClosedError``."""
        with self._lock:
            self._closed = True
            _keep_inherited(self._admin, self._admin_pid)
            self._admin = None

    def __repr__(self) -> str:
        return f"<KafkaBackend {self.path!r}{' closed' if self._closed else ''}>"


def _keep_inherited(handle: Any, made_in_pid: int | None) -> None:
    """Keep a handle this process inherited from the one it forked from (``pylog.forking``)."""
    if handle is not None and made_in_pid != os.getpid():
        keep_forever(handle)


@contextlib.contextmanager
def _translated(what: str) -> Any:
    """Turn a confluent ``KafkaException`` raised inside into its ``pylog.errors`` class."""
    try:
        yield
    except KafkaException as error:
        raise translate(error, what) from error
