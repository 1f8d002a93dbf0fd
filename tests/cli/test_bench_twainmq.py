"""The twainmq contender of ``pylog bench`` (pylog/bench/twainmq_baseline.py): every timed run
checks its own result and gives positive figures, a tampered topic fails the check, and the
registry plugs twainmq in only where it has the API (and leaves it out when not installed)."""

from __future__ import annotations

import contextlib
import os

import pytest

from pylog.bench import twainmq_baseline, workloads
from pylog.bench.model import Context, LatencySample, Sample, Scale

pytest.importorskip("twainmq", reason="twainmq is not installed: pip install 'pylog[bench]'")


@pytest.fixture
def context(tmp_path):
    """A Context as the runner gives it: a fresh work dir, a shared dir and dict, quick scale."""
    work, shared = tmp_path / "work", tmp_path / "shared"
    work.mkdir()
    shared.mkdir()
    scale = Scale.quick()
    scale.wakeup_rounds = 20
    values = [bytes([i % 251]) * (100 + i % 7) for i in range(300)]
    return Context(scale, str(work), str(shared), {"values": values, "value": b"v" * 100})


def test_produce_writes_every_record_and_checks_it(context):
    sample = twainmq_baseline.produce(context, batch=False, compression=None)
    assert isinstance(sample, Sample) and sample.ok
    assert sample.amount == 30  # a tenth of the workload's values, like the reference engine
    assert sample.seconds > 0 and sample.rate > 0
    assert twainmq_baseline.topic_lines(context.path("twainmq")) == 30


def test_consume_reads_the_whole_topic_and_checks_it(context):
    first = twainmq_baseline.consume(context, columns=False)
    again = twainmq_baseline.consume(context, columns=False)  # the topic is written once
    assert first.ok and again.ok
    assert first.amount == again.amount == 30 and first.rate > 0 and again.rate > 0
    assert len(os.listdir(context.shared_dir)) == 1


def test_consume_check_fails_on_a_topic_with_an_extra_message(context):
    assert twainmq_baseline.consume(context, columns=False).ok
    (root,) = (path for key, path in context.shared.items() if key.startswith("twainmq-consume"))
    twainmq_baseline.write(root, [b"extra"], 1)
    sample = twainmq_baseline.consume(context, columns=False)
    assert sample.amount == 31 and not sample.ok


@pytest.mark.parametrize("processes", [1, 2])
def test_latency_gives_positive_ordered_percentiles(context, processes):
    sample = twainmq_baseline.latency(context, processes=processes)
    assert isinstance(sample, LatencySample) and sample.ok
    p = sample.percentiles_us
    assert set(p) == {"p50", "p99", "p99.9"}
    assert 0 < p["p50"] <= p["p99"] <= p["p99.9"]


def test_supports_only_what_twainmq_has():
    assert twainmq_baseline.supports("produce", batch=False, compression=None)
    assert not twainmq_baseline.supports("produce", batch=True, compression=None)
    assert not twainmq_baseline.supports("produce", batch=False, compression="lz4")
    assert twainmq_baseline.supports("consume", columns=False)
    assert not twainmq_baseline.supports("consume", columns=True)
    assert not twainmq_baseline.supports("produce_durable", threads=1, records_per_thread=1)


def test_registry_plugs_twainmq_where_it_exists():
    suite = {w.name: w for w in workloads.registry(Scale.quick())}
    assert "twainmq" in suite["send-100b-none"].contenders
    assert "twainmq" in suite["send-1kib-none"].contenders
    assert "twainmq" not in suite["send-batch-100b-none"].contenders
    assert "twainmq" not in suite["send-100b-lz4"].contenders
    assert workloads.twainmq_note() == ""


def test_absent_twainmq_is_left_out_with_a_note(monkeypatch):
    monkeypatch.setattr(twainmq_baseline, "available", lambda: False)
    suite = workloads.registry(Scale.quick())
    assert all("twainmq" not in w.contenders for w in suite)
    assert workloads.twainmq_note() == twainmq_baseline.MISSING_NOTE
    assert "pip install 'pylog[bench]'" in twainmq_baseline.MISSING_NOTE


def test_the_spinning_poller_exits_when_its_parent_dies(tmp_path):
    """The two-process latency child busy-polls; if the benchmark dies it must not spin on."""
    import subprocess
    import sys
    import time

    from pylog.bench_processes import same_pylog_env

    root = str(tmp_path / "twainmq")
    twainmq_baseline.create_topic(root)
    twainmq_baseline._twain(root).producer(twainmq_baseline.TOPIC)  # creates the partition file
    stderr = tmp_path / "poller.err"
    middle = (
        "import os, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-P', '-m', 'pylog.bench.twainmq_baseline', 'poller',"
        f" {root!r}, '5', str(os.getpid())], stdout=subprocess.DEVNULL, stderr=open({str(stderr)!r}, 'w'))\n"
        "print(child.pid, flush=True)\n"
        "os._exit(0)  # dies without waiting: the poller is orphaned\n"
    )
    out = subprocess.run(
        [sys.executable, "-P", "-c", middle],
        env=same_pylog_env(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    pid = int(out.stdout)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                        break
            except FileNotFoundError:
                break
            time.sleep(0.1)  # polling the child's state, not standing in for synchronization
        else:
            pytest.fail("the orphaned poller kept spinning")
        assert "the benchmark process is gone" in stderr.read_text()  # its guard, not a crash
    finally:
        if os.path.exists(f"/proc/{pid}"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)


def test_the_poller_recovers_from_a_half_written_line(tmp_path):
    """twainmq's poll raises on a line still being written; the latency child reopens and skips
    what it saw, so the message arrives whole once the write completes."""
    import subprocess
    import sys

    from pylog.bench_processes import same_pylog_env

    root = str(tmp_path / "twainmq")
    twainmq_baseline.create_topic(root)
    twainmq_baseline.write(root, [b"first"], 1)
    twainmq_baseline.write(root, [b"second" * 20], 1)
    topic_dir = tmp_path / "twainmq" / twainmq_baseline.TOPIC
    (segment,) = topic_dir.glob("*.tmf")
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(lines[0] + lines[1][:20])  # the second message half written
    with subprocess.Popen(
        [sys.executable, "-P", "-m", "pylog.bench.twainmq_baseline", "poller", root, "2", str(os.getpid())],
        stdout=subprocess.PIPE,
        text=True,
        env=same_pylog_env(),
    ) as child:
        try:
            assert child.stdout.readline().strip() == "ready"
            assert child.stdout.readline().split()[:2] == ["0", "5"]
            with open(segment, "ab") as f:  # the write completes
                f.write(lines[1][20:])
            assert child.stdout.readline().split()[:2] == ["1", "120"]
            assert child.wait(timeout=60) == 0
        finally:
            if child.poll() is None:
                child.kill()
