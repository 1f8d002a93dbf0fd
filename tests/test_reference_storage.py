"""What only the reference engine's own tests can reach: its module seams.

Everything observable through the API (indexes, rolls, recovery, swaps, several objects and
processes on one directory, checkpoints) is tested for both engines through the ``engine``
fixture in test_partition_log.py, test_recovery.py, test_concurrency.py and test_format.py.
Left here: a crash injected at each step of a recovery cut (by patching the reference recovery
module's file operations) and which files each operation fsyncs (by recording ``os.fsync``);
the native engine's counterparts are its Rust unit tests.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import pytest
from helpers import synced_offset

from pylog.config import LogConfig
from pylog.reference.log import PartitionLog

HEADER = struct.Struct(">qiiBIhiqqqhii")
CLEAN = ".kafka_cleanshutdown"
CHECKPOINT = "recovery-point-offset-checkpoint"


def open_log(path: Path | str, **settings: object) -> PartitionLog:
    config = {k.replace("_", "."): v for k, v in settings.items()}
    return PartitionLog(str(path), LogConfig.from_mapping(config))


def bases_of(path: Path) -> list[int]:
    return sorted(int(p.name[:20]) for p in path.glob("*.log"))


def seg(path: Path, base: int, suffix: str) -> Path:
    return path / f"{base:020d}{suffix}"


def batches(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """(position, baseOffset, lastOffset, maxTimestamp, size) of every whole batch."""
    out = []
    pos = 0
    while pos + 61 <= len(data):
        fields = HEADER.unpack_from(data, pos)
        size = 12 + fields[1]
        if pos + size > len(data):
            break
        out.append((pos, fields[0], fields[0] + fields[6], fields[8], size))
        pos += size
    return out


def fill(log: PartitionLog, n: int, *, per_batch: int = 3, ts0: int = 1_000) -> list[int]:
    """n batches with non-monotonic timestamps; returns their base offsets."""
    out = []
    for i in range(n):
        ts = [ts0 + ((i * 7919 + j * 31) % 500) for j in range(per_batch)]
        values = [b"value-%d-%d" % (i, j) * (1 + i % 4) for j in range(per_batch)]
        keys = [None if j == 0 else b"k%d" % j for j in range(per_batch)]
        out.append(log.append(values, keys=keys, timestamps_ms=ts))
    return out


def all_records(log: PartitionLog) -> list[tuple[int, bytes | None]]:
    return [(r.offset, r.value) for r in log.records()]


def crash_copy(src: Path, dst: Path) -> Path:
    """The directory as a crashed process would leave it: no clean-shutdown marker."""
    shutil.copytree(src, dst)
    (dst / CLEAN).unlink(missing_ok=True)
    return dst


# --------------------------------------------------------------------------------- recovery


@pytest.fixture
def pristine(tmp_path: Path) -> tuple[Path, list[tuple[int, bytes | None]]]:
    path = tmp_path / "src-0"
    with open_log(path, segment_bytes=1000, index_interval_bytes=100) as log:
        fill(log, 30)
        log.append([b"last", b"one"], keys=[b"k", None], headers=[[("h", b"v")], []])
        recs = all_records(log)
    return path, recs


@pytest.mark.parametrize("crash_at", ["first delete", "second delete", "the cut"])
def test_a_crash_inside_a_recovery_cut_recovers_to_the_same_cut(
    tmp_path: Path, pristine, monkeypatch, crash_at: str
) -> None:
    """A crash at any step of a recovery cut (deleting the later segments, truncating) leaves a
    directory the next recovery brings to the same end: no later segment survives beside a cut,
    so offsets never show a gap. (Cutting before deleting failed this at "first delete".)"""
    import pylog.reference.recovery as recovery_module

    src, recs = pristine
    bases = bases_of(src)
    assert len(bases) >= 4
    dst = crash_copy(src, tmp_path / "crashcut-0")
    (dst / CHECKPOINT).unlink()
    victim = bases[1]
    data = seg(dst, victim, ".log").read_bytes()
    pos, base, _, _, _ = batches(data)[1]
    with open(seg(dst, victim, ".log"), "r+b") as f:
        f.seek(pos + 40)
        f.write(b"\xff")

    class Crash(Exception):
        pass

    crash_on_delete = {"first delete": 1, "second delete": 2}.get(crash_at)
    deletes = []
    real_delete = recovery_module.delete_segment_files

    def delete(dir_path: str, segment_base: int) -> None:
        deletes.append(segment_base)
        if len(deletes) == crash_on_delete:
            raise Crash
        real_delete(dir_path, segment_base)

    def truncate(fd: int, length: int) -> None:
        raise Crash

    real_ftruncate = os.ftruncate  # recovery_module.os is the global os: patched only inside
    with monkeypatch.context() as patch:
        patch.setattr(recovery_module, "delete_segment_files", delete)
        if crash_at == "the cut":
            patch.setattr(recovery_module.os, "ftruncate", truncate)
        with pytest.raises(Crash):
            open_log(dst, segment_bytes=1000)
    assert os.ftruncate is real_ftruncate, "restored before the reopen, which must really cut"
    assert len(deletes) == (crash_on_delete or len(bases) - 2), "the crash hit the step under test"
    with open_log(dst, segment_bytes=1000) as log:
        assert bases_of(dst) == bases[:2]
        assert log.end_offset == base
        assert all_records(log) == [r for r in recs if r[0] < base]


# ---------------------------------------------------------------------------------------------
# what gets fsynced

FS_TS = 1_700_000_000_000


@pytest.fixture
def fsynced(monkeypatch):
    """Record the path behind every fd the reference modules fsync (they all call ``os.fsync``
    of the one ``os`` module), still doing the real fsync."""
    import pylog.reference.checkpoint as checkpoint_module
    import pylog.reference.log as log_module
    import pylog.reference.recovery as recovery_module

    real = os.fsync
    calls: list[str] = []

    def recording(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    assert all(m.os is os for m in (log_module, checkpoint_module, recovery_module))
    monkeypatch.setattr(os, "fsync", recording)
    return calls


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name fsynced fds")
def test_sync_fsyncs_the_log_and_the_directory_not_the_checkpoint(tmp_path, fsynced):
    path = tmp_path / "fs-0"
    log = open_log(path)
    try:
        directory = str(path.resolve())
        ckpt_tmp = str(path.resolve() / "recovery-point-offset-checkpoint.tmp")
        log_file = str(seg(path, 0, ".log").resolve())
        assert fsynced[-1:] == [directory], "recovery at open ends with a directory fsync"
        fsynced.clear()
        log.append([b"a", b"b"], timestamps_ms=[FS_TS, FS_TS])
        log.flush()
        assert fsynced == [], "flush() writes out, it never fsyncs"

        log.sync()  # the first sync after the segment was created: the directory entry too
        assert fsynced == [log_file, directory], "the active .log, not its index files"
        assert not (path / "recovery-point-offset-checkpoint").exists(), "within the interval"
        assert synced_offset(path) == 2
        fsynced.clear()

        log.append([b"c"], timestamps_ms=[FS_TS])
        log.sync()  # no new file since the last sync: the .log alone
        assert fsynced == [log_file]
        assert synced_offset(path) == 3
        fsynced.clear()

        log.roll()
        log.append([b"d"], timestamps_ms=[FS_TS])
        assert fsynced == []
        log.sync()  # after a roll: the sealed segment whole (its seal entry), the new .log, the directory
        new_file = str(seg(path, 3, ".log").resolve())
        sealed = [str(seg(path, 0, suffix).resolve()) for suffix in (".log", ".index", ".timeindex")]
        assert fsynced == [*sealed, new_file, directory]
        assert synced_offset(path) == 4
        fsynced.clear()

        log.close()  # the last closer: the active index files, then the checkpoint and the marker
        assert fsynced[:3] == [new_file, *(str(seg(path, 3, s).resolve()) for s in (".index", ".timeindex"))]
        assert fsynced.index(ckpt_tmp) > 2
        assert read_text_offset(path) == 4
    finally:
        log.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to name fsynced fds")
def test_flush_messages_one_fsyncs_every_append(tmp_path, fsynced):
    path = tmp_path / "fm-0"
    log = open_log(path, **{"flush.messages": 1})
    try:
        log_file = str(seg(path, 0, ".log").resolve())
        for i in range(3):
            fsynced.clear()
            log.append([b"v%d" % i], timestamps_ms=[FS_TS])
            assert fsynced.count(log_file) == 1, fsynced
            assert synced_offset(path) == i + 1
        fsynced.clear()
        log.flush()
        assert fsynced == []
    finally:
        log.close()


def read_text_offset(path: Path) -> int:
    return int((path / "recovery-point-offset-checkpoint").read_text().split()[-1])
