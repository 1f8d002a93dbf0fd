//! The record-batch codec through the crate's public API (`batch`, `record`, `validator`):
//! golden bytes (ours and kafka-python's), round trips of every codec, each decoding and append
//! rule, and mutation fuzzing that must never panic.
//! `PYLOG_FUZZ_ROUNDS=200000 cargo test --test codec mutations` runs a longer fuzz.

use pylog_native::batch::*;
use pylog_native::compression::Codec;
use pylog_native::error::{CorruptKind, Error, Result};
use pylog_native::record::*;
use pylog_native::validator;

const CODECS: [Codec; 5] = [
    Codec::None,
    Codec::Gzip,
    Codec::Snappy,
    Codec::Lz4,
    Codec::Zstd,
];

type SpecHeader<'a> = (&'a str, Option<&'a [u8]>);

/// Owned records for tests: (timestamp, key, value, headers).
type Owned = (
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

/// The header lists of owned records, borrowed (what `owned_specs` points into).
fn owned_headers(records: &[Owned]) -> Vec<Vec<SpecHeader<'_>>> {
    records
        .iter()
        .map(|r| {
            r.3.iter()
                .map(|(k, v)| (k.as_str(), v.as_deref()))
                .collect()
        })
        .collect()
}

fn owned_specs<'a>(
    records: &'a [Owned],
    headers: &'a [Vec<SpecHeader<'a>>],
) -> Vec<RecordSpec<'a>> {
    records
        .iter()
        .zip(headers)
        .map(|(r, h)| RecordSpec {
            timestamp: r.0,
            key: r.1.as_deref(),
            value: r.2.as_deref(),
            headers: h,
        })
        .collect()
}

fn encode_owned(records: &[Owned], base_offset: i64, codec: Codec, lat: Option<i64>) -> Vec<u8> {
    let headers = owned_headers(records);
    let specs = owned_specs(records, &headers);
    let mut out = Vec::new();
    encode_batch(&mut out, &mut Vec::new(), base_offset, &specs, codec, lat).unwrap();
    out
}

/// (offset, timestamp, key, value, headers) of every record.
type Decoded = (
    i64,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

fn decode_owned(batch: &[u8]) -> Result<(BatchHeader, Vec<Decoded>)> {
    let mut got = Vec::new();
    let h = decode_batch(batch, &mut Vec::new(), |r| {
        let headers = r
            .headers()
            .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
            .collect::<Vec<_>>();
        assert_eq!(headers.len(), r.header_count);
        got.push((
            r.offset,
            r.timestamp,
            r.key.map(<[u8]>::to_vec),
            r.value.map(<[u8]>::to_vec),
            headers,
        ));
        Ok(())
    })?;
    Ok((h, got))
}

fn sample_records() -> Vec<Owned> {
    vec![
        (
            1_700_000_000_000,
            Some(b"k0".to_vec()),
            Some(b"v0".to_vec()),
            vec![],
        ),
        (
            1_699_999_999_000,
            None,
            Some(vec![7u8; 300]),
            vec![("h".into(), Some(b"x".to_vec()))],
        ),
        (
            1_700_000_000_500,
            Some(Vec::new()),
            None,
            vec![("a".into(), None), ("\u{e9}t\u{e9}".into(), Some(vec![]))],
        ),
        (
            1_700_000_000_100,
            Some(vec![1u8; 200]),
            Some(Vec::new()),
            vec![],
        ),
    ]
}

#[test]
fn crc32c_vectors() {
    assert_eq!(crc32c(b"Some String"), 608_512_271);
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}

/// Bit-at-a-time CRC-32C (reflected polynomial 0x82F63B78): the definition, for comparison.
fn crc32c_bitwise(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn crc32c_matches_the_definition_at_every_length_and_alignment() {
    // why: the SIMD implementation switches strategy by length (folding blocks, tails) and may
    // read unaligned; every path must agree with the definition.
    let data: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for start in 0..16 {
        for len in (0..600).chain([1023, 1024, 1025, 4095, 4096, 4097, 4984]) {
            let slice = &data[start..start + len];
            assert_eq!(
                crc32c(slice),
                crc32c_bitwise(slice),
                "start {start} len {len}"
            );
        }
    }
}

#[test]
fn golden_uncompressed_batch() {
    // One record, key "k", value "v", ts 5, base offset 3: every byte spelled out (DefaultRecordBatch.java, DefaultRecord.java).
    let batch = encode_owned(
        &[(5, Some(b"k".to_vec()), Some(b"v".to_vec()), vec![])],
        3,
        Codec::None,
        None,
    );
    let record: &[u8] = &[
        0x10, // length 8 (zigzag)
        0x00, // attributes
        0x00, // timestampDelta 0
        0x00, // offsetDelta 0
        0x02, b'k', // key
        0x02, b'v', // value
        0x00, // headers
    ];
    assert_eq!(batch.len(), 61 + record.len());
    assert_eq!(&batch[61..], record);
    let h = BatchHeader::parse(&batch).unwrap();
    assert_eq!(
        h,
        BatchHeader {
            base_offset: 3,
            length: (batch.len() - 12) as i32,
            partition_leader_epoch: 0,
            magic: 2,
            crc: crc32c(&batch[21..]),
            attributes: 0,
            last_offset_delta: 0,
            base_timestamp: 5,
            max_timestamp: 5,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records_count: 1,
        }
    );
    assert_eq!(
        &batch[..17],
        &[0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 58, 0, 0, 0, 0, 2]
    );
}

// Batches written by kafka-python's DefaultRecordBatchBuilder (an independent encoder), base
// offset 100: three records with a null key, a null value, headers with a null, an empty and
// a non-ASCII key, and a negative timestamp delta. Its LZ4 frame has a content size (FLG 0x68).
const KAFKA_PYTHON_NONE: &str = concat!(
    "0000000000000064000001fb0000000002931a1caf00000000000200000174876e800000000174876e8309ffffffffff",
    "ffffffffffffffffff00000003a403000000066b6579900376616c756576616c756576616c756576616c756576616c75",
    "6576616c756576616c756576616c756576616c756576616c756576616c756576616c756576616c756576616c75657661",
    "6c756576616c756576616c756576616c756576616c756576616c756576616c756576616c756576616c756576616c7565",
    "76616c756576616c756576616c756576616c756576616c756576616c756576616c756576616c756576616c756576616c",
    "756576616c756576616c756576616c756576616c756576616c756576616c756500c803001302019003746f6d623f746f",
    "6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f",
    "746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d",
    "623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f74",
    "6f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d623f746f6d62",
    "3f060a747261636502310a656d70747900086e756c6c011e00920c0400010208c3bc6d6c04ff00",
);
const KAFKA_PYTHON_GZIP: &str = concat!(
    "00000000000000640000008e0000000002c21d8a8e00010000000200000174876e800000000174876e8309ffffffffff",
    "ffffffffffffffffff000000031f8b080047f9086b02ff5bc2ccc0c0c0969d5a3981b92c31a7347518100c2798198499",
    "18273097e4e726d90f03828daba428313995c9902b35b7a0a4928123af342787518e61120f0b032313c7e13db9392cff",
    "190041421c58ca010000",
);
const KAFKA_PYTHON_LZ4: &str = concat!(
    "0000000000000064000000970000000002d178f74b00030000000200000174876e800000000174876e8309ffffffffff",
    "ffffffffffffffffff0000000304224d186840ca010000000000000b4f000000ff01a403000000066b6579900376616c",
    "75650500b0ef00c803001302019003746f6d623f0500b0f017060a747261636502310a656d70747900086e756c6c011e",
    "00920c0400010208c3bc6d6c04ff0000000000",
);
const KAFKA_PYTHON_ZSTD: &str = concat!(
    "00000000000000640000008a0000000002a5c1066100040000000200000174876e800000000174876e8309ffffffffff",
    "ffffffffffffffffff0000000328b52ffd60ca007d02004404a403000000066b6579900376616c756500c80300130201",
    "9003746f6d623f060a747261636502310a656d70747900086e756c6c011e00920c0400010208c3bc6d6c04ff00020040",
    "402940506509",
);

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn golden_records() -> Vec<Owned> {
    vec![
        (
            1_600_000_000_000,
            Some(b"key".to_vec()),
            Some(b"value".repeat(40)),
            vec![],
        ),
        (
            1_599_999_999_990,
            None,
            Some(b"tomb?".repeat(40)),
            vec![
                ("trace".into(), Some(b"1".to_vec())),
                ("empty".into(), Some(vec![])),
                ("null".into(), None),
            ],
        ),
        (
            1_600_000_000_777,
            Some(vec![]),
            None,
            vec![("\u{fc}ml".into(), Some(vec![0xFF, 0x00]))],
        ),
    ]
}

#[test]
fn kafka_python_golden_batches() {
    let expected = golden_records();
    for (codec, hex) in [
        (Codec::None, KAFKA_PYTHON_NONE),
        (Codec::Gzip, KAFKA_PYTHON_GZIP),
        (Codec::Lz4, KAFKA_PYTHON_LZ4),
        (Codec::Zstd, KAFKA_PYTHON_ZSTD),
    ] {
        let batch = unhex(hex);
        let (h, got) = decode_owned(&batch).unwrap();
        assert_eq!(h.codec_id(), codec.id());
        assert_eq!(
            (h.base_offset, h.records_count, h.max_timestamp),
            (100, 3, 1_600_000_000_777)
        );
        for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
            assert_eq!(
                (g.0, g.1, &g.2, &g.3, &g.4),
                (100 + i as i64, e.0, &e.1, &e.2, &e.3),
                "{codec:?}"
            );
        }
        validator::validate_for_append(&batch, &mut Vec::new(), None).unwrap();
    }
    // Uncompressed, our encoder writes exactly kafka-python's bytes.
    assert_eq!(
        encode_owned(&expected, 100, Codec::None, None),
        unhex(KAFKA_PYTHON_NONE)
    );
}

#[test]
fn round_trip_every_codec() {
    let recs = sample_records();
    for codec in CODECS {
        for lat in [None, Some(1_800_000_000_000)] {
            let batch = encode_owned(&recs, 1000, codec, lat);
            let (h, got) = decode_owned(&batch).unwrap();
            assert_eq!(h.codec_id(), codec.id());
            assert_eq!(h.records_count, 4);
            assert_eq!(h.last_offset_delta, 3);
            assert_eq!(h.base_timestamp, recs[0].0);
            assert_eq!(h.timestamp_type(), u8::from(lat.is_some()));
            assert_eq!(h.max_timestamp, lat.unwrap_or(1_700_000_000_500));
            assert_eq!(got.len(), recs.len());
            for (i, (r, g)) in recs.iter().zip(&got).enumerate() {
                assert_eq!(g.0, 1000 + i as i64);
                assert_eq!(
                    g.1,
                    lat.unwrap_or(r.0),
                    "LogAppendTime reports maxTimestamp"
                );
                assert_eq!((&g.2, &g.3, &g.4), (&r.1, &r.2, &r.3));
            }
            validator::validate_for_append(&batch, &mut Vec::new(), None).unwrap();
            decode_batch(&batch, &mut Vec::new(), |r| {
                assert_eq!(r.timestamp_type, u8::from(lat.is_some()));
                Ok(())
            })
            .unwrap();
        }
    }
}

#[test]
fn encode_appends_and_reuses_scratch() {
    let recs = sample_records();
    let headers = owned_headers(&recs);
    let specs = owned_specs(&recs, &headers);
    let mut out = b"prefix".to_vec();
    let mut scratch = vec![1, 2, 3];
    encode_batch(&mut out, &mut scratch, 0, &specs, Codec::Gzip, None).unwrap();
    let first_end = out.len();
    encode_batch(&mut out, &mut scratch, 4, &specs, Codec::None, None).unwrap();
    assert_eq!(&out[..6], b"prefix");
    let (_, a) = decode_owned(&out[6..first_end]).unwrap();
    let (_, b) = decode_owned(&out[first_end..]).unwrap();
    assert_eq!(a.len(), 4);
    assert_eq!(b[3].0, 7);
    let err = encode_batch(&mut out, &mut scratch, 0, &[], Codec::None, None).unwrap_err();
    assert!(matches!(err, Error::InvalidRecord(_)));
}

#[test]
fn frame_rules() {
    let batch = encode_owned(&sample_records(), 0, Codec::None, None);
    assert_eq!(
        frame(&batch),
        Frame::Batch(BatchHeader::parse(&batch).unwrap())
    );
    assert_eq!(frame(&batch[..11]), Frame::Incomplete);
    assert_eq!(frame(&batch[..batch.len() - 1]), Frame::Incomplete);
    let mut longer = batch.clone();
    longer.extend_from_slice(&[0; 5]);
    assert!(matches!(frame(&longer), Frame::Batch(_)));
    // length < 49 is corrupt even when the bytes are short (a zeroed tail).
    assert!(matches!(frame(&[0u8; 12]), Frame::Corrupt(_)));
    let mut bad = batch.clone();
    bad[MAGIC_POS] = 1;
    assert!(matches!(frame(&bad), Frame::Corrupt(_)));
    // Incomplete is checked before magic.
    assert_eq!(frame(&bad[..bad.len() - 1]), Frame::Incomplete);
}

fn corrupt_reason(r: Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(Error::CorruptBatch {
            reason,
            path: None,
            position: 0,
            ..
        }) => reason,
        other => panic!("expected CorruptBatch at 0, got {other:?}"),
    }
}

/// Re-seal a hand-edited batch: fix length and CRC.
fn reseal(batch: &mut [u8]) {
    let len = (batch.len() - 12) as i32;
    batch[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c(&batch[ATTRIBUTES_POS..]);
    batch[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

fn with_records(records: &[u8], count: i32) -> Vec<u8> {
    let mut b = encode_owned(&[(0, None, None, vec![])], 0, Codec::None, None);
    b.truncate(61);
    b[RECORDS_COUNT_POS..RECORDS_COUNT_POS + 4].copy_from_slice(&count.to_be_bytes());
    b.extend_from_slice(records);
    reseal(&mut b);
    b
}

fn validate_for_append(b: &[u8]) -> Result<BatchHeader> {
    validator::validate_for_append(b, &mut Vec::new(), None)
}

#[test]
fn validate_for_append_rules() {
    let good = encode_owned(&sample_records(), 0, Codec::Lz4, None);
    validate_for_append(&good).unwrap();
    corrupt_reason(validate_for_append(&good[..60]));
    let mut longer = good.clone();
    longer.push(0);
    assert!(corrupt_reason(validate_for_append(&longer)).contains("length"));
    let mut m = good.clone();
    m[MAGIC_POS] = 1;
    assert!(corrupt_reason(validate_for_append(&m)).contains("magic"));
    let mut m = good.clone();
    m[70] ^= 1;
    assert!(corrupt_reason(validate_for_append(&m)).contains("CRC"));
    let mut m = good.clone();
    m[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&5i16.to_be_bytes());
    reseal(&mut m);
    assert!(corrupt_reason(validate_for_append(&m)).contains("codec"));
    let mut m = good.clone();
    m[RECORDS_COUNT_POS..RECORDS_COUNT_POS + 4].copy_from_slice(&0i32.to_be_bytes());
    reseal(&mut m);
    assert!(corrupt_reason(validate_for_append(&m)).contains("count"));
    let mut m = good.clone();
    m[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4].copy_from_slice(&2i32.to_be_bytes());
    reseal(&mut m);
    assert!(corrupt_reason(validate_for_append(&m)).contains("lastOffsetDelta"));
}

#[test]
fn set_fields_in_place() {
    let mut b = encode_owned(&sample_records(), 0, Codec::None, None);
    set_base_offset(&mut b, 77);
    set_partition_leader_epoch(&mut b, 9);
    verify_crc(&b).unwrap(); // neither field is under the CRC
    set_log_append_time(&mut b, 123);
    verify_crc(&b).unwrap();
    let (h, got) = decode_owned(&b).unwrap();
    assert_eq!(
        (
            h.base_offset,
            h.partition_leader_epoch,
            h.max_timestamp,
            h.timestamp_type()
        ),
        (77, 9, 123, 1)
    );
    assert!(got.iter().all(|r| r.1 == 123));
    assert_eq!(got[0].0, 77);
}

#[test]
fn decoding_rules_are_corruption() {
    // Batch-level rules.
    let good = encode_owned(&sample_records(), 0, Codec::None, None);
    corrupt_reason(decode_owned(&good[..60]));
    corrupt_reason(decode_owned(&good[..good.len() - 1]));
    let mut m = good.clone();
    m[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&48i32.to_be_bytes());
    corrupt_reason(decode_owned(&m));
    let mut m = good.clone();
    m[MAGIC_POS] = 0;
    corrupt_reason(decode_owned(&m));
    let mut m = good.clone();
    m[80] ^= 0x40;
    assert!(corrupt_reason(decode_owned(&m)).contains("CRC"));
    for (pos, val) in [(ATTRIBUTES_POS + 1, 7u8), (RECORDS_COUNT_POS, 0x80)] {
        let mut m = good.clone();
        m[pos] = val;
        reseal(&mut m);
        corrupt_reason(decode_owned(&m));
    }
    // Garbage in a compressed stream.
    let mut m = encode_owned(&sample_records(), 0, Codec::Zstd, None);
    m[70] ^= 0xFF;
    reseal(&mut m);
    assert!(corrupt_reason(decode_owned(&m)).contains("decompression"));

    // Record-level rules on hand-built records areas.
    let cases: &[(&str, &[u8], i32)] = &[
        (
            "varint longer than 5",
            &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            1,
        ),
        (
            "varlong longer than 10",
            &[
                0x18, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
            ],
            1,
        ),
        ("negative record length", &[0x03], 1),
        (
            "runs past the end of the records",
            &[0x10, 0, 0, 0, 1, 1, 0],
            1,
        ),
        ("does not match", &[0x0E, 0, 0, 0, 1, 1, 0, 0xAA], 1),
        ("run past the record length", &[0x0A, 0, 0, 0, 1, 1, 0], 1),
        ("key length below -1", &[0x0C, 0, 0, 0, 0x03, 1, 0], 1),
        ("value length below -1", &[0x0C, 0, 0, 0, 1, 0x03, 0], 1),
        ("negative header count", &[0x0C, 0, 0, 0, 1, 1, 0x01], 1),
        (
            "negative header key length",
            &[0x10, 0, 0, 0, 1, 1, 0x02, 0x01, 1],
            1,
        ),
        ("UTF-8", &[0x12, 0, 0, 0, 1, 1, 0x02, 0x02, 0xFF, 1], 1),
        (
            "header value length below -1",
            &[0x12, 0, 0, 0, 1, 1, 0x02, 0x02, b'a', 0x03],
            1,
        ),
        ("count is 2", &[0x0C, 0, 0, 0, 1, 1, 0], 2),
        ("left over", &[0x0C, 0, 0, 0, 1, 1, 0, 0x00], 1),
    ];
    for (what, records, count) in cases {
        let b = with_records(records, *count);
        let reason = corrupt_reason(decode_owned(&b));
        assert!(reason.contains(what), "{what}: {reason}");
    }
    // The valid twin of those cases decodes: null key, null value, no headers.
    let (_, got) = decode_owned(&with_records(&[0x0C, 0, 0, 0, 1, 1, 0], 1)).unwrap();
    assert_eq!(got, vec![(0, 0, None, None, vec![])]);
    // A header with a UTF-8 key and a null value.
    let (_, got) = decode_owned(&with_records(
        &[0x12, 0, 0, 0, 1, 1, 0x02, 0x02, b'a', 0x01],
        1,
    ))
    .unwrap();
    assert_eq!(got[0].4, vec![("a".to_string(), None)]);
}

#[test]
fn huge_count_does_not_allocate() {
    let b = with_records(&[0x0C, 0, 0, 0, 1, 1, 0], i32::MAX);
    assert!(corrupt_reason(decode_owned(&b)).contains("count"));
    // And a huge header count inside one record.
    let b = with_records(&[0x14, 0, 0, 0, 1, 1, 0xFE, 0xFF, 0xFF, 0xFF, 0x0F], 1);
    assert!(corrupt_reason(decode_owned(&b)).contains("run past"));
}

#[test]
fn visit_errors_pass_through() {
    let b = encode_owned(&sample_records(), 0, Codec::None, None);
    let mut seen = 0;
    let err = decode_batch(&b, &mut Vec::new(), |_| {
        seen += 1;
        if seen == 2 {
            Err(Error::Internal("stop".into()))
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert!(matches!(err, Error::Internal(_)));
    assert_eq!(seen, 2);
}

#[test]
fn decode_batches_positions() {
    let a = encode_owned(&sample_records(), 0, Codec::None, None);
    let b = encode_owned(&sample_records(), 4, Codec::Snappy, None);
    let mut buf = a.clone();
    buf.extend_from_slice(&b);
    let mut offsets = Vec::new();
    decode_batches(&buf, &mut Vec::new(), |r| {
        offsets.push(r.offset);
        Ok(())
    })
    .unwrap();
    assert_eq!(offsets, (0..8).collect::<Vec<i64>>());
    decode_batches(&[], &mut Vec::new(), |_| Ok(())).unwrap();
    let at = |r: Result<()>| match r {
        Err(Error::CorruptBatch { position, .. }) => position,
        other => panic!("expected CorruptBatch, got {other:?}"),
    };
    // A torn tail (even under 12 bytes) is corruption in a buffer, at the tail's position.
    for cut in [1, 11, 12, 60, b.len() - 1] {
        assert_eq!(
            at(decode_batches(
                &buf[..a.len() + cut],
                &mut Vec::new(),
                |_| Ok(())
            )),
            a.len() as u64
        );
    }
    let mut bad = buf.clone();
    bad[a.len() + 70] ^= 1;
    assert_eq!(
        at(decode_batches(&bad, &mut Vec::new(), |_| Ok(()))),
        a.len() as u64
    );
}

#[test]
fn record_spans_per_batch() {
    let a = encode_owned(&sample_records(), 0, Codec::None, None);
    let b = encode_owned(&sample_records(), 4, Codec::Lz4, None);
    let empty = with_records(&[], 0);
    let mut buf = a.clone();
    buf.extend_from_slice(&b);
    buf.extend_from_slice(&empty);
    assert_eq!(
        record_spans(&buf).unwrap(),
        vec![(4, 0, 3), (4, 4, 7), (0, -1, -1)]
    );
    // the same checks as decode_batches: a flipped byte is corruption at its batch
    let mut bad = buf.clone();
    bad[a.len() + 70] ^= 1;
    match record_spans(&bad) {
        Err(Error::CorruptBatch { position, .. }) => assert_eq!(position, a.len() as u64),
        other => panic!("expected CorruptBatch, got {other:?}"),
    }
}

#[test]
fn empty_batch_count_zero_decodes() {
    let b = with_records(&[], 0);
    let (h, got) = decode_owned(&b).unwrap();
    assert_eq!(h.records_count, 0);
    assert!(got.is_empty());
}

/// Mutate valid batches of every codec thousands of times; decode must return, never panic.
#[test]
fn mutations_never_panic() {
    let mut recs = sample_records();
    for i in 0..30 {
        recs.push((
            i * 7 - 100,
            Some(vec![i as u8; (i * 13 % 50) as usize]),
            None,
            vec![("k".into(), Some(vec![1; 3]))],
        ));
    }
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut scratch = Vec::new();
    // PYLOG_FUZZ_ROUNDS=200000 for a longer local run.
    let rounds: usize = std::env::var("PYLOG_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    for codec in CODECS {
        let good = encode_owned(&recs, 0, codec, None);
        for cut in 0..good.len() {
            assert!(decode_batch(&good[..cut], &mut scratch, |_| Ok(())).is_err());
        }
        for round in 0..rounds {
            let mut m = good.clone();
            let flips = 1 + next() % 3;
            for _ in 0..flips {
                let r = next();
                // Mostly mutate the records area, sometimes the header.
                let i = if r % 4 == 0 {
                    (r >> 8) as usize % 61
                } else {
                    61 + (r >> 8) as usize % (m.len() - 61)
                };
                m[i] = (r >> 32) as u8;
            }
            // Half the time fix the CRC so the record parser sees the damage.
            if round % 2 == 0
                && i32::from_be_bytes(m[8..12].try_into().unwrap()) as usize == m.len() - 12
            {
                let crc = crc32c(&m[ATTRIBUTES_POS..]);
                m[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
            }
            let mut n = 0usize;
            let _ = decode_batch(&m, &mut scratch, |r| {
                n += r.headers().count() + r.key.map_or(0, <[u8]>::len);
                Ok(())
            });
            let _ = validator::validate_for_append(&m, &mut scratch, None);
            let _ = frame(&m);
        }
    }
}

/// Cross-check against an independent decoder: `PYLOG_DUMP_DIR=/tmp/x cargo test --test codec -- --ignored dump`
/// writes one batch per codec for kafka-python's `DefaultRecordBatch` to read.

#[test]
#[ignore]
fn dump_batches_for_kafka_python() {
    let dir = std::env::var("PYLOG_DUMP_DIR").expect("set PYLOG_DUMP_DIR");
    let big = vec![b'x'; 100_000];
    let headers: &[(&str, Option<&[u8]>)] = &[("h1", Some(b"v1")), ("h\u{e9}", None)];
    let specs = [
        RecordSpec {
            timestamp: 1000,
            key: Some(b"key0"),
            value: Some(b"value0"),
            headers: &[],
        },
        RecordSpec {
            timestamp: 900,
            key: None,
            value: Some(&big),
            headers,
        },
        RecordSpec {
            timestamp: 1500,
            key: Some(b""),
            value: None,
            headers: &[],
        },
    ];
    for codec in [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ] {
        for (suffix, lat) in [("create", None), ("append", Some(5000))] {
            let mut out = Vec::new();
            encode_batch(&mut out, &mut Vec::new(), 42, &specs, codec, lat).unwrap();
            std::fs::write(format!("{dir}/{}-{suffix}.bin", codec.name()), &out).unwrap();
        }
    }
}

#[test]
fn corrupt_kinds_are_one_closed_set() {
    let names: std::collections::HashSet<&str> =
        CorruptKind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(names.len(), CorruptKind::ALL.len());
}

fn kind_of(r: Result<BatchHeader>) -> (bool, CorruptKind) {
    match r {
        Err(Error::CorruptBatch { kind, .. }) => (true, kind),
        Err(Error::InvalidBatch { kind, .. }) => (false, kind),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A control batch of one record, resealed: (attributes, producer id, key, value).
fn control(attributes: i16, producer_id: i64, key: &[u8], value: &[u8]) -> Vec<u8> {
    let spec = [RecordSpec {
        timestamp: 5,
        key: Some(key),
        value: Some(value),
        headers: &[],
    }];
    let mut b = Vec::new();
    encode_batch(&mut b, &mut Vec::new(), 0, &spec, Codec::None, None).unwrap();
    b[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attributes.to_be_bytes());
    b[PRODUCER_ID_POS..PRODUCER_ID_POS + 8].copy_from_slice(&producer_id.to_be_bytes());
    reseal(&mut b);
    b
}

#[test]
fn validator_rules() {
    let check = |b: &[u8]| validator::validate_for_append(b, &mut Vec::new(), None);
    let commit = control(0x30, 7, &[0, 0, 0, 1], &[0, 0, 0, 0, 0, 9]);
    check(&commit).unwrap();
    // control batches are checked, but readers never see their records
    let mut seen = 0;
    decode_batch(&commit, &mut Vec::new(), |_| {
        seen += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, 0);
    assert_eq!(
        kind_of(check(&control(0x20, 7, &[0, 0, 0, 1], &[0, 0, 0, 0, 0, 9]))),
        (false, CorruptKind::Control)
    );
    assert_eq!(
        kind_of(check(&control(
            0x30,
            -1,
            &[0, 0, 0, 0],
            &[0, 0, 0, 0, 0, 9]
        ))),
        (false, CorruptKind::Control)
    );
    assert_eq!(
        kind_of(check(&control(0x30, 7, &[0, 0, 1], &[]))),
        (false, CorruptKind::Control)
    );
    check(&control(0x20, -1, &[0, 0, 0, 2], &[])).unwrap(); // another control type
                                                            // unused attribute bits; a lying maxTimestamp; offset deltas out of order
    let good = encode_owned(&sample_records(), 0, Codec::None, None);
    let mut m = good.clone();
    m[ATTRIBUTES_POS] = 0x01;
    reseal(&mut m);
    assert_eq!(kind_of(check(&m)), (false, CorruptKind::Attributes));
    let mut m = good.clone();
    m[MAX_TIMESTAMP_POS + 7] ^= 1;
    reseal(&mut m);
    assert_eq!(kind_of(check(&m)), (false, CorruptKind::Timestamp));
    let two_records = |area: &[u8]| {
        let mut b = with_records(area, 2);
        b[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4].copy_from_slice(&1i32.to_be_bytes());
        reseal(&mut b);
        b
    };
    let two = two_records(&[0x0C, 0, 0, 2, 1, 1, 0, 0x0C, 0, 0, 0, 1, 1, 0]);
    assert_eq!(kind_of(check(&two)), (false, CorruptKind::Offset));
    // a malformed record later outranks the bad offset of an earlier one
    let two = two_records(&[0x0C, 0, 0, 2, 1, 1, 0, 0x0C, 0, 0, 2, 1, 1, 0x01]);
    assert_eq!(kind_of(check(&two)), (true, CorruptKind::Record));
    // leftover bytes after the records of a compressed batch
    let mut area = Vec::new();
    pylog_native::compression::compress(Codec::Gzip, &[0x0C, 0, 0, 0, 1, 1, 0, 0], &mut area)
        .unwrap();
    let mut b = with_records(&area, 1);
    b[ATTRIBUTES_POS + 1] = 1;
    reseal(&mut b);
    decode_batch(&b, &mut Vec::new(), |_| Ok(())).unwrap(); // a reader tolerates it, as Kafka
    assert_eq!(kind_of(check(&b)), (true, CorruptKind::RecordCount));
}
