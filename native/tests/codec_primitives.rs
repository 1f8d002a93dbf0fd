//! The codec's primitives through the crate's public API: varints (Kafka's ByteUtilsTest
//! vectors), the five codecs (round trips, Kafka's stream layouts, hostile streams under the
//! size limit) and the columns builder.

mod varint {
    use pylog_native::varint::*;

    /// `put_varint` at an offset into a larger buffer; its length must match `varint_size`.
    fn enc32(v: i32) -> Vec<u8> {
        let mut buf = [0u8; 1 + MAX_VARINT_BYTES + 1];
        let end = put_varint(&mut buf, 1, v);
        assert_eq!(end - 1, varint_size(v), "size of {v}");
        buf[1..end].to_vec()
    }

    fn enc64(v: i64) -> Vec<u8> {
        let mut buf = [0u8; 1 + MAX_VARLONG_BYTES + 1];
        let end = put_varlong(&mut buf, 1, v);
        assert_eq!(end - 1, varlong_size(v), "size of {v}");
        buf[1..end].to_vec()
    }

    /// Kafka ByteUtilsTest testVarlongSerde. Its entries in the i32 range are exactly
    /// testVarintSerde's vectors (zigzag makes both encodings agree there), so the varint test
    /// takes them from here.
    const VARLONG_VECTORS: &[(i64, &[u8])] = &[
        (0, &[0x00]),
        (-1, &[0x01]),
        (1, &[0x02]),
        (63, &[0x7E]),
        (-64, &[0x7F]),
        (64, &[0x80, 0x01]),
        (-65, &[0x81, 0x01]),
        (8191, &[0xFE, 0x7F]),
        (-8192, &[0xFF, 0x7F]),
        (8192, &[0x80, 0x80, 0x01]),
        (-8193, &[0x81, 0x80, 0x01]),
        (1048575, &[0xFE, 0xFF, 0x7F]),
        (-1048576, &[0xFF, 0xFF, 0x7F]),
        (1048576, &[0x80, 0x80, 0x80, 0x01]),
        (-1048577, &[0x81, 0x80, 0x80, 0x01]),
        (134217727, &[0xFE, 0xFF, 0xFF, 0x7F]),
        (-134217728, &[0xFF, 0xFF, 0xFF, 0x7F]),
        (134217728, &[0x80, 0x80, 0x80, 0x80, 0x01]),
        (-134217729, &[0x81, 0x80, 0x80, 0x80, 0x01]),
        (i32::MAX as i64, &[0xFE, 0xFF, 0xFF, 0xFF, 0x0F]),
        (i32::MIN as i64, &[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
        (17179869183, &[0xFE, 0xFF, 0xFF, 0xFF, 0x7F]),
        (-17179869184, &[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
        (17179869184, &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
        (-17179869185, &[0x81, 0x80, 0x80, 0x80, 0x80, 0x01]),
        (2199023255551, &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
        (-2199023255552, &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
        (2199023255552, &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
        (-2199023255553, &[0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
        (281474976710655, &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
        (
            -281474976710656,
            &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        ),
        (
            281474976710656,
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        ),
        (
            -281474976710657,
            &[0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        ),
        (
            36028797018963967,
            &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        ),
        (
            -36028797018963968,
            &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        ),
        (
            36028797018963968,
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        ),
        (
            -36028797018963969,
            &[0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        ),
        (
            4611686018427387903,
            &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        ),
        (
            -4611686018427387904,
            &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
        ),
        (
            4611686018427387904,
            &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        ),
        (
            -4611686018427387905,
            &[0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
        ),
        (
            i64::MAX,
            &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        ),
        (
            i64::MIN,
            &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        ),
    ];

    #[test]
    fn varint_kafka_vectors() {
        let vectors: Vec<(i32, &[u8])> = VARLONG_VECTORS
            .iter()
            .filter_map(|&(v, bytes)| Some((i32::try_from(v).ok()?, bytes)))
            .collect();
        // testVarintSerde's 21 vectors.
        assert_eq!(vectors.len(), 21);
        for (v, bytes) in vectors {
            assert_eq!(enc32(v), bytes, "encode {v}");
            assert_eq!(read_varint(bytes), Ok((v, bytes.len())), "decode {v}");
            // Trailing bytes are not consumed.
            let mut longer = bytes.to_vec();
            longer.push(0xAA);
            assert_eq!(read_varint(&longer), Ok((v, bytes.len())));
        }
    }

    #[test]
    fn varlong_kafka_vectors() {
        for &(v, bytes) in VARLONG_VECTORS {
            assert_eq!(enc64(v), bytes, "encode {v}");
            assert_eq!(read_varlong(bytes), Ok((v, bytes.len())), "decode {v}");
        }
    }

    #[test]
    fn varint_rejects_too_long_and_truncated() {
        // A 5th byte with the MSB set is illegal (ByteUtilsTest testInvalidVarint).
        assert_eq!(
            read_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(VarintError::TooLong)
        );
        assert_eq!(
            read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80]),
            Err(VarintError::TooLong)
        );
        // Java drops the high bits of the 5th byte rather than failing.
        assert!(read_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]).is_ok());
        assert_eq!(read_varint(&[]), Err(VarintError::Truncated));
        assert_eq!(read_varint(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(
            read_varint(&[0xFF, 0xFF, 0xFF, 0xFF]),
            Err(VarintError::Truncated)
        );
    }

    #[test]
    fn varlong_rejects_too_long_and_truncated() {
        // ByteUtilsTest testInvalidVarlong: 11 bytes.
        let eleven = [
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
        ];
        assert_eq!(read_varlong(&eleven), Err(VarintError::TooLong));
        assert_eq!(read_varlong(&[]), Err(VarintError::Truncated));
        assert_eq!(read_varlong(&[0x80, 0x80]), Err(VarintError::Truncated));
    }

    #[test]
    fn round_trip_sweep() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for shift in 0..64 {
            for _ in 0..64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v64 = (x >> shift) as i64;
                let v64 = if x & 1 == 1 { v64.wrapping_neg() } else { v64 };
                let b = enc64(v64);
                assert_eq!(read_varlong(&b), Ok((v64, b.len())));
                let v32 = v64 as i32;
                let b = enc32(v32);
                assert_eq!(read_varint(&b), Ok((v32, b.len())));
            }
        }
    }
}

mod compression {
    use pylog_native::compression::*;
    use std::io::Write;

    const LIMIT: usize = 64 << 20;

    fn sample(n: usize) -> Vec<u8> {
        // Compressible but not trivially: words from a small vocabulary plus a counter.
        let mut v = Vec::with_capacity(n);
        let mut i = 0u32;
        while v.len() < n {
            i = i.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let word: &[u8] = match (i >> 16) % 5 {
                0 => b"kafka ",
                1 => b"log ",
                2 => b"segment ",
                3 => b"batch ",
                _ => b"record ",
            };
            v.extend_from_slice(word);
            v.push((i >> 24) as u8);
        }
        v.truncate(n);
        v
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut x = 0x1234_5678_9abc_def0u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    #[test]
    fn ids_and_names() {
        for c in ALL {
            assert_eq!(Codec::from_id(c.id()), Some(c));
            assert_eq!(Codec::from_name(c.name()), Some(c));
        }
        assert_eq!(Codec::from_id(5), None);
        assert_eq!(Codec::from_name("producer"), None);
        assert_eq!(Codec::Zstd.id(), 4);
    }

    #[test]
    fn round_trips() {
        for c in ALL {
            for n in [0, 1, 100, 32 * 1024, 64 * 1024, 64 * 1024 + 1, 300_000] {
                for data in [sample(n), noise(n)] {
                    let mut z = vec![0xEE]; // appends, does not overwrite
                    compress(c, &data, &mut z).unwrap();
                    assert_eq!(z[0], 0xEE);
                    let mut back = vec![0xDD];
                    decompress(c, &z[1..], &mut back, LIMIT).unwrap();
                    assert_eq!(back[0], 0xDD);
                    assert_eq!(&back[1..], &data[..], "{c:?} n={n}");
                }
            }
        }
    }

    #[test]
    fn xxh32_vectors() {
        assert_eq!(xxh32(b"", 0), 0x02CC_5D05);
        // Kafka's default descriptor (FLG 0x60, BD 0x40) has HC 0x82 (Lz4BlockOutputStream.java).
        assert_eq!(lz4_header_checksum(&[0x60, 0x40]), 0x82);
    }

    #[test]
    fn lz4_frame_layout() {
        let mut z = Vec::new();
        compress(Codec::Lz4, &sample(1000), &mut z).unwrap();
        assert_eq!(&z[..7], &[0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82]);
        assert_eq!(&z[z.len() - 4..], &[0, 0, 0, 0]);
        let size = u32::from_le_bytes(z[7..11].try_into().unwrap());
        assert_eq!(
            size & LZ4_UNCOMPRESSED_BIT,
            0,
            "compressible block is compressed"
        );
        assert_eq!(11 + size as usize + 4, z.len());

        // Incompressible input is stored raw with bit 31 set.
        let data = noise(70_000);
        let mut z = Vec::new();
        compress(Codec::Lz4, &data, &mut z).unwrap();
        let first = u32::from_le_bytes(z[7..11].try_into().unwrap());
        assert_eq!(first, LZ4_UNCOMPRESSED_BIT | (64 * 1024) as u32);
        assert_eq!(&z[11..11 + 65536], &data[..65536]);
    }

    /// Build a frame by hand with optional features the reader must accept.
    fn lz4_frame(
        data: &[u8],
        flg_extra: u8,
        bd_code: u8,
        content_size: bool,
        block_sums: bool,
    ) -> Vec<u8> {
        let mut flg = 0x60 | flg_extra;
        if content_size {
            flg |= LZ4_FLG_CONTENT_SIZE;
        }
        if block_sums {
            flg |= LZ4_FLG_BLOCK_CHECKSUM;
        }
        let mut desc = vec![flg, bd_code << 4];
        if content_size {
            desc.extend_from_slice(&(data.len() as u64).to_le_bytes());
        }
        let mut z = LZ4_MAGIC.to_le_bytes().to_vec();
        z.extend_from_slice(&desc);
        z.push(lz4_header_checksum(&desc));
        for chunk in data.chunks(40_000) {
            let c = lz4_flex::block::compress(chunk);
            z.extend_from_slice(&(c.len() as u32).to_le_bytes());
            z.extend_from_slice(&c);
            if block_sums {
                z.extend_from_slice(&[1, 2, 3, 4]);
            }
        }
        z.extend_from_slice(&[0, 0, 0, 0]);
        if flg & LZ4_FLG_CONTENT_CHECKSUM != 0 {
            z.extend_from_slice(&[9, 9, 9, 9]);
        }
        z
    }

    #[test]
    fn lz4_reader_accepts_frame_variants() {
        let data = sample(100_000);
        for bd in 4..=7 {
            for (extra, cs, bs) in [
                (0, false, false),
                (LZ4_FLG_CONTENT_CHECKSUM, true, true),
                (0, true, false),
            ] {
                let z = lz4_frame(&data, extra, bd, cs, bs);
                let mut back = Vec::new();
                decompress(Codec::Lz4, &z, &mut back, LIMIT).unwrap();
                assert_eq!(back, data);
            }
        }
    }

    #[test]
    fn lz4_reader_rejects() {
        let data = sample(1000);
        let good = lz4_frame(&data, 0, 4, false, false);
        let mut back = Vec::new();
        decompress(Codec::Lz4, &good, &mut back, LIMIT).unwrap();
        let fix_hc = |z: &mut Vec<u8>| z[6] = lz4_header_checksum(&z[4..6]);
        for (what, pos, val) in [
            ("version", 4, 0x60 ^ 0x40 ^ 0x80), // version 10
            ("dependent", 4, 0x40),
            ("reserved flg", 4, 0x61),
            ("reserved bd", 5, 0x41),
            ("bd code 3", 5, 0x30),
        ] {
            let mut z = good.clone();
            z[pos] = val;
            fix_hc(&mut z);
            let mut out = Vec::new();
            assert!(
                decompress(Codec::Lz4, &z, &mut out, LIMIT).is_err(),
                "{what}"
            );
            assert!(out.is_empty());
        }
        let mut z = good.clone();
        z[6] ^= 1;
        assert!(
            decompress(Codec::Lz4, &z, &mut Vec::new(), LIMIT).is_err(),
            "bad HC"
        );
        // Missing end mark.
        assert!(decompress(Codec::Lz4, &good[..good.len() - 4], &mut Vec::new(), LIMIT).is_err());
    }

    #[test]
    fn snappy_xerial_layout_and_raw_fallback() {
        let data = sample(100_000);
        let mut z = Vec::new();
        compress(Codec::Snappy, &data, &mut z).unwrap();
        assert_eq!(&z[..8], &XERIAL_MAGIC);
        assert_eq!(&z[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        // 100 000 bytes in 32 KiB blocks = 4 blocks.
        let mut pos = 16;
        let mut blocks = 0;
        while pos < z.len() {
            let n = i32::from_be_bytes(z[pos..pos + 4].try_into().unwrap()) as usize;
            let block = &z[pos + 4..pos + 4 + n];
            assert!(snap::raw::decompress_len(block).unwrap() <= SNAPPY_BLOCK_BYTES);
            pos += 4 + n;
            blocks += 1;
        }
        assert_eq!(blocks, 4);

        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let mut back = Vec::new();
        decompress(Codec::Snappy, &raw, &mut back, LIMIT).unwrap();
        assert_eq!(back, data);

        // Two xerial streams back to back.
        let mut two = z.clone();
        two.extend_from_slice(&z);
        let mut back = Vec::new();
        decompress(Codec::Snappy, &two, &mut back, LIMIT).unwrap();
        assert_eq!(back.len(), 2 * data.len());
    }

    #[test]
    fn gzip_multi_member() {
        let (a, b) = (sample(5000), noise(3000));
        let mut z = Vec::new();
        compress(Codec::Gzip, &a, &mut z).unwrap();
        compress(Codec::Gzip, &b, &mut z).unwrap();
        let mut back = Vec::new();
        decompress(Codec::Gzip, &z, &mut back, LIMIT).unwrap();
        assert_eq!(back.len(), 8000);
        assert_eq!(&back[..5000], &a[..]);
    }

    #[test]
    fn zstd_frame_without_content_size() {
        let data = sample(200_000);
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_contentsize(false).unwrap();
        enc.write_all(&data).unwrap();
        let z = enc.finish().unwrap();
        let mut back = Vec::new();
        decompress(Codec::Zstd, &z, &mut back, LIMIT).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn limits_are_enforced() {
        let data = vec![0u8; 1 << 20];
        for c in ALL {
            let mut z = Vec::new();
            compress(c, &data, &mut z).unwrap();
            let mut out = Vec::new();
            assert!(
                decompress(c, &z, &mut out, data.len() - 1).is_err(),
                "{c:?}"
            );
            assert!(out.len() < data.len(), "{c:?}");
            let mut out = Vec::new();
            decompress(c, &z, &mut out, data.len()).unwrap();
            assert_eq!(out.len(), data.len());
        }
    }

    #[test]
    fn garbage_and_truncation_never_panic() {
        let data = sample(5000);
        let mut x = 0xDEAD_BEEFu64;
        // PYLOG_FUZZ_ROUNDS=200000 for a longer local run.
        let rounds: usize = std::env::var("PYLOG_FUZZ_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000);
        for c in ALL {
            let mut z = Vec::new();
            compress(c, &data, &mut z).unwrap();
            for cut in 0..z.len().min(300) {
                let _ = decompress(c, &z[..cut], &mut Vec::new(), LIMIT);
            }
            for _ in 0..rounds {
                let mut m = z.clone();
                for _ in 0..1 + (x % 4) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = (x >> 8) as usize % m.len();
                    m[i] = (x >> 40) as u8;
                }
                let mut out = vec![7u8];
                if decompress(c, &m, &mut out, LIMIT).is_err() {
                    assert_eq!(out, [7], "{c:?}: an error appends nothing");
                }
                assert!(out.len() <= LIMIT + 1);
            }
        }
    }
}

mod columns {
    use pylog_native::columns::*;
    use pylog_native::record::RecordView;

    fn view<'a>(offset: i64, key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> RecordView<'a> {
        RecordView {
            offset,
            timestamp: offset * 10,
            timestamp_type: 0,
            key,
            value,
            headers_raw: &[],
            header_count: 0,
        }
    }

    #[test]
    fn arrow_layout_with_nulls() {
        let mut c = ColumnsBuilder::new();
        assert!(c.is_empty());
        assert_eq!(c.key_offsets, vec![0]);
        c.push(&view(5, Some(b"ab"), None));
        c.push(&view(6, None, Some(b"xyz")));
        c.push(&view(7, Some(b""), Some(b"q")));
        assert_eq!(c.len(), 3);
        assert_eq!(c.offsets, vec![5, 6, 7]);
        assert_eq!(c.timestamps, vec![50, 60, 70]);
        assert_eq!(c.keys, b"ab");
        assert_eq!(c.key_offsets, vec![0, 2, 2, 2]);
        assert_eq!(c.key_null, vec![0, 1, 0]);
        assert_eq!(c.values, b"xyzq");
        assert_eq!(c.value_offsets, vec![0, 0, 3, 4]);
        assert_eq!(c.value_null, vec![1, 0, 0]);
    }

    #[test]
    fn reserve_is_clamped() {
        let mut c = ColumnsBuilder::new();
        c.reserve(usize::MAX / 16, usize::MAX / 2);
        assert!(c.offsets.capacity() <= RESERVE_RECORDS_MAX + 1);
        assert!(c.values.capacity() <= RESERVE_BYTES_MAX);
    }
}
