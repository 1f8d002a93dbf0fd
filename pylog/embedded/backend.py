"""EmbeddedBackend: the client API's storage, topics in the catalog and partitions through the engine seam.

The embedded implementation of the seam documented in ``pylog.backend`` (``Backend``). It owns:

- the catalog (``pylog.embedded.catalog``) of the log directory, opened once per backend;
- a snapshot of the catalog's topics (name -> ``TopicInfo``), refreshed when another connection
  changed them: ``PRAGMA data_version`` of this thread's connection moves with every commit of
  any other connection; only when it moved are the one-row ``topic_versions`` counters read, and
  ``topics`` only when those moved. ``partition_log`` on a cached partition asks at most every
  ``SYNC_INTERVAL_S`` (1 ms; a dict lookup and a clock read otherwise); every other call asks;
- the opened engine handles, one per partition, shared by every producer and consumer of this
  backend. When the snapshot changes, the handles of a deleted (or deleted and recreated) topic are
  closed, so their users get ``LogClosedError`` from the engine and then
  ``UnknownTopicOrPartitionError`` from ``check_partition``; the handles of a topic whose config
  changed are replaced by handles opened with the new config (the old ones stay open until
  ``close()``, so a call in flight on them finishes).

Topic changes follow one protocol, each inside one catalog write transaction (which holds SQLite's
write lock, so they are serialized across processes):
- create: insert the row and bump ``metadata_version``, then create each ``<topic>-<n>/`` through
  the engine seam with the topic's config and write its ``partition.metadata``; commit. A failure
  rolls back and removes the directories made.
- delete: delete the row and bump ``metadata_version``, close this process's handles, rename each
  partition directory to its ``-delete`` name (atomic), commit; then remove the renamed trees. A
  crash before the commit leaves the topic in the catalog and ``-delete`` directories whose
  ``partition.metadata`` names a live topic: the next open renames them back. Any other ``-delete``
  directory is a committed deletion's leftover and the next open removes it (with a log line).
- a partition directory is opened only when its ``partition.metadata`` names the catalog's topic
  id, so a handle never lands on a directory that a concurrent deletion renamed away (the engine
  would create an empty one in its place; that stray is removed again).

Compaction and retention: the backend owns the background cleaner (``pylog.embedded.cleaner``, a
thread started with the backend and stopped first by ``close()``) and the explicit calls
``compact``, ``apply_retention`` and ``delete_records``. Both go through the same cached engine
handles as producers and consumers; the engines' cleaner lock serializes them per partition
across threads and processes. The catalog's ``uncleanable_partitions`` marks are cleared in the
transaction of a config change or deletion of their topic, and by an explicit ``compact`` that
succeeds.

Thread-safety: every method may be called from any thread. The hit path of ``partition_log``
takes no lock (dict reads are atomic under the GIL); snapshot changes and handle opening are
serialized by ``_lock``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pylog.broker_config import BrokerConfig
from pylog.config import LogConfig
from pylog.embedded import topics as layout
from pylog.embedded.catalog import Catalog
from pylog.embedded.cleaner import Cleaner, UncleanableMarks
from pylog.engine import ENGINES, PartitionLog, default_engine, open_partition
from pylog.errors import (
    ClientClosedError,
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidTopicError,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from pylog.partition import CleanResult, RetentionResult, as_int
from pylog.types import PartitionDescription, TopicDescription, TopicPartition

LOG = logging.getLogger("pylog.topics")

#: how long ``partition_log`` serves a cached handle without asking the catalog (one
#: ``PRAGMA data_version``, ~7 us) whether another process changed the topics. A deletion seen late
#: is still never silent: the engine's calls on a removed directory fail, and ``check_partition``
#: always asks the catalog.
SYNC_INTERVAL_S = 0.001
#: a limit on the partitions of one topic (each is a directory with open files)
MAX_PARTITIONS = 10_000
_KNOWN_CONFIG_KEYS = frozenset(LogConfig().to_kafka_dict())


@dataclass(frozen=True)
class TopicInfo:
    """One row of the catalog's ``topics`` table."""

    name: str
    topic_id: str
    partitions: int
    config: Mapping[str, Any]  # the overrides, Kafka names, normalized values
    config_json: str


def normalized_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate Kafka-named overrides with ``LogConfig.from_mapping``; return them normalized
    (ints, floats, canonical strings) under their Kafka names."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise InvalidConfigError(f"config must be a mapping of Kafka config names, not {config!r}")
    effective = LogConfig.from_mapping(config).to_kafka_dict()
    return {key: effective[key] for key in sorted(config)}


def _partition_count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPartitionsError(f"{what} must be an int, not {value!r}")
    if not 1 <= value <= MAX_PARTITIONS:
        raise InvalidPartitionsError(f"{what} must be in [1, {MAX_PARTITIONS}], got {value}")
    return value


def _check_partition_number(info: TopicInfo, partition: object) -> None:
    """``UnknownTopicOrPartitionError`` unless ``partition`` is an int naming one of the topic's."""
    if isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition < info.partitions:
        raise UnknownTopicOrPartitionError(
            f"topic {info.name!r} has no partition {partition!r} (it has {info.partitions})"
        )


def _bump(db: Any, column: str) -> None:
    db.execute(f"UPDATE topic_versions SET {column} = {column} + 1 WHERE id = 0")


class EmbeddedBackend:
    """Topics, partitions and groups of one log directory (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        engine: str | None = None,
        auto_create_topics: bool = True,
        config: Mapping[str, Any] | BrokerConfig | None = None,
    ):
        if engine is None:
            engine = default_engine()
        elif engine not in ENGINES:
            raise InvalidConfigError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        #: the log-directory settings (Kafka's broker names; ``pylog.broker_config``)
        self.broker_config = BrokerConfig.from_mapping(config)
        self.path = os.path.abspath(os.fspath(path))
        self.engine = engine
        self.auto_create_topics = bool(auto_create_topics)
        os.makedirs(self.path, exist_ok=True)
        self._lock = threading.RLock()
        self._closed = False
        self._topics: dict[str, TopicInfo] = {}
        self._versions: tuple[int, int] = (-1, -1)
        #: the hit path of partition_log: tp -> open handle
        self._handles: dict[TopicPartition, PartitionLog] = {}
        #: tp -> (topic id, config json) the handle was opened with
        self._opened_as: dict[TopicPartition, tuple[str, str]] = {}
        #: handles replaced after a config change: closed at close(), or when their topic goes
        self._retired: list[tuple[TopicPartition, str, PartitionLog]] = []
        #: topics this process is deleting right now (their handles are already closed)
        self._deleting: set[str] = set()
        self._next_sync = 0.0  # monotonic time until which a cached handle is served unchecked
        self.catalog = Catalog(self.path)
        try:
            self._remove_deletion_leftovers()
            self._reload()
        except BaseException:
            self.catalog.close()
            raise
        self.uncleanable_marks = UncleanableMarks(self.catalog)
        self._cleaner = Cleaner(self, self.broker_config, name=f"pylog-cleaner {self.path}")
        self._cleaner.start()

    # --- the snapshot of the catalog's topics ------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError(f"the log {self.path} is closed")

    def _sync(self) -> None:
        """Bring the topic snapshot up to date if another connection changed the catalog."""
        # why data_version and not a mapping of catalog.db-shm: closing any descriptor of that
        # file drops this process's POSIX locks on it, SQLite's among them, and another process
        # may then take itself for the first opener and truncate the file under every mapping
        # (SIGBUS; sqlite.org/howtocorrupt.html, section 2.2)
        now = time.monotonic()
        version, seen = self.catalog.data_version()
        if version != seen:
            self._check_versions()
            self.catalog.acknowledge(version)
        self._next_sync = now + SYNC_INTERVAL_S

    def _check_versions(self) -> None:
        row = (
            self.catalog.connection()
            .execute("SELECT metadata_version, config_version FROM topic_versions WHERE id = 0")
            .fetchone()
        )
        if tuple(row) != self._versions:
            self._reload()

    def _reload(self) -> None:
        """Read the topics table and apply it if it is newer than the snapshot."""
        with self.catalog.read() as db:
            versions = tuple(
                db.execute(
                    "SELECT metadata_version, config_version FROM topic_versions WHERE id = 0"
                ).fetchone()
            )
            rows = db.execute("SELECT name, topic_id, partitions, config FROM topics").fetchall()
        to_close: list[PartitionLog] = []
        with self._lock:
            current = self._versions
            if versions[0] < current[0] or versions[1] < current[1] or versions == current:
                return  # another thread applied this state or a newer one
            found = {
                name: TopicInfo(name, topic_id, int(partitions), json.loads(config), config)
                for name, topic_id, partitions, config in rows
            }
            for tp, (topic_id, config_json) in list(self._opened_as.items()):
                info = found.get(tp.topic)
                if info is None or info.topic_id != topic_id or tp.partition >= info.partitions:
                    to_close.append(self._handles.pop(tp))
                    del self._opened_as[tp]
                elif info.config_json != config_json:
                    self._retired.append((tp, topic_id, self._handles.pop(tp)))
                    del self._opened_as[tp]
            kept = []
            for tp, topic_id, log in self._retired:
                info = found.get(tp.topic)
                if info is not None and info.topic_id == topic_id:
                    kept.append((tp, topic_id, log))
                else:
                    to_close.append(log)
            self._retired = kept
            self._topics = found
            self._versions = versions  # type: ignore[assignment]
        for log in to_close:
            self._close_quietly(log)

    @staticmethod
    def _close_quietly(log: PartitionLog) -> None:
        try:
            log.close()
        except Exception as error:  # a deleted topic's directory may be gone already
            LOG.debug("closing %s after its topic changed: %s", log.path, error)

    def _topic(self, name: str) -> TopicInfo:
        info = self._topics.get(name)
        if info is None or name in self._deleting:
            layout.validate_topic_name(name)
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
        return info

    def _partition_path(self, topic: str, partition: int) -> str:
        return os.path.join(self.path, layout.partition_dir_name(topic, partition))

    def _await_writers(self) -> None:
        """Wait until no process holds the catalog's write lock (a deletion renames its
        directories inside its transaction), then refresh the snapshot."""
        if not self.catalog.connection().in_transaction:  # else the caller holds a snapshot
            with self.catalog.write():
                pass
        self._sync()

    # --- the backend surface used by producers and consumers ---------------------------------------

    def list_topics(self) -> list[str]:
        """The names of all topics, sorted."""
        self._check_open()
        self._sync()
        return sorted(name for name in self._topics if name not in self._deleting)

    def metadata_version(self) -> int:
        """A number that grows whenever any process creates or deletes a topic or adds partitions."""
        self._check_open()
        self._sync()
        return self._versions[0]

    def partitions_for(self, topic: str, *, create: bool = False) -> int:
        """The partition count of ``topic``; with ``create`` and ``auto_create_topics`` an unknown
        topic is created (1 partition, default config), as a Kafka broker does on first produce.
        Raises ``UnknownTopicOrPartitionError`` or, for an illegal name, ``InvalidTopicError``."""
        self._check_open()
        self._sync()
        info = self._topics.get(topic)
        if info is not None and topic not in self._deleting:
            return info.partitions
        layout.validate_topic_name(topic)
        if create and self.auto_create_topics:
            with contextlib.suppress(TopicAlreadyExistsError):
                self.create_topic(topic)
            return self._topic(topic).partitions
        raise UnknownTopicOrPartitionError(f"unknown topic {topic!r}")

    def partition_log(self, tp: TopicPartition) -> PartitionLog:
        """The open engine handle of ``tp`` (cached; shared by every caller). Raises
        ``UnknownTopicOrPartitionError`` if the topic or partition does not exist, including when
        any process deleted the topic since the handle was cached."""
        if self._closed:
            raise ClientClosedError(f"the log {self.path} is closed")
        # the hit path (this runs once per produced batch and per polled partition): the catalog
        # was asked less than SYNC_INTERVAL_S ago, and the handle is cached
        if time.monotonic() < self._next_sync:
            log = self._handles.get(tp)
            if log is not None:
                return log
        self._sync()
        log = self._handles.get(tp)
        if log is not None:
            return log
        return self._open(tp)

    def _open(self, tp: TopicPartition, *, retry: bool = True) -> PartitionLog:
        topic, partition = tp
        info = self._topic(topic)
        _check_partition_number(info, partition)
        tp = TopicPartition(topic, partition)
        path = self._partition_path(topic, partition)
        # why: never wait for the catalog's write lock while holding _lock (a deletion in this
        # process holds the write lock and then takes _lock)
        with self._lock:
            self._check_open()
            log = self._handles.get(tp)
            if log is not None:
                return log
            info = self._topic(topic)
            if layout.read_partition_metadata(path) == info.topic_id:
                log = open_partition(path, engine=self.engine, config=info.config)
                # why: a deletion may have renamed the directory between the check and the open,
                # and the engine then made an empty one in its place
                if layout.read_partition_metadata(path) == info.topic_id:
                    self._handles[tp] = log
                    self._opened_as[tp] = (info.topic_id, info.config_json)
                    return log
                self._close_quietly(log)
        return self._missing_partition(tp, path, info.topic_id, retry=retry)

    def _missing_partition(
        self, tp: TopicPartition, path: str, topic_id: str, *, retry: bool
    ) -> PartitionLog:
        """The partition's directory is gone or its ``partition.metadata`` does not name the
        topic (``topic_id``): a deletion in flight (wait for it: it renames inside its catalog
        transaction), the topic deleted and created again meanwhile (open the new one), a lost
        ``partition.metadata`` (written again, as a Kafka broker does) or a directory removed or
        replaced by hand (``UnknownTopicOrPartitionError``)."""
        self._await_writers()
        info = self._topics.get(tp.topic)
        if info is None or tp.topic in self._deleting or tp.partition >= info.partitions:
            self._discard_stray(path)
            raise UnknownTopicOrPartitionError(f"topic {tp.topic!r} was deleted")
        if retry and info.topic_id != topic_id:
            return self._open(tp, retry=False)
        found = layout.read_partition_metadata(path)
        if retry and found is None and os.path.isdir(path) and not os.path.islink(path):
            LOG.warning("%s had no partition.metadata; writing it again (topic id %s)", path, info.topic_id)
            layout.write_partition_metadata(path, info.topic_id)
            return self._open(tp, retry=False)
        if found is None:
            raise UnknownTopicOrPartitionError(
                f"the directory {path} of partition {tp.partition} of topic {tp.topic!r} is missing"
            )
        raise UnknownTopicOrPartitionError(
            f"the directory {path} belongs to another topic: its partition.metadata names topic id "
            f"{found}, not {tp.topic!r}'s {info.topic_id}"
        )

    def _discard_stray(self, path: str) -> None:
        """Remove an empty partition directory the engine made for a topic deleted meanwhile."""
        with self.catalog.write() as db:
            name = os.path.basename(path)
            topic, _, partition = name.rpartition("-")
            row = db.execute("SELECT partitions FROM topics WHERE name = ?", (topic,)).fetchone()
            live = row is not None and int(partition) < row[0]
            if live or layout.read_partition_metadata(path) is not None or layout.holds_records(path):
                return
            doomed = layout.rename_for_deletion(self.path, topic, int(partition))
        if doomed is not None:
            LOG.info("removing %s: an empty partition directory of the deleted topic %r", path, topic)
            layout.remove_tree(doomed)

    def check_partition(self, tp: TopicPartition) -> None:
        """Raise ``UnknownTopicOrPartitionError`` if ``tp``'s topic was deleted (by any process) or
        has no such partition; return None if the partition exists and its directory is in place.
        Cores call it when an engine call on a cached handle failed."""
        self._check_open()
        topic, partition = tp
        self._sync()
        info = self._topic(topic)
        if (
            isinstance(partition, bool)
            or not isinstance(partition, int)
            or not 0 <= partition < info.partitions
        ):
            raise UnknownTopicOrPartitionError(
                f"topic {topic!r} has no partition {partition!r} (it has {info.partitions})"
            )
        path = self._partition_path(topic, partition)
        if layout.read_partition_metadata(path) != info.topic_id:
            self._missing_partition(TopicPartition(topic, partition), path, info.topic_id, retry=True)

    # --- topic admin (called by pylog.Log) ---------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1, config: Mapping[str, Any] | None = None) -> None:
        """Create ``name`` with ``partitions`` partitions and Kafka-named ``config`` overrides."""
        self._check_open()
        layout.validate_topic_name(name)
        count = _partition_count(partitions, "partitions")
        overrides = normalized_config(config)
        config_json = json.dumps(overrides, sort_keys=True)
        try:
            with self.catalog.write() as db:
                if db.execute("SELECT 1 FROM topics WHERE name = ?", (name,)).fetchone():
                    raise TopicAlreadyExistsError(f"topic {name!r} already exists")
                clash = db.execute(
                    "SELECT name FROM topics WHERE replace(name, '.', '_') = ?", (layout.collision_key(name),)
                ).fetchone()
                if clash:
                    raise InvalidTopicError(
                        f"topic {name!r} collides with the existing topic {clash[0]!r} (Kafka treats "
                        f"'.' and '_' as equal in topic names' metrics)"
                    )
                topic_id = layout.new_topic_id()
                db.execute("INSERT INTO topics VALUES (?, ?, ?, ?)", (name, topic_id, count, config_json))
                _bump(db, "metadata_version")
                self._create_partition_dirs(name, range(count), topic_id, overrides)
        finally:
            self._reload()
        LOG.info("created topic %r (id %s) with %d partition(s)", name, topic_id, count)

    def _create_partition_dirs(
        self, topic: str, partitions: range, topic_id: str, config: Mapping[str, Any]
    ) -> None:
        """Create partition directories through the engine seam, each with its partition.metadata;
        on failure remove the ones made and re-raise (the caller's transaction rolls back)."""
        made: list[int] = []
        try:
            for partition in partitions:
                path = layout.prepare_partition_dir(self.path, topic, partition, topic_id)
                existed = os.path.isdir(path)
                with open_partition(path, engine=self.engine, config=config):
                    pass
                if not existed:
                    made.append(partition)
                layout.write_partition_metadata(path, topic_id)
            layout.fsync_dir(self.path)
        except BaseException:
            for partition in made:
                doomed = layout.rename_for_deletion(self.path, topic, partition)
                if doomed is not None:
                    layout.remove_tree(doomed)
            raise

    def delete_topic(self, name: str) -> None:
        """Delete ``name``: its partition directories are renamed to ``-delete`` names inside the
        catalog transaction, then removed. Processes using the topic get
        ``UnknownTopicOrPartitionError`` on their next call."""
        self._check_open()
        layout.validate_topic_name(name)
        renamed: list[str] = []
        try:
            with self.catalog.write() as db:
                row = db.execute("SELECT partitions FROM topics WHERE name = ?", (name,)).fetchone()
                if row is None:
                    raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
                db.execute("DELETE FROM topics WHERE name = ?", (name,))
                _bump(db, "metadata_version")
                self._forget_committed_offsets(db, name)
                UncleanableMarks.clear_topic(db, name)
                self._close_handles_of(name)
                try:
                    for partition in range(int(row[0])):
                        target = layout.rename_for_deletion(self.path, name, partition)
                        if target is not None:
                            renamed.append(target)
                    layout.fsync_dir(self.path)
                except BaseException:
                    self._undo_renames(name, renamed)
                    renamed.clear()
                    raise
        finally:
            try:
                self._reload()
            finally:
                with self._lock:
                    self._deleting.discard(name)
        LOG.info("deleted topic %r; removing its %d partition directories", name, len(renamed))
        for target in renamed:
            layout.remove_tree(target)

    @staticmethod
    def _forget_committed_offsets(db: Any, topic: str) -> None:
        """Drop every group's committed offsets of a deleted topic, in the deletion's transaction,
        as Kafka's group coordinator does when partitions are deleted
        (group-coordinator/src/main/java/org/apache/kafka/coordinator/group/OffsetMetadataManager.java
        ``onPartitionsDeleted``): a topic created again under the name starts with none, instead of
        resuming a group at an offset of the old topic's records."""
        table = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'group_offsets'"
        ).fetchone()
        if table is not None:  # the group schema's table of committed offsets
            db.execute("DELETE FROM group_offsets WHERE topic = ?", (topic,))

    def _close_handles_of(self, topic: str) -> None:
        with self._lock:
            self._deleting.add(topic)
            doomed = [tp for tp in self._opened_as if tp.topic == topic]
            logs = [self._handles.pop(tp) for tp in doomed]
            for tp in doomed:
                del self._opened_as[tp]
            logs += [log for tp, _, log in self._retired if tp.topic == topic]
            self._retired = [entry for entry in self._retired if entry[0].topic != topic]
        for log in logs:
            self._close_quietly(log)

    def _undo_renames(self, topic: str, renamed: list[str]) -> None:
        for target in reversed(renamed):
            match = layout.DELETE_DIR.match(os.path.basename(target))
            assert match is not None
            original = self._partition_path(topic, int(match["partition"]))
            try:
                os.rename(target, original)
            except OSError as error:
                LOG.error("could not rename %s back to %s: %s", target, original, error)

    def _remove_deletion_leftovers(self) -> None:
        """Finish deletions a crash interrupted (see the module docstring)."""
        names = layout.deletion_leftovers(self.path)
        if not names:
            return
        doomed: list[str] = []
        # why: under the write lock every rename of a deletion in flight is committed or rolled back
        with self.catalog.write() as db:
            live = {
                topic_id: (name, int(partitions))
                for name, topic_id, partitions in db.execute("SELECT name, topic_id, partitions FROM topics")
            }
            for name in names:
                path = os.path.join(self.path, name)
                if not os.path.isdir(path):
                    continue  # removed by another process meanwhile
                match = layout.DELETE_DIR.match(name)
                assert match is not None
                partition = int(match["partition"])
                owner = live.get(layout.read_partition_metadata(path) or "")
                if owner is not None and partition < owner[1]:
                    original = self._partition_path(owner[0], partition)
                    if not os.path.lexists(original):
                        os.rename(path, original)
                        LOG.warning(
                            "restored %s to %s: topic %r is still in the catalog (its deletion "
                            "crashed before committing)",
                            path,
                            original,
                            owner[0],
                        )
                        continue
                doomed.append(path)
        for path in doomed:
            LOG.info("removing %s, left over by an interrupted topic deletion", path)
            layout.remove_tree(path)

    def describe_topic(self, name: str) -> TopicDescription:
        """The topic's id, config overrides and, per partition, start/end offsets and size on disk."""
        self._check_open()
        self._sync()
        info = self._topic(name)
        compacted = "compact" in LogConfig.from_mapping(info.config).cleanup_policy
        marks = self.uncleanable_marks.read()
        partitions = []
        for partition in range(info.partitions):
            tp = TopicPartition(name, partition)
            log = self.partition_log(tp)
            dirty_ratio = clean_offset = None
            if compacted:
                look = log.cleanable()
                dirty_ratio, clean_offset = look.dirty_ratio, look.first_dirty_offset
            partitions.append(
                PartitionDescription(
                    partition=partition,
                    start_offset=log.start_offset,
                    end_offset=log.end_offset,
                    size_bytes=layout.size_on_disk(self._partition_path(name, partition)),
                    dirty_ratio=dirty_ratio,
                    clean_offset=clean_offset,
                    uncleanable=marks.get(tp),
                )
            )
        return TopicDescription(
            name=name, topic_id=info.topic_id, partitions=tuple(partitions), config=dict(info.config)
        )

    def alter_topic_config(self, name: str, config: Mapping[str, Any]) -> None:
        """Set (or, with a None value, remove) config overrides of ``name``; the result is validated
        as a whole. Handles opened afterwards, in every process, use the new config."""
        self._check_open()
        layout.validate_topic_name(name)
        if not isinstance(config, Mapping):
            raise InvalidConfigError(f"config must be a mapping of Kafka config names, not {config!r}")
        for key in config:
            if key not in _KNOWN_CONFIG_KEYS:
                raise InvalidConfigError(
                    f"unknown config key {key!r}; known keys: {', '.join(sorted(_KNOWN_CONFIG_KEYS))}"
                )
        try:
            with self.catalog.write() as db:
                row = db.execute("SELECT config FROM topics WHERE name = ?", (name,)).fetchone()
                if row is None:
                    raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
                merged = dict(json.loads(row[0]))
                for key, value in config.items():
                    if value is None:
                        merged.pop(key, None)
                    else:
                        merged[key] = value
                config_json = json.dumps(normalized_config(merged), sort_keys=True)
                if config_json != row[0]:
                    db.execute("UPDATE topics SET config = ? WHERE name = ?", (config_json, name))
                    _bump(db, "config_version")
                    # why: a config change may be the operator's fix of what made the cleaner fail
                    # (KAFKA-19895: the mark goes with it, and the cleaner tries again)
                    if UncleanableMarks.clear_topic(db, name):
                        LOG.info("topic %r's config changed: its partitions are cleanable again", name)
        finally:
            self._reload()

    def create_partitions(self, name: str, total: int) -> None:
        """Grow ``name`` to ``total`` partitions (``InvalidPartitionsError`` unless larger)."""
        self._check_open()
        layout.validate_topic_name(name)
        count = _partition_count(total, "total")
        try:
            with self.catalog.write() as db:
                row = db.execute(
                    "SELECT topic_id, partitions, config FROM topics WHERE name = ?", (name,)
                ).fetchone()
                if row is None:
                    raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
                topic_id, current, config_json = row
                if count <= current:
                    raise InvalidPartitionsError(
                        f"topic {name!r} has {current} partitions; the new total must be larger, got {count}"
                    )
                db.execute("UPDATE topics SET partitions = ? WHERE name = ?", (count, name))
                _bump(db, "metadata_version")
                self._create_partition_dirs(name, range(current, count), topic_id, json.loads(config_json))
        finally:
            self._reload()

    # --- compaction and retention (called by pylog.Log and the cleaner) ----------------------------

    def partitions_with_policy(self, word: str) -> list[TopicPartition]:
        """The partitions of every topic whose effective ``cleanup.policy`` contains ``word``
        (``"compact"`` or ``"delete"``), by topic name."""
        self._check_open()
        self._sync()
        out: list[TopicPartition] = []
        for name in sorted(self._topics):
            info = self._topics[name]
            if name in self._deleting or word not in LogConfig.from_mapping(info.config).cleanup_policy:
                continue
            out.extend(TopicPartition(name, partition) for partition in range(info.partitions))
        return out

    def _topic_partitions(self, topic: str | None, word: str) -> list[TopicPartition]:
        if topic is None:
            return self.partitions_with_policy(word)
        self._check_open()
        layout.validate_topic_name(topic)
        self._sync()
        info = self._topic(topic)
        return [TopicPartition(topic, partition) for partition in range(info.partitions)]

    def compact(
        self, topic: str | None = None, *, partitions: Iterable[int] | None = None
    ) -> dict[TopicPartition, CleanResult]:
        """Compact every partition of ``topic`` (None: of every topic whose policy has compact)
        now, whatever its dirty ratio (``force=True``), waiting for a cleaner of another thread or
        process to finish first (``wait=True``). A partition whose policy has no compact gets the
        engine's skipped result. Success clears the partition's uncleanable mark."""
        chosen = self._topic_partitions(topic, "compact")
        if partitions is not None:
            if topic is None:
                raise InvalidConfigError("compact(partitions=...) needs a topic")
            wanted = list(partitions)
            info = self._topic(topic)
            for partition in wanted:
                _check_partition_number(info, partition)
            chosen = [tp for tp in chosen if tp.partition in wanted]
        marks = self.uncleanable_marks.read()
        out: dict[TopicPartition, CleanResult] = {}
        for tp in chosen:
            log = self.partition_log(tp)
            out[tp] = log.compact(
                map_bytes=self.broker_config.cleaner_dedupe_buffer_size, force=True, wait=True
            )
            if tp in marks:
                self.uncleanable_marks.clear(tp)
                self._cleaner.forget_failures(tp)
                LOG.info("%s-%d compacted on request: it is cleanable again", tp.topic, tp.partition)
        return out

    def apply_retention(self, topic: str | None = None) -> dict[TopicPartition, RetentionResult]:
        """Apply retention now to every partition of ``topic`` (None: of every topic whose policy
        has delete; a compacted topic's log start is enforced by its compaction)."""
        out: dict[TopicPartition, RetentionResult] = {}
        for tp in self._topic_partitions(topic, "delete"):
            out[tp] = self.partition_log(tp).apply_retention()
        return out

    def delete_records(self, topic: str, offsets: Mapping[int, int]) -> dict[TopicPartition, int]:
        """Kafka's AdminClient ``deleteRecords``: move each given partition's log start up to its
        offset (``-1``: the end offset, Kafka's ``RecordsToDelete.beforeOffset(-1)``); the new low
        watermarks. Every argument is checked before any partition is changed: an unknown topic
        or partition raises ``UnknownTopicOrPartitionError``, an offset past the end or below the
        start ``OffsetOutOfRangeError`` (deviation: Kafka answers success below the start)."""
        self._check_open()
        layout.validate_topic_name(topic)
        if not isinstance(offsets, Mapping):
            raise TypeError(f"offsets must be a mapping of partition to offset, not {type(offsets).__name__}")
        self._sync()
        info = self._topic(topic)
        wanted: list[tuple[TopicPartition, int]] = []
        for partition, offset in offsets.items():
            _check_partition_number(info, partition)
            offset = as_int(offset, "offset")
            if offset < -1:
                raise OffsetOutOfRangeError(
                    f"cannot delete records before offset {offset} (-1 means the end)"
                )
            wanted.append((TopicPartition(topic, partition), offset))
        resolved: list[tuple[TopicPartition, Any, int]] = []
        for tp, offset in wanted:
            log = self.partition_log(tp)
            start, end = log.start_offset, log.end_offset
            target = end if offset == -1 else offset
            if not start <= target <= end:
                raise OffsetOutOfRangeError(
                    f"cannot delete records of {tp.topic}-{tp.partition} before offset {target}: the log is "
                    f"[{start}, {end}]"
                )
            resolved.append((tp, log, target))
        return {tp: log.delete_before(target).start_offset for tp, log, target in resolved}

    # --- group admin: delegated to the group store (same names and arguments as pylog.Log's) -------

    def list_groups(self) -> Any:
        """The consumer groups of the catalog (``GroupStore.list_groups``)."""
        self._check_open()
        return self.group_store.list_groups()

    def describe_group(self, group_id: str) -> Any:
        """State, members, assignment, committed offsets and lag (``GroupStore.describe_group``)."""
        self._check_open()
        return self.group_store.describe_group(group_id)

    def delete_group(self, group_id: str) -> Any:
        """Delete a group without live members (``GroupStore.delete_group``)."""
        self._check_open()
        return self.group_store.delete_group(group_id)

    def reset_offsets(
        self,
        group_id: str,
        topic: str,
        to: Any = "earliest",
        *,
        partitions: Iterable[int] | None = None,
        dry_run: bool = False,
    ) -> dict[TopicPartition, int]:
        """Reset a group's committed offsets of ``topic`` (``GroupStore.reset_offsets``)."""
        self._check_open()
        return self.group_store.reset_offsets(group_id, topic, to=to, partitions=partitions, dry_run=dry_run)

    # --- factories of the embedded cores (each owned by its own module) ---------------------------

    def new_consumer(self, topics: tuple[str, ...], config: dict[str, Any]) -> Any:
        from pylog.consumer import Consumer

        return Consumer(self, *topics, **config)

    def producer_core(self, config: Any) -> Any:
        """The accumulator/partitioner/group-commit core behind a ``pylog.Producer``."""
        from pylog.embedded.producer_core import ProducerCore

        return ProducerCore(self, config)

    def fetcher(self, config: Any) -> Any:
        """Positions, fetching and waiting behind a ``pylog.Consumer``."""
        from pylog.embedded.fetcher import Fetcher

        return Fetcher(self, config)

    def group_member(self, **settings: Any) -> Any:
        """One consumer's membership of a group (join, heartbeats, rebalances, fenced commits)."""
        from pylog.embedded.coordinator import GroupMember

        return GroupMember(self, **settings)

    @property
    def group_store(self) -> Any:
        """Groups, members, generations and committed offsets in the catalog."""
        with self._lock:
            store = getattr(self, "_group_store", None)
            if store is None:
                from pylog.embedded.group_store import GroupStore

                store = self._group_store = GroupStore(self.catalog, self)
            return store

    def close(self) -> None:
        """Close every engine handle and the catalog (idempotent); later calls raise
        ``ClientClosedError``."""
        # why first: the cleaner uses the handles and the catalog closed below; stop() ends a
        # compaction in progress at its next safe point
        self._cleaner.stop()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            logs = list(self._handles.values())
            retired = [log for _, _, log in self._retired]
            self._handles, self._opened_as, self._retired = {}, {}, []
        store = getattr(self, "_group_store", None)
        if store is not None and hasattr(store, "close"):
            # why: stops the members' heartbeat threads, so none is inside a catalog transaction
            # when the connections go
            store.close()
        for log in retired:  # no caller uses these any more
            self._close_quietly(log)
        errors: list[BaseException] = []
        for log in logs:
            try:
                log.close()
            except Exception as error:
                errors.append(error)
        self.catalog.close()
        if errors:
            raise errors[0]
