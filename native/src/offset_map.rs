//! The cleaner's key → latest offset map, Kafka's SkimpyOffsetMap
//! (storage/src/main/java/org/apache/kafka/storage/internals/log/SkimpyOffsetMap.java); its
//! twin is `pylog/reference/offset_map.py` (a dict with the same capacity rule).
//!
//! Layout: one flat, zero-initialised table of 24-byte slots, `MD5(key) (16 bytes) | offset
//! (i64, native-endian)`; a slot of 24 zero bytes is empty. Kafka allocates
//! `slots = map_bytes / 24` slots (`log.cleaner.dedupe.buffer.size`) up front; here the table
//! starts at `INITIAL_TABLE_SLOTS` and doubles (rehashing) while it is at most half full, up to
//! exactly those `slots * 24` bytes (during a doubling the entries are held aside, at most a
//! quarter of the new table): memory stays bounded by the configuration, a log with few
//! keys does not fault in (zero) the whole buffer, and its lookups stay in the caches. Nothing
//! the cleaner decides depends on the table's size (the capacity rule below uses Kafka's
//! `slots`). Keys are known only by their digest (an MD5 collision would merge two keys; Kafka
//! takes that risk too). There is no delete.
//!
//! Digests: `digest` is the md-5 crate's; `digest_keys` hashes keys of up to 55 bytes (one MD5
//! block) eight at a time in SSE2 lanes (tested equal to md-5), longer ones with md-5.
//!
//! Probing (Kafka's `positionOf`): attempt `a` reads the big-endian i32 at byte `min(a, 12)` of
//! the digest, adds `max(0, a - 12)` (Java int arithmetic, wrapping), and takes
//! `abs(probe) % table slots` (`Utils.abs`: `i32::MIN` maps to 0). So the first 13 probes use the
//! digest's successive 4-byte windows, then probing goes linear.
//!
//! Capacity: the cleaner stops filling at `max_entries = floor(slots * 0.9)` entries (Kafka's
//! `log.cleaner.io.buffer.load.factor`), checked before every put (even one that would
//! overwrite); so the table never gets full and a probe always ends at an empty slot.
//!
//! Thread-safety: a plain value; one cleaning pass owns it.

use md5::{Digest as _, Md5};
use memmap2::MmapMut;

use crate::error::{Error, Result};

/// Bytes of an MD5 digest.
pub const HASH_BYTES: usize = 16;
/// Bytes per slot: digest plus an i64 offset.
pub const ENTRY_BYTES: usize = HASH_BYTES + 8;
/// Kafka's `log.cleaner.io.buffer.load.factor` default (CleanerConfig.java).
pub const LOAD_FACTOR: f64 = 0.9;
/// Kafka's smallest `log.cleaner.dedupe.buffer.size` (CleanerConfig / KafkaConfig: at least 1 KiB).
pub const MIN_MAP_BYTES: usize = 1024;

/// The key digest the map is keyed by.
pub type KeyDigest = [u8; HASH_BYTES];

/// MD5 of a record key.
#[inline]
pub fn digest(key: &[u8]) -> KeyDigest {
    Md5::digest(key).into()
}

/// Keys hashed side by side by `digest_keys` (MD5 is one long dependency chain per message;
/// eight independent chains in `[u32; 8]` lanes fill the vector units, which a single digest
/// cannot).
const LANES: usize = 8;
/// Longest key that fits one MD5 block with its padding (64 - 1 - 8 bytes).
const ONE_BLOCK_MAX: usize = 55;

/// RFC 1321's per-step constants (floor(abs(sin(i + 1)) * 2^32)) and rotations.
const MD5_K: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];
const MD5_S: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9,
    14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10, 15,
    21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];

type Lanes = [u32; LANES];

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn f_round(b: u32, c: u32, d: u32) -> u32 {
    (b & c) | (!b & d)
}
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn g_round(b: u32, c: u32, d: u32) -> u32 {
    (d & b) | (!d & c)
}
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn h_round(b: u32, c: u32, d: u32) -> u32 {
    b ^ c ^ d
}
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn i_round(b: u32, c: u32, d: u32) -> u32 {
    c ^ (b | !d)
}

/// One MD5 step on every lane: `a = b + rotl(a + f(b, c, d) + m + k, s)`.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn step(
    a: &mut Lanes,
    b: &Lanes,
    c: &Lanes,
    d: &Lanes,
    m: &Lanes,
    k: u32,
    s: u32,
    f: fn(u32, u32, u32) -> u32,
) {
    for l in 0..LANES {
        a[l] = b[l].wrapping_add(
            a[l].wrapping_add(f(b[l], c[l], d[l]))
                .wrapping_add(k)
                .wrapping_add(m[l])
                .rotate_left(s),
        );
    }
}

/// The padded one-block messages of `keys`, transposed: `m[word][lane]` (RFC 1321 padding:
/// 0x80, zeros, the bit length little-endian in the last 8 bytes).
fn padded_blocks(keys: &[&[u8]; LANES]) -> [[u32; LANES]; 16] {
    let mut m = [[0u32; LANES]; 16];
    for (lane, key) in keys.iter().enumerate() {
        debug_assert!(key.len() <= ONE_BLOCK_MAX);
        let mut block = [0u8; 64];
        block[..key.len()].copy_from_slice(key);
        block[key.len()] = 0x80;
        block[56..].copy_from_slice(&((key.len() as u64) * 8).to_le_bytes());
        for (w, chunk) in block.chunks_exact(4).enumerate() {
            m[w][lane] = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
    }
    m
}

/// The digests from the final state words of each lane.
fn lane_digests(a: &Lanes, b: &Lanes, c: &Lanes, d: &Lanes) -> [KeyDigest; LANES] {
    std::array::from_fn(|l| {
        let mut out = [0u8; HASH_BYTES];
        out[0..4].copy_from_slice(&a[l].wrapping_add(0x67452301).to_le_bytes());
        out[4..8].copy_from_slice(&b[l].wrapping_add(0xefcdab89).to_le_bytes());
        out[8..12].copy_from_slice(&c[l].wrapping_add(0x98badcfe).to_le_bytes());
        out[12..16].copy_from_slice(&d[l].wrapping_add(0x10325476).to_le_bytes());
        out
    })
}

/// MD5 of `LANES` keys of at most `ONE_BLOCK_MAX` bytes each (RFC 1321, one padded block per
/// key), the lanes side by side in plain arrays. Tested equal to `digest` (the md-5 crate).
#[cfg(not(target_arch = "x86_64"))]
fn digest_lanes(keys: &[&[u8]; LANES]) -> [KeyDigest; LANES] {
    let m = padded_blocks(keys);
    let mut a: Lanes = [0x67452301; LANES];
    let mut b: Lanes = [0xefcdab89; LANES];
    let mut c: Lanes = [0x98badcfe; LANES];
    let mut d: Lanes = [0x10325476; LANES];
    // the 64 steps written out (RFC 1321's order: the four state words take turns)
    step(&mut a, &b, &c, &d, &m[0], MD5_K[0], MD5_S[0], f_round);
    step(&mut d, &a, &b, &c, &m[1], MD5_K[1], MD5_S[1], f_round);
    step(&mut c, &d, &a, &b, &m[2], MD5_K[2], MD5_S[2], f_round);
    step(&mut b, &c, &d, &a, &m[3], MD5_K[3], MD5_S[3], f_round);
    step(&mut a, &b, &c, &d, &m[4], MD5_K[4], MD5_S[4], f_round);
    step(&mut d, &a, &b, &c, &m[5], MD5_K[5], MD5_S[5], f_round);
    step(&mut c, &d, &a, &b, &m[6], MD5_K[6], MD5_S[6], f_round);
    step(&mut b, &c, &d, &a, &m[7], MD5_K[7], MD5_S[7], f_round);
    step(&mut a, &b, &c, &d, &m[8], MD5_K[8], MD5_S[8], f_round);
    step(&mut d, &a, &b, &c, &m[9], MD5_K[9], MD5_S[9], f_round);
    step(&mut c, &d, &a, &b, &m[10], MD5_K[10], MD5_S[10], f_round);
    step(&mut b, &c, &d, &a, &m[11], MD5_K[11], MD5_S[11], f_round);
    step(&mut a, &b, &c, &d, &m[12], MD5_K[12], MD5_S[12], f_round);
    step(&mut d, &a, &b, &c, &m[13], MD5_K[13], MD5_S[13], f_round);
    step(&mut c, &d, &a, &b, &m[14], MD5_K[14], MD5_S[14], f_round);
    step(&mut b, &c, &d, &a, &m[15], MD5_K[15], MD5_S[15], f_round);
    step(&mut a, &b, &c, &d, &m[1], MD5_K[16], MD5_S[16], g_round);
    step(&mut d, &a, &b, &c, &m[6], MD5_K[17], MD5_S[17], g_round);
    step(&mut c, &d, &a, &b, &m[11], MD5_K[18], MD5_S[18], g_round);
    step(&mut b, &c, &d, &a, &m[0], MD5_K[19], MD5_S[19], g_round);
    step(&mut a, &b, &c, &d, &m[5], MD5_K[20], MD5_S[20], g_round);
    step(&mut d, &a, &b, &c, &m[10], MD5_K[21], MD5_S[21], g_round);
    step(&mut c, &d, &a, &b, &m[15], MD5_K[22], MD5_S[22], g_round);
    step(&mut b, &c, &d, &a, &m[4], MD5_K[23], MD5_S[23], g_round);
    step(&mut a, &b, &c, &d, &m[9], MD5_K[24], MD5_S[24], g_round);
    step(&mut d, &a, &b, &c, &m[14], MD5_K[25], MD5_S[25], g_round);
    step(&mut c, &d, &a, &b, &m[3], MD5_K[26], MD5_S[26], g_round);
    step(&mut b, &c, &d, &a, &m[8], MD5_K[27], MD5_S[27], g_round);
    step(&mut a, &b, &c, &d, &m[13], MD5_K[28], MD5_S[28], g_round);
    step(&mut d, &a, &b, &c, &m[2], MD5_K[29], MD5_S[29], g_round);
    step(&mut c, &d, &a, &b, &m[7], MD5_K[30], MD5_S[30], g_round);
    step(&mut b, &c, &d, &a, &m[12], MD5_K[31], MD5_S[31], g_round);
    step(&mut a, &b, &c, &d, &m[5], MD5_K[32], MD5_S[32], h_round);
    step(&mut d, &a, &b, &c, &m[8], MD5_K[33], MD5_S[33], h_round);
    step(&mut c, &d, &a, &b, &m[11], MD5_K[34], MD5_S[34], h_round);
    step(&mut b, &c, &d, &a, &m[14], MD5_K[35], MD5_S[35], h_round);
    step(&mut a, &b, &c, &d, &m[1], MD5_K[36], MD5_S[36], h_round);
    step(&mut d, &a, &b, &c, &m[4], MD5_K[37], MD5_S[37], h_round);
    step(&mut c, &d, &a, &b, &m[7], MD5_K[38], MD5_S[38], h_round);
    step(&mut b, &c, &d, &a, &m[10], MD5_K[39], MD5_S[39], h_round);
    step(&mut a, &b, &c, &d, &m[13], MD5_K[40], MD5_S[40], h_round);
    step(&mut d, &a, &b, &c, &m[0], MD5_K[41], MD5_S[41], h_round);
    step(&mut c, &d, &a, &b, &m[3], MD5_K[42], MD5_S[42], h_round);
    step(&mut b, &c, &d, &a, &m[6], MD5_K[43], MD5_S[43], h_round);
    step(&mut a, &b, &c, &d, &m[9], MD5_K[44], MD5_S[44], h_round);
    step(&mut d, &a, &b, &c, &m[12], MD5_K[45], MD5_S[45], h_round);
    step(&mut c, &d, &a, &b, &m[15], MD5_K[46], MD5_S[46], h_round);
    step(&mut b, &c, &d, &a, &m[2], MD5_K[47], MD5_S[47], h_round);
    step(&mut a, &b, &c, &d, &m[0], MD5_K[48], MD5_S[48], i_round);
    step(&mut d, &a, &b, &c, &m[7], MD5_K[49], MD5_S[49], i_round);
    step(&mut c, &d, &a, &b, &m[14], MD5_K[50], MD5_S[50], i_round);
    step(&mut b, &c, &d, &a, &m[5], MD5_K[51], MD5_S[51], i_round);
    step(&mut a, &b, &c, &d, &m[12], MD5_K[52], MD5_S[52], i_round);
    step(&mut d, &a, &b, &c, &m[3], MD5_K[53], MD5_S[53], i_round);
    step(&mut c, &d, &a, &b, &m[10], MD5_K[54], MD5_S[54], i_round);
    step(&mut b, &c, &d, &a, &m[1], MD5_K[55], MD5_S[55], i_round);
    step(&mut a, &b, &c, &d, &m[8], MD5_K[56], MD5_S[56], i_round);
    step(&mut d, &a, &b, &c, &m[15], MD5_K[57], MD5_S[57], i_round);
    step(&mut c, &d, &a, &b, &m[6], MD5_K[58], MD5_S[58], i_round);
    step(&mut b, &c, &d, &a, &m[13], MD5_K[59], MD5_S[59], i_round);
    step(&mut a, &b, &c, &d, &m[4], MD5_K[60], MD5_S[60], i_round);
    step(&mut d, &a, &b, &c, &m[11], MD5_K[61], MD5_S[61], i_round);
    step(&mut c, &d, &a, &b, &m[2], MD5_K[62], MD5_S[62], i_round);
    step(&mut b, &c, &d, &a, &m[9], MD5_K[63], MD5_S[63], i_round);
    lane_digests(&a, &b, &c, &d)
}

/// SSE2 lanes: eight messages as two registers of four u32 lanes each.
// why by hand: the compiler keeps `[u32; 8]` lanes scalar (SSE2 has no vector rotate), and
// MD5's single dependency chain per message leaves the core idle; SSE2 is part of every
// x86_64 CPU, so there is no runtime detection.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    /// Eight lanes.
    pub type V = [__m128i; 2];

    // SAFETY (every `unsafe` block of this module): the intrinsics only need SSE2, which
    // every x86_64 CPU has (it is in the target's baseline); they touch no memory.

    pub fn load(lanes: &super::Lanes) -> V {
        let half = |h: usize| unsafe {
            _mm_set_epi32(
                lanes[4 * h + 3] as i32,
                lanes[4 * h + 2] as i32,
                lanes[4 * h + 1] as i32,
                lanes[4 * h] as i32,
            )
        };
        [half(0), half(1)]
    }

    pub fn store(v: V) -> super::Lanes {
        // SAFETY: an __m128i is 16 plain bytes, and every bit pattern is a valid [u32; 4].
        let [lo, hi] = v.map(|x| unsafe { std::mem::transmute::<__m128i, [u32; 4]>(x) });
        std::array::from_fn(|l| if l < 4 { lo[l] } else { hi[l - 4] })
    }

    pub fn splat(x: u32) -> V {
        [unsafe { _mm_set1_epi32(x as i32) }; 2]
    }

    /// One step of round `R` (0 F, 1 G, 2 H, 3 I): `a = b + rotl(a + f(b, c, d) + m + k, s)`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn step<const R: u8>(a: &mut V, b: V, c: V, d: V, m: V, k: u32, s: u32) {
        unsafe { step_sse2::<R>(a, b, c, d, m, k, s) }
    }

    #[inline(always)]
    unsafe fn step_sse2<const R: u8>(a: &mut V, b: V, c: V, d: V, m: V, k: u32, s: u32) {
        let shl = _mm_cvtsi32_si128(s as i32);
        let shr = _mm_cvtsi32_si128(32 - s as i32);
        let k = _mm_set1_epi32(k as i32);
        for h in 0..2 {
            let (vb, vc, vd) = (b[h], c[h], d[h]);
            let f = match R {
                0 => _mm_or_si128(_mm_and_si128(vb, vc), _mm_andnot_si128(vb, vd)),
                1 => _mm_or_si128(_mm_and_si128(vd, vb), _mm_andnot_si128(vd, vc)),
                2 => _mm_xor_si128(_mm_xor_si128(vb, vc), vd),
                _ => _mm_xor_si128(vc, _mm_or_si128(vb, _mm_xor_si128(vd, _mm_set1_epi32(-1)))),
            };
            let sum = _mm_add_epi32(_mm_add_epi32(a[h], f), _mm_add_epi32(m[h], k));
            let rotated = _mm_or_si128(_mm_sll_epi32(sum, shl), _mm_srl_epi32(sum, shr));
            a[h] = _mm_add_epi32(vb, rotated);
        }
    }
}

/// MD5 of `LANES` keys of at most `ONE_BLOCK_MAX` bytes each (RFC 1321, one padded block per
/// key), the lanes side by side in SSE2 registers. Tested equal to `digest` (the md-5 crate).
#[cfg(target_arch = "x86_64")]
fn digest_lanes(keys: &[&[u8]; LANES]) -> [KeyDigest; LANES] {
    let blocks = padded_blocks(keys);
    let m: [sse2::V; 16] = std::array::from_fn(|w| sse2::load(&blocks[w]));
    let mut a = sse2::splat(0x67452301);
    let mut b = sse2::splat(0xefcdab89);
    let mut c = sse2::splat(0x98badcfe);
    let mut d = sse2::splat(0x10325476);
    // the 64 steps written out (RFC 1321's order: the four state words take turns)
    sse2::step::<0>(&mut a, b, c, d, m[0], MD5_K[0], MD5_S[0]);
    sse2::step::<0>(&mut d, a, b, c, m[1], MD5_K[1], MD5_S[1]);
    sse2::step::<0>(&mut c, d, a, b, m[2], MD5_K[2], MD5_S[2]);
    sse2::step::<0>(&mut b, c, d, a, m[3], MD5_K[3], MD5_S[3]);
    sse2::step::<0>(&mut a, b, c, d, m[4], MD5_K[4], MD5_S[4]);
    sse2::step::<0>(&mut d, a, b, c, m[5], MD5_K[5], MD5_S[5]);
    sse2::step::<0>(&mut c, d, a, b, m[6], MD5_K[6], MD5_S[6]);
    sse2::step::<0>(&mut b, c, d, a, m[7], MD5_K[7], MD5_S[7]);
    sse2::step::<0>(&mut a, b, c, d, m[8], MD5_K[8], MD5_S[8]);
    sse2::step::<0>(&mut d, a, b, c, m[9], MD5_K[9], MD5_S[9]);
    sse2::step::<0>(&mut c, d, a, b, m[10], MD5_K[10], MD5_S[10]);
    sse2::step::<0>(&mut b, c, d, a, m[11], MD5_K[11], MD5_S[11]);
    sse2::step::<0>(&mut a, b, c, d, m[12], MD5_K[12], MD5_S[12]);
    sse2::step::<0>(&mut d, a, b, c, m[13], MD5_K[13], MD5_S[13]);
    sse2::step::<0>(&mut c, d, a, b, m[14], MD5_K[14], MD5_S[14]);
    sse2::step::<0>(&mut b, c, d, a, m[15], MD5_K[15], MD5_S[15]);
    sse2::step::<1>(&mut a, b, c, d, m[1], MD5_K[16], MD5_S[16]);
    sse2::step::<1>(&mut d, a, b, c, m[6], MD5_K[17], MD5_S[17]);
    sse2::step::<1>(&mut c, d, a, b, m[11], MD5_K[18], MD5_S[18]);
    sse2::step::<1>(&mut b, c, d, a, m[0], MD5_K[19], MD5_S[19]);
    sse2::step::<1>(&mut a, b, c, d, m[5], MD5_K[20], MD5_S[20]);
    sse2::step::<1>(&mut d, a, b, c, m[10], MD5_K[21], MD5_S[21]);
    sse2::step::<1>(&mut c, d, a, b, m[15], MD5_K[22], MD5_S[22]);
    sse2::step::<1>(&mut b, c, d, a, m[4], MD5_K[23], MD5_S[23]);
    sse2::step::<1>(&mut a, b, c, d, m[9], MD5_K[24], MD5_S[24]);
    sse2::step::<1>(&mut d, a, b, c, m[14], MD5_K[25], MD5_S[25]);
    sse2::step::<1>(&mut c, d, a, b, m[3], MD5_K[26], MD5_S[26]);
    sse2::step::<1>(&mut b, c, d, a, m[8], MD5_K[27], MD5_S[27]);
    sse2::step::<1>(&mut a, b, c, d, m[13], MD5_K[28], MD5_S[28]);
    sse2::step::<1>(&mut d, a, b, c, m[2], MD5_K[29], MD5_S[29]);
    sse2::step::<1>(&mut c, d, a, b, m[7], MD5_K[30], MD5_S[30]);
    sse2::step::<1>(&mut b, c, d, a, m[12], MD5_K[31], MD5_S[31]);
    sse2::step::<2>(&mut a, b, c, d, m[5], MD5_K[32], MD5_S[32]);
    sse2::step::<2>(&mut d, a, b, c, m[8], MD5_K[33], MD5_S[33]);
    sse2::step::<2>(&mut c, d, a, b, m[11], MD5_K[34], MD5_S[34]);
    sse2::step::<2>(&mut b, c, d, a, m[14], MD5_K[35], MD5_S[35]);
    sse2::step::<2>(&mut a, b, c, d, m[1], MD5_K[36], MD5_S[36]);
    sse2::step::<2>(&mut d, a, b, c, m[4], MD5_K[37], MD5_S[37]);
    sse2::step::<2>(&mut c, d, a, b, m[7], MD5_K[38], MD5_S[38]);
    sse2::step::<2>(&mut b, c, d, a, m[10], MD5_K[39], MD5_S[39]);
    sse2::step::<2>(&mut a, b, c, d, m[13], MD5_K[40], MD5_S[40]);
    sse2::step::<2>(&mut d, a, b, c, m[0], MD5_K[41], MD5_S[41]);
    sse2::step::<2>(&mut c, d, a, b, m[3], MD5_K[42], MD5_S[42]);
    sse2::step::<2>(&mut b, c, d, a, m[6], MD5_K[43], MD5_S[43]);
    sse2::step::<2>(&mut a, b, c, d, m[9], MD5_K[44], MD5_S[44]);
    sse2::step::<2>(&mut d, a, b, c, m[12], MD5_K[45], MD5_S[45]);
    sse2::step::<2>(&mut c, d, a, b, m[15], MD5_K[46], MD5_S[46]);
    sse2::step::<2>(&mut b, c, d, a, m[2], MD5_K[47], MD5_S[47]);
    sse2::step::<3>(&mut a, b, c, d, m[0], MD5_K[48], MD5_S[48]);
    sse2::step::<3>(&mut d, a, b, c, m[7], MD5_K[49], MD5_S[49]);
    sse2::step::<3>(&mut c, d, a, b, m[14], MD5_K[50], MD5_S[50]);
    sse2::step::<3>(&mut b, c, d, a, m[5], MD5_K[51], MD5_S[51]);
    sse2::step::<3>(&mut a, b, c, d, m[12], MD5_K[52], MD5_S[52]);
    sse2::step::<3>(&mut d, a, b, c, m[3], MD5_K[53], MD5_S[53]);
    sse2::step::<3>(&mut c, d, a, b, m[10], MD5_K[54], MD5_S[54]);
    sse2::step::<3>(&mut b, c, d, a, m[1], MD5_K[55], MD5_S[55]);
    sse2::step::<3>(&mut a, b, c, d, m[8], MD5_K[56], MD5_S[56]);
    sse2::step::<3>(&mut d, a, b, c, m[15], MD5_K[57], MD5_S[57]);
    sse2::step::<3>(&mut c, d, a, b, m[6], MD5_K[58], MD5_S[58]);
    sse2::step::<3>(&mut b, c, d, a, m[13], MD5_K[59], MD5_S[59]);
    sse2::step::<3>(&mut a, b, c, d, m[4], MD5_K[60], MD5_S[60]);
    sse2::step::<3>(&mut d, a, b, c, m[11], MD5_K[61], MD5_S[61]);
    sse2::step::<3>(&mut c, d, a, b, m[2], MD5_K[62], MD5_S[62]);
    sse2::step::<3>(&mut b, c, d, a, m[9], MD5_K[63], MD5_S[63]);
    lane_digests(
        &sse2::store(a),
        &sse2::store(b),
        &sse2::store(c),
        &sse2::store(d),
    )
}

/// The MD5 of each key, appended to `out` in order (short keys eight at a time, longer ones
/// by the md-5 crate).
pub fn digest_keys<'k>(keys: impl IntoIterator<Item = &'k [u8]>, out: &mut Vec<KeyDigest>) {
    let mut pending: [&[u8]; LANES] = [&[]; LANES];
    let mut slots = [0usize; LANES];
    let mut n = 0;
    for key in keys {
        if key.len() > ONE_BLOCK_MAX {
            out.push(digest(key));
            continue;
        }
        slots[n] = out.len();
        pending[n] = key;
        out.push([0; HASH_BYTES]);
        n += 1;
        if n == LANES {
            for (slot, d) in slots.iter().zip(digest_lanes(&pending)) {
                out[*slot] = d;
            }
            n = 0;
        }
    }
    if n > 0 {
        for (slot, key) in slots[..n].iter().zip(&pending[..n]) {
            out[*slot] = digest(key);
        }
    }
}

/// Entries the cleaner puts before it calls a map of `slots` slots full (`int(slots * 0.9)`,
/// the same double arithmetic as Kafka's `(map.slots * dupBufferLoadFactor).toInt`).
pub fn max_entries_for(slots: usize) -> usize {
    (slots as f64 * LOAD_FACTOR) as usize
}

pub struct OffsetMap {
    /// `table_slots * ENTRY_BYTES` bytes of anonymous memory (zero pages until first written).
    table: MmapMut,
    /// Slots of `table` now: it starts small and doubles (rehashing) while the map is at most
    /// half full, up to `slots`.
    table_slots: usize,
    /// Kafka's slot count for the configured bytes: the largest table and the capacity rule.
    slots: usize,
    entries: usize,
    max_entries: usize,
    /// The last offset put, or the value of `update_latest_offset` (-1 initially).
    latest: i64,
}

/// Slots of a new map's table (1.5 MiB), or fewer when the configuration says so.
pub const INITIAL_TABLE_SLOTS: usize = 1 << 16;

impl std::fmt::Debug for OffsetMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetMap")
            .field("slots", &self.slots)
            .field("table_slots", &self.table_slots)
            .field("entries", &self.entries)
            .field("latest", &self.latest)
            .finish()
    }
}

fn allocate(slots: usize, map_bytes: usize) -> Result<MmapMut> {
    let table = MmapMut::map_anon(slots * ENTRY_BYTES).map_err(|e| {
        Error::InvalidConfig(format!(
            "log.cleaner.dedupe.buffer.size = {map_bytes} bytes cannot be allocated: {e}"
        ))
    })?;
    // why huge pages: lookups land on random slots of a table larger than the TLB reaches
    // with 4 KiB pages; best effort (a kernel without THP just ignores it).
    #[cfg(target_os = "linux")]
    if slots * ENTRY_BYTES >= 4 << 20 {
        let _ = table.advise(memmap2::Advice::HugePage);
    }
    Ok(table)
}

/// Byte position of probe `attempt` for `hash` in a table of `slots` slots (Kafka's
/// `positionOf`).
#[inline]
fn position_of(hash: &KeyDigest, attempt: usize, slots: usize) -> usize {
    let window = attempt.min(HASH_BYTES - 4);
    let word = i32::from_be_bytes([
        hash[window],
        hash[window + 1],
        hash[window + 2],
        hash[window + 3],
    ]);
    let linear = attempt.saturating_sub(HASH_BYTES - 4) as i32;
    let probe = word.wrapping_add(linear);
    // Kafka's Utils.abs: Integer.MIN_VALUE maps to 0 (Math.abs would stay negative).
    let abs = if probe == i32::MIN {
        0
    } else {
        probe.unsigned_abs()
    };
    (abs as usize % slots) * ENTRY_BYTES
}

#[inline]
fn is_empty_slot(slot: &[u8]) -> bool {
    slot.iter().all(|&b| b == 0)
}

impl OffsetMap {
    /// A map using at most `map_bytes` of memory; below `MIN_MAP_BYTES` is `InvalidConfig`.
    ///
    /// Deviation from Kafka, invisible in what the cleaner does: Kafka allocates the whole
    /// buffer up front; this table starts at `INITIAL_TABLE_SLOTS` and doubles while the map
    /// is at most half full, up to Kafka's slot count, so a log with few keys never faults in
    /// (zeroes) the whole buffer and its lookups stay in the caches. The capacity rule
    /// (`max_entries`, from the configured size) and the probe sequence (mod the table's
    /// slots) are Kafka's; the full-size table is Kafka's layout.
    pub fn new(map_bytes: usize) -> Result<OffsetMap> {
        if map_bytes < MIN_MAP_BYTES {
            return Err(Error::InvalidConfig(format!(
                "log.cleaner.dedupe.buffer.size must be at least {MIN_MAP_BYTES} bytes, got {map_bytes}"
            )));
        }
        let slots = map_bytes / ENTRY_BYTES;
        let table_slots = slots.min(INITIAL_TABLE_SLOTS);
        Ok(OffsetMap {
            table: allocate(table_slots, map_bytes)?,
            table_slots,
            slots,
            entries: 0,
            max_entries: max_entries_for(slots),
            latest: -1,
        })
    }

    /// Kafka's slot count (`map_bytes / 24`).
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Slots of the table now (at most `slots`).
    pub fn table_slots(&self) -> usize {
        self.table_slots
    }

    /// Distinct digests stored.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// The cleaner's "full" rule: no put may be made once this holds.
    pub fn is_full(&self) -> bool {
        self.entries >= self.max_entries
    }

    pub fn latest_offset(&self) -> i64 {
        self.latest
    }

    /// Kafka's `updateLatestOffset`: a segment was mapped to its end, so everything below the
    /// next segment's base is covered.
    pub fn update_latest_offset(&mut self, offset: i64) {
        self.latest = offset;
    }

    /// Byte position of the slot of probe `attempt` for `hash` in the table now.
    #[inline]
    fn position_of(&self, hash: &KeyDigest, attempt: usize) -> usize {
        position_of(hash, attempt, self.table_slots)
    }

    #[inline]
    fn slot(&self, pos: usize) -> &[u8] {
        &self.table[pos..pos + ENTRY_BYTES]
    }

    /// Hint the CPU to fetch `hash`'s first slot (the table may be far larger than the
    /// caches; a caller that knows its next keys early hides the miss behind other work).
    #[inline]
    pub fn prefetch(&self, hash: &KeyDigest) {
        #[cfg(target_arch = "x86_64")]
        {
            let pos = self.position_of(hash, 0);
            // SAFETY: a prefetch is only a hint and never faults; both addresses (the slot's
            // first and last byte: a slot may straddle two cache lines) are in the table.
            unsafe {
                let p = self.table.as_ptr().add(pos).cast::<i8>();
                std::arch::x86_64::_mm_prefetch(p, std::arch::x86_64::_MM_HINT_T0);
                std::arch::x86_64::_mm_prefetch(
                    p.add(ENTRY_BYTES - 1),
                    std::arch::x86_64::_MM_HINT_T0,
                );
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = hash;
    }

    /// Double the table (up to `slots`), reinserting every entry with the probe sequence of
    /// the new size. why the entries are copied out first and the old table freed before the
    /// new one is touched: the peak is then the new table plus the entries (at most half the
    /// old table's slots: a quarter of the new one), not both tables.
    fn grow(&mut self) -> Result<()> {
        let new_slots = (self.table_slots * 2).min(self.slots);
        let map_bytes = self.slots * ENTRY_BYTES;
        let mut entries: Vec<[u8; ENTRY_BYTES]> = Vec::new();
        entries.try_reserve_exact(self.entries).map_err(|_| {
            Error::InvalidConfig(format!(
                "log.cleaner.dedupe.buffer.size = {map_bytes} bytes cannot be allocated"
            ))
        })?;
        entries.extend(
            self.table
                .chunks_exact(ENTRY_BYTES)
                .filter(|e| !is_empty_slot(e))
                .map(|e| <[u8; ENTRY_BYTES]>::try_from(e).expect("24 bytes")),
        );
        self.table = allocate(1, map_bytes)?; // frees the old table
        self.table_slots = 1;
        let mut table = allocate(new_slots, map_bytes)?;
        for entry in &entries {
            let hash: &KeyDigest = entry[..HASH_BYTES].try_into().expect("16 bytes");
            let mut attempt = 0;
            loop {
                let pos = position_of(hash, attempt, new_slots);
                if is_empty_slot(&table[pos..pos + ENTRY_BYTES]) {
                    table[pos..pos + ENTRY_BYTES].copy_from_slice(entry);
                    break;
                }
                attempt += 1;
            }
        }
        self.table = table;
        self.table_slots = new_slots;
        Ok(())
    }

    /// Store `offset` for `hash`, overwriting an equal digest; returns the offset overwritten
    /// (None for a new digest). The caller checks `is_full` first (the cleaner's rule);
    /// putting a new digest into a map without a free slot is a bug. Err only when a larger
    /// table cannot be allocated.
    pub fn put(&mut self, hash: &KeyDigest, offset: i64) -> Result<Option<i64>> {
        if (self.entries + 1) * 2 > self.table_slots && self.table_slots < self.slots {
            self.grow()?;
        }
        let mut attempt = 0;
        let mut pos = self.position_of(hash, attempt);
        let old = loop {
            let slot = self.slot(pos);
            if is_empty_slot(slot) {
                assert!(
                    self.entries < self.table_slots,
                    "a new entry in a full offset map ({} slots)",
                    self.table_slots
                );
                self.table[pos..pos + HASH_BYTES].copy_from_slice(hash);
                self.entries += 1;
                break None;
            }
            if slot[..HASH_BYTES] == hash[..] {
                let old = i64::from_ne_bytes(slot[HASH_BYTES..].try_into().expect("8 bytes"));
                break Some(old);
            }
            attempt += 1;
            pos = self.position_of(hash, attempt);
        };
        self.table[pos + HASH_BYTES..pos + ENTRY_BYTES].copy_from_slice(&offset.to_ne_bytes());
        self.latest = offset;
        Ok(old)
    }

    /// The offset stored for `hash`, or -1.
    pub fn get(&self, hash: &KeyDigest) -> i64 {
        // Kafka's bound: once linear, `slots` more probes have seen every slot.
        let max_attempts = self.table_slots + HASH_BYTES - 4;
        for attempt in 0..max_attempts {
            let slot = self.slot(self.position_of(hash, attempt));
            if is_empty_slot(slot) {
                return -1;
            }
            if slot[..HASH_BYTES] == hash[..] {
                return i64::from_ne_bytes(slot[HASH_BYTES..].try_into().expect("8 bytes"));
            }
        }
        -1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_known_vectors() {
        // RFC 1321 appendix A.5
        assert_eq!(
            digest(b""),
            [
                0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8,
                0x42, 0x7e
            ]
        );
        assert_eq!(
            digest(b"abc"),
            [
                0x90, 0x01, 0x50, 0x98, 0x3c, 0xd2, 0x4f, 0xb0, 0xd6, 0x96, 0x3f, 0x7d, 0x28, 0xe1,
                0x7f, 0x72
            ]
        );
    }

    #[test]
    fn lane_digests_equal_md5() {
        // every length up to two blocks, and a mix of short and long keys in one call
        let keys: Vec<Vec<u8>> = (0..140u32)
            .map(|n| (0..n).map(|i| (i * 31 + n * 7) as u8).collect())
            .collect();
        let mut out = Vec::new();
        digest_keys(keys.iter().map(Vec::as_slice), &mut out);
        assert_eq!(out.len(), keys.len());
        for (k, d) in keys.iter().zip(&out) {
            assert_eq!(*d, digest(k), "key of {} bytes", k.len());
        }
        let mut out = Vec::new();
        digest_keys([&b"abc"[..]; 9], &mut out);
        assert!(out.iter().all(|d| *d == digest(b"abc")));
    }

    #[test]
    fn sizes_follow_the_config() {
        let m = OffsetMap::new(1024).unwrap();
        assert_eq!(m.slots(), 42);
        assert_eq!(m.max_entries(), 37);
        assert_eq!(m.latest_offset(), -1);
        let m = OffsetMap::new(128 << 20).unwrap();
        assert_eq!(m.slots(), (128 << 20) / 24);
        assert_eq!(m.max_entries(), 5_033_164); // int(5592405 * 0.9)
        assert!(matches!(OffsetMap::new(1023), Err(Error::InvalidConfig(_))));
    }

    #[test]
    fn put_get_overwrite() {
        let mut m = OffsetMap::new(4096).unwrap();
        let a = digest(b"a");
        let b = digest(b"b");
        assert_eq!(m.get(&a), -1);
        assert_eq!(m.put(&a, 5).unwrap(), None);
        assert_eq!(m.put(&b, 7).unwrap(), None);
        assert_eq!(
            (m.get(&a), m.get(&b), m.len(), m.latest_offset()),
            (5, 7, 2, 7)
        );
        assert_eq!(m.put(&a, 9).unwrap(), Some(5), "the overwritten offset");
        assert_eq!((m.get(&a), m.len(), m.latest_offset()), (9, 2, 9));
        assert_eq!(m.get(&digest(b"c")), -1);
        m.update_latest_offset(99);
        assert_eq!(m.latest_offset(), 99);
    }

    #[test]
    fn the_table_grows_to_kafkas_size_and_keeps_every_entry() {
        let slots = 300_000; // 7.2 MB: several doublings from INITIAL_TABLE_SLOTS
        let mut m = OffsetMap::new(slots * ENTRY_BYTES).unwrap();
        assert_eq!(m.table_slots(), INITIAL_TABLE_SLOTS);
        let keys: Vec<KeyDigest> = (0..m.max_entries() as u32)
            .map(|i| digest(&i.to_le_bytes()))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert!(!m.is_full());
            assert_eq!(m.put(k, i as i64).unwrap(), None);
        }
        assert!(m.is_full());
        assert_eq!((m.table_slots(), m.len()), (slots, m.max_entries()));
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(m.get(k), i as i64);
        }
        // past half full the table stays at Kafka's size
        assert_eq!(m.put(&keys[3], 1 << 40).unwrap(), Some(3));
        assert_eq!(m.get(&keys[3]), 1 << 40);
    }

    #[test]
    fn probe_matches_kafka_positions() {
        let m = OffsetMap::new(1024).unwrap(); // 42 slots (all of them from the start)
        assert_eq!(m.table_slots(), 42);
        let mut h = [0u8; 16];
        h[4] = 1; // window 0 = 0x00000000, window 1 = 0x00000001
        assert_eq!(m.position_of(&h, 0), 0);
        assert_eq!(m.position_of(&h, 1), ENTRY_BYTES);
        // from attempt 12 on the window stays at byte 12 and a linear step is added
        let mut h = [0u8; 16];
        h[12..16].copy_from_slice(&(-43i32).to_be_bytes());
        assert_eq!(m.position_of(&h, 12), ENTRY_BYTES); // abs(-43) % 42 = 1
        assert_eq!(m.position_of(&h, 13), 0); // abs(-42) % 42 = 0
        assert_eq!(m.position_of(&h, 14), 41 * ENTRY_BYTES); // abs(-41) % 42 = 41
                                                             // Utils.abs(Integer.MIN_VALUE) = 0
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&i32::MIN.to_be_bytes());
        assert_eq!(m.position_of(&h, 0), 0);
        // Java int wrap-around of window + linear step
        let mut h = [0u8; 16];
        h[12..16].copy_from_slice(&i32::MAX.to_be_bytes());
        // attempt 13: MAX + 1 wraps to MIN -> 0
        assert_eq!(m.position_of(&h, 13), 0);
    }

    #[test]
    fn colliding_digests_probe_onward() {
        // 42 slots: fill many keys, all stay retrievable (probing resolves collisions)
        let mut m = OffsetMap::new(1024).unwrap();
        let keys: Vec<KeyDigest> = (0..m.max_entries())
            .map(|i| digest(&i.to_be_bytes()))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert!(!m.is_full());
            m.put(k, i as i64 * 10).unwrap();
        }
        assert!(m.is_full());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(m.get(k), i as i64 * 10);
        }
        assert_eq!(m.get(&digest(b"absent")), -1);
        // filling the remaining slots still works (put never loops), lookups too
        for i in 0..(m.slots() - m.len()) {
            m.put(&digest(format!("extra{i}").as_bytes()), -5).unwrap();
        }
        assert_eq!(m.len(), m.slots());
        assert_eq!(m.get(&digest(b"absent")), -1); // a full table: bounded probing
    }
}
/// This thread's CPU time (for the timing tests: the machine is shared, wall time says little).
#[cfg(test)]
pub fn cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod speed {
    use super::*;

    #[test]
    #[ignore]
    fn map_fill_speed() {
        let keys: Vec<Vec<u8>> = (0..1_000_000)
            .map(|i| format!("key-{:06}", i % 100_000).into_bytes())
            .collect();
        let mut ds = Vec::with_capacity(keys.len());
        let t = cpu_time();
        digest_keys(keys.iter().map(Vec::as_slice), &mut ds);
        eprintln!("1M lane digests: {:?} cpu", cpu_time() - t);
        let t = cpu_time();
        let scalar: Vec<KeyDigest> = keys.iter().map(|k| digest(k)).collect();
        eprintln!("1M md-5 digests: {:?} cpu", cpu_time() - t);
        assert_eq!(scalar, ds);
        let t = cpu_time();
        let mut m = OffsetMap::new(128 << 20).unwrap();
        for (i, d) in ds.iter().enumerate() {
            if let Some(a) = ds.get(i + 16) {
                m.prefetch(a);
            }
            m.put(d, i as i64).unwrap();
        }
        eprintln!("1M puts: {:?} cpu", cpu_time() - t);
        let t = cpu_time();
        let mut n = 0;
        for (i, d) in ds.iter().enumerate() {
            if let Some(a) = ds.get(i + 16) {
                m.prefetch(a);
            }
            n += usize::from(m.get(d) == i as i64);
        }
        eprintln!("1M gets: {:?} cpu", cpu_time() - t);
        assert_eq!(n, 100_000);
    }
}
