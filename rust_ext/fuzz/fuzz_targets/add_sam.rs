//! Fuzz `GeneCounter::add_sam` and `finish`: no input may panic, and an error must leave the
//! counter refusing further input instead of half-counting it.
//!
//! The input is mostly structured: SAM records that look valid (any CIGAR, positions near and
//! across the window, sequences and qualities of any length, FLAGs, mates, XS tags), rendered as
//! text, split into batches, with a few raw bytes spliced in. Some inputs are passed raw.

#![no_main]

use arbitrary::Arbitrary;
use cd22scan_core::{CoreError, CounterConfig, GeneCounter};
use libfuzzer_sys::fuzz_target;

const OPS: &[u8] = b"MIDNSHP=X";
const FLAGS: &[u16] = &[
    0, 16, 99, 147, 163, 83, 97, 145, 0x4, 0x100, 0x400, 0x800, 0x9,
];

#[derive(Arbitrary, Debug)]
struct Op {
    letter: u8,
    len: u16,
    huge: bool,
}

#[derive(Arbitrary, Debug)]
struct Record {
    name: u8,
    flag: u8,
    extra_flag: u16,
    step: u8,
    far: bool,
    mapq: u8,
    ops: Vec<Op>,
    star_cigar: bool,
    seq: Vec<u8>,
    seq_matches_cigar: bool,
    star_seq: bool,
    star_qual: bool,
    qual: Vec<u8>,
    mate: u8,
    pnext_delta: i16,
    tlen: i32,
    xs: u8,
    other_contig: bool,
    garbage: Option<(u8, Vec<u8>)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    raw: bool,
    bytes: Vec<u8>,
    dedup: bool,
    min_anchor: u8,
    window_len: u16,
    records: Vec<Record>,
    cuts: Vec<u16>,
}

fn cigar_text(record: &Record) -> (String, usize) {
    let mut text = String::new();
    let mut query = 0usize;
    for op in record.ops.iter().take(12) {
        let letter = OPS[usize::from(op.letter) % OPS.len()];
        let len = if op.huge {
            u32::from(op.len) * 40_000 // up to ~2.6e9: past every SAM limit
        } else {
            u32::from(op.len % 300)
        };
        text.push_str(&format!("{len}{}", char::from(letter)));
        if b"MIS=X".contains(&letter) {
            query += len as usize;
        }
    }
    (text, query)
}

fn render(record: &Record, pos1: &mut i64) -> Vec<u8> {
    *pos1 += i64::from(record.step % 40);
    if record.far {
        *pos1 += 5_000;
    }
    let (mut cigar, query) = cigar_text(record);
    if record.star_cigar || cigar.is_empty() {
        cigar = "*".into();
    }
    let seq: String = if record.star_seq {
        "*".into()
    } else if record.seq_matches_cigar && query <= 100_000 {
        (0..query)
            .map(|i| {
                let b = record
                    .seq
                    .get(i % record.seq.len().max(1))
                    .copied()
                    .unwrap_or(0);
                char::from(b"ACGTNacgtn=."[usize::from(b) % 12])
            })
            .collect()
    } else {
        record
            .seq
            .iter()
            .map(|&b| char::from(b"ACGTN"[usize::from(b) % 5]))
            .collect()
    };
    let seq = if seq.is_empty() { "*".to_string() } else { seq };
    let qual: String = if record.star_qual || seq == "*" {
        "*".into()
    } else {
        (0..seq.len())
            .map(|i| {
                let q = record
                    .qual
                    .get(i % record.qual.len().max(1))
                    .copied()
                    .unwrap_or(30);
                char::from(b'!' + q % 94)
            })
            .collect()
    };
    let flag = FLAGS[usize::from(record.flag) % FLAGS.len()] | (record.extra_flag & 0x0f00);
    let rname = if record.other_contig { "chr1" } else { "chr22" };
    let pnext = (*pos1 + i64::from(record.pnext_delta)).max(0);
    let (rnext, pnext) = match record.mate % 4 {
        0 => ("*", 0),
        1 => ("chr1", pnext),
        2 => ("chr22", pnext),
        _ => ("=", pnext),
    };
    let xs = ["", "\tXS:A:+", "\tXS:A:-", "\tNM:i:0\tXS:A:?"][usize::from(record.xs % 4)];
    let mut line = format!(
        "q{}\t{flag}\t{rname}\t{pos1}\t{}\t{cigar}\t{rnext}\t{pnext}\t{}\t{seq}\t{qual}{xs}\n",
        record.name % 16,
        record.mapq,
        record.tlen
    )
    .into_bytes();
    if let Some((at, bytes)) = &record.garbage {
        let at = usize::from(*at) % line.len();
        line.splice(at..at, bytes.iter().copied().take(8));
    }
    line
}

fn check(result: Result<(), CoreError>, failed: &mut bool) {
    match result {
        Ok(()) => assert!(!*failed, "a failed counter accepted more input"),
        Err(CoreError::Internal(message)) => panic!("internal error: {message}"),
        Err(_) => *failed = true,
    }
}

fuzz_target!(|input: Input| {
    let window_end = 100 + i64::from(input.window_len % 4000) + 1;
    let mut config = CounterConfig::new(
        "chr22",
        100,
        window_end,
        vec![(110, 130), (150, 170), (180, window_end.max(181))],
    );
    config.dedup_overlaps = input.dedup;
    config.min_anchor = u32::from(input.min_anchor % 20);
    let Ok(mut counter) = GeneCounter::new(config) else {
        return;
    };
    let mut failed = false;
    if input.raw {
        check(counter.add_sam(&input.bytes), &mut failed);
    } else {
        let mut text = Vec::new();
        let mut pos1 = 60i64;
        for record in input.records.iter().take(200) {
            text.extend(render(record, &mut pos1));
        }
        let mut cuts: Vec<usize> = input
            .cuts
            .iter()
            .take(6)
            .map(|&c| usize::from(c) % (text.len() + 1))
            .collect();
        cuts.push(0);
        cuts.push(text.len());
        cuts.sort_unstable();
        for pair in cuts.windows(2) {
            // Batches are whole lines in practice; a cut mid-line is fuzzed too.
            check(counter.add_sam(&text[pair[0]..pair[1]]), &mut failed);
        }
    }
    match counter.finish() {
        Ok(result) => {
            assert!(!failed, "a failed counter finished with counts");
            let len = (result.window_end - result.window_start) as usize;
            assert!(result.base_counts.iter().all(|column| column.len() == len));
        }
        Err(CoreError::Internal(message)) => panic!("internal error: {message}"),
        Err(_) => assert!(failed, "finish failed although every batch was accepted"),
    }
});
