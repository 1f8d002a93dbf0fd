"""Arrow export of ``Columns`` through the Arrow PyCapsule interface (pure Python, ctypes).

``Columns.__arrow_c_array__`` and ``Columns.__arrow_c_stream__`` call into this module, so
pyarrow, polars, duckdb and any other consumer of the interface take the columns of
``read_columns`` from either engine without copying the data buffers and without pylog
depending on pyarrow. Stdlib only (ctypes): the reference engine must work without the native
extension, and the export is a handful of pointers either way.

Format (the Arrow C data interface, https://arrow.apache.org/docs/format/CDataInterface.html):
one struct array (a record batch), length n, no nulls at the top level, children

    offset     int64, not nullable               buffers: (none, Columns.offsets)
    timestamp  timestamp[ms, tz=UTC], not null   buffers: (none, Columns.timestamps)
    key        large_binary, nullable            buffers: (bitmap, Columns.key_offsets, Columns.keys)
    value      large_binary, nullable            buffers: (bitmap, Columns.value_offsets, Columns.values)

- ``timestamp`` is Kafka's record timestamp, milliseconds since the Unix epoch, so it is exported as
  an instant in UTC (Arrow's timestamp without a time zone means "wall clock of an unknown zone").
  A consumer that wants the raw numbers asks for ``int64`` in ``requested_schema`` (or casts: the
  buffer is the same either way); ``timestamp[ms]`` with any other zone is honoured too.
- ``key``/``value`` are ``large_binary`` because ``Columns`` keeps int64 offsets (Arrow's binary
  type has int32 offsets and would need a converted copy).
- Zero-copy: every data and offset buffer is the numpy array's own memory (for the native engine
  that is the Rust-owned buffer behind ``np.frombuffer``). The only buffers built here are the
  validity bitmaps, packed from the ``bool`` null masks (``np.packbits``, n/8 bytes; none for a
  column without nulls, whose bitmap pointer is NULL as the interface allows).
- Checked before export, so a consumer never reads out of bounds: lengths agree (n and n + 1), offsets
  start at >= 0, never decrease and end within the data. A ``Columns`` whose arrays have another dtype
  or are not contiguous (one rebuilt by hand with ``_replace``) is converted, which copies that array.

Lifetime (the interface's move semantics): each exported struct holds, through ``private_data``, a
key into ``_LIVE`` that keeps the numpy arrays, bitmaps and the structs' own memory alive. The
consumer moves the struct out of the capsule and calls ``release`` when it drops the data; a capsule
destroyed without having been consumed releases its struct itself. So the memory stays valid exactly
as long as some consumer (or capsule) holds it, and deleting the ``Columns`` does not end it.

``requested_schema``: ``None`` gives the format above. A struct of the same four fields in the same
order is honoured where the change is free: ``timestamp`` as ``int64`` or as ``timestamp[ms]`` with
any zone, and any field's nullability (a non-nullable key or value only when it holds no null).
Anything else raises ``ValueError`` before any capsule exists (exact or refused, not the interface's
"best effort", for the reason in ``_refusal``); the consumer can cast the result itself. A
``requested_schema`` that is not an ``arrow_schema`` capsule raises ``TypeError``.

Thread-safety: release callbacks may come from any thread; ctypes takes the GIL for them, and
``_LIVE`` is only touched under it. Limits of callbacks written in Python: they must not come after
the interpreter finalized (no consumer keeps Arrow memory past that in practice), and one that
comes while the consumer has a Python exception pending (a consumer's own error path dropping the
data) replaces that exception with a ``SystemError`` (ctypes cannot keep it) and keeps that export's
memory held (a leak, never a dangling pointer). Refusing an unmet ``requested_schema`` up front keeps
the common case (a consumer casting our data and failing) off that path.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
from ctypes import CFUNCTYPE, PYFUNCTYPE, Structure, c_char_p, c_int, c_int64, c_void_p
from typing import Any, NamedTuple

import numpy as np

#: the capsule names the PyCapsule interface prescribes
SCHEMA_CAPSULE = b"arrow_schema"
ARRAY_CAPSULE = b"arrow_array"
STREAM_CAPSULE = b"arrow_array_stream"

#: ArrowSchema.flags bit: the field may hold nulls
FLAG_NULLABLE = 2

_INT64 = b"l"
_TIMESTAMP_UTC = b"tsm:UTC"
_LARGE_BINARY = b"Z"
_STRUCT = b"+s"

_Release = CFUNCTYPE(None, c_void_p)
_GetSchema = CFUNCTYPE(c_int, c_void_p, c_void_p)
_GetNext = CFUNCTYPE(c_int, c_void_p, c_void_p)
_GetLastError = CFUNCTYPE(c_void_p, c_void_p)


class ArrowSchema(Structure):
    """``struct ArrowSchema`` of the C data interface (pointers kept as ``void*``)."""

    _fields_ = [
        ("format", c_void_p),
        ("name", c_void_p),
        ("metadata", c_void_p),
        ("flags", c_int64),
        ("n_children", c_int64),
        ("children", c_void_p),  # struct ArrowSchema**
        ("dictionary", c_void_p),
        ("release", _Release),
        ("private_data", c_void_p),
    ]


class ArrowArray(Structure):
    """``struct ArrowArray`` of the C data interface."""

    _fields_ = [
        ("length", c_int64),
        ("null_count", c_int64),
        ("offset", c_int64),
        ("n_buffers", c_int64),
        ("n_children", c_int64),
        ("buffers", c_void_p),  # const void**
        ("children", c_void_p),  # struct ArrowArray**
        ("dictionary", c_void_p),
        ("release", _Release),
        ("private_data", c_void_p),
    ]


class ArrowArrayStream(Structure):
    """``struct ArrowArrayStream`` of the C stream interface."""

    _fields_ = [
        ("get_schema", _GetSchema),
        ("get_next", _GetNext),
        ("get_last_error", _GetLastError),
        ("release", _Release),
        ("private_data", c_void_p),
    ]


class _Field(NamedTuple):
    name: bytes
    format: bytes
    flags: int


#: the exported layout, field by field (``_LAYOUT[i]`` describes child i)
_LAYOUT = (
    _Field(b"offset", _INT64, 0),
    _Field(b"timestamp", _TIMESTAMP_UTC, 0),
    _Field(b"key", _LARGE_BINARY, FLAG_NULLABLE),
    _Field(b"value", _LARGE_BINARY, FLAG_NULLABLE),
)
_DESCRIPTION = (
    "struct<offset: int64, timestamp: timestamp[ms, tz=UTC], key: large_binary, value: large_binary>"
)


# The C API calls, as private function objects (setting argtypes on ``ctypes.pythonapi``'s shared
# ones would change them for every other user in the process). PYFUNCTYPE keeps the GIL.
_capsule_new = PYFUNCTYPE(ctypes.py_object, c_void_p, c_char_p, c_void_p)(("PyCapsule_New", ctypes.pythonapi))
_capsule_get_pointer = PYFUNCTYPE(c_void_p, ctypes.py_object, c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi)
)
_capsule_is_valid = PYFUNCTYPE(c_int, ctypes.py_object, c_char_p)(("PyCapsule_IsValid", ctypes.pythonapi))

#: private_data key -> everything one exported struct needs alive until its release
_LIVE: dict[int, Any] = {}
#: id(capsule) -> the struct the capsule points to, until the capsule is destroyed
_CAPSULE_STRUCTS: dict[int, Structure] = {}
_keys = itertools.count(1)


def _keep(resources: Any) -> int:
    key = next(_keys)
    _LIVE[key] = resources
    return key


def _address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


#: pointer-array types by length (building ``c_void_p * n`` on each export costs more than using it)
_POINTERS = tuple(c_void_p * n for n in range(5))
_NULL_RELEASE = _Release()
#: NUL-terminated copies of the default layout's names and formats, shared by every export (never
#: freed: consumers only read them while the schema lives, and the module outlives the schemas)
_STRINGS = {b: ctypes.create_string_buffer(b) for b in (b"", _STRUCT, _INT64, _TIMESTAMP_UTC, _LARGE_BINARY)}


def _c_string(value: bytes, keep: list) -> int:
    buffer = _STRINGS.get(value)
    if buffer is None:  # a requested format such as another time zone: owned by this export
        buffer = ctypes.create_string_buffer(value)
        keep.append(buffer)
    return ctypes.addressof(buffer)


# ---------------------------------------------------------------------------------------------
# buffers


class _ChildBuffers(NamedTuple):
    null_count: int
    buffers: tuple[int, ...]  # addresses, 0 for an absent bitmap
    keep: tuple[np.ndarray, ...]


def _contiguous(array: Any, dtype: np.dtype) -> np.ndarray:
    """``array`` itself when it already is a contiguous ndarray of ``dtype`` (what both engines
    return: the fast path), else a converted copy."""
    if type(array) is np.ndarray and array.dtype == dtype and array.flags.c_contiguous:
        return array
    return np.ascontiguousarray(array, dtype=dtype)


_I64, _U8, _BOOL = np.dtype(np.int64), np.dtype(np.uint8), np.dtype(np.bool_)


def _int64_column(array: np.ndarray, name: str, length: int) -> np.ndarray:
    array = _contiguous(array, _I64)
    if array.ndim != 1 or len(array) != length:
        raise ValueError(f"Columns.{name} must be a 1-D array of {length} int64, got shape {array.shape}")
    return array


def _binary_column(columns: Any, field: str, n: int) -> _ChildBuffers:
    data = _contiguous(getattr(columns, f"{field}s"), _U8).reshape(-1)
    offsets = np.asarray(getattr(columns, f"{field}_offsets"))
    if n == 0 and offsets.size == 0:
        offsets = np.zeros(1, dtype=np.int64)
    offsets = _int64_column(offsets, f"{field}_offsets", n + 1)
    null = _contiguous(getattr(columns, f"{field}_null"), _BOOL)
    if null.ndim != 1 or len(null) != n:
        raise ValueError(f"Columns.{field}_null must be a 1-D array of {n} bool, got shape {null.shape}")
    if (
        int(offsets[0]) < 0
        or int(offsets[-1]) > len(data)
        or (n > 1 and bool((offsets[1:] < offsets[:-1]).any()))
    ):
        raise ValueError(
            f"Columns.{field}_offsets must start at >= 0, never decrease and end within the "
            f"{len(data)} bytes of Columns.{field}s"
        )
    null_count = int(np.count_nonzero(null))
    if null_count:
        bitmap = np.packbits(~null, bitorder="little")  # Arrow's validity: bit i set = slot i valid
        return _ChildBuffers(
            null_count, (_address(bitmap), _address(offsets), _address(data)), (bitmap, offsets, data)
        )
    return _ChildBuffers(0, (0, _address(offsets), _address(data)), (offsets, data))


def _buffers(columns: Any) -> tuple[int, tuple[_ChildBuffers, ...]]:
    """The checked buffers of each child, in ``_LAYOUT`` order."""
    offsets = np.asarray(columns.offsets)
    n = len(offsets) if offsets.ndim == 1 else -1
    if n < 0:
        raise ValueError(f"Columns.offsets must be a 1-D array, got shape {offsets.shape}")
    offsets = _int64_column(offsets, "offsets", n)
    timestamps = _int64_column(columns.timestamps, "timestamps", n)
    return n, (
        _ChildBuffers(0, (0, _address(offsets)), (offsets,)),
        _ChildBuffers(0, (0, _address(timestamps)), (timestamps,)),
        _binary_column(columns, "key", n),
        _binary_column(columns, "value", n),
    )


# ---------------------------------------------------------------------------------------------
# filling the C structs (each owns its resources through private_data, freed by its release)


def _fill_schema(
    target: ArrowSchema, fmt: bytes, name: bytes, flags: int, children: tuple[_Field, ...]
) -> None:
    strings: list = []
    child_structs = [ArrowSchema() for _ in children]
    for child, field in zip(child_structs, children, strict=True):
        _fill_schema(child, field.format, field.name, field.flags, ())
    child_pointers = _POINTERS[len(children)](*(ctypes.addressof(c) for c in child_structs))
    target.format = _c_string(fmt, strings)
    target.name = _c_string(name, strings)
    target.metadata = None
    target.flags = flags
    target.n_children = len(children)
    target.children = ctypes.addressof(child_pointers) if children else None
    target.dictionary = None
    target.private_data = _keep((strings, child_structs, child_pointers))
    target.release = _release_schema_callback


def _release_schema(address: int) -> None:
    schema = ArrowSchema.from_address(address)
    if schema.n_children:
        for child in _POINTERS[schema.n_children].from_address(schema.children):
            if ArrowSchema.from_address(child).release:
                _release_schema(child)
    _LIVE.pop(schema.private_data, None)
    schema.release = _NULL_RELEASE


def _fill_array(
    target: ArrowArray, length: int, null_count: int, buffers: tuple[int, ...], keep: Any, children=()
) -> None:
    buffer_pointers = _POINTERS[len(buffers)](*(b or None for b in buffers))
    child_structs = [ArrowArray() for _ in children]
    for child, spec in zip(child_structs, children, strict=True):
        _fill_array(child, length, spec.null_count, spec.buffers, spec.keep)
    child_pointers = _POINTERS[len(children)](*(ctypes.addressof(c) for c in child_structs))
    target.length = length
    target.null_count = null_count
    target.offset = 0
    target.n_buffers = len(buffers)
    target.n_children = len(children)
    target.buffers = ctypes.addressof(buffer_pointers)
    target.children = ctypes.addressof(child_pointers) if children else None
    target.dictionary = None
    target.private_data = _keep((keep, buffer_pointers, child_structs, child_pointers))
    target.release = _release_array_callback


def _release_array(address: int) -> None:
    array = ArrowArray.from_address(address)
    if array.n_children:
        for child in _POINTERS[array.n_children].from_address(array.children):
            if ArrowArray.from_address(child).release:
                _release_array(child)
    _LIVE.pop(array.private_data, None)
    array.release = _NULL_RELEASE


def _fill_columns_schema(target: ArrowSchema, layout: tuple[_Field, ...]) -> None:
    _fill_schema(target, _STRUCT, b"", 0, layout)


def _fill_columns_array(target: ArrowArray, buffers: tuple[int, tuple[_ChildBuffers, ...]]) -> None:
    n, children = buffers
    _fill_array(target, n, 0, (0,), None, children)  # the struct itself has no nulls: no bitmap


class _Stream:
    """What one exported stream holds: the checked buffers of its one batch, and its layout."""

    def __init__(self, buffers: tuple[int, tuple[_ChildBuffers, ...]], layout: tuple[_Field, ...]):
        self.buffers: tuple[int, tuple[_ChildBuffers, ...]] | None = buffers
        self.layout = layout
        self.last_error = ctypes.create_string_buffer(1)

    def fail(self, error: BaseException) -> int:
        self.last_error = ctypes.create_string_buffer(f"{type(error).__name__}: {error}".encode())
        return errno.ENOMEM if isinstance(error, MemoryError) else errno.EINVAL


def _stream(address: int) -> _Stream:
    return _LIVE[ArrowArrayStream.from_address(address).private_data]


def _stream_get_schema(stream_address: int, out: int) -> int:
    stream = _stream(stream_address)
    try:
        _fill_columns_schema(ArrowSchema.from_address(out), stream.layout)
    except BaseException as error:  # a C caller cannot receive a Python exception
        return stream.fail(error)
    return 0


def _stream_get_next(stream_address: int, out: int) -> int:
    stream = _stream(stream_address)
    target = ArrowArray.from_address(out)
    try:
        if stream.buffers is None:  # the one batch was taken: end of stream
            target.release = _NULL_RELEASE
            return 0
        _fill_columns_array(target, stream.buffers)
        stream.buffers = None
    except BaseException as error:  # a C caller cannot receive a Python exception
        return stream.fail(error)
    return 0


def _stream_get_last_error(stream_address: int) -> int | None:
    stream = _stream(stream_address)
    return ctypes.addressof(stream.last_error) if stream.last_error.value else None


def _release_stream(address: int) -> None:
    stream = ArrowArrayStream.from_address(address)
    _LIVE.pop(stream.private_data, None)
    stream.release = _NULL_RELEASE


# The C callbacks; module globals so the function pointers outlive every export.
_release_schema_callback = _Release(_release_schema)
_release_array_callback = _Release(_release_array)
_release_stream_callback = _Release(_release_stream)
_get_schema_callback = _GetSchema(_stream_get_schema)
_get_next_callback = _GetNext(_stream_get_next)
_get_last_error_callback = _GetLastError(_stream_get_last_error)


# ---------------------------------------------------------------------------------------------
# capsules


def _destroy_capsule(capsule_address: int, release) -> None:
    struct = _CAPSULE_STRUCTS.pop(capsule_address, None)
    if struct is not None and struct.release:  # not consumed (a consumer moves it out and nulls release)
        release(ctypes.addressof(struct))


_destroy_schema_capsule = CFUNCTYPE(None, c_void_p)(
    lambda capsule: _destroy_capsule(capsule, _release_schema)
)
_destroy_array_capsule = CFUNCTYPE(None, c_void_p)(lambda capsule: _destroy_capsule(capsule, _release_array))
_destroy_stream_capsule = CFUNCTYPE(None, c_void_p)(
    lambda capsule: _destroy_capsule(capsule, _release_stream)
)


def _capsule(struct: Structure, name: bytes, destructor) -> object:
    capsule = _capsule_new(ctypes.addressof(struct), name, ctypes.cast(destructor, c_void_p).value)
    _CAPSULE_STRUCTS[id(capsule)] = struct
    return capsule


# ---------------------------------------------------------------------------------------------
# requested_schema


def _requested_layout(requested_schema: object | None, null_counts: tuple[int, ...]) -> tuple[_Field, ...]:
    """The layout to export for ``requested_schema`` (see the module docstring)."""
    if requested_schema is None:
        return _LAYOUT
    if not _capsule_is_valid(requested_schema, SCHEMA_CAPSULE):
        raise TypeError(
            f"requested_schema must be an 'arrow_schema' PyCapsule or None, not {requested_schema!r}"
        )
    schema = ArrowSchema.from_address(_capsule_get_pointer(requested_schema, SCHEMA_CAPSULE))
    children = (c_void_p * schema.n_children).from_address(schema.children) if schema.n_children > 0 else ()
    requested = [ArrowSchema.from_address(c) for c in children]
    names = [ctypes.string_at(c.name) if c.name else b"" for c in requested]
    formats = [ctypes.string_at(c.format) for c in requested]
    shown = ", ".join(
        f"{n.decode(errors='replace')}: {f.decode(errors='replace')}"
        for n, f in zip(names, formats, strict=True)
    )
    top = ctypes.string_at(schema.format)
    if top != _STRUCT or names != [f.name for f in _LAYOUT]:
        raise _refusal(f"{top.decode(errors='replace')}<{shown}>")
    layout = []
    for field, fmt, child, nulls in zip(_LAYOUT, formats, requested, null_counts, strict=True):
        nullable = bool(child.flags & FLAG_NULLABLE)
        if fmt != field.format and not (
            field.name == b"timestamp" and (fmt == _INT64 or fmt.startswith(b"tsm:"))
        ):
            raise _refusal(f"a {field.name.decode()} field of format {fmt.decode(errors='replace')!r}")
        if nulls and not nullable:
            raise ValueError(
                f"requested_schema makes {field.name.decode()} non-nullable, but it holds {nulls} nulls"
            )
        layout.append(_Field(field.name, fmt, FLAG_NULLABLE if nullable else 0))
    return tuple(layout)


def _refusal(what: str) -> ValueError:
    # why exact-or-refuse rather than the interface's "best effort" (export the default, let the
    # consumer cast): a consumer that casts and fails drops our capsules while its exception is
    # pending, and a ctypes callback cannot preserve that exception (the user would see a
    # SystemError). Refusing first keeps every failure a plain Python exception.
    return ValueError(
        f"pylog Columns export as {_DESCRIPTION} (timestamp may also be int64 or timestamp[ms] with any "
        f"zone, and nullability may be chosen); the requested schema has {what}: request a compatible "
        "schema and cast the result instead"
    )


# ---------------------------------------------------------------------------------------------
# the protocol methods (``Columns`` delegates to these)


def _checked(
    columns: Any, requested_schema: object | None
) -> tuple[tuple[int, tuple[_ChildBuffers, ...]], tuple[_Field, ...]]:
    """The checked buffers of ``columns`` and the layout to export them as (raises before any
    capsule exists)."""
    buffers = _buffers(columns)
    return buffers, _requested_layout(requested_schema, tuple(child.null_count for child in buffers[1]))


def export_array(columns: Any, requested_schema: object | None = None) -> tuple[object, object]:
    """``__arrow_c_array__``: (``arrow_schema`` capsule, ``arrow_array`` capsule) of ``columns``."""
    buffers, layout = _checked(columns, requested_schema)
    schema, array = ArrowSchema(), ArrowArray()
    _fill_columns_array(array, buffers)
    _fill_columns_schema(schema, layout)
    return _capsule(schema, SCHEMA_CAPSULE, _destroy_schema_capsule), _capsule(
        array, ARRAY_CAPSULE, _destroy_array_capsule
    )


def export_stream(columns: Any, requested_schema: object | None = None) -> object:
    """``__arrow_c_stream__``: an ``arrow_array_stream`` capsule yielding ``columns`` as one batch."""
    # checked now, where the caller gets a Python exception, not an errno
    buffers, layout = _checked(columns, requested_schema)
    stream = ArrowArrayStream()
    stream.get_schema = _get_schema_callback
    stream.get_next = _get_next_callback
    stream.get_last_error = _get_last_error_callback
    stream.private_data = _keep(_Stream(buffers, layout))
    stream.release = _release_stream_callback
    return _capsule(stream, STREAM_CAPSULE, _destroy_stream_capsule)


class ArrowColumns:
    """``Columns`` as an Arrow data source that is not a sequence.

    ``Columns`` is a named tuple, and some consumers read any tuple as a list of columns before
    they look for the PyCapsule methods (``pyarrow.table``, ``pyarrow.record_batch``,
    ``polars.DataFrame``, ``polars.from_arrow``). Give them ``columns.as_arrow()`` instead; it
    exports the same buffers the same way.
    """

    __slots__ = ("columns",)

    def __init__(self, columns: Any):
        self.columns = columns

    def __repr__(self) -> str:
        return f"<ArrowColumns of {len(self.columns.offsets)} records>"

    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]:
        return export_array(self.columns, requested_schema)

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        return export_stream(self.columns, requested_schema)
