//! Per-position base and deletion counts over the window, and insertion / deletion events.

use hashbrown::HashMap;

use crate::cigar::{self, CigarOp, Interval, Segment};

/// Keys of the per-position counts, in output order.
pub const BASE_COUNT_KEYS: [&str; 12] = [
    "A_fwd", "A_rev", "C_fwd", "C_rev", "G_fwd", "G_rev", "T_fwd", "T_rev", "N_fwd", "N_rev",
    "del_fwd", "del_rev",
];

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

/// One insertion event of the output: the inserted bases after the anchor (the last reference
/// base before them, 0-based) and the records per strand. Ordered by (anchor, bases).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InsertionCount {
    pub anchor: i64,
    pub bases: String,
    pub forward: u64,
    pub reverse: u64,
}

/// One deletion event of the output: `length` reference bases deleted after the anchor (the last
/// reference base before them, 0-based) and the records per strand. Ordered by (anchor, length).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeletionCount {
    pub anchor: i64,
    pub length: u32,
    pub forward: u64,
    pub reverse: u64,
}

/// Per-position base and deletion counts over the window, and insertion / deletion events.
#[derive(Clone, Debug)]
pub struct BaseCounter {
    window: Interval,
    min_baseq: u32,
    /// One cell per window position, columns in [`BASE_COUNT_KEYS`] order.
    cells: Vec<[u32; 12]>,
    pub(super) insertions: HashMap<(i64, Vec<u8>), [u64; 2]>,
    pub(super) deletions: HashMap<(i64, u32), [u64; 2]>,
}

/// Deletions of the first mate that suppress the second mate's (docs: "both have a D").
#[derive(Clone, Copy, Debug)]
pub(super) struct MateDeletions<'a> {
    /// The first mate's `D` ops as reference intervals, in order (sorted, disjoint).
    pub(super) intervals: &'a [Interval],
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
    pub(super) fn count(&mut self, read: &ReadView<'_>, mate: Option<MateDeletions<'_>>) {
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
    pub(super) fn columns(&self) -> [Vec<u32>; 12] {
        std::array::from_fn(|column| {
            self.cells
                .iter()
                .map(|cell| cell.get(column).copied().unwrap_or(0))
                .collect()
        })
    }
}

/// `D` ops of an alignment as reference intervals, in order.
pub(super) fn deletion_intervals(ops: &[CigarOp], pos0: i64, out: &mut Vec<Interval>) {
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
