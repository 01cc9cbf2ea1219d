"""Before/after for a change to the counting core: two builds of it, timed in one process.

    cd rust_ext && cargo build --release --features python     # the changed build
    python benchmarks/ab_core.py BEFORE.so rust_ext/target/release/libcd22scan_core.so

BEFORE.so is a copy of an earlier build (`cd22scan/_core.abi3.so` of an installed package, or
`libcd22scan_core.so` saved before the change). Both are loaded as separate extension modules;
every input's records are read once with pysam, then each repeat counts them with A and with B
(alternating which goes first), on this thread, timed with `time.thread_time`. Printed per input:
each build's best and median ns per record and the median of the paired ratios B/A with their
interquartile range. Timing both builds in one process, moments apart, cancels most of the
machine's drift; run A against A first to see how wide the range is on an unchanged core.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

import pysam

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import dna_bam, large_bam
from test_bench_scan import MODEL, W0, W1

BATCH = 512
"""Records per add_segments call, as the scan's hand-over (reader.SEGMENT_BATCH_RECORDS)."""


def load_core(path: str) -> ModuleType:
    """The compiled core at `path` as its own module object (two builds can live side by side:
    each shared library has its own statics)."""
    spec = importlib.util.spec_from_file_location("cd22scan._core", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not loadable as an extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def count_once(core: ModuleType, batches: list[list[pysam.AlignedSegment]], tid: int) -> float:
    """Seconds of this thread's CPU to count every batch and finish."""
    exons = [(e.start - 1, e.end) for e in sorted(MODEL.exons, key=lambda e: e.start)]
    counter = core.GeneCounter(MODEL.contig, W0, W1, exons, dedup_overlaps=True)
    started = time.thread_time()
    for batch in batches:
        counter.add_segments(batch, tid)
    counter.finish()
    return time.thread_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="the core before the change (.so)")
    parser.add_argument("b", help="the core after the change (.so)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--inputs", default="dna,rna", help="dna, rna or both")
    parser.add_argument("--rna-records", type=int, default=300_000, help="first N of the 1 M BAM")
    args = parser.parse_args()
    cores = load_core(args.a), load_core(args.b)
    for name in args.inputs.split(","):
        path = {"dna": dna_bam, "rna": lambda: large_bam(1_000_000)}[name]()
        with pysam.AlignmentFile(str(path)) as handle:
            tid = handle.get_tid(MODEL.contig)
            reads = list(handle.fetch(MODEL.contig, W0, W1))
        if name == "rna":
            reads = reads[: args.rna_records]
        for core in cores:
            if not core.segment_layout_matches(reads[0]):
                raise SystemExit(f"{core.__file__}: pysam's record layout does not match")
        batches = [reads[i : i + BATCH] for i in range(0, len(reads), BATCH)]
        gc.disable()  # hundreds of thousands of live segments would make collections slow
        times: tuple[list[float], list[float]] = ([], [])
        for repeat in range(args.repeats):
            order = (0, 1) if repeat % 2 == 0 else (1, 0)
            for which in order:
                times[which].append(count_once(cores[which], batches, tid) * 1e9 / len(reads))
        gc.enable()
        ratios = sorted(b / a for a, b in zip(*times, strict=True))
        q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
        (ta, tb) = times
        print(
            f"{name} ({len(reads):,} records): "
            f"A best {min(ta):.0f} median {statistics.median(ta):.0f} ns/record; "
            f"B best {min(tb):.0f} median {statistics.median(tb):.0f}; "
            f"B/A paired median {statistics.median(ratios):.3f} (IQR {q1:.3f}-{q3:.3f})",
            flush=True,
        )
        del reads, batches


if __name__ == "__main__":
    main()
