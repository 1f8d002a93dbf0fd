//! Kafka's zigzag varint/varlong (ByteUtils.java): protobuf base-128, LSB group first,
//! 0x80 continuation; 32-bit values take at most 5 bytes, 64-bit at most 10.
//!
//! Zigzag maps signed to unsigned so small magnitudes stay short: `enc(v) = (v << 1) ^ (v >> 31)`
//! (`>> 63` for varlong), `dec(u) = (u >>> 1) ^ -(u & 1)`. Every record-level varint of RecordBatch
//! v2 is zigzag.
//!
//! Decoding follows Kafka's `readVarint`/`readVarlong` exactly, including what they accept:
//! - varint: at most 5 bytes; a 5th byte with its MSB set is illegal. The unused high bits of the
//!   5th byte are silently dropped (Java's `b << 28` on an int), so `FF FF FF FF 7F` decodes.
//! - varlong: at most 10 bytes; the 10th byte must not have its MSB set; its bits above bit 0 are
//!   dropped (Java's `b << 63` on a long).
//!
//! Decode is the hot loop of every read, so each decoder has a one-byte fast path (most deltas and
//! short lengths fit in 7 bits) and never reads past the slice it is given.

/// Most bytes a zigzag varint (i32) may take.
pub const MAX_VARINT_BYTES: usize = 5;
/// Most bytes a zigzag varlong (i64) may take.
pub const MAX_VARLONG_BYTES: usize = 10;

/// Why a varint could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarintError {
    /// The slice ended before the last byte (one without the continuation bit).
    Truncated,
    /// More than 5 (varint) or 10 (varlong) bytes.
    TooLong,
}

#[inline]
pub fn zigzag_encode_32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline]
pub fn zigzag_decode_32(u: u32) -> i32 {
    ((u >> 1) as i32) ^ -((u & 1) as i32)
}

#[inline]
pub fn zigzag_encode_64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub fn zigzag_decode_64(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Encoded size of the unsigned base-128 value `u` (1..=10).
#[inline]
fn unsigned_size(u: u64) -> usize {
    // why: a table indexed by leading zeros beats the division (the encoder sizes every field of
    // every record). Entry lz = ceil((64 - lz) / 7), with 0 (lz = 64) taking one byte.
    const SIZE_BY_LEADING_ZEROS: [u8; 65] = {
        let mut t = [1u8; 65];
        let mut lz = 0;
        while lz < 64 {
            t[lz] = (64 - lz).div_ceil(7) as u8;
            lz += 1;
        }
        t
    };
    SIZE_BY_LEADING_ZEROS[u.leading_zeros() as usize] as usize
}

/// Bytes `put_varint(.., v)` writes (1..=5).
#[inline]
pub fn varint_size(v: i32) -> usize {
    unsigned_size(zigzag_encode_32(v) as u64)
}

/// Bytes `put_varlong(.., v)` writes (1..=10).
#[inline]
pub fn varlong_size(v: i64) -> usize {
    unsigned_size(zigzag_encode_64(v))
}

/// Write the zigzag varint of `v` at `buf[pos..]` and return the position after it. The caller
/// sized `buf` beforehand (with `varint_size`); a short buffer is a bug and panics.
#[inline]
pub fn put_varint(buf: &mut [u8], pos: usize, v: i32) -> usize {
    put_unsigned_at(buf, pos, zigzag_encode_32(v) as u64)
}

/// Write the zigzag varlong of `v` at `buf[pos..]` and return the position after it.
#[inline]
pub fn put_varlong(buf: &mut [u8], pos: usize, v: i64) -> usize {
    put_unsigned_at(buf, pos, zigzag_encode_64(v))
}

#[inline]
fn put_unsigned_at(buf: &mut [u8], mut pos: usize, mut u: u64) -> usize {
    // why: one and two bytes cover nearly every delta and length; one bounds check each.
    if u < 0x80 {
        buf[pos] = u as u8;
        return pos + 1;
    }
    if u < 0x4000 {
        buf[pos..pos + 2].copy_from_slice(&[(u as u8) | 0x80, (u >> 7) as u8]);
        return pos + 2;
    }
    while u >= 0x80 {
        buf[pos] = (u as u8) | 0x80;
        u >>= 7;
        pos += 1;
    }
    buf[pos] = u as u8;
    pos + 1
}

/// Read a zigzag varint at the start of `buf`: `(value, bytes consumed)`.
#[inline]
pub fn read_varint(buf: &[u8]) -> Result<(i32, usize), VarintError> {
    // why: one and two bytes (values -8192..8191) cover most deltas and lengths.
    match *buf {
        [b0, ..] if b0 < 0x80 => Ok((zigzag_decode_32(b0 as u32), 1)),
        [b0, b1, ..] if b1 < 0x80 => {
            Ok((zigzag_decode_32((b0 & 0x7F) as u32 | (b1 as u32) << 7), 2))
        }
        [] => Err(VarintError::Truncated),
        _ => read_varint_slow(buf),
    }
}

#[cold]
#[inline(never)]
fn read_varint_slow(buf: &[u8]) -> Result<(i32, usize), VarintError> {
    let mut u: u32 = 0;
    for i in 0..MAX_VARINT_BYTES {
        let b = *buf.get(i).ok_or(VarintError::Truncated)?;
        // why: `wrapping_shl`-free: shifts are < 32; at i == 4 the high bits fall off as in Java.
        u |= ((b & 0x7F) as u32) << (7 * i);
        if b < 0x80 {
            return Ok((zigzag_decode_32(u), i + 1));
        }
    }
    Err(VarintError::TooLong)
}

/// Read a zigzag varlong at the start of `buf`: `(value, bytes consumed)`.
#[inline]
pub fn read_varlong(buf: &[u8]) -> Result<(i64, usize), VarintError> {
    match *buf {
        [b0, ..] if b0 < 0x80 => Ok((zigzag_decode_64(b0 as u64), 1)),
        [b0, b1, ..] if b1 < 0x80 => {
            Ok((zigzag_decode_64((b0 & 0x7F) as u64 | (b1 as u64) << 7), 2))
        }
        [] => Err(VarintError::Truncated),
        _ => read_varlong_slow(buf),
    }
}

#[cold]
#[inline(never)]
fn read_varlong_slow(buf: &[u8]) -> Result<(i64, usize), VarintError> {
    let mut u: u64 = 0;
    for i in 0..MAX_VARLONG_BYTES {
        let b = *buf.get(i).ok_or(VarintError::Truncated)?;
        // why: shifts are <= 63; at i == 9 only bit 0 survives, as Java's `b << 63`.
        u |= ((b & 0x7F) as u64) << (7 * i);
        if b < 0x80 {
            return Ok((zigzag_decode_64(u), i + 1));
        }
    }
    Err(VarintError::TooLong)
}
