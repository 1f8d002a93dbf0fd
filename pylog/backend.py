"""The backend seam: what the public client API (``Log``, ``Producer``, ``Consumer``) stands on.

The public API knows nothing of SQLite or engines; it talks to one object with this surface. The
embedded backend (``pylog.embedded.backend.EmbeddedBackend``: the catalog plus the engine seam)
and the Kafka backend (``pylog.kafka.backend.KafkaBackend``: a real cluster through
confluent-kafka) give this surface. What one backend cannot do raises
``pylog.errors.UnsupportedError``, never nothing. Every method may be called from any thread; after ``close()`` every
call raises ``pylog.errors.ClientClosedError``.

Errors are ``pylog.errors`` classes: ``UnknownTopicOrPartitionError`` (unknown or deleted topic, no
such partition), ``InvalidTopicError`` (an illegal name), ``TopicAlreadyExistsError``,
``InvalidPartitionsError``, ``InvalidConfigError``, ``CatalogError``, ``ClientClosedError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from pylog.partition import CleanResult, PartitionLog, RetentionResult
from pylog.types import TopicDescription, TopicPartition


class Backend(Protocol):
    """The storage behind one ``pylog.Log``."""

    #: the log directory (embedded) or the ``kafka://`` URL of the cluster
    path: str
    #: the engine name (``"native"`` / ``"reference"``) of the embedded backend; ``"kafka"``
    engine: str
    #: whether ``partitions_for(topic, create=True)`` creates an unknown topic
    auto_create_topics: bool

    # --- metadata, used by producers and consumers on their hot paths ---------------------------

    def partitions_for(self, topic: str, *, create: bool = False) -> int:
        """The partition count of ``topic``. With ``create=True`` and ``auto_create_topics`` an
        unknown topic is created with 1 partition and the default config. Raises
        ``UnknownTopicOrPartitionError``, or ``InvalidTopicError`` for an illegal name."""
        ...

    def partition_log(self, tp: TopicPartition) -> PartitionLog:
        """The opened engine handle of ``tp`` (cached, shared, thread-safe). Raises
        ``UnknownTopicOrPartitionError`` for an unknown or deleted topic or partition, including
        one that another process deleted since the handle was cached. Microseconds on a hit:
        producers call it once per batch, consumers once per partition per poll."""
        ...

    def check_partition(self, tp: TopicPartition) -> None:
        """Raise ``UnknownTopicOrPartitionError`` if ``tp``'s topic was deleted (by any process) or
        has no such partition. Cores call it when an engine call on a cached handle raised, to
        turn "deleted under me" into the typed error; if it returns, the partition is in place and
        the original error stands (after a ``LogClosedError``, ask ``partition_log`` again: the
        topic may have been deleted and created again, with a new handle).

        What an engine handle does when its directory is renamed away (a deletion in another
        process) or removed: nothing recreates the directory. The first call that touches the
        files raises ``FileNotFoundError`` (``append`` opens the index files by path; ``roll``,
        ``read``, ``end_offset``... list the directory again). An ``append`` whose listing failed
        (the directory removed, not only renamed) leaves the handle without segments: every later
        call, ``close()`` included, raises ``InternalError`` ("a log has at least one segment",
        native) or ``IndexError`` (reference). ``close()`` on a renamed directory raises
        ``FileNotFoundError`` but does close it. So call this on any exception."""
        ...

    def list_topics(self) -> list[str]:
        """The names of all topics, sorted."""
        ...

    def metadata_version(self) -> int:
        """A number that grows whenever any process creates or deletes a topic or adds partitions
        (not on config changes). Cheap: pattern subscriptions and added partitions watch it."""
        ...

    # --- topic admin (called by Log) -------------------------------------------------------------

    def create_topic(
        self, name: str, partitions: int = 1, config: Mapping[str, Any] | None = None
    ) -> None: ...

    def delete_topic(self, name: str) -> None: ...

    def describe_topic(self, name: str) -> TopicDescription: ...

    def alter_topic_config(self, name: str, config: Mapping[str, Any]) -> None: ...

    def create_partitions(self, name: str, total: int) -> None: ...

    # --- compaction and retention (called by Log; docs/compaction.md) ----------------------------

    def compact(
        self, topic: str | None = None, *, partitions: Iterable[int] | None = None
    ) -> dict[TopicPartition, CleanResult]:
        """Compact ``topic``'s partitions now (None: every topic whose ``cleanup.policy`` has
        compact), below the dirty ratio too; ``partitions``: only those of ``topic`` (an unknown
        one raises ``UnknownTopicOrPartitionError`` first). A partition without compact in its
        policy gets a result with ``skipped`` set. Clears a partition's uncleanable mark when it
        succeeds."""
        ...

    def apply_retention(self, topic: str | None = None) -> dict[TopicPartition, RetentionResult]:
        """Delete the segments ``retention.ms`` / ``retention.bytes`` and the log start allow,
        now (None: every topic whose policy has delete)."""
        ...

    def delete_records(self, topic: str, offsets: Mapping[int, int]) -> dict[TopicPartition, int]:
        """Kafka's AdminClient ``delete_records``: the log start of each partition moves up to
        its offset (-1: the end offset); returns the new low watermarks.
        ``UnknownTopicOrPartitionError``, ``OffsetOutOfRangeError``."""
        ...

    # --- group admin (called by Log; the embedded backend delegates to group_store) -------------

    def list_groups(self) -> Any: ...

    def describe_group(self, group_id: str) -> Any: ...

    def delete_group(self, group_id: str) -> Any: ...

    def reset_offsets(
        self,
        group_id: str,
        topic: str,
        to: Any = "earliest",
        *,
        partitions: Iterable[int] | None = None,
        dry_run: bool = False,
    ) -> dict[TopicPartition, int]: ...

    # --- the cores behind the public clients -----------------------------------------------------

    def new_consumer(self, topics: tuple[str, ...], config: dict[str, Any]) -> Any:
        """A consumer (a ``pylog.Consumer``; the Kafka backend's is its subclass
        ``pylog.kafka.consumer.KafkaConsumer``) subscribed to ``topics`` if any, from
        kafka-python-named ``config``."""
        ...

    def producer_core(self, config: Any) -> Any:
        """The core behind a ``pylog.Producer`` (accumulator, partitioner, group commit)."""
        ...

    def fetcher(self, config: Any) -> Any:
        """The core behind a ``pylog.Consumer`` (positions, fetching, waiting)."""
        ...

    def group_member(self, **settings: Any) -> Any:
        """One consumer's membership of a group (join, heartbeats, rebalances, fenced commits)."""
        ...

    @property
    def group_store(self) -> Any:
        """Groups, members, generations and committed offsets (standalone commits, admin)."""
        ...

    def close(self) -> None:
        """Release every handle; idempotent."""
        ...
