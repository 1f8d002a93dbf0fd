//! The cleaner's key → latest offset map, Kafka's SkimpyOffsetMap
//! (storage/src/main/java/org/apache/kafka/storage/internals/log/SkimpyOffsetMap.java); its
//! twin is `pylog/reference/offset_map.py` (a dict with the same capacity rule).
//!
//! Layout: one flat, zero-initialised allocation of `slots * 24` bytes, `slots = map_bytes / 24`
//! (`log.cleaner.dedupe.buffer.size`), so the map's memory is bounded by its configuration.
//! Each slot is `MD5(key) (16 bytes) | offset (i64, native-endian)`; a slot of 24 zero bytes is
//! empty. Keys are known only by their digest (an MD5 collision would merge two keys; Kafka
//! takes that risk too). There is no delete.
//!
//! Probing (Kafka's `positionOf`): attempt `a` reads the big-endian i32 at byte `min(a, 12)` of
//! the digest, adds `max(0, a - 12)` (Java int arithmetic, wrapping), and takes
//! `abs(probe) % slots` (`Utils.abs`: `i32::MIN` maps to 0). So the first 13 probes use the
//! digest's successive 4-byte windows, then probing goes linear.
//!
//! Capacity: the cleaner stops filling at `max_entries = floor(slots * 0.9)` entries (Kafka's
//! `log.cleaner.io.buffer.load.factor`), checked before every put (even one that would
//! overwrite); so the table never gets full and a probe always ends at an empty slot.
//!
//! Thread-safety: a plain value; one cleaning pass owns it.

use md5::{Digest as _, Md5};

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

/// Entries the cleaner puts before it calls a map of `slots` slots full (`int(slots * 0.9)`,
/// the same double arithmetic as Kafka's `(map.slots * dupBufferLoadFactor).toInt`).
pub fn max_entries_for(slots: usize) -> usize {
    (slots as f64 * LOAD_FACTOR) as usize
}

pub struct OffsetMap {
    /// `slots * ENTRY_BYTES` bytes, zeroed (a fresh `calloc`: pages are faulted in on first use).
    table: Box<[u8]>,
    slots: usize,
    entries: usize,
    max_entries: usize,
    /// The last offset put, or the value of `update_latest_offset` (-1 initially).
    latest: i64,
}

impl std::fmt::Debug for OffsetMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffsetMap")
            .field("slots", &self.slots)
            .field("entries", &self.entries)
            .field("latest", &self.latest)
            .finish()
    }
}

impl OffsetMap {
    /// A map using `map_bytes` of memory; below `MIN_MAP_BYTES` is `InvalidConfig`.
    pub fn new(map_bytes: usize) -> Result<OffsetMap> {
        if map_bytes < MIN_MAP_BYTES {
            return Err(Error::InvalidConfig(format!(
                "log.cleaner.dedupe.buffer.size must be at least {MIN_MAP_BYTES} bytes, got {map_bytes}"
            )));
        }
        let slots = map_bytes / ENTRY_BYTES;
        let mut table = Vec::new();
        table.try_reserve_exact(slots * ENTRY_BYTES).map_err(|_| {
            Error::InvalidConfig(format!(
                "log.cleaner.dedupe.buffer.size = {map_bytes} bytes cannot be allocated"
            ))
        })?;
        // why resize after the reservation: zero-filling a fresh reservation of this size is a
        // calloc-like mapping of zero pages (only the slots used are ever touched).
        table.resize(slots * ENTRY_BYTES, 0);
        Ok(OffsetMap {
            table: table.into_boxed_slice(),
            slots,
            entries: 0,
            max_entries: max_entries_for(slots),
            latest: -1,
        })
    }

    pub fn slots(&self) -> usize {
        self.slots
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

    /// Byte position of the slot of probe `attempt` for `hash` (Kafka's `positionOf`).
    #[inline]
    fn position_of(&self, hash: &KeyDigest, attempt: usize) -> usize {
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
        (abs as usize % self.slots) * ENTRY_BYTES
    }

    #[inline]
    fn slot(&self, pos: usize) -> &[u8; ENTRY_BYTES] {
        self.table[pos..pos + ENTRY_BYTES]
            .try_into()
            .expect("slot size")
    }

    #[inline]
    fn is_empty_slot(slot: &[u8; ENTRY_BYTES]) -> bool {
        slot.iter().all(|&b| b == 0)
    }

    /// Hint the CPU to fetch `hash`'s first slot (the table is far larger than the caches; a
    /// caller that knows its next keys early hides the miss behind other work).
    #[inline]
    pub fn prefetch(&self, hash: &KeyDigest) {
        #[cfg(target_arch = "x86_64")]
        {
            let pos = self.position_of(hash, 0);
            // SAFETY: a prefetch is only a hint and never faults; the address is in the table.
            unsafe {
                std::arch::x86_64::_mm_prefetch(
                    self.table.as_ptr().add(pos).cast::<i8>(),
                    std::arch::x86_64::_MM_HINT_T0,
                );
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = hash;
    }

    /// Store `offset` for `hash`, overwriting an equal digest. The caller checks `is_full`
    /// first (the cleaner's rule); putting a new digest into a map without a free slot is a bug.
    pub fn put(&mut self, hash: &KeyDigest, offset: i64) {
        let mut attempt = 0;
        let mut pos = self.position_of(hash, attempt);
        loop {
            let slot = self.slot(pos);
            if Self::is_empty_slot(slot) {
                assert!(
                    self.entries < self.slots,
                    "a new entry in a full offset map ({} slots)",
                    self.slots
                );
                self.table[pos..pos + HASH_BYTES].copy_from_slice(hash);
                self.table[pos + HASH_BYTES..pos + ENTRY_BYTES]
                    .copy_from_slice(&offset.to_ne_bytes());
                self.entries += 1;
                break;
            }
            if slot[..HASH_BYTES] == hash[..] {
                self.table[pos + HASH_BYTES..pos + ENTRY_BYTES]
                    .copy_from_slice(&offset.to_ne_bytes());
                break;
            }
            attempt += 1;
            pos = self.position_of(hash, attempt);
        }
        self.latest = offset;
    }

    /// The offset stored for `hash`, or -1.
    pub fn get(&self, hash: &KeyDigest) -> i64 {
        // Kafka's bound: once linear, `slots` more probes have seen every slot.
        let max_attempts = self.slots + HASH_BYTES - 4;
        for attempt in 0..max_attempts {
            let slot = self.slot(self.position_of(hash, attempt));
            if Self::is_empty_slot(slot) {
                return -1;
            }
            if slot[..HASH_BYTES] == hash[..] {
                let mut b = [0u8; 8];
                b.copy_from_slice(&slot[HASH_BYTES..]);
                return i64::from_ne_bytes(b);
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
        m.put(&a, 5);
        m.put(&b, 7);
        assert_eq!(
            (m.get(&a), m.get(&b), m.len(), m.latest_offset()),
            (5, 7, 2, 7)
        );
        m.put(&a, 9);
        assert_eq!((m.get(&a), m.len(), m.latest_offset()), (9, 2, 9));
        assert_eq!(m.get(&digest(b"c")), -1);
        m.update_latest_offset(99);
        assert_eq!(m.latest_offset(), 99);
    }

    #[test]
    fn probe_matches_kafka_positions() {
        let m = OffsetMap::new(1024).unwrap(); // 42 slots
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
            m.put(k, i as i64 * 10);
        }
        assert!(m.is_full());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(m.get(k), i as i64 * 10);
        }
        assert_eq!(m.get(&digest(b"absent")), -1);
        // filling the remaining slots still works (put never loops), lookups too
        for i in 0..(m.slots() - m.len()) {
            m.put(&digest(format!("extra{i}").as_bytes()), -5);
        }
        assert_eq!(m.len(), m.slots());
        assert_eq!(m.get(&digest(b"absent")), -1); // a full table: bounded probing
    }
}
