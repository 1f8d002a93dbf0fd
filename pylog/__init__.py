"""pylog: an embeddable, Kafka-compatible commit log for Python with a Rust hot path.

Start with ``pylog.engine.open_partition(path)``; the on-disk format is Kafka's, byte for byte.
"""

from pylog.config import LogConfig
from pylog.engine import decode_records, open_partition
from pylog.errors import (
    CorruptBatchError,
    InternalError,
    InvalidConfigError,
    InvalidRecordError,
    LogClosedError,
    OffsetOutOfRangeError,
    PylogError,
    RecordTooLargeError,
)
from pylog.partition import Columns, PartitionLog, Record

__version__ = "0.1.0"

__all__ = [
    "Columns",
    "CorruptBatchError",
    "InternalError",
    "InvalidConfigError",
    "InvalidRecordError",
    "LogClosedError",
    "LogConfig",
    "OffsetOutOfRangeError",
    "PartitionLog",
    "PylogError",
    "Record",
    "RecordTooLargeError",
    "decode_records",
    "open_partition",
]
