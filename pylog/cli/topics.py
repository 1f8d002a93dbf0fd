"""``pylog topics list|create|describe|delete|alter``: Kafka's kafka-topics.sh (and the topic part of
kafka-configs.sh) over ``pylog.Log``'s topic admin calls.

Config names are Kafka's topic-level ones (``--config segment.bytes=1048576``); they go to
``Log.create_topic`` / ``Log.alter_topic_config`` as strings, whose ``InvalidConfigError`` is the
one-line message. ``describe`` adds a partition's segment count to what ``Log.describe_topic``
tells: the ``NNNNNNNNNNNNNNNNNNNN.log`` files of its directory ``<dir>/<topic>-<n>/`` (Kafka's layout,
storage/src/main/java/org/apache/kafka/storage/internals/log/LogFileUtils.java).

``--json`` documents:
- ``list``: ``{"topics": [{"name", "partitions"}]}``
- ``describe``: ``{"topics": [{"name", "topic_id", "config", "partitions": [{"partition",
  "start_offset", "end_offset", "size_bytes", "segments", "dirty_ratio", "clean_offset",
  "uncleanable"}]}]}`` (``config``: the topic's overrides, as ``Log.describe_topic``; the last
  three are null unless the policy has compact / the partition is marked)
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import pylog
from pylog.cli.common import (
    NO_CLEANER,
    CliError,
    add_dir_argument,
    emit_json,
    emit_table,
    open_log,
    parse_assignments,
    require_topic,
)
from pylog.errors import TopicAlreadyExistsError
from pylog.reference.recovery import list_segment_bases


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``pylog topics`` and its actions."""
    parser = subcommands.add_parser(
        "topics", help="list, create, describe, delete and alter topics (kafka-topics)", description=__doc__
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="the topics and their partition counts")
    add_dir_argument(listing)
    listing.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    listing.set_defaults(handler=list_topics)

    create = actions.add_parser("create", help="create a topic")
    add_dir_argument(create)
    create.add_argument("topic")
    create.add_argument("--partitions", type=int, default=1, help="partition count (default 1)")
    create.add_argument(
        "--config",
        action="append",
        metavar="KEY=VALUE",
        help="a topic config override, Kafka's name (repeatable)",
    )
    create.add_argument("--if-not-exists", action="store_true", help="an existing topic is not an error")
    create.set_defaults(handler=create_topic)

    describe = actions.add_parser("describe", help="partitions (offsets, size, segments, cleaner) and config")
    add_dir_argument(describe)
    describe.add_argument("topics", nargs="*", metavar="TOPIC", help="topics to describe (default: all)")
    describe.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    describe.set_defaults(handler=describe_topics)

    delete = actions.add_parser("delete", help="delete a topic and its records")
    add_dir_argument(delete)
    delete.add_argument("topic")
    delete.add_argument("--if-exists", action="store_true", help="a missing topic is not an error")
    delete.set_defaults(handler=delete_topic)

    alter = actions.add_parser("alter", help="change config overrides or grow the partition count")
    add_dir_argument(alter)
    alter.add_argument("topic")
    alter.add_argument("--config", action="append", metavar="KEY=VALUE", help="set an override (repeatable)")
    alter.add_argument(
        "--delete-config", action="append", metavar="KEY", help="back to the default (repeatable)"
    )
    alter.add_argument("--partitions", type=int, help="the new, larger partition count")
    alter.set_defaults(handler=alter_topic)


def list_topics(args: argparse.Namespace) -> int:
    with open_log(args, config=NO_CLEANER) as log:
        rows = [(name, len(log.describe_topic(name).partitions)) for name in log.list_topics()]
    if args.json:
        emit_json({"topics": [{"name": name, "partitions": count} for name, count in rows]})
    else:
        emit_table(("TOPIC", "PARTITIONS"), rows)
    return 0


def create_topic(args: argparse.Namespace) -> int:
    config = parse_assignments(args.config, "--config")
    with open_log(args, create=True, config=NO_CLEANER) as log:
        try:
            log.create_topic(args.topic, args.partitions, config)
        except TopicAlreadyExistsError:
            if not args.if_not_exists:
                raise
            print(f"topic {args.topic!r} already exists")
            return 0
    print(f"created topic {args.topic!r} with {args.partitions} partition(s)")
    return 0


def delete_topic(args: argparse.Namespace) -> int:
    with open_log(args, config=NO_CLEANER) as log:
        if args.if_exists and args.topic not in log.list_topics():
            print(f"topic {args.topic!r} does not exist")
            return 0
        require_topic(log, args.topic)
        log.delete_topic(args.topic)
    print(f"deleted topic {args.topic!r}")
    return 0


def alter_topic(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = dict(parse_assignments(args.config, "--config"))
    for key in args.delete_config or ():
        if key in changes:
            raise CliError(f"{key} is both set (--config) and deleted (--delete-config)")
        changes[key] = None
    if not changes and args.partitions is None:
        raise CliError("nothing to alter: give --config, --delete-config or --partitions")
    with open_log(args, config=NO_CLEANER) as log:
        require_topic(log, args.topic)
        current = len(log.describe_topic(args.topic).partitions)
        # why before the config change: a refused count must leave the topic as it was
        if args.partitions is not None and args.partitions <= current:
            raise CliError(
                f"topic {args.topic!r} has {current} partitions; --partitions must be larger "
                f"(partitions can only be added), got {args.partitions}"
            )
        if changes:
            log.alter_topic_config(args.topic, changes)
            print(f"altered the config of topic {args.topic!r}: {', '.join(sorted(changes))}")
        if args.partitions is not None:
            log.create_partitions(args.topic, args.partitions)
            print(f"topic {args.topic!r} grew from {current} to {args.partitions} partitions")
    return 0


def describe_topics(args: argparse.Namespace) -> int:
    with open_log(args, config=NO_CLEANER) as log:
        for name in args.topics:
            require_topic(log, name)
        names = args.topics or log.list_topics()
        documents = [topic_document(log, log.describe_topic(name)) for name in names]
    if args.json:
        emit_json({"topics": documents})
        return 0
    for index, document in enumerate(documents):
        config = document["config"]
        title = (
            f"{'' if index == 0 else chr(10)}Topic: {document['name']}  TopicId: {document['topic_id']}  "
            f"PartitionCount: {len(document['partitions'])}  "
            f"Configs: {','.join(f'{k}={v}' for k, v in sorted(config.items())) or '-'}"
        )
        emit_table(
            (
                "PARTITION",
                "LOG-START",
                "END-OFFSET",
                "SIZE",
                "SEGMENTS",
                "DIRTY-RATIO",
                "CLEAN-OFFSET",
                "UNCLEANABLE",
            ),
            [
                (
                    p["partition"],
                    p["start_offset"],
                    p["end_offset"],
                    p["size_bytes"],
                    p["segments"],
                    None if p["dirty_ratio"] is None else f"{p['dirty_ratio']:.3f}",
                    p["clean_offset"],
                    p["uncleanable"],
                )
                for p in document["partitions"]
            ],
            title=title,
        )
    return 0


def topic_document(log: pylog.Log, description: pylog.TopicDescription) -> dict[str, Any]:
    """``describe``'s JSON object of one topic: the library's description plus segment counts."""
    return {
        "name": description.name,
        "topic_id": description.topic_id,
        "config": dict(description.config),
        "partitions": [
            {**p._asdict(), "segments": segment_count(log.path, description.name, p.partition)}
            for p in description.partitions
        ],
    }


def segment_count(root: str, topic: str, partition: int) -> int:
    """The segments of partition ``partition`` of ``topic`` under the log directory ``root``."""
    try:
        return len(list_segment_bases(os.path.join(root, f"{topic}-{partition}")))
    except FileNotFoundError:
        return 0
