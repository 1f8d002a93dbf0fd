"""The record encodings of ``pylog produce`` and ``pylog consume``: one record per line, as
``text``, ``json`` or ``hex``. Both commands use these functions, so what ``consume --format F``
prints, ``produce --format F`` reads back into the same records (json and hex are binary-safe).

Formats (one line each, ``\\n``-terminated; bytes in, bytes out):

- ``text``: the value's bytes (produce: the line without its ``\\n``; a ``\\r`` before it is data),
  or ``KEY SEP VALUE`` with a key separator (split at the first SEP). Consume prints the value
  decoded as UTF-8 with replacement characters (so a terminal never receives invalid UTF-8), and a
  null value as ``null``, as Kafka's console consumer does. Not binary-safe: a value holding ``\\n``
  prints as two lines.
- ``json``: one object ``{"topic", "partition", "offset", "timestamp", "timestamp_type", "key",
  "value", "headers"}``. Key, value and each header value are a JSON string when the bytes decode
  as UTF-8, else ``{"base64": "..."}`` (standard alphabet, padded), and ``null`` for None; headers
  are a list of ``[name, value]``. ``timestamp_type`` is ``"CreateTime"`` or ``"LogAppendTime"``.
  Produce reads the same objects: only ``value`` is required; ``key``, ``headers``, ``partition``
  and ``timestamp`` (ms) are used when present; ``topic``, ``offset`` and ``timestamp_type`` are
  accepted and ignored (the target topic is the command's; offsets are the log's to give); any
  other member is an error, so a misspelt one is not silently dropped.
- ``hex``: ``KEY<TAB>VALUE[<TAB>HEADER...]``, each of KEY and VALUE lowercase hex of the bytes
  (the empty string for empty bytes) or ``-`` for None; each HEADER is ``NAMEHEX:VALUEHEX`` (the
  name's UTF-8 bytes in hex; the value ``-`` for None). Produce also takes uppercase hex. Carries
  no partition or timestamp (use json for those).

Errors: the decoders raise ``RecordFormatError`` saying what is wrong with the line; the caller
adds the line number.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

FORMATS = ("text", "json", "hex")

#: ConsumerRecord.timestamp_type -> the name json prints (Kafka's TimestampType names)
TIMESTAMP_TYPES = {0: "CreateTime", 1: "LogAppendTime"}

#: members of a json line that produce accepts and ignores (what consume prints besides the record)
IGNORED_JSON_MEMBERS = frozenset({"topic", "offset", "timestamp_type"})
JSON_MEMBERS = frozenset({"key", "value", "headers", "partition", "timestamp"}) | IGNORED_JSON_MEMBERS

NULL_HEX = "-"

Headers = list[tuple[str, bytes | None]]


class RecordFormatError(ValueError):
    """A line that is not a record of its format."""


class OutgoingRecord(NamedTuple):
    """A record read from one line of input, for ``Producer.send``."""

    value: bytes | None
    key: bytes | None = None
    headers: Headers | None = None
    partition: int | None = None
    timestamp: int | None = None


# --- json ------------------------------------------------------------------------------------


def encode_json_bytes(data: bytes | None) -> str | dict[str, str] | None:
    """Bytes as json prints them: a string when they are UTF-8, else marked base64; None: null."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def decode_json_bytes(item: Any, what: str) -> bytes | None:
    """The inverse of ``encode_json_bytes``; ``what`` names the field in errors."""
    if item is None:
        return None
    if isinstance(item, str):
        try:
            return item.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate from a \\udXXX escape
            raise RecordFormatError(f"{what} is not valid Unicode (a lone surrogate)") from None
    if isinstance(item, dict) and set(item) == {"base64"} and isinstance(item["base64"], str):
        try:
            return base64.b64decode(item["base64"], validate=True)
        except (binascii.Error, ValueError):
            raise RecordFormatError(f"{what} is not valid base64") from None
    raise RecordFormatError(
        f'{what} must be a string, {{"base64": "..."}} or null, not {json.dumps(item)[:60]}'
    )


def record_to_json(record: Any) -> dict[str, Any]:
    """A ``pylog.ConsumerRecord`` as the json format's object."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "timestamp_type": TIMESTAMP_TYPES.get(record.timestamp_type, str(record.timestamp_type)),
        "key": encode_json_bytes(record.key),
        "value": encode_json_bytes(record.value),
        "headers": [[name, encode_json_bytes(value)] for name, value in record.headers],
    }


def _json_bytes_text(data: bytes | None) -> str:
    """``encode_json_bytes`` as JSON text."""
    if data is None:
        return "null"
    try:
        return _quote(data.decode("utf-8"))
    except UnicodeDecodeError:
        return '{"base64":"' + base64.b64encode(data).decode("ascii") + '"}'


#: JSON string literals: _quote keeps non-ASCII as it is (half the bytes of \u escapes for
#: text), _quote_ascii escapes it (for header names, the one str a producer gives us that may
#: hold a lone surrogate, which UTF-8 cannot carry)
_quote = json.encoder.encode_basestring  # type: ignore[attr-defined]
_quote_ascii = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def encode_json_lines(records: Sequence[Any]) -> bytes:
    """Records as json lines (UTF-8, each ending in ``\\n``): ``record_to_json`` of each, written
    out by hand. why not json.dumps of the dict: this is 5x faster, and ``consume --format json``
    is bound by it (the tests check both give the same objects)."""
    lines = []
    prefixes: dict[tuple[str, int], str] = {}
    for r in records:
        prefix = prefixes.get((r.topic, r.partition))
        if prefix is None:
            prefix = prefixes[(r.topic, r.partition)] = (
                f'{{"topic":{_quote_ascii(r.topic)},"partition":{r.partition},"offset":'
            )
        headers = (
            "[" + ",".join([f"[{_quote_ascii(n)},{_json_bytes_text(v)}]" for n, v in r.headers]) + "]"
            if r.headers
            else "[]"
        )
        timestamp_type = TIMESTAMP_TYPES.get(r.timestamp_type, str(r.timestamp_type))
        lines.append(
            f'{prefix}{r.offset},"timestamp":{r.timestamp},"timestamp_type":"{timestamp_type}",'
            f'"key":{_json_bytes_text(r.key)},"value":{_json_bytes_text(r.value)},"headers":{headers}}}\n'
        )
    return "".join(lines).encode("utf-8")


_json_decode = json.JSONDecoder().decode


def decode_json_line(line: bytes) -> OutgoingRecord:
    """One json line (without its newline) as a record to send."""
    try:
        document = _json_decode(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise RecordFormatError("not UTF-8 (a JSON line is UTF-8 text)") from None
    except ValueError as error:
        raise RecordFormatError(f"not JSON: {error}") from None
    if type(document) is not dict:
        raise RecordFormatError("a JSON line must be an object")
    if not document.keys() <= JSON_MEMBERS:
        unknown = ", ".join(sorted(set(document) - JSON_MEMBERS))
        raise RecordFormatError(f"unknown member(s) {unknown} (known: {', '.join(sorted(JSON_MEMBERS))})")
    try:
        value = document["value"]
    except KeyError:
        raise RecordFormatError('no "value" (it may be null, but must be there)') from None
    # why the type checks first: the common case (a string, or null) without a call
    value = value.encode("utf-8") if type(value) is str else decode_json_bytes(value, "value")
    key = document.get("key")
    key = key.encode("utf-8") if type(key) is str else decode_json_bytes(key, "key")
    headers = _decode_json_headers(document.get("headers"))
    partition = _optional_int(document.get("partition"), "partition", 0, 2**31 - 1)
    timestamp = _optional_int(document.get("timestamp"), "timestamp", 0, 2**63 - 1)
    return OutgoingRecord(value, key, headers or None, partition, timestamp)


def _decode_json_headers(item: Any) -> Headers | None:
    if item is None:
        return None
    if not isinstance(item, list):
        raise RecordFormatError("headers must be a list of [name, value]")
    headers: Headers = []
    for header in item:
        if not isinstance(header, list) or len(header) != 2 or not isinstance(header[0], str):
            raise RecordFormatError(
                f"each header must be [name, value] with a string name, not {json.dumps(header)[:60]}"
            )
        headers.append((header[0], decode_json_bytes(header[1], f"header {header[0]!r}")))
    return headers


def _optional_int(item: Any, what: str, low: int, high: int) -> int | None:
    if item is None:
        return None
    if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
        raise RecordFormatError(f"{what} must be an integer in [{low}, {high}], not {json.dumps(item)[:40]}")
    return item


# --- hex -------------------------------------------------------------------------------------


def _hex(data: bytes | None) -> str:
    return NULL_HEX if data is None else data.hex()


def encode_hex_lines(records: Sequence[Any]) -> bytes:
    """Records (anything with key, value, headers) as hex lines."""
    lines = []
    for r in records:
        fields = [_hex(r.key), _hex(r.value)]
        fields += [
            f"{name.encode('utf-8', 'surrogatepass').hex()}:{_hex(value)}" for name, value in r.headers
        ]
        lines.append("\t".join(fields))
    lines.append("")
    return "\n".join(lines).encode("ascii")


def _unhex(field: bytes, what: str) -> bytes | None:
    if field == b"-":
        return None
    try:
        return bytes.fromhex(field.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise RecordFormatError(f"{what} is not hex (or - for null): {field[:40]!r}") from None


def decode_hex_line(line: bytes) -> OutgoingRecord:
    """One hex line (without its newline) as a record to send."""
    fields = line.split(b"\t")
    if len(fields) < 2:
        raise RecordFormatError("a hex line is KEY<TAB>VALUE[<TAB>NAME:VALUE...] (no tab found)")
    key = _unhex(fields[0], "key")
    value = _unhex(fields[1], "value")
    headers: Headers = []
    for number, field in enumerate(fields[2:], 1):
        name_hex, colon, value_hex = field.partition(b":")
        if not colon:
            raise RecordFormatError(f"header {number} is not NAMEHEX:VALUEHEX: {field[:40]!r}")
        name = _unhex(name_hex, f"header {number}'s name")
        if name is None:
            raise RecordFormatError(f"header {number}'s name cannot be null")
        try:
            name_text = name.decode("utf-8")
        except UnicodeDecodeError:
            raise RecordFormatError(f"header {number}'s name is not UTF-8") from None
        headers.append((name_text, _unhex(value_hex, f"header {number}'s value")))
    return OutgoingRecord(value, key, headers or None)


# --- text ------------------------------------------------------------------------------------


#: the fields ``consume --format text`` can print before the value, in Kafka's order
#: (DefaultMessageFormatter: timestamp, partition, offset, headers, key, value)
TEXT_FIELDS = ("timestamp", "partition", "offset", "headers", "key")


def printable(data: bytes) -> bytes:
    """``data`` as UTF-8 with each invalid sequence replaced by U+FFFD."""
    if data.isascii():
        return data
    return data.decode("utf-8", "replace").encode("utf-8")


def _text_field(record: Any, field: str) -> bytes:
    if field == "timestamp":
        return b"%s:%d" % (
            TIMESTAMP_TYPES.get(record.timestamp_type, "NoTimestampType").encode(),
            record.timestamp,
        )
    if field == "partition":
        return b"Partition:%d" % record.partition
    if field == "offset":
        return b"Offset:%d" % record.offset
    if field == "headers":
        if not record.headers:
            return b"NO_HEADERS"
        return b",".join(
            name.encode("utf-8", "surrogatepass") + b":" + (b"null" if value is None else value)
            for name, value in record.headers
        )
    return b"null" if record.key is None else record.key


def encode_text_lines(records: Sequence[Any], fields: Sequence[str] = (), separator: bytes = b"\t") -> bytes:
    """Records as text lines: the chosen ``TEXT_FIELDS`` (in Kafka's order) and the value, joined
    by ``separator``, made printable (UTF-8 with replacement); a null value prints ``null``."""
    ordered = [f for f in TEXT_FIELDS if f in fields]
    if not ordered:
        data = b"\n".join([b"null" if r.value is None else r.value for r in records])
    else:
        data = b"\n".join(
            [
                separator.join(
                    [*(_text_field(r, f) for f in ordered), b"null" if r.value is None else r.value]
                )
                for r in records
            ]
        )
    return printable(data + b"\n") if records else b""


def encode_text_columns(columns: Any, count: int) -> bytes:
    """The first ``count`` values of ``pylog.Columns`` as text lines, without an object per record
    (numpy inserts the newlines). why decoding the whole buffer at once is the same as per
    value: ``\n`` is never part of a UTF-8 sequence, so the decoder's replacement of an invalid
    sequence stops at it."""
    import numpy as np

    if count == 0:
        return b""
    if columns.value_null[:count].any():  # rare: print null as Kafka does, record by record
        values = [columns.value(i) for i in range(count)]
        return printable(b"\n".join([b"null" if v is None else v for v in values]) + b"\n")
    bounds = columns.value_offsets[: count + 1]
    base = int(bounds[0])
    data = np.insert(columns.values[base : int(bounds[-1])], bounds[1:] - base, 10)
    return printable(data.tobytes())


DECODERS = {"json": decode_json_line, "hex": decode_hex_line}
