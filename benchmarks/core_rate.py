"""The counting core's own rate: an uncompressed BAM stream counted with no pysam in the way.

    python benchmarks/core_rate.py [--records 1000000] [--repeats 5]

Writes every record of the benchmark's CD22 BAM over the window as uncompressed BAM into memory
first (what the reader's pysam writer produces), then times writing those bytes into a
`GeneCounter.bam_sink` and counting them (best of --repeats), with and without the mate-overlap
correction. Compare with the bare pysam loop of compare_tools.py: the scan cannot be faster than
the slower of the two, as they run side by side on two cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pysam

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import large_bam
from test_bench_scan import MODEL, W0, W1

from cd22scan import _core


def window_stream(path: str) -> tuple[bytes, int, int]:
    """The window's records as the reader's uncompressed BAM stream, their tid and number."""
    with pysam.AlignmentFile(path) as handle, tempfile.TemporaryDirectory() as tmp:
        tid = handle.get_tid(MODEL.contig)
        out_path = os.path.join(tmp, "window.bam")
        n = 0
        with pysam.AlignmentFile(out_path, "wbu", header=handle.header) as out:
            for read in handle.fetch(MODEL.contig, W0, W1):
                out.write(read)
                n += 1
        with open(out_path, "rb") as written:
            return written.read(), tid, n


def count_stream(core: object, payload: bytes, tid: int, dedup: bool = True) -> None:
    """Count an uncompressed BAM stream with `core` (a loaded `cd22scan._core`)."""
    exons = [(e.start - 1, e.end) for e in sorted(MODEL.exons, key=lambda e: e.start)]
    counter = core.GeneCounter(MODEL.contig, W0, W1, exons, dedup_overlaps=dedup)  # type: ignore[attr-defined]
    sink = counter.bam_sink(tid)
    view = memoryview(payload)
    while view:
        view = view[os.write(sink.fileno(), view) :]
    sink.close()
    counter.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    payload, tid, n = window_stream(str(large_bam(args.records)))
    for dedup in (True, False):
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            count_stream(_core, payload, tid, dedup)
            best = min(best, time.perf_counter() - t)
        print(
            f"overlap correction {'on ' if dedup else 'off'}: {n:,} records in "
            f"{best:.3f} s = {n / best / 1e6:.2f} M records/s"
        )


if __name__ == "__main__":
    main()
