//! The counters of docs/counting.md and the engine that feeds them one record at a time:
//! record filter → mate pairing (overlap adjustment; fragment joining) → per-position base and
//! indel counts, fragment-level exon / junction / intron counts. Plain Rust, no I/O.
//!
//! Records that wait for a mate are copied into reusable slots, so steady-state counting does no
//! heap allocation, and are flushed as soon as the input has moved past their mate's position.
//!
//! One file per concern, in the order of the data path: `params` (validated settings), `filter`
//! (FLAG/MAPQ filter and its counters), `mates` (records waiting for a mate), `overlap` (mate
//! overlap quality, htslib's rules), `bases` (per-position counts, indel events), `fragments`
//! (exon / junction / intron / strand counts per fragment), `engine` (the `Counter` that drives
//! them record by record).

mod bases;
mod engine;
mod filter;
mod fragments;
mod mates;
mod overlap;
mod params;
#[cfg(test)]
mod tests;

pub use bases::{
    BaseCounter, DeletionCount, InsertionCount, ReadView, BASE_COUNT_KEYS, MISSING_QUALITY,
};
pub use engine::{Counter, RecordFault};
pub use filter::{FilterCounts, FILTER_KEYS};
pub use fragments::{
    orientation, FragmentCounter, FragmentFeatures, IntronCount, JunctionCount, JunctionTally,
};
pub use overlap::{first_mate_keeps, resolve_overlap, wang_hash, x31_hash};
pub use params::CountParams;

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
