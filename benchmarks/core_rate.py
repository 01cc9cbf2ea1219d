"""The counting core's own rate: pre-decoded pysam segments counted with no reader in the way.

    python benchmarks/core_rate.py [--records 1000000] [--repeats 5]

Reads every record of the benchmark's CD22 BAM over the window into memory first, then times
`GeneCounter.add_segments` over batches of 4096 (best of --repeats), with and without the
mate-overlap correction. Compare with the bare pysam loop of compare_tools.py: the scan cannot
be faster than the slower of the two, as they run side by side on two cores.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import pysam

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import large_bam
from test_bench_scan import MODEL, W0, W1

from cd22scan import _core


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with pysam.AlignmentFile(str(large_bam(args.records))) as handle:
        tid = handle.get_tid(MODEL.contig)
        reads = list(handle.fetch(MODEL.contig, W0, W1))
    assert _core.segment_layout_matches(reads[0])
    batches = [reads[i : i + 4096] for i in range(0, len(reads), 4096)]
    exons = [(e.start - 1, e.end) for e in sorted(MODEL.exons, key=lambda e: e.start)]
    gc.disable()  # a million live segments would make every collection slow
    for dedup in (True, False):
        best = float("inf")
        for _ in range(args.repeats):
            counter = _core.GeneCounter(MODEL.contig, W0, W1, exons, dedup_overlaps=dedup)
            t = time.perf_counter()
            for batch in batches:
                counter.add_segments(batch, tid)
            counter.finish()
            best = min(best, time.perf_counter() - t)
        print(
            f"overlap correction {'on ' if dedup else 'off'}: {len(reads):,} records in "
            f"{best:.3f} s = {len(reads) / best / 1e6:.2f} M records/s"
        )


if __name__ == "__main__":
    main()
