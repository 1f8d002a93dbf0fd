"""One record of a v2 batch, Kafka's DefaultRecord
(clients/src/main/java/org/apache/kafka/common/record/DefaultRecord.java): zigzag varints, the
checks of ``append``'s arguments, encoding records, and parsing them from a records area (the
batch around them is ``batch.py``). The twin of native/src/record.rs (varints: varint.rs).
Kafka's DefaultRecord.java and ByteUtils.java.

Record (inside the records area or the decompressed stream), all varints zigzag::

    length varint | attributes i8 (0) | timestampDelta varlong | offsetDelta varint
    keyLength varint (-1 = null) | key | valueLength varint (-1 = null) | value
    headersCount varint | (headerKeyLength varint | UTF-8 key | headerValueLength varint | value)*

Invariants kept here:
- Decoding trusts nothing: every length is bounded by the bytes actually present before anything is
  sliced, and no list is sized from a count read off the wire; failures raise ``Malformed`` with a
  kind, which the batch decoder turns into ``CorruptBatchError`` at the batch position.
- Varints follow Java's ``ByteUtils``: at most 5 (varint) / 10 (varlong) bytes, and the raw value is
  truncated to 32 / 64 bits before the zigzag decode, the way Java's int/long shifts do.
  Record offsets and timestamps (base + delta) wrap to int64 like Java's long arithmetic.
Thread-safety: pure functions of their arguments.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from pylog.errors import CorruptBatchError, CorruptKind, InvalidRecordError
from pylog.partition import Record, timestamps_from_array

if TYPE_CHECKING:  # collections.abc.Buffer is Python >= 3.12; annotations only
    from typing_extensions import Buffer

    from pylog.reference.batch import BatchHeader

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1


def view_of(buf: Buffer) -> bytes | bytearray | memoryview:
    """``buf`` indexable by byte: bytes/bytearray as they are, anything else a flat memoryview.

    A strided buffer is refused (``BufferError``, as the native engine): Python's bytes-like
    objects export C-contiguous buffers, and copying a strided one would accept what native refuses.
    """
    if type(buf) is bytes or type(buf) is bytearray:
        return buf
    mv = memoryview(buf)
    if not mv.c_contiguous:
        mv.release()
        raise BufferError("a C-contiguous buffer is required")
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


# ---------------------------------------------------------------------------------------------
# Zigzag varints (ByteUtils.java)

_SMALL_VARINT_LIMIT = 1 << 13  # zigzag values in [-8192, 8192) take 1 or 2 bytes; cache them


def _encode_zigzag(v: int) -> bytes:
    """Zigzag varint/varlong of ``v`` (the same bytes for both when ``v`` fits in 32 bits)."""
    u = ((v << 1) ^ (v >> 63)) & _U64
    out = bytearray()
    while u >= 0x80:
        out.append((u & 0x7F) | 0x80)
        u >>= 7
    out.append(u)
    return bytes(out)


_SMALL_VARINTS = [_encode_zigzag(v) for v in range(-_SMALL_VARINT_LIMIT, _SMALL_VARINT_LIMIT)]


def encode_varint(v: int) -> bytes:
    """Zigzag varint (int32) / varlong (int64); the encodings agree on the int32 range."""
    if -_SMALL_VARINT_LIMIT <= v < _SMALL_VARINT_LIMIT:
        return _SMALL_VARINTS[v + _SMALL_VARINT_LIMIT]
    return _encode_zigzag(v)


encode_varlong = encode_varint


class Malformed(Exception):
    """Internal: a record-level decoding failure; decode_batch adds the batch position."""

    def __init__(self, message: str, kind: CorruptKind = CorruptKind.RECORD):
        super().__init__(message)
        self.kind = kind


def _read_varint(data: bytes, p: int, end: int) -> tuple[int, int]:
    """Zigzag varint (<= 5 bytes, truncated to 32 bits like Java) at ``data[p:end]``."""
    if p < end:
        b = data[p]
        if b < 0x80:
            return (b >> 1) ^ -(b & 1), p + 1
    u = 0
    shift = 0
    while shift < 35:
        if p >= end:
            raise Malformed("varint runs past the end of its record")
        b = data[p]
        p += 1
        u |= (b & 0x7F) << shift
        if b < 0x80:
            u &= _U32
            return (u >> 1) ^ -(u & 1), p
        shift += 7
    raise Malformed("varint longer than 5 bytes")


def _read_varlong(data: bytes, p: int, end: int) -> tuple[int, int]:
    """Zigzag varlong (<= 10 bytes, truncated to 64 bits like Java) at ``data[p:end]``."""
    if p < end:
        b = data[p]
        if b < 0x80:
            return (b >> 1) ^ -(b & 1), p + 1
    u = 0
    shift = 0
    while shift < 70:
        if p >= end:
            raise Malformed("varlong runs past the end of its record")
        b = data[p]
        p += 1
        u |= (b & 0x7F) << shift
        if b < 0x80:
            u &= _U64
            return (u >> 1) ^ -(u & 1), p
        shift += 7
    raise Malformed("varlong longer than 10 bytes")


def decode_varint(data: Buffer, pos: int = 0) -> tuple[int, int]:
    """(value, next position) of the zigzag varint at ``pos``; CorruptBatchError when malformed."""
    view = view_of(data)
    try:
        return _read_varint(view, pos, len(view))
    except Malformed as e:
        raise CorruptBatchError(str(e.args[0]), position=pos, kind=e.kind) from None


def decode_varlong(data: Buffer, pos: int = 0) -> tuple[int, int]:
    """(value, next position) of the zigzag varlong at ``pos``; CorruptBatchError when malformed."""
    view = view_of(data)
    try:
        return _read_varlong(view, pos, len(view))
    except Malformed as e:
        raise CorruptBatchError(str(e.args[0]), position=pos, kind=e.kind) from None


# ---------------------------------------------------------------------------------------------
# Appending: argument validation and encoding


def _to_bytes(obj: object, what: str, i: int) -> bytes | None:
    """bytes/None as is; bytearray, memoryview and other buffer exporters copied to bytes."""
    if obj is None or type(obj) is bytes:
        return obj  # type: ignore[return-value]
    return bytes_like(obj, f"{what} {i}")


def bytes_like(obj: object, what: str) -> bytes:
    """The bytes of a bytes-like object (one exporting a C-contiguous buffer), else TypeError.

    why refuse strided buffers: the native engine does (they are not bytes-like in Python's
    sense), and both engines must accept exactly the same inputs.
    """
    if type(obj) is bytes:
        return obj
    not_bytes_like = f"{what} must be bytes-like, not {type(obj).__name__}"
    if isinstance(obj, str):
        raise TypeError(not_bytes_like)
    try:
        view = memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(not_bytes_like) from None
    with view:
        if not view.c_contiguous:
            raise TypeError(not_bytes_like)
        return view.tobytes()


def _as_list(seq: object, what: str) -> list:
    if isinstance(seq, list):
        return seq
    if isinstance(seq, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be a sequence, not {type(seq).__name__}")
    try:
        return list(seq)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"{what} must be a sequence, not {type(seq).__name__}") from None


def _prepare_headers(record_headers: object, i: int) -> list[tuple[str, bytes | None]]:
    if isinstance(record_headers, (str, bytes, bytearray, memoryview)) or not isinstance(
        record_headers, Iterable
    ):
        raise TypeError(
            f"headers of record {i} must be an iterable of (str, bytes | None) pairs, "
            f"not {type(record_headers).__name__}"
        )
    out = []
    for item in record_headers:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"a header of record {i} is not a (str, bytes | None) pair: {item!r}")
        key, value = item
        if not isinstance(key, str):
            raise TypeError(f"header key of record {i} must be str, not {type(key).__name__}")
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidRecordError(f"header key {key!r} of record {i} cannot be encoded as UTF-8") from None
        out.append((key, _to_bytes(value, "header value of record", i)))
    return out


def _timestamp_items(timestamps_ms: object) -> list | tuple:
    """The shape check of ``timestamps_ms``: a list/tuple/1-D array (TypeError for a scalar or a
    string, InvalidRecordError for a non-integer array). Integer arrays are range-checked here
    (vectorized) and come back as lists of Python ints."""
    if isinstance(timestamps_ms, np.ndarray):
        return timestamps_from_array(timestamps_ms)
    if isinstance(timestamps_ms, (list, tuple)):
        return timestamps_ms
    if isinstance(timestamps_ms, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"timestamps_ms must be a sequence of ints, not {type(timestamps_ms).__name__}")
    return _as_list(timestamps_ms, "timestamps_ms")


def _check_timestamps(items: list | tuple) -> list[int]:
    out = []
    for ts in items:
        if type(ts) is not int:
            if isinstance(ts, (bool, np.bool_)):
                raise InvalidRecordError(f"timestamp {ts!r} is a bool, not an int")
            if isinstance(ts, (int, np.integer)):
                ts = int(ts)
            else:
                raise InvalidRecordError(f"timestamp {ts!r} is not an int")
        if ts < 0 or ts > INT64_MAX:
            raise InvalidRecordError(f"timestamp {ts} outside [0, 2**63-1]")
        out.append(ts)
    return out


def prepare_records(values, keys, headers, timestamps_ms, now_ms: int):
    """Validate ``append``'s arguments and return (values, keys, headers, timestamps) as lists of
    bytes/None, bytes/None, list[(str, bytes|None)], int. TypeError for non-bytes-like values,
    keys or header values and non-str header keys; InvalidRecordError for no records, length
    mismatches, or timestamps outside [0, 2**63-1] or not ints."""
    # Order of checks (the native engine matches it): first the shape of every argument in the
    # order values (non-empty), keys, headers, timestamps_ms (each a sequence of n items); then
    # the items of values, keys, headers, timestamps, each in index order. The first failure wins.
    values = _as_list(values, "values")
    n = len(values)
    if n == 0:
        raise InvalidRecordError("append needs at least one record")
    if keys is not None:
        keys = _as_list(keys, "keys")
        if len(keys) != n:
            raise InvalidRecordError(f"{len(keys)} keys for {n} values")
    if headers is not None:
        headers = _as_list(headers, "headers")
        if len(headers) != n:
            raise InvalidRecordError(f"{len(headers)} header lists for {n} values")
    if timestamps_ms is not None:
        ts_items = _timestamp_items(timestamps_ms)
        if len(ts_items) != n:
            raise InvalidRecordError(f"{len(ts_items)} timestamps for {n} values")

    out_values = [
        v if v is None or type(v) is bytes else _to_bytes(v, "value", i) for i, v in enumerate(values)
    ]
    if keys is None:
        out_keys = [None] * n
    else:
        out_keys = [
            k if k is None or type(k) is bytes else _to_bytes(k, "key", i) for i, k in enumerate(keys)
        ]
    if headers is None:
        out_headers = [[] for _ in range(n)]
    else:
        out_headers = [_prepare_headers(h, i) for i, h in enumerate(headers)]

    if timestamps_ms is None:
        if type(now_ms) is not int or not 0 <= now_ms <= INT64_MAX:
            raise InvalidRecordError(f"clock time {now_ms!r} outside [0, 2**63-1]")
        timestamps = [now_ms] * n
    else:
        timestamps = _check_timestamps(ts_items)
    return out_values, out_keys, out_headers, timestamps


_NULL = b"\x01"  # zigzag(-1): a null key, value or header value
_NO_HEADERS = b"\x00"
_ATTRIBUTES_0 = b"\x00"


def encode_records(
    values: list, keys: list, headers: list, timestamps: list[int], base_ts: int
) -> list[bytes]:
    """The records area as a list of pieces (length varint, body) per record."""
    varint = encode_varint
    parts: list[bytes] = []
    append = parts.append
    for i in range(len(values)):
        key = keys[i]
        value = values[i]
        record_headers = headers[i]
        body = [_ATTRIBUTES_0, varint(timestamps[i] - base_ts), varint(i)]
        if key is None:
            body.append(_NULL)
        else:
            body.append(varint(len(key)))
            body.append(key)
        if value is None:
            body.append(_NULL)
        else:
            body.append(varint(len(value)))
            body.append(value)
        if record_headers:
            body.append(varint(len(record_headers)))
            for hkey, hvalue in record_headers:
                hkey_bytes = hkey.encode("utf-8")
                body.append(varint(len(hkey_bytes)))
                body.append(hkey_bytes)
                if hvalue is None:
                    body.append(_NULL)
                else:
                    body.append(varint(len(hvalue)))
                    body.append(hvalue)
        else:
            body.append(_NO_HEADERS)
        encoded = b"".join(body)
        append(varint(len(encoded)))
        append(encoded)
    return parts


# ---------------------------------------------------------------------------------------------
# Decoding


def _read_headers(data: bytes, p: int, end: int) -> tuple[list, int]:
    """(headers, next position) of the headers array of one record at ``data[p:end]``."""
    header_count, p = _read_varint(data, p, end)
    if header_count < 0:
        raise Malformed(f"header count {header_count} < 0")
    out: list = []
    for _ in range(header_count):  # bounded: each header takes >= 2 bytes of the record
        hkey_len, p = _read_varint(data, p, end)
        if hkey_len < 0:
            raise Malformed(f"header key length {hkey_len} < 0")
        if p + hkey_len > end:
            raise Malformed("header key runs past the end of its record")
        try:
            hkey = data[p : p + hkey_len].decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed("header key is not valid UTF-8") from None
        p += hkey_len
        hvalue_len, p = _read_varint(data, p, end)
        if hvalue_len < 0:
            if hvalue_len != -1:
                raise Malformed(f"header value length {hvalue_len} < -1")
            hvalue = None
        else:
            if p + hvalue_len > end:
                raise Malformed("header value runs past the end of its record")
            hvalue = data[p : p + hvalue_len]
            p += hvalue_len
        out.append((hkey, hvalue))
    return out, p


def decode_records_area(data: bytes, header: BatchHeader, check_leftover: bool) -> list[Record]:
    """Decode ``header.records_count`` records from ``data``; raises Malformed."""
    count = header.records_count
    base_offset = header.base_offset
    base_ts = header.base_timestamp
    log_append_time = header.timestamp_type == 1
    ts_type = 1 if log_append_time else 0
    max_ts = header.max_timestamp
    read_varint = _read_varint
    read_varlong = _read_varlong
    new_tuple = tuple.__new__  # Record._make without its length check: we build 6 fields
    end_all = len(data)
    out: list[Record] = []
    append = out.append
    p = 0
    # why: the loop is bounded by the data (each record takes >= 1 byte), never by ``count``
    # alone, and nothing is preallocated from the untrusted count.
    # Each varint read inlines the one- and two-byte cases (values below 8192 in magnitude: most
    # lengths and deltas; a function call per field was most of the decode time of 100-byte
    # records) and falls back to _read_varint/_read_varlong, which bound every read by the
    # record end.
    for _ in range(count):
        if p >= end_all:
            raise Malformed(f"{len(out)} records found, header says {count}", CorruptKind.RECORD_COUNT)
        b = data[p]
        if b < 0x80:
            length = (b >> 1) ^ -(b & 1)
            p += 1
        elif p + 1 < end_all and (b2 := data[p + 1]) < 0x80:
            u = (b & 0x7F) | (b2 << 7)
            length = (u >> 1) ^ -(u & 1)
            p += 2
        else:
            length, p = read_varint(data, p, end_all)
        if length < 0:
            raise Malformed(f"record length {length} < 0")
        end = p + length
        if end > end_all:
            raise Malformed(f"record length {length} runs past the data")
        if p >= end:
            raise Malformed("record shorter than its attributes byte")
        p += 1  # attributes: unused
        if p < end and (b := data[p]) < 0x80:
            ts_delta = (b >> 1) ^ -(b & 1)
            p += 1
        elif p + 1 < end and (b2 := data[p + 1]) < 0x80 <= b:
            u = (b & 0x7F) | (b2 << 7)
            ts_delta = (u >> 1) ^ -(u & 1)
            p += 2
        else:
            ts_delta, p = read_varlong(data, p, end)
        if p < end and (b := data[p]) < 0x80:
            offset_delta = (b >> 1) ^ -(b & 1)
            p += 1
        elif p + 1 < end and (b2 := data[p + 1]) < 0x80 <= b:
            u = (b & 0x7F) | (b2 << 7)
            offset_delta = (u >> 1) ^ -(u & 1)
            p += 2
        else:
            offset_delta, p = read_varint(data, p, end)
        if p < end and (b := data[p]) < 0x80:
            key_len = (b >> 1) ^ -(b & 1)
            p += 1
        elif p + 1 < end and (b2 := data[p + 1]) < 0x80 <= b:
            u = (b & 0x7F) | (b2 << 7)
            key_len = (u >> 1) ^ -(u & 1)
            p += 2
        else:
            key_len, p = read_varint(data, p, end)
        if key_len < 0:
            if key_len != -1:
                raise Malformed(f"key length {key_len} < -1")
            key = None
        else:
            if p + key_len > end:
                raise Malformed("key runs past the end of its record")
            key = data[p : p + key_len]
            p += key_len
        if p < end and (b := data[p]) < 0x80:
            value_len = (b >> 1) ^ -(b & 1)
            p += 1
        elif p + 1 < end and (b2 := data[p + 1]) < 0x80 <= b:
            u = (b & 0x7F) | (b2 << 7)
            value_len = (u >> 1) ^ -(u & 1)
            p += 2
        else:
            value_len, p = read_varint(data, p, end)
        if value_len < 0:
            if value_len != -1:
                raise Malformed(f"value length {value_len} < -1")
            value = None
        else:
            if p + value_len > end:
                raise Malformed("value runs past the end of its record")
            value = data[p : p + value_len]
            p += value_len
        if p < end and data[p] == 0:  # no headers: the common case
            p += 1
            record_headers = []
        else:
            record_headers, p = _read_headers(data, p, end)
        if p != end:
            raise Malformed(f"record consumed {p - end + length} bytes, length says {length}")
        offset = base_offset + offset_delta
        if not INT64_MIN <= offset <= INT64_MAX:  # Java long arithmetic wraps
            offset = ((offset - INT64_MIN) & _U64) + INT64_MIN
        if log_append_time:
            ts = max_ts
        else:
            ts = base_ts + ts_delta
            if not INT64_MIN <= ts <= INT64_MAX:
                ts = ((ts - INT64_MIN) & _U64) + INT64_MIN
        append(new_tuple(Record, (offset, ts, ts_type, key, value, record_headers)))
    if check_leftover and p != end_all:
        raise Malformed(f"{end_all - p} bytes left over after {count} records", CorruptKind.RECORD_COUNT)
    return out
