"""``pylog verify``: passes on a healthy log both engines wrote, finds each kind of damage one can
inject (exit 1, the damaged file and byte position in --json), and ``--repair`` cuts exactly a
torn unsynced tail and nothing below the recovery point. Real subprocesses (``run_pylog``)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

from helpers import parse_batches, segment_bases, segment_name, xor_byte

from pylog.bench_processes import same_pylog_env
from pylog.engine import open_partition

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
CONFIG = {"segment.bytes": 2048, "index.interval.bytes": 200}
BASE_TS = 1_700_000_000_000


def write_batches(path: Path, engine: str, first: int, count: int) -> None:
    with open_partition(path, engine=engine, config=CONFIG) as log:
        for i in range(first, first + count):
            log.append(
                [f"value-{i}-{j}".encode() * 3 for j in range(4)],
                keys=[f"k{i}".encode(), None, b"\xff\x00", b"k"],
                headers=[[("h", b"1")], [], [("n", None)], []],
                timestamps_ms=[BASE_TS + 10 * i + j for j in range(4)],
                compression=CODECS[i % len(CODECS)],
            )


def healthy_log(tmp_path: Path, engines: tuple[str, str]) -> tuple[Path, Path]:
    """A log directory with one partition written by one engine then the other (every codec,
    several segments), closed cleanly."""
    log_dir = tmp_path / "logs"
    partition = log_dir / "events-0"
    write_batches(partition, engines[0], 0, 20)
    write_batches(partition, engines[1], 20, 20)
    assert len(segment_bases(partition)) >= 4, "the tests need several segments"
    return log_dir, partition


def verify(run_pylog, *args: object) -> tuple[int, dict]:
    done = run_pylog("verify", *args, "--json")
    assert done.stderr == b"" or done.returncode != 2, done.stderr.decode()
    return done.returncode, json.loads(done.stdout)


def errors(document: dict) -> list[dict]:
    return [p for p in document["problems"] if p["severity"] == "error"]


def batches_of(path: Path) -> list:
    return parse_batches(path.read_bytes())


def test_a_healthy_log_both_engines_wrote_verifies(run_pylog, tmp_path, engine, other_engine):
    log_dir, partition = healthy_log(tmp_path, (engine, other_engine))
    code, document = verify(run_pylog, log_dir)
    assert code == 0, document["problems"]
    assert document["healthy"] and document["kind"] == "log_dir" and document["problems"] == []
    (health,) = document["partitions"]
    assert health["path"] == str(partition)
    assert health["segments"] == len(segment_bases(partition))
    assert health["records"] == 160 and health["start_offset"] == 0 and health["end_offset"] == 160
    assert health["recovery_point"] == 160 and health["clean_shutdown"]
    # a partition directory and a single segment verify too
    assert verify(run_pylog, partition)[0] == 0
    assert verify(run_pylog, partition / segment_name(segment_bases(partition)[1]))[0] == 0
    table = run_pylog("verify", log_dir)
    assert table.returncode == 0 and b"healthy" in table.stdout


def test_a_flipped_byte_in_a_sealed_batch_is_found_and_not_repaired(
    run_pylog, tmp_path, engine, other_engine
):
    _log_dir, partition = healthy_log(tmp_path, (engine, other_engine))
    log_path = partition / segment_name(segment_bases(partition)[1])
    target = batches_of(log_path)[1]
    before = xor_byte(log_path, target.position + 70, 0x01)
    code, document = verify(run_pylog, partition)
    assert code == 1 and not document["healthy"]
    (problem,) = errors(document)
    assert (problem["kind"], problem["path"], problem["position"]) == ("crc", str(log_path), target.position)
    assert problem["offset"] == target.base_offset and problem["repairable"] is False
    # the region is below the recovery point: --repair reports it and changes nothing
    code, document = verify(run_pylog, partition, "--repair")
    assert code == 1
    (result,) = document["repair"]
    assert not result["repaired"] and "below the recovery point" in result["reason"]
    assert log_path.read_bytes() == before
    assert [p["kind"] for p in errors(document["after_repair"])] == ["crc"]


def crash_after_appending(partition: Path, engine: str, batches: int) -> None:
    """A child appends ``batches`` batches after the last sync and dies without closing (no
    clean-shutdown marker, the recovery point left behind)."""
    code = (
        "import os, sys\n"
        "from pylog.engine import open_partition\n"
        f"log = open_partition(sys.argv[1], engine={engine!r}, config={CONFIG!r})\n"
        f"for i in range({batches}):\n"
        f"    log.append([b'tail-%d' % i] * 3, timestamps_ms=[{BASE_TS} + 10000 + i] * 3)\n"
        "os._exit(0)\n"
    )
    subprocess.run(
        [sys.executable, "-P", "-c", code, str(partition)], env=same_pylog_env(), check=True, timeout=60
    )


def test_repair_cuts_exactly_a_torn_tail_and_the_log_then_verifies(run_pylog, tmp_path, engine, other_engine):
    _log_dir, partition = healthy_log(tmp_path, (engine, other_engine))
    crash_after_appending(partition, engine, 3)
    last = partition / segment_name(segment_bases(partition)[-1])
    torn = batches_of(last)[-1]
    keep = torn.position + torn.size // 2
    os.truncate(last, keep)
    code, document = verify(run_pylog, partition)
    assert code == 1
    (problem,) = errors(document)
    assert (problem["kind"], problem["path"], problem["position"]) == ("torn_tail", str(last), torn.position)
    assert problem["repairable"] is True and problem["offset"] == torn.base_offset
    code, document = verify(run_pylog, partition, "--repair", "--engine", other_engine)
    assert code == 0, document
    (result,) = document["repair"]
    assert result["repaired"] and result["bytes_cut"] == keep - torn.position
    assert result["end_offset_after"] == torn.base_offset == 166 and result["segments_deleted"] == []
    assert last.stat().st_size == torn.position
    assert document["after_repair"]["healthy"] and document["after_repair"]["problems"] == []
    with open_partition(partition, engine=engine) as log:
        assert log.end_offset == 166 and sum(1 for _ in log.records()) == 166


def test_a_bad_index_entry_is_found_and_rebuilt_by_repair(run_pylog, tmp_path, engine, other_engine):
    _log_dir, partition = healthy_log(tmp_path, (engine, other_engine))
    base = segment_bases(partition)[0]
    index = partition / segment_name(base, ".index")
    entries = index.read_bytes()
    assert len(entries) >= 16, "the test needs two entries"
    rel, position = struct.unpack_from(">ii", entries, 8)
    index.write_bytes(entries[:8] + struct.pack(">ii", rel, position + 1) + entries[16:])
    code, document = verify(run_pylog, partition)
    assert code == 1
    (problem,) = errors(document)
    assert (problem["kind"], problem["path"], problem["position"]) == ("index_entry", str(index), 8)
    assert problem["offset"] == base + rel and problem["repairable"] is True
    settings = [f"--config={key}={value}" for key, value in CONFIG.items()]
    code, document = verify(run_pylog, partition, "--repair", *settings)
    assert code == 0 and document["repair"][0]["indexes_rebuilt"] == [str(index)]
    assert index.read_bytes() == entries  # the rule's entries, rebuilt from the bytes


def test_a_missing_index_is_found(run_pylog, tmp_path, engine, other_engine):
    _log_dir, partition = healthy_log(tmp_path, (engine, other_engine))
    time_index = partition / segment_name(segment_bases(partition)[1], ".timeindex")
    time_index.unlink()
    code, document = verify(run_pylog, partition)
    assert code == 1
    (problem,) = errors(document)
    assert (problem["kind"], problem["path"], problem["position"]) == ("missing_index", str(time_index), None)


def test_an_offset_going_backwards_is_found(run_pylog, tmp_path, engine):
    partition = tmp_path / "t-0"
    with open_partition(partition, engine=engine) as log:
        for i in range(3):
            log.append([b"a", b"b"], timestamps_ms=[BASE_TS + i] * 2)
    log_path = partition / segment_name(0)
    data = bytearray(log_path.read_bytes())
    third = parse_batches(data)[2]
    struct.pack_into(">q", data, third.position, 1)  # 4 -> 1: below the batch before's end (4)
    log_path.write_bytes(bytes(data))  # baseOffset is not under the CRC
    code, document = verify(run_pylog, partition)
    assert code == 1
    kinds = {(p["kind"], p["path"], p["position"]) for p in errors(document)}
    assert ("offset_order", str(log_path), third.position) in kinds


def test_checkpoints_are_checked(run_pylog, tmp_path, engine):
    partition = tmp_path / "t-0"
    with open_partition(partition, engine=engine) as log:
        log.append([b"a"] * 5)
    checkpoint = partition / "recovery-point-offset-checkpoint"
    checkpoint.write_text("0\n1\nt 0 99\n")
    code, document = verify(run_pylog, partition)
    assert code == 1
    (problem,) = errors(document)
    assert (problem["kind"], problem["path"]) == ("checkpoint", str(checkpoint)) and problem["offset"] == 99
    checkpoint.write_text("garbage")
    code, document = verify(run_pylog, partition)
    assert code == 1 and errors(document)[0]["kind"] == "checkpoint"


def test_bad_input_exits_2(run_pylog, tmp_path):
    done = run_pylog("verify", tmp_path / "missing")
    assert done.returncode == 2 and done.stderr.startswith(b"pylog verify: no such file")
    (tmp_path / "x.txt").write_text("x")
    assert run_pylog("verify", tmp_path / "x.txt").returncode == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_pylog("verify", empty).returncode == 2


def test_record_spans_is_the_same_rule_in_both_engines(tmp_path, both_engines):
    """verify's structure check (``record_spans``): native and reference agree on good bytes and
    refuse bad ones with the same kind at the same position."""
    import pytest

    from pylog import _native
    from pylog.errors import CorruptBatchError
    from pylog.reference.batch import record_spans

    _log_dir, partition = healthy_log(tmp_path, both_engines)
    data = (partition / segment_name(0)).read_bytes()
    spans = record_spans(data)
    assert _native.record_spans(data) == spans
    assert spans[0] == (4, 0, 3) and len(spans) == len(parse_batches(data))
    second = parse_batches(data)[1]
    broken = bytearray(data)
    broken[second.position + 65] ^= 0x10
    failures = []
    for check in (record_spans, _native.record_spans):
        with pytest.raises(CorruptBatchError) as caught:
            check(bytes(broken))
        failures.append((caught.value.kind, caught.value.position))
    assert failures[0] == failures[1] == ("crc", second.position)


def test_a_log_directory_with_a_catalog_is_repaired_with_the_topics_settings(run_pylog, tmp_path, engine):
    import pylog

    log_dir = tmp_path / "logs"
    with pylog.open(log_dir, engine=engine) as log:
        log.create_topic("events", partitions=2, config=CONFIG)
    partition = log_dir / "events-0"
    write_batches(partition, engine, 0, 14)  # two past the first segment
    crash_after_appending(partition, engine, 2)
    last = partition / segment_name(segment_bases(partition)[-1])
    torn = batches_of(last)[-1]
    os.truncate(last, torn.position + 30)
    code, document = verify(run_pylog, log_dir)
    assert code == 1 and [p["path"] for p in document["partitions"]] == [
        str(partition),
        str(log_dir / "events-1"),
    ]
    assert [(p["kind"], p["position"]) for p in errors(document)] == [("torn_tail", torn.position)]
    code, document = verify(run_pylog, log_dir, "--repair")
    assert code == 0 and document["repair"][0]["bytes_cut"] == 30
    # the rebuilt index used the topic's index.interval.bytes (200), not the default (4096)
    assert len((partition / segment_name(segment_bases(partition)[-1], ".index")).read_bytes()) > 0


def test_scan_log_frames_as_the_reference_reader(tmp_path, engine):
    """Each way a batch can fail to frame (short tail, length < 49, length past the end, magic
    != 2) is reported with the kind, position and offset of the reference's ``frame`` rule, the
    walk stops there, and the batches before it stay framed."""
    import pytest

    from pylog.errors import CorruptBatchError
    from pylog.inspect import scan_log
    from pylog.reference.batch import frame

    partition = tmp_path / "t-0"
    with open_partition(partition, engine=engine) as log:
        for i in range(3):
            log.append([b"a", b"b"], timestamps_ms=[BASE_TS + i] * 2)
    good = (partition / segment_name(0)).read_bytes()
    third = parse_batches(good)[2]
    at = third.position
    damaged = {
        "short_tail": (good[: at + 7], "torn_tail"),
        "past_end": (good[: at + third.size - 1], "torn_tail"),
        "zero_length": (good[: at + 8] + b"\0" * 4 + good[at + 12 :], "framing"),
        "bad_magic": (good[: at + 16] + b"\x01" + good[at + 17 :], "magic"),
    }
    for name, (data, kind) in damaged.items():
        path = tmp_path / name / segment_name(0)
        path.parent.mkdir()
        path.write_bytes(data)
        scan = scan_log(str(path))
        summary = [(p.kind, p.position, p.offset) for p in scan.problems]
        assert summary == [(kind, at, 4)], (name, scan.problems)
        assert [b.position for b in scan.batches] == [b.position for b in parse_batches(good)[:2]]
        assert scan.framed_bytes == at and scan.next_offset == 4 and scan.records == 4
        if kind == "torn_tail":
            assert frame(data, at) is None, name
        else:
            with pytest.raises(CorruptBatchError) as caught:
                frame(data, at)
            assert (caught.value.kind, caught.value.position) == (kind, at), name


def test_a_negative_last_offset_delta_is_damage_recovery_cuts_at(tmp_path, engine):
    """A CRC-valid batch with lastOffsetDelta < 0 is where recovery cuts (batch_fits), so verify
    classifies it as such: repairable above the recovery point, never below it."""
    from pylog.reference.batch import crc32c
    from pylog.verification import CUT_KINDS, verify_partition

    partition = tmp_path / "t-0"
    with open_partition(partition, engine=engine) as log:
        for i in range(3):
            log.append([b"a", b"b"], timestamps_ms=[BASE_TS + i] * 2)
    log_path = partition / segment_name(0)
    data = bytearray(log_path.read_bytes())
    third = parse_batches(data)[2]
    struct.pack_into(">i", data, third.position + 23, -1)  # lastOffsetDelta
    end = third.position + third.size
    struct.pack_into(">I", data, third.position + 17, crc32c(bytes(data[third.position + 21 : end])))
    log_path.write_bytes(bytes(data))
    for point, repairable in ((4, True), (6, False)):
        (partition / "recovery-point-offset-checkpoint").write_text(f"0\n1\nt 0 {point}\n")
        health = verify_partition(str(partition))
        at = [p for p in health.problems if p.position == third.position and p.kind in CUT_KINDS]
        assert [(p.kind, p.repairable) for p in at] == [("offset_order", repairable)], health.problems
        assert (health.unsafe_to_recover() is None) == repairable
