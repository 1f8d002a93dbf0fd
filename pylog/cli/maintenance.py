"""``pylog compact [PATH] [TOPIC]`` and ``pylog delete-records TOPIC``: the log cleaner on request
(``Log.compact``; Kafka has no tool for it, its cleaner runs only in the background) and
kafka-delete-records.sh (``Log.delete_records``).

``compact``'s PATH is the log directory (default ``--dir``). With one positional it is PATH when it
names a log directory (a ``catalog.db`` inside) or no ``--dir`` is given, else TOPIC of ``--dir``;
with none, every topic whose ``cleanup.policy`` has ``compact`` is compacted. A progress bar on
stderr (a terminal only) counts the partitions as each partition's compaction finishes.

``delete-records --before OFFSET`` leaves a partition that already starts at or past OFFSET as it
is; ``--offset P=O`` below P's start is an error, as ``Log.delete_records`` has it.

``--json`` documents:
- ``compact``: ``{"partitions": [{"topic", "partition", "passes", "segments_cleaned", "bytes_read",
  "bytes_written", "records_read", "records_kept", "tombstones_removed", "clean_offset",
  "skipped"}]}`` (``pylog.partition.CleanResult``'s fields)
- ``delete-records``: ``{"partitions": [{"topic", "partition", "start_offset"}]}`` (the new log
  start offsets, Kafka's low watermarks)
"""

from __future__ import annotations

import argparse

import pylog
from pylog.cli.common import (
    NO_CLEANER,
    CliError,
    add_dir_argument,
    emit_json,
    emit_table,
    is_log_directory,
    open_log,
    progress,
    require_topic,
)

COMPACT_COLUMNS = (
    "TOPIC",
    "PARTITION",
    "PASSES",
    "SEGMENTS",
    "BYTES-READ",
    "BYTES-WRITTEN",
    "RECORDS-READ",
    "RECORDS-KEPT",
    "TOMBSTONES-REMOVED",
    "CLEAN-OFFSET",
    "SKIPPED",
)


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``pylog compact`` and ``pylog delete-records``."""
    compact = subcommands.add_parser(
        "compact", help="compact topics now, whatever their dirty ratio", description=__doc__
    )
    add_dir_argument(compact)
    compact.add_argument("places", nargs="*", metavar="[PATH] [TOPIC]", help="log directory and/or topic")
    compact.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    compact.set_defaults(handler=compact_topics)

    delete = subcommands.add_parser(
        "delete-records",
        help="move partitions' log start up, deleting the records below (kafka-delete-records)",
    )
    add_dir_argument(delete)
    delete.add_argument("topic")
    where = delete.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--offset",
        action="append",
        metavar="PARTITION=OFFSET",
        help="delete partition PARTITION's records before OFFSET (-1: all of them; repeatable)",
    )
    where.add_argument("--before", type=int, metavar="OFFSET", help="the same OFFSET for every partition")
    delete.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    delete.set_defaults(handler=delete_records)


def compact_places(args: argparse.Namespace) -> str | None:
    """Apply the PATH/TOPIC positionals to ``args.dir``; returns the topic (None: all)."""
    places = list(args.places)
    if len(places) > 2:
        raise CliError(f"takes at most PATH and TOPIC, got {len(places)} arguments")
    if len(places) == 2 or (len(places) == 1 and (is_log_directory(places[0]) or not args.dir)):
        args.dir = places.pop(0)
    return places[0] if places else None


def compact_topics(args: argparse.Namespace) -> int:
    topic = compact_places(args)
    with open_log(args, config=NO_CLEANER) as log:
        if topic is not None:
            require_topic(log, topic)
            topics = [topic]
        else:
            topics = [name for name in log.list_topics() if "compact" in cleanup_policy(log, name)]
        counts = {name: len(log.describe_topic(name).partitions) for name in topics}
        results = {}
        with progress("compacting", sum(counts.values()), "partitions") as advance:
            for name in topics:
                for partition in range(counts[name]):
                    results.update(log.compact(name, partitions=[partition]))
                    advance(1)
    rows = [
        {"topic": tp.topic, "partition": tp.partition, **result._asdict()}
        for tp, result in sorted(results.items())
    ]
    if args.json:
        emit_json({"partitions": rows})
    else:
        emit_table(
            COMPACT_COLUMNS,
            [
                (
                    r["topic"],
                    r["partition"],
                    r["passes"],
                    r["segments_cleaned"],
                    r["bytes_read"],
                    r["bytes_written"],
                    r["records_read"],
                    r["records_kept"],
                    r["tombstones_removed"],
                    r["clean_offset"],
                    r["skipped"],
                )
                for r in rows
            ],
            title=None if rows else "no topic with cleanup.policy compact",
        )
    return 0


def cleanup_policy(log: pylog.Log, topic: str) -> str:
    """The effective ``cleanup.policy`` of ``topic`` (its override, else the default)."""
    return pylog.LogConfig.from_mapping(log.describe_topic(topic).config).cleanup_policy


def parse_partition_offsets(pairs: list[str]) -> dict[int, int]:
    """``["P=O", ...]`` -> ``{P: O}``; a ``CliError`` for anything else."""
    offsets: dict[int, int] = {}
    for pair in pairs:
        partition, sep, offset = pair.partition("=")
        try:
            if not sep:
                raise ValueError
            key, value = int(partition), int(offset)
        except ValueError:
            raise CliError(f"--offset must be PARTITION=OFFSET (integers), not {pair!r}") from None
        if key in offsets:
            raise CliError(f"--offset names partition {key} twice")
        offsets[key] = value
    return offsets


def delete_records(args: argparse.Namespace) -> int:
    with open_log(args, config=NO_CLEANER) as log:
        require_topic(log, args.topic)
        if args.offset is not None:
            offsets = parse_partition_offsets(args.offset)
        else:
            # why the max: a partition already starting at or past OFFSET is left as it is (Kafka
            # answers success there; Log.delete_records refuses an offset below the start)
            offsets = {
                p.partition: args.before if args.before == -1 else max(args.before, p.start_offset)
                for p in log.describe_topic(args.topic).partitions
            }
        starts = log.delete_records(args.topic, offsets)
    rows = [(tp.topic, tp.partition, start) for tp, start in sorted(starts.items())]
    if args.json:
        emit_json({"partitions": [{"topic": t, "partition": p, "start_offset": s} for t, p, s in rows]})
    else:
        emit_table(("TOPIC", "PARTITION", "LOG-START"), rows)
    return 0
