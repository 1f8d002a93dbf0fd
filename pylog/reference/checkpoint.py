"""The offset checkpoints and the clean-shutdown marker of a partition directory.

Three files share one format, Kafka's text checkpoint (CheckpointFile.java,
OffsetCheckpointFile.java), written and read only by ``write_offset_checkpoint`` /
``read_offset_checkpoint`` (native/src/checkpoint.rs's twins)::

    0                              version
    1                              number of entries
    {topic} {partition} {offset}   one entry: this directory's offset

- ``recovery-point-offset-checkpoint``: the recovery point (``sync()`` at most every
  ``RECOVERY_POINT_CHECKPOINT_INTERVAL_MS``, the last close; log.py);
- ``log-start-offset-checkpoint``: the log start offset (``delete_before``, retention);
- ``cleaner-offset-checkpoint``: the first dirty offset (after each cleaning pass).

Kafka keeps each of these once per log.dir with one line per partition; pylog keeps one per
partition directory (docs/partition-log.md, "Files in a partition directory").

``{topic}``/``{partition}`` come from the directory name ``<topic>-<partition>`` when it ends in
``-<digits>`` with a non-empty topic before the last ``-`` and digits that fit in a u32 (written as
an integer, so ``t-007`` is partition 7); otherwise topic = directory name and partition = 0.
Writes go to ``.tmp``, are fsynced, renamed into place and the directory is fsynced, so a crash
leaves the old or the new file, never a torn one. Readers take the first entry: its offset is the
last whitespace-separated token, the partition the one before, the topic the rest (a directory name
may hold spaces); a missing or malformed file reads as "no recovery point" (recover everything).

``.kafka_cleanshutdown`` is an empty file written by the last process to close cleanly; the next
first opener deletes it and skips the recovery scan.
"""

from __future__ import annotations

import os
import re

RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_FILE = "log-start-offset-checkpoint"
CLEANER_OFFSET_FILE = "cleaner-offset-checkpoint"
CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
CHECKPOINT_VERSION = 0

_TOPIC_PARTITION = re.compile(r"^(.+)-([0-9]+)$", re.DOTALL)
_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1
_I64_MAX = 2**63 - 1


def topic_partition(dir_path: str) -> tuple[str, int]:
    """(topic, partition) named by the directory, as the module docstring says."""
    name = os.path.basename(os.path.normpath(dir_path))
    match = _TOPIC_PARTITION.match(name)
    if match is None or int(match.group(2)) > _U32_MAX:
        return name, 0
    return match.group(1), int(match.group(2))


def fsync_dir(dir_path: str) -> None:
    fd = os.open(dir_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_recovery_point(dir_path: str, offset: int) -> None:
    write_offset_checkpoint(dir_path, RECOVERY_POINT_FILE, offset)


def read_recovery_point(dir_path: str) -> int | None:
    return read_offset_checkpoint(dir_path, RECOVERY_POINT_FILE)


def write_offset_checkpoint(dir_path: str, file_name: str, offset: int) -> None:
    """Atomically replace the checkpoint ``file_name`` with ``offset`` (tmp, fsync, rename,
    dir fsync): durable when this returns."""
    assert offset >= 0, offset
    topic, partition = topic_partition(dir_path)
    text = f"{CHECKPOINT_VERSION}\n1\n{topic} {partition} {offset}\n".encode()
    final = os.path.join(dir_path, file_name)
    tmp = final + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(text)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fsync_dir(dir_path)


def _parse_int(token: str, high: int, *, signed: bool = False) -> int:
    """A number as the native engine reads it (Rust's ``str::parse``): an optional sign and ASCII
    digits only, in range. why not plain ``int()``: it also takes ``1_000`` and non-ASCII digits,
    so the engines would read a malformed file differently (one recovering less than the other)."""
    if re.fullmatch(r"[+-]?[0-9]+" if signed else r"\+?[0-9]+", token, re.ASCII) is None:
        raise ValueError(token)
    value = int(token)
    if not (-high - 1 if signed else 0) <= value <= high:
        raise ValueError(token)
    return value


def read_offset_checkpoint(dir_path: str, file_name: str) -> int | None:
    """The first entry's offset of checkpoint ``file_name``, or None when the file is missing or
    malformed."""
    try:
        with open(os.path.join(dir_path, file_name), "rb") as f:
            lines = f.read().decode("utf-8").split("\n")
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    try:
        _parse_int(lines[0].strip(), _U32_MAX)  # the version: any is read the same way (as native)
        if _parse_int(lines[1].strip(), _U64_MAX) < 1:
            return None
        # why from the end: the topic (from the directory name) may hold spaces; the offset is
        # the last token, the partition the one before, the topic the rest
        fields = lines[2].split()
        if len(fields) < 3:
            return None
        _parse_int(fields[-2], _U32_MAX)
        offset = _parse_int(fields[-1], _I64_MAX, signed=True)
    except (IndexError, ValueError):
        return None
    return offset if offset >= 0 else None


def clean_shutdown_path(dir_path: str) -> str:
    return os.path.join(dir_path, CLEAN_SHUTDOWN_FILE)


def has_clean_shutdown(dir_path: str) -> bool:
    return os.path.exists(clean_shutdown_path(dir_path))


def remove_clean_shutdown(dir_path: str) -> bool:
    """Delete the marker; True when it was there."""
    try:
        os.unlink(clean_shutdown_path(dir_path))
    except FileNotFoundError:
        return False
    return True


def write_clean_shutdown(dir_path: str) -> None:
    """Create the empty marker and make its directory entry durable."""
    fd = os.open(clean_shutdown_path(dir_path), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(dir_path)
