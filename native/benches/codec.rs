//! Rough timings of the codec on one 1,000 x 100-byte batch per codec: memcpy and CRC-32C
//! baselines, encode, decode (bare and into columns), append validation.
//! `cargo bench --manifest-path native/Cargo.toml --no-default-features --bench codec`
//! (best of 100 rounds; the machine is shared, so the minimum is the least disturbed).

use pylog_native::batch::*;
use pylog_native::columns::ColumnsBuilder;
use pylog_native::compression::Codec;
use pylog_native::record::*;
use std::time::Instant;

/// Best of 100 rounds (the machine is shared: the minimum is the least disturbed).
fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f();
    let per_round = (reps / 100).max(1);
    (0..100)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_round {
                f();
            }
            t.elapsed().as_secs_f64() / per_round as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let values: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| (0..100).map(|j| (i + j) as u8).collect())
        .collect();
    let keys: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| format!("key-{i}").into_bytes())
        .collect();
    let specs: Vec<RecordSpec<'_>> = (0..1000)
        .map(|i| RecordSpec {
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(&keys[i]),
            value: Some(&values[i]),
            headers: &[],
        })
        .collect();
    let payload: usize = values.iter().chain(&keys).map(Vec::len).sum();
    let flat: Vec<u8> = values.concat();
    let mut copy = Vec::with_capacity(flat.len() * 2);
    let memcpy = time(20_000, || {
        copy.clear();
        copy.extend_from_slice(std::hint::black_box(&flat));
    });
    println!("memcpy of {} bytes: {:.2} us", flat.len(), memcpy * 1e6);
    let crc = time(20_000, || {
        std::hint::black_box(crc32c(std::hint::black_box(&flat)));
    });
    println!("crc32c of {} bytes: {:.2} us", flat.len(), crc * 1e6);
    for codec in [
        Codec::None,
        Codec::Lz4,
        Codec::Zstd,
        Codec::Snappy,
        Codec::Gzip,
    ] {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let reps = if codec == Codec::None { 20_000 } else { 300 };
        let enc = time(reps, || {
            out.clear();
            encode_batch(&mut out, &mut scratch, 0, &specs, codec, None).unwrap();
        });
        let batch = out.clone();
        let mut cols = ColumnsBuilder::new();
        let dec = time(reps, || {
            cols = ColumnsBuilder::new();
            cols.reserve(1000, batch.len());
            decode_batch(&batch, &mut scratch, |r| {
                cols.push(&r);
                Ok(())
            })
            .unwrap();
        });
        let bare = time(reps, || {
            decode_batch(&batch, &mut scratch, |r| {
                std::hint::black_box(r);
                Ok(())
            })
            .unwrap();
        });
        let validate = time(reps, || {
            pylog_native::validator::validate_for_append(&batch, &mut scratch, None).unwrap();
        });
        println!(
            "{:6}: validate_for_append {:.1} us",
            codec.name(),
            validate * 1e6
        );
        println!(
            "{:6}: {} bytes; encode {:.1} us; decode to columns {:.1} us = {:.2} GB/s payload; bare decode {:.1} us",
            codec.name(),
            batch.len(),
            enc * 1e6,
            dec * 1e6,
            payload as f64 / dec / 1e9,
            bare * 1e6
        );
    }
}
