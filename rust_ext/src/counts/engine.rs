//! The engine: filter, pair and count records one at a time.

use std::fmt;

use crate::batch::{CigarField, SamRecord};
use crate::cigar::{self, CigarError, CigarOp, Interval};
use crate::CountResult;

use super::bases::{
    deletion_intervals, BaseCounter, DeletionCount, InsertionCount, MateDeletions, ReadView,
    MISSING_QUALITY,
};
use super::filter::{FilterCounts, FlagFilter};
use super::flags;
use super::fragments::{FragmentCounter, FragmentFeatures, JunctionCount};
use super::mates::{decode_ops, MateBook, FRAGMENT, READ};
use super::overlap::{first_mate_keeps, tweak_overlap_quality};
use super::params::CountParams;

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

    /// Flush everything still waiting and return the counts, in output form (sorted lists).
    pub fn finish(mut self) -> CountResult {
        let mut due = std::mem::take(&mut self.due);
        self.book.due.release_all(&mut due);
        self.flush(&due);
        let mut insertions: Vec<InsertionCount> = self
            .bases
            .insertions
            .iter()
            .map(|((anchor, bases), [fwd, rev])| InsertionCount {
                anchor: *anchor,
                bases: String::from_utf8_lossy(bases).into_owned(),
                forward: *fwd,
                reverse: *rev,
            })
            .collect();
        insertions.sort_unstable();
        let mut deletions: Vec<DeletionCount> = self
            .bases
            .deletions
            .iter()
            .map(|(&(anchor, length), &[forward, reverse])| DeletionCount {
                anchor,
                length,
                forward,
                reverse,
            })
            .collect();
        deletions.sort_unstable();
        let mut junctions: Vec<JunctionCount> = self
            .fragments
            .junctions
            .iter()
            .map(|(&(start, end, orientation, xs), tally)| JunctionCount {
                start,
                end,
                orientation,
                xs,
                fragments: tally.fragments,
                max_anchor: tally.max_anchor,
            })
            .collect();
        junctions.sort_unstable();
        CountResult {
            window_start: self.params.window.start,
            window_end: self.params.window.end,
            filters: self.filters.values(),
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
