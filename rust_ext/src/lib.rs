//! Counting core of cd22scan: SAM text batches in, per-sample counts out (docs/counting.md).
//!
//! Data moves one way: `batch` (lines → validated records) → `cigar` (ops → blocks, junctions)
//! → `counts` (filter, mate pairing, counters). `python` is the only file that touches PyO3.
//! Coordinates are 0-based, half-open throughout.

pub mod bam;
pub mod batch;
pub mod cigar;
pub mod counts;
pub mod names;
#[cfg(feature = "python")]
mod python;

use std::fmt;

pub use batch::LineError;
pub use cigar::{CigarError, Interval};
pub use counts::{
    DeletionCount, InsertionCount, IntronCount, JunctionCount, RecordFault, BASE_COUNT_KEYS,
    FILTER_KEYS,
};

/// Longest window the core accepts (2^31 positions, every SAM coordinate).
pub const MAX_WINDOW_LEN: i64 = 1 << 31;

/// How many records ahead of the one being counted each prefetch stage of
/// [`counts::Counter::prefetch_name`] is issued (BAM hand-over only).
const PREFETCH_AHEAD: [usize; 3] = [12, 6, 3];

/// Everything a [`GeneCounter`] needs; defaults as in docs/counting.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterConfig {
    /// Reference name as in RNAME.
    pub contig: String,
    /// Window start, 0-based inclusive.
    pub window_start: i64,
    /// Window end, 0-based exclusive.
    pub window_end: i64,
    /// Exons `[start, end)`, 0-based, sorted by start, non-overlapping.
    pub exons: Vec<(i64, i64)>,
    pub min_mapq: u32,
    pub min_baseq: u32,
    pub min_anchor: u32,
    pub exclude_flags: u16,
    pub dedup_overlaps: bool,
    /// How the file's mate names differ, if they do (detected by the reader).
    pub mate_suffix: names::MateSuffix,
}

impl CounterConfig {
    /// A config with the documented defaults.
    pub fn new(
        contig: impl Into<String>,
        window_start: i64,
        window_end: i64,
        exons: Vec<(i64, i64)>,
    ) -> Self {
        Self {
            contig: contig.into(),
            window_start,
            window_end,
            exons,
            min_mapq: 20,
            min_baseq: 13,
            min_anchor: 8,
            exclude_flags: 0x704,
            dedup_overlaps: true,
            mate_suffix: names::MateSuffix::None,
        }
    }
}

/// Input the core refuses. Messages say what was wrong and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreError {
    /// The window is empty, negative or too long.
    InvalidWindow { start: i64, end: i64 },
    /// Exon `index` (0-based, in the order given) is empty or out of order.
    InvalidExon {
        index: usize,
        start: i64,
        end: i64,
        problem: &'static str,
    },
    /// A numeric parameter outside its range.
    InvalidParameter {
        name: &'static str,
        value: i64,
        expected: &'static str,
    },
    /// The per-position arrays for the window could not be allocated.
    OutOfMemory { window_len: i64 },
    /// A SAM line that does not parse (`record` is 1-based over all batches).
    Line {
        record: u64,
        qname: String,
        problem: LineError,
    },
    /// A BAM record whose lengths or positions are invalid (`record` as for `Line`).
    Bam {
        record: u64,
        qname: String,
        problem: bam::BamError,
    },
    /// A record that parses but cannot be counted.
    Record {
        record: u64,
        qname: String,
        problem: RecordFault,
    },
    /// An earlier call failed; the counts would be incomplete.
    Unusable,
    /// `add_sam` or `finish` after `finish`.
    Finished,
    /// The counter is lent to a `BamSink` that is not closed yet.
    Lent,
    /// A bug, never bad input: the core panicked (caught at the Python boundary), could not
    /// start its threads, or the stream pysam wrote for a `BamSink` was not uncompressed BAM.
    /// Python sees it as `CoreBug`, not `CoreError`.
    Internal(String),
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidWindow { start, end } => write!(
                f,
                "invalid window [{start}, {end}): need 0 <= start < end and at most {MAX_WINDOW_LEN} positions"
            ),
            Self::InvalidExon {
                index,
                start,
                end,
                problem,
            } => write!(f, "exon {index} [{start}, {end}): {problem}"),
            Self::InvalidParameter {
                name,
                value,
                expected,
            } => write!(f, "{name} = {value}: expected {expected}"),
            Self::OutOfMemory { window_len } => write!(
                f,
                "cannot allocate per-position counts for a window of {window_len} positions"
            ),
            Self::Line {
                record,
                qname,
                problem,
            } => write!(f, "SAM record {record} (read '{qname}'): {problem}"),
            Self::Record {
                record,
                qname,
                problem,
            } => write!(f, "record {record} (read '{qname}'): {problem}"),
            Self::Bam {
                record,
                qname,
                problem,
            } => write!(f, "record {record} (read '{qname}'): {problem}"),
            Self::Unusable => write!(
                f,
                "this GeneCounter already failed on earlier input; its counts would be incomplete"
            ),
            Self::Finished => write!(f, "this GeneCounter is finished (finish() was called)"),
            Self::Lent => write!(
                f,
                "this GeneCounter is being fed by a BamSink: close() the sink first"
            ),
            Self::Internal(message) => write!(
                f,
                "internal error in the counting core (a bug, please report it): {message}"
            ),
        }
    }
}

impl std::error::Error for CoreError {}

/// All counts of one sample over one window (docs/counting.md). Lists are sorted as documented
/// in `cd22scan/_core.pyi`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CountResult {
    pub window_start: i64,
    pub window_end: i64,
    /// Values in [`FILTER_KEYS`] order.
    pub filters: [u64; 10],
    /// Per-position arrays in [`BASE_COUNT_KEYS`] order, each `window_end - window_start` long.
    pub base_counts: [Vec<u32>; 12],
    /// Sorted by (anchor, bases); a tuple in field order in Python.
    pub insertions: Vec<InsertionCount>,
    /// Sorted by (anchor, length); a tuple in field order in Python.
    pub deletions: Vec<DeletionCount>,
    /// Per exon, in the order given.
    pub exon_fragments: Vec<u64>,
    /// Sorted by (start, end, orientation, xs); a tuple in that field order in Python.
    pub junctions: Vec<JunctionCount>,
    /// Per annotated intron, genomic order.
    pub intron_counts: Vec<IntronCount>,
    pub strand_evidence: [u64; 2],
    pub gene_fragments: u64,
    pub fragments: u64,
}

impl CountResult {
    /// Total depth (A+C+G+T+N+del, both strands) at window offset `i`.
    pub fn depth(&self, i: usize) -> u64 {
        self.base_counts
            .iter()
            .map(|column| u64::from(column.get(i).copied().unwrap_or(0)))
            .sum()
    }
}

/// Counts SAM records of one sample over one gene window.
pub struct GeneCounter {
    contig: Vec<u8>,
    counter: counts::Counter,
    parser: batch::LineParser,
    window: Interval,
    records_seen: u64,
    failed: bool,
}

impl GeneCounter {
    pub fn new(config: CounterConfig) -> Result<Self, CoreError> {
        let window = Interval {
            start: config.window_start,
            end: config.window_end,
        };
        if window.start < 0
            || window.end <= window.start
            || window.end - window.start > MAX_WINDOW_LEN
        {
            return Err(CoreError::InvalidWindow {
                start: window.start,
                end: window.end,
            });
        }
        let mut exons = Vec::with_capacity(config.exons.len());
        for (index, &(start, end)) in config.exons.iter().enumerate() {
            let invalid = |problem| CoreError::InvalidExon {
                index,
                start,
                end,
                problem,
            };
            if start < 0 {
                return Err(invalid("negative start"));
            }
            if end <= start {
                return Err(invalid("empty (end <= start)"));
            }
            if exons.last().is_some_and(|prev: &Interval| start < prev.end) {
                return Err(invalid(
                    "starts before the previous exon ends (exons must be sorted and non-overlapping)",
                ));
            }
            exons.push(Interval { start, end });
        }
        let contig = config.contig.into_bytes();
        let params = counts::CountParams {
            contig: contig.clone(),
            window,
            exons,
            min_mapq: config.min_mapq,
            min_baseq: config.min_baseq,
            min_anchor: config.min_anchor,
            exclude_flags: config.exclude_flags,
            dedup_overlaps: config.dedup_overlaps,
            mate_suffix: config.mate_suffix,
        };
        let counter = counts::Counter::new(params).ok_or(CoreError::OutOfMemory {
            window_len: window.end - window.start,
        })?;
        Ok(Self {
            contig,
            counter,
            parser: batch::LineParser::new(),
            window,
            records_seen: 0,
            failed: false,
        })
    }

    /// Count a batch of SAM records: complete lines, newline-separated, no header lines.
    /// After an error the counter refuses further input ([`CoreError::Unusable`]).
    pub fn add_sam(&mut self, text: &[u8]) -> Result<(), CoreError> {
        if self.failed {
            return Err(CoreError::Unusable);
        }
        let result = self.add_lines(text);
        self.failed = result.is_err();
        result
    }

    fn add_lines(&mut self, text: &[u8]) -> Result<(), CoreError> {
        for line in batch::lines(text) {
            self.records_seen += 1;
            let record = self.parser.parse(line).map_err(|problem| CoreError::Line {
                record: self.records_seen,
                qname: shown_name(batch::leading_field(line)),
                problem,
            })?;
            self.count(&record)?;
        }
        Ok(())
    }

    /// The counted window.
    pub fn window(&self) -> Interval {
        self.window
    }

    /// The counted reference's name (RNAME).
    pub fn contig(&self) -> &[u8] {
        &self.contig
    }

    /// Count BAM records given as fixed fields and data block ([`bam`]); `decoder` names the
    /// counted reference id. Stops at the first refused record, as [`GeneCounter::add_sam`].
    pub fn add_bam<'a>(
        &mut self,
        decoder: &mut bam::BamDecoder,
        records: impl IntoIterator<Item = (bam::BamCore, &'a [u8])>,
    ) -> Result<(), CoreError> {
        let records = records.into_iter().map(|(core, data)| (core, data, None));
        self.add_bam_expanded(decoder, records)
    }

    /// [`GeneCounter::add_bam`] for records whose SEQ, QUAL and XS were expanded ahead
    /// ([`bam::BamDecoder::expand_into`], on another thread) where given; counts are the same.
    pub fn add_bam_expanded<'a>(
        &mut self,
        decoder: &mut bam::BamDecoder,
        records: impl IntoIterator<Item = (bam::BamCore, &'a [u8], Option<bam::Expanded<'a>>)>,
    ) -> Result<(), CoreError> {
        if self.failed {
            return Err(CoreError::Unusable);
        }
        let result = self.add_bam_records(decoder, records);
        self.failed = result.is_err();
        result
    }

    fn add_bam_records<'a>(
        &mut self,
        decoder: &mut bam::BamDecoder,
        records: impl IntoIterator<Item = (bam::BamCore, &'a [u8], Option<bam::Expanded<'a>>)>,
    ) -> Result<(), CoreError> {
        // Each record's name, found once, and its hash: each name's mate-book memory is fetched
        // while earlier records are counted (the table probe PREFETCH_AHEAD[0] records ahead,
        // its slot [1], the slot's read [2]).
        type Named<'b> = (bam::BamCore, &'b [u8], &'b [u8], Option<bam::Expanded<'b>>);
        let records: Vec<Named<'_>> = records
            .into_iter()
            .map(|(core, data, ahead)| (core, data, bam::BamDecoder::qname(&core, data), ahead))
            .collect();
        let hashes: Vec<u64> = records
            .iter()
            .map(|&(core, _, qname, _)| self.counter.name_hash(qname, core.flag))
            .collect();
        for (i, (&(core, data, qname, ahead), &hash)) in records.iter().zip(&hashes).enumerate() {
            for (stage, ahead) in PREFETCH_AHEAD.iter().enumerate() {
                if let Some(&later) = hashes.get(i + ahead) {
                    self.counter.prefetch_name(later, stage as u8);
                }
            }
            self.records_seen += 1;
            let record = match decoder.decode_expanded(&core, data, qname, ahead) {
                Ok(record) => record,
                Err(problem) => {
                    return Err(CoreError::Bam {
                        record: self.records_seen,
                        qname: shown_name(qname),
                        problem,
                    })
                }
            };
            self.count_hashed(&record, Some(hash))?;
        }
        Ok(())
    }

    /// Count one decoded record; a refusal names it by its number over all batches.
    fn count(&mut self, record: &batch::SamRecord<'_>) -> Result<(), CoreError> {
        self.count_hashed(record, None)
    }

    fn count_hashed(
        &mut self,
        record: &batch::SamRecord<'_>,
        qname_hash: Option<u64>,
    ) -> Result<(), CoreError> {
        self.counter
            .add_hashed(record, qname_hash)
            .map_err(|problem| CoreError::Record {
                record: self.records_seen,
                qname: shown_name(record.qname),
                problem,
            })
    }

    /// Refuse all further input, as after an error (used when a caller caught a panic).
    pub fn mark_unusable(&mut self) {
        self.failed = true;
    }

    /// Records waiting for a mate right now (memory is bounded by depth, not by input size).
    pub fn waiting(&self) -> usize {
        self.counter.waiting()
    }

    /// Flush reads still waiting for a mate and return the counts.
    pub fn finish(self) -> Result<CountResult, CoreError> {
        if self.failed {
            return Err(CoreError::Unusable);
        }
        Ok(self.counter.finish())
    }
}

/// A read name for an error message: lossy UTF-8, at most 80 characters.
fn shown_name(name: &[u8]) -> String {
    let shown = name.get(..80).unwrap_or(name);
    let mut text = String::from_utf8_lossy(shown).into_owned();
    if shown.len() < name.len() {
        text.push('…');
    }
    text
}
