//! The record filter: records received and where each went (first failing filter wins).

use super::flags;
use super::params::CountParams;

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
pub(super) enum FlagFilter {
    Secondary,
    QcFail,
    Duplicate,
    OtherFlags,
    LowMapq,
}

impl FlagFilter {
    pub(super) fn of(flag: u16, mapq: u8, params: &CountParams) -> Option<Self> {
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

    pub(super) fn tally(self, counts: &mut FilterCounts) {
        match self {
            Self::Secondary => counts.secondary += 1,
            Self::QcFail => counts.qcfail += 1,
            Self::Duplicate => counts.duplicate += 1,
            Self::OtherFlags => counts.other_flags += 1,
            Self::LowMapq => counts.low_mapq += 1,
        }
    }
}
