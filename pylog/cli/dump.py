"""``pylog dump PATH...``: the contents of segment files, in the spirit of Kafka's
kafka-dump-log (tools/src/main/java/org/apache/kafka/tools/DumpLogSegments.java).

- a ``.log``: per batch its position, size, baseOffset, lastOffset, count, codec, CRC (stored, and
  whether it matches), magic, timestamps and their type, producerId/epoch/baseSequence/lastSequence,
  isTransactional/isControl, the delete horizon and partitionLeaderEpoch; bytes after the last
  batch that frames are reported (Kafka's "Found N invalid bytes at the end"). ``--deep-iteration``
  adds each record (offset, timestamp, key and value sizes, sequence, header keys; a control
  record's marker type), ``--print-data-log`` its key, value and header values;
- a ``.index`` / ``.timeindex``: the entries, each checked against the ``.log`` beside it as
  DumpLogSegments does (an offset entry must point at a batch whose lastOffset is its offset; a
  time entry's offset must be a batch's lastOffset with that timestamp as maxTimestamp);
  ``--verify-index-only`` prints only the mismatches; ``--index-sanity-check`` runs only the check
  a broker runs at startup (and both engines run on open) and says whether it passed.

A directory stands for its segment files. Exit 0 when nothing is wrong, 1 when a batch is invalid
or an index does not match, 2 when a PATH cannot be read. ``--json`` prints one document::

    {"files": [{"path", "type": "log"|"index"|"timeindex", "base_offset", "size",
                "batches": [{position, size, base_offset, last_offset, count, magic, codec, crc,
                             crc_valid, attributes, timestamp_type, base_timestamp, max_timestamp,
                             producer_id, producer_epoch, base_sequence, last_sequence,
                             is_transactional, is_control, delete_horizon_ms,
                             partition_leader_epoch, "records"?: [...]}],     (a .log)
                "trailing_bytes",                                             (a .log)
                "entries": [{"offset", "position"} | {"timestamp", "offset"}], (an index)
                "sanity_check": null | "why it failed",                       (--index-sanity-check)
                "problems": [{"kind", "path", "position", "message", "offset", "severity"}]}]}

A record is ``{"offset", "timestamp", "key_size", "value_size", "sequence", "header_keys",
"control"?: {"type", "version", "coordinator_epoch"?}}`` plus, with ``--print-data-log``,
``"key"``, ``"value"`` and ``"headers": [[name, value]]``, each value a JSON string when its
bytes are UTF-8, ``{"base64": "..."}`` otherwise, null for null (the mark ``pylog consume
--format json`` uses).
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from typing import Any

from pylog.cli.common import CliError, add_path_arguments, emit_json, resolve_paths
from pylog.cli.record_format import encode_json_bytes
from pylog.errors import CorruptBatchError
from pylog.inspect import (
    BatchInfo,
    LogScan,
    Problem,
    batch_records,
    check_offset_index,
    check_time_index,
    read_offset_index,
    read_time_index,
    sanity_check,
    scan_log,
    sequence_at,
)
from pylog.partition import Record
from pylog.reference.recovery import list_segment_bases
from pylog.reference.segment import segment_paths
from pylog.reference.segments import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, parse_base

#: ControlRecordType ids (clients/src/main/java/org/apache/kafka/common/record/ControlRecordType.java)
CONTROL_TYPES = {
    0: "ABORT",
    1: "COMMIT",
    2: "LEADER_CHANGE",
    3: "SNAPSHOT_HEADER",
    4: "SNAPSHOT_FOOTER",
    5: "KRAFT_VERSION",
    6: "KRAFT_VOTERS",
}


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``pylog dump`` to ``pylog``."""
    parser = subcommands.add_parser(
        "dump",
        help="print batch headers, records and index entries of segment files (like kafka-dump-log)",
        description="Print the batches of .log files (and with --deep-iteration their records) and "
        "the entries of .index/.timeindex files, checked against the .log.",
    )
    add_path_arguments(
        parser, many=True, help="segment files (.log, .index, .timeindex) or a partition directory"
    )
    parser.add_argument("--deep-iteration", action="store_true", help="list every record of every batch")
    parser.add_argument(
        "--print-data-log",
        action="store_true",
        help="print keys, values and headers (implies --deep-iteration)",
    )
    parser.add_argument(
        "--verify-index-only",
        action="store_true",
        help="check index entries against the .log, print only mismatches",
    )
    parser.add_argument(
        "--index-sanity-check", action="store_true", help="run only the startup sanity check of index files"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.set_defaults(handler=run)


def _expand(paths: list[str]) -> list[str]:
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            for base in list_segment_bases(path):
                files.extend(p for p in segment_paths(path, base) if os.path.exists(p))
        elif os.path.isfile(path):
            name = os.path.basename(path)
            if parse_base(name) is None or not name.endswith((LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX)):
                raise CliError(f"{path} is not a segment file ({{base:020}}.log, .index or .timeindex)")
            files.append(path)
        else:
            raise CliError(f"no such file or directory: {path}")
    return files


def run(args: argparse.Namespace) -> int:
    deep = args.deep_iteration or args.print_data_log
    documents = []
    scans: dict[str, LogScan] = {}  # one walk per .log, shared by its indexes
    for path in _expand(resolve_paths(args)):
        try:
            if path.endswith(LOG_SUFFIX):
                documents.append(_dump_log(path, deep, args.print_data_log, scans))
            else:
                documents.append(_dump_index(path, args, scans))
        except OSError as error:
            raise CliError(f"cannot read {path}: {error.strerror or error}") from None
    if args.json:
        emit_json({"files": documents})
    else:
        _print(documents)
    return 1 if any(doc["problems"] for doc in documents) else 0


def _scan(log_path: str, scans: dict[str, LogScan]) -> LogScan:
    if log_path not in scans:
        scans[log_path] = scan_log(log_path, decode=False)
    return scans[log_path]


def _dump_log(path: str, deep: bool, data: bool, scans: dict[str, LogScan]) -> dict[str, Any]:
    scan = _scan(path, scans)
    problems = list(scan.problems)
    batches = []
    for batch in scan.batches:
        entry = batch.to_json()
        if deep:
            try:
                entry["records"] = [_record(batch, r, data) for r in batch_records(path, batch)]
            except CorruptBatchError as error:
                kind = str(error.kind) if error.kind is not None else "record"
                if not any(p.position == batch.position for p in problems):
                    problems.append(
                        Problem(kind, path, batch.position, str(error.args[0]), batch.header.base_offset)
                    )
                entry["records"] = None
        batches.append(entry)
    return {
        "path": path,
        "type": "log",
        "base_offset": scan.base,
        "size": scan.file_size,
        "batches": batches,
        "trailing_bytes": scan.file_size - scan.framed_bytes,
        "problems": [p.to_json() for p in problems],
    }


def _record(batch: BatchInfo, record: Record, data: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key_size": -1 if record.key is None else len(record.key),
        "value_size": -1 if record.value is None else len(record.value),
        "sequence": sequence_at(batch.header.base_sequence, record.offset - batch.header.base_offset),
        "header_keys": [name for name, _value in record.headers],
    }
    if batch.header.is_control:
        entry["control"] = _control(record)
    if data:
        entry["key"] = encode_json_bytes(record.key)
        entry["value"] = encode_json_bytes(record.value)
        entry["headers"] = [[name, encode_json_bytes(value)] for name, value in record.headers]
    return entry


def _control(record: Record) -> dict[str, Any]:
    """A control record's key (version, type) and, for a commit/abort marker, its value's
    coordinator epoch (EndTransactionMarker.java)."""
    key = record.key or b""
    if len(key) < 4:
        return {"type": None, "version": None}
    version, type_id = struct.unpack_from(">hh", key)
    found: dict[str, Any] = {"type": CONTROL_TYPES.get(type_id, f"UNKNOWN({type_id})"), "version": version}
    if type_id in (0, 1) and record.value is not None and len(record.value) >= 6:
        found["coordinator_epoch"] = struct.unpack_from(">hi", record.value)[1]
    return found


def _dump_index(path: str, args: argparse.Namespace, scans: dict[str, LogScan]) -> dict[str, Any]:
    time_kind = path.endswith(TIME_INDEX_SUFFIX)
    base = parse_base(os.path.basename(path))
    assert base is not None
    log_path = segment_paths(os.path.dirname(path) or ".", base)[0]
    document: dict[str, Any] = {
        "path": path,
        "type": "timeindex" if time_kind else "index",
        "base_offset": base,
    }
    document["size"] = os.path.getsize(path)
    if not os.path.exists(log_path):
        raise CliError(f"{path}: its log {log_path} is missing (index entries are checked against it)")
    if args.index_sanity_check:
        next_base = _next_base(os.path.dirname(path) or ".", base)
        why = sanity_check(path, os.path.getsize(log_path), next_base)
        document["sanity_check"] = why
        document["problems"] = [] if why is None else [Problem("index_sanity", path, None, why).to_json()]
        return document
    scan = _scan(log_path, scans)
    if time_kind:
        entries = read_time_index(path)
        problems = check_time_index(entries, scan)
        rows = [{"timestamp": ts, "offset": offset} for ts, offset in entries.entries]
    else:
        entries = read_offset_index(path)
        problems = check_offset_index(entries, scan)
        rows = [{"offset": offset, "position": position} for offset, position in entries.entries]
    if not args.verify_index_only:
        document["entries"] = rows
    document["problems"] = [p.to_json() for p in problems]
    return document


def _next_base(dir_path: str, base: int) -> int | None:
    """The base of the segment after ``base`` (its offsets end there), None for the last one."""
    return next((b for b in list_segment_bases(dir_path) if b > base), None)


# ---------------------------------------------------------------------------------------------
# text output: kafka-dump-log's lines (what its users read and grep), our additions at the end


def _shown(value: Any) -> str:
    if isinstance(value, dict) and "base64" in value:
        return "base64:" + value["base64"]
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def batch_line(batch: dict[str, Any]) -> str:
    """One batch as DumpLogSegments prints it (printBatchLevel), then baseTimestamp and
    attributes, which it does not print."""
    horizon = batch["delete_horizon_ms"]
    fields = [
        ("baseOffset", batch["base_offset"]),
        ("lastOffset", batch["last_offset"]),
        ("count", batch["count"]),
        ("baseSequence", batch["base_sequence"]),
        ("lastSequence", batch["last_sequence"]),
        ("producerId", batch["producer_id"]),
        ("producerEpoch", batch["producer_epoch"]),
        ("partitionLeaderEpoch", batch["partition_leader_epoch"]),
        ("isTransactional", batch["is_transactional"]),
        ("isControl", batch["is_control"]),
        ("deleteHorizonMs", "OptionalLong.empty" if horizon is None else f"OptionalLong[{horizon}]"),
        ("position", batch["position"]),
        (batch["timestamp_type"], batch["max_timestamp"]),
        ("size", batch["size"]),
        ("magic", batch["magic"]),
        ("compresscodec", batch["codec"]),
        ("crc", batch["crc"]),
        ("isvalid", batch["crc_valid"]),
        ("baseTimestamp", batch["base_timestamp"]),
        ("attributes", batch["attributes"]),
    ]
    return " ".join(f"{name}: {_shown(value)}" for name, value in fields)


def record_line(batch: dict[str, Any], record: dict[str, Any]) -> str:
    """One record as DumpLogSegments prints it (printRecordMetadata, printRecordContents)."""
    line = (
        f"| offset: {record['offset']} {batch['timestamp_type']}: {record['timestamp']} "
        f"keySize: {record['key_size']} valueSize: {record['value_size']} sequence: {record['sequence']} "
        f"headerKeys: [{','.join(record['header_keys'])}]"
    )
    control = record.get("control")
    if control is not None:
        line += f" controlType: {control['type']}"
        if "coordinator_epoch" in control:
            line += f" coordinatorEpoch: {control['coordinator_epoch']}"
    elif "value" in record:
        if record["key"] is not None:
            line += f" key: {_shown(record['key'])}"
        if record["value"] is not None:
            line += f" payload: {_shown(record['value'])}"
        if record["headers"]:
            line += " headers: " + ",".join(f"{k}={_shown(v)}" for k, v in record["headers"])
    return line


def _print(documents: list[dict[str, Any]]) -> None:
    out = sys.stdout
    for doc in documents:
        out.write(f"Dumping {doc['path']}\n")
        if doc["type"] == "log":
            out.write(f"Log starting offset: {doc['base_offset']}\n")
            for batch in doc["batches"]:
                out.write(batch_line(batch) + "\n")
                for record in batch.get("records") or ():
                    out.write(record_line(batch, record) + "\n")
            if doc["trailing_bytes"]:
                out.write(
                    f"Found {doc['trailing_bytes']} invalid bytes at the end of {os.path.basename(doc['path'])}\n"
                )
        elif "sanity_check" in doc:
            name = doc["path"]
            verdict = (
                "passed sanity check."
                if doc["sanity_check"] is None
                else f"failed sanity check: {doc['sanity_check']}"
            )
            out.write(f"{name} {verdict}\n")
        elif "entries" in doc:
            if not doc["entries"]:
                out.write(f"{doc['path']} is empty.\n")
            for entry in doc["entries"]:
                if doc["type"] == "timeindex":
                    out.write(f"timestamp: {entry['timestamp']} offset: {entry['offset']}\n")
                else:
                    out.write(f"offset: {entry['offset']} position: {entry['position']}\n")
        for problem in doc["problems"]:
            where = "" if problem["position"] is None else f" at byte {problem['position']}"
            out.write(f"{problem['kind']}: {problem['path']}{where}: {problem['message']}\n")
