"""``pylog produce TOPIC``: one record per line of stdin (or ``--file``), as Kafka's
kafka-console-producer (tools/src/main/java/org/apache/kafka/tools/ConsoleProducer.java).

Input is read as bytes, in chunks of whole lines (a final line without ``\\n`` counts; a ``\\r``
before the ``\\n`` is kept as data), and each line is decoded by ``record_format`` (``--format
text|json|hex``). Speed: text lines go to the engine a chunk at a time through
``Producer.send_batch`` (one engine batch per chunk and partition, no Python object per record
beyond the line); json and hex lines are decoded, then sent the same way, one ``send_batch`` per
run of lines bound for the same partition. Nothing is flushed per line: the producer is flushed
once at the end, and the futures are checked as they complete, so a failed batch ends the
command early. A Ctrl-C closes the log, which writes the lines already read (exit 130).

Bad input (a line that does not decode, a text line without the key separator, a record over
``MAX_RECORD_BYTES``, a partition the topic does not have): exit 2 naming the line; the records
of the lines before it are written (flushed), none after it.

The topic must exist (exit 2 otherwise), as with Kafka's ``auto.create.topics.enable=false``;
``--create`` creates it with one partition.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time
from collections.abc import Iterator
from typing import IO, Any

from pylog.cli import record_format
from pylog.cli.common import CliError, add_dir_argument, open_log, progress, require_topic
from pylog.producer import COMPRESSION_TYPES, ProducerConfig

#: the most bytes read from the input at once: a chunk's lines become one send_batch (why 1 MiB:
#: large enough that the per-call cost vanishes, small enough to stay under a topic's default
#: max.message.bytes, so the producer does not have to split the batch)
CHUNK_BYTES = 1 << 20

#: a record larger than this is refused before sending (the producer's max_request_size default,
#: as Kafka's producer refuses a record over max.request.size)
MAX_RECORD_BYTES = ProducerConfig.max_request_size


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``pylog produce`` to ``pylog``."""
    parser = subcommands.add_parser(
        "produce",
        help="write one record per line of stdin (or a file) to a topic",
        description="Write one record per input line to TOPIC (like kafka-console-producer). "
        "--format text: the line is the value (or KEY SEP VALUE with --key-separator); "
        "json and hex: the lines `pylog consume --format json|hex` prints, binary-safe.",
    )
    parser.add_argument("topic", metavar="TOPIC")
    add_dir_argument(parser)
    parser.add_argument(
        "--file", metavar="PATH", help="read this file instead of stdin (with a progress bar on a terminal)"
    )
    parser.add_argument(
        "--format",
        choices=record_format.FORMATS,
        default="text",
        help="how a line encodes a record (default: text)",
    )
    parser.add_argument(
        "--key-separator",
        metavar="SEP",
        help="text format: split each line at the first SEP into key and value",
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="add this header to every record (repeatable; order and repeats are kept)",
    )
    parser.add_argument(
        "--partition",
        type=int,
        metavar="N",
        help="write every record to partition N (default: by key, else sticky)",
    )
    parser.add_argument(
        "--compression",
        choices=("none", *COMPRESSION_TYPES),
        default="none",
        help="batch compression (default: none)",
    )
    parser.add_argument(
        "--acks",
        choices=("0", "1", "all"),
        default="all",
        help="all (default): done once fsynced; 0/1: once written to the OS (faster, survives the process, not a power loss)",
    )
    parser.add_argument(
        "--create", action="store_true", help="create TOPIC (one partition) if it does not exist"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no summary line on stderr")
    parser.set_defaults(handler=run)


class _Counts:
    def __init__(self) -> None:
        self.records = 0
        self.bytes = 0


def run(args: argparse.Namespace) -> int:
    headers = parse_headers(args.header)
    if args.key_separator is not None and args.format != "text":
        raise CliError("--key-separator applies to --format text only")
    if args.key_separator == "":
        raise CliError("--key-separator must not be empty")
    if args.partition is not None and args.partition < 0:
        raise CliError(f"--partition must be >= 0, not {args.partition}")
    started = time.perf_counter()
    counts = _Counts()
    with open_log(args) as log:
        if args.create and args.topic not in log.list_topics():
            log.create_topic(args.topic)
        require_topic(log, args.topic)
        source, total = _open_source(args.file)
        acks: Any = "all" if args.acks == "all" else int(args.acks)
        producer = log.producer(
            acks=acks, compression_type=None if args.compression == "none" else args.compression
        )
        partitions = len(producer.partitions_for(args.topic))
        if args.partition is not None and args.partition >= partitions:
            raise CliError(
                f"topic {args.topic!r} has {partitions} partition(s); there is no partition {args.partition}"
            )
        writer = _Writer(producer, args.topic, args.partition, partitions, headers, counts)
        try:
            with source, progress(f"producing to {args.topic}", total, "bytes") as advance:
                for first_line, lines in read_line_chunks(source, advance):
                    if args.format == "text":
                        writer.text(first_line, lines, args.key_separator)
                    else:
                        writer.decoded(first_line, lines, record_format.DECODERS[args.format])
        except _BadLine as bad:
            writer.finish()
            raise CliError(
                f"{bad} ({counts.records} records before it were written; none after it)"
            ) from None
        writer.finish()
    if not args.quiet:
        seconds = time.perf_counter() - started
        rate = f", {counts.records / seconds:,.0f} records/s" if seconds > 0 else ""
        print(
            f"pylog produce: {counts.records} records ({counts.bytes} bytes) to {args.topic} in {seconds:.2f} s{rate}",
            file=sys.stderr,
        )
    return 0


def _open_source(path: str | None) -> tuple[IO[bytes], int | None]:
    """The input (``--file`` or stdin) and its size when known (a regular file: the progress
    bar's total)."""
    if path is None:
        return sys.stdin.buffer, None
    try:
        source = open(path, "rb")  # noqa: SIM115 (the caller's with-block closes it)
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror}") from None
    status = os.fstat(source.fileno())
    return source, status.st_size if stat.S_ISREG(status.st_mode) else None


def parse_headers(pairs: list[str]) -> list[tuple[str, bytes]]:
    """``--header NAME=VALUE`` values as record headers, in order, repeats kept (Kafka allows a
    name twice). why not ``common.parse_assignments``: it builds a dict."""
    headers = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"--header must be NAME=VALUE, not {pair!r}")
        headers.append((name, value.encode("utf-8", "surrogateescape")))
    return headers


def read_line_chunks(source: IO[bytes], advance: Any) -> Iterator[tuple[int, list[bytes]]]:
    """``(number of the first line, lines)`` for each chunk of whole lines of ``source``, lines
    without their ``\\n``; a last line without one counts. ``read1``: returns what a pipe holds
    now, so a slow pipeline's lines are sent as they come, not when a chunk is full."""
    read = getattr(source, "read1", source.read)
    pending: list[bytes] = []
    line_number = 1
    while True:
        data = read(CHUNK_BYTES)
        if not data:
            break
        advance(len(data))
        cut = data.rfind(b"\n")
        if cut < 0:
            pending.append(data)  # why a list: a long line arriving in pieces is joined once
            continue
        if pending:
            pending.append(data[:cut])
            lines = b"".join(pending).split(b"\n")
            pending = []
        else:
            lines = data[:cut].split(b"\n")
        if cut + 1 < len(data):
            pending.append(data[cut + 1 :])
        yield line_number, lines
        line_number += len(lines)
    if pending:
        yield line_number, [b"".join(pending)]


class _BadLine(Exception):
    pass


class _Writer:
    """Sends chunks of lines and watches the futures (a failed batch stops the command)."""

    def __init__(
        self,
        producer: Any,
        topic: str,
        partition: int | None,
        partitions: int,
        headers: list,
        counts: _Counts,
    ):
        self.producer = producer
        self.topic = topic
        self.partition = partition
        self.partitions = partitions
        self.headers = headers
        self.counts = counts
        self.pending: list[Any] = []

    def text(self, first_line: int, lines: list[bytes], separator: str | None) -> None:
        keys: list[bytes] | None = None
        values = lines
        good = len(lines)
        problem = None
        if separator is not None:
            sep = separator.encode("utf-8", "surrogateescape")
            parts = [line.partition(sep) for line in lines]
            for i, (_, found, _) in enumerate(parts):
                if not found:
                    good, problem = i, f"no key separator {separator!r} in the line"
                    break
            keys = [key for key, _, _ in parts[:good]]
            values = [value for _, _, value in parts[:good]]
        header_bytes = sum(len(n) + len(v) for n, v in self.headers)
        if sum(map(len, lines)) + header_bytes * len(lines) > MAX_RECORD_BYTES:  # only then look closer
            for i in range(good):
                size = len(values[i]) + (len(keys[i]) if keys is not None else 0) + header_bytes
                if size > MAX_RECORD_BYTES:
                    good, problem = (
                        i,
                        f"a record of {size} bytes is larger than the most a record may be ({MAX_RECORD_BYTES})",
                    )
                    break
            values = values[:good]
            keys = keys[:good] if keys is not None else None
        if good:
            self.pending.append(
                self.producer.send_batch(
                    self.topic,
                    values,
                    keys=keys,
                    partition=self.partition,
                    headers=[self.headers] * good if self.headers else None,
                )
            )
            self.counts.records += good
            self.counts.bytes += sum(map(len, values)) + (sum(map(len, keys)) if keys is not None else 0)
            self.check()
        if problem is not None:
            raise _BadLine(f"line {first_line + good}: {problem}")

    def decoded(self, first_line: int, lines: list[bytes], decode: Any) -> None:
        """json/hex lines: decoded, then sent as columns, one send_batch per run of records
        bound to the same partition (the record's own, ``--partition``, or None: by key, else
        sticky). A record without a timestamp gets the time it was read (Kafka's producer stamps
        the send time)."""
        topic, forced, partitions = self.topic, self.partition, self.partitions
        now = int(time.time() * 1000)
        run: list[record_format.OutgoingRecord] = []
        run_partition: int | None = None
        problem = None
        for number, line in enumerate(lines, first_line):
            if not line.strip():
                continue  # a blank line is no record (json/hex)
            try:
                record = decode(line)
            except record_format.RecordFormatError as error:
                problem = f"line {number}: {error}"
                break
            partition = forced if forced is not None else record.partition
            if partition is not None and partition >= partitions:
                problem = f"line {number}: topic {topic!r} has no partition {partition}"
                break
            if self.headers:
                record = record._replace(headers=(record.headers or []) + self.headers)
            size = (
                len(record.key or b"")
                + len(record.value or b"")
                + sum(len(n) + len(v or b"") for n, v in record.headers or ())
            )
            if size > MAX_RECORD_BYTES:
                problem = f"line {number}: a record of {size} bytes is larger than the most a record may be ({MAX_RECORD_BYTES})"
                break
            if run and partition != run_partition:
                self._send_run(run, run_partition, now)
                run = []
            run.append(record)
            run_partition = partition
            self.counts.bytes += size
        if run:
            self._send_run(run, run_partition, now)
        self.check()
        if problem is not None:
            raise _BadLine(problem)

    def _send_run(self, run: list[record_format.OutgoingRecord], partition: int | None, now: int) -> None:
        keys = [r.key for r in run]
        self.pending.append(
            self.producer.send_batch(
                self.topic,
                [r.value for r in run],
                keys=None if all(k is None for k in keys) else keys,
                partition=partition,
                headers=[r.headers or [] for r in run],
                timestamps_ms=[now if r.timestamp is None else r.timestamp for r in run],
            )
        )
        self.counts.records += len(run)

    def check(self) -> None:
        """Drop the completed futures; raise the error of a failed one."""
        still = []
        for future in self.pending:
            if future.is_done:
                if future.failed():
                    self._failed(future.exception)
            else:
                still.append(future)
        self.pending = still

    def finish(self) -> None:
        self.producer.flush()
        for future in self.pending:
            if future.failed():
                self._failed(future.exception)
        self.pending = []

    def _failed(self, error: BaseException) -> None:
        raise CliError(
            f"writing to {self.topic!r} failed: {type(error).__name__}: {error} (some records were not written)"
        )
