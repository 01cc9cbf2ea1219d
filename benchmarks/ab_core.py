"""Before/after for a change to the counting core: two builds of it, timed in one process.

    cd rust_ext && cargo build --release --features python     # the changed build
    python benchmarks/ab_core.py BEFORE.so rust_ext/target/release/libcd22scan_core.so

BEFORE.so is a copy of an earlier build (`cd22scan/_core.abi3.so` of an installed package, or
`libcd22scan_core.so` saved before the change). Both are loaded as separate extension modules;
every input's window is written once as the reader's uncompressed BAM stream (into memory), then
each repeat counts it with A and with B (alternating which goes first) through
`GeneCounter.bam_sink`, timed as wall time (the core counts on its own threads). Printed per input:
each build's best and median ns per record and the median of the paired ratios B/A with their
interquartile range. Timing both builds in one process, moments apart, cancels most of the
machine's drift; run A against A first to see how wide the range is on an unchanged core.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import dna_bam, large_bam
from core_rate import count_stream, window_stream


def load_core(path: str) -> ModuleType:
    """The compiled core at `path` as its own module object (two builds can live side by side:
    each shared library has its own statics)."""
    spec = importlib.util.spec_from_file_location("cd22scan._core", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: not loadable as an extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def count_once(core: ModuleType, payload: bytes, tid: int) -> float:
    """Wall seconds to count the stream and finish."""
    started = time.perf_counter()
    count_stream(core, payload, tid)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", help="the core before the change (.so)")
    parser.add_argument("b", help="the core after the change (.so)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--inputs", default="dna,rna", help="dna, rna or both")
    args = parser.parse_args()
    cores = load_core(args.a), load_core(args.b)
    for name in args.inputs.split(","):
        path = {"dna": dna_bam, "rna": lambda: large_bam(1_000_000)}[name]()
        payload, tid, n = window_stream(str(path))
        times: tuple[list[float], list[float]] = ([], [])
        for repeat in range(args.repeats):
            order = (0, 1) if repeat % 2 == 0 else (1, 0)
            for which in order:
                times[which].append(count_once(cores[which], payload, tid) * 1e9 / n)
        ratios = sorted(b / a for a, b in zip(*times, strict=True))
        q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
        (ta, tb) = times
        print(
            f"{name} ({n:,} records): "
            f"A best {min(ta):.0f} median {statistics.median(ta):.0f} ns/record; "
            f"B best {min(tb):.0f} median {statistics.median(tb):.0f}; "
            f"B/A paired median {statistics.median(ratios):.3f} (IQR {q1:.3f}-{q3:.3f})",
            flush=True,
        )


if __name__ == "__main__":
    main()
