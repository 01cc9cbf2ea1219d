//! The counters of docs/counting.md and the engine that feeds them one record at a time:
//! record filter → mate pairing (overlap adjustment; fragment joining) → per-position base and
//! indel counts, fragment-level exon / junction / intron counts. Plain Rust, no I/O.
//!
//! Records that wait for a mate are copied into reusable slots, so steady-state counting does no
//! heap allocation, and are flushed as soon as the input has moved past their mate's position.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap};

use crate::names::{MateSuffix, NameTable};

use crate::batch::{CigarField, SamRecord};
use crate::cigar::{self, CigarError, CigarOp, Interval, OpKind, Segment, SplicedJunction};

/// Keys of the per-position counts, in output order.
pub const BASE_COUNT_KEYS: [&str; 12] = [
    "A_fwd", "A_rev", "C_fwd", "C_rev", "G_fwd", "G_rev", "T_fwd", "T_rev", "N_fwd", "N_rev",
    "del_fwd", "del_rev",
];

/// Keys of the filter counters, in output order.
pub const FILTER_KEYS: [&str; 10] = [
    "records",
    "unmapped",
    "secondary",
    "qcfail",
    "duplicate",
    "other_flags",
    "low_mapq",
    "off_target",
    "used",
    "used_supplementary",
];

/// SAM FLAG bits.
pub mod flags {
    pub const PAIRED: u16 = 0x1;
    pub const PROPER_PAIR: u16 = 0x2;
    pub const UNMAPPED: u16 = 0x4;
    pub const MATE_UNMAPPED: u16 = 0x8;
    pub const REVERSE: u16 = 0x10;
    pub const READ2: u16 = 0x80;
    pub const SECONDARY: u16 = 0x100;
    pub const QCFAIL: u16 = 0x200;
    pub const DUPLICATE: u16 = 0x400;
    pub const SUPPLEMENTARY: u16 = 0x800;
}

/// Column of a deletion in a per-position cell (`+ strand`).
const DEL_COLUMN: usize = 10;

/// Base letter → A 0, C 1, G 2, T 3, anything else 4 (N); lower case like upper case.
const BASE_INDEX: [u8; 256] = {
    let mut table = [4u8; 256];
    table[b'A' as usize] = 0;
    table[b'a' as usize] = 0;
    table[b'C' as usize] = 1;
    table[b'c' as usize] = 1;
    table[b'G' as usize] = 2;
    table[b'g' as usize] = 2;
    table[b'T' as usize] = 3;
    table[b't' as usize] = 3;
    table
};

/// Quality of every base when QUAL is `*` (BAM's 0xFF).
pub const MISSING_QUALITY: u8 = 255;

// ---------------------------------------------------------------------------------------------
// Parameters

/// Validated counting parameters; coordinates 0-based half-open.
#[derive(Clone, Debug)]
pub struct CountParams {
    pub contig: Vec<u8>,
    pub window: Interval,
    pub exons: Vec<Interval>,
    pub min_mapq: u32,
    pub min_baseq: u32,
    pub min_anchor: u32,
    pub exclude_flags: u16,
    pub dedup_overlaps: bool,
    /// How the mates' QNAMEs differ, if they do (pairing matches the stem).
    pub mate_suffix: MateSuffix,
}

impl CountParams {
    /// Annotated introns: the gaps between consecutive exons (may be empty if exons abut).
    fn introns(&self) -> Vec<Interval> {
        self.exons
            .windows(2)
            .map(|pair| Interval {
                start: pair[0].end,
                end: pair[1].start,
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Record filter

/// Records received and where each went (first failing filter wins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterCounts {
    pub records: u64,
    pub unmapped: u64,
    pub secondary: u64,
    pub qcfail: u64,
    pub duplicate: u64,
    pub other_flags: u64,
    pub low_mapq: u64,
    pub off_target: u64,
    /// Used records, supplementary included.
    pub used: u64,
    /// The part of `used` with FLAG 0x800.
    pub used_supplementary: u64,
}

impl FilterCounts {
    /// Values in [`FILTER_KEYS`] order.
    pub fn values(&self) -> [u64; 10] {
        [
            self.records,
            self.unmapped,
            self.secondary,
            self.qcfail,
            self.duplicate,
            self.other_flags,
            self.low_mapq,
            self.off_target,
            self.used,
            self.used_supplementary,
        ]
    }
}

/// Why a mapped record is not used by the flag and MAPQ filters (steps 2–6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FlagFilter {
    Secondary,
    QcFail,
    Duplicate,
    OtherFlags,
    LowMapq,
}

impl FlagFilter {
    fn of(flag: u16, mapq: u8, params: &CountParams) -> Option<Self> {
        let excluded = flag & params.exclude_flags;
        let named = flags::UNMAPPED | flags::SECONDARY | flags::QCFAIL | flags::DUPLICATE;
        if excluded & flags::SECONDARY != 0 {
            Some(Self::Secondary)
        } else if excluded & flags::QCFAIL != 0 {
            Some(Self::QcFail)
        } else if excluded & flags::DUPLICATE != 0 {
            Some(Self::Duplicate)
        } else if excluded & !named != 0 {
            Some(Self::OtherFlags)
        } else if u32::from(mapq) < params.min_mapq {
            Some(Self::LowMapq)
        } else {
            None
        }
    }

    fn tally(self, counts: &mut FilterCounts) {
        match self {
            Self::Secondary => counts.secondary += 1,
            Self::QcFail => counts.qcfail += 1,
            Self::Duplicate => counts.duplicate += 1,
            Self::OtherFlags => counts.other_flags += 1,
            Self::LowMapq => counts.low_mapq += 1,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Per-position counts

/// An alignment as the per-position counter sees it. `qual` holds numeric qualities (not +33),
/// as long as `seq`; both are empty when SEQ is `*`.
#[derive(Clone, Copy, Debug)]
pub struct ReadView<'a> {
    pub pos0: i64,
    pub reverse: bool,
    pub ops: &'a [CigarOp],
    pub seq: &'a [u8],
    pub qual: &'a [u8],
}

/// Per-position base and deletion counts over the window, and insertion / deletion events.
#[derive(Clone, Debug)]
pub struct BaseCounter {
    window: Interval,
    min_baseq: u32,
    /// One cell per window position, columns in [`BASE_COUNT_KEYS`] order.
    cells: Vec<[u32; 12]>,
    insertions: HashMap<(i64, Vec<u8>), [u64; 2]>,
    deletions: HashMap<(i64, u32), [u64; 2]>,
}

/// Deletions of the first mate that suppress the second mate's (docs: "both have a D").
#[derive(Clone, Copy, Debug)]
struct MateDeletions<'a> {
    /// The first mate's `D` ops as reference intervals, in order (sorted, disjoint).
    intervals: &'a [Interval],
}

impl BaseCounter {
    /// `None` if the window's cells cannot be allocated.
    pub fn new(window: Interval, min_baseq: u32) -> Option<Self> {
        let len = usize::try_from(window.end - window.start).ok()?;
        let mut cells = Vec::new();
        cells.try_reserve_exact(len).ok()?;
        cells.resize(len, [0u32; 12]);
        Some(Self {
            window,
            min_baseq,
            cells,
            insertions: HashMap::new(),
            deletions: HashMap::new(),
        })
    }

    fn in_window(&self, pos: i64) -> bool {
        self.window.start <= pos && pos < self.window.end
    }

    /// Cells for reference positions `[start, end)` clipped to the window, with the clipped start.
    fn cells_for(&mut self, start: i64, end: i64) -> Option<(i64, &mut [[u32; 12]])> {
        let lo = start.max(self.window.start);
        let hi = end.min(self.window.end);
        if lo >= hi {
            return None;
        }
        let from = usize::try_from(lo - self.window.start).ok()?;
        let to = usize::try_from(hi - self.window.start).ok()?;
        Some((lo, self.cells.get_mut(from..to)?))
    }

    /// Count one alignment. `mate` carries the first mate's deletions when this is the second
    /// mate of an overlap-adjusted pair.
    fn count(&mut self, read: &ReadView<'_>, mate: Option<MateDeletions<'_>>) {
        if read.seq.is_empty() {
            // SEQ `*`: nothing per position (docs/counting.md, "Inputs").
            return;
        }
        let strand = usize::from(read.reverse);
        let min_baseq = self.min_baseq;
        for segment in cigar::segments(read.ops, read.pos0) {
            match segment {
                Segment::Aligned {
                    ref_start,
                    query_start,
                    len,
                } => {
                    let Some((lo, cells)) = self.cells_for(ref_start, ref_start + i64::from(len))
                    else {
                        continue;
                    };
                    let Some(first) = usize::try_from(lo - ref_start)
                        .ok()
                        .and_then(|skip| usize::try_from(query_start).ok()?.checked_add(skip))
                    else {
                        continue;
                    };
                    let last = first.saturating_add(cells.len());
                    let (Some(bases), Some(quals)) =
                        (read.seq.get(first..last), read.qual.get(first..last))
                    else {
                        continue;
                    };
                    // Branch-free: qualities pass or fail unpredictably, so add 0 or 1.
                    for ((cell, &base), &qual) in cells.iter_mut().zip(bases).zip(quals) {
                        let passes = u32::from(u32::from(qual) >= min_baseq);
                        let column = usize::from(BASE_INDEX[usize::from(base)]) * 2 + strand;
                        if let Some(count) = cell.get_mut(column) {
                            *count = count.saturating_add(passes);
                        }
                    }
                }
                Segment::Insertion {
                    query_start,
                    len,
                    anchor: Some(anchor),
                } => {
                    if !self.in_window(anchor) {
                        continue;
                    }
                    let Ok(start) = usize::try_from(query_start) else {
                        continue;
                    };
                    let anchor_qual = start.checked_sub(1).and_then(|i| read.qual.get(i));
                    let inserted = start
                        .checked_add(len as usize)
                        .and_then(|end| read.seq.get(start..end));
                    if let (Some(&q), Some(bases)) = (anchor_qual, inserted) {
                        if u32::from(q) >= min_baseq {
                            let counts = self
                                .insertions
                                .entry((anchor, bases.to_ascii_uppercase()))
                                .or_default();
                            counts[strand] += 1;
                        }
                    }
                }
                Segment::Deletion { ref_start, len } => {
                    let end = ref_start + i64::from(len);
                    let suppressed = mate.map_or(&[][..], |m| m.intervals);
                    if let Some((lo, cells)) = self.cells_for(ref_start, end) {
                        for (pos, cell) in (lo..).zip(cells.iter_mut()) {
                            if !cigar::covers(suppressed, pos) {
                                let count = &mut cell[DEL_COLUMN + strand];
                                *count = count.saturating_add(1);
                            }
                        }
                    }
                    let anchor = ref_start - 1;
                    let also_in_mate = suppressed.contains(&Interval {
                        start: ref_start,
                        end,
                    });
                    if (self.in_window(anchor) || self.in_window(ref_start)) && !also_in_mate {
                        self.deletions.entry((anchor, len)).or_default()[strand] += 1;
                    }
                }
                Segment::Insertion { anchor: None, .. } | Segment::ReferenceSkip { .. } => {}
            }
        }
    }

    /// The 12 per-position arrays in [`BASE_COUNT_KEYS`] order.
    fn columns(&self) -> [Vec<u32>; 12] {
        std::array::from_fn(|column| {
            self.cells
                .iter()
                .map(|cell| cell.get(column).copied().unwrap_or(0))
                .collect()
        })
    }
}

/// `D` ops of an alignment as reference intervals, in order.
fn deletion_intervals(ops: &[CigarOp], pos0: i64, out: &mut Vec<Interval>) {
    out.clear();
    out.extend(
        cigar::segments(ops, pos0).filter_map(|segment| match segment {
            Segment::Deletion { ref_start, len } => Some(Interval {
                start: ref_start,
                end: ref_start + i64::from(len),
            }),
            _ => None,
        }),
    );
}

// ---------------------------------------------------------------------------------------------
// Mate overlap (htslib's tweak_overlap_quality, docs/counting.md "Mate overlap")

/// htslib's `__ac_X31_hash_string` on unsigned bytes.
pub fn x31_hash(name: &[u8]) -> u32 {
    let mut bytes = name.iter();
    let mut h = bytes.next().map_or(0, |&c| u32::from(c));
    for &c in bytes {
        h = (h << 5).wrapping_sub(h).wrapping_add(u32::from(c));
    }
    h
}

/// htslib's `__ac_Wang_hash`.
pub fn wang_hash(mut k: u32) -> u32 {
    k = k.wrapping_add(!(k << 15));
    k ^= k >> 10;
    k = k.wrapping_add(k << 3);
    k ^= k >> 6;
    k = k.wrapping_add(!(k << 11));
    k ^= k >> 16;
    k
}

/// Whether the first mate ("a") keeps the quality where the mates agree.
pub fn first_mate_keeps(qname: &[u8]) -> bool {
    wang_hash(x31_hash(qname)) & 1 == 1
}

/// New qualities (a, b) for one reference position both mates align a base to.
pub fn resolve_overlap(qa: u8, qb: u8, same_letter: bool, keep_a: bool) -> (u8, u8) {
    let damped = |q: u8| (0.8 * f64::from(q)) as u8;
    if same_letter {
        let sum = (u16::from(qa) + u16::from(qb)).min(200) as u8;
        if keep_a {
            (sum, 0)
        } else {
            (0, sum)
        }
    } else if qa > qb || (qa == qb && keep_a) {
        (damped(qa), 0)
    } else {
        (0, damped(qb))
    }
}

/// An aligned block of one alignment (reference start, SEQ offset, length).
#[derive(Clone, Copy)]
struct Block {
    ref_start: i64,
    query_start: u64,
    len: u32,
}

impl Block {
    fn ref_end(&self) -> i64 {
        self.ref_start + i64::from(self.len)
    }
}

fn aligned_blocks(ops: &[CigarOp], pos0: i64) -> impl Iterator<Item = Block> + '_ {
    cigar::segments(ops, pos0).filter_map(|segment| match segment {
        Segment::Aligned {
            ref_start,
            query_start,
            len,
        } => Some(Block {
            ref_start,
            query_start,
            len,
        }),
        _ => None,
    })
}

/// Adjust the qualities of both mates where both align a base (`a` is the earlier record).
/// Both must have SEQ; `*_qual` are numeric qualities as long as `*_seq`.
fn tweak_overlap_quality(
    a: (&[CigarOp], i64, &[u8], &mut [u8]),
    b: (&[CigarOp], i64, &[u8], &mut [u8]),
    keep_a: bool,
) {
    let (a_ops, a_pos0, a_seq, a_qual) = a;
    let (b_ops, b_pos0, b_seq, b_qual) = b;
    let mut a_blocks = aligned_blocks(a_ops, a_pos0);
    let mut b_blocks = aligned_blocks(b_ops, b_pos0);
    let (mut a_block, mut b_block) = (a_blocks.next(), b_blocks.next());
    while let (Some(x), Some(y)) = (a_block, b_block) {
        let lo = x.ref_start.max(y.ref_start);
        let hi = x.ref_end().min(y.ref_end());
        for pos in lo..hi {
            let ia = x.query_start + (pos - x.ref_start) as u64;
            let ib = y.query_start + (pos - y.ref_start) as u64;
            let (Ok(ia), Ok(ib)) = (usize::try_from(ia), usize::try_from(ib)) else {
                continue;
            };
            let (Some(&base_a), Some(&base_b)) = (a_seq.get(ia), b_seq.get(ib)) else {
                continue;
            };
            let (Some(qa), Some(qb)) = (a_qual.get_mut(ia), b_qual.get_mut(ib)) else {
                continue;
            };
            let same = base_a.eq_ignore_ascii_case(&base_b);
            (*qa, *qb) = resolve_overlap(*qa, *qb, same, keep_a);
        }
        if x.ref_end() <= y.ref_end() {
            a_block = a_blocks.next();
        } else {
            b_block = b_blocks.next();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fragment-level counts

/// One record's (or a joined fragment's) contribution to fragment-level counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FragmentFeatures {
    /// 0 or 1, see docs/counting.md "orientation".
    pub orientation: u8,
    /// 0 absent, 1 `XS:A:+`, 2 `XS:A:-`.
    pub xs: u8,
    /// Exons with an aligned base, each once.
    pub exons: Vec<u32>,
    /// Supported junctions (start, end, min anchor), each (start, end) once.
    pub junctions: Vec<(i64, i64, u64)>,
    /// (annotated intron index, flags: 1 left boundary, 2 right boundary, 4 inside), each once.
    pub introns: Vec<(u32, u8)>,
}

const LEFT_BOUNDARY: u8 = 1;
const RIGHT_BOUNDARY: u8 = 2;
const INSIDE: u8 = 4;

impl FragmentFeatures {
    /// Join a later record of the same fragment: orientation stays the first record's, `xs` is
    /// the first non-zero one, features are unions (junction anchor: the larger). Order within
    /// the lists does not matter to [`FragmentCounter::count`], only uniqueness.
    fn absorb(&mut self, later: &FragmentFeatures) {
        if self.xs == 0 {
            self.xs = later.xs;
        }
        for &exon in &later.exons {
            if !self.exons.contains(&exon) {
                self.exons.push(exon);
            }
        }
        for &(start, end, anchor) in &later.junctions {
            match self
                .junctions
                .iter_mut()
                .find(|j| (j.0, j.1) == (start, end))
            {
                Some(kept) => kept.2 = kept.2.max(anchor),
                None => self.junctions.push((start, end, anchor)),
            }
        }
        for &(k, bits) in &later.introns {
            match self.introns.iter_mut().find(|i| i.0 == k) {
                Some(kept) => kept.1 |= bits,
                None => self.introns.push((k, bits)),
            }
        }
    }
}

/// Orientation of a record: 0 for read 1 (or an unpaired read) forward or read 2 reverse.
pub fn orientation(flag: u16) -> u8 {
    let reverse = flag & flags::REVERSE != 0;
    let second = flag & flags::READ2 != 0 && flag & flags::PAIRED != 0;
    u8::from(reverse != second)
}

/// Counts per junction key (start, end, orientation, xs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JunctionTally {
    pub fragments: u64,
    pub max_anchor: u64,
}

/// Per-intron fragment counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IntronCount {
    pub left_boundary: u64,
    pub right_boundary: u64,
    pub inside: u64,
}

/// Exon, junction, intron, strand and fragment totals.
#[derive(Clone, Debug)]
pub struct FragmentCounter {
    exons: Vec<Interval>,
    introns: Vec<Interval>,
    min_anchor: u64,
    exon_fragments: Vec<u64>,
    junctions: HashMap<(i64, i64, u8, u8), JunctionTally>,
    intron_counts: Vec<IntronCount>,
    strand_evidence: [u64; 2],
    gene_fragments: u64,
    fragments: u64,
    // Scratch buffers, reused per record.
    aligned: Vec<Interval>,
    spliced: Vec<SplicedJunction>,
}

impl FragmentCounter {
    fn new(params: &CountParams) -> Self {
        let introns = params.introns();
        Self {
            exon_fragments: vec![0; params.exons.len()],
            intron_counts: vec![IntronCount::default(); introns.len()],
            exons: params.exons.clone(),
            introns,
            min_anchor: u64::from(params.min_anchor),
            junctions: HashMap::new(),
            strand_evidence: [0; 2],
            gene_fragments: 0,
            fragments: 0,
            aligned: Vec::new(),
            spliced: Vec::new(),
        }
    }

    /// The features one record shows.
    fn record_features(
        &mut self,
        ops: &[CigarOp],
        pos0: i64,
        flag: u16,
        xs: u8,
        out: &mut FragmentFeatures,
    ) {
        out.orientation = orientation(flag);
        out.xs = xs;
        out.exons.clear();
        out.junctions.clear();
        out.introns.clear();
        cigar::aligned_intervals(ops, pos0, &mut self.aligned);
        let aligned = &self.aligned;

        for block in aligned {
            let mut i = self.exons.partition_point(|e| e.end <= block.start);
            while let Some(exon) = self.exons.get(i) {
                if exon.start >= block.end {
                    break;
                }
                let index = i as u32;
                if out.exons.last() != Some(&index) {
                    out.exons.push(index);
                }
                i += 1;
            }
        }

        cigar::junctions(ops, pos0, &mut self.spliced);
        out.junctions.extend(
            self.spliced
                .iter()
                .filter(|j| j.anchor() >= self.min_anchor)
                .map(|j| (j.start, j.end, j.anchor())),
        );

        if let (Some(first), Some(last)) = (aligned.first(), aligned.last()) {
            // Introns whose boundary bases [start - 1, end] can meet the aligned span.
            let mut k = self.introns.partition_point(|iv| iv.end < first.start);
            while let Some(intron) = self.introns.get(k) {
                if intron.start > last.end {
                    break;
                }
                if intron.start < intron.end {
                    let mut bits = 0;
                    if cigar::covers(aligned, intron.start - 1)
                        && cigar::covers(aligned, intron.start)
                    {
                        bits |= LEFT_BOUNDARY;
                    }
                    if cigar::covers(aligned, intron.end - 1) && cigar::covers(aligned, intron.end)
                    {
                        bits |= RIGHT_BOUNDARY;
                    }
                    let from = aligned.partition_point(|iv| iv.end <= intron.start);
                    if aligned.get(from).is_some_and(|iv| iv.intersects(intron)) {
                        bits |= INSIDE;
                    }
                    if bits != 0 {
                        out.introns.push((k as u32, bits));
                    }
                }
                k += 1;
            }
        }
    }

    /// Count one complete fragment.
    fn count(&mut self, fragment: &FragmentFeatures) {
        self.fragments += 1;
        for &exon in &fragment.exons {
            if let Some(count) = self.exon_fragments.get_mut(exon as usize) {
                *count += 1;
            }
        }
        if !fragment.exons.is_empty() {
            self.gene_fragments += 1;
            self.strand_evidence[usize::from(fragment.orientation & 1)] += 1;
        }
        for &(start, end, anchor) in &fragment.junctions {
            let tally = self
                .junctions
                .entry((start, end, fragment.orientation, fragment.xs))
                .or_default();
            tally.fragments += 1;
            tally.max_anchor = tally.max_anchor.max(anchor);
        }
        for &(k, bits) in &fragment.introns {
            if let Some(count) = self.intron_counts.get_mut(k as usize) {
                count.left_boundary += u64::from(bits & LEFT_BOUNDARY != 0);
                count.right_boundary += u64::from(bits & RIGHT_BOUNDARY != 0);
                count.inside += u64::from(bits & INSIDE != 0);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Records waiting for a mate

/// Which part of a slot waits: the read (for overlap adjustment) or the fragment (for joining).
const READ: usize = 0;
const FRAGMENT: usize = 1;

/// CIGAR ops as bytes: kind code, then the length as little-endian u32.
fn encode_ops(ops: &[CigarOp], out: &mut Vec<u8>) {
    for op in ops {
        out.push(op.kind.code());
        out.extend_from_slice(&op.len.to_le_bytes());
    }
}

fn decode_ops(bytes: &[u8], out: &mut Vec<CigarOp>) {
    out.clear();
    out.extend(bytes.chunks_exact(5).filter_map(|chunk| {
        let (&code, len) = chunk.split_first()?;
        Some(CigarOp {
            kind: OpKind::from_code(code)?,
            len: u32::from_le_bytes(len.try_into().ok()?),
        })
    }));
}

/// Reads little-endian numbers off a byte slice.
struct ByteReader<'a>(&'a [u8]);

impl ByteReader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
}

impl FragmentFeatures {
    /// The lists as bytes (orientation and xs are kept apart).
    fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&(self.exons.len() as u32).to_le_bytes());
        for exon in &self.exons {
            out.extend_from_slice(&exon.to_le_bytes());
        }
        out.extend_from_slice(&(self.junctions.len() as u32).to_le_bytes());
        for (start, end, anchor) in &self.junctions {
            out.extend_from_slice(&start.to_le_bytes());
            out.extend_from_slice(&end.to_le_bytes());
            out.extend_from_slice(&anchor.to_le_bytes());
        }
        out.extend_from_slice(&(self.introns.len() as u32).to_le_bytes());
        for &(k, bits) in &self.introns {
            out.extend_from_slice(&k.to_le_bytes());
            out.push(bits);
        }
    }

    /// Replace the lists with those `encode` wrote.
    fn decode(&mut self, orientation: u8, xs: u8, bytes: &[u8]) {
        self.orientation = orientation;
        self.xs = xs;
        self.exons.clear();
        self.junctions.clear();
        self.introns.clear();
        let mut reader = ByteReader(bytes);
        let mut read = || -> Option<()> {
            for _ in 0..reader.u32()? {
                self.exons.push(reader.u32()?);
            }
            for _ in 0..reader.u32()? {
                self.junctions
                    .push((reader.i64()?, reader.i64()?, reader.u64()?));
            }
            for _ in 0..reader.u32()? {
                let k = reader.u32()?;
                let [bits] = reader.take::<1>()?;
                self.introns.push((k, bits));
            }
            Some(())
        };
        // Only `encode` writes these bytes, so decoding cannot stop early.
        let _ = read();
    }
}

/// Waiting tickets by the mate position after which they are due. Mates are usually a few
/// hundred bases ahead, so a ring of per-position buckets serves nearly all of them in O(1);
/// the rare far mate goes to a heap.
struct DueQueue {
    /// Bucket `p % DUE_SPAN` holds (ticket, slot) due at position `p`, for `next <= p < next + DUE_SPAN`.
    buckets: Vec<Vec<(u64, u32)>>,
    /// First position whose bucket has not been released.
    next: i64,
    far: BinaryHeap<Reverse<(i64, u64, u32)>>,
}

const DUE_SPAN: i64 = 4096;

impl DueQueue {
    fn new() -> Self {
        Self {
            buckets: (0..DUE_SPAN).map(|_| Vec::new()).collect(),
            next: 0,
            far: BinaryHeap::new(),
        }
    }

    fn bucket(&mut self, pos: i64) -> Option<&mut Vec<(u64, u32)>> {
        self.buckets.get_mut(pos.rem_euclid(DUE_SPAN) as usize)
    }

    fn push(&mut self, due: i64, ticket: u64, slot: u32) {
        let due = due.max(self.next);
        if due - self.next < DUE_SPAN {
            if let Some(bucket) = self.bucket(due) {
                bucket.push((ticket, slot));
            }
        } else {
            self.far.push(Reverse((due, ticket, slot)));
        }
    }

    /// Move every entry due before `pos` into `out`.
    fn release_before(&mut self, pos: i64, out: &mut Vec<(u64, u32)>) {
        if pos <= self.next {
            return;
        }
        let end = pos.min(self.next.saturating_add(DUE_SPAN));
        for p in self.next..end {
            if let Some(bucket) = self.bucket(p) {
                out.append(bucket);
            }
        }
        self.next = pos;
        while let Some(&Reverse((due, ticket, slot))) = self.far.peek() {
            if due < pos {
                out.push((ticket, slot));
            } else if due - pos < DUE_SPAN {
                if let Some(bucket) = self.bucket(due) {
                    bucket.push((ticket, slot));
                }
            } else {
                break;
            }
            self.far.pop();
        }
    }

    /// Move every entry into `out`.
    fn release_all(&mut self, out: &mut Vec<(u64, u32)>) {
        for bucket in &mut self.buckets {
            out.append(bucket);
        }
        out.extend(
            self.far
                .drain()
                .map(|Reverse((_, ticket, slot))| (ticket, slot)),
        );
    }
}

/// One QNAME's waiting parts, stored compactly so that the mate's arrival touches few cache
/// lines. Buffers are kept when the slot is freed, for the next name.
#[derive(Debug, Default)]
struct WaitSlot {
    qname_len: usize,
    /// [`MateBook::hash`] of the QNAME.
    qname_hash: u64,
    /// QNAME, then the waiting read's SEQ, numeric QUAL and encoded CIGAR ops.
    data: Vec<u8>,
    read_pos0: i64,
    read_reverse: bool,
    read_seq_len: usize,
    fragment_orientation: u8,
    fragment_xs: u8,
    /// The waiting fragment's features, encoded.
    fragment: Vec<u8>,
}

impl WaitSlot {
    fn qname(&self) -> &[u8] {
        self.data.get(..self.qname_len).unwrap_or_default()
    }

    fn store_read(&mut self, read: &ReadView<'_>) {
        self.data.truncate(self.qname_len);
        self.data.extend_from_slice(read.seq);
        self.data.extend_from_slice(read.qual);
        encode_ops(read.ops, &mut self.data);
        self.read_pos0 = read.pos0;
        self.read_reverse = read.reverse;
        self.read_seq_len = read.seq.len();
    }

    /// SEQ, QUAL (mutable, for overlap adjustment) and encoded ops of the stored read.
    fn read_parts(&mut self) -> Option<(&[u8], &mut [u8], &[u8])> {
        let rest = self.data.get_mut(self.qname_len..)?;
        let (seq, rest) = rest.split_at_mut_checked(self.read_seq_len)?;
        let (qual, ops) = rest.split_at_mut_checked(self.read_seq_len)?;
        Some((seq, qual, ops))
    }
}

/// Waiting parts by QNAME, and when each becomes due (its mate's position has passed).
struct MateBook {
    hasher: DefaultHashBuilder,
    by_name: NameTable,
    slots: Vec<WaitSlot>,
    /// Per slot, the tickets of the waiting read and fragment (0: not waiting). Kept apart from
    /// the slots so that skipping stale due entries touches only this small array.
    tickets: Vec<[u64; 2]>,
    free: Vec<u32>,
    /// Tickets by mate position (0-based); those no longer waiting are skipped when released.
    due: DueQueue,
    next_ticket: u64,
}

impl MateBook {
    fn new() -> Self {
        Self {
            hasher: DefaultHashBuilder::default(),
            by_name: NameTable::new(),
            slots: Vec::new(),
            tickets: Vec::new(),
            free: Vec::new(),
            due: DueQueue::new(),
            next_ticket: 1,
        }
    }

    fn hash(&self, qname: &[u8]) -> u64 {
        self.hasher.hash_one(qname)
    }

    /// The slot of `qname`, whose [`MateBook::hash`] is `hash`.
    fn find(&self, hash: u64, qname: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.by_name.candidates(hash).find(|&s| {
            slots
                .get(s as usize)
                .is_some_and(|slot| slot.qname_hash == hash && slot.qname() == qname)
        })
    }

    fn is_waiting(&self, s: u32, part: usize) -> bool {
        self.tickets
            .get(s as usize)
            .is_some_and(|tickets| tickets[part] != 0)
    }

    fn set_ticket(&mut self, s: u32, part: usize, ticket: u64) {
        if let Some(tickets) = self.tickets.get_mut(s as usize) {
            tickets[part] = ticket;
        }
    }

    /// The slot for `qname` (`existing` if already found), created if absent.
    fn slot_for(&mut self, hash: u64, qname: &[u8], existing: Option<u32>) -> u32 {
        if let Some(s) = existing {
            return s;
        }
        let s = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(WaitSlot::default());
                self.tickets.push([0; 2]);
                (self.slots.len() - 1) as u32
            }
        };
        if let Some(slot) = self.slots.get_mut(s as usize) {
            slot.data.clear();
            slot.data.extend_from_slice(qname);
            slot.qname_len = qname.len();
            slot.qname_hash = hash;
            slot.read_seq_len = 0;
        }
        self.set_ticket(s, READ, 0);
        self.set_ticket(s, FRAGMENT, 0);
        self.by_name.insert(hash, s);
        s
    }

    /// Forget the name of slot `s` and recycle it if nothing waits there any more.
    fn release_if_idle(&mut self, s: u32) {
        if self.is_waiting(s, READ) || self.is_waiting(s, FRAGMENT) {
            return;
        }
        let Some(slot) = self.slots.get(s as usize) else {
            return;
        };
        if self.by_name.remove(slot.qname_hash, s) {
            self.free.push(s);
        }
    }

    /// A new ticket, due once the input passes `mate_pos0`.
    fn schedule(&mut self, s: u32, mate_pos0: i64) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.due.push(mate_pos0, ticket, s);
        ticket
    }

    fn waiting(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Prefetch where the name table's probe for `hash` starts.
    fn prefetch_entry(&self, hash: u64) {
        prefetch(self.by_name.probe_address(hash));
    }

    /// Prefetch the slot (and its tickets) the name table nominates for `hash`, if any; the
    /// probe itself should be in cache by now ([`MateBook::prefetch_entry`]).
    fn prefetch_slot(&self, hash: u64) {
        if let Some(s) = self.by_name.candidates(hash).next() {
            if let Some(slot) = self.slots.get(s as usize) {
                let address: *const u8 = std::ptr::from_ref(slot).cast();
                prefetch(address);
                prefetch(address.wrapping_add(64));
            }
            if let Some(tickets) = self.tickets.get(s as usize) {
                prefetch(std::ptr::from_ref(tickets).cast());
            }
        }
    }

    /// Prefetch what a mate arriving under `hash` reads of its waiting slot: the stored read
    /// (name, SEQ, QUAL, ops) and the fragment's encoded features. The slot should be in cache by now.
    fn prefetch_slot_data(&self, hash: u64) {
        let Some(slot) = self
            .by_name
            .candidates(hash)
            .next()
            .and_then(|s| self.slots.get(s as usize))
            .filter(|slot| slot.qname_hash == hash)
        else {
            return;
        };
        let data = slot.data.as_ptr();
        for offset in (0..slot.data.len().min(320)).step_by(64) {
            prefetch(data.wrapping_add(offset));
        }
        prefetch(slot.fragment.as_ptr());
    }
}

/// A hint to load the cache line at `address` (no effect on results; none off x86_64).
#[inline(always)]
fn prefetch(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

// ---------------------------------------------------------------------------------------------
// The engine

/// What was wrong with a record beyond its syntax (the caller adds which record it was).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordFault {
    Cigar(CigarError),
    CigarSeqLength { cigar: u64, seq: usize },
    MappedWithoutPosition,
    Unsorted { pos: u32, previous: u32 },
}

impl fmt::Display for RecordFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cigar(e) => e.fmt(f),
            Self::CigarSeqLength { cigar, seq } => {
                write!(f, "CIGAR query length {cigar} != SEQ length {seq}")
            }
            Self::MappedWithoutPosition => write!(
                f,
                "POS is 0 but the record is mapped (FLAG lacks 0x4, CIGAR is set)"
            ),
            Self::Unsorted { pos, previous } => write!(
                f,
                "records are not sorted by position (POS {pos} after POS {previous})"
            ),
        }
    }
}

/// Everything counted so far, in output form (sorted lists).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tallies {
    pub filters: FilterCounts,
    pub base_counts: [Vec<u32>; 12],
    pub insertions: Vec<(i64, String, u64, u64)>,
    pub deletions: Vec<(i64, u32, u64, u64)>,
    pub exon_fragments: Vec<u64>,
    pub junctions: Vec<(i64, i64, u8, u8, u64, u64)>,
    pub intron_counts: Vec<IntronCount>,
    pub strand_evidence: [u64; 2],
    pub gene_fragments: u64,
    pub fragments: u64,
}

/// Filter, pair and count records one at a time.
pub struct Counter {
    params: CountParams,
    filters: FilterCounts,
    bases: BaseCounter,
    fragments: FragmentCounter,
    book: MateBook,
    /// POS of the last record on the window's contig (sortedness check).
    last_pos: u32,
    // Scratch buffers, reused per record.
    ops: Vec<CigarOp>,
    qual: Vec<u8>,
    features: FragmentFeatures,
    mate_ops: Vec<CigarOp>,
    mate_deletions: Vec<Interval>,
    mate_features: FragmentFeatures,
    due: Vec<(u64, u32)>,
}

impl Counter {
    /// `None` if the window's per-position cells cannot be allocated.
    pub fn new(params: CountParams) -> Option<Self> {
        Some(Self {
            bases: BaseCounter::new(params.window, params.min_baseq)?,
            fragments: FragmentCounter::new(&params),
            filters: FilterCounts::default(),
            book: MateBook::new(),
            last_pos: 0,
            ops: Vec::new(),
            qual: Vec::new(),
            features: FragmentFeatures::default(),
            mate_ops: Vec::new(),
            mate_deletions: Vec::new(),
            mate_features: FragmentFeatures::default(),
            due: Vec::new(),
            params,
        })
    }

    /// Records currently waiting for a mate (either mechanism).
    pub fn waiting(&self) -> usize {
        self.book.waiting()
    }

    /// The hash the mate book files a record with this QNAME and FLAG under (for
    /// [`Counter::add_hashed`]): that of its name without the file's mate suffix.
    pub fn name_hash(&self, qname: &[u8], flag: u16) -> u64 {
        self.book.hash(self.params.mate_suffix.stem(qname, flag))
    }

    /// Prefetch the mate-book memory a record named with `hash` will touch, in three stages
    /// to be issued for records further and further ahead (stage 0 farthest): the name
    /// table's probe, then the slot it nominates, then that slot's stored read. Each stage
    /// reads what the previous one fetched. No effect on results.
    pub fn prefetch_name(&self, hash: u64, stage: u8) {
        match stage {
            0 => self.book.prefetch_entry(hash),
            1 => self.book.prefetch_slot(hash),
            _ => self.book.prefetch_slot_data(hash),
        }
    }

    /// Filter and count one record.
    pub fn add(&mut self, rec: &SamRecord<'_>) -> Result<(), RecordFault> {
        self.add_hashed(rec, None)
    }

    /// [`Counter::add`], with the QNAME's [`Counter::name_hash`] if the caller has it already.
    pub fn add_hashed(
        &mut self,
        rec: &SamRecord<'_>,
        qname_hash: Option<u64>,
    ) -> Result<(), RecordFault> {
        self.filters.records += 1;
        let lengths = if rec.cigar_is_missing() {
            None
        } else {
            let lengths = match rec.cigar {
                CigarField::Text(text) => cigar::parse_cigar(text, &mut self.ops),
                CigarField::Binary(ops) => cigar::decode_bam_cigar(ops, &mut self.ops),
            }
            .map_err(RecordFault::Cigar)?;
            if !rec.seq.is_empty() && lengths.query != rec.seq.len() as u64 {
                return Err(RecordFault::CigarSeqLength {
                    cigar: lengths.query,
                    seq: rec.seq.len(),
                });
            }
            Some(lengths)
        };

        // 1. unmapped
        let Some(lengths) = lengths else {
            self.filters.unmapped += 1;
            return Ok(());
        };
        if rec.flag & flags::UNMAPPED != 0 || matches!(rec.rname, [b'*']) {
            self.filters.unmapped += 1;
            return Ok(());
        }
        if rec.pos == 0 {
            return Err(RecordFault::MappedWithoutPosition);
        }
        let pos0 = i64::from(rec.pos) - 1;
        let on_contig = rec.rname == self.params.contig.as_slice();
        if on_contig {
            if rec.pos < self.last_pos {
                return Err(RecordFault::Unsorted {
                    pos: rec.pos,
                    previous: self.last_pos,
                });
            }
            self.last_pos = rec.pos;
            // Mates due before this position can no longer come.
            self.flush_due_before(pos0);
        }

        // 2.–6. flags and MAPQ
        if let Some(filter) = FlagFilter::of(rec.flag, rec.mapq, &self.params) {
            filter.tally(&mut self.filters);
            return Ok(());
        }

        // 7. off target
        let span = Interval {
            start: pos0,
            end: pos0 + lengths.reference as i64,
        };
        if !on_contig || !span.intersects(&self.params.window) {
            self.filters.off_target += 1;
            return Ok(());
        }

        // 8. used
        self.filters.used += 1;
        if rec.flag & flags::SUPPLEMENTARY != 0 {
            self.filters.used_supplementary += 1;
        }
        let name = self.params.mate_suffix.stem(rec.qname, rec.flag);
        let qname_hash = qname_hash.unwrap_or_else(|| self.book.hash(name));
        self.count_used(rec, name, pos0, span.end, qname_hash);
        Ok(())
    }

    /// Count a used record starting at `pos0` whose alignment ends (exclusive) at `end0`;
    /// `name` is its QNAME as pairing matches it ([`MateSuffix::stem`]).
    fn count_used(
        &mut self,
        rec: &SamRecord<'_>,
        name: &[u8],
        pos0: i64,
        end0: i64,
        qname_hash: u64,
    ) {
        self.qual.clear();
        match rec.qual {
            Some(qual) => self
                .qual
                .extend(qual.iter().map(|&q| q.saturating_sub(b'!'))),
            None => self.qual.resize(rec.seq.len(), MISSING_QUALITY),
        }
        let reverse = rec.flag & flags::REVERSE != 0;
        let mate_on_contig = matches!(rec.rnext, [b'=']) || rec.rnext == rec.rname;
        let mate_pos0 = i64::from(rec.pnext) - 1;
        // PNEXT - 1 >= POS - 1: the mate starts here or later, so it is still to come.
        let mate_ahead = mate_pos0 >= pos0;
        let paired_mapped = rec.flag & flags::PAIRED != 0 && rec.flag & flags::MATE_UNMAPPED == 0;
        // htslib's overlap_push: "no overlap possible" when the template is at least twice the
        // read and the mate starts at or after this read's end. Such a read is counted now and
        // waits as a placeholder: whatever pairs with it starts at or after its end, so the
        // pairing adjusts nothing (docs/counting.md).
        let may_overlap_mate =
            !(u64::from(rec.tlen.unsigned_abs()) >= 2 * rec.seq.len() as u64 && mate_pos0 >= end0);
        let mut slot = self.book.find(qname_hash, name);
        // One due-ticket per waiting record, shared by both parts if both wait.
        let mut ticket = None;

        // Per-position counts, through overlap adjustment.
        let waiting_read = slot.filter(|&s| self.book.is_waiting(s, READ));
        let read = ReadView {
            pos0,
            reverse,
            ops: &self.ops,
            seq: rec.seq,
            qual: &self.qual,
        };
        match waiting_read {
            Some(s) if self.params.dedup_overlaps => self.count_pair(s, rec, name, pos0, reverse),
            None if self.params.dedup_overlaps
                && paired_mapped
                && rec.flag & flags::PROPER_PAIR != 0
                && mate_on_contig
                && mate_ahead =>
            {
                let s = self.book.slot_for(qname_hash, name, slot);
                slot = Some(s);
                let t = *ticket.get_or_insert_with(|| self.book.schedule(s, mate_pos0));
                self.book.set_ticket(s, READ, t);
                // A read that cannot overlap its mate is counted now and waits with no bases, so
                // pairing with it (or flushing it) counts and adjusts nothing, as for SEQ `*`.
                let stored = if may_overlap_mate {
                    read
                } else {
                    self.bases.count(&read, None);
                    ReadView {
                        ops: &[],
                        seq: &[],
                        qual: &[],
                        ..read
                    }
                };
                if let Some(waiting) = self.book.slots.get_mut(s as usize) {
                    waiting.store_read(&stored);
                }
            }
            _ => self.bases.count(&read, None),
        }

        // Fragment-level counts: primary records only.
        if rec.flag & (flags::SECONDARY | flags::SUPPLEMENTARY) == 0 {
            self.fragments.record_features(
                &self.ops,
                pos0,
                rec.flag,
                rec.xs.code(),
                &mut self.features,
            );
            let waiting_fragment = slot.filter(|&s| self.book.is_waiting(s, FRAGMENT));
            match waiting_fragment {
                Some(s) => {
                    self.book.set_ticket(s, FRAGMENT, 0);
                    if let Some(waiting) = self.book.slots.get(s as usize) {
                        self.mate_features.decode(
                            waiting.fragment_orientation,
                            waiting.fragment_xs,
                            &waiting.fragment,
                        );
                        self.mate_features.absorb(&self.features);
                        self.fragments.count(&self.mate_features);
                    }
                }
                None if paired_mapped && mate_on_contig && mate_ahead => {
                    let s = self.book.slot_for(qname_hash, name, slot);
                    slot = Some(s);
                    let t = *ticket.get_or_insert_with(|| self.book.schedule(s, mate_pos0));
                    self.book.set_ticket(s, FRAGMENT, t);
                    if let Some(waiting) = self.book.slots.get_mut(s as usize) {
                        waiting.fragment_orientation = self.features.orientation;
                        waiting.fragment_xs = self.features.xs;
                        self.features.encode(&mut waiting.fragment);
                    }
                }
                None => self.fragments.count(&self.features),
            }
        }

        if let Some(s) = slot {
            self.book.release_if_idle(s);
        }
    }

    /// The current record is the second mate ("b") of the read waiting in slot `s` ("a").
    fn count_pair(&mut self, s: u32, rec: &SamRecord<'_>, name: &[u8], pos0: i64, reverse: bool) {
        self.book.set_ticket(s, READ, 0);
        let Some(waiting) = self.book.slots.get_mut(s as usize) else {
            return;
        };
        let (a_pos0, a_reverse) = (waiting.read_pos0, waiting.read_reverse);
        let Some((a_seq, a_qual, a_ops)) = waiting.read_parts() else {
            return;
        };
        decode_ops(a_ops, &mut self.mate_ops);
        if !a_seq.is_empty() && !rec.seq.is_empty() {
            tweak_overlap_quality(
                (&self.mate_ops, a_pos0, a_seq, &mut *a_qual),
                (&self.ops, pos0, rec.seq, &mut self.qual),
                first_mate_keeps(name),
            );
            deletion_intervals(&self.mate_ops, a_pos0, &mut self.mate_deletions);
        } else {
            self.mate_deletions.clear();
        }
        self.bases.count(
            &ReadView {
                pos0: a_pos0,
                reverse: a_reverse,
                ops: &self.mate_ops,
                seq: a_seq,
                qual: a_qual,
            },
            None,
        );
        self.bases.count(
            &ReadView {
                pos0,
                reverse,
                ops: &self.ops,
                seq: rec.seq,
                qual: &self.qual,
            },
            Some(MateDeletions {
                intervals: &self.mate_deletions,
            }),
        );
    }

    /// Count, unpaired, every waiting part whose mate position is before `pos0`.
    fn flush_due_before(&mut self, pos0: i64) {
        let mut due = std::mem::take(&mut self.due);
        self.book.due.release_before(pos0, &mut due);
        self.flush(&due);
        due.clear();
        self.due = due;
    }

    /// Count, unpaired, the parts still waiting under these (ticket, slot) entries.
    fn flush(&mut self, entries: &[(u64, u32)]) {
        for &(ticket, s) in entries {
            let Some(&tickets) = self.book.tickets.get(s as usize) else {
                continue;
            };
            let flush_read = tickets[READ] == ticket;
            let flush_fragment = tickets[FRAGMENT] == ticket;
            if !flush_read && !flush_fragment {
                continue;
            }
            if let Some(slot) = self.book.slots.get_mut(s as usize) {
                if flush_read {
                    let (pos0, reverse) = (slot.read_pos0, slot.read_reverse);
                    if let Some((seq, qual, ops)) = slot.read_parts() {
                        decode_ops(ops, &mut self.mate_ops);
                        self.bases.count(
                            &ReadView {
                                pos0,
                                reverse,
                                ops: &self.mate_ops,
                                seq,
                                qual,
                            },
                            None,
                        );
                    }
                }
                if flush_fragment {
                    self.mate_features.decode(
                        slot.fragment_orientation,
                        slot.fragment_xs,
                        &slot.fragment,
                    );
                    self.fragments.count(&self.mate_features);
                }
            }
            if flush_read {
                self.book.set_ticket(s, READ, 0);
            }
            if flush_fragment {
                self.book.set_ticket(s, FRAGMENT, 0);
            }
            self.book.release_if_idle(s);
        }
    }

    /// Flush everything still waiting and return the counts.
    pub fn finish(mut self) -> Tallies {
        let mut due = std::mem::take(&mut self.due);
        self.book.due.release_all(&mut due);
        self.flush(&due);
        let mut insertions: Vec<(i64, String, u64, u64)> = self
            .bases
            .insertions
            .iter()
            .map(|((anchor, bases), [fwd, rev])| {
                (
                    *anchor,
                    String::from_utf8_lossy(bases).into_owned(),
                    *fwd,
                    *rev,
                )
            })
            .collect();
        insertions.sort_unstable();
        let mut deletions: Vec<(i64, u32, u64, u64)> = self
            .bases
            .deletions
            .iter()
            .map(|(&(anchor, len), &[fwd, rev])| (anchor, len, fwd, rev))
            .collect();
        deletions.sort_unstable();
        let mut junctions: Vec<(i64, i64, u8, u8, u64, u64)> = self
            .fragments
            .junctions
            .iter()
            .map(|(&(start, end, orientation, xs), tally)| {
                (
                    start,
                    end,
                    orientation,
                    xs,
                    tally.fragments,
                    tally.max_anchor,
                )
            })
            .collect();
        junctions.sort_unstable();
        Tallies {
            filters: self.filters,
            base_counts: self.bases.columns(),
            insertions,
            deletions,
            exon_fragments: self.fragments.exon_fragments,
            junctions,
            intron_counts: self.fragments.intron_counts,
            strand_evidence: self.fragments.strand_evidence,
            gene_fragments: self.fragments.gene_fragments,
            fragments: self.fragments.fragments,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CoreError, CountResult, CounterConfig, GeneCounter};

    const WS: i64 = 100;

    /// Window [100, 200) on chr22; exons [110,130) [150,170) [180,190).
    fn config() -> CounterConfig {
        CounterConfig::new("chr22", WS, 200, vec![(110, 130), (150, 170), (180, 190)])
    }

    /// A SAM line; `pos0` is 0-based (POS = pos0 + 1), `pnext0` likewise (-1 → PNEXT 0).
    #[allow(clippy::too_many_arguments)]
    fn sam(
        name: &str,
        flag: u16,
        pos0: i64,
        cigar: &str,
        pnext0: i64,
        seq: &str,
        qual: &str,
        tags: &str,
    ) -> String {
        let rnext = if pnext0 >= 0 { "=" } else { "*" };
        format!(
            "{name}\t{flag}\tchr22\t{}\t60\t{cigar}\t{rnext}\t{}\t0\t{seq}\t{qual}{tags}\n",
            pos0 + 1,
            pnext0 + 1
        )
    }

    /// An unpaired forward read with quality 40 everywhere.
    fn single(name: &str, pos0: i64, cigar: &str, seq: &str) -> String {
        sam(name, 0, pos0, cigar, -1, seq, &"I".repeat(seq.len()), "")
    }

    fn run_with(config: CounterConfig, lines: &[String]) -> CountResult {
        let mut counter = GeneCounter::new(config).unwrap();
        counter.add_sam(lines.concat().as_bytes()).unwrap();
        counter.finish().unwrap()
    }

    fn run(lines: &[String]) -> CountResult {
        run_with(config(), lines)
    }

    fn column(key: &str) -> usize {
        BASE_COUNT_KEYS.iter().position(|k| *k == key).unwrap()
    }

    /// Count of `key` at 0-based reference position `pos`.
    fn at(result: &CountResult, key: &str, pos: i64) -> u32 {
        result.base_counts[column(key)][(pos - WS) as usize]
    }

    fn total_bases(result: &CountResult) -> u64 {
        (0..100).map(|i| result.depth(i)).sum()
    }

    fn filter(result: &CountResult, key: &str) -> u64 {
        result.filters[FILTER_KEYS.iter().position(|k| *k == key).unwrap()]
    }

    #[test]
    fn keeper_hash_test_vectors() {
        assert_eq!(x31_hash(b"p1"), 3521);
        assert_eq!(wang_hash(3521), 4_200_519_944);
        assert!(!first_mate_keeps(b"p1"));
        assert!(!first_mate_keeps(b"p2"));
        assert!(first_mate_keeps(b"p3"));
        assert!(first_mate_keeps(b"r1"));
    }

    #[test]
    fn resolve_overlap_rules() {
        assert_eq!(resolve_overlap(30, 20, true, true), (50, 0));
        assert_eq!(resolve_overlap(30, 20, true, false), (0, 50));
        assert_eq!(resolve_overlap(150, 120, true, true), (200, 0));
        assert_eq!(resolve_overlap(255, 255, true, false), (0, 200));
        assert_eq!(resolve_overlap(30, 20, false, false), (24, 0));
        assert_eq!(resolve_overlap(20, 30, false, true), (0, 24));
        assert_eq!(resolve_overlap(25, 25, false, true), (20, 0));
        assert_eq!(resolve_overlap(25, 25, false, false), (0, 20));
        assert_eq!(resolve_overlap(255, 0, false, false), (204, 0));
        assert_eq!(resolve_overlap(5, 5, false, true), (4, 0));
    }

    #[test]
    fn counts_letters_by_strand_and_quality() {
        let r = run(&[
            single("r1", 100, "6M", "ACGTnr"),
            sam("r2", 16, 100, "4M", -1, "acgt", "II#I", ""),
        ]);
        assert_eq!(at(&r, "A_fwd", 100), 1);
        assert_eq!(at(&r, "A_rev", 100), 1);
        assert_eq!(at(&r, "C_fwd", 101), 1);
        assert_eq!(at(&r, "C_rev", 101), 1);
        assert_eq!(at(&r, "G_fwd", 102), 1);
        assert_eq!(at(&r, "G_rev", 102), 0, "quality 2 < 13");
        assert_eq!(at(&r, "T_rev", 103), 1);
        assert_eq!(at(&r, "N_fwd", 104), 1);
        assert_eq!(at(&r, "N_fwd", 105), 1, "R counts as N");
        assert_eq!(total_bases(&r), 9);
        assert_eq!(filter(&r, "records"), 2);
        assert_eq!(filter(&r, "used"), 2);
        assert_eq!(
            r.base_counts.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![100; 12]
        );
    }

    #[test]
    fn sequence_match_and_mismatch_ops_count_like_m() {
        let plain = run(&[single("r", 100, "4M", "ACGT")]);
        let typed = run(&[single("r", 100, "2=1X1M", "ACGT")]);
        assert_eq!(plain.base_counts, typed.base_counts);
    }

    #[test]
    fn zero_length_ops_are_ignored() {
        let plain = run(&[single("r", 100, "2M2I2M", "ACTTGT")]);
        let zeros = run(&[single("r", 100, "0S2M0D2I0N2M0H", "ACTTGT")]);
        assert_eq!(plain, zeros);
        assert_eq!(plain.insertions, vec![(101, "TT".to_string(), 1, 0)]);
    }

    #[test]
    fn clips_consume_query_not_reference() {
        let r = run(&[single("r", 100, "3H2S3M2H", "TTACG")]);
        assert_eq!(at(&r, "A_fwd", 100), 1);
        assert_eq!(at(&r, "C_fwd", 101), 1);
        assert_eq!(at(&r, "G_fwd", 102), 1);
        assert_eq!(total_bases(&r), 3);
    }

    #[test]
    fn reads_clipped_to_the_window() {
        let r = run(&[
            single("before", 95, "10M", "CCCCCAAAAA"),
            single("after", 195, "10M", "GGGGGTTTTT"),
        ]);
        assert_eq!(at(&r, "A_fwd", 100), 1);
        assert_eq!(at(&r, "A_fwd", 104), 1);
        assert_eq!(at(&r, "G_fwd", 195), 1);
        assert_eq!(at(&r, "G_fwd", 199), 1);
        assert_eq!(total_bases(&r), 10);
        // Entirely outside: off target.
        let r = run(&[
            single("left", 80, "20M", &"A".repeat(20)),
            single("right", 200, "5M", "AAAAA"),
        ]);
        assert_eq!(filter(&r, "off_target"), 2);
        assert_eq!(total_bases(&r), 0);
    }

    #[test]
    fn star_seq_counts_coverage_but_nothing_per_position() {
        let r = run(&[sam("r", 0, 112, "2M1D2M1I2M", -1, "*", "*", "")]);
        assert_eq!(total_bases(&r), 0);
        assert!(r.insertions.is_empty());
        assert!(r.deletions.is_empty());
        assert_eq!(r.exon_fragments, vec![1, 0, 0]);
        assert_eq!(r.fragments, 1);
    }

    #[test]
    fn star_qual_is_quality_255() {
        let r = run(&[sam("r", 0, 100, "2M", -1, "AC", "*", "")]);
        assert_eq!(total_bases(&r), 2);
        let mut strict = config();
        strict.min_baseq = 256;
        let r = run_with(strict, &[sam("r", 0, 100, "2M", -1, "AC", "*", "")]);
        assert_eq!(total_bases(&r), 0);
    }

    #[test]
    fn empty_batches_count_nothing() {
        let mut counter = GeneCounter::new(config()).unwrap();
        counter.add_sam(b"").unwrap();
        counter.add_sam(b"\n\r\n").unwrap();
        let r = counter.finish().unwrap();
        assert_eq!(r.filters, [0; 10]);
        assert_eq!(total_bases(&r), 0);
        assert_eq!(r.exon_fragments, vec![0, 0, 0]);
        assert_eq!(r.intron_counts, vec![IntronCount::default(); 2]);
    }

    #[test]
    fn insertions_follow_aligned_ops_only() {
        let r = run(&[
            single("outside", 97, "2M2I2M", "ACTTGT"),
            single("m", 100, "2M2I2M", "ACttGT"),
            single("start", 100, "2I4M", "TTACGT"),
            single("softclip", 100, "1S2I4M", "GTTACGT"),
            single("afterdel", 100, "2M1D2I2M", "ACTTGT"),
            single("afterskip", 100, "2M5N2I2M", "ACTTGT"),
            sam("lowanchor", 0, 100, "2M2I2M", -1, "ACTTGT", "I#IIII", ""),
        ]);
        assert_eq!(r.insertions, vec![(101, "TT".to_string(), 1, 0)]);
    }

    #[test]
    fn insertion_anchor_quality_decides_not_inserted_quality() {
        let r = run(&[sam("r", 16, 100, "2M2I2M", -1, "ACTTGT", "II##II", "")]);
        assert_eq!(r.insertions, vec![(101, "TT".to_string(), 0, 1)]);
    }

    #[test]
    fn deletions_per_position_and_as_events() {
        let r = run(&[sam("r", 16, 100, "2M3D2M", -1, "ACGT", "####", "")]);
        for pos in 102..105 {
            assert_eq!(at(&r, "del_rev", pos), 1, "no quality filter on deletions");
        }
        assert_eq!(at(&r, "del_rev", 105), 0);
        assert_eq!(r.deletions, vec![(101, 3, 0, 1)]);
        assert_eq!(r.depth(2), 1);
    }

    #[test]
    fn deletions_at_the_window_edges() {
        let r = run(&[
            single("out_left", 95, "4M1D5M", "AAAAAAAAA"), // deleted base 99, anchor 98
            single("in_left", 95, "5M1D4M", "AAAAAAAAA"),  // deleted base 100, anchor 99
            single("in_right", 190, "9M2D2M", &"A".repeat(11)), // deleted 199..201, anchor 198
            single("anchor_right", 190, "10M2D2M", &"A".repeat(12)), // deleted 200, anchor 199
        ]);
        assert_eq!(
            r.deletions,
            vec![(99, 1, 1, 0), (198, 2, 1, 0), (199, 2, 1, 0)]
        );
        assert_eq!(at(&r, "del_fwd", 100), 1);
        assert_eq!(at(&r, "del_fwd", 199), 1);
        assert_eq!(filter(&r, "used"), 4);
    }

    #[test]
    fn junctions_may_leave_the_window() {
        let r = run(&[
            single("j", 180, "10M1000N10M", &"A".repeat(20)),
            single("short", 185, "5M1000N5M", &"A".repeat(10)),
        ]);
        assert_eq!(r.junctions, vec![(190, 1190, 0, 0, 1, 10)]);
        assert_eq!(total_bases(&r), 15);
    }

    /// A proper pair: "a" forward read 1 at `a_pos0`, "b" reverse read 2 at `b_pos0`.
    fn pair(name: &str, a: (i64, &str, &str, &str), b: (i64, &str, &str, &str)) -> [String; 2] {
        [
            sam(name, 99, a.0, a.1, b.0, a.2, a.3, ""),
            sam(name, 147, b.0, b.1, a.0, b.2, b.3, ""),
        ]
    }

    #[test]
    fn overlap_same_letter_keeper_by_hash() {
        // Overlap at 102..104: a has G T, b has G T. Quality 20 each.
        for (name, a_keeps) in [("p1", false), ("p2", false), ("p3", true)] {
            let r = run(&pair(
                name,
                (100, "4M", "ACGT", "5555"),
                (102, "4M", "GTAA", "5555"),
            ));
            assert_eq!(at(&r, "G_fwd", 102), u32::from(a_keeps), "{name}");
            assert_eq!(at(&r, "G_rev", 102), u32::from(!a_keeps), "{name}");
            assert_eq!(at(&r, "T_fwd", 103), u32::from(a_keeps), "{name}");
            assert_eq!(at(&r, "T_rev", 103), u32::from(!a_keeps), "{name}");
            assert_eq!(total_bases(&r), 6, "{name}");
        }
    }

    #[test]
    fn overlap_keeps_sum_even_if_each_is_low() {
        // 10 + 10 = 20 >= 13 for the keeper.
        let r = run(&pair(
            "p1",
            (100, "2M", "AC", "++"),
            (100, "2M", "AC", "++"),
        ));
        assert_eq!(at(&r, "A_rev", 100), 1);
        assert_eq!(at(&r, "A_fwd", 100), 0);
        assert_eq!(total_bases(&r), 2);
    }

    #[test]
    fn reads_that_cannot_overlap_their_mate_are_counted_at_once() {
        // htslib's overlap_push gate: |TLEN| >= 2 * len(SEQ) and the mate (PNEXT) starts at or
        // after this read's end mean no overlap is possible, so "a" is counted at once and waits
        // only as a placeholder. Here "a" says so although "b" does overlap it (its PNEXT lies):
        // nothing is adjusted, both count.
        let line = |name: &str, flag: u16, pos0: i64, pnext0: i64, tlen: i32| {
            format!(
                "{name}\t{flag}\tchr22\t{}\t60\t4M\t=\t{}\t{tlen}\tACGT\tIIII\n",
                pos0 + 1,
                pnext0 + 1
            )
        };
        let total = |a_pnext0: i64, tlen: i32| {
            total_bases(&run(&[
                line("p1", 99, 100, a_pnext0, tlen),
                line("p1", 147, 102, 100, -tlen),
            ]))
        };
        // a ends at 104; b's bases at 102 and 103 are seen by both.
        assert_eq!(total(104, 8), 8, "gate holds: no adjustment");
        assert_eq!(total(104, -8), 8, "|TLEN| counts, whatever its sign");
        assert_eq!(
            total(104, 7),
            6,
            "TLEN < 2 * len(SEQ): a waits, overlap adjusted"
        );
        assert_eq!(
            total(103, 8),
            6,
            "mate starts inside a: a waits, overlap adjusted"
        );

        // The placeholder still pairs: a supplementary "s" takes it (nothing to adjust), so the
        // mate "b" finds nothing waiting and is not adjusted against "s" either.
        let r = run(&[
            line("p1", 99, 100, 110, 14),
            line("p1", 0x800 | 0x40 | 0x20 | 0x3, 104, 110, 0),
            line("p1", 147, 106, 100, -14),
        ]);
        assert_eq!(
            total_bases(&r),
            12,
            "s and b overlap at 106 and 107; both count"
        );
    }

    #[test]
    fn a_read_stored_while_its_fragment_waits_keeps_both() {
        // "a": primary read 1 of a pair that is not proper: its fragment waits, its read does
        // not. "s": a proper supplementary with the same name, which waits as a read in the same
        // slot (stored after the fragment). "b": the mate, which pairs with "s" (overlap at 152
        // and 153, same letters: counted once) and joins "a"'s fragment.
        let line = |flag: u16, pos0: i64, cigar: &str, pnext0: i64, seq: &str| {
            sam(
                "p1",
                flag,
                pos0,
                cigar,
                pnext0,
                seq,
                &"I".repeat(seq.len()),
                "",
            )
        };
        let r = run(&[
            line(0x1 | 0x20 | 0x40, 110, "10M", 152, "ACGTACGTAC"),
            line(0x800 | 0x40 | 0x20 | 0x3, 150, "4M", 152, "ACGT"),
            line(0x1 | 0x2 | 0x10 | 0x80, 152, "4M", 110, "GTAA"),
        ]);
        assert_eq!(total_bases(&r), 10 + 4 + 4 - 2);
        assert_eq!(r.fragments, 1);
        assert_eq!(r.exon_fragments, vec![1, 1, 0]);
    }

    #[test]
    fn overlap_different_letters() {
        // Equal qualities: keeper gets floor(0.8 * 20) = 16 >= 13.
        let r = run(&pair("p1", (100, "1M", "G", "5"), (100, "1M", "C", "5")));
        assert_eq!((at(&r, "G_fwd", 100), at(&r, "C_rev", 100)), (0, 1));
        let r = run(&pair("p3", (100, "1M", "G", "5"), (100, "1M", "C", "5")));
        assert_eq!((at(&r, "G_fwd", 100), at(&r, "C_rev", 100)), (1, 0));
        // Higher quality wins whatever the hash: a 30 > b 20.
        let r = run(&pair("p1", (100, "1M", "G", "?"), (100, "1M", "C", "5")));
        assert_eq!((at(&r, "G_fwd", 100), at(&r, "C_rev", 100)), (1, 0));
        // 15 vs 10: winner drops to 12 < 13, so neither counts.
        let r = run(&pair("p1", (100, "1M", "G", "0"), (100, "1M", "C", "+")));
        assert_eq!(r.depth(0), 0);
    }

    #[test]
    fn overlap_off_counts_both() {
        let mut cfg = config();
        cfg.dedup_overlaps = false;
        let r = run_with(
            cfg,
            &pair(
                "p1",
                (100, "4M", "ACGT", "5555"),
                (102, "4M", "GTAA", "5555"),
            ),
        );
        assert_eq!(at(&r, "G_fwd", 102), 1);
        assert_eq!(at(&r, "G_rev", 102), 1);
        assert_eq!(total_bases(&r), 8);
    }

    #[test]
    fn overlap_deletions_count_once() {
        let r = run(&pair(
            "p1",
            (100, "2M2D4M", "ACGTAC", "IIIIII"),
            (100, "2M2D4M", "ACGTAC", "IIIIII"),
        ));
        assert_eq!((at(&r, "del_fwd", 102), at(&r, "del_rev", 102)), (1, 0));
        assert_eq!((at(&r, "del_fwd", 103), at(&r, "del_rev", 103)), (1, 0));
        assert_eq!(r.deletions, vec![(101, 2, 1, 0)]);
        // Different deletions: b's positions outside a's deletion and b's event still count.
        let r = run(&pair(
            "p1",
            (100, "2M2D4M", "ACGTAC", "IIIIII"),
            (100, "2M3D3M", "ACGTA", "IIIII"),
        ));
        assert_eq!((at(&r, "del_fwd", 104), at(&r, "del_rev", 104)), (0, 1));
        assert_eq!((at(&r, "del_fwd", 103), at(&r, "del_rev", 103)), (1, 0));
        assert_eq!(r.deletions, vec![(101, 2, 1, 0), (101, 3, 0, 1)]);
    }

    #[test]
    fn overlap_base_against_deletion_is_unadjusted() {
        let r = run(&pair(
            "p1",
            (100, "1M1D1M", "AC", "II"),
            (100, "3M", "AGC", "II5"),
        ));
        assert_eq!(at(&r, "del_fwd", 101), 1);
        assert_eq!(at(&r, "G_rev", 101), 1);
        assert_eq!(r.depth(1), 2);
    }

    #[test]
    fn overlap_insertion_counts_from_keeper_only() {
        let r = run(&pair(
            "p1",
            (100, "2M2I2M", "ACTTGT", "IIIIII"),
            (100, "2M2I2M", "ACTTGT", "IIIIII"),
        ));
        assert_eq!(r.insertions, vec![(101, "TT".to_string(), 0, 1)]);
    }

    #[test]
    fn mates_wait_only_when_proper_and_ahead() {
        // Not proper (flag 97/145): no adjustment, both count; still one fragment.
        let lines = [
            sam("p1", 97, 100, "2M", 100, "AC", "II", ""),
            sam("p1", 145, 100, "2M", 100, "AC", "II", ""),
        ];
        let r = run(&lines);
        assert_eq!(total_bases(&r), 4);
        assert_eq!(r.fragments, 1);
        // Mate unmapped (0x8): no waiting at all: two fragments.
        let lines = [
            sam("p1", 0x1 | 0x2 | 0x8, 100, "2M", 100, "AC", "II", ""),
            sam("p1", 0x1 | 0x2 | 0x8, 100, "2M", 100, "AC", "II", ""),
        ];
        let r = run(&lines);
        assert_eq!(total_bases(&r), 4);
        assert_eq!(r.fragments, 2);
    }

    #[test]
    fn unpaired_waiting_record_is_flushed_when_passed() {
        let mut counter = GeneCounter::new(config()).unwrap();
        counter
            .add_sam(sam("p1", 99, 100, "4M", 150, "ACGT", "IIII", "").as_bytes())
            .unwrap();
        assert_eq!(counter.waiting(), 1);
        // Mate position 150 not yet passed.
        counter
            .add_sam(single("x", 150, "2M", "AA").as_bytes())
            .unwrap();
        assert_eq!(counter.waiting(), 1);
        // A filtered record on the contig past 150 still proves the mate cannot come.
        counter
            .add_sam(sam("y", 0x400, 151, "2M", -1, "AA", "II", "").as_bytes())
            .unwrap();
        assert_eq!(counter.waiting(), 0);
        let r = counter.finish().unwrap();
        assert_eq!(at(&r, "A_fwd", 100), 1);
        assert_eq!(r.fragments, 2);
    }

    #[test]
    fn waiting_stays_bounded_by_depth() {
        let mut counter = GeneCounter::new(config()).unwrap();
        let mut peak = 0;
        for i in 0..2000i64 {
            let pos0 = 100 + i / 40;
            // Mates that never arrive, 5 bp ahead.
            let line = sam(
                &format!("r{i}"),
                99,
                pos0,
                "4M",
                pos0 + 5,
                "ACGT",
                "IIII",
                "",
            );
            counter.add_sam(line.as_bytes()).unwrap();
            peak = peak.max(counter.waiting());
        }
        assert!(peak <= 40 * 7, "peak {peak}");
        let r = counter.finish().unwrap();
        assert_eq!(r.fragments, 2000);
    }

    #[test]
    fn third_record_with_same_name_may_wait_again() {
        let r = run(&[
            sam("p1", 99, 100, "2M", 100, "AC", "II", ""),
            sam("p1", 147, 100, "2M", 100, "AC", "II", ""),
            sam("p1", 99, 101, "2M", 101, "CG", "II", ""),
            sam("p1", 147, 101, "2M", 101, "CG", "II", ""),
        ]);
        // Two pairs, each overlap-adjusted: one base per position per pair.
        assert_eq!(r.depth(0), 1);
        assert_eq!(r.depth(1), 2);
        assert_eq!(r.depth(2), 1);
        assert_eq!(r.fragments, 2);
    }

    #[test]
    fn unsorted_records_are_an_error() {
        let mut counter = GeneCounter::new(config()).unwrap();
        counter
            .add_sam(single("a", 150, "2M", "AA").as_bytes())
            .unwrap();
        // Another contig does not matter.
        counter
            .add_sam(b"o\t0\tchr1\t5\t60\t2M\t*\t0\t0\tAA\tII\n")
            .unwrap();
        let err = counter
            .add_sam(single("b", 120, "2M", "AA").as_bytes())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "record 3 (read 'b'): records are not sorted by position (POS 121 after POS 151)"
        );
        assert_eq!(counter.add_sam(b""), Err(CoreError::Unusable));
        assert!(matches!(counter.finish(), Err(CoreError::Unusable)));
    }

    #[test]
    fn malformed_lines_are_errors_with_location() {
        let good = single("ok", 100, "2M", "AA");
        let cases = [
            (
                "r\t0\tchr22\t101\t60\t2M\t*\t0\t0\tAA",
                "expected at least 11",
            ),
            (
                "r\t0\tchr22\t101\t60\t2Q\t*\t0\t0\tAA\tII",
                "unknown CIGAR op 'Q'",
            ),
            (
                "r\t0\tchr22\t101\t60\t3M\t*\t0\t0\tAA\tII",
                "CIGAR query length 3 != SEQ length 2",
            ),
            (
                "r\t0\tchr22\t101\t60\t2M\t*\t0\t0\tAA\tI",
                "QUAL length 1 != SEQ length 2",
            ),
            ("r\t0\tchr22\t0\t60\t2M\t*\t0\t0\tAA\tII", "POS is 0"),
            ("r\t0\tchr22\tx\t60\t2M\t*\t0\t0\tAA\tII", "POS 'x'"),
            ("@SQ\tSN:chr22\tLN:100", "header line"),
            ("r\t0\tchr22\t101\t60\t2M\t*\t0\tA\tAA\tII", "TLEN 'A'"),
            ("r\t0\tchr22\t101\t60\tM\t*\t0\t0\tAA\tII", "no length"),
        ];
        for (line, want) in cases {
            let mut counter = GeneCounter::new(config()).unwrap();
            let text = format!("{good}{line}\n");
            let err = counter.add_sam(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains("record 2 ("), "{err}");
            assert!(err.contains(want), "{err} lacks {want}");
        }
    }

    #[test]
    fn invalid_config_is_an_error() {
        let bad = |f: fn(&mut CounterConfig)| {
            let mut cfg = config();
            f(&mut cfg);
            GeneCounter::new(cfg).err().map(|e| e.to_string())
        };
        assert!(bad(|c| c.window_end = c.window_start)
            .unwrap()
            .contains("invalid window"));
        assert!(bad(|c| c.window_start = -5)
            .unwrap()
            .contains("invalid window"));
        assert!(bad(|c| c.exons = vec![(10, 10)])
            .unwrap()
            .contains("exon 0"));
        assert!(bad(|c| c.exons = vec![(10, 20), (15, 30)])
            .unwrap()
            .contains("exon 1"));
        assert!(bad(|c| c.exons = vec![(30, 40), (10, 20)])
            .unwrap()
            .contains("sorted"));
        assert!(
            bad(|c| c.exons = vec![(10, 20), (20, 30)]).is_none(),
            "abutting is allowed"
        );
        assert!(bad(|c| c.exons.clear()).is_none());
    }

    #[test]
    fn filter_order_and_counters() {
        let mut cfg = config();
        cfg.exclude_flags = 0x704 | 0x800;
        let line = |name: &str, flag: u16, rname: &str, pos: i64, mapq: u8, cigar: &str| {
            format!("{name}\t{flag}\t{rname}\t{pos}\t{mapq}\t{cigar}\t*\t0\t0\tAA\tII\n")
        };
        let lines = [
            line("u1", 0x4, "chr22", 101, 60, "2M"),
            line("u2", 0, "chr22", 101, 60, "*"),
            line("u3", 0, "*", 0, 60, "2M"),
            line("u4", 0x4 | 0x100, "chr22", 101, 60, "2M"),
            line("s1", 0x100 | 0x400, "chr22", 101, 60, "2M"),
            line("q1", 0x200 | 0x400, "chr22", 101, 60, "2M"),
            line("d1", 0x400, "chr22", 101, 0, "2M"),
            line("o1", 0x800, "chr22", 101, 60, "2M"),
            line("m1", 0, "chr22", 101, 19, "2M"),
            line("t1", 0, "chr1", 101, 60, "2M"),
            line("t2", 0, "chr22", 1, 60, "2M"),
            line("ok", 0, "chr22", 101, 20, "2M"),
            line("ok255", 0, "chr22", 101, 255, "2M"),
        ];
        let mut counter = GeneCounter::new(cfg).unwrap();
        // t2 at POS 1 after POS 101 would be unsorted: feed it first.
        counter.add_sam(lines[10].as_bytes()).unwrap();
        for (i, l) in lines.iter().enumerate() {
            if i != 10 {
                counter.add_sam(l.as_bytes()).unwrap();
            }
        }
        let r = counter.finish().unwrap();
        assert_eq!(r.filters, [13, 4, 1, 1, 1, 1, 1, 2, 2, 0]);
    }

    #[test]
    fn supplementary_counts_per_position_not_per_fragment() {
        let r = run(&[
            single("r", 112, "4M", "ACGT"),
            sam("r", 0x800, 114, "4M", -1, "GTAA", "IIII", ""),
        ]);
        assert_eq!(filter(&r, "used"), 2);
        assert_eq!(filter(&r, "used_supplementary"), 1);
        assert_eq!(total_bases(&r), 8);
        assert_eq!(r.fragments, 1);
        assert_eq!(r.exon_fragments, vec![1, 0, 0]);
    }

    #[test]
    fn fragments_count_each_feature_once() {
        // Both mates in exon 0, b also reaches exon 1 through a junction.
        let r = run(&[
            sam(
                "f",
                99,
                112,
                "10M",
                115,
                &"A".repeat(10),
                &"I".repeat(10),
                "",
            ),
            sam(
                "f",
                147,
                115,
                "15M20N10M",
                112,
                &"A".repeat(25),
                &"I".repeat(25),
                "",
            ),
        ]);
        assert_eq!(r.fragments, 1);
        assert_eq!(r.gene_fragments, 1);
        assert_eq!(r.exon_fragments, vec![1, 1, 0]);
        assert_eq!(r.strand_evidence, [1, 0]);
        assert_eq!(r.junctions, vec![(130, 150, 0, 0, 1, 10)]);
        assert_eq!(r.intron_counts[0], IntronCount::default());
    }

    #[test]
    fn orientation_follows_read1_forward() {
        assert_eq!(orientation(0), 0);
        assert_eq!(orientation(16), 1);
        assert_eq!(orientation(99), 0); // read 1 forward
        assert_eq!(orientation(147), 0); // read 2 reverse
        assert_eq!(orientation(163), 1); // read 2 forward
        assert_eq!(orientation(83), 1); // read 1 reverse
        assert_eq!(orientation(0x80), 0); // READ2 without PAIRED: unpaired forward
        let r = run(&[
            sam("a", 163, 112, "4M", 160, "ACGT", "IIII", ""),
            sam("a", 83, 160, "4M", 112, "ACGT", "IIII", ""),
        ]);
        assert_eq!(r.strand_evidence, [0, 1]);
        assert_eq!(r.exon_fragments, vec![1, 1, 0]);
    }

    #[test]
    fn junction_keys_take_first_orientation_and_first_xs() {
        let read = "A".repeat(20);
        let qual = "I".repeat(20);
        let r = run(&[
            sam("f3", 0, 118, "12M20N8M", -1, &read, &qual, "\tXS:A:-"),
            sam("f4", 16, 118, "12M20N8M", -1, &read, &qual, "\tXS:A:-"),
            sam("f1", 99, 120, "10M20N10M", 170, &read, &qual, ""),
            sam("f2", 0, 121, "9M20N11M", -1, &read, &qual, "\tXS:A:+"),
            sam("f1", 147, 170, "20M", 120, &read, &qual, "\tXS:A:-"),
        ]);
        assert_eq!(
            r.junctions,
            vec![
                (130, 150, 0, 1, 1, 9),
                (130, 150, 0, 2, 2, 10),
                (130, 150, 1, 2, 1, 8),
            ]
        );
    }

    #[test]
    fn junction_supported_by_either_mate_counts_once_with_max_anchor() {
        let read = "A".repeat(30);
        let qual = "I".repeat(30);
        let r = run(&[
            sam("f", 99, 120, "10M20N20M", 121, &read, &qual, ""),
            sam("f", 147, 121, "9M20N21M", 120, &read, &qual, ""),
        ]);
        assert_eq!(r.junctions, vec![(130, 150, 0, 0, 1, 10)]);
    }

    #[test]
    fn intron_boundaries_and_inside() {
        let r = run(&[
            single("spliced", 122, "8M20N8M", &"A".repeat(16)),
            single("left", 125, "10M", &"A".repeat(10)),
            single("delacross", 125, "5M2D5M", &"A".repeat(10)),
            single("both", 128, "25M", &"A".repeat(25)),
            single("inside", 135, "5M", &"A".repeat(5)),
            single("right", 145, "10M", &"A".repeat(10)),
        ]);
        // delacross: M at 129, D at 130..132: no left boundary; M at 132..137 inside.
        assert_eq!(
            r.intron_counts[0],
            IntronCount {
                left_boundary: 2,
                right_boundary: 2,
                inside: 5
            }
        );
        assert_eq!(r.intron_counts[1], IntronCount::default());
    }

    #[test]
    fn abutting_exons_have_an_empty_intron() {
        let cfg = CounterConfig::new("chr22", WS, 200, vec![(110, 130), (130, 150)]);
        let r = run_with(cfg, &[single("r", 120, "20M", &"A".repeat(20))]);
        assert_eq!(r.intron_counts, vec![IntronCount::default()]);
        assert_eq!(r.exon_fragments, vec![1, 1]);
    }

    #[test]
    fn exon_inside_a_deletion_is_not_touched() {
        let cfg = CounterConfig::new("chr22", WS, 200, vec![(110, 115), (130, 140)]);
        let r = run_with(cfg, &[single("r", 100, "5M20D5M", &"A".repeat(10))]);
        assert_eq!(r.exon_fragments, vec![0, 0]);
        assert_eq!(r.gene_fragments, 0);
        assert_eq!(r.fragments, 1);
    }

    #[test]
    fn fragment_join_ignores_proper_pair_and_flushes_lonely_mates() {
        let r = run(&[
            // Not proper, still joined: one fragment.
            sam("f", 97, 112, "4M", 152, "ACGT", "IIII", ""),
            // Mate position 120 passed without the mate: counted alone.
            sam("g", 97, 113, "4M", 120, "ACGT", "IIII", ""),
            sam("f", 145, 152, "4M", 112, "ACGT", "IIII", ""),
        ]);
        assert_eq!(r.fragments, 2);
        assert_eq!(r.exon_fragments, vec![2, 1, 0]);
    }
}
