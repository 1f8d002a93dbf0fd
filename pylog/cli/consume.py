"""``pylog consume TOPIC``: print a topic's records, one per line, as Kafka's
kafka-console-consumer (tools/src/main/java/org/apache/kafka/tools/consumer/ConsoleConsumer.java).

Where it starts: ``--from-beginning`` (the log start, or with ``--group`` the group's committed
offsets where it has them), ``--offset N|earliest|latest`` (on each selected partition, clamped to
[log start, log end]), ``--timestamp ISO|ms`` (the first record at or after that time,
``offsets_for_times``; the log end where there is none), else the log end (Kafka's default:
only new records), or with ``--group`` the group's committed offsets.

Modes: ``--group`` alone subscribes as a member of the group (partitions shared with its other
members); with ``--partition``, ``--offset`` or ``--timestamp`` the partitions are assigned
(``Consumer.assign``) and the group is only where the offsets are committed (refused while the
group has live members, as Kafka's coordinator does). Either way auto-commit is off: the offset
after each printed record is committed once its line has been written to stdout, so a second run
with the same group prints nothing twice (and nothing is marked consumed that a closed pipe
lost).

Where it ends: without ``--follow``, at the end of the log as it was when the command started
(records appended meanwhile are not printed); with ``--follow``, never by itself: Ctrl-C
(SIGINT) stops it after the current poll, with the output flushed and the group's offsets
committed (exit 130, one line on stderr). ``--max-records N`` ends it after N records. A closed
stdout ends it quietly (exit 0; nothing more is committed).

Speed: plain ``--format text`` reads ``Consumer.poll_columns`` (numpy columns, no object per
record) and inserts the newlines with numpy; the other formats read ``Consumer.poll`` in large
polls. Each poll's output goes to stdout in one write.
"""

from __future__ import annotations

import argparse
import signal
import sys
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from pylog.cli import record_format
from pylog.cli.common import CliError, add_dir_argument, open_log, parse_timestamp, require_topic
from pylog.types import OffsetAndMetadata, TopicPartition

#: the most records one poll returns (why this many: the per-poll cost vanishes; a poll's output
#: is one buffer of a few MiB at most)
POLL_RECORDS = 20_000

#: how long one poll waits for records in --follow (and so at most how long Ctrl-C takes to act)
FOLLOW_POLL_MS = 200

#: bytes one partition contributes to one fetch (kafka-python's default is 1 MiB; more per poll
#: means fewer engine calls for a reader that keeps up with nothing else)
FETCH_BYTES = 8 << 20


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``pylog consume`` to ``pylog``."""
    parser = subcommands.add_parser(
        "consume",
        help="print the records of a topic, one per line",
        description="Print TOPIC's records, one per line (like kafka-console-consumer). Without "
        "--follow it ends at the end of the log as it was when it started.",
    )
    parser.add_argument("topic", metavar="TOPIC")
    add_dir_argument(parser)
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the log start (with --group: where the group has no committed offset)",
    )
    start.add_argument(
        "--offset", metavar="N", help="start at offset N (or earliest, latest) on each selected partition"
    )
    start.add_argument(
        "--timestamp", metavar="TIME", help="start at the first record at or after TIME (ISO 8601 or ms)"
    )
    parser.add_argument(
        "--partition", type=int, action="append", metavar="N", help="read partition N only (repeatable)"
    )
    parser.add_argument("--group", metavar="GROUP", help="consume as GROUP and commit what was printed")
    parser.add_argument("--max-records", type=int, metavar="N", help="stop after N records")
    parser.add_argument(
        "--follow", "-f", action="store_true", help="keep waiting for new records (until Ctrl-C)"
    )
    parser.add_argument(
        "--format",
        choices=record_format.FORMATS,
        default="text",
        help="how a record is printed (default: text)",
    )
    for field in record_format.TEXT_FIELDS:
        parser.add_argument(
            f"--print-{field}", action="store_true", help=f"text format: print the {field} before the value"
        )
    parser.add_argument(
        "--key-separator",
        default="\t",
        metavar="SEP",
        help="text format: what separates the printed fields (default: a tab)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.max_records is not None and args.max_records < 1:
        raise CliError(f"--max-records must be >= 1, not {args.max_records}")
    start_offset = _parse_offset(args.offset) if args.offset is not None else None
    start_time = parse_timestamp(args.timestamp) if args.timestamp is not None else None
    if start_time is not None and start_time < 0:
        raise CliError(f"--timestamp must not be before 1970, not {args.timestamp!r}")
    fields = [f for f in record_format.TEXT_FIELDS if getattr(args, f"print_{f}")]
    if fields and args.format != "text":
        raise CliError("the --print-* options apply to --format text only")
    with open_log(args) as log:
        require_topic(log, args.topic)
        consumer = log.consumer(
            group_id=args.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if args.from_beginning else "latest",
            max_partition_fetch_bytes=FETCH_BYTES,
        )
        count = len(consumer.partitions_for_topic(args.topic) or ())
        every = [TopicPartition(args.topic, p) for p in range(count)]
        for p in args.partition or ():
            if not 0 <= p < count:
                raise CliError(f"topic {args.topic!r} has {count} partition(s); there is no partition {p}")
        # why before assigning: "the end of the log as it was when consume started"
        ends = consumer.end_offsets(every)
        if args.group is not None and args.partition is None and start_offset is None and start_time is None:
            consumer.subscribe([args.topic])
        else:
            chosen = sorted({TopicPartition(args.topic, p) for p in args.partition or range(count)})
            consumer.assign(chosen)
            _position(consumer, chosen, start_offset, start_time, ends)
        reader = _Reader(consumer, args, fields, ends)
        with _StopOnSigint() as stop:
            reader.run(stop)
        if stop.requested:
            raise KeyboardInterrupt  # after the output was flushed and committed: main says so, exit 130
    return 0


def _parse_offset(text: str) -> int | str:
    if text in ("earliest", "latest"):
        return text
    if not text.isdigit():
        raise CliError(f"--offset must be an offset >= 0, earliest or latest, not {text!r}")
    return int(text)


def _position(
    consumer: Any,
    tps: list[TopicPartition],
    offset: int | str | None,
    timestamp: int | None,
    ends: dict[TopicPartition, int],
) -> None:
    """Seek the assigned ``tps`` as ``--offset``/``--timestamp`` ask (neither: leave them to the
    group's committed offsets and ``auto_offset_reset``)."""
    if offset == "earliest":
        consumer.seek_to_beginning(*tps)
    elif offset == "latest":
        consumer.seek_to_end(*tps)
    elif isinstance(offset, int):
        starts = consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, min(max(offset, starts[tp]), ends[tp]))
    elif timestamp is not None:
        found = consumer.offsets_for_times(dict.fromkeys(tps, timestamp))
        for tp in tps:
            hit = found.get(tp)
            consumer.seek(tp, hit.offset if hit is not None else ends[tp])


class _StopOnSigint:
    """While active, the first SIGINT only asks the loop to stop (it does, after its current
    poll, flushing and committing); a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopOnSigint:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)


class _Reader:
    """The poll -> print -> commit loop."""

    def __init__(
        self, consumer: Any, args: argparse.Namespace, fields: list[str], ends: dict[TopicPartition, int]
    ):
        self.consumer = consumer
        self.follow = args.follow
        self.group = args.group
        self.remaining: int | None = args.max_records
        self.ends = ends
        self.out = sys.stdout.buffer
        self.columns = args.format == "text" and not fields
        separator = args.key_separator.encode("utf-8", "surrogateescape")
        self.encode: Callable[[list], bytes]
        if args.format == "json":
            self.encode = record_format.encode_json_lines
        elif args.format == "hex":
            self.encode = record_format.encode_hex_lines
        else:
            self.encode = lambda records: record_format.encode_text_lines(records, fields, separator)

    def run(self, stop: _StopOnSigint) -> None:
        consumer = self.consumer
        while not stop.requested and not self._at_end():
            wanted = POLL_RECORDS if self.remaining is None else min(POLL_RECORDS, self.remaining)
            timeout = FOLLOW_POLL_MS if self.follow else 100
            if self.columns:
                polled = consumer.poll_columns(timeout_ms=timeout, max_records=wanted)
            else:
                polled = consumer.poll(timeout_ms=timeout, max_records=wanted)
            pieces = []
            printed: dict[TopicPartition, OffsetAndMetadata] = {}
            for tp, got in polled.items():
                piece, last = self._encode(tp, got)
                if last is not None:
                    pieces.append(piece)
                    printed[tp] = OffsetAndMetadata(last + 1, "", -1)
            if pieces:
                self.out.write(b"".join(pieces))
                self.out.flush()
                if self.group is not None:
                    # why after the flush: only what reached the reader counts as consumed
                    consumer.commit(printed)

    def _encode(self, tp: TopicPartition, got: Any) -> tuple[bytes, int | None]:
        """The lines of one partition's poll and the last offset printed (None: nothing), keeping
        to the end of the log at the start (without --follow) and to --max-records."""
        limit = None if self.follow else self.ends.get(tp)
        if self.columns:
            offsets = got.offsets
            n = len(offsets)
            if limit is not None:
                n = int(offsets.searchsorted(limit))
            if self.remaining is not None:
                n = min(n, self.remaining)
            if n == 0:
                return b"", None
            self._count(n)
            return record_format.encode_text_columns(got, n), int(offsets[n - 1])
        records = got
        if limit is not None and records and records[-1].offset >= limit:
            records = records[: bisect_left([r.offset for r in records], limit)]
        if self.remaining is not None:
            records = records[: self.remaining]
        if not records:
            return b"", None
        self._count(len(records))
        return self.encode(records), records[-1].offset

    def _count(self, n: int) -> None:
        if self.remaining is not None:
            self.remaining -= n

    def _at_end(self) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return True
        if self.follow:
            return False
        assignment = self.consumer.assignment()
        if not assignment:
            # a group member before its first assignment (or with none: every partition is
            # another member's): done once the join has had its poll
            return self._polled_once()
        return all(self.consumer.position(tp) >= self.ends.get(tp, 0) for tp in assignment)

    _joined = False

    def _polled_once(self) -> bool:
        done, self._joined = self._joined, True
        return done
