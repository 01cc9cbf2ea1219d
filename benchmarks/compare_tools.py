"""Side-by-side timing of cd22scan against its floors and samtools, on inputs it makes itself.

    python benchmarks/compare_tools.py --rna 100000,1000000,4000000 --dna 2000 \\
        --stream 40000000 --repeats 3 --markdown perf.md

Indexed inputs (RNA-seq-like CD22 BAMs by record count; a DNA-like BAM at the given depth over
CD22's coding exons), each over the gene window, in one run:
  bare pysam loop      iterating the window with pysam and doing nothing (the reader's floor)
  samtools view -c     htslib decoding the window in C (the decode floor)
  samtools mpileup     per-position counts with matching filters (-B -A -d 0 -q 20 -Q 13)
  cd22scan.scan        the Python API, all tables built (in this process)
  cd22scan scan (CLI)  a fresh process: start-up, scan, all files written; peak RSS (GNU time)
Stream input (a whole-genome-like BAM with the gene inside, not indexed):
  bare pysam loop over the whole file, samtools view -c of the whole file,
  `cd22scan scan --stream FILE` and `cat FILE | cd22scan scan -`.
Times are the best of --repeats (mpileup and stream runs: once); the bare loop and the API scan
alternate and their medians are noted too, with the median (and range) of each scan's ratio to
the bare loop run just before it. Ratios are reads/s against the bare pysam loop on the same
input.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pysam

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import dna_bam, large_bam, stream_bam
from test_bench_scan import REGION, bare_pysam_loop

from cd22scan import scan

GNU_TIME = "/usr/bin/time"
"""GNU time reports the peak RSS of the process it starts (``-f %M``). A child's own
``getrusage`` would not do: Linux keeps ``ru_maxrss`` across fork and exec, so a child of this
(large) benchmark process would report the benchmark's peak."""


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def whole_file_loop(path: str) -> int:
    n = 0
    with pysam.AlignmentFile(path, check_sq=False) as handle:
        for _read in handle.fetch(until_eof=True):
            n += 1
    return n


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cmd, check=True, capture_output=True, **kw)  # type: ignore[call-overload]


def cli_scan(args: list[str], stdin_path: str | None = None) -> tuple[float, float | None]:
    """Seconds and peak RSS (MB; None without GNU time) of `cd22scan scan ARGS`, a fresh
    process (its start-up included)."""
    with tempfile.TemporaryDirectory() as out:
        # -P: never import the source tree (it has no compiled core) when run from the checkout.
        cmd = [sys.executable, "-P", "-m", "cd22scan", "scan", *args, "--out", out, "-q"]
        measured = shutil.which(GNU_TIME) is not None
        if measured:
            cmd = [GNU_TIME, "-f", "PEAK_RSS_KB %M", *cmd]
        t = time.perf_counter()
        if stdin_path is None:
            done = run(cmd)
        else:
            with open(stdin_path, "rb") as handle:
                done = run(cmd, stdin=handle)
        seconds = time.perf_counter() - t
    if not measured:
        return seconds, None
    rss = next(
        int(line.split()[1]) for line in done.stderr.decode().splitlines() if "PEAK_RSS_KB" in line
    )
    return seconds, rss / 1024


def rss_note(rss: float | None) -> str:
    return "peak RSS not measured (no GNU time)" if rss is None else f"peak RSS {rss:.0f} MB"


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, int, str, float, str]] = []

    def add(self, label: str, n: int, tool: str, seconds: float, note: str = "") -> None:
        self.rows.append((label, n, tool, seconds, note))
        floor = next(
            (s for lab, _, t, s, _ in self.rows if lab == label and t.startswith("bare")), None
        )
        ratio = f"{floor / seconds:5.2f}" if floor else "    -"
        print(
            f"{label:22s} {n:>11,d} {tool:30s} {seconds:9.3f} s {n / seconds:>13,.0f}/s  "
            f"{ratio}  {note}",
            flush=True,
        )

    def markdown(self) -> str:
        lines = [
            "| input | records | tool | seconds | records/s | vs bare pysam loop | note |",
            "|---|---:|---|---:|---:|---:|---|",
        ]
        for label, n, tool, seconds, note in self.rows:
            floor = next(
                (s for lab, _, t, s, _ in self.rows if lab == label and t.startswith("bare")),
                None,
            )
            ratio = f"{floor / seconds:.2f}" if floor else ""
            shown = tool.replace("|", "\\|")  # a shell pipe in a Markdown cell
            lines.append(
                f"| {label} | {n:,} | {shown} | {seconds:.3f} | {n / seconds:,.0f} | {ratio} | "
                f"{note} |"
            )
        return "\n".join(lines) + "\n"


def indexed_input(table: Table, label: str, bam: str, repeats: int, mpileup_max: int) -> None:
    n = bare_pysam_loop(bam)
    # The floor and the scan alternate, so that both see the same moments of a noisy machine.
    floor, api = [], []
    for _ in range(repeats):
        floor.append(best_of(1, lambda: bare_pysam_loop(bam)))
        api.append(best_of(1, lambda: scan(bam)))
    floor_median = sorted(floor)[repeats // 2]
    table.add(label, n, "bare pysam loop", min(floor), f"median {floor_median:.3f} s")
    if shutil.which("samtools"):
        table.add(
            label,
            n,
            "samtools view -c",
            best_of(repeats, lambda: run(["samtools", "view", "-c", bam, REGION])),
        )
        if n <= mpileup_max:
            mpileup = ["samtools", "mpileup", "-B", "-A", "-d", "0", "-q", "20", "-Q", "13"]
            table.add(
                label,
                n,
                "samtools mpileup",
                best_of(1, lambda: run([*mpileup, "-r", REGION, bam])),
            )
        else:
            print(f"{label}: samtools mpileup skipped above --mpileup-max {mpileup_max:,}")
    median = sorted(api)[repeats // 2]
    # Each scan against the bare loop run just before it: the ratio least moved by the
    # machine's drift (bests and medians of the two series may come from different moments).
    paired = sorted(f / a for f, a in zip(floor, api, strict=True))
    table.add(
        label,
        n,
        "cd22scan.scan (API)",
        min(api),
        f"median {median:.3f} s; paired ratio median {paired[repeats // 2]:.2f} "
        f"({paired[0]:.2f}–{paired[-1]:.2f})",
    )
    runs = [cli_scan([bam, "--gene", "CD22"]) for _ in range(repeats)]
    seconds = min(s for s, _ in runs)
    table.add(label, n, "cd22scan scan (CLI)", seconds, rss_note(runs[0][1]))


def stream_input(table: Table, label: str, bam: str) -> None:
    n = whole_file_loop(bam)
    table.add(label, n, "bare pysam loop (whole file)", best_of(1, lambda: whole_file_loop(bam)))
    if shutil.which("samtools"):
        table.add(
            label,
            n,
            "samtools view -c (whole file)",
            best_of(1, lambda: run(["samtools", "view", "-c", bam])),
        )
    seconds, rss = cli_scan([bam, "--gene", "CD22", "--stream"])
    table.add(label, n, "cd22scan scan --stream", seconds, rss_note(rss))
    seconds, rss = cli_scan(["-", "--gene", "CD22"], stdin_path=bam)
    table.add(label, n, "cat BAM | cd22scan scan -", seconds, rss_note(rss))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rna", default="100000,1000000", help="RNA BAM sizes (records)")
    parser.add_argument("--dna", type=int, default=2000, help="DNA BAM depth (0: none)")
    parser.add_argument("--stream", type=int, default=0, help="stream BAM size (0: none)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mpileup-max", type=int, default=1_000_000)
    parser.add_argument("--markdown", help="also write the table as Markdown here")
    args = parser.parse_args()
    table = Table()
    print(f"{'input':22s} {'records':>11s} {'tool':30s} {'time':>11s} {'throughput':>15s}  ratio")
    for size in (int(s) for s in args.rna.split(",") if s):
        indexed_input(table, f"RNA {size:,}", str(large_bam(size)), args.repeats, args.mpileup_max)
    if args.dna:
        indexed_input(
            table, f"DNA {args.dna}x", str(dna_bam(args.dna)), args.repeats, args.mpileup_max
        )
    if args.stream:
        stream_input(table, f"genome {args.stream:,}", str(stream_bam(args.stream)))
    if args.markdown:
        Path(args.markdown).write_text(table.markdown())
        print(f"table written to {args.markdown}")


if __name__ == "__main__":
    main()
