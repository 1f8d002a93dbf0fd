"""Typed errors raised by pylog, identical for the native and the reference engine.

Both engines raise exactly these classes (the Rust engine converts its error enum into them at the
PyO3 boundary), so callers and tests can catch precisely. I/O failures are the standard ``OSError``
subclasses (``FileNotFoundError``, ``PermissionError``, ``NotADirectoryError``...).

``CorruptBatchError`` (always) and ``InvalidRecordError`` (when ``append_raw`` refuses a batch) carry
a ``kind`` from the closed set ``CorruptKind``, the same in both engines (the Rust twin is
``CorruptKind`` in native/src/error.rs), so tests compare kinds instead of free text and a
Kafka-protocol front can map a kind to Kafka's error code
(clients/src/main/java/org/apache/kafka/common/protocol/Errors.java).
"""

from __future__ import annotations

from enum import StrEnum


class CorruptKind(StrEnum):
    """What was wrong with a batch. The Kafka error a protocol front would answer is in brackets
    (CORRUPT_MESSAGE for a ``CorruptBatchError``, the other codes for an ``InvalidRecordError``)."""

    #: size below the 61-byte header, a length field that disagrees with the bytes (too small,
    #: past the end, or not exactly one batch), an incomplete batch, or a segment scan that met
    #: bytes which do not frame [CORRUPT_MESSAGE]
    FRAMING = "framing"
    #: magic byte other than 2 [CORRUPT_MESSAGE; UNSUPPORTED_VERSION for a v0/v1 producer]
    MAGIC = "magic"
    #: stored CRC-32C differs from the bytes [CORRUPT_MESSAGE]
    CRC = "crc"
    #: codec id (attributes bits 0-2) above 4 [UNSUPPORTED_COMPRESSION_TYPE]
    CODEC = "codec"
    #: the compressed records do not decompress, or decompress past the size limit [CORRUPT_MESSAGE]
    COMPRESSION = "compression"
    #: a record's layout: a varint over 5/10 bytes, a length below -1 or past its record, a record
    #: length that disagrees with its fields, a negative header count or key length, a header key
    #: that is not UTF-8 [CORRUPT_MESSAGE]
    RECORD = "record"
    #: the record count disagrees with the batch: negative or zero, fewer records than it says,
    #: bytes left over after them, or ``lastOffsetDelta != count - 1`` [CORRUPT_MESSAGE / INVALID_RECORD]
    RECORD_COUNT = "record_count"
    #: record offset deltas that are not 0, 1, ..., count - 1 [INVALID_RECORD]
    OFFSET = "offset"
    #: a record timestamp that overflows int64 (baseTimestamp + delta), or a CreateTime batch
    #: whose maxTimestamp is not its records' maximum [INVALID_TIMESTAMP]
    TIMESTAMP = "timestamp"
    #: attribute bits 7-15 set [INVALID_RECORD]
    ATTRIBUTES = "attributes"
    #: a control batch that is not one well-formed control record [INVALID_RECORD]
    CONTROL = "control"
    #: a record without a key appended to a partition whose ``cleanup.policy`` includes
    #: ``compact`` (Kafka's broker: "Compacted topic cannot accept message without key") [INVALID_RECORD]
    KEY = "key"


def _kind(kind: CorruptKind | str | None) -> CorruptKind | None:
    return None if kind is None else CorruptKind(kind)


class PylogError(Exception):
    """Base class of every error pylog raises on purpose."""


class CorruptBatchError(PylogError):
    """A record batch failed validation (framing, magic, CRC-32C, record layout, codec).

    ``path`` is the segment file (``None`` for an in-memory buffer), ``position`` the byte
    position of the batch in it and ``kind`` the ``CorruptKind`` of the failure.
    """

    def __init__(
        self,
        message: str,
        path: str | None = None,
        position: int | None = None,
        kind: CorruptKind | str | None = None,
    ):
        super().__init__(message)
        self.path = path
        self.position = position
        self.kind = _kind(kind)

    def __str__(self) -> str:
        where = []
        if self.kind is not None:
            where.append(f"kind {self.kind.value}")
        if self.path is not None:
            where.append(str(self.path))
        if self.position is not None:
            where.append(f"position {self.position}")
        base = super().__str__()
        return f"{base} ({', '.join(where)})" if where else base

    def __reduce__(self):  # keep path/position/kind across pickling (multiprocessing)
        kind = None if self.kind is None else self.kind.value
        return (type(self), (self.args[0] if self.args else "", self.path, self.position, kind))


class OffsetOutOfRangeError(PylogError):
    """The requested offset lies outside ``[start_offset, end_offset]``."""


class RecordTooLargeError(PylogError):
    """A batch is larger than ``max.message.bytes`` (or than ``segment.bytes``)."""


class InvalidConfigError(PylogError, ValueError):
    """An unknown config key, a bad config value, or an unknown compression codec."""


class InvalidRecordError(PylogError, ValueError):
    """Records that cannot form a batch: none at all, mismatched lengths, bad timestamps; or a
    well-formed batch ``append_raw`` refuses (then ``kind`` says why; ``None`` otherwise)."""

    def __init__(self, message: str = "", kind: CorruptKind | str | None = None):
        super().__init__(message)
        self.kind = _kind(kind)

    def __str__(self) -> str:
        base = super().__str__()
        return base if self.kind is None else f"{base} (kind {self.kind.value})"

    def __reduce__(self):
        kind = None if self.kind is None else self.kind.value
        return (type(self), (self.args[0] if self.args else "", kind))


class LogClosedError(PylogError):
    """The partition log was used after ``close()``."""


class InternalError(PylogError):
    """A bug inside pylog (for example a Rust panic caught at the boundary). Please report it."""


# --- client-layer errors (topics, producers, consumers, groups); names are kafka-python's -------


class KafkaTimeoutError(PylogError, TimeoutError):
    """A blocking call (``future.get(timeout)``, ``flush(timeout)``, ``close(timeout)``) ran out of time."""


class UnknownTopicOrPartitionError(PylogError, KeyError):
    """The topic does not exist (or was deleted), or it has no such partition."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidTopicError(PylogError, ValueError):
    """A topic name breaks Kafka's rules (``[a-zA-Z0-9._-]``, 1..249 characters, not ``.``/``..``)."""


class TopicAlreadyExistsError(PylogError):
    """``create_topic`` for a name that exists."""


class InvalidPartitionsError(PylogError, ValueError):
    """A partition count below 1, or ``create_partitions`` to fewer partitions than the topic has."""


class SerializationError(PylogError):
    """A key/value serializer or deserializer failed; the message names topic, partition (and
    offset, for deserializers); ``__cause__`` is the serializer's own exception."""


class ClientClosedError(LogClosedError):
    """A ``Log``, producer or consumer was used after ``close()``."""


class CatalogError(PylogError):
    """The catalog database is corrupt, foreign (not pylog's), or from an unknown schema version.
    pylog refuses it and never overwrites it."""


class IllegalStateError(PylogError):
    """A call that the client's state forbids: ``position``/``seek``/``commit`` of a partition that
    is not assigned, ``assign`` after ``subscribe`` (or the reverse), ``poll`` with no assignment."""


class NoOffsetForPartitionError(OffsetOutOfRangeError):
    """``auto_offset_reset="none"`` and the partition has no committed offset to start from."""


class InvalidGroupIdError(PylogError, ValueError):
    """A group operation with an empty or missing ``group_id``."""


class CommitFailedError(PylogError):
    """A commit was refused: the member's generation (Kafka's ILLEGAL_GENERATION) is older than
    the group's, the member was removed from the group, or a rebalance moved the partition away.
    Nothing of the commit was applied; the consumer rejoins on its next ``poll``."""


class NonEmptyGroupError(PylogError):
    """A group admin operation (``delete_group``, ``reset_offsets``) while the group has live members."""


class GroupIdNotFoundError(PylogError, KeyError):
    """``describe_group``/``delete_group`` of a group the catalog does not know."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InconsistentGroupProtocolError(PylogError):
    """A member's ``partition_assignment_strategy`` shares no assignor with the group's members
    (Kafka's INCONSISTENT_GROUP_PROTOCOL); the member is not admitted."""


class FencedInstanceIdError(PylogError):
    """Another consumer joined with this consumer's ``group_instance_id`` and took its place
    (Kafka's FENCED_INSTANCE_ID); this one is out of the group for good."""


# --- the kafka backend's errors (pylog.kafka; names are kafka-python's) --------------------------


class UnsupportedError(PylogError, NotImplementedError):
    """The operation or setting does not exist on this backend (e.g. ``Log.compact`` on a Kafka
    cluster, whose brokers run their own cleaner; an embedded-only config key). Raised instead of
    doing nothing; docs/kafka.md lists what differs."""


class KafkaConnectionError(PylogError, ConnectionError):
    """The Kafka cluster could not be reached (no broker answered, or the transport failed) within
    the client's timeouts."""


class AuthenticationError(PylogError):
    """The cluster refused the client's credentials (SASL or SSL handshake failure)."""


class AuthorizationError(PylogError, PermissionError):
    """The cluster refused the operation on an ACL (Kafka's ``*_AUTHORIZATION_FAILED``)."""


class BrokerResponseError(PylogError):
    """A Kafka error code no narrower class covers: ``code`` is Kafka's numeric error code
    (clients/src/main/java/org/apache/kafka/common/protocol/Errors.java; librdkafka's for local
    errors, which are negative), ``name`` its name, ``retriable`` whether the client may retry."""

    def __init__(self, message: str = "", code: int = -1, name: str = "UNKNOWN", retriable: bool = False):
        super().__init__(message)
        self.code = code
        self.name = name
        self.retriable = retriable

    def __reduce__(self):
        return (type(self), (str(self.args[0]) if self.args else "", self.code, self.name, self.retriable))


__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "BrokerResponseError",
    "CatalogError",
    "ClientClosedError",
    "CommitFailedError",
    "CorruptBatchError",
    "CorruptKind",
    "FencedInstanceIdError",
    "GroupIdNotFoundError",
    "IllegalStateError",
    "InconsistentGroupProtocolError",
    "InternalError",
    "InvalidConfigError",
    "InvalidGroupIdError",
    "InvalidPartitionsError",
    "InvalidRecordError",
    "InvalidTopicError",
    "KafkaConnectionError",
    "KafkaTimeoutError",
    "LogClosedError",
    "NoOffsetForPartitionError",
    "NonEmptyGroupError",
    "OffsetOutOfRangeError",
    "PylogError",
    "RecordTooLargeError",
    "SerializationError",
    "TopicAlreadyExistsError",
    "UnknownTopicOrPartitionError",
    "UnsupportedError",
]
