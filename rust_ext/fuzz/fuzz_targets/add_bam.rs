//! Fuzz `GeneCounter::add_bam`: BAM records as htslib hands them over (fixed fields + data
//! block), mostly well-formed (a name, CIGAR ops, as many 4-bit bases and qualities as the ops
//! consume, aux tags with XS), sometimes with lengths that disagree with the block. The core must
//! never panic, never report an internal error, and refuse all input after a refusal.
#![no_main]

use arbitrary::Arbitrary;
use cd22scan_core::bam::{BamCore, BamDecoder};
use cd22scan_core::{CoreError, CounterConfig, GeneCounter};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Record {
    name: u8,
    flag: u16,
    tid: i8,
    mtid: i8,
    pos_step: u8,
    mpos_delta: i16,
    mapq: u8,
    ops: Vec<(u8, u16)>,
    bases: Vec<u8>,
    quals: Vec<u8>,
    missing_qual: bool,
    xs: u8,
    /// Lies about lengths: added to n_cigar / l_qseq / l_qname, or cut bytes off the block.
    skew: Option<(i8, i8, i8, u8)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    dedup: bool,
    batches: Vec<Vec<Record>>,
}

fn block(rec: &Record, pos: i64) -> (BamCore, Vec<u8>) {
    let mut data = format!("r{}", rec.name % 16).into_bytes();
    data.push(0);
    let l_qname = data.len();
    let ops: Vec<(u32, u32)> = rec
        .ops
        .iter()
        .take(12)
        .map(|&(code, len)| (u32::from(code % 10), u32::from(len % 300)))
        .collect();
    let query: u32 = ops
        .iter()
        .filter(|(code, _)| matches!(code, 0 | 1 | 4 | 7 | 8))
        .map(|&(_, len)| len)
        .sum();
    for &(code, len) in &ops {
        data.extend((len << 4 | code).to_le_bytes());
    }
    let n = query as usize;
    for k in 0..n.div_ceil(2) {
        data.push(rec.bases.get(k).copied().unwrap_or(0x12));
    }
    for k in 0..n {
        let q = if rec.missing_qual { 0xFF } else { rec.quals.get(k).copied().unwrap_or(30) % 94 };
        data.push(q);
    }
    match rec.xs % 4 {
        1 => data.extend_from_slice(b"XSA+"),
        2 => data.extend_from_slice(b"NMC\x01XSA-"),
        3 => data.extend_from_slice(b"XSi\x05\x00\x00\x00"),
        _ => {}
    }
    let mut core = BamCore {
        pos,
        tid: i32::from(rec.tid % 3),
        mapq: rec.mapq,
        l_extranul: 0,
        flag: rec.flag,
        l_qname: l_qname as u16,
        n_cigar: ops.len() as u32,
        l_qseq: query as i32,
        mtid: i32::from(rec.mtid % 3),
        mpos: pos + i64::from(rec.mpos_delta),
        isize: 0,
    };
    if let Some((a, b, c, cut)) = rec.skew {
        core.n_cigar = core.n_cigar.wrapping_add_signed(i32::from(a));
        core.l_qseq = core.l_qseq.wrapping_add(i32::from(b));
        core.l_qname = core.l_qname.wrapping_add_signed(i16::from(c));
        data.truncate(data.len().saturating_sub(usize::from(cut)));
    }
    (core, data)
}

fuzz_target!(|input: Input| {
    let mut config = CounterConfig::new("chr22", 100, 1200, vec![(150, 300), (500, 650), (900, 1000)]);
    config.dedup_overlaps = input.dedup;
    let Ok(mut counter) = GeneCounter::new(config) else { return };
    let mut decoder = BamDecoder::new(b"chr22", 1);
    let mut pos = 0i64;
    let mut failed = false;
    for batch in input.batches.iter().take(20) {
        let records: Vec<(BamCore, Vec<u8>)> = batch
            .iter()
            .take(64)
            .map(|rec| {
                pos += i64::from(rec.pos_step % 40);
                block(rec, pos)
            })
            .collect();
        let result = counter.add_bam(&mut decoder, records.iter().map(|(c, d)| (*c, d.as_slice())));
        match result {
            Ok(()) => assert!(!failed, "a failed counter accepted more input"),
            Err(CoreError::Internal(message)) => panic!("internal error: {message}"),
            Err(_) => failed = true,
        }
    }
    match counter.finish() {
        Ok(_) => assert!(!failed, "a failed counter returned counts"),
        Err(CoreError::Internal(message)) => panic!("internal error: {message}"),
        Err(_) => assert!(failed),
    }
});
