//! Fragment-level counts: exons, junctions, introns, strand evidence and fragment totals.

use hashbrown::HashMap;

use crate::cigar::{self, CigarOp, Interval, SplicedJunction};

use super::flags;
use super::params::CountParams;

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
    pub(super) fn absorb(&mut self, later: &FragmentFeatures) {
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

/// One junction of the output: a spliced (`N`) gap, the orientation of the fragments that
/// support it and their XS, and how many fragments do with their longest anchor. Ordered by its
/// fields in this order (the documented sort of `CountResult.junctions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JunctionCount {
    /// The intron, 0-based half-open: first and one past the last skipped base.
    pub start: i64,
    pub end: i64,
    /// The fragment's first record's, as [`orientation`] (docs/counting.md).
    pub orientation: u8,
    /// 1 for `XS:A:+`, 2 for `XS:A:-`, 0 if absent: the first non-zero value of the fragment's
    /// records.
    pub xs: u8,
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
    pub(super) exon_fragments: Vec<u64>,
    pub(super) junctions: HashMap<(i64, i64, u8, u8), JunctionTally>,
    pub(super) intron_counts: Vec<IntronCount>,
    pub(super) strand_evidence: [u64; 2],
    pub(super) gene_fragments: u64,
    pub(super) fragments: u64,
    // Scratch buffers, reused per record.
    aligned: Vec<Interval>,
    spliced: Vec<SplicedJunction>,
}

impl FragmentCounter {
    pub(super) fn new(params: &CountParams) -> Self {
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
    pub(super) fn record_features(
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
    pub(super) fn count(&mut self, fragment: &FragmentFeatures) {
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
