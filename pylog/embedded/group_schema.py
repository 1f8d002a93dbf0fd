"""DDL of the consumer-group tables of the catalog (groups, members, assignments, committed offsets).

Owned by the group store (``pylog.embedded.group_store``); ``pylog.embedded.catalog`` creates these
tables together with its own in one transaction, under one schema version.
"""

GROUP_SCHEMA: tuple[str, ...] = ()
