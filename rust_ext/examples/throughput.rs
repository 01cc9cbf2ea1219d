//! Parsing + counting throughput on a SAM file (no header), in batches like the Python reader.
//!
//! cargo run --release --example throughput -- FILE CONTIG WINDOW_START WINDOW_END [BATCH_LINES]

use std::time::Instant;

use cd22scan_core::{CounterConfig, GeneCounter};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        return Err("usage: throughput FILE CONTIG WINDOW_START WINDOW_END [BATCH_LINES]".into());
    }
    let text = std::fs::read(&args[1])?;
    let (start, end): (i64, i64) = (args[3].parse()?, args[4].parse()?);
    let batch_lines: usize = args.get(5).map_or(Ok(20_000), |s| s.parse())?;
    // Batches of whole lines, as the reader hands them over.
    let mut batches = Vec::new();
    let mut from = 0;
    let mut lines = 0;
    for (i, &b) in text.iter().enumerate() {
        if b == b'\n' {
            lines += 1;
            if lines % batch_lines == 0 {
                batches.push(&text[from..=i]);
                from = i + 1;
            }
        }
    }
    batches.push(&text[from..]);
    // Exons every 2.5 kb, 150 bp long.
    let exons: Vec<(i64, i64)> = (0..)
        .map(|k| (start + 2500 * k, start + 2500 * k + 150))
        .take_while(|&(_, e)| e <= end)
        .collect();
    for dedup_overlaps in [true, false] {
        let mut best = f64::INFINITY;
        let mut used = 0;
        for _ in 0..7 {
            let mut config = CounterConfig::new(args[2].clone(), start, end, exons.clone());
            config.dedup_overlaps = dedup_overlaps;
            let mut counter = GeneCounter::new(config)?;
            let t = Instant::now();
            for batch in &batches {
                counter.add_sam(batch)?;
            }
            let result = counter.finish()?;
            best = best.min(t.elapsed().as_secs_f64());
            used = result.filters[8];
        }
        println!(
            "dedup_overlaps={dedup_overlaps}: {lines} records ({used} used) in {best:.3} s = {:.2} M records/s, {:.0} MB/s",
            lines as f64 / best / 1e6,
            text.len() as f64 / best / 1e6
        );
    }
    Ok(())
}
