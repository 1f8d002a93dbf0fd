"""Operator events through Python's ``logging`` (docs/partition-log.md "Operator logging").

Recovery cuts, deleted segments and temporary files, swaps finished at open, rebuilt index files
and torn tails cut by a live writer are logged under ``pylog.*`` at the levels Kafka's LogLoader
uses (WARNING for cuts and rebuilt indexes, INFO for deletions, swaps and the summary). Both
engines log the same records (logger, level, text); each scenario runs in both and the records are
compared with the directory path replaced by ``<dir>``. The native engine queues its records and
hands them to Python only after the call released its locks: a handler may call back into the log.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
from helpers import parse_batches, segment_bases, segment_name, xor_byte

from pylog.engine import ENGINES, open_partition

TS = 1_700_000_000_000
CLEAN = ".kafka_cleanshutdown"
CHECKPOINT = "recovery-point-offset-checkpoint"
CONFIG = {"index.interval.bytes": 100, "segment.bytes": 1500}


def write(path: Path, batches: int = 40) -> None:
    with open_partition(path, engine="reference", config=CONFIG) as log:
        for i in range(batches):
            log.append([b"value-%d" % i * 4], timestamps_ms=[TS + i])
    assert len(segment_bases(path)) >= 3


def crash(path: Path) -> None:
    os.remove(path / CLEAN)
    (path / CHECKPOINT).unlink(missing_ok=True)


def events(caplog: pytest.LogCaptureFixture, path: Path) -> list[tuple[str, int, str]]:
    return [
        (r.name, r.levelno, r.getMessage().replace(str(path), "<dir>"))
        for r in caplog.records
        if r.name.startswith("pylog")
    ]


def run_both(tmp_path: Path, caplog: pytest.LogCaptureFixture, prepare, act) -> list[tuple[str, int, str]]:
    """``prepare(path)`` a copy per engine, ``act(path, engine)``; the logged events must agree."""
    template = tmp_path / "template" / "ev-0"
    write(template)
    seen = {}
    for engine in ENGINES:
        path = tmp_path / engine / "ev-0"
        shutil.copytree(template, path)
        prepare(path)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="pylog"):
            act(path, engine)
        seen[engine] = events(caplog, path)
    assert seen["native"] == seen["reference"]
    return seen["reference"]


def open_and_close(path: Path, engine: str) -> None:
    open_partition(path, engine=engine, config=CONFIG).close()


def test_recovery_cut_and_deleted_segments(both_engines, tmp_path, caplog):
    def prepare(path: Path) -> None:
        crash(path)
        middle = segment_bases(path)[1]
        batches = parse_batches((path / segment_name(middle)).read_bytes())
        xor_byte(path / segment_name(middle), batches[2].position + batches[2].size - 1, 0x40)
        prepare.cut = (middle, batches[2].position, len((path / segment_name(middle)).read_bytes()))
        prepare.later = segment_bases(path)[2:]

    got = run_both(tmp_path, caplog, prepare, open_and_close)
    middle, position, size = prepare.cut
    log_name = f"<dir>/{segment_name(middle)}"
    warnings = [e for e in got if e[1] == logging.WARNING]
    assert warnings == [
        (
            "pylog.recovery",
            logging.WARNING,
            f"{log_name}: invalid or torn batch at byte position {position}; truncated {size - position} "
            f"bytes (file was {size} bytes), log end offset now {middle + 2}",
        )
    ]
    deleted = [e for e in got if "deleted segment" in e[2]]
    assert deleted == [
        (
            "pylog.recovery",
            logging.INFO,
            f"deleted segment <dir>/{segment_name(b)} after the truncation of {log_name}",
        )
        for b in prepare.later
    ]
    assert got[-1] == (
        "pylog.recovery",
        logging.INFO,
        f"recovered <dir>: 2 segments, log end offset {middle + 2}, recovery point 0, {size - position} bytes truncated",
    )


def test_temporary_files_and_a_swap_finished_at_open(both_engines, tmp_path, caplog):
    def prepare(path: Path) -> None:
        crash(path)
        first = segment_bases(path)[0]
        (path / (segment_name(first) + ".deleted")).write_bytes(b"old")
        (path / (segment_name(first, ".timeindex") + ".tmp")).write_bytes(b"half")
        for suffix in (".log", ".index", ".timeindex"):  # a swap that got as far as .swap
            os.replace(path / segment_name(first, suffix), path / (segment_name(first, suffix) + ".swap"))

    got = run_both(tmp_path, caplog, prepare, open_and_close)
    first = f"<dir>/{segment_name(0)}"
    assert ("pylog.recovery", logging.INFO, f"deleted {first}.deleted (a deletion left unfinished)") in got
    tmp = f"<dir>/{segment_name(0, '.timeindex')}.tmp"
    assert ("pylog.recovery", logging.INFO, f"deleted {tmp} (an unfinished index rebuild)") in got
    for suffix in (".index", ".log", ".timeindex"):
        name = f"<dir>/{segment_name(0, suffix)}"
        assert (
            "pylog.recovery",
            logging.INFO,
            f"completed an interrupted swap: renamed {name}.swap to {name}",
        ) in got
    assert all(level == logging.INFO for _, level, _ in got)


def test_index_rebuilt(both_engines, tmp_path, caplog):
    def prepare(path: Path) -> None:
        (path / segment_name(0, ".index")).write_bytes(b"\x00" * 7)

    def act(path: Path, engine: str) -> None:
        with open_partition(path, engine=engine, config=CONFIG) as log:
            assert len(list(log.records())) == 40

    got = run_both(tmp_path, caplog, prepare, act)
    assert got == [
        (
            "pylog.index",
            logging.WARNING,
            f"rebuilding the index files of <dir>/{segment_name(0)}: 7 bytes is not a whole number of 8-byte entries",
        )
    ]


def test_torn_tail_cut_by_a_live_writer(both_engines, tmp_path, caplog):
    def prepare(path: Path) -> None:
        pass

    def act(path: Path, engine: str) -> None:
        with open_partition(path, engine=engine, config=CONFIG) as log:
            end = log.end_offset
            active = path / segment_name(segment_bases(path)[-1])
            size = active.stat().st_size
            with open(active, "ab") as f:  # a writer died mid-append (above the recovery point)
                f.write(b"\x00\x00\x00\x00\x00\x00\x00\x99\x00\x00\x01\x00torn")
            log.append([b"next"], timestamps_ms=[TS + 100])
            assert log.end_offset == end + 1
            act.expected = (active, size, end)

    got = run_both(tmp_path, caplog, prepare, act)
    active, size, end = act.expected
    assert got == [
        (
            "pylog.log",
            logging.WARNING,
            f"<dir>/{active.name}: torn batch at byte position {size}; truncated 16 bytes (file was "
            f"{size + 16} bytes), log end offset {end}",
        )
    ]


def test_a_handler_may_call_back_into_the_log(engine, tmp_path, caplog):
    """Both engines run handlers after releasing their locks: a handler that reads the same log
    object (its lock) or opens the directory again (the writer lock) does not deadlock."""
    path = tmp_path / "cb-0"
    write(path)
    crash(path)
    seen: list[object] = []

    class CallsBack(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == "pylog.recovery":
                with open_partition(path, engine=engine, config=CONFIG) as again:
                    seen.append(again.end_offset)
            elif record.name == "pylog.log":
                seen.append(log.end_offset)

    handler = CallsBack()
    logger = logging.getLogger("pylog")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        log = open_partition(path, engine=engine, config=CONFIG)
        assert seen and seen[0] == 40
        with open(path / segment_name(segment_bases(path)[-1]), "ab") as f:
            f.write(b"\x00" * 20)
        log.append([b"x"], timestamps_ms=[TS])
        assert seen[-1] == 41
        log.close()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_nothing_is_logged_for_a_clean_open(both_engines, tmp_path, caplog):
    got = run_both(tmp_path, caplog, lambda path: None, open_and_close)
    assert got == []


def test_a_failing_handler_does_not_fail_the_call(engine, tmp_path, monkeypatch):
    """A handler that raises is reported as unraisable (``sys.unraisablehook``) in both engines; the
    engine call still succeeds and every record still reaches the other handlers."""
    path = tmp_path / "fail-0"
    write(path)
    crash(path)
    reported: list[BaseException | None] = []
    monkeypatch.setattr("sys.unraisablehook", lambda args: reported.append(args.exc_value))
    received: list[str] = []

    class Fails(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("handler failed")

    class Records(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            received.append(record.getMessage())

    recording, failing = Records(), Fails()
    recovery, root = logging.getLogger("pylog.recovery"), logging.getLogger("pylog")
    old_level = root.level
    recovery.addHandler(recording)  # why the child: its handlers run before the parent's
    root.addHandler(failing)
    root.setLevel(logging.INFO)
    try:
        log = open_partition(path, engine=engine, config=CONFIG)
        assert log.end_offset == 40
        log.close()
    finally:
        recovery.removeHandler(recording)
        root.removeHandler(failing)
        root.setLevel(old_level)
    assert len(received) == 1 and received[0].startswith("recovered ")
    assert [type(e) for e in reported] == [RuntimeError] * len(received)
