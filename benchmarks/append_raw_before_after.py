"""append_raw of 1,000-record batches (100-byte values): the cost of validating every record.

Usage (release build of this tree in place; optionally a release build of an older tree)::

    tools/build_inplace.sh
    PYTHONPATH=$PWD python3 benchmarks/append_raw_before_after.py [--before path/to/old/_native.so]

Contenders run interleaved call by call in one process (page-cache swings on this machine make
separate runs incomparable), each appending to its own fresh log, and the median of each is
printed:

- ``native``: this tree's ``append_raw`` (frames, CRC, then decodes and checks every record);
- ``native-before``: the ``_native`` module at ``--before`` (an older build), same batch;
- ``reference`` / ``reference-before``: the reference engine with its validator, and with the
  validator swapped for the header-only checks append_raw made before;
- ``validate``: the reference's or native's validation alone is not exposed, so its share is
  ``(native - native-before) / native``.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import statistics
import tempfile
import time

from pylog.bench import BATCH_RECORDS, make_values
from pylog.engine import open_partition
from pylog.errors import CorruptBatchError, CorruptKind
from pylog.partition import Record
from pylog.reference import batch as record_batch
from pylog.reference import validator

TS = 1_700_000_000_000


def header_only_checks(batch):
    """What the reference's append_raw checked before every record was validated."""
    header = record_batch.parse_header(batch, 0)
    if header.length != len(batch) - 12 or header.magic != 2:
        raise CorruptBatchError("framing", kind=CorruptKind.FRAMING)
    record_batch.verify_crc(batch, 0, header)
    if header.records_count <= 0 or header.last_offset_delta != header.records_count - 1:
        raise CorruptBatchError("count", kind=CorruptKind.RECORD_COUNT)
    return header


def load_native(path: str):
    loader = importlib.machinery.ExtensionFileLoader("pylog_before._native", path)
    spec = importlib.util.spec_from_file_location("pylog_before._native", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", help="an older build of pylog/_native*.so")
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--codec", default="none")
    args = parser.parse_args()
    values = make_values(BATCH_RECORDS)
    n = len(values)
    batch = record_batch.encode_batch(
        0, values, [None] * n, [[] for _ in range(n)], [TS + i for i in range(n)], args.codec, None
    )
    root = tempfile.mkdtemp(prefix="append-raw-")
    config = {"segment.bytes": 1 << 30}
    logs = {
        "native": open_partition(os.path.join(root, "native-0"), engine="native", config=config),
        "reference": open_partition(os.path.join(root, "reference-0"), engine="reference", config=config),
    }
    calls = {name: log.append_raw for name, log in logs.items()}
    if args.before:
        old = load_native(args.before)
        before = old.PartitionLog(
            os.path.join(root, "native-before-0"), logs["native"].config.to_kafka_dict(), Record
        )
        calls["native-before"] = before.append_raw
    with_validator = validator.validate_for_append

    def reference_before(b):
        validator.validate_for_append = header_only_checks
        try:
            return logs["reference"].append_raw(b)
        finally:
            validator.validate_for_append = with_validator

    calls["reference-before"] = reference_before
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(args.calls):
        # why a rotating order: no contender always runs right after another one's write
        names = list(calls)
        names = names[i % len(names) :] + names[: i % len(names)]
        for name in names:
            t = time.perf_counter_ns()
            calls[name](batch)
            times[name].append((time.perf_counter_ns() - t) / 1000)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(
        f"append_raw of one {len(batch)}-byte batch ({n} records, {args.codec}), median of {args.calls} calls:"
    )
    for name, us in med.items():
        print(f"  {name:17} {us:9.1f} us")
    if "native-before" in med:
        share = (med["native"] - med["native-before"]) / med["native"]
        print(f"  native validation share of the call: {share:.1%}")
    share = (med["reference"] - med["reference-before"]) / med["reference"]
    print(f"  reference validation share of the call: {share:.1%}")
    want = args.calls * n
    assert logs["native"].end_offset == want, "native end offset"
    assert logs["reference"].end_offset == 2 * want, "reference end offset (both variants)"
    if args.before:
        assert before.end_offset == want, "native-before end offset"
        before.close()
    for log in logs.values():
        log.close()


if __name__ == "__main__":
    main()
