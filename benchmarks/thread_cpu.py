"""Where a scan's time goes: the reading thread's CPU against the counting core's, per input.

    python benchmarks/thread_cpu.py [--rna 1000000] [--dna 2000] [--repeats 5]

For each input, alternating, `--repeats` times: the bare pysam loop (the floor); the same feed
into a counter whose window holds no read (what pysam plus the hand-over cost, with the core idle);
and `cd22scan.scan`. For the feed and the scan it prints wall time, the CPU time of the thread that
reads (`time.thread_time`) and the CPU time of all other threads (the core's worker), as medians.
The scan's wall time is bounded below by the larger of the two CPU times; on 2 cores, when both
threads are busy, the reading thread also runs slower than the bare loop (shared cache and memory).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import dna_bam, large_bam
from test_bench_scan import MODEL, W0, W1, bare_pysam_loop

from cd22scan import _core, scan
from cd22scan.sample.reader import feed_window, open_alignments


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(fn: Callable[[], object]) -> tuple[float, float, float]:
    """(wall, this thread's CPU, other threads' CPU) of one call."""
    cpu0, thread0, wall0 = process_cpu(), time.thread_time(), time.perf_counter()
    fn()
    wall, thread = time.perf_counter() - wall0, time.thread_time() - thread0
    return wall, thread, process_cpu() - cpu0 - thread


def idle_core_feed(bam: str) -> None:
    """pysam and the hand-over as in a scan, into a counter whose window holds no read."""
    with open_alignments(bam) as source:
        counter = _core.GeneCounter(MODEL.contig, 0, 100, [(0, 50)])
        feed_window(source, counter, MODEL.contig, W0, W1, stream=False, on_batch=lambda n: None)
        counter.finish()


def report(label: str, bam: str, repeats: int) -> None:
    scan(bam)  # warm the page cache and the imports
    runs: dict[str, list[tuple[float, float, float]]] = {"bare": [], "idle": [], "scan": []}
    for _ in range(repeats):
        runs["bare"].append(measure(lambda: bare_pysam_loop(bam)))
        runs["idle"].append(measure(lambda: idle_core_feed(bam)))
        runs["scan"].append(measure(lambda: scan(bam)))
    print(f"{label} (medians of {repeats})")
    names = {"bare": "bare pysam loop", "idle": "feed, core idle", "scan": "cd22scan.scan"}
    for key, name in names.items():
        wall, thread, others = (statistics.median(r[i] for r in runs[key]) for i in range(3))
        print(
            f"  {name:16s} wall {wall:7.3f} s   reading thread CPU {thread:7.3f} s   "
            f"other threads CPU {others:7.3f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rna", default="1000000", help="RNA BAM sizes (records), comma-separated")
    parser.add_argument("--dna", type=int, default=2000, help="DNA BAM depth (0: none)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for size in (int(s) for s in args.rna.split(",") if s):
        report(f"RNA {size:,}", str(large_bam(size)), args.repeats)
    if args.dna:
        report(f"DNA {args.dna}x", str(dna_bam(args.dna)), args.repeats)


if __name__ == "__main__":
    main()
