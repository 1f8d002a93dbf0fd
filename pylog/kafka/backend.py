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

import contextlib
import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pylog.embedded import topics as layout
from pylog.embedded.backend import _partition_count, normalized_config
from pylog.errors import (
    ClientClosedError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    UnsupportedError,
)
from pylog.kafka.errors import translate
from pylog.kafka.settings import client_properties
from pylog.partition import CleanResult, RetentionResult
from pylog.types import TopicDescription, TopicPartition

#: how old a metadata snapshot may be when ``partitions_for`` answers a known topic from it
#: (another client's topic changes show within this; this backend's own at once)
METADATA_MAX_AGE_S = 1.0
#: Kafka's internal topics (clients/src/main/java/org/apache/kafka/common/internals/Topic.java:
#: GROUP_METADATA_TOPIC_NAME, TRANSACTION_STATE_TOPIC_NAME, SHARE_GROUP_STATE_TOPIC_NAME), left
#: out of ``list_topics`` as the embedded backend has none
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state", "__share_group_state"})
#: the first and the longest pause between two looks while waiting for the metadata to change
_POLL_FIRST_S = 0.005
_POLL_MAX_S = 0.1


def kafka_value(value: Any) -> str:
    """A normalized config value (``normalized_config``) as the string Kafka's configs take."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
        overrides = {key: kafka_value(value) for key, value in normalized_config(config).items()}
        deadline = _Deadline(self.timeout_ms, f"create topic {name!r}")
        seconds = deadline.left()
        futures = self.admin.create_topics(
            [NewTopic(name, count, config=overrides)], operation_timeout=seconds, request_timeout=seconds
        )
        try:
            self._wait(futures[name], deadline)
        finally:
            self._forget_metadata()

        def led(metadata: Any) -> bool:
            topic = metadata.topics.get(name)
            return (
                topic is not None
                and len(topic.partitions) == count
                and all(p.leader >= 0 and p.error is None for p in topic.partitions.values())
            )

        with _translated(deadline.what):
            self._await_metadata(deadline, led)

    def delete_topic(self, name: str) -> None:
        """Delete ``name``; returns once it is gone from the cluster's metadata."""
        self._check_open()
        layout.validate_topic_name(name)
        deadline = _Deadline(self.timeout_ms, f"delete topic {name!r}")
        seconds = deadline.left()
        futures = self.admin.delete_topics([name], operation_timeout=seconds, request_timeout=seconds)
        try:
            self._wait(futures[name], deadline)
        finally:
            self._forget_metadata()
        with _translated(deadline.what):
            self._await_metadata(deadline, lambda metadata: name not in metadata.topics)

    def describe_topic(self, name: str) -> TopicDescription:
        raise UnsupportedError("describe_topic on a Kafka cluster: not yet")

    def alter_topic_config(self, name: str, config: Mapping[str, Any]) -> None:
        raise UnsupportedError("alter_topic_config on a Kafka cluster: not yet")

    def create_partitions(self, name: str, total: int) -> None:
        raise UnsupportedError("create_partitions on a Kafka cluster: not yet")

    # --- compaction and retention -------------------------------------------------------------------

    def compact(
        self, topic: str | None = None, *, partitions: Iterable[int] | None = None
    ) -> dict[TopicPartition, CleanResult]:
        """Not on a Kafka cluster: each broker's log cleaner compacts on its own schedule."""
        self._check_open()
        raise UnsupportedError(
            "compact() runs the embedded backend's cleaner; a Kafka cluster's brokers compact "
            "their own logs (log.cleaner.* settings, the topic's min.cleanable.dirty.ratio)"
        )

    def apply_retention(self, topic: str | None = None) -> dict[TopicPartition, RetentionResult]:
        """Not on a Kafka cluster: each broker applies retention on its own schedule."""
        self._check_open()
        raise UnsupportedError(
            "apply_retention() runs the embedded backend's retention now; a Kafka cluster's "
            "brokers apply retention.ms / retention.bytes themselves (every "
            "log.retention.check.interval.ms); use delete_records() to drop records now"
        )

    def delete_records(self, topic: str, offsets: Mapping[int, int]) -> dict[TopicPartition, int]:
        raise UnsupportedError("delete_records on a Kafka cluster: not yet")

    # --- group admin ---------------------------------------------------------------------------------

    def list_groups(self) -> list[str]:
        raise UnsupportedError("list_groups on a Kafka cluster: not yet")

    def describe_group(self, group_id: str) -> Any:
        raise UnsupportedError("describe_group on a Kafka cluster: not yet")

    def delete_group(self, group_id: str) -> None:
        raise UnsupportedError("delete_group on a Kafka cluster: not yet")

    def reset_offsets(
        self,
        group_id: str,
        topic: str,
        to: Any = "earliest",
        *,
        partitions: Iterable[int] | None = None,
        dry_run: bool = False,
    ) -> dict[TopicPartition, int]:
        raise UnsupportedError("reset_offsets on a Kafka cluster: not yet")

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
            self._admin = None

    def __repr__(self) -> str:
        return f"<KafkaBackend {self.path!r}{' closed' if self._closed else ''}>"


@contextlib.contextmanager
def _translated(what: str) -> Any:
    """Turn a confluent ``KafkaException`` raised inside into its ``pylog.errors`` class."""
    try:
        yield
    except KafkaException as error:
        raise translate(error, what) from error
