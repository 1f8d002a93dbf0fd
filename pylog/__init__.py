"""pylog: an embeddable, Kafka-compatible commit log for Python with a Rust hot path.

Start with ``pylog.open(path)``: a directory of topics, with ``log.producer(...)`` and
``log.consumer(...)`` using kafka-python's names. One partition directory alone opens with
``pylog.engine.open_partition(path)``. The on-disk format is Kafka's, byte for byte.
"""

from pylog.config import LogConfig
from pylog.consumer import Consumer
from pylog.engine import decode_records, open_partition
from pylog.errors import (
    CorruptBatchError,
    CorruptKind,
    InternalError,
    InvalidConfigError,
    InvalidRecordError,
    LogClosedError,
    OffsetOutOfRangeError,
    PylogError,
    RecordTooLargeError,
)
from pylog.future import BatchMetadata, FutureRecordMetadata
from pylog.listener import ConsumerRebalanceListener
from pylog.log import Log, open
from pylog.mirror import MirrorCountError, MirrorError, MirrorResult, mirror
from pylog.partition import Columns, PartitionLog, Record
from pylog.producer import Producer
from pylog.types import (
    ConsumerRecord,
    OffsetAndMetadata,
    OffsetAndTimestamp,
    PartitionDescription,
    RecordMetadata,
    TopicDescription,
    TopicPartition,
)

__version__ = "0.1.0"

__all__ = [
    "BatchMetadata",
    "Columns",
    "Consumer",
    "ConsumerRebalanceListener",
    "ConsumerRecord",
    "CorruptBatchError",
    "CorruptKind",
    "FutureRecordMetadata",
    "InternalError",
    "InvalidConfigError",
    "InvalidRecordError",
    "Log",
    "LogClosedError",
    "LogConfig",
    "MirrorCountError",
    "MirrorError",
    "MirrorResult",
    "OffsetAndMetadata",
    "OffsetAndTimestamp",
    "OffsetOutOfRangeError",
    "PartitionDescription",
    "PartitionLog",
    "Producer",
    "PylogError",
    "Record",
    "RecordMetadata",
    "RecordTooLargeError",
    "TopicDescription",
    "TopicPartition",
    "decode_records",
    "mirror",
    "open",
    "open_partition",
]
