#!/usr/bin/env python3
"""A 6-gene panel scan against 6 one-gene scans of the same BAM (issue 15).

    python benchmarks/panel_scan.py --fragments 2000 --background 300000 --repeats 3

The BAM: each of the six CAR targets (built-in GRCh38 models: CD19, CD22, MS4A1, TNFRSF17, GPRC5D,
CD7) simulated with ``--fragments`` fragments on its real contig, merged, plus ``--background``
unspliced reads elsewhere on chr16 (the rest of a library, which a stream-mode scan must read).
Timed, alternating, best of ``--repeats``: ``scan_panel`` with the index, the six ``scan`` calls
with the index, ``scan_panel`` streaming (one read of the file), the six ``scan`` calls streaming
(six reads of the file). Prints a Markdown table with the ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pysam

from cd22scan.demo.simulate import add_background_reads, builtin_spec, simulate
from cd22scan.sample.panel import scan_panel
from cd22scan.sample.scan import scan
from cd22scan.target.panel import CAR_TARGETS


def build_bam(folder: Path, fragments: int, background: int) -> Path:
    parts = []
    for index, gene in enumerate(CAR_TARGETS):
        sim = simulate(folder / gene, seed=100 + index, gene=builtin_spec(gene),
                       n_fragments=fragments, sample="PANEL", write_reference=False)  # fmt: skip
        if gene == "CD19" and background:
            add_background_reads(sim.bam, background, seed=7, start=50_000_000, end=60_000_000)
        parts.append(str(sim.bam))
    bam = folder / "panel.bam"
    pysam.merge("-f", "-o", str(bam), *parts, catch_stdout=False)
    pysam.index(str(bam))
    return bam


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fragments", type=int, default=2000)
    parser.add_argument("--background", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bam = str(build_bam(Path(tmp), args.fragments, args.background))
        records = int(pysam.view("-c", bam).strip())
        genes = list(CAR_TARGETS)
        runs = {
            "panel, indexed": lambda: scan_panel(bam, genes),
            "6 one-gene scans, indexed": lambda: [scan(bam, gene=g) for g in genes],
            "panel, stream": lambda: scan_panel(bam, genes, stream=True),
            "6 one-gene scans, stream": lambda: [scan(bam, gene=g, stream=True) for g in genes],
        }
        best = {name: float("inf") for name in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                best[name] = min(best[name], timed(fn))
    print(f"{records:,} records; {args.fragments:,} fragments per gene, "
          f"{args.background:,} background reads; best of {args.repeats}\n")  # fmt: skip
    print("| read | panel scan (s) | 6 one-gene scans (s) | 6 scans / panel |")
    print("|---|---:|---:|---:|")
    for mode in ("indexed", "stream"):
        panel, six = best[f"panel, {mode}"], best[f"6 one-gene scans, {mode}"]
        print(f"| {mode} | {panel:.2f} | {six:.2f} | {six / panel:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
