"""``pylog.open(path)`` and ``Log``: a directory of topics, the client API's entry point.

A ``Log`` is what a Kafka user knows as a cluster connection plus its admin client: it makes
producers and consumers (kafka-python's names) and manages topics and consumer groups. It knows
nothing of storage: everything goes through its backend (``pylog.backend.Backend``): the embedded
one, ``pylog.embedded.backend.EmbeddedBackend`` (an SQLite catalog in the directory plus one
engine partition directory per topic-partition, ``<path>/<topic>-<n>/``), or, for
``pylog.open("kafka://host:port,...")``, ``pylog.kafka.backend.KafkaBackend``: a real Kafka
cluster through confluent-kafka (docs/kafka.md lists what differs).

The embedded backend runs a background cleaner thread per ``Log`` (compaction of compacted
topics, retention of the others; settings: ``pylog.open(config=...)``, docs/compaction.md).

Thread-safety: a ``Log`` may be shared by any number of threads, and any number of processes may
open the same directory at once. ``close()`` closes the producers and consumers made from it
(so pending records are flushed), then the backend; after it every call raises
``ClientClosedError``.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from pylog.errors import ClientClosedError, InvalidConfigError
from pylog.partition import CleanResult, RetentionResult
from pylog.types import TopicDescription, TopicPartition


class Log:
    """A log directory holding many topics; see ``pylog.open``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        engine: str | None = None,
        auto_create_topics: bool = True,
        config: Mapping[str, Any] | None = None,
        backend: Any = None,
    ):
        if backend is None:
            from pylog.embedded.backend import EmbeddedBackend

            backend = EmbeddedBackend(
                os.fspath(path), engine=engine, auto_create_topics=auto_create_topics, config=config
            )
        self._backend = backend
        self._lock = threading.Lock()
        self._closed = False
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()

    @property
    def path(self) -> str:
        """The log directory (absolute), or the ``kafka://`` URL of a cluster."""
        return self._backend.path

    @property
    def engine(self) -> str:
        """The engine every partition is opened with (``"native"`` or ``"reference"``), or
        ``"kafka"`` on a Kafka cluster."""
        return self._backend.engine

    @property
    def backend(self) -> Any:
        """What this log stands on (``pylog.backend.Backend``); its class says which kind."""
        return self._backend

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError(f"the log {self._backend.path} is closed")

    # --- topics -------------------------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1, config: Mapping[str, Any] | None = None) -> None:
        """Create topic ``name`` with ``partitions`` partitions.

        ``config`` takes Kafka's topic-level names (``segment.bytes``, ``retention.ms``,
        ``cleanup.policy``...). Raises ``InvalidTopicError`` for an illegal name (Kafka's rules:
        1 to 249 characters of ``[a-zA-Z0-9._-]``, not ``.`` or ``..``, and not equal to an
        existing name once ``.`` and ``_`` are treated as one), ``TopicAlreadyExistsError``,
        ``InvalidPartitionsError`` and ``InvalidConfigError``.
        """
        self._check_open()
        self._backend.create_topic(name, partitions, config)

    def delete_topic(self, name: str) -> None:
        """Delete topic ``name`` and its records. Producers and consumers using it, in this process
        or another, get ``UnknownTopicOrPartitionError`` on their next call. Unknown topic:
        ``UnknownTopicOrPartitionError``."""
        self._check_open()
        self._backend.delete_topic(name)

    def list_topics(self) -> list[str]:
        """The names of all topics, sorted."""
        self._check_open()
        return self._backend.list_topics()

    def describe_topic(self, name: str) -> TopicDescription:
        """The topic's id, config overrides and per partition its start and end offsets and its
        size on disk (a ``pylog.TopicDescription``)."""
        self._check_open()
        return self._backend.describe_topic(name)

    def alter_topic_config(self, name: str, config: Mapping[str, Any]) -> None:
        """Change config overrides of ``name``: each key is set to its value, or back to the
        default when the value is None; the result is validated as a whole
        (``InvalidConfigError``). Partitions opened afterwards, in every process, use it."""
        self._check_open()
        self._backend.alter_topic_config(name, config)

    def create_partitions(self, name: str, total: int) -> None:
        """Grow topic ``name`` to ``total`` partitions; ``InvalidPartitionsError`` unless larger
        than now. Consumer groups subscribed to the topic rebalance to take the new ones."""
        self._check_open()
        self._backend.create_partitions(name, total)

    # --- compaction and retention (docs/compaction.md) -----------------------------------------------

    def compact(
        self, topic: str | None = None, *, partitions: Iterable[int] | None = None
    ) -> dict[TopicPartition, CleanResult]:
        """Compact ``topic`` now (None: every topic whose ``cleanup.policy`` has ``compact``),
        whatever its dirty ratio, waiting for a cleaner busy on a partition (the background one,
        or another process's) to finish; per partition what was done (a ``CleanResult``; a
        partition whose policy has no compact is left alone, its result says so in ``skipped``).
        ``partitions`` (with a ``topic``) picks some of its partitions; one it lacks raises
        ``UnknownTopicOrPartitionError`` before anything is compacted. A partition marked
        uncleanable is cleanable again when this succeeds."""
        self._check_open()
        return self._backend.compact(topic, partitions=partitions)

    def apply_retention(self, topic: str | None = None) -> dict[TopicPartition, RetentionResult]:
        """Delete now the old segments that ``retention.ms`` and ``retention.bytes`` allow (whole
        sealed segments, oldest first; the background cleaner does this every
        ``log.retention.check.interval.ms``). ``topic`` None: every topic whose policy has
        ``delete``."""
        self._check_open()
        return self._backend.apply_retention(topic)

    def delete_records(self, topic: str, offsets: Mapping[int, int]) -> dict[TopicPartition, int]:
        """Kafka's AdminClient ``delete_records``: ``{partition: offset}`` moves each partition's
        log start to ``offset`` (``-1``: its end offset), so the records below are gone for
        readers; returns the new low watermarks (log start offsets). Whole segments below the new
        start are deleted at once, or by the next retention run if a cleaner is busy. Unknown topic
        or partition: ``UnknownTopicOrPartitionError``; an offset past the end or below the start:
        ``OffsetOutOfRangeError`` (nothing is changed then)."""
        self._check_open()
        return self._backend.delete_records(topic, offsets)

    # --- consumer groups ----------------------------------------------------------------------------

    def list_groups(self) -> Any:
        """The consumer groups known to the log."""
        self._check_open()
        return self._backend.list_groups()

    def describe_group(self, group_id: str) -> Any:
        """A group's state, members, assignment, committed offsets and lag per partition;
        ``GroupIdNotFoundError`` for an unknown group."""
        self._check_open()
        return self._backend.describe_group(group_id)

    def delete_group(self, group_id: str) -> Any:
        """Delete a group and its committed offsets; ``NonEmptyGroupError`` while it has live
        members, ``GroupIdNotFoundError`` for an unknown group."""
        self._check_open()
        return self._backend.delete_group(group_id)

    def reset_offsets(
        self,
        group_id: str,
        topic: str,
        to: Any = "earliest",
        *,
        partitions: Iterable[int] | None = None,
        dry_run: bool = False,
    ) -> dict[TopicPartition, int]:
        """Set the committed offsets of ``group_id`` on every partition of ``topic`` (or only
        ``partitions``) for reprocessing, as kafka-consumer-groups.sh ``--reset-offsets``; ``to``:

        - ``"earliest"`` / ``"latest"``: the log start / end;
        - an ``int``: that offset;
        - ``{"timestamp": ms}`` or an aware ``datetime``: the first offset at or after it, else
          the end;
        - ``{"shift": n}``: the committed offset plus ``n`` (negative: back);
          ``NoOffsetForPartitionError`` if a partition has none.

        Each new offset is clamped to the partition's ``[start, end]``. Returns
        ``{TopicPartition: new offset}``. Refused with ``NonEmptyGroupError`` while the group has
        live members; ``dry_run`` computes the same answer, writes nothing, and is allowed on a
        live group. A partition the topic lacks: ``UnknownTopicOrPartitionError``."""
        self._check_open()
        return self._backend.reset_offsets(group_id, topic, to=to, partitions=partitions, dry_run=dry_run)

    # --- clients ------------------------------------------------------------------------------------

    def producer(self, **config: Any) -> Any:
        """A ``pylog.Producer`` (kafka-python's config names)."""
        self._check_open()
        from pylog.producer import Producer

        with self._lock:
            self._check_open()
            client = Producer(self._backend, **config)
            self._clients.add(client)
        return client

    def consumer(self, *topics: str, **config: Any) -> Any:
        """A ``pylog.Consumer`` (kafka-python's config names), subscribed to ``topics`` if given."""
        self._check_open()
        with self._lock:
            self._check_open()
            client = self._backend.new_consumer(topics, config)
            self._clients.add(client)
        return client

    def close(self) -> None:
        """Close the producers (flushing them) and consumers made from this log, then the log
        itself. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            clients = list(self._clients)
        errors: list[BaseException] = []
        for client in clients:
            try:
                client.close()
            except Exception as error:
                errors.append(error)
        try:
            self._backend.close()
        except Exception as error:
            errors.append(error)
        if errors:
            raise errors[0]

    def __enter__(self) -> Log:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<pylog.Log {self._backend.path!r} engine={self._backend.engine} {state}>"


#: the scheme of a Kafka cluster's address in ``pylog.open``
KAFKA_SCHEME = "kafka://"


def open(
    path: str | os.PathLike[str],
    *,
    engine: str | None = None,
    auto_create_topics: bool = True,
    config: Mapping[str, Any] | None = None,
    **client_config: Any,
) -> Log:
    """Open (creating if needed) the log directory at ``path``, or connect to a Kafka cluster.

    ``pylog.open("kafka://host:port[,host:port...]", **client_config)`` returns a ``Log`` over a
    real Kafka cluster (``pylog.kafka.backend.KafkaBackend``, through confluent-kafka): the same
    producers, consumers and admin calls. ``client_config`` takes librdkafka's properties
    (``security.protocol``; ``_`` may stand for ``.``, so ``security_protocol="SSL"``) for every
    client made from it; docs/kafka.md lists them and what differs from the embedded backend.
    ``engine`` and ``config`` (broker settings) are the embedded backend's and raise
    ``InvalidConfigError`` there.

    ``engine`` picks the partition engine (``"native"``, ``"reference"``; default
    ``PYLOG_ENGINE`` or native). With ``auto_create_topics`` (the default, as on a Kafka broker) a
    producer's first send to an unknown topic creates it with one partition and the default
    config. ``config`` takes Kafka's broker settings of the log manager and cleaner
    (``log.cleaner.enable``, ``log.cleaner.backoff.ms``, ``log.cleaner.dedupe.buffer.size``,
    ``log.retention.check.interval.ms``, and pylog's ``log.cleaner.max.failures``;
    ``pylog.broker_config``); unknown keys and bad values raise ``InvalidConfigError``. Raises
    ``CatalogError`` if the directory's ``catalog.db`` is corrupt or not pylog's.
    """
    if isinstance(path, str) and path.startswith(KAFKA_SCHEME):
        from pylog.kafka.backend import KafkaBackend

        if engine is not None or config is not None:
            raise InvalidConfigError(
                "engine= and config= are the embedded backend's; a Kafka cluster's broker settings are its own"
            )
        backend = KafkaBackend(path, auto_create_topics=auto_create_topics, **client_config)
        return Log(path, backend=backend)
    if client_config:
        raise InvalidConfigError(
            f"unknown pylog.open() arguments {sorted(client_config)}: client settings are for kafka:// URLs"
        )
    return Log(path, engine=engine, auto_create_topics=auto_create_topics, config=config)
