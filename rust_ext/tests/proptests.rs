//! Property tests of the public API: no input makes the core panic, and the counts do not depend
//! on how the same lines are split into batches.

use cd22scan_core::{CountResult, CounterConfig, DeletionCount, GeneCounter, InsertionCount};
use proptest::prelude::*;

fn config(dedup_overlaps: bool) -> CounterConfig {
    let mut config =
        CounterConfig::new("chr22", 100, 200, vec![(110, 130), (150, 170), (180, 190)]);
    config.dedup_overlaps = dedup_overlaps;
    config
}

/// One random, valid SAM record; positions are filled in by [`lines`].
#[derive(Clone, Debug)]
struct Spec {
    name: u8,
    flag: u16,
    step: u8,
    mapq: u8,
    ops: Vec<(u8, u8)>,
    bases: Vec<u8>,
    quals: Vec<u8>,
    star_qual: bool,
    star_seq: bool,
    mate: u8,
    pnext_delta: i8,
    xs: u8,
}

const OPS: &[u8] = b"MMMMIDNSH=X";
/// Common FLAG values (proper pairs, improper pairs, singles); rare extra bits are added on top.
const FLAGS: &[u16] = &[
    0,
    16,
    99,
    147,
    163,
    83,
    97,
    145,
    0x1 | 0x2 | 0x8,
    0x1 | 0x40,
    0x80,
];
const RARE_BITS: &[u16] = &[0x100, 0x200, 0x400, 0x800, 0x4];

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            0u8..12,
            (0..FLAGS.len(), 0..RARE_BITS.len() * 8),
            prop_oneof![0u8..2, 0u8..4],
            prop_oneof![Just(60u8), 0u8..40],
        ),
        proptest::collection::vec((0..OPS.len() as u8, 0u8..25), 1..6),
        proptest::collection::vec(0u8..6, 160),
        proptest::collection::vec(0u8..45, 160),
        (any::<bool>(), 0u8..20, 0u8..8, -5i8..40, 0u8..4),
    )
        .prop_map(
            |(
                (name, flag, step, mapq),
                ops,
                bases,
                quals,
                (star, seq_roll, mate, pnext_delta, xs),
            )| {
                Spec {
                    name,
                    flag: FLAGS[flag.0] | RARE_BITS.get(flag.1).copied().unwrap_or(0),
                    step,
                    mapq,
                    ops,
                    bases,
                    quals,
                    star_qual: star && seq_roll < 3,
                    star_seq: seq_roll == 0,
                    mate,
                    pnext_delta,
                    xs,
                }
            },
        )
}

/// SAM lines sorted by position, starting before the window and running past it.
fn lines(specs: &[Spec]) -> Vec<String> {
    let mut pos1: i64 = 80;
    specs
        .iter()
        .map(|s| {
            pos1 += i64::from(s.step);
            let mut cigar = String::new();
            let mut query_len = 0usize;
            for &(op, len) in &s.ops {
                let letter = OPS[usize::from(op)];
                cigar.push_str(&format!("{len}{}", char::from(letter)));
                if b"MIS=X".contains(&letter) {
                    query_len += usize::from(len);
                }
            }
            let query_len = query_len.min(s.bases.len());
            // Keep CIGAR and SEQ consistent: trim by adding a final soft clip if needed.
            let seq: String = if s.star_seq || query_len == 0 {
                "*".into()
            } else {
                s.bases[..query_len]
                    .iter()
                    .map(|&b| char::from(b"ACGTNa"[usize::from(b)]))
                    .collect()
            };
            let qual: String = if seq == "*" || s.star_qual {
                "*".into()
            } else {
                s.quals[..query_len]
                    .iter()
                    .map(|&q| char::from(b'!' + q))
                    .collect()
            };
            let (rnext, pnext) = match s.mate {
                0 => ("*", 0),
                1 => ("chr1", 5),
                2 => ("chr22", (pos1 + i64::from(s.pnext_delta)).max(0)),
                _ => ("=", (pos1 + i64::from(s.pnext_delta)).max(0)),
            };
            let xs = ["", "\tXS:A:+", "\tXS:A:-", "\tNM:i:0\tXS:A:+"][usize::from(s.xs)];
            format!(
                "q{}\t{}\tchr22\t{pos1}\t{}\t{cigar}\t{rnext}\t{pnext}\t0\t{seq}\t{qual}{xs}\n",
                s.name, s.flag, s.mapq
            )
        })
        .filter(|line| {
            // Drop the rare spec whose SEQ would not match its CIGAR (query length over 160).
            let fields: Vec<&str> = line.split('\t').collect();
            let query: usize = parse_query_len(fields[5]);
            fields[9] == "*" || query == fields[9].len()
        })
        .collect()
}

fn parse_query_len(cigar: &str) -> usize {
    let mut total = 0;
    let mut n = 0;
    for c in cigar.chars() {
        if let Some(d) = c.to_digit(10) {
            n = n * 10 + d as usize;
        } else {
            if "MIS=X".contains(c) {
                total += n;
            }
            n = 0;
        }
    }
    total
}

fn count(config: CounterConfig, batches: &[String]) -> CountResult {
    let mut counter = GeneCounter::new(config).unwrap();
    for batch in batches {
        counter.add_sam(batch.as_bytes()).unwrap();
    }
    counter.finish().unwrap()
}

fn split(lines: &[String], cuts: &[usize]) -> Vec<String> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (lines.len() + 1)).collect();
    cuts.push(0);
    cuts.push(lines.len());
    cuts.sort_unstable();
    cuts.windows(2)
        .map(|w| lines[w[0]..w[1]].concat())
        .collect()
}

/// A line built from plausible and implausible SAM tokens.
fn soup_line() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"r1".to_vec()),
        Just(b"chr22".to_vec()),
        Just(b"=".to_vec()),
        Just(b"*".to_vec()),
        Just(b"0".to_vec()),
        Just(b"99".to_vec()),
        Just(b"147".to_vec()),
        Just(b"101".to_vec()),
        Just(b"4294967295".to_vec()),
        Just(b"-7".to_vec()),
        Just(b"4M".to_vec()),
        Just(b"2M1I1M".to_vec()),
        Just(b"1M3000000000N1M".to_vec()),
        Just(b"4294967295D".to_vec()),
        Just(b"2S2M".to_vec()),
        Just(b"ACGT".to_vec()),
        Just(b"IIII".to_vec()),
        Just(b"XS:A:+".to_vec()),
        Just(b"".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(token, 0..16).prop_map(|tokens| tokens.join(&b'\t'))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let mut counter = GeneCounter::new(config(true)).unwrap();
        let _ = counter.add_sam(&data);
        let _ = counter.finish();
    }

    #[test]
    fn token_soup_never_panics(
        batches in proptest::collection::vec(
            proptest::collection::vec(soup_line(), 0..12), 1..4),
        dedup in any::<bool>(),
    ) {
        let mut counter = GeneCounter::new(config(dedup)).unwrap();
        for batch in batches {
            let _ = counter.add_sam(&batch.join(&b'\n'));
        }
        let _ = counter.finish();
    }

    #[test]
    fn mutated_valid_lines_never_panic(
        specs in proptest::collection::vec(spec(), 1..60),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..20),
        dedup in any::<bool>(),
    ) {
        let mut text = lines(&specs).concat().into_bytes();
        let len = text.len();
        for (at, byte) in edits {
            // Bias towards bytes that matter to the parser.
            let byte = match byte % 8 {
                0 => b'\t',
                1 => b'\n',
                2 => b'0' + byte % 10,
                3 => b"MIDNSHP=X*"[usize::from(byte) % 10],
                _ => byte,
            };
            text[at % len] = byte;
        }
        let mut counter = GeneCounter::new(config(dedup)).unwrap();
        let _ = counter.add_sam(&text);
        let _ = counter.finish();
    }

    #[test]
    fn valid_records_count_without_error(specs in proptest::collection::vec(spec(), 0..120)) {
        let lines = lines(&specs);
        let result = count(config(true), &[lines.concat()]);
        prop_assert_eq!(result.filters[0], lines.len() as u64);
    }

    #[test]
    fn counts_do_not_depend_on_batch_splits(
        specs in proptest::collection::vec(spec(), 0..120),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        dedup in any::<bool>(),
    ) {
        let lines = lines(&specs);
        let whole = count(config(dedup), &[lines.concat()]);
        let pieces = count(config(dedup), &split(&lines, &cuts));
        prop_assert_eq!(whole, pieces);
    }

    /// Without overlap adjustment every record counts on its own: per-position counts and indel
    /// events are the sums over records counted one by one.
    #[test]
    fn per_position_counts_are_sums_of_records(specs in proptest::collection::vec(spec(), 0..60)) {
        let lines = lines(&specs);
        let together = count(config(false), &[lines.concat()]);
        let mut summed: [Vec<u64>; 12] = std::array::from_fn(|_| vec![0; 100]);
        let mut deletions = std::collections::BTreeMap::new();
        let mut insertions = std::collections::BTreeMap::new();
        for line in &lines {
            let alone = count(config(false), std::slice::from_ref(line));
            for (sum, column) in summed.iter_mut().zip(&alone.base_counts) {
                for (s, &c) in sum.iter_mut().zip(column) {
                    *s += u64::from(c);
                }
            }
            for d in alone.deletions {
                let e = deletions.entry((d.anchor, d.length)).or_insert((0, 0));
                e.0 += d.forward;
                e.1 += d.reverse;
            }
            for i in alone.insertions {
                let e = insertions.entry((i.anchor, i.bases)).or_insert((0, 0));
                e.0 += i.forward;
                e.1 += i.reverse;
            }
        }
        let together_counts: Vec<Vec<u64>> = together
            .base_counts
            .iter()
            .map(|c| c.iter().map(|&x| u64::from(x)).collect())
            .collect();
        prop_assert_eq!(together_counts, summed.to_vec());
        let deletions: Vec<_> = deletions
            .into_iter()
            .map(|((anchor, length), (forward, reverse))| DeletionCount {
                anchor,
                length,
                forward,
                reverse,
            })
            .collect();
        let insertions: Vec<_> = insertions
            .into_iter()
            .map(|((anchor, bases), (forward, reverse))| InsertionCount {
                anchor,
                bases,
                forward,
                reverse,
            })
            .collect();
        prop_assert_eq!(together.deletions, deletions);
        prop_assert_eq!(together.insertions, insertions);
    }
}

/// Arbitrary BAM fixed fields over a data block that is sometimes well-formed.
fn bam_record() -> impl Strategy<Value = (cd22scan_core::bam::BamCore, Vec<u8>)> {
    (
        (-2i64..400, -2i32..3, any::<u8>(), any::<u16>(), 0u16..40),
        (0u32..8, -2i32..200, -2i32..3, -2i64..400, any::<i64>()),
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::collection::vec((0u32..12, 0u32..60), 0..8),
        any::<bool>(),
    )
        .prop_map(
            |(
                (pos, tid, mapq, flag, l_qname),
                (n_cigar, l_qseq, mtid, mpos, isize),
                mut data,
                ops,
                structured,
            )| {
                let mut core = cd22scan_core::bam::BamCore {
                    pos,
                    tid,
                    mapq,
                    l_extranul: 0,
                    flag,
                    l_qname,
                    n_cigar,
                    l_qseq,
                    mtid,
                    mpos,
                    isize,
                };
                if structured {
                    // A plausible record: name, the ops given, as many bases as they consume.
                    let mut block = b"q1\0\0".to_vec();
                    let query: u32 = ops
                        .iter()
                        .filter(|(code, _)| matches!(code, 0 | 1 | 4 | 7 | 8))
                        .map(|(_, len)| len)
                        .sum();
                    for (code, len) in &ops {
                        block.extend((len << 4 | code).to_le_bytes());
                    }
                    block.extend(data.iter().take(query.div_ceil(2) as usize));
                    block.resize(4 + ops.len() * 4 + query.div_ceil(2) as usize, 0x11);
                    block.extend(data.iter().rev().take(query as usize).map(|q| q % 50));
                    block.resize(
                        4 + ops.len() * 4 + query.div_ceil(2) as usize + query as usize,
                        30,
                    );
                    core.l_qname = 4;
                    core.l_extranul = 1;
                    core.n_cigar = ops.len() as u32;
                    core.l_qseq = query as i32;
                    data = block;
                }
                (core, data)
            },
        )
}

proptest! {
    #[test]
    fn arbitrary_bam_records_never_panic(
        records in proptest::collection::vec(bam_record(), 1..40),
        dedup in any::<bool>(),
    ) {
        let mut counter = GeneCounter::new(config(dedup)).unwrap();
        let mut decoder = cd22scan_core::bam::BamDecoder::new(b"chr22", 1);
        let _ = counter.add_bam(&mut decoder, records.iter().map(|(core, data)| (*core, data.as_slice())));
        let _ = counter.finish();
    }
}
