//! Mate overlap (htslib's tweak_overlap_quality, docs/counting.md "Mate overlap").

use crate::cigar::{self, CigarOp, Segment};

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
pub(super) struct Block {
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
pub(super) fn tweak_overlap_quality(
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
