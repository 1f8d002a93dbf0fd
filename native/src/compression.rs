//! Kafka's record-batch codecs (MemoryRecordsBuilder.java, Lz4BlockOutputStream.java): what sits in bytes 61.. of a compressed batch.
//!
//! | id | name   | stream                                                                     |
//! |----|--------|----------------------------------------------------------------------------|
//! | 0  | none   | the records as they are                                                    |
//! | 1  | gzip   | RFC 1952 (readers accept several members back to back)                     |
//! | 2  | snappy | xerial framing: magic `82 53 4E 41 50 50 59 00`, i32 BE version 1, i32 BE   |
//! |    |        | compat 1, then `i32 BE length` + raw snappy block per 32 KiB of input       |
//! | 3  | lz4    | Kafka's LZ4 frame (below)                                                  |
//! | 4  | zstd   | one standard zstd frame                                                    |
//!
//! Kafka's LZ4 frame (`Lz4BlockOutputStream`), all integers little-endian:
//! ```text
//! 04 22 4D 18  magic | 60 FLG: version 01, independent blocks, no checksums, no content size
//! 40 BD: 64 KiB blocks | 82 HC = (XXH32(FLG BD [content size]) >> 8) & 0xFF
//! { u32 size (bit 31: stored uncompressed) ; data }*  00 00 00 00 end mark
//! ```
//! The reader also takes third-party frames (sarama's FLG 0x64 with a content checksum, BD codes
//! 4..7, block checksums, a content size), skips but never verifies their checksums (as Kafka),
//! and rejects version != 1, dependent blocks and reserved bits.
//!
//! Invariants of `decompress`: it appends to `out`, never panics, always terminates, and never lets
//! `out` grow past `limit` new bytes (plus allocator slack): every length read from the input is
//! checked against the bytes present and against the limit before anything is allocated.

use std::io::{Read, Write};

/// A batch's codec, attributes bits 0-2.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Codec {
    pub fn from_id(id: u8) -> Option<Codec> {
        match id {
            0 => Some(Codec::None),
            1 => Some(Codec::Gzip),
            2 => Some(Codec::Snappy),
            3 => Some(Codec::Lz4),
            4 => Some(Codec::Zstd),
            _ => None,
        }
    }

    /// `none`, `gzip`, `snappy`, `lz4`, `zstd` (config aliases such as `producer` are resolved
    /// in Python before this).
    pub fn from_name(name: &str) -> Option<Codec> {
        match name {
            "none" => Some(Codec::None),
            "gzip" => Some(Codec::Gzip),
            "snappy" => Some(Codec::Snappy),
            "lz4" => Some(Codec::Lz4),
            "zstd" => Some(Codec::Zstd),
            _ => None,
        }
    }

    pub fn id(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// Kafka's default gzip level (`Deflater.DEFAULT_COMPRESSION`).
const GZIP_LEVEL: u32 = 6;
/// Kafka's default zstd level (`ZstdCompression.DEFAULT_LEVEL`).
const ZSTD_LEVEL: i32 = 3;

pub const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_BYTES: usize = 16;
/// A xerial header whose version is below this is refused (as the reference engine does).
const XERIAL_COMPATIBLE_VERSION: i32 = 1;
/// Input bytes per snappy block (xerial `SnappyOutputStream` default block size).
pub const SNAPPY_BLOCK_BYTES: usize = 32 * 1024;

pub const LZ4_MAGIC: u32 = 0x184D_2204;
/// Magic, FLG 0x60, BD 0x40, HC 0x82: the first 7 bytes of every frame Kafka (and we) write.
pub const LZ4_KAFKA_HEADER: [u8; 7] = [0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82];
/// Input bytes per LZ4 block (BD code 4).
pub const LZ4_BLOCK_BYTES: usize = 64 * 1024;
pub const LZ4_UNCOMPRESSED_BIT: u32 = 1 << 31;
pub const LZ4_FLG_VERSION_MASK: u8 = 0xC0;
pub const LZ4_FLG_VERSION_1: u8 = 0x40;
pub const LZ4_FLG_BLOCK_INDEPENDENT: u8 = 0x20;
pub const LZ4_FLG_BLOCK_CHECKSUM: u8 = 0x10;
pub const LZ4_FLG_CONTENT_SIZE: u8 = 0x08;
pub const LZ4_FLG_CONTENT_CHECKSUM: u8 = 0x04;
pub const LZ4_FLG_RESERVED: u8 = 0x03;
pub const LZ4_BD_RESERVED: u8 = 0x8F;

/// Compress `input` with `codec`, appending the stream to `out`.
pub fn compress(codec: Codec, input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    match codec {
        Codec::None => {
            out.extend_from_slice(input);
            Ok(())
        }
        Codec::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(GZIP_LEVEL));
            enc.write_all(input)?;
            enc.finish()?;
            Ok(())
        }
        Codec::Snappy => snappy_xerial_compress(input, out),
        Codec::Lz4 => {
            lz4_kafka_compress(input, out);
            Ok(())
        }
        Codec::Zstd => zstd_compress(input, out),
    }
}

/// Decompress the `codec` stream `input`, appending to `out`; `Err` on malformed data or when the
/// output would exceed `limit` bytes.
pub fn decompress(
    codec: Codec,
    input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), String> {
    match codec {
        Codec::None => {
            if input.len() > limit {
                return Err(too_large(limit));
            }
            out.extend_from_slice(input);
            Ok(())
        }
        Codec::Gzip => read_limited(
            flate2::bufread::MultiGzDecoder::new(input),
            out,
            limit,
            "gzip",
        ),
        Codec::Snappy => snappy_decompress(input, out, limit),
        Codec::Lz4 => lz4_decompress(input, out, limit),
        Codec::Zstd => zstd_decompress(input, out, limit),
    }
}

fn too_large(limit: usize) -> String {
    format!("decompressed records exceed {limit} bytes")
}

/// Read all of `reader` into `out`, failing past `limit` bytes; `read_to_end` on a `Take` grows
/// `out` adaptively, so a bomb costs at most about `limit` bytes before it is caught.
fn read_limited(
    reader: impl Read,
    out: &mut Vec<u8>,
    limit: usize,
    what: &str,
) -> Result<(), String> {
    let start = out.len();
    let cap = (limit as u64).saturating_add(1);
    if let Err(e) = reader.take(cap).read_to_end(out) {
        out.truncate(start);
        return Err(format!("{what}: {e}"));
    }
    if out.len() - start > limit {
        out.truncate(start);
        return Err(too_large(limit));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// snappy (xerial framing)

fn snappy_xerial_compress(input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes()); // version
    out.extend_from_slice(&1i32.to_be_bytes()); // minimum compatible version
    let mut enc = snap::raw::Encoder::new();
    for chunk in input.chunks(SNAPPY_BLOCK_BYTES) {
        let len_pos = out.len();
        let bound = snap::raw::max_compress_len(chunk.len());
        out.resize(len_pos + 4 + bound, 0);
        let n = enc
            .compress(chunk, &mut out[len_pos + 4..])
            .map_err(std::io::Error::other)?;
        // why: n <= bound <= 32 KiB * 7/6 + 32, so it always fits an i32.
        out[len_pos..len_pos + 4].copy_from_slice(&(n as i32).to_be_bytes());
        out.truncate(len_pos + 4 + n);
    }
    Ok(())
}

fn snappy_decompress(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), String> {
    let start = out.len();
    let result = if input.starts_with(&XERIAL_MAGIC) {
        snappy_xerial_decompress(input, out, start, limit)
    } else {
        // kafka-python falls back to one raw snappy block when the xerial magic is absent.
        snappy_raw_block(input, out, start, limit)
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn snappy_xerial_decompress(
    input: &[u8],
    out: &mut Vec<u8>,
    start: usize,
    limit: usize,
) -> Result<(), String> {
    let mut pos = 0;
    while pos < input.len() {
        let rest = &input[pos..];
        // why: xerial's reader accepts concatenated streams, each with its own header; a header
        // cannot be mistaken for a block since 0x82.. is a negative length.
        if rest.starts_with(&XERIAL_MAGIC) {
            if rest.len() < XERIAL_HEADER_BYTES {
                return Err("snappy: truncated xerial header".into());
            }
            let version = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
            if version < XERIAL_COMPATIBLE_VERSION {
                return Err(format!("snappy: incompatible xerial version {version}"));
            }
            pos += XERIAL_HEADER_BYTES;
            continue;
        }
        let Some(len_bytes) = rest.get(..4) else {
            return Err("snappy: truncated block length".into());
        };
        let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let len =
            usize::try_from(len).map_err(|_| format!("snappy: negative block length {len}"))?;
        let block = rest
            .get(4..4 + len)
            .ok_or("snappy: block runs past the end of the data")?;
        snappy_raw_block(block, out, start, limit)?;
        pos += 4 + len;
    }
    Ok(())
}

fn snappy_raw_block(
    block: &[u8],
    out: &mut Vec<u8>,
    start: usize,
    limit: usize,
) -> Result<(), String> {
    let n = snap::raw::decompress_len(block).map_err(|e| format!("snappy: {e}"))?;
    if out.len() - start + n > limit {
        return Err(too_large(limit));
    }
    let pos = out.len();
    out.resize(pos + n, 0);
    let got = snap::raw::Decoder::new()
        .decompress(block, &mut out[pos..])
        .map_err(|e| format!("snappy: {e}"))?;
    if got != n {
        return Err("snappy: block shorter than its declared length".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// lz4 (Kafka's frame)

fn lz4_kafka_compress(input: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&LZ4_KAFKA_HEADER);
    for chunk in input.chunks(LZ4_BLOCK_BYTES) {
        let size_pos = out.len();
        let data_pos = size_pos + 4;
        out.resize(
            data_pos + lz4_flex::block::get_maximum_output_size(chunk.len()),
            0,
        );
        // why: compress_into only fails when the output is too small, and it is sized by the bound.
        let compressed = lz4_flex::block::compress_into(chunk, &mut out[data_pos..]).ok();
        let size_field = match compressed {
            Some(n) if n < chunk.len() => {
                out.truncate(data_pos + n);
                n as u32
            }
            _ => {
                // Kafka stores the block raw when compression does not shrink it.
                out.truncate(data_pos);
                out.extend_from_slice(chunk);
                chunk.len() as u32 | LZ4_UNCOMPRESSED_BIT
            }
        };
        out[size_pos..data_pos].copy_from_slice(&size_field.to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes()); // end mark
}

/// A little-endian cursor over the frame that reports truncation as an error.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("lz4: truncated frame")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32_le(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn lz4_decompress(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), String> {
    let start = out.len();
    let result = lz4_decompress_frame(input, out, start, limit);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn lz4_decompress_frame(
    input: &[u8],
    out: &mut Vec<u8>,
    start: usize,
    limit: usize,
) -> Result<(), String> {
    let mut cur = Cursor { buf: input, pos: 0 };
    if cur.u32_le()? != LZ4_MAGIC {
        return Err("lz4: bad frame magic".into());
    }
    let desc_start = cur.pos;
    let flg = cur.u8()?;
    let bd = cur.u8()?;
    if flg & LZ4_FLG_VERSION_MASK != LZ4_FLG_VERSION_1 {
        return Err("lz4: unsupported frame version".into());
    }
    if flg & LZ4_FLG_RESERVED != 0 || bd & LZ4_BD_RESERVED != 0 {
        return Err("lz4: reserved bits set in the frame descriptor".into());
    }
    if flg & LZ4_FLG_BLOCK_INDEPENDENT == 0 {
        return Err("lz4: dependent blocks are not supported".into());
    }
    let block_max = match (bd >> 4) & 0x07 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        code => return Err(format!("lz4: unsupported block size code {code}")),
    };
    if flg & LZ4_FLG_CONTENT_SIZE != 0 {
        cur.take(8)?; // content size: informative only
    }
    let descriptor = &input[desc_start..cur.pos];
    let hc = cur.u8()?;
    if hc != lz4_header_checksum(descriptor) {
        return Err("lz4: frame descriptor checksum mismatch".into());
    }
    let block_checksums = flg & LZ4_FLG_BLOCK_CHECKSUM != 0;
    loop {
        let size_field = cur.u32_le()?;
        if size_field == 0 {
            break; // end mark
        }
        let stored = size_field & LZ4_UNCOMPRESSED_BIT != 0;
        let size = (size_field & !LZ4_UNCOMPRESSED_BIT) as usize;
        if size > block_max {
            return Err(format!(
                "lz4: block of {size} bytes exceeds the frame's {block_max}"
            ));
        }
        let data = cur.take(size)?;
        if block_checksums {
            cur.take(4)?; // as Kafka: present but not verified
        }
        let room = limit - (out.len() - start);
        if stored {
            if size > room {
                return Err(too_large(limit));
            }
            out.extend_from_slice(data);
        } else {
            // why: an LZ4 block expands at most ~255x (a 255-byte length run per input byte), so
            // capping the scratch space by that keeps a stream of tiny hostile blocks from
            // costing block_max bytes of zeroing each.
            let cap = block_max.min(size.saturating_mul(256).saturating_add(64));
            let pos = out.len();
            out.resize(pos + cap.min(room.saturating_add(1)), 0);
            match lz4_flex::block::decompress_into(data, &mut out[pos..]) {
                Ok(n) if n <= room => out.truncate(pos + n),
                Ok(_) => return Err(too_large(limit)),
                Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) if cap > room => {
                    return Err(too_large(limit))
                }
                Err(e) => return Err(format!("lz4: {e}")),
            }
        }
    }
    if flg & LZ4_FLG_CONTENT_CHECKSUM != 0 {
        cur.take(4)?; // as Kafka: read, not verified
    }
    Ok(())
}

/// The frame descriptor's HC byte: second byte of XXH32(descriptor, seed 0).
pub fn lz4_header_checksum(descriptor: &[u8]) -> u8 {
    (xxh32(descriptor, 0) >> 8) as u8
}

/// XXH32 (xxHash spec), used only for the LZ4 frame descriptor checksum.
pub fn xxh32(data: &[u8], seed: u32) -> u32 {
    const P1: u32 = 2_654_435_761;
    const P2: u32 = 2_246_822_519;
    const P3: u32 = 3_266_489_917;
    const P4: u32 = 668_265_263;
    const P5: u32 = 374_761_393;
    fn lane(b: &[u8]) -> u32 {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn round(acc: u32, input: u32) -> u32 {
        acc.wrapping_add(input.wrapping_mul(P2))
            .rotate_left(13)
            .wrapping_mul(P1)
    }
    let mut rest = data;
    let mut acc = if data.len() >= 16 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while rest.len() >= 16 {
            for (i, vi) in v.iter_mut().enumerate() {
                *vi = round(*vi, lane(&rest[4 * i..]));
            }
            rest = &rest[16..];
        }
        v[0].rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18))
    } else {
        seed.wrapping_add(P5)
    };
    acc = acc.wrapping_add(data.len() as u32);
    while rest.len() >= 4 {
        acc = acc
            .wrapping_add(lane(rest).wrapping_mul(P3))
            .rotate_left(17)
            .wrapping_mul(P4);
        rest = &rest[4..];
    }
    for &b in rest {
        acc = acc
            .wrapping_add((b as u32).wrapping_mul(P5))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    acc ^= acc >> 15;
    acc = acc.wrapping_mul(P2);
    acc ^= acc >> 13;
    acc = acc.wrapping_mul(P3);
    acc ^= acc >> 16;
    acc
}

// ---------------------------------------------------------------------------------------------
// zstd

thread_local! {
    // why: a compression context costs ~1 MiB to set up; reuse one per thread.
    static ZSTD_COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn zstd_compress(input: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    ZSTD_COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match &mut *slot {
            Some(compressor) => compressor,
            empty => empty.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        let pos = out.len();
        out.resize(pos + zstd::zstd_safe::compress_bound(input.len()), 0);
        match compressor.compress_to_buffer(input, &mut out[pos..]) {
            Ok(n) => {
                out.truncate(pos + n);
                Ok(())
            }
            Err(e) => {
                out.truncate(pos);
                Err(e)
            }
        }
    })
}

thread_local! {
    // why: a decompression context costs ~100 KiB to set up; reuse one per thread.
    static ZSTD_DECOMPRESSOR: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Streaming decode (Kafka's zstd-jni streams carry no content size), any number of frames.
fn zstd_decompress(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), String> {
    ZSTD_DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let dctx = match &mut *slot {
            Some(dctx) => dctx,
            empty => empty.insert(
                zstd::zstd_safe::DCtx::try_create()
                    .ok_or("zstd: cannot allocate a decompression context")?,
            ),
        };
        // A previous stream may have failed midway: start from a clean session.
        dctx.reset(zstd::zstd_safe::ResetDirective::SessionOnly)
            .map_err(|code| format!("zstd: {}", zstd::zstd_safe::get_error_name(code)))?;
        read_limited(
            zstd::stream::read::Decoder::with_context(input, dctx),
            out,
            limit,
            "zstd",
        )
    })
}
