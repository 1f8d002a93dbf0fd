"""``pylog verify`` speed: a whole partition checked (framing, CRC, every record decoded, indexes,
checkpoints), in MB/s of segment bytes, for 1 KiB and 100 B records.

Smoke scale (CI, ``--benchmark-disable``): 8 MiB. ``PYLOG_BENCH_SCALE=full``: about 1 GB, the
figure benchmarks/README.md quotes (``extra_info["mb_per_s"]``).
"""

from __future__ import annotations

import os

import pytest

from pylog.engine import open_partition
from pylog.verification import segment_bytes, verify_path

FULL = os.environ.get("PYLOG_BENCH_SCALE", "smoke") == "full"
TOTAL_BYTES = (1 << 30) if FULL else (8 << 20)
CODECS = ("none", "lz4")


def fill(path: str, value_bytes: int, records_per_batch: int) -> int:
    values = [os.urandom(value_bytes) for _ in range(records_per_batch)]
    batches = max(4, TOTAL_BYTES // (value_bytes * records_per_batch))
    with open_partition(path, engine="native" if _native_built() else "reference") as log:
        for i in range(batches):
            log.append(values, compression=CODECS[i % len(CODECS)])
        return log.end_offset


def _native_built() -> bool:
    try:
        from pylog import _native  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize(
    ("value_bytes", "records_per_batch"), [(1024, 100), (100, 1000)], ids=["1KiB", "100B"]
)
def test_verify_partition(benchmark, tmp_path, value_bytes, records_per_batch):
    path = str(tmp_path / "t-0")
    end = fill(path, value_bytes, records_per_batch)
    size = segment_bytes([path])

    def verify():
        report = verify_path(path)
        assert report.healthy, report.problems
        return report.partitions[0].records

    assert benchmark.pedantic(verify, rounds=3) == end
    if benchmark.stats is not None:  # absent with --benchmark-disable
        benchmark.extra_info["mb_per_s"] = round(size / 1e6 / benchmark.stats.stats.median, 1)
