"""Side-by-side timing of cd22scan scan against its floors and samtools, on one BAM.

    python benchmarks/compare_tools.py [--records 1000000] [--repeats 3]

Prints records/s for: a bare pysam loop over the gene window (the reader's floor),
`samtools view -c` on the window (the decode floor), `samtools mpileup` with matching filters,
and `cd22scan.scan` (all tables); then the ratios and the scan's peak memory (RSS of a child).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import large_bam
from test_bench_scan import REGION, bare_pysam_loop

from cd22scan import scan


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def peak_rss_mb(code: str) -> float:
    """Peak RSS of a fresh Python process running ``code`` (it reports its own ru_maxrss)."""
    report = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"], check=True, capture_output=True, text=True
    ).stdout
    return int(out.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bam = str(large_bam(args.records))
    n = bare_pysam_loop(bam)
    rows = []
    rows.append(("bare pysam loop", best_of(args.repeats, lambda: bare_pysam_loop(bam))))
    rows.append(
        (
            "samtools view -c",
            best_of(
                args.repeats,
                lambda: subprocess.run(
                    ["samtools", "view", "-c", bam, REGION], check=True, capture_output=True
                ),
            ),
        )
    )
    mpileup = [
        "samtools",
        "mpileup",
        "-B",
        "-A",
        "-d",
        "0",
        "-q",
        "20",
        "-Q",
        "13",
        "-r",
        REGION,
        bam,
    ]
    rows.append(
        (
            "samtools mpileup",
            best_of(args.repeats, lambda: subprocess.run(mpileup, check=True, capture_output=True)),
        )
    )
    rows.append(("cd22scan scan", best_of(args.repeats, lambda: scan(bam))))
    print(f"BAM: {bam}  records in window: {n}")
    print(f"{'tool':20s} {'seconds':>9s} {'records/s':>12s}")
    for name, sec in rows:
        print(f"{name:20s} {sec:9.3f} {n / sec:12,.0f}")
    t = dict(rows)
    print(f"scan throughput / bare pysam loop: {t['bare pysam loop'] / t['cd22scan scan']:.2f}")
    print(f"scan speed-up over samtools mpileup: {t['samtools mpileup'] / t['cd22scan scan']:.1f}x")
    rss = peak_rss_mb(f"import cd22scan; cd22scan.scan({bam!r})")
    base = peak_rss_mb("import cd22scan, polars, pysam")
    print(
        f"scan peak RSS: {rss:.0f} MB (Python with cd22scan, polars, pysam imported: {base:.0f} MB)"
    )


if __name__ == "__main__":
    main()
