//! Validated counting parameters (coordinates 0-based half-open).

use crate::cigar::Interval;
use crate::names::MateSuffix;

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
    pub(super) fn introns(&self) -> Vec<Interval> {
        self.exons
            .windows(2)
            .map(|pair| Interval {
                start: pair[0].end,
                end: pair[1].start,
            })
            .collect()
    }
}
