//! The producer's partitioner hash: Kafka's murmur2 (clients/src/main/java/org/apache/kafka/common/
//! utils/Utils.java `murmur2`, `toPositive`) and BuiltInPartitioner.partitionForKey.
//!
//! Twin of `pylog/embedded/partitioner.py` (the pure-Python reference); both are held to Kafka's
//! own test vectors (UtilsTest.testMurmur2) by tests/test_partitioner.py. Pure functions.

const SEED: u32 = 0x9747_b28c;
const M: u32 = 0x5bd1_e995;
const R: u32 = 24;

/// Kafka's `Utils.murmur2`, returned as Java's signed `int`.
pub fn murmur2(data: &[u8]) -> i32 {
    let length = data.len();
    // why: Java's `seed ^ length` on ints; lengths over 2**31 do not occur (records are capped far below)
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() == 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: the sign bit cleared (not `abs`, which overflows on `MIN`).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// BuiltInPartitioner.partitionForKey: `toPositive(murmur2(key)) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (to_positive(murmur2(key)) as u32) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_vectors() {
        // clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java testMurmur2
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(murmur2(data), expected);
        }
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(partition_for_key(b"21", 1), 0);
    }
}
