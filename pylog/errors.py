"""Typed errors raised by pylog, identical for the native and the reference engine.

Both engines raise exactly these classes (the Rust engine converts its error enum into them at the
PyO3 boundary), so callers and tests can catch precisely. I/O failures are the standard ``OSError``
subclasses (``FileNotFoundError``, ``PermissionError``, ``NotADirectoryError``...).
"""

from __future__ import annotations


class PylogError(Exception):
    """Base class of every error pylog raises on purpose."""


class CorruptBatchError(PylogError):
    """A record batch failed validation (framing, magic, CRC-32C, record layout, codec).

    ``path`` is the segment file (``None`` for an in-memory buffer) and ``position`` the byte
    position of the batch in it.
    """

    def __init__(self, message: str, path: str | None = None, position: int | None = None):
        super().__init__(message)
        self.path = path
        self.position = position

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(str(self.path))
        if self.position is not None:
            where.append(f"position {self.position}")
        base = super().__str__()
        return f"{base} ({', '.join(where)})" if where else base

    def __reduce__(self):  # keep path/position across pickling (multiprocessing)
        return (type(self), (self.args[0] if self.args else "", self.path, self.position))


class OffsetOutOfRangeError(PylogError):
    """The requested offset lies outside ``[start_offset, end_offset]``."""


class RecordTooLargeError(PylogError):
    """A batch is larger than ``max.message.bytes`` (or than ``segment.bytes``)."""


class InvalidConfigError(PylogError, ValueError):
    """An unknown config key, a bad config value, or an unknown compression codec."""


class InvalidRecordError(PylogError, ValueError):
    """Records that cannot form a batch: none at all, mismatched lengths, bad timestamps."""


class LogClosedError(PylogError):
    """The partition log was used after ``close()``."""


class InternalError(PylogError):
    """A bug inside pylog (for example a Rust panic caught at the boundary). Please report it."""


__all__ = [
    "CorruptBatchError",
    "InternalError",
    "InvalidConfigError",
    "InvalidRecordError",
    "LogClosedError",
    "OffsetOutOfRangeError",
    "PylogError",
    "RecordTooLargeError",
]
