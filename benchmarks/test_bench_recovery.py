"""Recovery after an unclean shutdown: the CRC scan of an unflushed log on open."""

from __future__ import annotations

from pylog.bench import BATCH_RECORDS, fill_log, make_unclean, make_values
from pylog.engine import open_partition


def test_recovery_scan(benchmark, engine, tmp_path, scale):
    path = str(tmp_path / "log-0")
    batches = max(8, scale.recovery_bytes // (BATCH_RECORDS * 110))
    end = fill_log(path, batches, BATCH_RECORDS, make_values(BATCH_RECORDS), **{"segment.bytes": 8 << 20})

    def setup():
        make_unclean(path)
        return (), {}

    def recover():
        log = open_partition(path, engine=engine)
        try:
            return log.end_offset
        finally:
            log.close()

    assert benchmark.pedantic(recover, setup=setup, rounds=3) == end
