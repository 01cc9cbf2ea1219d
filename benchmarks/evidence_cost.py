"""What the read-evidence pass of the variant FILTERs costs a scan, against the bare pysam loop.

    python benchmarks/evidence_cost.py

For the 2000x DNA BAM and the 1 M-record RNA BAM of bench_data: the bare pysam loop, the full
``scan`` and ``scan`` with the evidence pass replaced by an empty table, alternating, medians of 5.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import dna_bam, large_bam
from test_bench_scan import bare_pysam_loop

import cd22scan.sample.scan as scan_module
from cd22scan import scan


def _no_evidence(path, params, model, bases, indels, can_reread, sample):
    return pl.DataFrame(schema=scan_module.evidence_schema()), {"estimated": False}


def main(repeats: int = 5) -> None:
    with_evidence = scan_module._evidence
    for name, bam in (("DNA 2000x", str(dna_bam(2000))), ("RNA 1 M", str(large_bam(1_000_000)))):
        times: dict[str, list[float]] = {"bare loop": [], "scan": [], "scan, no evidence": []}
        for _ in range(repeats):
            for label, evidence in (("scan", with_evidence), ("scan, no evidence", _no_evidence)):
                start = time.perf_counter()
                bare_pysam_loop(bam)
                times["bare loop"].append(time.perf_counter() - start)
                scan_module._evidence = evidence
                start = time.perf_counter()
                scan(bam)
                times[label].append(time.perf_counter() - start)
        scan_module._evidence = with_evidence
        median = {label: statistics.median(values) for label, values in times.items()}
        bare = median["bare loop"]
        print(name, ", ".join(f"{k} {v:.3f} s ({bare / v:.2f}x)" for k, v in median.items()))


if __name__ == "__main__":
    main()
