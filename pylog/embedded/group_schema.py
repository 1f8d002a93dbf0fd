"""DDL of the consumer-group tables of the catalog (groups, members, assignments, committed offsets).

Owned by the group store (``pylog.embedded.group_store``, which documents the protocol);
``pylog.embedded.catalog`` creates these tables together with its own in one transaction, under one
schema version.

- ``consumer_groups``: one row per group that has (or had) members or committed offsets.
  ``generation`` is the group's epoch: bumped by every change of membership, subscription or
  partition count, each time with a new target assignment. ``protocol`` is the assignor the members
  chose (NULL while the group is empty); ``partitions`` is the JSON ``{topic: partition count}``
  the target assignment was computed from (so any member can tell that a topic appeared or grew).
- ``group_members``: live members. Times are nanoseconds of the host's boot clock
  (``CLOCK_BOOTTIME``), comparable between processes, never wall time. ``member_epoch`` is the
  generation the member last synchronised to (KIP-848's member epoch): commits carry it.
  ``join_seq`` orders members by join (the protocol vote's tie-break, the assignors' input order).
- ``group_targets``: the target assignment of the current generation, partition -> member.
- ``group_owners``: who holds each partition *now*. Its primary key is the invariant that no two
  members own one partition at the same instant; a row is inserted only by the partition's target
  member, and only once no row exists (the previous owner revoked it or was evicted).
- ``group_offsets``: committed offsets (the next offset to read, as in Kafka).
"""

GROUP_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE consumer_groups (
        group_id TEXT PRIMARY KEY,
        generation INTEGER NOT NULL DEFAULT 0,
        protocol TEXT,
        partitions TEXT NOT NULL DEFAULT '{}',
        next_join_seq INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE group_members (
        group_id TEXT NOT NULL REFERENCES consumer_groups(group_id),
        member_id TEXT NOT NULL,
        group_instance_id TEXT,
        assignors TEXT NOT NULL,
        topics TEXT NOT NULL,
        pattern TEXT,
        pattern_flags INTEGER NOT NULL DEFAULT 0,
        session_timeout_ms INTEGER NOT NULL,
        max_poll_interval_ms INTEGER NOT NULL,
        member_epoch INTEGER NOT NULL,
        join_seq INTEGER NOT NULL,
        last_heartbeat_ns INTEGER NOT NULL,
        last_poll_ns INTEGER NOT NULL,
        client_host TEXT NOT NULL DEFAULT '',
        client_pid INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (group_id, member_id)
    )""",
    """CREATE UNIQUE INDEX group_members_by_instance
        ON group_members(group_id, group_instance_id) WHERE group_instance_id IS NOT NULL""",
    """CREATE TABLE group_targets (
        group_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        member_id TEXT NOT NULL,
        PRIMARY KEY (group_id, topic, partition)
    )""",
    """CREATE TABLE group_owners (
        group_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        member_id TEXT NOT NULL,
        PRIMARY KEY (group_id, topic, partition)
    )""",
    "CREATE INDEX group_owners_by_member ON group_owners(group_id, member_id)",
    """CREATE TABLE group_offsets (
        group_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        committed_offset INTEGER NOT NULL,
        metadata TEXT NOT NULL,
        leader_epoch INTEGER NOT NULL,
        PRIMARY KEY (group_id, topic, partition)
    )""",
)
