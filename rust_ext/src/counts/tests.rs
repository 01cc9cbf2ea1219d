//! Unit tests of the counters and the engine, through `GeneCounter` on SAM text.

use super::*;
use crate::{CoreError, CountResult, CounterConfig, GeneCounter};

const WS: i64 = 100;

/// Insertions as (anchor, bases, forward, reverse) tuples, for short asserts.
fn insertion_tuples(result: &CountResult) -> Vec<(i64, String, u64, u64)> {
    let row = |i: &InsertionCount| (i.anchor, i.bases.clone(), i.forward, i.reverse);
    result.insertions.iter().map(row).collect()
}

/// Deletions as (anchor, length, forward, reverse) tuples, for short asserts.
fn deletion_tuples(result: &CountResult) -> Vec<(i64, u32, u64, u64)> {
    let row = |d: &DeletionCount| (d.anchor, d.length, d.forward, d.reverse);
    result.deletions.iter().map(row).collect()
}

/// Junctions as (start, end, orientation, xs, fragments, max_anchor) tuples, for short asserts.
fn junction_tuples(result: &CountResult) -> Vec<(i64, i64, u8, u8, u64, u64)> {
    let row = |j: &JunctionCount| {
        (
            j.start,
            j.end,
            j.orientation,
            j.xs,
            j.fragments,
            j.max_anchor,
        )
    };
    result.junctions.iter().map(row).collect()
}

/// Window [100, 200) on chr22; exons [110,130) [150,170) [180,190).
fn config() -> CounterConfig {
    CounterConfig::new("chr22", WS, 200, vec![(110, 130), (150, 170), (180, 190)])
}

/// A SAM line; `pos0` is 0-based (POS = pos0 + 1), `pnext0` likewise (-1 → PNEXT 0).
#[allow(clippy::too_many_arguments)]
fn sam(
    name: &str,
    flag: u16,
    pos0: i64,
    cigar: &str,
    pnext0: i64,
    seq: &str,
    qual: &str,
    tags: &str,
) -> String {
    let rnext = if pnext0 >= 0 { "=" } else { "*" };
    format!(
        "{name}\t{flag}\tchr22\t{}\t60\t{cigar}\t{rnext}\t{}\t0\t{seq}\t{qual}{tags}\n",
        pos0 + 1,
        pnext0 + 1
    )
}

/// An unpaired forward read with quality 40 everywhere.
fn single(name: &str, pos0: i64, cigar: &str, seq: &str) -> String {
    sam(name, 0, pos0, cigar, -1, seq, &"I".repeat(seq.len()), "")
}

fn run_with(config: CounterConfig, lines: &[String]) -> CountResult {
    let mut counter = GeneCounter::new(config).unwrap();
    counter.add_sam(lines.concat().as_bytes()).unwrap();
    counter.finish().unwrap()
}

fn run(lines: &[String]) -> CountResult {
    run_with(config(), lines)
}

fn column(key: &str) -> usize {
    BASE_COUNT_KEYS.iter().position(|k| *k == key).unwrap()
}

/// Count of `key` at 0-based reference position `pos`.
fn at(result: &CountResult, key: &str, pos: i64) -> u32 {
    result.base_counts[column(key)][(pos - WS) as usize]
}

fn total_bases(result: &CountResult) -> u64 {
    (0..100).map(|i| result.depth(i)).sum()
}

fn filter(result: &CountResult, key: &str) -> u64 {
    result.filters[FILTER_KEYS.iter().position(|k| *k == key).unwrap()]
}

#[test]
fn keeper_hash_test_vectors() {
    assert_eq!(x31_hash(b"p1"), 3521);
    assert_eq!(wang_hash(3521), 4_200_519_944);
    assert!(!first_mate_keeps(b"p1"));
    assert!(!first_mate_keeps(b"p2"));
    assert!(first_mate_keeps(b"p3"));
    assert!(first_mate_keeps(b"r1"));
}

#[test]
fn resolve_overlap_rules() {
    assert_eq!(resolve_overlap(30, 20, true, true), (50, 0));
    assert_eq!(resolve_overlap(30, 20, true, false), (0, 50));
    assert_eq!(resolve_overlap(150, 120, true, true), (200, 0));
    assert_eq!(resolve_overlap(255, 255, true, false), (0, 200));
    assert_eq!(resolve_overlap(30, 20, false, false), (24, 0));
    assert_eq!(resolve_overlap(20, 30, false, true), (0, 24));
    assert_eq!(resolve_overlap(25, 25, false, true), (20, 0));
    assert_eq!(resolve_overlap(25, 25, false, false), (0, 20));
    assert_eq!(resolve_overlap(255, 0, false, false), (204, 0));
    assert_eq!(resolve_overlap(5, 5, false, true), (4, 0));
}

#[test]
fn counts_letters_by_strand_and_quality() {
    let r = run(&[
        single("r1", 100, "6M", "ACGTnr"),
        sam("r2", 16, 100, "4M", -1, "acgt", "II#I", ""),
    ]);
    assert_eq!(at(&r, "A_fwd", 100), 1);
    assert_eq!(at(&r, "A_rev", 100), 1);
    assert_eq!(at(&r, "C_fwd", 101), 1);
    assert_eq!(at(&r, "C_rev", 101), 1);
    assert_eq!(at(&r, "G_fwd", 102), 1);
    assert_eq!(at(&r, "G_rev", 102), 0, "quality 2 < 13");
    assert_eq!(at(&r, "T_rev", 103), 1);
    assert_eq!(at(&r, "N_fwd", 104), 1);
    assert_eq!(at(&r, "N_fwd", 105), 1, "R counts as N");
    assert_eq!(total_bases(&r), 9);
    assert_eq!(filter(&r, "records"), 2);
    assert_eq!(filter(&r, "used"), 2);
    assert_eq!(
        r.base_counts.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![100; 12]
    );
}

#[test]
fn sequence_match_and_mismatch_ops_count_like_m() {
    let plain = run(&[single("r", 100, "4M", "ACGT")]);
    let typed = run(&[single("r", 100, "2=1X1M", "ACGT")]);
    assert_eq!(plain.base_counts, typed.base_counts);
}

#[test]
fn zero_length_ops_are_ignored() {
    let plain = run(&[single("r", 100, "2M2I2M", "ACTTGT")]);
    let zeros = run(&[single("r", 100, "0S2M0D2I0N2M0H", "ACTTGT")]);
    assert_eq!(plain, zeros);
    assert_eq!(
        insertion_tuples(&plain),
        vec![(101, "TT".to_string(), 1, 0)]
    );
}

#[test]
fn clips_consume_query_not_reference() {
    let r = run(&[single("r", 100, "3H2S3M2H", "TTACG")]);
    assert_eq!(at(&r, "A_fwd", 100), 1);
    assert_eq!(at(&r, "C_fwd", 101), 1);
    assert_eq!(at(&r, "G_fwd", 102), 1);
    assert_eq!(total_bases(&r), 3);
}

#[test]
fn reads_clipped_to_the_window() {
    let r = run(&[
        single("before", 95, "10M", "CCCCCAAAAA"),
        single("after", 195, "10M", "GGGGGTTTTT"),
    ]);
    assert_eq!(at(&r, "A_fwd", 100), 1);
    assert_eq!(at(&r, "A_fwd", 104), 1);
    assert_eq!(at(&r, "G_fwd", 195), 1);
    assert_eq!(at(&r, "G_fwd", 199), 1);
    assert_eq!(total_bases(&r), 10);
    // Entirely outside: off target.
    let r = run(&[
        single("left", 80, "20M", &"A".repeat(20)),
        single("right", 200, "5M", "AAAAA"),
    ]);
    assert_eq!(filter(&r, "off_target"), 2);
    assert_eq!(total_bases(&r), 0);
}

#[test]
fn star_seq_counts_coverage_but_nothing_per_position() {
    let r = run(&[sam("r", 0, 112, "2M1D2M1I2M", -1, "*", "*", "")]);
    assert_eq!(total_bases(&r), 0);
    assert!(r.insertions.is_empty());
    assert!(r.deletions.is_empty());
    assert_eq!(r.exon_fragments, vec![1, 0, 0]);
    assert_eq!(r.fragments, 1);
}

#[test]
fn star_qual_is_quality_255() {
    let r = run(&[sam("r", 0, 100, "2M", -1, "AC", "*", "")]);
    assert_eq!(total_bases(&r), 2);
    let mut strict = config();
    strict.min_baseq = 256;
    let r = run_with(strict, &[sam("r", 0, 100, "2M", -1, "AC", "*", "")]);
    assert_eq!(total_bases(&r), 0);
}

#[test]
fn empty_batches_count_nothing() {
    let mut counter = GeneCounter::new(config()).unwrap();
    counter.add_sam(b"").unwrap();
    counter.add_sam(b"\n\r\n").unwrap();
    let r = counter.finish().unwrap();
    assert_eq!(r.filters, [0; 10]);
    assert_eq!(total_bases(&r), 0);
    assert_eq!(r.exon_fragments, vec![0, 0, 0]);
    assert_eq!(r.intron_counts, vec![IntronCount::default(); 2]);
}

#[test]
fn insertions_follow_aligned_ops_only() {
    let r = run(&[
        single("outside", 97, "2M2I2M", "ACTTGT"),
        single("m", 100, "2M2I2M", "ACttGT"),
        single("start", 100, "2I4M", "TTACGT"),
        single("softclip", 100, "1S2I4M", "GTTACGT"),
        single("afterdel", 100, "2M1D2I2M", "ACTTGT"),
        single("afterskip", 100, "2M5N2I2M", "ACTTGT"),
        sam("lowanchor", 0, 100, "2M2I2M", -1, "ACTTGT", "I#IIII", ""),
    ]);
    assert_eq!(insertion_tuples(&r), vec![(101, "TT".to_string(), 1, 0)]);
}

#[test]
fn insertion_anchor_quality_decides_not_inserted_quality() {
    let r = run(&[sam("r", 16, 100, "2M2I2M", -1, "ACTTGT", "II##II", "")]);
    assert_eq!(insertion_tuples(&r), vec![(101, "TT".to_string(), 0, 1)]);
}

#[test]
fn deletions_per_position_and_as_events() {
    let r = run(&[sam("r", 16, 100, "2M3D2M", -1, "ACGT", "####", "")]);
    for pos in 102..105 {
        assert_eq!(at(&r, "del_rev", pos), 1, "no quality filter on deletions");
    }
    assert_eq!(at(&r, "del_rev", 105), 0);
    assert_eq!(deletion_tuples(&r), vec![(101, 3, 0, 1)]);
    assert_eq!(r.depth(2), 1);
}

#[test]
fn deletions_at_the_window_edges() {
    let r = run(&[
        single("out_left", 95, "4M1D5M", "AAAAAAAAA"), // deleted base 99, anchor 98
        single("in_left", 95, "5M1D4M", "AAAAAAAAA"),  // deleted base 100, anchor 99
        single("in_right", 190, "9M2D2M", &"A".repeat(11)), // deleted 199..201, anchor 198
        single("anchor_right", 190, "10M2D2M", &"A".repeat(12)), // deleted 200, anchor 199
    ]);
    assert_eq!(
        deletion_tuples(&r),
        vec![(99, 1, 1, 0), (198, 2, 1, 0), (199, 2, 1, 0)]
    );
    assert_eq!(at(&r, "del_fwd", 100), 1);
    assert_eq!(at(&r, "del_fwd", 199), 1);
    assert_eq!(filter(&r, "used"), 4);
}

#[test]
fn junctions_may_leave_the_window() {
    let r = run(&[
        single("j", 180, "10M1000N10M", &"A".repeat(20)),
        single("short", 185, "5M1000N5M", &"A".repeat(10)),
    ]);
    assert_eq!(junction_tuples(&r), vec![(190, 1190, 0, 0, 1, 10)]);
    assert_eq!(total_bases(&r), 15);
}

/// A proper pair: "a" forward read 1 at `a_pos0`, "b" reverse read 2 at `b_pos0`.
fn pair(name: &str, a: (i64, &str, &str, &str), b: (i64, &str, &str, &str)) -> [String; 2] {
    [
        sam(name, 99, a.0, a.1, b.0, a.2, a.3, ""),
        sam(name, 147, b.0, b.1, a.0, b.2, b.3, ""),
    ]
}

#[test]
fn overlap_same_letter_keeper_by_hash() {
    // Overlap at 102..104: a has G T, b has G T. Quality 20 each.
    for (name, a_keeps) in [("p1", false), ("p2", false), ("p3", true)] {
        let r = run(&pair(
            name,
            (100, "4M", "ACGT", "5555"),
            (102, "4M", "GTAA", "5555"),
        ));
        assert_eq!(at(&r, "G_fwd", 102), u32::from(a_keeps), "{name}");
        assert_eq!(at(&r, "G_rev", 102), u32::from(!a_keeps), "{name}");
        assert_eq!(at(&r, "T_fwd", 103), u32::from(a_keeps), "{name}");
        assert_eq!(at(&r, "T_rev", 103), u32::from(!a_keeps), "{name}");
        assert_eq!(total_bases(&r), 6, "{name}");
    }
}

#[test]
fn overlap_keeps_sum_even_if_each_is_low() {
    // 10 + 10 = 20 >= 13 for the keeper.
    let r = run(&pair(
        "p1",
        (100, "2M", "AC", "++"),
        (100, "2M", "AC", "++"),
    ));
    assert_eq!(at(&r, "A_rev", 100), 1);
    assert_eq!(at(&r, "A_fwd", 100), 0);
    assert_eq!(total_bases(&r), 2);
}

#[test]
fn reads_that_cannot_overlap_their_mate_are_counted_at_once() {
    // htslib's overlap_push gate: |TLEN| >= 2 * len(SEQ) and the mate (PNEXT) starts at or
    // after this read's end mean no overlap is possible, so "a" is counted at once and waits
    // only as a placeholder. Here "a" says so although "b" does overlap it (its PNEXT lies):
    // nothing is adjusted, both count.
    let line = |name: &str, flag: u16, pos0: i64, pnext0: i64, tlen: i32| {
        format!(
            "{name}\t{flag}\tchr22\t{}\t60\t4M\t=\t{}\t{tlen}\tACGT\tIIII\n",
            pos0 + 1,
            pnext0 + 1
        )
    };
    let total = |a_pnext0: i64, tlen: i32| {
        total_bases(&run(&[
            line("p1", 99, 100, a_pnext0, tlen),
            line("p1", 147, 102, 100, -tlen),
        ]))
    };
    // a ends at 104; b's bases at 102 and 103 are seen by both.
    assert_eq!(total(104, 8), 8, "gate holds: no adjustment");
    assert_eq!(total(104, -8), 8, "|TLEN| counts, whatever its sign");
    assert_eq!(
        total(104, 7),
        6,
        "TLEN < 2 * len(SEQ): a waits, overlap adjusted"
    );
    assert_eq!(
        total(103, 8),
        6,
        "mate starts inside a: a waits, overlap adjusted"
    );

    // The placeholder still pairs: a supplementary "s" takes it (nothing to adjust), so the
    // mate "b" finds nothing waiting and is not adjusted against "s" either.
    let r = run(&[
        line("p1", 99, 100, 110, 14),
        line("p1", 0x800 | 0x40 | 0x20 | 0x3, 104, 110, 0),
        line("p1", 147, 106, 100, -14),
    ]);
    assert_eq!(
        total_bases(&r),
        12,
        "s and b overlap at 106 and 107; both count"
    );
}

#[test]
fn a_read_stored_while_its_fragment_waits_keeps_both() {
    // "a": primary read 1 of a pair that is not proper: its fragment waits, its read does
    // not. "s": a proper supplementary with the same name, which waits as a read in the same
    // slot (stored after the fragment). "b": the mate, which pairs with "s" (overlap at 152
    // and 153, same letters: counted once) and joins "a"'s fragment.
    let line = |flag: u16, pos0: i64, cigar: &str, pnext0: i64, seq: &str| {
        sam(
            "p1",
            flag,
            pos0,
            cigar,
            pnext0,
            seq,
            &"I".repeat(seq.len()),
            "",
        )
    };
    let r = run(&[
        line(0x1 | 0x20 | 0x40, 110, "10M", 152, "ACGTACGTAC"),
        line(0x800 | 0x40 | 0x20 | 0x3, 150, "4M", 152, "ACGT"),
        line(0x1 | 0x2 | 0x10 | 0x80, 152, "4M", 110, "GTAA"),
    ]);
    assert_eq!(total_bases(&r), 10 + 4 + 4 - 2);
    assert_eq!(r.fragments, 1);
    assert_eq!(r.exon_fragments, vec![1, 1, 0]);
}

#[test]
fn overlap_different_letters() {
    // Equal qualities: keeper gets floor(0.8 * 20) = 16 >= 13.
    let r = run(&pair("p1", (100, "1M", "G", "5"), (100, "1M", "C", "5")));
    assert_eq!((at(&r, "G_fwd", 100), at(&r, "C_rev", 100)), (0, 1));
    let r = run(&pair("p3", (100, "1M", "G", "5"), (100, "1M", "C", "5")));
    assert_eq!((at(&r, "G_fwd", 100), at(&r, "C_rev", 100)), (1, 0));
    // Higher quality wins whatever the hash: a 30 > b 20.
    let r = run(&pair("p1", (100, "1M", "G", "?"), (100, "1M", "C", "5")));
    assert_eq!((at(&r, "G_fwd", 100), at(&r, "C_rev", 100)), (1, 0));
    // 15 vs 10: winner drops to 12 < 13, so neither counts.
    let r = run(&pair("p1", (100, "1M", "G", "0"), (100, "1M", "C", "+")));
    assert_eq!(r.depth(0), 0);
}

#[test]
fn overlap_off_counts_both() {
    let mut cfg = config();
    cfg.dedup_overlaps = false;
    let r = run_with(
        cfg,
        &pair(
            "p1",
            (100, "4M", "ACGT", "5555"),
            (102, "4M", "GTAA", "5555"),
        ),
    );
    assert_eq!(at(&r, "G_fwd", 102), 1);
    assert_eq!(at(&r, "G_rev", 102), 1);
    assert_eq!(total_bases(&r), 8);
}

#[test]
fn overlap_deletions_count_once() {
    let r = run(&pair(
        "p1",
        (100, "2M2D4M", "ACGTAC", "IIIIII"),
        (100, "2M2D4M", "ACGTAC", "IIIIII"),
    ));
    assert_eq!((at(&r, "del_fwd", 102), at(&r, "del_rev", 102)), (1, 0));
    assert_eq!((at(&r, "del_fwd", 103), at(&r, "del_rev", 103)), (1, 0));
    assert_eq!(deletion_tuples(&r), vec![(101, 2, 1, 0)]);
    // Different deletions: b's positions outside a's deletion and b's event still count.
    let r = run(&pair(
        "p1",
        (100, "2M2D4M", "ACGTAC", "IIIIII"),
        (100, "2M3D3M", "ACGTA", "IIIII"),
    ));
    assert_eq!((at(&r, "del_fwd", 104), at(&r, "del_rev", 104)), (0, 1));
    assert_eq!((at(&r, "del_fwd", 103), at(&r, "del_rev", 103)), (1, 0));
    assert_eq!(deletion_tuples(&r), vec![(101, 2, 1, 0), (101, 3, 0, 1)]);
}

#[test]
fn overlap_base_against_deletion_is_unadjusted() {
    let r = run(&pair(
        "p1",
        (100, "1M1D1M", "AC", "II"),
        (100, "3M", "AGC", "II5"),
    ));
    assert_eq!(at(&r, "del_fwd", 101), 1);
    assert_eq!(at(&r, "G_rev", 101), 1);
    assert_eq!(r.depth(1), 2);
}

#[test]
fn overlap_insertion_counts_from_keeper_only() {
    let r = run(&pair(
        "p1",
        (100, "2M2I2M", "ACTTGT", "IIIIII"),
        (100, "2M2I2M", "ACTTGT", "IIIIII"),
    ));
    assert_eq!(insertion_tuples(&r), vec![(101, "TT".to_string(), 0, 1)]);
}

#[test]
fn mates_wait_only_when_proper_and_ahead() {
    // Not proper (flag 97/145): no adjustment, both count; still one fragment.
    let lines = [
        sam("p1", 97, 100, "2M", 100, "AC", "II", ""),
        sam("p1", 145, 100, "2M", 100, "AC", "II", ""),
    ];
    let r = run(&lines);
    assert_eq!(total_bases(&r), 4);
    assert_eq!(r.fragments, 1);
    // Mate unmapped (0x8): no waiting at all: two fragments.
    let lines = [
        sam("p1", 0x1 | 0x2 | 0x8, 100, "2M", 100, "AC", "II", ""),
        sam("p1", 0x1 | 0x2 | 0x8, 100, "2M", 100, "AC", "II", ""),
    ];
    let r = run(&lines);
    assert_eq!(total_bases(&r), 4);
    assert_eq!(r.fragments, 2);
}

#[test]
fn unpaired_waiting_record_is_flushed_when_passed() {
    let mut counter = GeneCounter::new(config()).unwrap();
    counter
        .add_sam(sam("p1", 99, 100, "4M", 150, "ACGT", "IIII", "").as_bytes())
        .unwrap();
    assert_eq!(counter.waiting(), 1);
    // Mate position 150 not yet passed.
    counter
        .add_sam(single("x", 150, "2M", "AA").as_bytes())
        .unwrap();
    assert_eq!(counter.waiting(), 1);
    // A filtered record on the contig past 150 still proves the mate cannot come.
    counter
        .add_sam(sam("y", 0x400, 151, "2M", -1, "AA", "II", "").as_bytes())
        .unwrap();
    assert_eq!(counter.waiting(), 0);
    let r = counter.finish().unwrap();
    assert_eq!(at(&r, "A_fwd", 100), 1);
    assert_eq!(r.fragments, 2);
}

#[test]
fn waiting_stays_bounded_by_depth() {
    let mut counter = GeneCounter::new(config()).unwrap();
    let mut peak = 0;
    for i in 0..2000i64 {
        let pos0 = 100 + i / 40;
        // Mates that never arrive, 5 bp ahead.
        let line = sam(
            &format!("r{i}"),
            99,
            pos0,
            "4M",
            pos0 + 5,
            "ACGT",
            "IIII",
            "",
        );
        counter.add_sam(line.as_bytes()).unwrap();
        peak = peak.max(counter.waiting());
    }
    assert!(peak <= 40 * 7, "peak {peak}");
    let r = counter.finish().unwrap();
    assert_eq!(r.fragments, 2000);
}

#[test]
fn third_record_with_same_name_may_wait_again() {
    let r = run(&[
        sam("p1", 99, 100, "2M", 100, "AC", "II", ""),
        sam("p1", 147, 100, "2M", 100, "AC", "II", ""),
        sam("p1", 99, 101, "2M", 101, "CG", "II", ""),
        sam("p1", 147, 101, "2M", 101, "CG", "II", ""),
    ]);
    // Two pairs, each overlap-adjusted: one base per position per pair.
    assert_eq!(r.depth(0), 1);
    assert_eq!(r.depth(1), 2);
    assert_eq!(r.depth(2), 1);
    assert_eq!(r.fragments, 2);
}

#[test]
fn unsorted_records_are_an_error() {
    let mut counter = GeneCounter::new(config()).unwrap();
    counter
        .add_sam(single("a", 150, "2M", "AA").as_bytes())
        .unwrap();
    // Another contig does not matter.
    counter
        .add_sam(b"o\t0\tchr1\t5\t60\t2M\t*\t0\t0\tAA\tII\n")
        .unwrap();
    let err = counter
        .add_sam(single("b", 120, "2M", "AA").as_bytes())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "record 3 (read 'b'): records are not sorted by position (POS 121 after POS 151)"
    );
    assert_eq!(counter.add_sam(b""), Err(CoreError::Unusable));
    assert!(matches!(counter.finish(), Err(CoreError::Unusable)));
}

#[test]
fn malformed_lines_are_errors_with_location() {
    let good = single("ok", 100, "2M", "AA");
    let cases = [
        (
            "r\t0\tchr22\t101\t60\t2M\t*\t0\t0\tAA",
            "expected at least 11",
        ),
        (
            "r\t0\tchr22\t101\t60\t2Q\t*\t0\t0\tAA\tII",
            "unknown CIGAR op 'Q'",
        ),
        (
            "r\t0\tchr22\t101\t60\t3M\t*\t0\t0\tAA\tII",
            "CIGAR query length 3 != SEQ length 2",
        ),
        (
            "r\t0\tchr22\t101\t60\t2M\t*\t0\t0\tAA\tI",
            "QUAL length 1 != SEQ length 2",
        ),
        ("r\t0\tchr22\t0\t60\t2M\t*\t0\t0\tAA\tII", "POS is 0"),
        ("r\t0\tchr22\tx\t60\t2M\t*\t0\t0\tAA\tII", "POS 'x'"),
        ("@SQ\tSN:chr22\tLN:100", "header line"),
        ("r\t0\tchr22\t101\t60\t2M\t*\t0\tA\tAA\tII", "TLEN 'A'"),
        ("r\t0\tchr22\t101\t60\tM\t*\t0\t0\tAA\tII", "no length"),
    ];
    for (line, want) in cases {
        let mut counter = GeneCounter::new(config()).unwrap();
        let text = format!("{good}{line}\n");
        let err = counter.add_sam(text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("record 2 ("), "{err}");
        assert!(err.contains(want), "{err} lacks {want}");
    }
}

#[test]
fn invalid_config_is_an_error() {
    let bad = |f: fn(&mut CounterConfig)| {
        let mut cfg = config();
        f(&mut cfg);
        GeneCounter::new(cfg).err().map(|e| e.to_string())
    };
    assert!(bad(|c| c.window_end = c.window_start)
        .unwrap()
        .contains("invalid window"));
    assert!(bad(|c| c.window_start = -5)
        .unwrap()
        .contains("invalid window"));
    assert!(bad(|c| c.exons = vec![(10, 10)])
        .unwrap()
        .contains("exon 0"));
    assert!(bad(|c| c.exons = vec![(10, 20), (15, 30)])
        .unwrap()
        .contains("exon 1"));
    assert!(bad(|c| c.exons = vec![(30, 40), (10, 20)])
        .unwrap()
        .contains("sorted"));
    assert!(
        bad(|c| c.exons = vec![(10, 20), (20, 30)]).is_none(),
        "abutting is allowed"
    );
    assert!(bad(|c| c.exons.clear()).is_none());
}

#[test]
fn filter_order_and_counters() {
    let mut cfg = config();
    cfg.exclude_flags = 0x704 | 0x800;
    let line = |name: &str, flag: u16, rname: &str, pos: i64, mapq: u8, cigar: &str| {
        format!("{name}\t{flag}\t{rname}\t{pos}\t{mapq}\t{cigar}\t*\t0\t0\tAA\tII\n")
    };
    let lines = [
        line("u1", 0x4, "chr22", 101, 60, "2M"),
        line("u2", 0, "chr22", 101, 60, "*"),
        line("u3", 0, "*", 0, 60, "2M"),
        line("u4", 0x4 | 0x100, "chr22", 101, 60, "2M"),
        line("s1", 0x100 | 0x400, "chr22", 101, 60, "2M"),
        line("q1", 0x200 | 0x400, "chr22", 101, 60, "2M"),
        line("d1", 0x400, "chr22", 101, 0, "2M"),
        line("o1", 0x800, "chr22", 101, 60, "2M"),
        line("m1", 0, "chr22", 101, 19, "2M"),
        line("t1", 0, "chr1", 101, 60, "2M"),
        line("t2", 0, "chr22", 1, 60, "2M"),
        line("ok", 0, "chr22", 101, 20, "2M"),
        line("ok255", 0, "chr22", 101, 255, "2M"),
    ];
    let mut counter = GeneCounter::new(cfg).unwrap();
    // t2 at POS 1 after POS 101 would be unsorted: feed it first.
    counter.add_sam(lines[10].as_bytes()).unwrap();
    for (i, l) in lines.iter().enumerate() {
        if i != 10 {
            counter.add_sam(l.as_bytes()).unwrap();
        }
    }
    let r = counter.finish().unwrap();
    assert_eq!(r.filters, [13, 4, 1, 1, 1, 1, 1, 2, 2, 0]);
}

#[test]
fn supplementary_counts_per_position_not_per_fragment() {
    let r = run(&[
        single("r", 112, "4M", "ACGT"),
        sam("r", 0x800, 114, "4M", -1, "GTAA", "IIII", ""),
    ]);
    assert_eq!(filter(&r, "used"), 2);
    assert_eq!(filter(&r, "used_supplementary"), 1);
    assert_eq!(total_bases(&r), 8);
    assert_eq!(r.fragments, 1);
    assert_eq!(r.exon_fragments, vec![1, 0, 0]);
}

#[test]
fn fragments_count_each_feature_once() {
    // Both mates in exon 0, b also reaches exon 1 through a junction.
    let r = run(&[
        sam(
            "f",
            99,
            112,
            "10M",
            115,
            &"A".repeat(10),
            &"I".repeat(10),
            "",
        ),
        sam(
            "f",
            147,
            115,
            "15M20N10M",
            112,
            &"A".repeat(25),
            &"I".repeat(25),
            "",
        ),
    ]);
    assert_eq!(r.fragments, 1);
    assert_eq!(r.gene_fragments, 1);
    assert_eq!(r.exon_fragments, vec![1, 1, 0]);
    assert_eq!(r.strand_evidence, [1, 0]);
    assert_eq!(junction_tuples(&r), vec![(130, 150, 0, 0, 1, 10)]);
    assert_eq!(r.intron_counts[0], IntronCount::default());
}

#[test]
fn orientation_follows_read1_forward() {
    assert_eq!(orientation(0), 0);
    assert_eq!(orientation(16), 1);
    assert_eq!(orientation(99), 0); // read 1 forward
    assert_eq!(orientation(147), 0); // read 2 reverse
    assert_eq!(orientation(163), 1); // read 2 forward
    assert_eq!(orientation(83), 1); // read 1 reverse
    assert_eq!(orientation(0x80), 0); // READ2 without PAIRED: unpaired forward
    let r = run(&[
        sam("a", 163, 112, "4M", 160, "ACGT", "IIII", ""),
        sam("a", 83, 160, "4M", 112, "ACGT", "IIII", ""),
    ]);
    assert_eq!(r.strand_evidence, [0, 1]);
    assert_eq!(r.exon_fragments, vec![1, 1, 0]);
}

#[test]
fn junction_keys_take_first_orientation_and_first_xs() {
    let read = "A".repeat(20);
    let qual = "I".repeat(20);
    let r = run(&[
        sam("f3", 0, 118, "12M20N8M", -1, &read, &qual, "\tXS:A:-"),
        sam("f4", 16, 118, "12M20N8M", -1, &read, &qual, "\tXS:A:-"),
        sam("f1", 99, 120, "10M20N10M", 170, &read, &qual, ""),
        sam("f2", 0, 121, "9M20N11M", -1, &read, &qual, "\tXS:A:+"),
        sam("f1", 147, 170, "20M", 120, &read, &qual, "\tXS:A:-"),
    ]);
    assert_eq!(
        junction_tuples(&r),
        vec![
            (130, 150, 0, 1, 1, 9),
            (130, 150, 0, 2, 2, 10),
            (130, 150, 1, 2, 1, 8),
        ]
    );
}

#[test]
fn junction_supported_by_either_mate_counts_once_with_max_anchor() {
    let read = "A".repeat(30);
    let qual = "I".repeat(30);
    let r = run(&[
        sam("f", 99, 120, "10M20N20M", 121, &read, &qual, ""),
        sam("f", 147, 121, "9M20N21M", 120, &read, &qual, ""),
    ]);
    assert_eq!(junction_tuples(&r), vec![(130, 150, 0, 0, 1, 10)]);
}

#[test]
fn intron_boundaries_and_inside() {
    let r = run(&[
        single("spliced", 122, "8M20N8M", &"A".repeat(16)),
        single("left", 125, "10M", &"A".repeat(10)),
        single("delacross", 125, "5M2D5M", &"A".repeat(10)),
        single("both", 128, "25M", &"A".repeat(25)),
        single("inside", 135, "5M", &"A".repeat(5)),
        single("right", 145, "10M", &"A".repeat(10)),
    ]);
    // delacross: M at 129, D at 130..132: no left boundary; M at 132..137 inside.
    assert_eq!(
        r.intron_counts[0],
        IntronCount {
            left_boundary: 2,
            right_boundary: 2,
            inside: 5
        }
    );
    assert_eq!(r.intron_counts[1], IntronCount::default());
}

#[test]
fn abutting_exons_have_an_empty_intron() {
    let cfg = CounterConfig::new("chr22", WS, 200, vec![(110, 130), (130, 150)]);
    let r = run_with(cfg, &[single("r", 120, "20M", &"A".repeat(20))]);
    assert_eq!(r.intron_counts, vec![IntronCount::default()]);
    assert_eq!(r.exon_fragments, vec![1, 1]);
}

#[test]
fn exon_inside_a_deletion_is_not_touched() {
    let cfg = CounterConfig::new("chr22", WS, 200, vec![(110, 115), (130, 140)]);
    let r = run_with(cfg, &[single("r", 100, "5M20D5M", &"A".repeat(10))]);
    assert_eq!(r.exon_fragments, vec![0, 0]);
    assert_eq!(r.gene_fragments, 0);
    assert_eq!(r.fragments, 1);
}

#[test]
fn fragment_join_ignores_proper_pair_and_flushes_lonely_mates() {
    let r = run(&[
        // Not proper, still joined: one fragment.
        sam("f", 97, 112, "4M", 152, "ACGT", "IIII", ""),
        // Mate position 120 passed without the mate: counted alone.
        sam("g", 97, 113, "4M", 120, "ACGT", "IIII", ""),
        sam("f", 145, 152, "4M", 112, "ACGT", "IIII", ""),
    ]);
    assert_eq!(r.fragments, 2);
    assert_eq!(r.exon_fragments, vec![2, 1, 0]);
}

#[test]
fn junctions_sort_by_start_end_orientation_then_xs() {
    let j = |start, end, orientation, xs, fragments| JunctionCount {
        start,
        end,
        orientation,
        xs,
        fragments,
        max_anchor: 1,
    };
    let mut junctions = [
        j(5, 9, 0, 0, 1),
        j(1, 9, 1, 1, 1),
        j(1, 9, 0, 2, 1),
        j(1, 8, 1, 0, 9),
    ];
    junctions.sort_unstable();
    let keys: Vec<_> = junctions
        .iter()
        .map(|j| (j.start, j.end, j.orientation, j.xs))
        .collect();
    assert_eq!(
        keys,
        [(1, 8, 1, 0), (1, 9, 0, 2), (1, 9, 1, 1), (5, 9, 0, 0)]
    );
}
