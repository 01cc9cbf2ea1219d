//! BAM binary records → [`SamRecord`] views; [`stream`] reads them from an uncompressed BAM stream.
//!
//! A record is its fixed fields ([`BamCore`], as in htslib's `bam1_core_t`) plus the variable
//! `data` block in BAM order: NUL-terminated QNAME (with `l_extranul` extra NULs), CIGAR as
//! `u32` ops, 4-bit SEQ, QUAL (`0xFF` first byte: absent), then aux tags. The decoder checks the
//! lengths against `data`, expands SEQ and QUAL to SAM letters in scratch buffers and hands the
//! CIGAR over in binary ([`CigarField::Binary`]). Reference names are not needed: the caller
//! says which reference id is the counted contig.

pub mod stream;

use std::fmt;

use crate::batch::{CigarField, SamRecord, XsStrand};

/// SAM's POS/PNEXT limit (2^31 - 1), as for SAM text.
const MAX_POSITION: i64 = i32::MAX as i64;

/// RNAME/RNEXT given to records on other references: no SAM name can equal it.
const OTHER_REFERENCE: &[u8] = b"\0";

/// 4-bit BAM base codes → SAM letters.
const SEQ_LETTERS: &[u8; 16] = b"=ACMGRSVTWYHKDBN";

/// The fixed-length fields of a BAM record (htslib's `bam1_core_t`, without `bin`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BamCore {
    /// 0-based leftmost position; -1 for none.
    pub pos: i64,
    /// Reference id; -1 for none.
    pub tid: i32,
    pub mapq: u8,
    /// NULs after the QNAME's terminator (alignment padding).
    pub l_extranul: u8,
    pub flag: u16,
    /// QNAME bytes including the terminating NUL and `l_extranul`.
    pub l_qname: u16,
    pub n_cigar: u32,
    pub l_qseq: i32,
    pub mtid: i32,
    /// 0-based mate position; -1 for none.
    pub mpos: i64,
    pub isize: i64,
}

/// What was wrong with a BAM record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BamError {
    /// The variable-length fields need more bytes than `data` holds.
    Truncated { needed: u64, available: usize },
    /// A negative or zero length where BAM requires a positive one.
    BadLength { field: &'static str, value: i64 },
    /// POS or PNEXT outside SAM's range.
    PositionOutOfRange { field: &'static str, value: i64 },
}

impl fmt::Display for BamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, available } => write!(
                f,
                "BAM record needs {needed} bytes of variable-length data, has {available}"
            ),
            Self::BadLength { field, value } => write!(f, "BAM {field} {value} is invalid"),
            Self::PositionOutOfRange { field, value } => write!(
                f,
                "{field} {value} is out of range (-1..={})",
                MAX_POSITION - 1
            ),
        }
    }
}

/// Decodes BAM records for one counted reference id; scratch buffers are reused.
#[derive(Clone, Debug)]
pub struct BamDecoder {
    target_tid: i32,
    contig: Vec<u8>,
    seq: Vec<u8>,
    qual: Vec<u8>,
}

impl BamDecoder {
    /// `contig` is the counted reference's name (the counter's contig); `target_tid` its id.
    pub fn new(contig: &[u8], target_tid: i32) -> Self {
        Self {
            target_tid,
            contig: contig.to_vec(),
            seq: Vec::new(),
            qual: Vec::new(),
        }
    }

    /// The counted reference id.
    pub fn target_tid(&self) -> i32 {
        self.target_tid
    }

    /// The name of the record, for error messages, without checking anything else.
    pub fn qname<'a>(core: &BamCore, data: &'a [u8]) -> &'a [u8] {
        let name = data.get(..usize::from(core.l_qname)).unwrap_or(data);
        match memchr::memchr(0, name) {
            Some(end) => &name[..end],
            None => name,
        }
    }

    /// A view of one record. SEQ and QUAL are expanded only for records on the counted
    /// reference (the counter reads them nowhere else).
    pub fn decode<'a>(
        &'a mut self,
        core: &BamCore,
        data: &'a [u8],
    ) -> Result<SamRecord<'a>, BamError> {
        self.decode_named(core, data, Self::qname(core, data))
    }

    /// [`BamDecoder::decode`] for a caller that has found the name already: `qname` must be
    /// [`BamDecoder::qname`] of the same record.
    pub fn decode_named<'a>(
        &'a mut self,
        core: &BamCore,
        data: &'a [u8],
        qname: &'a [u8],
    ) -> Result<SamRecord<'a>, BamError> {
        self.decode_expanded(core, data, qname, None)
    }

    /// SEQ and QUAL of a record expanded as [`BamDecoder::decode`] expands them, and its `XS:A`
    /// strand, appended to `seq` and `qual`, so that another thread can do this part of
    /// decoding ahead ([`BamDecoder::decode_expanded`]). `None` (and nothing appended) when
    /// `decode` would expand nothing or would refuse the record's lengths: `decode_expanded`
    /// then decodes (or refuses) the record itself.
    pub fn expand_into(
        &self,
        core: &BamCore,
        data: &[u8],
        seq: &mut Vec<u8>,
        qual: &mut Vec<u8>,
    ) -> Option<Expansion> {
        let layout = Layout::of(core, data).ok()?;
        if !(self.on_target(core) && layout.l_qseq > 0) {
            return None;
        }
        Some(append_expansion(&layout, data, seq, qual))
    }

    fn on_target(&self, core: &BamCore) -> bool {
        core.tid == self.target_tid && core.tid >= 0
    }

    /// [`BamDecoder::decode_named`] with SEQ, QUAL and XS taken from `expanded` (what
    /// [`BamDecoder::expand_into`] gave for this record, as slices) when it is given.
    pub fn decode_expanded<'a>(
        &'a mut self,
        core: &BamCore,
        data: &'a [u8],
        qname: &'a [u8],
        expanded: Option<Expanded<'a>>,
    ) -> Result<SamRecord<'a>, BamError> {
        let layout = Layout::of(core, data)?;
        let cigar = CigarField::Binary(&data[layout.l_qname..layout.cigar_end]);
        let pos = sam_position(core.pos, "POS")?;
        let pnext = sam_position(core.mpos, "PNEXT")?;
        let tlen = core.isize.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;

        // Scratch buffers first (mutable), then the views that borrow them and the names.
        let expanded = match expanded {
            Some(ahead) => Some(ahead),
            None if self.on_target(core) => {
                self.seq.clear();
                self.qual.clear();
                let own = append_expansion(&layout, data, &mut self.seq, &mut self.qual);
                Some(Expanded {
                    seq: &self.seq,
                    qual: own.qual_start.map(|_| self.qual.as_slice()),
                    xs: own.xs,
                })
            }
            None => None,
        };
        let rname = self.reference_name(core.tid);
        let rnext = if core.mtid < 0 {
            b"*".as_slice()
        } else if core.mtid == core.tid {
            b"=".as_slice()
        } else {
            self.reference_name(core.mtid)
        };
        let (seq, qual, xs) = match expanded {
            Some(e) => (e.seq, e.qual, e.xs),
            None => (&[][..], None, XsStrand::Absent),
        };
        Ok(SamRecord {
            qname,
            flag: core.flag,
            rname,
            pos,
            mapq: core.mapq,
            cigar,
            rnext,
            pnext,
            tlen,
            seq,
            qual,
            xs,
        })
    }

    fn reference_name(&self, tid: i32) -> &[u8] {
        if tid < 0 {
            b"*"
        } else if tid == self.target_tid {
            &self.contig
        } else {
            OTHER_REFERENCE
        }
    }
}

/// 0-based BAM position → SAM's 1-based POS (0 for none).
fn sam_position(pos0: i64, field: &'static str) -> Result<u32, BamError> {
    if !(-1..MAX_POSITION).contains(&pos0) {
        return Err(BamError::PositionOutOfRange { field, value: pos0 });
    }
    Ok((pos0 + 1) as u32)
}

/// Both letters of every packed byte (high nibble first).
const SEQ_PAIRS: [[u8; 2]; 256] = {
    let mut pairs = [[0u8; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [SEQ_LETTERS[byte >> 4], SEQ_LETTERS[byte & 0xF]];
        byte += 1;
    }
    pairs
};

/// Append `n` 4-bit bases (two per byte, high nibble first) to `out` as SAM letters.
fn append_seq(packed: &[u8], n: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + packed.len() * 2, 0);
    for (pair, &byte) in out[start..].chunks_exact_mut(2).zip(packed) {
        pair.copy_from_slice(&SEQ_PAIRS[usize::from(byte)]);
    }
    out.truncate(start + n);
}

/// Append numeric BAM qualities to `out` as SAM letters (+33, capped at `~`).
fn append_qual(raw: &[u8], out: &mut Vec<u8>) {
    out.extend(raw.iter().map(|&q| q.saturating_add(33).min(b'~')));
}

/// Append a record's SEQ (letters) and QUAL (+33 letters, unless missing: 0xFF) to `seq` and
/// `qual`, and find its `XS:A` strand: how a record on the counted reference is decoded.
fn append_expansion(
    layout: &Layout,
    data: &[u8],
    seq: &mut Vec<u8>,
    qual: &mut Vec<u8>,
) -> Expansion {
    let seq_start = seq.len();
    append_seq(&data[layout.cigar_end..layout.seq_end], layout.l_qseq, seq);
    let raw_qual = &data[layout.seq_end..layout.qual_end];
    let has_qual = layout.l_qseq > 0 && raw_qual.first() != Some(&0xFF);
    let qual_start = qual.len();
    if has_qual {
        append_qual(raw_qual, qual);
    }
    Expansion {
        seq_start,
        qual_start: has_qual.then_some(qual_start),
        xs: xs_strand(&data[layout.qual_end..]),
    }
}

/// Offsets of a record's variable-length fields, checked against its data block.
struct Layout {
    l_qname: usize,
    l_qseq: usize,
    cigar_end: usize,
    seq_end: usize,
    qual_end: usize,
}

impl Layout {
    fn of(core: &BamCore, data: &[u8]) -> Result<Self, BamError> {
        if core.l_qname == 0 {
            return Err(BamError::BadLength {
                field: "l_qname",
                value: 0,
            });
        }
        if core.l_qseq < 0 {
            return Err(BamError::BadLength {
                field: "l_qseq",
                value: i64::from(core.l_qseq),
            });
        }
        let l_qname = usize::from(core.l_qname);
        let cigar_bytes = u64::from(core.n_cigar) * 4;
        let l_qseq = core.l_qseq as u64;
        let seq_bytes = l_qseq.div_ceil(2);
        let needed = l_qname as u64 + cigar_bytes + seq_bytes + l_qseq;
        if needed > data.len() as u64 {
            return Err(BamError::Truncated {
                needed,
                available: data.len(),
            });
        }
        // All offsets are within `data`: their sum was checked above.
        let cigar_end = l_qname + cigar_bytes as usize;
        let seq_end = cigar_end + seq_bytes as usize;
        Ok(Self {
            l_qname,
            l_qseq: l_qseq as usize,
            cigar_end,
            seq_end,
            qual_end: seq_end + l_qseq as usize,
        })
    }
}

/// Where [`BamDecoder::expand_into`] put one record's SEQ and QUAL (each `l_qseq` long) in the
/// buffers it appended to, and its `XS:A` strand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expansion {
    pub seq_start: usize,
    /// `None` when QUAL is missing (0xFF).
    pub qual_start: Option<usize>,
    pub xs: XsStrand,
}

/// One record's expanded SEQ, QUAL and XS, as slices.
#[derive(Clone, Copy, Debug)]
pub struct Expanded<'a> {
    pub seq: &'a [u8],
    pub qual: Option<&'a [u8]>,
    pub xs: XsStrand,
}

impl Expansion {
    /// The slices of `seq` and `qual` (the buffers `expand_into` appended to) for a record of
    /// `l_qseq` bases; `None` if they are not there.
    pub fn view<'a>(&self, l_qseq: i32, seq: &'a [u8], qual: &'a [u8]) -> Option<Expanded<'a>> {
        let n = usize::try_from(l_qseq).ok()?;
        let seq = seq.get(self.seq_start..self.seq_start.checked_add(n)?)?;
        let qual = match self.qual_start {
            Some(start) => Some(qual.get(start..start.checked_add(n)?)?),
            None => None,
        };
        Some(Expanded {
            seq,
            qual,
            xs: self.xs,
        })
    }
}

/// Size of one aux value of `kind` (not `Z`, `H`, `B`), or `None` for an unknown kind.
fn fixed_aux_size(kind: u8) -> Option<usize> {
    match kind {
        b'A' | b'c' | b'C' => Some(1),
        b's' | b'S' => Some(2),
        b'i' | b'I' | b'f' => Some(4),
        b'd' => Some(8),
        _ => None,
    }
}

/// The first `XS:A` tag's strand, as the SAM text parser reads it: other `XS` types (bowtie2's
/// `XS:i`) are passed over. Malformed aux data ends the search (htslib validated it on reading).
fn xs_strand(mut aux: &[u8]) -> XsStrand {
    while aux.len() >= 3 {
        let (tag, kind) = ([aux[0], aux[1]], aux[2]);
        let value = &aux[3..];
        if tag == *b"XS" && kind == b'A' {
            return match value.first() {
                Some(b'+') => XsStrand::Forward,
                Some(b'-') => XsStrand::Reverse,
                _ => XsStrand::Absent,
            };
        }
        let size = match kind {
            b'Z' | b'H' => match memchr::memchr(0, value) {
                Some(end) => end + 1,
                None => return XsStrand::Absent,
            },
            b'B' => {
                let Some(&[sub, a, b, c, d]) = value.get(..5) else {
                    return XsStrand::Absent;
                };
                let count = u32::from_le_bytes([a, b, c, d]) as usize;
                match fixed_aux_size(sub) {
                    Some(each) => match count.checked_mul(each).and_then(|n| n.checked_add(5)) {
                        Some(n) => n,
                        None => return XsStrand::Absent,
                    },
                    None => return XsStrand::Absent,
                }
            }
            other => match fixed_aux_size(other) {
                Some(n) => n,
                None => return XsStrand::Absent,
            },
        };
        match value.get(size..) {
            Some(rest) => aux = rest,
            None => return XsStrand::Absent,
        }
    }
    XsStrand::Absent
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record's data block built the BAM way.
    fn data(
        qname: &[u8],
        cigar: &[(u32, u8)],
        seq: &[u8],
        qual: Option<&[u8]>,
        aux: &[u8],
    ) -> (BamCore, Vec<u8>) {
        let mut out = qname.to_vec();
        out.push(0);
        let pad = (4 - out.len() % 4) % 4;
        out.extend(std::iter::repeat_n(0, pad));
        for &(len, code) in cigar {
            out.extend((len << 4 | u32::from(code)).to_le_bytes());
        }
        let code = |b: u8| SEQ_LETTERS.iter().position(|&l| l == b).unwrap() as u8;
        for pair in seq.chunks(2) {
            let hi = code(pair[0]);
            let lo = pair.get(1).map_or(0, |&b| code(b));
            out.push(hi << 4 | lo);
        }
        match qual {
            Some(q) => out.extend(q.iter().map(|&c| c - 33)),
            None => out.extend(std::iter::repeat_n(0xFF, seq.len())),
        }
        out.extend_from_slice(aux);
        let core = BamCore {
            pos: 99,
            tid: 1,
            mapq: 60,
            l_extranul: pad as u8,
            flag: 99,
            l_qname: (qname.len() + 1 + pad) as u16,
            n_cigar: cigar.len() as u32,
            l_qseq: seq.len() as i32,
            mtid: 1,
            mpos: 149,
            isize: 55,
        };
        (core, out)
    }

    #[test]
    fn decodes_like_the_sam_line() {
        let aux = b"NMC\x00XSA-";
        let (core, bytes) = data(b"r1", &[(3, 0), (2, 4)], b"ACGTN", Some(b"IIII#"), aux);
        let mut decoder = BamDecoder::new(b"chr22", 1);
        let rec = decoder.decode(&core, &bytes).unwrap();
        assert_eq!(rec.qname, b"r1");
        assert_eq!(rec.rname, b"chr22");
        assert_eq!(rec.rnext, b"=");
        assert_eq!(rec.pos, 100);
        assert_eq!(rec.pnext, 150);
        assert_eq!(rec.tlen, 55);
        assert_eq!(rec.seq, b"ACGTN");
        assert_eq!(rec.qual, Some(&b"IIII#"[..]));
        assert_eq!(rec.xs, XsStrand::Reverse);
        let mut ops = Vec::new();
        let CigarField::Binary(raw) = rec.cigar else {
            panic!("binary CIGAR expected")
        };
        let lengths = crate::cigar::decode_bam_cigar(raw, &mut ops).unwrap();
        assert_eq!((lengths.query, lengths.reference), (5, 3));
    }

    #[test]
    fn odd_length_seq_missing_qual_and_other_references() {
        let (mut core, bytes) = data(b"read", &[(3, 0)], b"ACG", None, b"");
        let mut decoder = BamDecoder::new(b"chr19", 1);
        let rec = decoder.decode(&core, &bytes).unwrap();
        assert_eq!(rec.seq, b"ACG");
        assert_eq!(rec.qual, None);
        core.tid = 0;
        core.mtid = 1;
        let rec = decoder.decode(&core, &bytes).unwrap();
        assert_eq!(rec.rname, OTHER_REFERENCE);
        assert_eq!(rec.rnext, b"chr19");
        assert!(rec.seq.is_empty(), "off-target records are not expanded");
        core.tid = -1;
        core.mtid = -1;
        core.pos = -1;
        let rec = decoder.decode(&core, &bytes).unwrap();
        assert_eq!((rec.rname, rec.rnext, rec.pos), (&b"*"[..], &b"*"[..], 0));
    }

    #[test]
    fn expanding_ahead_decodes_like_decoding_alone() {
        let mut aux = b"NMC\x00".to_vec();
        aux.extend_from_slice(b"XSA-");
        let records = [
            data(b"r1", &[(3, 0), (2, 4)], b"ACGTN", Some(b"IIII#"), &aux),
            data(b"odd", &[(3, 0)], b"ACG", None, b""),
            data(b"high", &[(2, 0)], b"GT", Some(b"~~"), b"XSA+"),
            data(b"noseq", &[(4, 0)], b"", None, b""),
        ];
        let decoder = BamDecoder::new(b"chr22", 1);
        let (mut seq, mut qual) = (b"kept".to_vec(), Vec::new());
        let mut expansions = Vec::new();
        for (core, bytes) in &records {
            expansions.push(decoder.expand_into(core, bytes, &mut seq, &mut qual));
        }
        assert!(seq.starts_with(b"kept"), "expand_into appends");
        assert!(expansions[3].is_none(), "SEQ * is not expanded");
        let mut off_target = records[0].0;
        off_target.tid = 0;
        assert!(decoder
            .expand_into(&off_target, &records[0].1, &mut seq, &mut qual)
            .is_none());
        assert!(decoder
            .expand_into(&records[0].0, &records[0].1[..9], &mut seq, &mut qual)
            .is_none());
        let mut alone = decoder.clone();
        let mut ahead = decoder.clone();
        for ((core, bytes), expansion) in records.iter().zip(&expansions) {
            let qname = BamDecoder::qname(core, bytes);
            let expanded = expansion.and_then(|e| e.view(core.l_qseq, &seq, &qual));
            assert_eq!(expanded.is_some(), expansion.is_some());
            let a = alone.decode(core, bytes).unwrap();
            let b = ahead.decode_expanded(core, bytes, qname, expanded).unwrap();
            assert_eq!(
                (a.qname, a.seq, a.qual, a.xs),
                (b.qname, b.seq, b.qual, b.xs)
            );
            assert_eq!(
                (a.flag, a.pos, a.pnext, a.tlen),
                (b.flag, b.pos, b.pnext, b.tlen)
            );
        }
        assert_eq!(
            expansions[2]
                .and_then(|e| e.view(2, &seq, &qual))
                .map(|e| e.qual),
            Some(Some(&b"~~"[..]))
        );
    }

    #[test]
    fn xs_found_after_other_tags_and_xs_i_passed_over() {
        let mut aux = Vec::new();
        aux.extend_from_slice(b"MDZ5\0");
        aux.extend_from_slice(b"XSi");
        aux.extend(7i32.to_le_bytes());
        aux.extend_from_slice(b"ZBBC");
        aux.extend(2u32.to_le_bytes());
        aux.extend([1, 2]);
        aux.extend_from_slice(b"XSA+");
        assert_eq!(xs_strand(&aux), XsStrand::Forward);
        assert_eq!(xs_strand(b"XSA"), XsStrand::Absent);
        assert_eq!(
            xs_strand(b"ZZQ\x01XSA+"),
            XsStrand::Absent,
            "unknown type ends the search"
        );
    }

    #[test]
    fn truncated_and_invalid_records_are_refused() {
        let (mut core, bytes) = data(b"r", &[(4, 0)], b"ACGT", Some(b"IIII"), b"");
        let mut decoder = BamDecoder::new(b"c", 1);
        assert!(matches!(
            decoder.decode(&core, &bytes[..bytes.len() - 1]),
            Err(BamError::Truncated { .. })
        ));
        core.n_cigar = u32::MAX;
        assert!(matches!(
            decoder.decode(&core, &bytes),
            Err(BamError::Truncated { .. })
        ));
        core.n_cigar = 1;
        core.l_qseq = -1;
        assert!(matches!(
            decoder.decode(&core, &bytes),
            Err(BamError::BadLength { .. })
        ));
        core.l_qseq = 4;
        core.pos = i64::from(i32::MAX);
        assert!(matches!(
            decoder.decode(&core, &bytes),
            Err(BamError::PositionOutOfRange { .. })
        ));
    }
}
