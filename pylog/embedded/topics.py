"""Topics on disk: name rules, partition directory names, ``partition.metadata`` and deletion.

The one owner of every rule about what a topic looks like in the log directory.

Topic names (Kafka's ``Topic.validate``, clients/src/main/java/org/apache/kafka/common/internals/Topic.java):
1 to 249 characters from ``[a-zA-Z0-9._-]``, and not ``.`` or ``..``. So a name can never hold a
path separator or climb out of the directory: ``<dir>/<topic>-<n>`` always names a direct child
of ``<dir>``. Two names that differ only by ``.`` versus ``_`` collide (Kafka refuses the second one
because its metric names would be equal; ``Topic.hasCollision``) and are refused here too.

Layout of ``<dir>`` (Kafka's log.dir; ``logDirName`` in
storage/src/main/java/org/apache/kafka/storage/internals/log/LocalLog.java):
- ``<topic>-<n>/``: partition ``n`` of ``topic``, opened through the engine seam
  (``pylog.engine.open_partition``) with the topic's config. The name is unambiguous: the partition
  is the digits after the last ``-``.
- ``<topic>-<n>/partition.metadata``: Kafka's PartitionMetadataFile
  (storage/src/main/java/org/apache/kafka/storage/internals/checkpoint/PartitionMetadataFile.java):
  the UTF-8 text ``version: 0\\ntopic_id: <id>`` with no final newline, where ``<id>`` is the topic's
  ``org.apache.kafka.common.Uuid`` string form (its 16 bytes in URL-safe base64 without padding,
  22 characters; clients/src/main/java/org/apache/kafka/common/Uuid.java). Written to
  ``partition.metadata.tmp``, fsynced, renamed into place, then the directory is fsynced, as Kafka
  does. A broker given this directory would adopt the partition with that topic id.
- ``<topic>-<n>.<32 hex digits>-delete/``: a partition being deleted (Kafka's ``logDeleteDirName``,
  same file: the topic is cut so that the whole name stays within 255 characters). Deletion renames
  the directory to this name, which is atomic, and only then removes it file by file: a partition
  directory is never half-deleted under its live name. A crash in the middle leaves a ``-delete``
  directory; the next open (``EmbeddedBackend``) removes it, or renames it back when its
  ``partition.metadata`` names a topic the catalog still has (the deletion never committed).
- ``catalog.db`` (+ ``-wal``, ``-shm``): the catalog (``pylog.embedded.catalog``). No topic's
  partition directory can take one of these names (they do not end in ``-<digits>``).

Thread-safety: pure functions over the file system; callers serialize changes to one topic through
the catalog's write lock.
"""

from __future__ import annotations

import base64
import errno
import logging
import os
import re
import shutil
import uuid
from pathlib import Path

from pylog.errors import CatalogError, InvalidTopicError

LOG = logging.getLogger("pylog.topics")

#: Kafka's Topic.MAX_NAME_LENGTH: 255 minus room for a partition number and suffixes
MAX_NAME_LENGTH = 249
LEGAL_NAME = re.compile(r"[a-zA-Z0-9._-]+")
PARTITION_METADATA_FILE = "partition.metadata"
PARTITION_METADATA_VERSION = 0
DELETE_SUFFIX = "-delete"
#: ``<topic>-<n>.<uuid hex>-delete`` (LocalLog.DELETE_DIR_PATTERN)
DELETE_DIR = re.compile(r"^(?P<topic>.+)-(?P<partition>\d+)\.(?P<unique>[0-9a-f]{32})-delete$")
#: the longest file name most file systems take (Kafka caps ``-delete`` names at it)
MAX_FILE_NAME = 255


def validate_topic_name(name: object) -> str:
    """Return ``name`` if it is a legal Kafka topic name, else raise ``InvalidTopicError``."""
    if not isinstance(name, str):
        raise InvalidTopicError(f"a topic name must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidTopicError("a topic name must not be empty")
    if name in (".", ".."):
        raise InvalidTopicError(f"topic name {name!r} is not allowed")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidTopicError(
            f"topic name is {len(name)} characters long; the maximum is {MAX_NAME_LENGTH}"
        )
    if LEGAL_NAME.fullmatch(name) is None:
        raise InvalidTopicError(
            f"topic name {name!r} is illegal: it may hold only ASCII letters, digits, '.', '_' and '-'"
        )
    return name


def collision_key(name: str) -> str:
    """Names with equal keys collide (Kafka's ``Topic.hasCollision``: ``.`` and ``_`` are equal)."""
    return name.replace(".", "_")


def partition_dir_name(topic: str, partition: int) -> str:
    """``<topic>-<partition>``: the partition's directory under the log directory."""
    return f"{topic}-{partition}"


def delete_dir_name(topic: str, partition: int) -> str:
    """A fresh ``<topic>-<n>.<unique>-delete`` name, within ``MAX_FILE_NAME`` characters."""
    suffix = f"-{partition}.{uuid.uuid4().hex}{DELETE_SUFFIX}"
    return topic[: MAX_FILE_NAME - len(suffix)] + suffix


# --- topic ids ------------------------------------------------------------------------------------


def new_topic_id() -> str:
    """A random topic id in Kafka's ``Uuid`` string form (``Uuid.randomUuid``: never the reserved
    all-zero or one values, never a string starting with ``-``)."""
    while True:
        raw = uuid.uuid4().bytes
        value = int.from_bytes(raw, "big")
        text = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        if value > 1 and not text.startswith("-"):
            return text


def is_topic_id(text: str) -> bool:
    """Whether ``text`` is a Kafka ``Uuid`` string (22 URL-safe base64 characters for 16 bytes)."""
    if len(text) != 22:
        return False
    try:
        return len(base64.urlsafe_b64decode(text + "==")) == 16
    except ValueError:
        return False


# --- partition.metadata ---------------------------------------------------------------------------


def write_partition_metadata(directory: str, topic_id: str) -> None:
    """Write ``partition.metadata`` (version 0, ``topic_id``) durably: tmp file, fsync, rename."""
    if not is_topic_id(topic_id):
        raise ValueError(f"not a Kafka topic id: {topic_id!r}")
    text = f"version: {PARTITION_METADATA_VERSION}\ntopic_id: {topic_id}".encode()
    final = os.path.join(directory, PARTITION_METADATA_FILE)
    tmp = final + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fsync_dir(directory)


def read_partition_metadata(directory: str) -> str | None:
    """The topic id in ``<directory>/partition.metadata``, or None if the file is missing or is
    not Kafka's version-0 format (Kafka's PartitionMetadataReadBuffer reads the same two lines)."""
    try:
        text = Path(directory, PARTITION_METADATA_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return None
    lines = text.split("\n")
    if len(lines) < 2 or lines[0].strip() != f"version: {PARTITION_METADATA_VERSION}":
        return None
    key, _, value = lines[1].partition(":")
    value = value.strip()
    if key.strip() != "topic_id" or not is_topic_id(value):
        return None
    return value


# --- directories ----------------------------------------------------------------------------------


def holds_records(directory: str) -> bool:
    """Whether any segment file (``*.log``) in ``directory`` is non-empty."""
    try:
        with os.scandir(directory) as entries:
            return any(e.name.endswith(".log") and e.is_file() and e.stat().st_size > 0 for e in entries)
    except FileNotFoundError:
        return False


def size_on_disk(directory: str) -> int:
    """Total bytes of the regular files in ``directory`` (a partition has no subdirectories)."""
    total = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:  # a segment deleted by retention meanwhile
                    continue
    except FileNotFoundError:
        return 0
    return total


def rename_for_deletion(root: str, topic: str, partition: int) -> str | None:
    """Rename ``<root>/<topic>-<n>`` to a fresh ``-delete`` name (atomic); return the new path,
    or None when the partition directory does not exist."""
    source = os.path.join(root, partition_dir_name(topic, partition))
    target = os.path.join(root, delete_dir_name(topic, partition))
    try:
        os.rename(source, target)
    except FileNotFoundError:
        return None
    return target


def remove_tree(path: str) -> None:
    """Remove a renamed ``-delete`` directory; a file already gone (another process removing the
    same leftover) is not an error."""

    def on_error(function: object, name: str, info: tuple) -> None:
        error = info[1]
        if isinstance(error, FileNotFoundError) or getattr(error, "errno", None) == errno.ENOENT:
            return
        raise error

    shutil.rmtree(path, onerror=on_error)


def deletion_leftovers(root: str) -> list[str]:
    """Names of the ``-delete`` directories in ``root``."""
    try:
        with os.scandir(root) as entries:
            return sorted(
                e.name for e in entries if DELETE_DIR.match(e.name) and e.is_dir(follow_symlinks=False)
            )
    except FileNotFoundError:
        return []


def prepare_partition_dir(root: str, topic: str, partition: int, topic_id: str) -> str:
    """Make sure ``<root>/<topic>-<n>`` may become partition ``n`` of the topic with ``topic_id``.

    An existing directory is kept when its ``partition.metadata`` names this topic id (a retried
    ``create_partitions`` after a crash). One without records (a leftover of an interrupted create)
    is removed, by rename first. One with records of another or an unknown topic is refused with
    ``CatalogError``: pylog never deletes data it cannot prove was deleted.
    """
    path = os.path.join(root, partition_dir_name(topic, partition))
    if not os.path.lexists(path):
        return path
    if not os.path.isdir(path) or os.path.islink(path):
        raise CatalogError(f"{path} exists and is not a partition directory; move it away")
    found = read_partition_metadata(path)
    if found == topic_id:
        return path
    if holds_records(path):
        owner = f"topic id {found}" if found else "no partition.metadata"
        raise CatalogError(
            f"{path} holds records of another topic ({owner}); move it away before creating {topic!r}"
        )
    LOG.warning("removing the empty leftover partition directory %s before creating topic %r", path, topic)
    doomed = rename_for_deletion(root, topic, partition)
    if doomed is not None:
        remove_tree(doomed)
    return path


def fsync_dir(directory: str) -> None:
    """fsync a directory so that renames and creations in it survive power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
