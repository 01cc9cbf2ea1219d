"""Benchmark inputs, made by the benchmarks themselves (seeded, cached per size).

The simulator is pure Python (~1.2 k fragments/s), so a large BAM is built from one simulated
sample of ``BASE_FRAGMENTS`` fragments repeated under new read names until it holds the wanted
number of records, then coordinate-sorted and indexed with samtools (pysam).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pysam

from cd22scan.simulate import cd22_grch38, simulate

BASE_FRAGMENTS = 20_000
CACHE = Path(os.environ.get("CD22SCAN_BENCH_CACHE", Path(tempfile.gettempdir()) / "cd22scan-bench"))


def base_sample() -> Path:
    out = CACHE / f"base_{BASE_FRAGMENTS}"
    bam = out / "sample.bam"
    if not (bam.exists() and Path(str(bam) + ".bai").exists()):
        out.mkdir(parents=True, exist_ok=True)
        simulate(
            out,
            seed=2026,
            gene=cd22_grch38(),
            n_fragments=BASE_FRAGMENTS,
            isoforms={"canonical": 0.7, "skip:2": 0.3},
            variants=[("snv", 35336100, None, 0.3)],
            write_reference=False,
        )
        produced = next(out.glob("*.bam"))
        if produced != bam:
            produced.rename(bam)
            Path(str(produced) + ".bai").rename(str(bam) + ".bai")
    return bam


def large_bam(n_records: int) -> Path:
    """A CD22 RNA-seq BAM with about ``n_records`` records (copies of the base sample)."""
    target = CACHE / f"cd22_{n_records}.bam"
    if target.exists() and Path(str(target) + ".bai").exists():
        return target
    base = base_sample()
    unsorted = CACHE / f"cd22_{n_records}.unsorted.bam"
    with pysam.AlignmentFile(str(base)) as src:
        records = list(src.fetch(until_eof=True))
        with pysam.AlignmentFile(str(unsorted), "wb", template=src) as dst:
            written = 0
            copy = 0
            while written < n_records:
                for read in records:
                    read.query_name = f"c{copy}_{read.query_name}" if copy else read.query_name
                    dst.write(read)
                    if copy:
                        read.query_name = read.query_name.split("_", 1)[1]
                    written += 1
                    if written >= n_records:
                        break
                copy += 1
    pysam.sort("-@", "2", "-o", str(target), str(unsorted))
    pysam.index(str(target))
    unsorted.unlink()
    return target
