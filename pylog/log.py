"""``pylog.open(path)`` and ``Log``: a directory of topics, the client API's entry point.

SKELETON (lead): to be completed by the topics work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pylog.embedded.backend import EmbeddedBackend


class Log:
    def __init__(
        self, path: str | os.PathLike[str], *, engine: str | None = None, auto_create_topics: bool = True
    ):
        self._backend = EmbeddedBackend(os.fspath(path), engine=engine, auto_create_topics=auto_create_topics)

    def create_topic(self, name: str, partitions: int = 1, config: Mapping[str, Any] | None = None) -> None:
        self._backend.create_topic(name, partitions, config)

    def producer(self, **config: Any) -> Any:
        """A ``pylog.Producer`` (kafka-python's config names)."""
        from pylog.producer import Producer

        return Producer(self._backend, **config)

    def consumer(self, *topics: str, **config: Any) -> Any:
        """A ``pylog.Consumer`` (kafka-python's config names), subscribed to ``topics`` if given."""
        from pylog.consumer import Consumer

        return Consumer(self._backend, *topics, **config)

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(path: str | os.PathLike[str], *, engine: str | None = None, auto_create_topics: bool = True) -> Log:
    """Open (creating if needed) the log directory at ``path``."""
    return Log(path, engine=engine, auto_create_topics=auto_create_topics)
