//! Mates named `NAME/1` `NAME/2` or `NAME.1` `NAME.2` pair as if they shared `NAME` once the
//! counter is told the file's convention, and only then. Files whose mates share one name that
//! happens to end in `.1` (`fastq-dump` without `--readids`) must not be told: the reader's
//! per-file detection (cd22scan/reader.py `survey_reads`) sees that and says `None`.

use cd22scan_core::names::MateSuffix;
use cd22scan_core::{CountResult, CounterConfig, GeneCounter};

/// Window [100, 200) on chr22; exons [110,130) [150,170) [180,190).
fn config(mate_suffix: MateSuffix) -> CounterConfig {
    let mut config =
        CounterConfig::new("chr22", 100, 200, vec![(110, 130), (150, 170), (180, 190)]);
    config.mate_suffix = mate_suffix;
    config
}

/// Three proper pairs whose mates overlap (bases seen twice) and span two exons, named by
/// `name(pair, mate)`; the second mate disagrees with the first at one overlapped base.
fn pairs(name: impl Fn(usize, u8) -> String) -> String {
    let seq = "ACGTACGTACGTACGTACGTACGTACGTACGTACGTACGT";
    let mut other = seq.to_string();
    other.replace_range(5..6, "T");
    let qual = "I".repeat(seq.len());
    let (mut firsts, mut seconds) = (String::new(), String::new());
    for pair in 0..3 {
        let (p1, p2) = (112 + pair, 122 + pair);
        let n1 = name(pair, 1);
        let n2 = name(pair, 2);
        firsts += &format!("{n1}\t99\tchr22\t{p1}\t60\t40M\t=\t{p2}\t50\t{seq}\t{qual}\n");
        seconds += &format!("{n2}\t147\tchr22\t{p2}\t60\t40M\t=\t{p1}\t-50\t{other}\t{qual}\n");
    }
    firsts + &seconds // coordinate order
}

fn run(config: CounterConfig, text: &str) -> CountResult {
    let mut counter = GeneCounter::new(config).unwrap();
    counter.add_sam(text.as_bytes()).unwrap();
    counter.finish().unwrap()
}

#[test]
fn suffixed_mates_count_as_the_same_pairs_with_shared_names() {
    let shared = run(config(MateSuffix::None), &pairs(|p, _| format!("SRR9.{p}")));
    assert_eq!(shared.fragments, 3);
    let slash = pairs(|p, m| format!("SRR9.{p}/{m}"));
    let dot = pairs(|p, m| format!("SRR9.{p}.{m}"));
    assert_eq!(run(config(MateSuffix::Slash), &slash), shared);
    assert_eq!(run(config(MateSuffix::Dot), &dot), shared);
    // Not told: every mate is a fragment of its own, and overlapped bases count twice.
    let untold = run(config(MateSuffix::None), &dot);
    assert_eq!(untold.fragments, 6);
    assert_ne!(untold.base_counts, shared.base_counts);
    // Told the wrong convention: nothing is stripped.
    assert_eq!(run(config(MateSuffix::Slash), &dot), untold);
}
