//! One record of a v2 batch, Kafka's DefaultRecord
//! (clients/src/main/java/org/apache/kafka/common/record/DefaultRecord.java): sizing and
//! writing records, and parsing them from a records area (the batch around them is `batch.rs`).
//! Kafka's DefaultRecord.java and ByteUtils.java.
//!
//! Each record (all varints zigzag, `varint.rs`):
//! ```text
//! length varint (bytes after it) | attributes i8 (0) | timestampDelta varlong | offsetDelta varint
//! keyLength varint (-1 null) | key | valueLength varint (-1 null) | value
//! headersCount varint | { keyLength varint (>= 0) | UTF-8 key | valueLength varint (-1 null) | value }*
//! ```
//! Invariants:
//! - Writer: every record's length field is computed before its bytes are written
//!   (`record_body_size`) and the bytes written are asserted equal to it; a record body over
//!   i32::MAX is `RecordTooLarge`.
//! - Reader: every read is bounds-checked against the record it belongs to, nothing is
//!   preallocated from a count, and a `RecordView` handed to a visitor has passed every check,
//!   header keys' UTF-8 included. Errors are `CorruptBatch` at position 0.
//!
//! Thread-safety: pure functions of their arguments.

use crate::batch::BatchHeader;
use crate::error::{CorruptKind, Error, Result};
use crate::varint::{
    read_varint, read_varlong, varint_size, varlong_size, zigzag_decode_32, zigzag_decode_64,
    zigzag_encode_32, zigzag_encode_64, VarintError,
};

/// One record to encode. Keys/values `None` are nulls; header keys are UTF-8 by construction.
#[derive(Clone, Copy, Debug)]
pub struct RecordSpec<'a> {
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

/// Size of a nullable byte string: its length varint plus its bytes (-1 for null).
#[inline]
fn nullable_size(b: Option<&[u8]>) -> usize {
    match b {
        None => 1,
        // A length above i32::MAX gives a wrong varint size here, but it also makes the record
        // body exceed i32::MAX, which encode_batch rejects.
        Some(b) => varint_size(b.len() as i32).saturating_add(b.len()),
    }
}

#[inline]
fn len_i32(n: usize, what: &str) -> Result<i32> {
    i32::try_from(n)
        .map_err(|_| Error::RecordTooLarge(format!("{what} of {n} bytes does not fit a record")))
}

/// Size of a record's body (everything after its length varint), saturating: every length
/// inside is at most the body size, so `body <= i32::MAX` proves they all fit their i32 fields.
#[inline]
fn record_body_size(r: &RecordSpec<'_>, offset_delta: i32, base_timestamp: i64) -> usize {
    let mut size = (1 // attributes
        + varlong_size(r.timestamp.wrapping_sub(base_timestamp))
        + varint_size(offset_delta)
        + varint_size(r.headers.len() as i32))
    .saturating_add(nullable_size(r.key))
    .saturating_add(nullable_size(r.value));
    for (k, v) in r.headers {
        size = size
            .saturating_add(varint_size(k.len() as i32) + k.len())
            .saturating_add(nullable_size(*v));
    }
    size
}

/// The length varint of a nullable byte string (-1 for null).
#[inline]
fn nullable_len(b: Option<&[u8]>) -> i32 {
    b.map_or(-1, |b| b.len() as i32)
}

/// Push the unsigned LEB128 bytes of `u` (a zigzag-encoded varint or varlong).
// why byte pushes: the caller reserved the record's bytes, so each push is a store and a
// predictable capacity check; gathering the fields on the stack first cost a failed
// store-to-load forward per record (perf), and a variable-length copy a memmove call.
#[inline(always)]
fn push_unsigned(out: &mut Vec<u8>, mut u: u64) {
    while u >= 0x80 {
        out.push((u as u8) | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
}

#[inline(always)]
fn push_varint(out: &mut Vec<u8>, v: i32) {
    push_unsigned(out, zigzag_encode_32(v) as u64);
}

#[inline(always)]
fn push_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    push_varint(out, nullable_len(b));
    if let Some(b) = b {
        out.extend_from_slice(b);
    }
}

/// Append the records area (uncompressed) of `records` to `out`, offset deltas from 0; returns
/// the records' maximum timestamp (at least `base_timestamp`). A record body over i32::MAX is
/// `RecordTooLarge`; `out` then holds a partial area, which the caller cuts.
// why one pass: each record is sized (arithmetic on its lengths) right before it is written, so
// no per-call table of sizes and no zero-filled area that the writer then overwrites; one
// `reserve` per record, then byte pushes for the small fields and one memmove per byte string.
pub fn write_records(
    out: &mut Vec<u8>,
    records: &[RecordSpec<'_>],
    base_timestamp: i64,
) -> Result<i64> {
    let mut max_timestamp = base_timestamp;
    for (i, r) in records.iter().enumerate() {
        let offset_delta = i as i32; // the caller checked that the count fits an i32
        let body = len_i32(
            record_body_size(r, offset_delta, base_timestamp),
            "a record",
        )?;
        out.reserve(varint_size(body) + body as usize);
        push_varint(out, body);
        let body_start = out.len();
        out.push(0); // attributes
        push_unsigned(
            out,
            zigzag_encode_64(r.timestamp.wrapping_sub(base_timestamp)),
        );
        push_varint(out, offset_delta);
        push_nullable(out, r.key);
        push_nullable(out, r.value);
        push_varint(out, r.headers.len() as i32);
        for (k, v) in r.headers {
            push_varint(out, k.len() as i32);
            out.extend_from_slice(k.as_bytes());
            push_nullable(out, *v);
        }
        assert_eq!(
            out.len() - body_start,
            body as usize,
            "a record's bytes differ from its computed size"
        );
        max_timestamp = max_timestamp.max(r.timestamp);
    }
    Ok(max_timestamp)
}

/// Append one record with explicit deltas and an already validated header section
/// (`headers_raw` holding `header_count` headers, as a `RecordView` carries them): the
/// cleaner's copy of a kept record into a rebuilt batch (cleaner.rs), with its offset delta
/// and timestamp delta taken against the rebuilt batch's base. A body over i32::MAX is
/// `RecordTooLarge` (`out` is then unchanged).
pub fn write_record_raw(
    out: &mut Vec<u8>,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    header_count: usize,
    headers_raw: &[u8],
) -> Result<()> {
    let header_count = len_i32(header_count, "a header count")?;
    let body =
        (1 + varlong_size(timestamp_delta) + varint_size(offset_delta) + varint_size(header_count))
            .saturating_add(nullable_size(key))
            .saturating_add(nullable_size(value))
            .saturating_add(headers_raw.len());
    let body = len_i32(body, "a record")?;
    out.reserve(varint_size(body) + body as usize);
    push_varint(out, body);
    let body_start = out.len();
    out.push(0); // attributes
    push_unsigned(out, zigzag_encode_64(timestamp_delta));
    push_varint(out, offset_delta);
    push_nullable(out, key);
    push_nullable(out, value);
    push_varint(out, header_count);
    out.extend_from_slice(headers_raw);
    assert_eq!(
        out.len() - body_start,
        body as usize,
        "a record's bytes differ from its computed size"
    );
    Ok(())
}

/// A decoded record borrowing from the batch (or from the decompression scratch buffer).
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    pub offset: i64,
    /// Already resolved: the batch's maxTimestamp when the batch is LogAppendTime.
    pub timestamp: i64,
    /// The batch's timestamp type: 0 CreateTime, 1 LogAppendTime (here so a visitor can build
    /// a full record without the batch header, which it sees only afterwards).
    pub timestamp_type: u8,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The raw, already validated header section of the record and its header count.
    pub headers_raw: &'a [u8],
    pub header_count: usize,
}

impl<'a> RecordView<'a> {
    /// Headers as (UTF-8 key, value) pairs; validated during decode, so this cannot fail.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            raw: self.headers_raw,
            remaining: self.header_count,
        }
    }
}

pub struct HeaderIter<'a> {
    raw: &'a [u8],
    remaining: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, Option<&'a [u8]>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        // why: decode_batch validated these bytes, so every step succeeds for its views; a view
        // built by hand from bad bytes just ends early (checked parsing, no unsafe shortcut).
        let mut cur = Cursor {
            buf: self.raw,
            pos: 0,
        };
        let item = parse_header_entry(&mut cur).ok();
        match item {
            Some(item) => {
                self.raw = &self.raw[cur.pos..];
                self.remaining -= 1;
                Some(item)
            }
            None => {
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

/// Checked reads over one record body; errors are static strings so the hot path allocates nothing.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn varint(&mut self, what: &'static str) -> std::result::Result<i32, &'static str> {
        // why the one-byte path here: most lengths and deltas take one byte, and testing it
        // before slicing saves the slice's bounds check and the pattern match (validation
        // decodes every record of an append, so this is on the append path too).
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(zigzag_decode_32(b as u32));
            }
        }
        match read_varint(&self.buf[self.pos..]) {
            Ok((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            Err(VarintError::TooLong) => Err("varint longer than 5 bytes"),
            Err(VarintError::Truncated) => Err(what),
        }
    }

    #[inline(always)]
    fn varlong(&mut self, what: &'static str) -> std::result::Result<i64, &'static str> {
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(zigzag_decode_64(b as u64));
            }
        }
        match read_varlong(&self.buf[self.pos..]) {
            Ok((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            Err(VarintError::TooLong) => Err("varlong longer than 10 bytes"),
            Err(VarintError::Truncated) => Err(what),
        }
    }

    #[inline]
    fn bytes(
        &mut self,
        n: usize,
        what: &'static str,
    ) -> std::result::Result<&'a [u8], &'static str> {
        if n > self.buf.len() - self.pos {
            return Err(what);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A varint length followed by that many bytes; -1 is null, below -1 is corrupt.
    #[inline(always)]
    fn nullable(
        &mut self,
        what: &'static str,
        neg: &'static str,
    ) -> std::result::Result<Option<&'a [u8]>, &'static str> {
        let len = self.varint(what)?;
        if len < 0 {
            return if len == -1 { Ok(None) } else { Err(neg) };
        }
        self.bytes(len as usize, what).map(Some)
    }
}

const RECORD_OVERRUN: &str = "record fields run past the record length";

#[inline]
fn parse_header_entry<'a>(
    cur: &mut Cursor<'a>,
) -> std::result::Result<(&'a str, Option<&'a [u8]>), &'static str> {
    let key_len = cur.varint(RECORD_OVERRUN)?;
    if key_len < 0 {
        return Err("negative header key length");
    }
    let key = cur.bytes(key_len as usize, RECORD_OVERRUN)?;
    let key = std::str::from_utf8(key).map_err(|_| "header key is not valid UTF-8")?;
    let value = cur.nullable(RECORD_OVERRUN, "header value length below -1")?;
    Ok((key, value))
}

/// Parse the record at `data[*pos..]`, advancing `*pos` past it.
// why: inlined into decode_batch's loop so the view is built in registers, not copied through
// a stack slot per record (measured: a third of the decode time).
#[inline(always)]
fn parse_record<'d>(
    data: &'d [u8],
    pos: &mut usize,
    header: &BatchHeader,
    log_append_time: bool,
) -> std::result::Result<RecordView<'d>, &'static str> {
    let mut outer = Cursor {
        buf: data,
        pos: *pos,
    };
    let len = outer.varint("truncated record length")?;
    if len < 0 {
        return Err("negative record length");
    }
    let body = outer.bytes(
        len as usize,
        "record length runs past the end of the records",
    )?;
    let mut cur = Cursor { buf: body, pos: 0 };
    cur.bytes(1, RECORD_OVERRUN)?; // attributes: unused
    let timestamp_delta = cur.varlong(RECORD_OVERRUN)?;
    let offset_delta = cur.varint(RECORD_OVERRUN)?;
    let key = cur.nullable(RECORD_OVERRUN, "key length below -1")?;
    let value = cur.nullable(RECORD_OVERRUN, "value length below -1")?;
    let header_count = cur.varint(RECORD_OVERRUN)?;
    if header_count < 0 {
        return Err("negative header count");
    }
    let headers_start = cur.pos;
    // why: each header takes >= 2 bytes, so a hostile count ends at the record's end, not in 2^31 steps.
    for _ in 0..header_count {
        parse_header_entry(&mut cur)?;
    }
    let headers_raw = &body[headers_start..cur.pos];
    if cur.pos != body.len() {
        return Err("record length does not match the bytes its fields take");
    }
    *pos = outer.pos;
    Ok(RecordView {
        offset: header.base_offset.wrapping_add(offset_delta as i64),
        timestamp: if log_append_time {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(timestamp_delta)
        },
        timestamp_type: u8::from(log_append_time),
        key,
        value,
        headers_raw,
        header_count: header_count as usize,
    })
}

/// Parse `header.records_count` records from `data` and visit each. Offsets and timestamps are
/// resolved from `header` (base + delta, or maxTimestamp for LogAppendTime), so a caller that
/// wants the raw deltas passes a header with base offset and base timestamp 0 and the
/// CreateTime type. `no_leftover`: bytes after the last record are corruption (Kafka checks
/// that only for uncompressed batches, "Incorrect declared batch size"; append validation
/// checks it for every codec).
pub fn decode_records_area<F>(
    data: &[u8],
    header: &BatchHeader,
    no_leftover: bool,
    mut visit: F,
) -> Result<()>
where
    F: FnMut(RecordView<'_>) -> Result<()>,
{
    let log_append_time = header.timestamp_type() == 1;
    let mut pos = 0;
    for i in 0..header.records_count {
        if pos == data.len() {
            return Err(Error::corrupt(
                CorruptKind::RecordCount,
                format!(
                    "batch holds {i} records but its count is {}",
                    header.records_count
                ),
                0,
            ));
        }
        let record = parse_record(data, &mut pos, header, log_append_time).map_err(|reason| {
            Error::corrupt(CorruptKind::Record, format!("record {i}: {reason}"), 0)
        })?;
        visit(record)?;
    }
    if no_leftover && pos != data.len() {
        return Err(Error::corrupt(
            CorruptKind::RecordCount,
            format!(
                "{} bytes left over after the {} records of the batch",
                data.len() - pos,
                header.records_count
            ),
            0,
        ));
    }
    Ok(())
}
