"""``pylog groups list|describe|delete|reset-offsets``: Kafka's kafka-consumer-groups.sh over
``pylog.Log``'s group admin calls (``list_groups``, ``describe_group``, ``delete_group``,
``reset_offsets``).

``describe`` prints what ``kafka-consumer-groups --describe`` does: per partition the committed
offset, the log end offset and the lag, and the member owning it. ``reset-offsets`` takes exactly
one of Kafka's targets and writes the new offsets at once (Kafka's tool wants ``--execute`` for
that); ``--dry-run`` prints the plan (current and new offset per partition) and changes nothing,
and is allowed while members are live, when the write is refused (``NonEmptyGroupError``).

``--json`` documents:
- ``list``: ``{"groups": [{"group_id", "state", "members"}]}``
- ``describe``: ``{"group_id", "state", "protocol", "generation", "members": [{"member_id",
  "group_instance_id", "client_host", "client_pid", "assignment": [[topic, partition], ...]}],
  "partitions": [{"topic", "partition", "committed_offset", "end_offset", "lag", "member_id"}]}``
  (null where there is none)
- ``reset-offsets``: ``{"group_id", "topic", "dry_run", "partitions": [{"partition", "current",
  "new"}]}``
"""

from __future__ import annotations

import argparse
from typing import Any

import pylog
from pylog.cli.common import (
    NO_CLEANER,
    CliError,
    add_dir_argument,
    emit_json,
    emit_table,
    open_log,
    parse_timestamp,
    require_topic,
)
from pylog.errors import GroupIdNotFoundError, UnknownTopicOrPartitionError


def register(subcommands: argparse._SubParsersAction) -> None:
    """Add ``pylog groups`` and its actions."""
    parser = subcommands.add_parser(
        "groups",
        help="list, describe, delete consumer groups, reset their offsets (kafka-consumer-groups)",
        description=__doc__,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="the groups, their states and member counts")
    add_dir_argument(listing)
    listing.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    listing.set_defaults(handler=list_groups)

    describe = actions.add_parser(
        "describe", help="state, members, and committed offset and lag per partition"
    )
    add_dir_argument(describe)
    describe.add_argument("group")
    describe.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    describe.set_defaults(handler=describe_group)

    delete = actions.add_parser("delete", help="delete a group without live members, and its offsets")
    add_dir_argument(delete)
    delete.add_argument("group")
    delete.set_defaults(handler=delete_group)

    reset = actions.add_parser(
        "reset-offsets", help="set a group's committed offsets of a topic (refused while members are live)"
    )
    add_dir_argument(reset)
    reset.add_argument("group")
    reset.add_argument("--topic", required=True)
    reset.add_argument(
        "--partition",
        type=int,
        action="append",
        metavar="P",
        help="only this partition (repeatable; default all)",
    )
    target = reset.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-earliest", action="store_true", help="each partition's log start")
    target.add_argument("--to-latest", action="store_true", help="each partition's log end")
    target.add_argument("--to-offset", type=int, metavar="N", help="offset N (clamped to [start, end])")
    target.add_argument(
        "--to-datetime", metavar="ISO|MS", help="the first offset at or after this time (ISO 8601 or ms)"
    )
    target.add_argument(
        "--shift-by", type=int, metavar="N", help="the committed offset plus N (negative: back)"
    )
    reset.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    reset.add_argument("--json", action="store_true", help="the plan as one JSON document")
    reset.set_defaults(handler=reset_offsets)


def list_groups(args: argparse.Namespace) -> int:
    rows = []
    with open_log(args, config=NO_CLEANER) as log:
        for group_id in log.list_groups():
            try:
                description = log.describe_group(group_id)
            except GroupIdNotFoundError:
                continue  # deleted since the listing
            rows.append((group_id, description.state, len(description.members)))
    if args.json:
        emit_json({"groups": [{"group_id": g, "state": s, "members": m} for g, s, m in rows]})
    else:
        emit_table(("GROUP", "STATE", "MEMBERS"), rows)
    return 0


def require_group(log: pylog.Log, group_id: str) -> Any:
    """``describe_group(group_id)``, or a ``CliError`` naming the known groups."""
    try:
        return log.describe_group(group_id)
    except GroupIdNotFoundError:
        known = log.list_groups()
        hint = f" (groups: {', '.join(known)})" if known else " (the log has no groups)"
        raise CliError(f"unknown group {group_id!r}{hint}") from None


def describe_group(args: argparse.Namespace) -> int:
    with open_log(args, config=NO_CLEANER) as log:
        description = require_group(log, args.group)
        document = group_document(log, description)
    if args.json:
        emit_json(document)
        return 0
    members = {m["member_id"]: m for m in document["members"]}
    title = (
        f"Group: {document['group_id']}  State: {document['state']}  Protocol: {document['protocol'] or '-'}  "
        f"Generation: {document['generation']}  Members: {len(members)}"
    )
    emit_table(
        ("TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST", "PID"),
        [
            (
                p["topic"],
                p["partition"],
                p["committed_offset"],
                p["end_offset"],
                p["lag"],
                p["member_id"],
                members.get(p["member_id"], {}).get("client_host"),
                members.get(p["member_id"], {}).get("client_pid"),
            )
            for p in document["partitions"]
        ],
        title=title,
    )
    return 0


def group_document(log: pylog.Log, description: Any) -> dict[str, Any]:
    """``describe``'s JSON document of a ``GroupDescription``: one entry per partition the group
    has committed or is assigned, with the log end offset read now."""
    ends: dict[str, dict[int, int]] = {}
    partitions = []
    for tp in sorted(set(description.committed) | set(description.assignment) | set(description.lag)):
        if tp.topic not in ends:
            try:
                ends[tp.topic] = {p.partition: p.end_offset for p in log.describe_topic(tp.topic).partitions}
            except UnknownTopicOrPartitionError:
                ends[tp.topic] = {}  # deleted since the group committed
        committed = description.committed.get(tp)
        partitions.append(
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "committed_offset": None if committed is None else committed.offset,
                "end_offset": ends[tp.topic].get(tp.partition),
                "lag": description.lag.get(tp),
                "member_id": description.assignment.get(tp),
            }
        )
    return {
        "group_id": description.group_id,
        "state": description.state,
        "protocol": description.protocol,
        "generation": description.generation,
        "members": [
            {
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_host": m.client_host,
                "client_pid": m.client_pid,
                "assignment": sorted([tp.topic, tp.partition] for tp in m.assignment),
            }
            for m in description.members
        ],
        "partitions": partitions,
    }


def delete_group(args: argparse.Namespace) -> int:
    with open_log(args, config=NO_CLEANER) as log:
        require_group(log, args.group)
        log.delete_group(args.group)
    print(f"deleted group {args.group!r}")
    return 0


def reset_target(args: argparse.Namespace) -> Any:
    """The ``to`` of ``Log.reset_offsets`` for the one target option given."""
    if args.to_earliest:
        return "earliest"
    if args.to_latest:
        return "latest"
    if args.to_offset is not None:
        return args.to_offset
    if args.to_datetime is not None:
        return {"timestamp": parse_timestamp(args.to_datetime)}
    return {"shift": args.shift_by}


def reset_offsets(args: argparse.Namespace) -> int:
    to = reset_target(args)
    with open_log(args, config=NO_CLEANER) as log:
        require_topic(log, args.topic)
        try:
            committed = log.describe_group(args.group).committed
        except GroupIdNotFoundError:
            committed = {}  # as Kafka's tool, a reset may create the group
        new = log.reset_offsets(args.group, args.topic, to, partitions=args.partition, dry_run=args.dry_run)
    plan = [
        (tp.partition, None if committed.get(tp) is None else committed[tp].offset, offset)
        for tp, offset in sorted(new.items(), key=lambda item: item[0].partition)
    ]
    if args.json:
        emit_json(
            {
                "group_id": args.group,
                "topic": args.topic,
                "dry_run": args.dry_run,
                "partitions": [{"partition": p, "current": c, "new": n} for p, c, n in plan],
            }
        )
        return 0
    verb = "would reset (dry run, nothing changed)" if args.dry_run else "reset"
    emit_table(
        ("TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"),
        [(args.topic, p, c, n) for p, c, n in plan],
        title=f"Group {args.group}: {verb} {len(plan)} partition(s) of {args.topic}",
    )
    return 0
