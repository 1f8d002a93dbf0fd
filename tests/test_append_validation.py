"""append_raw validates every record before a byte is written (docs/partition-log.md, "append_raw"),
and the error kinds both engines report.

The rule under test: a batch ``append_raw`` accepts is one that ``records()`` and ``read_columns()``
decode in both engines; a batch it refuses raises ``CorruptBatchError`` or ``InvalidRecordError``
with a ``kind``, and leaves ``end_offset`` and every file of the partition byte for byte as it was.
Oracles: the other engine (same verdict, same class, same kind) and the files on disk.
"""

from __future__ import annotations

import pickle

import pytest
from helpers import skip_if_engine_missing

from pylog.errors import CorruptBatchError, CorruptKind, InvalidRecordError

# ---------------------------------------------------------------------------------------------
# error kinds: one closed set shared by both engines


def test_native_and_python_kinds_are_one_set():
    skip_if_engine_missing("native")
    from pylog import _native

    assert list(_native.CORRUPT_KINDS) == [k.value for k in CorruptKind]
    assert len(set(_native.CORRUPT_KINDS)) == len(CorruptKind)


def test_errors_keep_kind_path_position_through_pickling():
    e = CorruptBatchError("bad crc", "/x/00000000000000000000.log", 61, "crc")
    assert e.kind is CorruptKind.CRC
    assert str(e) == "bad crc (kind crc, /x/00000000000000000000.log, position 61)"
    back = pickle.loads(pickle.dumps(e))
    assert (type(back), back.args, back.path, back.position, back.kind) == (
        CorruptBatchError,
        ("bad crc",),
        e.path,
        61,
        CorruptKind.CRC,
    )
    plain = CorruptBatchError("no kind")
    assert plain.kind is None and str(plain) == "no kind"
    assert pickle.loads(pickle.dumps(plain)).kind is None
    inv = InvalidRecordError("lying maxTimestamp", CorruptKind.TIMESTAMP)
    assert str(inv) == "lying maxTimestamp (kind timestamp)"
    back = pickle.loads(pickle.dumps(inv))
    assert (type(back), back.args, back.kind) == (InvalidRecordError, ("lying maxTimestamp",), CorruptKind.TIMESTAMP)
    assert InvalidRecordError("plain").kind is None
    assert isinstance(inv, ValueError)
    with pytest.raises(ValueError):
        CorruptBatchError("x", kind="no such kind")
