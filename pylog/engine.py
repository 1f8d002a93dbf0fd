"""The engine seam: choose and open one of the two interchangeable engines.

``open_partition(path, engine="native" | "reference")`` opens (creating if needed) one partition
directory in Kafka's on-disk format. The native engine is Rust (``pylog._native``); the reference
engine is pure Python (``pylog.reference``) with the same files, behaviour and errors, and is the
oracle of the test suite. ``PYLOG_ENGINE`` selects the default. The shared types and the protocol
live in ``pylog.partition`` (re-exported here); the behaviour contract is docs/partition-log.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pylog.config import LogConfig
from pylog.errors import InvalidConfigError
from pylog.partition import Cleanable, CleanResult, Columns, PartitionLog, Record, RetentionResult

if TYPE_CHECKING:
    from typing_extensions import Buffer

ENGINES = ("native", "reference")

__all__ = [
    "ENGINES",
    "CleanResult",
    "Cleanable",
    "Columns",
    "PartitionLog",
    "Record",
    "RetentionResult",
    "decode_records",
    "default_engine",
    "open_partition",
]


def default_engine() -> str:
    """The engine named by ``PYLOG_ENGINE`` (default ``native``)."""
    name = os.environ.get("PYLOG_ENGINE", "native").strip().lower() or "native"
    if name not in ENGINES:
        raise InvalidConfigError(f"PYLOG_ENGINE must be one of {', '.join(ENGINES)}, not {name!r}")
    return name


def _engine_name(engine: str | None) -> str:
    if engine is None:
        return default_engine()
    if engine not in ENGINES:
        raise InvalidConfigError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    return engine


def open_partition(
    path: str | os.PathLike[str],
    *,
    engine: str | None = None,
    config: Mapping[str, Any] | LogConfig | None = None,
) -> PartitionLog:
    """Open (creating if needed) the partition directory at ``path``.

    ``config`` takes Kafka's topic-level names (``segment.bytes``, ``flush.messages``...);
    unknown keys and bad values raise ``InvalidConfigError``. Recovery runs here when the last
    process to have the partition open did not close it cleanly.
    """
    cfg = LogConfig.from_mapping(config)
    name = _engine_name(engine)
    if name == "native":
        from pylog.native import NativePartitionLog

        return NativePartitionLog(os.fspath(path), cfg)
    from pylog.reference.log import PartitionLog as ReferencePartitionLog

    return ReferencePartitionLog(os.fspath(path), cfg)


def decode_records(buffer: Buffer, *, engine: str | None = None) -> list[Record]:
    """Decode whole v2 batches (for example the result of ``read``) into records, CRC-checked.

    Malformed input raises ``CorruptBatchError`` with the batch's ``position`` in the buffer.
    """
    if _engine_name(engine) == "native":
        from pylog import _native

        return _native.decode_records(buffer, Record)
    from pylog.reference.batch import decode_records as reference_decode

    return reference_decode(buffer)
