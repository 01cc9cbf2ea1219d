//! A batch of SAM text lines → one borrowed [`SamRecord`] at a time, validated on entry.
//!
//! No allocation per record: fields borrow the batch, numbers are parsed by hand from bytes.
//! The counting code can then trust every field (docs/counting.md, "Inputs").

use std::fmt;

/// SAM's POS/PNEXT limit (2^31 - 1).
const MAX_POSITION: u64 = i32::MAX as u64;

/// Names of the 11 mandatory SAM fields, in column order.
pub const FIELD_NAMES: [&str; 11] = [
    "QNAME", "FLAG", "RNAME", "POS", "MAPQ", "CIGAR", "RNEXT", "PNEXT", "TLEN", "SEQ", "QUAL",
];

/// `XS:A:` strand tag of spliced aligners (HISAT2, STAR, TopHat).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum XsStrand {
    #[default]
    Absent,
    Forward,
    Reverse,
}

impl XsStrand {
    /// The code used in junction keys: 0 absent, 1 `+`, 2 `-`.
    pub fn code(self) -> u8 {
        match self {
            Self::Absent => 0,
            Self::Forward => 1,
            Self::Reverse => 2,
        }
    }
}

/// The CIGAR of a record: SAM text, or BAM's little-endian `u32` ops (`len << 4 | op`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CigarField<'a> {
    /// CIGAR text; `*` for none.
    Text(&'a [u8]),
    /// BAM binary ops, 4 bytes each; empty for none.
    Binary(&'a [u8]),
}

/// One alignment record (a SAM line, or a BAM record decoded by [`crate::bam`]), fields
/// borrowed from the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamRecord<'a> {
    pub qname: &'a [u8],
    pub flag: u16,
    pub rname: &'a [u8],
    /// 1-based leftmost position; 0 means none.
    pub pos: u32,
    pub mapq: u8,
    pub cigar: CigarField<'a>,
    pub rnext: &'a [u8],
    /// 1-based mate position; 0 means none.
    pub pnext: u32,
    pub tlen: i32,
    /// Bases; empty when SEQ is `*`.
    pub seq: &'a [u8],
    /// Phred+33 qualities, as long as `seq`; `None` when QUAL is `*`.
    pub qual: Option<&'a [u8]>,
    pub xs: XsStrand,
}

impl SamRecord<'_> {
    pub fn cigar_is_missing(&self) -> bool {
        matches!(
            self.cigar,
            CigarField::Text([b'*']) | CigarField::Binary([])
        )
    }
}

/// What was wrong with a SAM line (the caller adds which record it was).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineError {
    HeaderLine,
    TooFewFields {
        found: usize,
    },
    EmptyField {
        field: &'static str,
    },
    NotANumber {
        field: &'static str,
        text: String,
    },
    NumberOutOfRange {
        field: &'static str,
        text: String,
        max: u64,
    },
    InvalidQname,
    InvalidSeq {
        offset: usize,
        byte: u8,
    },
    InvalidQual {
        offset: usize,
        byte: u8,
    },
    QualLength {
        qual: usize,
        seq: usize,
    },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HeaderLine => write!(f, "header line where a record was expected"),
            Self::TooFewFields { found } => {
                write!(f, "{found} tab-separated fields, expected at least 11")
            }
            Self::EmptyField { field } => write!(f, "{field} is empty"),
            Self::NotANumber { field, text } => {
                write!(f, "{field} '{text}' is not a whole number")
            }
            Self::NumberOutOfRange { field, text, max } => {
                write!(f, "{field} '{text}' is out of range (0..={max})")
            }
            Self::InvalidQname => write!(
                f,
                "QNAME has a character outside printable ASCII or is over 254 characters"
            ),
            Self::InvalidSeq { offset, byte } => write!(
                f,
                "SEQ has invalid character '{}' at offset {offset}",
                char::from(*byte).escape_default()
            ),
            Self::InvalidQual { offset, byte } => write!(
                f,
                "QUAL has invalid character '{}' at offset {offset}",
                char::from(*byte).escape_default()
            ),
            Self::QualLength { qual, seq } => {
                write!(f, "QUAL length {qual} != SEQ length {seq}")
            }
        }
    }
}

/// Splits a batch into lines: `\n`-separated, a trailing `\r` stripped, empty lines skipped.
pub struct Lines<'a> {
    rest: &'a [u8],
}

pub fn lines(batch: &[u8]) -> Lines<'_> {
    Lines { rest: batch }
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (line, rest) = match memchr::memchr(b'\n', self.rest) {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &self.rest[self.rest.len()..]),
            };
            self.rest = rest;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                return Some(line);
            }
        }
    }
}

/// The QNAME of a line that may not parse, for error messages.
pub fn leading_field(line: &[u8]) -> &[u8] {
    match memchr::memchr(b'\t', line) {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Parses lines into records; keeps a scratch index of tab positions.
#[derive(Clone, Debug, Default)]
pub struct LineParser {
    tabs: Vec<usize>,
}

/// Characters SAM allows in SEQ (`[A-Za-z=.]`).
fn seq_char_allowed(b: u8) -> bool {
    (b | 0x20).wrapping_sub(b'a') < 26 || b == b'=' || b == b'.'
}

/// Characters SAM allows in QUAL (`[!-~]`), and in QNAME apart from its length.
fn qual_char_allowed(b: u8) -> bool {
    b.wrapping_sub(b'!') <= b'~' - b'!'
}

/// Whether every byte passes `allowed`; branch-free so that it vectorizes.
fn all_bytes(bytes: &[u8], allowed: fn(u8) -> bool) -> bool {
    bytes.iter().fold(true, |ok, &b| ok & allowed(b))
}

/// Bit `i` set where `chunk[i] == needle`.
#[cfg(target_arch = "x86_64")]
fn byte_mask(chunk: &[u8; 64], needle: u8) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    let lanes = chunk.as_ptr().cast::<__m128i>();
    // SAFETY: SSE2 is part of the x86_64 baseline; the four unaligned 16-byte loads read
    // exactly the 64 bytes of `chunk`, which the reference guarantees are valid.
    unsafe {
        let pattern = _mm_set1_epi8(needle as i8);
        let mask = |i: usize| {
            let equal = _mm_cmpeq_epi8(_mm_loadu_si128(lanes.add(i)), pattern);
            u64::from(_mm_movemask_epi8(equal) as u16)
        };
        mask(0) | (mask(1) << 16) | (mask(2) << 32) | (mask(3) << 48)
    }
}

/// Bit `i` set where `chunk[i] == needle`.
#[cfg(not(target_arch = "x86_64"))]
fn byte_mask(chunk: &[u8; 64], needle: u8) -> u64 {
    byte_mask_scalar(chunk, needle)
}

/// Portable [`byte_mask`]; on x86_64 only the tests use it, as the reference.
#[cfg(any(not(target_arch = "x86_64"), test))]
fn byte_mask_scalar(chunk: &[u8; 64], needle: u8) -> u64 {
    chunk
        .iter()
        .enumerate()
        .fold(0, |mask, (i, &b)| mask | (u64::from(b == needle) << i))
}

/// Positions of every `needle` in `line`, in order, 64 bytes at a time. Searching each short
/// SAM field separately costs more in start-up than one pass over the line.
fn positions_of(line: &[u8], needle: u8, out: &mut Vec<usize>) {
    out.clear();
    let mut push_mask = |base: usize, mut mask: u64| {
        while mask != 0 {
            out.push(base + mask.trailing_zeros() as usize);
            mask &= mask - 1;
        }
    };
    let mut chunks = line.chunks_exact(64);
    let mut base = 0;
    for chunk in &mut chunks {
        if let Ok(chunk) = <&[u8; 64]>::try_from(chunk) {
            push_mask(base, byte_mask(chunk, needle));
        }
        base += 64;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut padded = [if needle == 0 { 1 } else { 0 }; 64];
        if let Some(head) = padded.get_mut(..rest.len()) {
            head.copy_from_slice(rest);
        }
        push_mask(base, byte_mask(&padded, needle));
    }
}

impl LineParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse and validate one line (without its newline).
    pub fn parse<'a>(&mut self, line: &'a [u8]) -> Result<SamRecord<'a>, LineError> {
        if line.first() == Some(&b'@') {
            return Err(LineError::HeaderLine);
        }
        positions_of(line, b'\t', &mut self.tabs);
        let tabs = self.tabs.as_slice();
        if tabs.len() < 10 {
            return Err(LineError::TooFewFields {
                found: tabs.len() + 1,
            });
        }
        // Field i runs from after tab i-1 to tab i (the line end for the last one).
        let field = |i: usize| -> Result<&'a [u8], LineError> {
            let start = match i.checked_sub(1) {
                Some(previous) => tabs.get(previous).map_or(line.len(), |&t| t + 1),
                None => 0,
            };
            let end = tabs.get(i).copied().unwrap_or(line.len());
            match line.get(start..end) {
                Some(text) if !text.is_empty() => Ok(text),
                _ => Err(LineError::EmptyField {
                    field: FIELD_NAMES.get(i).copied().unwrap_or("field"),
                }),
            }
        };
        let qname = field(0)?;
        if qname.len() > 254 || !all_bytes(qname, qual_char_allowed) {
            return Err(LineError::InvalidQname);
        }
        let flag = parse_unsigned(field(1)?, "FLAG", u64::from(u16::MAX))? as u16;
        let rname = field(2)?;
        let pos = parse_unsigned(field(3)?, "POS", MAX_POSITION)? as u32;
        let mapq = parse_unsigned(field(4)?, "MAPQ", u64::from(u8::MAX))? as u8;
        let cigar = CigarField::Text(field(5)?);
        let rnext = field(6)?;
        let pnext = parse_unsigned(field(7)?, "PNEXT", MAX_POSITION)? as u32;
        let tlen = parse_signed(field(8)?, "TLEN")?;

        let seq = match field(9)? {
            [b'*'] => &[],
            seq => seq,
        };
        if !all_bytes(seq, seq_char_allowed) {
            let offset = seq.iter().position(|&b| !seq_char_allowed(b)).unwrap_or(0);
            return Err(LineError::InvalidSeq {
                offset,
                byte: seq.get(offset).copied().unwrap_or(0),
            });
        }
        let qual = match field(10)? {
            [b'*'] => None,
            qual if qual.len() != seq.len() => {
                return Err(LineError::QualLength {
                    qual: qual.len(),
                    seq: seq.len(),
                })
            }
            qual if !all_bytes(qual, qual_char_allowed) => {
                let offset = qual
                    .iter()
                    .position(|&b| !qual_char_allowed(b))
                    .unwrap_or(0);
                return Err(LineError::InvalidQual {
                    offset,
                    byte: qual.get(offset).copied().unwrap_or(0),
                });
            }
            qual => Some(qual),
        };

        // Optional fields: the first `XS:A:` tag decides. Slice patterns compare bytes inline.
        let mut xs = XsStrand::Absent;
        for i in 11..=tabs.len() {
            match field(i).unwrap_or_default() {
                [b'X', b'S', b':', b'A', b':', b'+'] => xs = XsStrand::Forward,
                [b'X', b'S', b':', b'A', b':', b'-'] => xs = XsStrand::Reverse,
                [b'X', b'S', b':', b'A', b':', ..] => {}
                _ => continue,
            }
            break;
        }

        Ok(SamRecord {
            qname,
            flag,
            rname,
            pos,
            mapq,
            cigar,
            rnext,
            pnext,
            tlen,
            seq,
            qual,
            xs,
        })
    }
}

fn lossy(text: &[u8]) -> String {
    let shown = text.get(..40).unwrap_or(text);
    String::from_utf8_lossy(shown).into_owned()
}

/// Decimal digits only, at most `max`.
fn parse_unsigned(text: &[u8], field: &'static str, max: u64) -> Result<u64, LineError> {
    // Up to 19 digits cannot overflow u64, so check digits and range once, after the loop.
    let (value, all_digits) = text.iter().fold((0u64, true), |(value, ok), &b| {
        let digit = b.wrapping_sub(b'0');
        (
            value.wrapping_mul(10).wrapping_add(u64::from(digit)),
            ok & (digit < 10),
        )
    });
    if text.is_empty() || !all_digits {
        return Err(LineError::NotANumber {
            field,
            text: lossy(text),
        });
    }
    if text.len() > 19 {
        // Only leading zeros can make a long number small.
        let significant = text
            .iter()
            .position(|&b| b != b'0')
            .and_then(|i| text.get(i..))
            .unwrap_or(b"0");
        if significant.len() < text.len() {
            return parse_unsigned(significant, field, max).map_err(|_| {
                LineError::NumberOutOfRange {
                    field,
                    text: lossy(text),
                    max,
                }
            });
        }
    }
    if text.len() > 19 || value > max {
        return Err(LineError::NumberOutOfRange {
            field,
            text: lossy(text),
            max,
        });
    }
    Ok(value)
}

/// An optional `-` then decimal digits, within ±(2^31 - 1).
fn parse_signed(text: &[u8], field: &'static str) -> Result<i32, LineError> {
    let (negative, digits) = match text.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = parse_unsigned(digits, field, MAX_POSITION).map_err(|e| match e {
        LineError::NotANumber { field, .. } => LineError::NotANumber {
            field,
            text: lossy(text),
        },
        LineError::NumberOutOfRange { field, max, .. } => LineError::NumberOutOfRange {
            field,
            text: lossy(text),
            max,
        },
        other => other,
    })? as i32;
    Ok(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &[u8] =
        b"r1\t99\tchr22\t100\t60\t5M\t=\t150\t55\tACGTN\tIIIII\tNM:i:0\tXS:A:-\tMD:Z:5";

    #[test]
    fn parses_all_fields() {
        let mut parser = LineParser::new();
        let rec = parser.parse(LINE).unwrap();
        assert_eq!(rec.qname, b"r1");
        assert_eq!(rec.flag, 99);
        assert_eq!(rec.rname, b"chr22");
        assert_eq!(rec.pos, 100);
        assert_eq!(rec.mapq, 60);
        assert_eq!(rec.cigar, CigarField::Text(b"5M"));
        assert_eq!(rec.rnext, b"=");
        assert_eq!(rec.pnext, 150);
        assert_eq!(rec.tlen, 55);
        assert_eq!(rec.seq, b"ACGTN");
        assert_eq!(rec.qual, Some(&b"IIIII"[..]));
        assert_eq!(rec.xs, XsStrand::Reverse);
    }

    #[test]
    fn star_seq_and_qual_and_no_tags() {
        let mut parser = LineParser::new();
        let rec = parser.parse(b"r\t4\t*\t0\t0\t*\t*\t0\t-0\t*\t*").unwrap();
        assert!(rec.seq.is_empty());
        assert_eq!(rec.qual, None);
        assert_eq!(rec.xs, XsStrand::Absent);
        assert!(rec.cigar_is_missing());
        assert_eq!(rec.tlen, 0);
    }

    #[test]
    fn xs_tag_variants() {
        let mut parser = LineParser::new();
        let base = "r\t0\tc\t1\t60\t2M\t*\t0\t0\tAC\tII";
        for (tags, want) in [
            ("\tXS:A:+", XsStrand::Forward),
            ("\tXS:A:-\tNM:i:1", XsStrand::Reverse),
            ("\tXS:i:-5", XsStrand::Absent),
            ("\tXS:A:.", XsStrand::Absent),
            ("\tXS:A:+-", XsStrand::Absent),
            ("\tXS:A:", XsStrand::Absent),
            ("\tAS:Z:XS:A:+", XsStrand::Absent),
            ("", XsStrand::Absent),
        ] {
            let line = format!("{base}{tags}");
            assert_eq!(parser.parse(line.as_bytes()).unwrap().xs, want, "{tags}");
        }
    }

    #[test]
    fn lines_skip_empty_and_strip_cr() {
        let got: Vec<&[u8]> = lines(b"a\r\n\nb\n\r\nc").collect();
        assert_eq!(got, vec![&b"a"[..], b"b", b"c"]);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\n\n").count(), 0);
    }

    #[test]
    fn malformed_lines_are_errors() {
        let mut parser = LineParser::new();
        let cases: Vec<(&[u8], LineError)> = vec![
            (b"@HD\tVN:1.6", LineError::HeaderLine),
            (b"r\t0\tc", LineError::TooFewFields { found: 3 }),
            (
                b"r\t0\tc\t1\t60\t2M\t*\t0\t0\tAC\t",
                LineError::EmptyField { field: "QUAL" },
            ),
            (
                b"r\tx\tc\t1\t60\t2M\t*\t0\t0\tAC\tII",
                LineError::NotANumber {
                    field: "FLAG",
                    text: "x".into(),
                },
            ),
            (
                b"r\t65536\tc\t1\t60\t2M\t*\t0\t0\tAC\tII",
                LineError::NumberOutOfRange {
                    field: "FLAG",
                    text: "65536".into(),
                    max: 65535,
                },
            ),
            (
                b"r\t0\tc\t-1\t60\t2M\t*\t0\t0\tAC\tII",
                LineError::NotANumber {
                    field: "POS",
                    text: "-1".into(),
                },
            ),
            (
                b"r\t0\tc\t1\t256\t2M\t*\t0\t0\tAC\tII",
                LineError::NumberOutOfRange {
                    field: "MAPQ",
                    text: "256".into(),
                    max: 255,
                },
            ),
            (
                b"r\t0\tc\t1\t60\t2M\t*\t0\t--3\tAC\tII",
                LineError::NotANumber {
                    field: "TLEN",
                    text: "--3".into(),
                },
            ),
            (
                b"r\t0\tc\t1\t60\t2M\t*\t0\t-\tAC\tII",
                LineError::NotANumber {
                    field: "TLEN",
                    text: "-".into(),
                },
            ),
            (
                b"r\t0\tc\t1\t60\t2M\t*\t0\t0\tA1\tII",
                LineError::InvalidSeq {
                    offset: 1,
                    byte: b'1',
                },
            ),
            (
                b"r\t0\tc\t1\t60\t2M\t*\t0\t0\tAC\tI",
                LineError::QualLength { qual: 1, seq: 2 },
            ),
            (
                b"r\t0\tc\t1\t60\t2M\t*\t0\t0\t*\tII",
                LineError::QualLength { qual: 2, seq: 0 },
            ),
            (
                b"r\t0\tc\t1\t60\t2M\t*\t0\t0\tAC\tI ",
                LineError::InvalidQual {
                    offset: 1,
                    byte: b' ',
                },
            ),
            (
                b"r \t0\tc\t1\t60\t2M\t*\t0\t0\tAC\tII",
                LineError::InvalidQname,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                parser.parse(line),
                Err(want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn byte_mask_matches_scalar() {
        let mut chunk = [0u8; 64];
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = [b'\t', b'a', 0x89, 0xff, 9][i * 7 % 5];
        }
        for needle in [b'\t', b'a', 0x89, 0xff, 0] {
            assert_eq!(byte_mask(&chunk, needle), byte_mask_scalar(&chunk, needle));
        }
    }

    #[test]
    fn byte_positions_across_chunks() {
        let mut out = Vec::new();
        for len in [0usize, 1, 7, 63, 64, 65, 127, 128, 200] {
            let line: Vec<u8> = (0..len)
                .map(|i| {
                    if i % 5 == 3 || i == 63 || i == 64 {
                        b'\t'
                    } else {
                        b'a'
                    }
                })
                .collect();
            positions_of(&line, b'\t', &mut out);
            let want: Vec<usize> = (0..len).filter(|&i| line[i] == b'\t').collect();
            assert_eq!(out, want, "len {len}");
        }
        positions_of(b"a\0b\0", 0, &mut out);
        assert_eq!(out, vec![1, 3], "padding never matches the needle");
    }

    #[test]
    fn long_lines_with_many_tags() {
        let mut parser = LineParser::new();
        let seq = "ACGT".repeat(60);
        let qual = "I".repeat(240);
        let tags = (0..30)
            .map(|i| format!("\tZ{}:i:{i}", i % 10))
            .collect::<String>();
        let line = format!("r\t0\tc\t1\t60\t240M\t*\t0\t0\t{seq}\t{qual}{tags}\tXS:A:-");
        let rec = parser.parse(line.as_bytes()).unwrap();
        assert_eq!(rec.seq.len(), 240);
        assert_eq!(rec.qual.map(<[u8]>::len), Some(240));
        assert_eq!(rec.xs, XsStrand::Reverse);
    }

    #[test]
    fn number_limits() {
        assert_eq!(
            parse_unsigned(b"2147483647", "POS", MAX_POSITION),
            Ok(2147483647)
        );
        assert!(parse_unsigned(b"2147483648", "POS", MAX_POSITION).is_err());
        assert!(parse_unsigned(b"99999999999999999999999", "POS", MAX_POSITION).is_err());
        assert_eq!(parse_signed(b"-2147483647", "TLEN"), Ok(-2147483647));
        assert!(parse_signed(b"-2147483648", "TLEN").is_err());
        assert_eq!(parse_unsigned(b"007", "MAPQ", 255), Ok(7));
        assert_eq!(
            parse_unsigned(b"0000000000000000000000042", "POS", MAX_POSITION),
            Ok(42)
        );
        assert_eq!(
            parse_unsigned(b"0000000000000000000000000", "POS", MAX_POSITION),
            Ok(0)
        );
        assert!(parse_unsigned(b"18446744073709551617", "POS", u64::MAX).is_err());
        assert!(parse_unsigned(b"1a", "POS", MAX_POSITION).is_err());
    }
}
