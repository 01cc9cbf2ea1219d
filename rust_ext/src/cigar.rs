//! CIGAR text → operations, and operations → aligned blocks, deletions, insertions, junctions.
//!
//! The single place that knows which operation consumes query or reference (docs/counting.md,
//! "CIGAR"). Zero-length operations are dropped while parsing, so "immediately after" below
//! always means "after, ignoring zero-length operations". Reference positions are 0-based.

use std::fmt;

/// Largest query or reference length a CIGAR may add up to. BAM caps one op at 2^28 - 1; this
/// bound keeps every position computed from POS + lengths far from `i64` overflow.
pub const MAX_CIGAR_TOTAL: u64 = u32::MAX as u64;

/// One CIGAR operation kind, named as in the SAM specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `M`: alignment match (base may match or mismatch).
    Match,
    /// `I`: insertion to the reference.
    Insertion,
    /// `D`: deletion from the reference.
    Deletion,
    /// `N`: skipped region of the reference (an intron).
    ReferenceSkip,
    /// `S`: soft clip (bases present in SEQ).
    SoftClip,
    /// `H`: hard clip (bases absent from SEQ).
    HardClip,
    /// `P`: padding.
    Padding,
    /// `=`: sequence match.
    SequenceMatch,
    /// `X`: sequence mismatch.
    SequenceMismatch,
}

impl OpKind {
    /// The op for a CIGAR letter, `None` for an unknown letter.
    pub fn from_letter(letter: u8) -> Option<Self> {
        Some(match letter {
            b'M' => Self::Match,
            b'I' => Self::Insertion,
            b'D' => Self::Deletion,
            b'N' => Self::ReferenceSkip,
            b'S' => Self::SoftClip,
            b'H' => Self::HardClip,
            b'P' => Self::Padding,
            b'=' => Self::SequenceMatch,
            b'X' => Self::SequenceMismatch,
            _ => return None,
        })
    }

    /// A compact code (0..=8) for storing ops as bytes.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The op for a [`OpKind::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        const KINDS: [OpKind; 9] = [
            OpKind::Match,
            OpKind::Insertion,
            OpKind::Deletion,
            OpKind::ReferenceSkip,
            OpKind::SoftClip,
            OpKind::HardClip,
            OpKind::Padding,
            OpKind::SequenceMatch,
            OpKind::SequenceMismatch,
        ];
        KINDS.get(usize::from(code)).copied()
    }

    /// `M`, `=` or `X`: a read base placed on a reference base.
    pub fn is_aligned(self) -> bool {
        matches!(
            self,
            Self::Match | Self::SequenceMatch | Self::SequenceMismatch
        )
    }

    pub fn consumes_query(self) -> bool {
        matches!(
            self,
            Self::Match
                | Self::Insertion
                | Self::SoftClip
                | Self::SequenceMatch
                | Self::SequenceMismatch
        )
    }

    pub fn consumes_reference(self) -> bool {
        matches!(
            self,
            Self::Match
                | Self::Deletion
                | Self::ReferenceSkip
                | Self::SequenceMatch
                | Self::SequenceMismatch
        )
    }
}

/// One CIGAR operation with a non-zero length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CigarOp {
    pub kind: OpKind,
    pub len: u32,
}

/// Query and reference lengths of a parsed CIGAR.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CigarLengths {
    /// Sum of M/I/S/=/X lengths.
    pub query: u64,
    /// Sum of M/D/N/=/X lengths.
    pub reference: u64,
}

/// What was wrong with a CIGAR string; `offset` is the 0-based byte offset inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CigarError {
    Empty,
    MissingLength {
        offset: usize,
    },
    MissingOp,
    UnknownOp {
        letter: u8,
        offset: usize,
    },
    LengthTooLarge {
        offset: usize,
    },
    TotalTooLarge,
    /// A BAM binary CIGAR whose byte length is not a multiple of 4.
    BinaryLength {
        bytes: usize,
    },
    /// A BAM binary CIGAR op code above 8 (`index` is the 0-based op).
    UnknownCode {
        code: u8,
        index: usize,
    },
}

impl fmt::Display for CigarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "CIGAR is empty"),
            Self::MissingLength { offset } => {
                write!(f, "CIGAR op at byte {offset} has no length")
            }
            Self::MissingOp => write!(f, "CIGAR ends with a length but no op letter"),
            Self::UnknownOp { letter, offset } => write!(
                f,
                "unknown CIGAR op '{}' at byte {offset}",
                char::from(*letter).escape_default()
            ),
            Self::LengthTooLarge { offset } => write!(
                f,
                "CIGAR op length at byte {offset} does not fit in 32 bits"
            ),
            Self::TotalTooLarge => write!(
                f,
                "CIGAR query or reference length exceeds {MAX_CIGAR_TOTAL}"
            ),
            Self::BinaryLength { bytes } => write!(
                f,
                "binary CIGAR of {bytes} bytes is not a whole number of 4-byte ops"
            ),
            Self::UnknownCode { code, index } => {
                write!(f, "unknown binary CIGAR op code {code} at op {index}")
            }
        }
    }
}

/// Parse CIGAR text (not `*`) into `ops` (cleared first), dropping zero-length ops.
pub fn parse_cigar(text: &[u8], ops: &mut Vec<CigarOp>) -> Result<CigarLengths, CigarError> {
    ops.clear();
    if text.is_empty() {
        return Err(CigarError::Empty);
    }
    let mut lengths = CigarLengths::default();
    let mut len: u64 = 0;
    let mut digits = 0usize;
    for (offset, &byte) in text.iter().enumerate() {
        if byte.is_ascii_digit() {
            len = len * 10 + u64::from(byte - b'0');
            if len > u64::from(u32::MAX) {
                return Err(CigarError::LengthTooLarge { offset });
            }
            digits += 1;
            continue;
        }
        let Some(kind) = OpKind::from_letter(byte) else {
            return Err(CigarError::UnknownOp {
                letter: byte,
                offset,
            });
        };
        if digits == 0 {
            return Err(CigarError::MissingLength { offset });
        }
        if kind.consumes_query() {
            lengths.query += len;
        }
        if kind.consumes_reference() {
            lengths.reference += len;
        }
        if lengths.query > MAX_CIGAR_TOTAL || lengths.reference > MAX_CIGAR_TOTAL {
            return Err(CigarError::TotalTooLarge);
        }
        if len > 0 {
            // `len` <= u32::MAX was checked digit by digit.
            ops.push(CigarOp {
                kind,
                len: len as u32,
            });
        }
        len = 0;
        digits = 0;
    }
    if digits > 0 {
        return Err(CigarError::MissingOp);
    }
    Ok(lengths)
}

/// Decode BAM binary CIGAR ops (little-endian `u32`, `len << 4 | op`; not empty) into `ops`
/// (cleared first), dropping zero-length ops, with the checks of [`parse_cigar`].
pub fn decode_bam_cigar(raw: &[u8], ops: &mut Vec<CigarOp>) -> Result<CigarLengths, CigarError> {
    ops.clear();
    if raw.is_empty() {
        return Err(CigarError::Empty);
    }
    if !raw.len().is_multiple_of(4) {
        return Err(CigarError::BinaryLength { bytes: raw.len() });
    }
    let mut lengths = CigarLengths::default();
    for (index, word) in raw.chunks_exact(4).enumerate() {
        let value = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        let code = (value & 0xF) as u8;
        let len = value >> 4;
        let Some(kind) = OpKind::from_code(code) else {
            return Err(CigarError::UnknownCode { code, index });
        };
        if kind.consumes_query() {
            lengths.query += u64::from(len);
        }
        if kind.consumes_reference() {
            lengths.reference += u64::from(len);
        }
        if len > 0 {
            ops.push(CigarOp { kind, len });
        }
    }
    // Each sum is at most 2^32 ops of 2^28: it cannot overflow, but may exceed the limit.
    if lengths.query > MAX_CIGAR_TOTAL || lengths.reference > MAX_CIGAR_TOTAL {
        return Err(CigarError::TotalTooLarge);
    }
    Ok(lengths)
}

/// A piece of an alignment in reference (0-based) and query (0-based, into SEQ) coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    /// An `M`/`=`/`X` op: `len` read bases on `ref_start..ref_start + len`.
    Aligned {
        ref_start: i64,
        query_start: u64,
        len: u32,
    },
    /// A `D` op deleting `ref_start..ref_start + len`.
    Deletion { ref_start: i64, len: u32 },
    /// An `I` op; `anchor` is the reference position of the aligned base right before it, `None`
    /// when the op does not immediately follow an `M`/`=`/`X` op (such insertions are not counted).
    Insertion {
        query_start: u64,
        len: u32,
        anchor: Option<i64>,
    },
    /// An `N` op skipping `ref_start..ref_start + len`.
    ReferenceSkip { ref_start: i64, len: u32 },
}

/// Walks ops from the alignment start, yielding [`Segment`]s; clips and padding yield nothing.
pub struct Segments<'a> {
    ops: std::slice::Iter<'a, CigarOp>,
    ref_pos: i64,
    query_pos: u64,
    previous_aligned: bool,
}

/// The segments of an alignment whose first reference base is `pos0`.
pub fn segments(ops: &[CigarOp], pos0: i64) -> Segments<'_> {
    Segments {
        ops: ops.iter(),
        ref_pos: pos0,
        query_pos: 0,
        previous_aligned: false,
    }
}

impl Iterator for Segments<'_> {
    type Item = Segment;

    fn next(&mut self) -> Option<Segment> {
        loop {
            let op = *self.ops.next()?;
            let previous_aligned = std::mem::replace(&mut self.previous_aligned, false);
            let len = i64::from(op.len);
            match op.kind {
                OpKind::Match | OpKind::SequenceMatch | OpKind::SequenceMismatch => {
                    let segment = Segment::Aligned {
                        ref_start: self.ref_pos,
                        query_start: self.query_pos,
                        len: op.len,
                    };
                    self.ref_pos += len;
                    self.query_pos += u64::from(op.len);
                    self.previous_aligned = true;
                    return Some(segment);
                }
                OpKind::Insertion => {
                    let segment = Segment::Insertion {
                        query_start: self.query_pos,
                        len: op.len,
                        anchor: previous_aligned.then_some(self.ref_pos - 1),
                    };
                    self.query_pos += u64::from(op.len);
                    return Some(segment);
                }
                OpKind::Deletion => {
                    let segment = Segment::Deletion {
                        ref_start: self.ref_pos,
                        len: op.len,
                    };
                    self.ref_pos += len;
                    return Some(segment);
                }
                OpKind::ReferenceSkip => {
                    let segment = Segment::ReferenceSkip {
                        ref_start: self.ref_pos,
                        len: op.len,
                    };
                    self.ref_pos += len;
                    return Some(segment);
                }
                OpKind::SoftClip => self.query_pos += u64::from(op.len),
                OpKind::HardClip | OpKind::Padding => {}
            }
        }
    }
}

/// Half-open reference interval `[start, end)`, 0-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub start: i64,
    pub end: i64,
}

impl Interval {
    pub fn intersects(&self, other: &Interval) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// Reference intervals covered by `M`/`=`/`X` ops, in order; ops adjacent on the reference
/// (separated only by I/S/H/P) are merged. Deletions and skips separate intervals, so "has an
/// aligned base in J" is exactly "some interval intersects J".
pub fn aligned_intervals(ops: &[CigarOp], pos0: i64, out: &mut Vec<Interval>) {
    out.clear();
    for segment in segments(ops, pos0) {
        if let Segment::Aligned { ref_start, len, .. } = segment {
            let end = ref_start + i64::from(len);
            match out.last_mut() {
                Some(last) if last.end == ref_start => last.end = end,
                _ => out.push(Interval {
                    start: ref_start,
                    end,
                }),
            }
        }
    }
}

/// Whether reference position `pos` is covered by one of `intervals` (sorted, disjoint).
pub fn covers(intervals: &[Interval], pos: i64) -> bool {
    let i = intervals.partition_point(|iv| iv.end <= pos);
    intervals.get(i).is_some_and(|iv| iv.start <= pos)
}

/// An `N` op of one record: intron `[start, end)` and the aligned reference lengths on each side
/// up to the neighbouring `N` or the read end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplicedJunction {
    pub start: i64,
    pub end: i64,
    pub left_anchor: u64,
    pub right_anchor: u64,
}

impl SplicedJunction {
    /// The shorter anchor, which decides whether the record supports the junction.
    pub fn anchor(&self) -> u64 {
        self.left_anchor.min(self.right_anchor)
    }
}

/// Every `N` op of the alignment as a junction with its anchors, in order.
pub fn junctions(ops: &[CigarOp], pos0: i64, out: &mut Vec<SplicedJunction>) {
    out.clear();
    // Aligned length since the previous `N` (or the read start).
    let mut aligned_since_skip: u64 = 0;
    for segment in segments(ops, pos0) {
        match segment {
            Segment::Aligned { len, .. } => aligned_since_skip += u64::from(len),
            Segment::ReferenceSkip { ref_start, len } => {
                if let Some(previous) = out.last_mut() {
                    previous.right_anchor = aligned_since_skip;
                }
                out.push(SplicedJunction {
                    start: ref_start,
                    end: ref_start + i64::from(len),
                    left_anchor: aligned_since_skip,
                    right_anchor: 0,
                });
                aligned_since_skip = 0;
            }
            Segment::Deletion { .. } | Segment::Insertion { .. } => {}
        }
    }
    if let Some(last) = out.last_mut() {
        last.right_anchor = aligned_since_skip;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(text: &str) -> Vec<CigarOp> {
        let mut out = Vec::new();
        parse_cigar(text.as_bytes(), &mut out).unwrap();
        out
    }

    #[test]
    fn parses_lengths_and_drops_zero_length_ops() {
        let mut out = Vec::new();
        let lengths = parse_cigar(b"5S0M10M2I3D0N4=1X200N6M7H", &mut out).unwrap();
        assert_eq!(lengths.query, 5 + 10 + 2 + 4 + 1 + 6);
        assert_eq!(lengths.reference, 10 + 3 + 4 + 1 + 200 + 6);
        assert_eq!(out.len(), 9);
        assert!(out.iter().all(|op| op.len > 0));
    }

    #[test]
    fn op_codes_round_trip() {
        for letter in *b"MIDNSHP=X" {
            let kind = OpKind::from_letter(letter).unwrap();
            assert_eq!(OpKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(OpKind::from_code(9), None);
    }

    #[test]
    fn rejects_malformed_cigars() {
        let mut out = Vec::new();
        assert_eq!(parse_cigar(b"", &mut out), Err(CigarError::Empty));
        assert_eq!(
            parse_cigar(b"M", &mut out),
            Err(CigarError::MissingLength { offset: 0 })
        );
        assert_eq!(parse_cigar(b"10M5", &mut out), Err(CigarError::MissingOp));
        assert_eq!(
            parse_cigar(b"10Q", &mut out),
            Err(CigarError::UnknownOp {
                letter: b'Q',
                offset: 2
            })
        );
        assert_eq!(
            parse_cigar(b"4294967296M", &mut out),
            Err(CigarError::LengthTooLarge { offset: 9 })
        );
        assert!(parse_cigar(b"4294967295M", &mut out).is_ok());
        assert_eq!(
            parse_cigar(b"4294967295M1D", &mut out),
            Err(CigarError::TotalTooLarge)
        );
        assert_eq!(
            parse_cigar(b"10M*", &mut out),
            Err(CigarError::UnknownOp {
                letter: b'*',
                offset: 3
            })
        );
    }

    #[test]
    fn segments_track_reference_and_query() {
        let got: Vec<Segment> = segments(&ops("2H3S4M2I1D3=5N2X1I"), 100).collect();
        assert_eq!(
            got,
            vec![
                Segment::Aligned {
                    ref_start: 100,
                    query_start: 3,
                    len: 4
                },
                Segment::Insertion {
                    query_start: 7,
                    len: 2,
                    anchor: Some(103)
                },
                Segment::Deletion {
                    ref_start: 104,
                    len: 1
                },
                Segment::Aligned {
                    ref_start: 105,
                    query_start: 9,
                    len: 3
                },
                Segment::ReferenceSkip {
                    ref_start: 108,
                    len: 5
                },
                Segment::Aligned {
                    ref_start: 113,
                    query_start: 12,
                    len: 2
                },
                Segment::Insertion {
                    query_start: 14,
                    len: 1,
                    anchor: Some(114)
                },
            ]
        );
    }

    #[test]
    fn insertion_not_after_aligned_op_has_no_anchor() {
        for cigar in [
            "3I5M", "2S3I5M", "2M1D3I5M", "2M3N3I5M", "2M1P3I5M", "2M1I3I5M",
        ] {
            let anchors: Vec<Option<i64>> = segments(&ops(cigar), 10)
                .filter_map(|s| match s {
                    Segment::Insertion { anchor, len: 3, .. } => Some(anchor),
                    _ => None,
                })
                .collect();
            assert_eq!(anchors, vec![None], "{cigar}");
        }
        // A zero-length op between M and I is ignored: the insertion follows the M.
        let anchors: Vec<Option<i64>> = segments(&ops("2M0D3I5M"), 10)
            .filter_map(|s| match s {
                Segment::Insertion { anchor, .. } => Some(anchor),
                _ => None,
            })
            .collect();
        assert_eq!(anchors, vec![Some(11)]);
    }

    #[test]
    fn aligned_intervals_merge_across_insertions_not_deletions() {
        let mut out = Vec::new();
        aligned_intervals(&ops("5S10M2I5=3D4X100N6M"), 50, &mut out);
        assert_eq!(
            out,
            vec![
                Interval { start: 50, end: 65 },
                Interval { start: 68, end: 72 },
                Interval {
                    start: 172,
                    end: 178
                },
            ]
        );
        assert!(covers(&out, 50));
        assert!(covers(&out, 64));
        assert!(!covers(&out, 65));
        assert!(!covers(&out, 67));
        assert!(covers(&out, 68));
        assert!(!covers(&out, 100));
        assert!(covers(&out, 177));
        assert!(!covers(&out, 178));
        assert!(!covers(&out, 49));
    }

    #[test]
    fn junction_anchors_count_aligned_bases_only() {
        let mut out = Vec::new();
        junctions(&ops("3S10M2D5M100N4M1I4M50N20M2S"), 1000, &mut out);
        assert_eq!(
            out,
            vec![
                SplicedJunction {
                    start: 1017,
                    end: 1117,
                    left_anchor: 15,
                    right_anchor: 8
                },
                SplicedJunction {
                    start: 1125,
                    end: 1175,
                    left_anchor: 8,
                    right_anchor: 20
                },
            ]
        );
        assert_eq!(out[0].anchor(), 8);
        junctions(&ops("10M"), 0, &mut out);
        assert!(out.is_empty());
        junctions(&ops("10N5M"), 0, &mut out);
        assert_eq!(out[0].anchor(), 0);
    }
}
