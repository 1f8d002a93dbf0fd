"""Kafka codecs for the reference engine (MemoryRecordsBuilder.java, Lz4BlockOutputStream.java).

API: ``compress(codec: str, data) -> bytes``; ``decompress(codec_id: int, data, limit) -> bytes``
raising ``CorruptBatchError`` (without a position; the caller adds the batch position) on malformed
input or on output over ``limit`` bytes. What is compressed is the records area of a batch
(bytes 61..end); the header stays uncompressed.

Stream formats, as Kafka writes them:
- gzip (1): a gzip stream (RFC 1952). Decoding accepts several members back to back, like Java's
  ``GZIPInputStream``; bytes after a member that are not another complete member are corruption.
- snappy (2): xerial ``SnappyOutputStream`` framing::

      82 53 4E 41 50 50 59 00 | version i32 BE (1) | compatible i32 BE (1)
      (chunk length i32 BE | raw snappy chunk of <= 32 KiB input)*

  Decoding also accepts a plain raw snappy block without the header (what snappy-java's
  ``SnappyInputStream`` falls back to), and a second xerial header where a chunk length is
  expected (concatenated streams, as snappy-java does). A block whose length preamble claims
  more than 22x its compressed size is corruption (no valid block expands that much), so a
  forged preamble never makes us allocate.
- lz4 (3): Kafka's LZ4 frame (``Lz4BlockOutputStream``): ``04 22 4D 18 60 40 82``, independent
  64 KiB blocks, no block or content checksum, end mark ``00 00 00 00``. Decoding checks the frame
  descriptor the way Kafka's ``Lz4BlockInputStream`` does (version 01, independent blocks,
  reserved bits 0, block size code 4..7) and decodes with lz4.frame.
- zstd (4): standard zstd frames (zstd-jni's stream output has no content size). The output limit
  is enforced before decompressing by walking the block headers for an upper bound of the output
  (libzstd's ``ZSTD_decompressBound``), since cramjam cannot stop a decoder at a limit.

An empty compressed stream is corruption for every codec.
"""

from __future__ import annotations

import struct
import zlib

import cramjam
import lz4.frame

from pylog.errors import CorruptBatchError, CorruptKind

CODEC_NONE = 0
CODEC_GZIP = 1
CODEC_SNAPPY = 2
CODEC_LZ4 = 3
CODEC_ZSTD = 4

GZIP_LEVEL = 6  # Java's Deflater.DEFAULT_COMPRESSION
ZSTD_LEVEL = 3  # Kafka's ZstdCompression default
XERIAL_MAGIC = b"\x82SNAPPY\x00"
XERIAL_VERSION = 1
XERIAL_COMPATIBLE_VERSION = 1
XERIAL_BLOCK_BYTES = 32 * 1024
XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", XERIAL_VERSION, XERIAL_COMPATIBLE_VERSION)
LZ4_FRAME_MAGIC = b"\x04\x22\x4d\x18"
ZSTD_FRAME_MAGIC = 0xFD2FB528
ZSTD_SKIPPABLE_MAGIC_MASK = 0xFFFFFFF0
ZSTD_SKIPPABLE_MAGIC = 0x184D2A50
ZSTD_BLOCK_MAX_BYTES = 128 * 1024

_BE_I32 = struct.Struct(">i")
_LE_U32 = struct.Struct("<I")
_DECODE_STEP_BYTES = 1 << 20  # output produced per call when streaming toward a limit


def _as_bytes(data) -> bytes:
    return data if type(data) is bytes else memoryview(data).tobytes()


# ---------------------------------------------------------------------------------------------
# Compression


def _gzip_compress(data: bytes) -> bytes:
    # wbits 31 = gzip wrapper, mtime 0: the same input always gives the same bytes
    co = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return co.compress(data) + co.flush()


def _snappy_compress(data: bytes) -> bytes:
    parts = [XERIAL_HEADER]
    view = memoryview(data)
    compress_raw = cramjam.snappy.compress_raw
    for start in range(0, len(data), XERIAL_BLOCK_BYTES):
        chunk = compress_raw(view[start : start + XERIAL_BLOCK_BYTES])
        parts.append(_BE_I32.pack(len(chunk)))
        parts.append(bytes(chunk))
    return b"".join(parts)


def _lz4_compress(data: bytes) -> bytes:
    out = lz4.frame.compress(
        data,
        block_size=lz4.frame.BLOCKSIZE_MAX64KB,
        block_linked=False,
        content_checksum=False,
        store_size=False,
    )
    assert out[:7] == b"\x04\x22\x4d\x18\x60\x40\x82"  # Kafka's frame descriptor
    return out


def _zstd_compress(data: bytes) -> bytes:
    return bytes(cramjam.zstd.compress(data, level=ZSTD_LEVEL))


def compress(codec: str, data) -> bytes:
    """The records area ``data`` compressed with ``codec`` (a name of pylog.config.CODEC_IDS)."""
    data = _as_bytes(data)
    if codec == "none":
        return data
    if codec == "gzip":
        return _gzip_compress(data)
    if codec == "snappy":
        return _snappy_compress(data)
    if codec == "lz4":
        return _lz4_compress(data)
    if codec == "zstd":
        return _zstd_compress(data)
    raise ValueError(f"unknown codec {codec!r}")


# ---------------------------------------------------------------------------------------------
# Decompression (untrusted input)


def _corrupt(message: str) -> CorruptBatchError:
    return CorruptBatchError(message, kind=CorruptKind.COMPRESSION)


def _over_limit(limit: int) -> CorruptBatchError:
    return _corrupt(f"decompressed records exceed {limit} bytes")


def _gzip_decompress(data: bytes, limit: int) -> bytes:
    out = []
    total = 0
    rest = data
    while True:  # one gzip member per round; each round consumes >= 18 bytes or fails
        d = zlib.decompressobj(31)
        chunk = d.decompress(rest, limit + 1 - total)
        while True:
            total += len(chunk)
            if total > limit:
                raise _over_limit(limit)
            out.append(chunk)
            if d.eof or not d.unconsumed_tail:
                break
            chunk = d.decompress(d.unconsumed_tail, limit + 1 - total)
        if not d.eof:
            raise _corrupt("gzip: truncated stream")
        rest = d.unused_data
        if not rest:
            return b"".join(out)


SNAPPY_MAX_EXPANSION = 22  # a 3-byte copy op yields at most 64 bytes: 64 / 3 < 22


def _snappy_raw(chunk, total: int, limit: int) -> bytes:
    size = cramjam.snappy.decompress_raw_len(chunk)
    if total + size > limit:
        raise _over_limit(limit)
    if size > SNAPPY_MAX_EXPANSION * len(chunk):
        # why: no valid block expands this much; do not allocate what the preamble claims
        raise _corrupt(f"snappy: block claims {size} bytes from {len(chunk)}")
    out = bytes(cramjam.snappy.decompress_raw(chunk))
    if len(out) != size:  # pair assertion on the preamble we trusted for the limit
        raise _corrupt("snappy: block length differs from its preamble")
    return out


def _snappy_decompress(data: bytes, limit: int) -> bytes:
    if not data.startswith(XERIAL_MAGIC):
        return _snappy_raw(data, 0, limit)  # plain raw snappy, no xerial framing
    out = []
    total = 0
    view = memoryview(data)
    end = len(data)
    p = 0
    while p < end:
        if data.startswith(XERIAL_MAGIC, p):  # a (first or concatenated) xerial stream header
            if end - p < len(XERIAL_HEADER):
                raise _corrupt("snappy: truncated xerial header")
            (version,) = _BE_I32.unpack_from(data, p + len(XERIAL_MAGIC))
            if version < XERIAL_COMPATIBLE_VERSION:
                raise _corrupt(f"snappy: incompatible xerial version {version}")
            p += len(XERIAL_HEADER)
            continue
        if end - p < 4:
            raise _corrupt("snappy: truncated chunk length")
        (length,) = _BE_I32.unpack_from(data, p)
        p += 4
        if length < 0 or p + length > end:
            raise _corrupt(f"snappy: chunk length {length} outside the stream")
        chunk = _snappy_raw(view[p : p + length], total, limit)
        total += len(chunk)
        out.append(chunk)
        p += length
    return b"".join(out)


def _lz4_check_descriptor(data: bytes) -> None:
    """Kafka's Lz4BlockInputStream.readHeader checks (the header checksum is left to lz4)."""
    if len(data) < 7 or not data.startswith(LZ4_FRAME_MAGIC):
        raise _corrupt("lz4: not an LZ4 frame")
    flg = data[4]
    bd = data[5]
    if flg >> 6 != 0b01:
        raise _corrupt(f"lz4: unsupported frame version {flg >> 6}")
    if flg & 0b11:
        raise _corrupt("lz4: reserved FLG bits set")
    if not flg & 0x20:
        raise _corrupt("lz4: dependent blocks are not supported")
    if bd & 0x8F or not 4 <= (bd >> 4) & 0x07 <= 7:
        raise _corrupt(f"lz4: bad block descriptor {bd:#04x}")


def _lz4_decompress(data: bytes, limit: int) -> bytes:
    _lz4_check_descriptor(data)
    d = lz4.frame.LZ4FrameDecompressor()
    step = min(limit + 1, max(_DECODE_STEP_BYTES, 4 * len(data)))
    out = [d.decompress(data, max_length=step)]
    total = len(out[0])
    while not d.eof:
        if total > limit:
            raise _over_limit(limit)
        if d.needs_input:
            raise _corrupt("lz4: truncated frame")
        chunk = d.decompress(b"", max_length=min(step, limit + 1 - total))
        total += len(chunk)
        out.append(chunk)
    if total > limit:
        raise _over_limit(limit)
    # why: bytes after the end mark are ignored, like Kafka's reader (it never reads past it)
    return b"".join(out)


def zstd_decompressed_bound(data: bytes) -> int:
    """An upper bound of the decompressed size of the zstd frames in ``data`` (libzstd's
    ZSTD_decompressBound), from the frame and block headers alone; CorruptBatchError when the
    frame structure is malformed or truncated. RFC 8878 §3.1."""
    end = len(data)
    if end == 0:
        raise _corrupt("zstd: empty stream")
    bound = 0
    p = 0
    while p < end:
        if end - p < 4:
            raise _corrupt("zstd: truncated frame magic")
        (magic,) = _LE_U32.unpack_from(data, p)
        p += 4
        if magic & ZSTD_SKIPPABLE_MAGIC_MASK == ZSTD_SKIPPABLE_MAGIC:
            if end - p < 4:
                raise _corrupt("zstd: truncated skippable frame")
            (size,) = _LE_U32.unpack_from(data, p)
            p += 4 + size
            if p > end:
                raise _corrupt("zstd: skippable frame runs past the stream")
            continue
        if magic != ZSTD_FRAME_MAGIC:
            raise _corrupt(f"zstd: bad frame magic {magic:#010x}")
        if p >= end:
            raise _corrupt("zstd: truncated frame header")
        fhd = data[p]
        p += 1
        fcs_flag = fhd >> 6
        single_segment = (fhd >> 5) & 1
        if fhd & 0x08:
            raise _corrupt("zstd: reserved frame header bit set")
        has_checksum = (fhd >> 2) & 1
        header_rest = (
            (0 if single_segment else 1) + (0, 1, 2, 4)[fhd & 0x03] + (single_segment, 2, 4, 8)[fcs_flag]
        )
        p += header_rest
        if p > end:
            raise _corrupt("zstd: truncated frame header")
        while True:  # blocks
            if end - p < 3:
                raise _corrupt("zstd: truncated block header")
            block_header = data[p] | (data[p + 1] << 8) | (data[p + 2] << 16)
            p += 3
            last = block_header & 1
            block_type = (block_header >> 1) & 0x03
            block_size = block_header >> 3
            if block_type == 0:  # raw
                bound += block_size
                p += block_size
            elif block_type == 1:  # RLE: one byte repeated block_size times
                bound += block_size
                p += 1
            elif block_type == 2:  # compressed
                bound += ZSTD_BLOCK_MAX_BYTES
                p += block_size
            else:
                raise _corrupt("zstd: reserved block type")
            if p > end:
                raise _corrupt("zstd: block runs past the stream")
            if last:
                break
        if has_checksum:
            p += 4
            if p > end:
                raise _corrupt("zstd: truncated content checksum")
    return bound


def _zstd_decompress(data: bytes, limit: int) -> bytes:
    bound = zstd_decompressed_bound(data)
    if bound <= limit:
        return bytes(cramjam.zstd.decompress(data))
    # why: the bound counts 128 KiB per compressed block, so it can exceed the limit when the
    # output does not; then decode into a buffer of exactly ``limit`` bytes (rare, near the limit).
    out = bytearray(limit)
    try:
        n = cramjam.zstd.decompress_into(data, out)
    except cramjam.DecompressionError:
        raise _over_limit(limit) from None
    return bytes(memoryview(out)[:n])


_DECOMPRESSORS = {
    CODEC_GZIP: _gzip_decompress,
    CODEC_SNAPPY: _snappy_decompress,
    CODEC_LZ4: _lz4_decompress,
    CODEC_ZSTD: _zstd_decompress,
}


def decompress(codec_id: int, data, limit: int) -> bytes:
    """The records area of a batch with codec ``codec_id``, at most ``limit`` bytes of it."""
    if codec_id == CODEC_NONE:
        data = _as_bytes(data)
        if len(data) > limit:
            raise _over_limit(limit)
        return data
    try:
        decoder = _DECOMPRESSORS[codec_id]
    except KeyError:
        raise CorruptBatchError(f"unknown compression codec id {codec_id}", kind=CorruptKind.CODEC) from None
    data = _as_bytes(data)
    if not data:
        raise _corrupt("empty compressed records")
    try:
        out = decoder(data, limit)
    except CorruptBatchError:
        raise
    except MemoryError:
        raise
    except Exception as e:  # zlib.error, cramjam.DecompressionError, lz4's RuntimeError, ...
        name = ("gzip", "snappy", "lz4", "zstd")[codec_id - 1]
        raise _corrupt(f"{name}: {type(e).__name__}: {e}") from None
    assert len(out) <= limit
    return out
