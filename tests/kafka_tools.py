"""Apache Kafka's own tools as an independent judge of the files pylog writes.

``dump(files, *flags)`` runs Kafka's ``org.apache.kafka.tools.DumpLogSegments`` (the code behind
``kafka-dump-log.sh``) on segment and index files and returns its output; ``time_index_entries``
and ``batches`` parse what it printed. The jars come from Maven Central through
tools/kafka_jars.sh (cached outside the repository); ``PYLOG_KAFKA_LIBS`` names their directory
directly. Without Java or Maven the tests that need Kafka are skipped with the reason, except in
CI, where .ci/run fetches the jars and a missing Kafka is a failure.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import IN_CI

ROOT = Path(__file__).resolve().parents[1]
DUMP_LOG_SEGMENTS = "org.apache.kafka.tools.DumpLogSegments"


@functools.cache
def kafka_libs() -> tuple[str | None, str]:
    """(directory of Kafka's jars, "") or (None, why they are not available)."""
    given = os.environ.get("PYLOG_KAFKA_LIBS")
    if given:
        if any(Path(given).glob("kafka_*.jar")):
            return given, ""
        return None, f"PYLOG_KAFKA_LIBS={given} holds no Kafka jars"
    if shutil.which("java") is None:
        return None, "Java is not installed (Kafka's tools need Java 17+)"
    if shutil.which("mvn") is None and not IN_CI:
        return None, "Maven is not installed (tools/kafka_jars.sh fetches Kafka's jars with it)"
    done = subprocess.run(
        ["bash", str(ROOT / "tools" / "kafka_jars.sh")], capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        return None, f"tools/kafka_jars.sh failed: {done.stderr.strip()[-500:]}"
    return done.stdout.strip().splitlines()[-1], ""


def require_kafka() -> str:
    """The jar directory; skips the test (outside CI) or fails it (in CI) when unavailable."""
    libs, why = kafka_libs()
    if libs is None:
        if IN_CI:
            pytest.fail(f"Kafka's tools are required in CI: {why}")
        pytest.skip(why)
    return libs


def dump(files: list[Path], *flags: str) -> str:
    """Kafka's DumpLogSegments over ``files`` (one JVM); its stdout, after checking it ran."""
    libs = require_kafka()
    done = subprocess.run(
        [
            "java",
            "-Xmx256m",
            "-cp",
            f"{libs}/*",
            DUMP_LOG_SEGMENTS,
            *flags,
            "--files",
            ",".join(map(str, files)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # why both: DumpLogSegments reports a record it cannot decode with an exception on stderr
    assert done.returncode == 0 and "Exception" not in done.stderr, done.stderr[-3000:]
    return done.stdout


_TIME_ENTRY = re.compile(r"^timestamp: (-?\d+) offset: (-?\d+)$")
_BATCH = re.compile(
    r"^baseOffset: (\d+) lastOffset: (\d+) count: (\d+) .* CreateTime: (-?\d+) .* isvalid: (\w+)"
)


def sections(output: str) -> dict[str, list[str]]:
    """Output lines per dumped file (``Dumping <path>`` starts a section)."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in output.splitlines():
        if line.startswith("Dumping "):
            current = found.setdefault(Path(line.removeprefix("Dumping ").strip()).name, [])
        else:
            current.append(line)
    return found


def time_index_entries(lines: list[str]) -> list[tuple[int, int]]:
    """(timestamp, offset) of every entry Kafka read from a ``.timeindex``."""
    return [(int(m[1]), int(m[2])) for line in lines if (m := _TIME_ENTRY.match(line))]


def batches(lines: list[str]) -> list[tuple[int, int, int, int, bool]]:
    """(baseOffset, lastOffset, count, maxTimestamp, isvalid) of every batch Kafka read."""
    return [
        (int(m[1]), int(m[2]), int(m[3]), int(m[4]), m[5] == "true")
        for line in lines
        if (m := _BATCH.match(line))
    ]
