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

    def close(self) -> None:
        with self._lock:
            logs, self._partitions = list(self._partitions.values()), {}
        for log in logs:
            log.close()
        self.catalog.close()
