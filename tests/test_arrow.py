"""``Columns`` as Arrow data (pylog/arrow.py): the PyCapsule interface, zero-copy, for both engines.

Each test reads real columns through the ``engine`` fixture and checks what pyarrow (and, when
installed, polars and duckdb) sees against the numpy columns: values and nulls, buffer addresses
(zero-copy), lifetime after the ``Columns`` is gone, and that capsules nobody imported release
everything they held.
"""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest

from pylog.partition import Columns

pa = pytest.importorskip("pyarrow")

SCHEMA = pa.struct(
    [
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("key", pa.large_binary()),
        pa.field("value", pa.large_binary()),
    ]
)

KEYS = [None, b"k1", b"", None, b"key-4" * 50, b"k5"]
VALUES = [b"v0", None, b"", b"x" * 3000, None, b"v5"]
TIMESTAMPS = [1_700_000_000_000 + i * 7 for i in range(len(VALUES))]


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def as_rows(columns: Columns) -> list[tuple]:
    return [
        (int(columns.offsets[i]), int(columns.timestamps[i]), columns.key(i), columns.value(i))
        for i in range(columns.num_records)
    ]


def arrow_rows(struct_array) -> list[tuple]:
    offsets = struct_array.field("offset").to_pylist()
    timestamps = struct_array.field("timestamp").cast(pa.int64()).to_pylist()
    return list(
        zip(
            offsets,
            timestamps,
            struct_array.field("key").to_pylist(),
            struct_array.field("value").to_pylist(),
            strict=True,
        )
    )


@pytest.fixture
def columns(open_log) -> Columns:
    log = open_log()
    log.append([b"first"], keys=[b"k"], timestamps_ms=[1_600_000_000_000])
    log.append(VALUES, keys=KEYS, timestamps_ms=TIMESTAMPS, compression="lz4")
    log.roll()  # the columns span a sealed and the active segment
    log.append([b"last", None], keys=[None, None], timestamps_ms=[5, 6])
    cols = log.read_columns(0, 100)
    assert cols.num_records == 9
    return cols


def test_pa_array_matches_the_columns(columns):
    array = pa.array(columns)
    assert array.type == SCHEMA
    assert len(array) == columns.num_records
    assert array.null_count == 0
    assert arrow_rows(array) == as_rows(columns)
    assert array.field("key").null_count == int(columns.key_null.sum()) == 4
    assert array.field("value").null_count == int(columns.value_null.sum()) == 3
    array.validate(full=True)


def test_record_batch_reader_and_table(columns):
    reader = pa.RecordBatchReader.from_stream(columns)
    assert reader.schema == pa.schema(list(SCHEMA))
    table = reader.read_all()
    assert table.num_rows == columns.num_records
    batch = table.combine_chunks().to_batches()[0]
    assert arrow_rows(batch.to_struct_array()) == as_rows(columns)
    # pa.table reads a tuple as a list of columns before it looks for the protocol: as_arrow()
    table = pa.table(columns.as_arrow())
    assert table.column("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert table.column("offset").to_pylist() == columns.offsets.tolist()
    assert table.column("value").to_pylist() == [columns.value(i) for i in range(columns.num_records)]
    assert pa.chunked_array(columns).combine_chunks().equals(pa.array(columns))


def test_the_data_buffers_are_not_copied(columns):
    array = pa.array(columns)
    _, offsets_data = array.field("offset").buffers()
    _, timestamps_data = array.field("timestamp").buffers()
    key_validity, key_offsets, key_data = array.field("key").buffers()
    _, value_offsets, value_data = array.field("value").buffers()
    assert offsets_data.address == address(columns.offsets)
    assert timestamps_data.address == address(columns.timestamps)
    assert key_offsets.address == address(columns.key_offsets)
    assert key_data.address == address(columns.keys)
    assert value_offsets.address == address(columns.value_offsets)
    assert value_data.address == address(columns.values)
    # the validity bitmap is the one buffer built: packed from the bool mask
    bits = np.frombuffer(key_validity, dtype=np.uint8)
    assert np.array_equal(np.unpackbits(bits, bitorder="little")[: columns.num_records], ~columns.key_null)


def test_the_arrow_data_outlives_the_columns(open_log):
    log = open_log()
    log.append([b"v" * 100 + bytes([i]) for i in range(200)], keys=[None] * 199 + [b"z"])
    cols = log.read_columns(0, 1000)
    expected = as_rows(cols)
    array = pa.array(cols)
    stream = pa.RecordBatchReader.from_stream(cols)
    log.close()
    del cols
    gc.collect()
    assert arrow_rows(array) == expected
    assert arrow_rows(stream.read_next_batch().to_struct_array()) == expected


def test_unimported_capsules_release_everything(columns):
    held = [columns.offsets, columns.timestamps, columns.keys, columns.values, columns.value_offsets]
    baseline = [sys.getrefcount(a) for a in held]
    schema_capsule, array_capsule = columns.__arrow_c_array__()
    stream_capsule = columns.__arrow_c_stream__()
    assert all(sys.getrefcount(a) > b for a, b in zip(held, baseline, strict=True))  # held by the exports
    del schema_capsule, array_capsule, stream_capsule
    assert [sys.getrefcount(a) for a in held] == baseline
    # and an import followed by the consumer dropping its data gives them back too
    array = pa.array(columns)
    reader = pa.RecordBatchReader.from_stream(columns)
    del array, reader
    gc.collect()
    assert [sys.getrefcount(a) for a in held] == baseline


def test_empty_columns(open_log):
    log = open_log()
    empty = log.read_columns(0, 10)
    assert empty.num_records == 0
    array = pa.array(empty)
    assert array.type == SCHEMA and len(array) == 0
    array.validate(full=True)
    assert pa.RecordBatchReader.from_stream(empty).read_all().num_rows == 0
    log.append([b"a"])
    assert len(pa.array(log.read_columns(1, 10))) == 0  # at the end of a non-empty log
    assert len(pa.array(log.read_columns(0, 0))) == 0


def test_compressed_batches_of_every_codec(open_log):
    log = open_log()
    expected = []
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        values = [codec.encode() * (i + 1) if i % 3 else None for i in range(50)]
        keys = [str(i).encode() if i % 2 else None for i in range(50)]
        base = log.append(values, keys=keys, timestamps_ms=list(range(1000, 1050)), compression=codec)
        expected += [(base + i, 1000 + i, keys[i], values[i]) for i in range(50)]
    cols = log.read_columns(0, 1000)
    assert as_rows(cols) == expected
    assert arrow_rows(pa.array(cols)) == expected


def test_requested_schema(columns):
    raw_time = pa.struct([*list(SCHEMA)[:1], pa.field("timestamp", pa.int64()), *list(SCHEMA)[2:]])
    array = pa.array(columns, type=raw_time)
    assert array.type == raw_time
    assert array.field("timestamp").to_pylist() == columns.timestamps.tolist()
    assert array.field("timestamp").buffers()[1].address == address(columns.timestamps)
    other_zone = pa.struct(
        [
            *list(SCHEMA)[:1],
            pa.field("timestamp", pa.timestamp("ms", tz="Europe/Paris"), False),
            *list(SCHEMA)[2:],
        ]
    )
    assert pa.array(columns, type=other_zone).type == other_zone
    assert pa.array(columns, type=SCHEMA).type == SCHEMA
    nullable = pa.struct([pa.field(f.name, f.type) for f in SCHEMA])  # pa.struct's default: all nullable
    assert pa.array(columns, type=nullable).type == nullable
    reader = pa.RecordBatchReader.from_stream(columns, schema=pa.schema(list(raw_time)))
    assert reader.schema.field("timestamp").type == pa.int64()


@pytest.mark.parametrize(
    ("requested", "message"),
    [
        (pa.struct([pa.field("offset", pa.int64())]), "cannot|has"),
        (pa.struct([pa.field(n, pa.int64()) for n in ("offset", "timestamp", "key", "value")]), "key field"),
        (
            pa.struct([*list(SCHEMA)[:2], pa.field("key", pa.binary()), list(SCHEMA)[3]]),
            "key field of format 'z'",
        ),
        (
            pa.struct([*list(SCHEMA)[:1], pa.field("timestamp", pa.timestamp("us")), *list(SCHEMA)[2:]]),
            "timestamp",
        ),
        (
            pa.struct([*list(SCHEMA)[:2], pa.field("key", pa.large_binary(), False), list(SCHEMA)[3]]),
            "non-nullable",
        ),
        (pa.int64(), "has l<>"),
    ],
)
def test_an_incompatible_requested_schema_is_refused(columns, requested, message):
    with pytest.raises(ValueError, match=message):
        pa.array(columns, type=requested)
    with pytest.raises(ValueError, match=message):
        columns.__arrow_c_stream__(requested.__arrow_c_schema__())
    with pytest.raises(TypeError, match="arrow_schema"):
        columns.__arrow_c_array__(object())


def test_columns_stays_a_plain_named_tuple(columns):
    assert len(columns) == 8
    replaced = columns._replace(values=columns.values.copy())
    assert isinstance(replaced, Columns) and len(replaced) == 8
    assert Columns._make(list(columns)).offsets is columns.offsets
    assert arrow_rows(pa.array(replaced)) == as_rows(columns)


def test_malformed_hand_built_columns_are_refused(columns):
    short = columns._replace(value_offsets=columns.value_offsets[:-1])
    with pytest.raises(ValueError, match="value_offsets"):
        pa.array(short)
    past_end = columns._replace(values=columns.values[:-1])
    with pytest.raises(ValueError, match="within"):
        pa.array(past_end)
    decreasing = columns._replace(key_offsets=columns.key_offsets[::-1].copy())
    with pytest.raises(ValueError, match="key_offsets"):
        columns.__arrow_c_stream__.__func__(decreasing)
    with pytest.raises(ValueError, match="timestamps"):
        pa.array(columns._replace(timestamps=columns.timestamps[:-1]))
    # a strided or differently typed array is converted (copied), and exports the right values
    widened = columns._replace(offsets=columns.offsets.astype(np.int32))
    assert arrow_rows(pa.array(widened)) == as_rows(columns)


def test_polars_takes_the_columns(columns):
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame(columns.as_arrow())
    assert frame.columns == ["offset", "timestamp", "key", "value"]
    assert frame["offset"].to_list() == columns.offsets.tolist()
    assert frame["key"].to_list() == [columns.key(i) for i in range(columns.num_records)]
    assert frame["timestamp"].dtype == pl.Datetime("ms", "UTC")


def test_duckdb_takes_the_columns(columns):
    duckdb = pytest.importorskip("duckdb")
    source = columns.as_arrow()  # noqa: F841 - read by name through duckdb's replacement scan
    rows = duckdb.sql(
        'select "offset", value from source where value is not null order by "offset"'
    ).fetchall()
    expected = [
        (int(o), columns.value(i)) for i, o in enumerate(columns.offsets) if not columns.value_null[i]
    ]
    assert rows == expected
