"""The cleaner's key → latest offset map (the twin of native/src/offset_map.rs; Kafka's
SkimpyOffsetMap, storage/src/main/java/org/apache/kafka/storage/internals/log/SkimpyOffsetMap.java).

Keys are stored as the 16-byte **MD5** digest of their bytes (two keys with one digest would be
merged, a risk Kafka accepts). Capacity follows Kafka's sizing exactly, so both engines fill at
the same record: ``slots = map_bytes // 24`` (a 16-byte digest and an 8-byte offset per slot) and
the map counts as full once it holds ``max_entries = int(slots * 0.9)`` entries
(``log.cleaner.io.buffer.load.factor``). The native map is one flat ``slots * 24``-byte table with
Kafka's probing; here a dict from digest to offset serves (the reference engine is the oracle of
*which* records survive, not of memory use).

``latest_offset`` is the offset of the last ``put``, or what ``update_latest_offset`` set (a
segment finished without filling the map covers up to the next segment's base).
Not thread-safe: one cleaning pass owns one map.
"""

from __future__ import annotations

import hashlib

#: bytes per slot: the MD5 digest and an int64 offset
SLOT_BYTES = 16 + 8
#: Kafka's ``log.cleaner.io.buffer.load.factor``
LOAD_FACTOR = 0.9
#: the smallest ``log.cleaner.dedupe.buffer.size`` accepted (pylog's bound)
MIN_MAP_BYTES = 1024
#: ``log.cleaner.dedupe.buffer.size`` default (Kafka's CleanerConfig)
DEFAULT_MAP_BYTES = 128 * 1024 * 1024


def digest(key: bytes) -> bytes:
    """The 16-byte MD5 of a key (Kafka hashes the key bytes with MD5)."""
    return hashlib.md5(key, usedforsecurity=False).digest()


class OffsetMap:
    """Digest → latest offset, with Kafka's capacity (module docstring)."""

    __slots__ = ("_entries", "latest_offset", "max_entries", "slots")

    def __init__(self, map_bytes: int):
        self.slots = map_bytes // SLOT_BYTES
        self.max_entries = int(self.slots * LOAD_FACTOR)
        self._entries: dict[bytes, int] = {}
        self.latest_offset = -1

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def full(self) -> bool:
        """Kafka's ``map.size >= maxDesiredMapSize``, asked before every put (even of a key the
        map already holds)."""
        return len(self._entries) >= self.max_entries

    def put(self, key_digest: bytes, offset: int) -> None:
        self._entries[key_digest] = offset
        self.latest_offset = offset

    def get(self, key_digest: bytes) -> int:
        """The latest offset put for the digest, -1 when absent."""
        return self._entries.get(key_digest, -1)

    def update_latest_offset(self, offset: int) -> None:
        self.latest_offset = offset
