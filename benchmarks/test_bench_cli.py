"""Lines per second through the command line (issue 8: "fast on large inputs"): ``pylog produce``
of 100-byte lines from a file on stdin (text and json), and ``pylog consume --from-beginning``
of them to a file (text and json), each a real ``python -m pylog`` process, so interpreter start
and log open are part of the figure, as for a user.

Each run checks what it did (the record count the library reads, the lines written). Full scale
(``PYLOG_BENCH_SCALE=full``): 1,000,000 lines (the reference engine a tenth). Figures:
benchmarks/README.md ("Command line"); ``extra_info["lines_per_s"]`` holds each run's rate.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import time

import pytest
from conftest import FULL

import pylog
from pylog.bench_processes import same_pylog_env
from pylog.types import TopicPartition

LINES = 1_000_000 if FULL else 20_000
LINE_BYTES = 100  # with its newline


def _lines(engine: str) -> int:
    return LINES if engine == "native" else LINES // 10


def _pylog(*args: object, stdin=None, stdout=None) -> None:
    subprocess.run(
        [sys.executable, "-P", "-m", "pylog", *map(str, args)],
        stdin=stdin,
        stdout=stdout if stdout is not None else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=same_pylog_env(),
        check=True,
        timeout=600,
    )


def _end_offset(path, topic: str) -> int:
    with pylog.open(path, auto_create_topics=False) as log:
        consumer = log.consumer()
        end = consumer.end_offsets([TopicPartition(topic, 0)])[TopicPartition(topic, 0)]
        consumer.close()
        return end


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "lines.txt"
    filler = b"x" * (LINE_BYTES - 9)
    path.write_bytes(b"".join(b"%08d" % i + filler + b"\n" for i in range(LINES)))
    return path


def _prefix(source, target, lines: int) -> None:
    """The first ``lines`` lines of ``source`` into ``target``."""
    with open(source, "rb") as f:
        target.write_bytes(b"".join(itertools.islice(f, lines)))


@pytest.mark.parametrize("form", ["text", "json"])
def test_produce_lines(benchmark, tmp_path, engine, text_file, form):
    lines = _lines(engine)
    source = tmp_path / f"input.{form}"
    if form == "text":
        _prefix(text_file, source, lines)
    else:  # what consume --format json prints for those lines
        staging = tmp_path / "staging"
        with pylog.open(staging) as log:
            log.create_topic("t")
        with open(text_file, "rb") as f:
            _pylog("produce", "t", "--dir", staging, "--acks", "1", "-q", stdin=f)
        with open(source, "wb") as out:
            _pylog(
                "consume",
                "t",
                "--dir",
                staging,
                "--from-beginning",
                "--format",
                "json",
                "--max-records",
                lines,
                stdout=out,
            )
    runs = itertools.count()
    rates: list[float] = []

    def fresh():
        path = tmp_path / f"log-{next(runs)}"
        with pylog.open(path, engine=engine) as log:
            log.create_topic("t")
        return (path,), {}

    def produce(path):
        with open(source, "rb") as f:
            started = time.perf_counter()
            _pylog(
                "produce",
                "t",
                "--dir",
                path,
                "--engine",
                engine,
                "--acks",
                "1",
                "--format",
                form,
                "-q",
                stdin=f,
            )
            rates.append(lines / (time.perf_counter() - started))
        assert _end_offset(path, "t") == lines

    benchmark.pedantic(produce, setup=fresh, rounds=3 if FULL else 1)
    benchmark.extra_info["lines_per_s"] = rates


@pytest.mark.parametrize("form", ["text", "json"])
def test_consume_lines(benchmark, tmp_path, engine, text_file, form):
    lines = _lines(engine)
    source = tmp_path / "input.txt"
    _prefix(text_file, source, lines)
    path = tmp_path / "log"
    with pylog.open(path, engine=engine) as log:
        log.create_topic("t")
    with open(source, "rb") as f:
        _pylog("produce", "t", "--dir", path, "--engine", engine, "--acks", "1", "-q", stdin=f)
    output = tmp_path / "output"
    rates: list[float] = []

    def consume():
        with open(output, "wb") as out:
            started = time.perf_counter()
            _pylog(
                "consume",
                "t",
                "--dir",
                path,
                "--engine",
                engine,
                "--from-beginning",
                "--format",
                form,
                stdout=out,
            )
            rates.append(lines / (time.perf_counter() - started))
        with open(output, "rb") as f:
            assert sum(1 for _ in f) == lines

    benchmark.pedantic(consume, rounds=3 if FULL else 1)
    benchmark.extra_info["lines_per_s"] = rates
    if form == "text":
        assert output.read_bytes() == source.read_bytes()  # the values, line for line
