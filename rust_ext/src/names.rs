//! Mate names as the mate book matches them ([`MateSuffix`]), and an index from QNAME hash to mate-book slot whose probe address is known from the hash alone,
//! so that the counter can prefetch it for records further ahead in a batch.
//!
//! Open addressing with linear probing; each entry is one `u64`: the hash's upper 32 bits (the
//! tag, which also gives the home index) above `slot + 1` (0: empty). Deletion shifts later
//! entries of the probe run back (no tombstones). A matching tag only nominates a slot: the
//! caller compares the slot's full hash and QNAME.

/// How a file's two mates' QNAMEs differ, when they do: some tools write `NAME/1` and `NAME/2`
/// (old Illumina/TopHat style) or `NAME.1` and `NAME.2` (HISAT2 on reads from SRA dumped with
/// read ids), so exact matching never pairs the mates. The reader detects the convention per
/// file (identical names, as `fastq-dump` without `--readids` gives, stay `None`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MateSuffix {
    /// Mates share their QNAME exactly (the SAM specification).
    #[default]
    None,
    /// `NAME/1` (first segment) and `NAME/2` (last segment).
    Slash,
    /// `NAME.1` (first segment) and `NAME.2` (last segment).
    Dot,
}

/// FLAG bits of a paired record's position in its template (SAM: 0x1, 0x40, 0x80).
const PAIRED: u16 = 0x1;
const FIRST_SEGMENT: u16 = 0x40;
const LAST_SEGMENT: u16 = 0x80;

impl MateSuffix {
    /// Every convention with its label (the reader's and the summary's spelling).
    pub const LABELS: [(Self, &'static str); 3] = [
        (Self::None, ""),
        (Self::Slash, "/1,/2"),
        (Self::Dot, ".1,.2"),
    ];

    /// The convention a label names (`""`, `"/1,/2"` or `".1,.2"`).
    pub fn from_label(label: &str) -> Option<Self> {
        Self::LABELS
            .iter()
            .find(|(_, l)| *l == label)
            .map(|&(suffix, _)| suffix)
    }

    /// The name the mate book matches `qname` under: without `/1` or `.1` on a first segment and
    /// `/2` or `.2` on a last segment of a paired record, else `qname` unchanged (so a name
    /// without the suffix, or with the other mate's, never loses characters).
    pub fn stem(self, qname: &[u8], flag: u16) -> &[u8] {
        let separator = match self {
            Self::None => return qname,
            Self::Slash => b'/',
            Self::Dot => b'.',
        };
        let digit = match flag & (PAIRED | FIRST_SEGMENT | LAST_SEGMENT) {
            f if f == PAIRED | FIRST_SEGMENT => b'1',
            f if f == PAIRED | LAST_SEGMENT => b'2',
            _ => return qname,
        };
        match qname {
            [stem @ .., s, d] if *s == separator && *d == digit && !stem.is_empty() => stem,
            _ => qname,
        }
    }
}

/// Smallest number of entries (a power of two).
const MIN_CAPACITY: usize = 1024;

const TAG_MASK: u64 = 0xFFFF_FFFF_0000_0000;

#[derive(Clone, Debug)]
pub struct NameTable {
    entries: Vec<u64>,
    mask: usize,
    len: usize,
}

impl Default for NameTable {
    fn default() -> Self {
        Self::new()
    }
}

impl NameTable {
    pub fn new() -> Self {
        Self {
            entries: vec![0; MIN_CAPACITY],
            mask: MIN_CAPACITY - 1,
            len: 0,
        }
    }

    /// Slots indexed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn entry(hash: u64, slot: u32) -> u64 {
        (hash & TAG_MASK) | (u64::from(slot) + 1)
    }

    fn slot_of(entry: u64) -> u32 {
        // Entries hold slot + 1 in their low half, and slots are below u32::MAX.
        ((entry & !TAG_MASK) - 1) as u32
    }

    fn home(&self, hash: u64) -> usize {
        (hash >> 32) as usize & self.mask
    }

    /// Slots whose tag matches `hash`, in probe order.
    pub fn candidates(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        let tag = hash & TAG_MASK;
        let mut i = self.home(hash);
        std::iter::from_fn(move || loop {
            let entry = *self.entries.get(i)?;
            if entry == 0 {
                return None;
            }
            i = (i + 1) & self.mask;
            if entry & TAG_MASK == tag {
                return Some(Self::slot_of(entry));
            }
        })
    }

    /// The address where a probe for `hash` starts (for a prefetch).
    pub fn probe_address(&self, hash: u64) -> *const u8 {
        self.entries
            .get(self.home(hash))
            .map_or(std::ptr::null(), |entry| std::ptr::from_ref(entry).cast())
    }

    /// Index `slot` under `hash` (the caller makes sure it is not indexed already).
    pub fn insert(&mut self, hash: u64, slot: u32) {
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        self.place(Self::entry(hash, slot));
        self.len += 1;
    }

    fn place(&mut self, entry: u64) {
        let mut i = self.home(entry);
        while self.entries.get(i).is_some_and(|&e| e != 0) {
            i = (i + 1) & self.mask;
        }
        if let Some(free) = self.entries.get_mut(i) {
            *free = entry;
        }
    }

    fn grow(&mut self) {
        let capacity = self.entries.len() * 2;
        let old = std::mem::replace(&mut self.entries, vec![0; capacity]);
        self.mask = capacity - 1;
        for entry in old.into_iter().filter(|&e| e != 0) {
            self.place(entry);
        }
    }

    /// Remove `slot`, indexed under `hash`; false if it was not there.
    pub fn remove(&mut self, hash: u64, slot: u32) -> bool {
        let wanted = Self::entry(hash, slot);
        let mut i = self.home(hash);
        loop {
            match self.entries.get(i) {
                Some(&e) if e == wanted => break,
                Some(&0) | None => return false,
                Some(_) => i = (i + 1) & self.mask,
            }
        }
        // Backward-shift deletion: move each later entry of the run into the hole if its home
        // is not after the hole (cyclically), so every entry stays reachable from its home.
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        loop {
            let entry = self.entries.get(j).copied().unwrap_or(0);
            if entry == 0 {
                break;
            }
            let home = self.home(entry);
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                if let Some(h) = self.entries.get_mut(hole) {
                    *h = entry;
                }
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        if let Some(h) = self.entries.get_mut(hole) {
            *h = 0;
        }
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Slots found for `hash` that were inserted under exactly that hash.
    fn lookup(table: &NameTable, model: &HashMap<u32, u64>, hash: u64) -> Vec<u32> {
        let mut found: Vec<u32> = table
            .candidates(hash)
            .filter(|s| model.get(s) == Some(&hash))
            .collect();
        found.sort_unstable();
        found
    }

    #[test]
    fn mate_suffix_stems_only_the_own_suffix_of_a_paired_record() {
        let (r1, r2) = (0x1 | 0x40, 0x1 | 0x80);
        assert_eq!(MateSuffix::Dot.stem(b"SRR1.7.1", r1), b"SRR1.7");
        assert_eq!(MateSuffix::Dot.stem(b"SRR1.7.2", r2), b"SRR1.7");
        // The other mate's suffix, a missing suffix, an unpaired record: unchanged.
        assert_eq!(MateSuffix::Dot.stem(b"SRR1.7.2", r1), b"SRR1.7.2");
        assert_eq!(MateSuffix::Dot.stem(b"SRR1.7", r2), b"SRR1.7");
        assert_eq!(MateSuffix::Dot.stem(b"SRR1.7.1", 0x40), b"SRR1.7.1");
        assert_eq!(MateSuffix::Dot.stem(b".1", r1), b".1");
        assert_eq!(MateSuffix::Slash.stem(b"q/1", r1), b"q");
        assert_eq!(MateSuffix::Slash.stem(b"q/2", r2), b"q");
        assert_eq!(MateSuffix::Slash.stem(b"q.1", r1), b"q.1");
        assert_eq!(MateSuffix::None.stem(b"q/1", r1), b"q/1");
    }

    #[test]
    fn colliding_homes_survive_removal_in_the_middle_of_a_run() {
        let mut table = NameTable::new();
        // Same home (tag differs only above the mask), then one with the next home.
        let a = 5u64 << 32 | 1;
        let b = (5u64 | 1 << 20) << 32 | 2;
        let c = 6u64 << 32 | 3;
        table.insert(a, 0);
        table.insert(b, 1);
        table.insert(c, 2);
        assert!(table.remove(a, 0));
        assert_eq!(table.candidates(b).collect::<Vec<_>>(), vec![1]);
        assert_eq!(table.candidates(c).collect::<Vec<_>>(), vec![2]);
        assert!(!table.remove(a, 0));
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn wraps_around_the_end() {
        let mut table = NameTable::new();
        let last = (MIN_CAPACITY as u64 - 1) << 32;
        table.insert(last, 7);
        table.insert(last | 1 << 40, 8);
        assert!(table.remove(last, 7));
        assert_eq!(
            table.candidates(last | 1 << 40).collect::<Vec<_>>(),
            vec![8]
        );
    }

    proptest! {
        /// Random inserts and removals (hashes drawn from a small pool, so homes and tags
        /// collide often) agree with a HashMap, through growth.
        #[test]
        fn agrees_with_a_map(ops in proptest::collection::vec((any::<bool>(), 0u64..64, 0u32..400), 1..1500)) {
            let pool: Vec<u64> = (0..64u64)
                .map(|k| (k % 7) << 32 | (k / 7) << 45 | k)
                .collect();
            let mut table = NameTable::new();
            let mut model: HashMap<u32, u64> = HashMap::new();
            for (insert, k, slot) in ops {
                let hash = pool[k as usize];
                if insert {
                    if let std::collections::hash_map::Entry::Vacant(e) = model.entry(slot) {
                        e.insert(hash);
                        table.insert(hash, slot);
                    }
                } else {
                    let expected = model.get(&slot) == Some(&hash);
                    prop_assert_eq!(table.remove(hash, slot), expected);
                    if expected {
                        model.remove(&slot);
                    }
                }
                prop_assert_eq!(table.len(), model.len());
            }
            for &hash in &pool {
                let mut expected: Vec<u32> =
                    model.iter().filter(|(_, &h)| h == hash).map(|(&s, _)| s).collect();
                expected.sort_unstable();
                prop_assert_eq!(lookup(&table, &model, hash), expected);
            }
        }
    }
}
