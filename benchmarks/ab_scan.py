"""Before/after for a change to the reader: two checkouts' whole scans against the bare loop.

    git archive main | tar -x -C /tmp/before
    (cd /tmp/before/rust_ext && cargo build --release --features python)
    cp /tmp/before/rust_ext/target/release/libcd22scan_core.so \\
        /tmp/before/cd22scan/_core.abi3.so
    python benchmarks/ab_scan.py /tmp/before . --inputs rna1m,dna --repeats 9

Each checkout (a directory holding a `cd22scan/` package with its compiled core) is imported in
a fresh process (`PYTHONPATH`), which times, one after the other on the same input: the bare
pysam loop over the gene window (the floor), then `cd22scan.scan` (the Python API, all tables),
and prints both. The two checkouts alternate (A B, B A, ...), so each pair of processes sees the
same moments of a noisy machine. Printed per input: each side's median scan time, the median and
range of its paired ratio bare/scan (the README's "paired ratio": >= 0.70 is the target), and
the median and range of the paired ratio scan B / scan A.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import json, sys, time
sys.path.insert(0, {bench!r})
import cd22scan
from cd22scan import scan
from test_bench_scan import bare_pysam_loop
bam = {bam!r}
bare_pysam_loop(bam)  # warm the page cache and the imports
t = time.perf_counter(); n = bare_pysam_loop(bam); bare = time.perf_counter() - t
t = time.perf_counter(); scan(bam, **{kwargs!r}); took = time.perf_counter() - t
print(json.dumps({{"file": cd22scan.__file__, "records": n, "bare": bare, "scan": took}}))
"""


def run_side(checkout: Path, bam: str, kwargs: dict[str, object]) -> dict[str, object]:
    # `python -c` puts its working directory first on sys.path: run it in the checkout.
    env = dict(os.environ, PYTHONPATH=str(checkout.resolve()))
    code = CHILD.format(bench=str(HERE), bam=bam, kwargs=kwargs)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=checkout,
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    expected = checkout.resolve() / "cd22scan" / "__init__.py"
    if Path(result["file"]) != expected:
        raise SystemExit(f"imported {result['file']}, not {expected}")
    return result


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="checkout before the change")
    parser.add_argument("b", type=Path, help="checkout after the change")
    parser.add_argument("--inputs", default="rna1m,dna", help="rna1m, rna4m, rna100k, dna")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from bench_data import dna_bam, large_bam

    sources = {
        "rna100k": lambda: large_bam(100_000),
        "rna1m": lambda: large_bam(1_000_000),
        "rna4m": lambda: large_bam(4_000_000),
        "dna": lambda: dna_bam(2000),
    }
    for name in args.inputs.split(","):
        bam = str(sources[name]())
        runs: tuple[list[dict[str, object]], list[dict[str, object]]] = ([], [])
        for repeat in range(args.repeats):
            order = (0, 1) if repeat % 2 == 0 else (1, 0)
            for which in order:
                runs[which].append(run_side((args.a, args.b)[which], bam, {}))
        a, b = runs
        n = a[0]["records"]
        for label, side in (("A", a), ("B", b)):
            scans = [float(r["scan"]) for r in side]
            ratios = [float(r["bare"]) / float(r["scan"]) for r in side]
            bares = [float(r["bare"]) for r in side]
            print(
                f"{name} ({n:,} records) {label}: bare {spread(bares)} s, scan {spread(scans)} s, "
                f"bare/scan paired {spread(ratios)}",
                flush=True,
            )
        b_over_a = [float(y["scan"]) / float(x["scan"]) for x, y in zip(a, b, strict=True)]
        print(f"{name}: scan B / scan A paired {spread(b_over_a)}", flush=True)


if __name__ == "__main__":
    main()
