"""EmbeddedBackend: topics in the catalog, partitions through the engine seam.

SKELETON (lead): to be completed by the topics work.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from pylog.config import LogConfig
from pylog.embedded.catalog import Catalog
from pylog.engine import PartitionLog, open_partition
from pylog.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError
from pylog.types import TopicPartition


class EmbeddedBackend:
    def __init__(self, path: str, *, engine: str | None = None, auto_create_topics: bool = True):
        self.path = path
        self.engine = engine
        self.auto_create_topics = auto_create_topics
        os.makedirs(path, exist_ok=True)
        self.catalog = Catalog(path)
        self._lock = threading.Lock()
        self._partitions: dict[TopicPartition, PartitionLog] = {}

    def create_topic(self, name: str, partitions: int = 1, config: Mapping[str, Any] | None = None) -> None:
        LogConfig.from_mapping(config)
        with self.catalog.write() as db:
            if db.execute("SELECT 1 FROM topics WHERE name=?", (name,)).fetchone():
                raise TopicAlreadyExistsError(f"topic {name!r} already exists")
            db.execute(
                "INSERT INTO topics VALUES (?,?,?,?)",
                (name, str(uuid.uuid4()), partitions, json.dumps(dict(config or {}))),
            )

    def partitions_for(self, topic: str, *, create: bool = False) -> int:
        with self.catalog.read() as db:
            row = db.execute("SELECT partitions FROM topics WHERE name=?", (topic,)).fetchone()
        if row is None:
            if create and self.auto_create_topics:
                with contextlib.suppress(TopicAlreadyExistsError):
                    self.create_topic(topic)
                return self.partitions_for(topic)
            raise UnknownTopicOrPartitionError(f"unknown topic {topic!r}")
        return int(row[0])

    def partition_log(self, tp: TopicPartition) -> PartitionLog:
        with self._lock:
            log = self._partitions.get(tp)
            if log is not None:
                return log
        with self.catalog.read() as db:
            row = db.execute("SELECT partitions, config FROM topics WHERE name=?", (tp.topic,)).fetchone()
        if row is None or not 0 <= tp.partition < row[0]:
            raise UnknownTopicOrPartitionError(f"unknown topic or partition {tp}")
        with self._lock:
            log = self._partitions.get(tp)
            if log is None:
                log = open_partition(
                    os.path.join(self.path, f"{tp.topic}-{tp.partition}"),
                    engine=self.engine,
                    config=json.loads(row[1]),
                )
                self._partitions[tp] = log
            return log

    # --- factories of the embedded cores (each owned by its own module) ---------------------------

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
        with self._lock:
            logs, self._partitions = list(self._partitions.values()), {}
        for log in logs:
            log.close()
        self.catalog.close()
