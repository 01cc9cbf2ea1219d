//! Records waiting for a mate: compact slots by QNAME and when each becomes due.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;

use crate::cigar::{CigarOp, OpKind};
use crate::names::NameTable;

use super::bases::ReadView;
use super::fragments::FragmentFeatures;

/// Which part of a slot waits: the read (for overlap adjustment) or the fragment (for joining).
pub(super) const READ: usize = 0;
pub(super) const FRAGMENT: usize = 1;

/// CIGAR ops as bytes: kind code, then the length as little-endian u32.
fn encode_ops(ops: &[CigarOp], out: &mut Vec<u8>) {
    for op in ops {
        out.push(op.kind.code());
        out.extend_from_slice(&op.len.to_le_bytes());
    }
}

pub(super) fn decode_ops(bytes: &[u8], out: &mut Vec<CigarOp>) {
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
pub(super) struct ByteReader<'a>(&'a [u8]);

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
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
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
    pub(super) fn decode(&mut self, orientation: u8, xs: u8, bytes: &[u8]) {
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
pub(super) struct DueQueue {
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
    pub(super) fn release_before(&mut self, pos: i64, out: &mut Vec<(u64, u32)>) {
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
    pub(super) fn release_all(&mut self, out: &mut Vec<(u64, u32)>) {
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
pub(super) struct WaitSlot {
    qname_len: usize,
    /// [`MateBook::hash`] of the QNAME.
    qname_hash: u64,
    /// QNAME, then the waiting read's SEQ, numeric QUAL and encoded CIGAR ops.
    data: Vec<u8>,
    pub(super) read_pos0: i64,
    pub(super) read_reverse: bool,
    read_seq_len: usize,
    pub(super) fragment_orientation: u8,
    pub(super) fragment_xs: u8,
    /// The waiting fragment's features, encoded.
    pub(super) fragment: Vec<u8>,
}

impl WaitSlot {
    fn qname(&self) -> &[u8] {
        self.data.get(..self.qname_len).unwrap_or_default()
    }

    pub(super) fn store_read(&mut self, read: &ReadView<'_>) {
        self.data.truncate(self.qname_len);
        self.data.extend_from_slice(read.seq);
        self.data.extend_from_slice(read.qual);
        encode_ops(read.ops, &mut self.data);
        self.read_pos0 = read.pos0;
        self.read_reverse = read.reverse;
        self.read_seq_len = read.seq.len();
    }

    /// SEQ, QUAL (mutable, for overlap adjustment) and encoded ops of the stored read.
    pub(super) fn read_parts(&mut self) -> Option<(&[u8], &mut [u8], &[u8])> {
        let rest = self.data.get_mut(self.qname_len..)?;
        let (seq, rest) = rest.split_at_mut_checked(self.read_seq_len)?;
        let (qual, ops) = rest.split_at_mut_checked(self.read_seq_len)?;
        Some((seq, qual, ops))
    }
}

/// Waiting parts by QNAME, and when each becomes due (its mate's position has passed).
pub(super) struct MateBook {
    hasher: DefaultHashBuilder,
    by_name: NameTable,
    pub(super) slots: Vec<WaitSlot>,
    /// Per slot, the tickets of the waiting read and fragment (0: not waiting). Kept apart from
    /// the slots so that skipping stale due entries touches only this small array.
    pub(super) tickets: Vec<[u64; 2]>,
    free: Vec<u32>,
    /// Tickets by mate position (0-based); those no longer waiting are skipped when released.
    pub(super) due: DueQueue,
    next_ticket: u64,
}

impl MateBook {
    pub(super) fn new() -> Self {
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

    pub(super) fn hash(&self, qname: &[u8]) -> u64 {
        self.hasher.hash_one(qname)
    }

    /// The slot of `qname`, whose [`MateBook::hash`] is `hash`.
    pub(super) fn find(&self, hash: u64, qname: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.by_name.candidates(hash).find(|&s| {
            slots
                .get(s as usize)
                .is_some_and(|slot| slot.qname_hash == hash && slot.qname() == qname)
        })
    }

    pub(super) fn is_waiting(&self, s: u32, part: usize) -> bool {
        self.tickets
            .get(s as usize)
            .is_some_and(|tickets| tickets[part] != 0)
    }

    pub(super) fn set_ticket(&mut self, s: u32, part: usize, ticket: u64) {
        if let Some(tickets) = self.tickets.get_mut(s as usize) {
            tickets[part] = ticket;
        }
    }

    /// The slot for `qname` (`existing` if already found), created if absent.
    pub(super) fn slot_for(&mut self, hash: u64, qname: &[u8], existing: Option<u32>) -> u32 {
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
    pub(super) fn release_if_idle(&mut self, s: u32) {
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
    pub(super) fn schedule(&mut self, s: u32, mate_pos0: i64) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.due.push(mate_pos0, ticket, s);
        ticket
    }

    pub(super) fn waiting(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Prefetch where the name table's probe for `hash` starts.
    pub(super) fn prefetch_entry(&self, hash: u64) {
        prefetch(self.by_name.probe_address(hash));
    }

    /// Prefetch the slot (and its tickets) the name table nominates for `hash`, if any; the
    /// probe itself should be in cache by now ([`MateBook::prefetch_entry`]).
    pub(super) fn prefetch_slot(&self, hash: u64) {
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
    pub(super) fn prefetch_slot_data(&self, hash: u64) {
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
