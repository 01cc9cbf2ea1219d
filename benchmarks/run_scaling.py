"""How `cd22scan run` scales with the number of samples and with --jobs.

    python benchmarks/run_scaling.py --samples 20,50,100 --jobs 1,2 --fragments 3000

Makes one simulated CD22 baseline and one relapse BAM (seeded), then sample sheets of N samples
(N/2 patients, each pair linking to those two BAMs under its own names), and times
`cd22scan run SHEET --jobs J` in a fresh process for every N and J. Also times the per-sample
start-up: `cd22scan scan` on a BAM with no reads over the gene (imports, index load, empty
tables written) against `python -c pass`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_data import CACHE

from cd22scan.demo.simulate import cd22_grch38, simulate


def base_pair(fragments: int) -> tuple[Path, Path]:
    out = CACHE / f"pair_{fragments}"
    paths = []
    for name, isoforms in (
        ("baseline", {"canonical": 1.0}),
        ("relapse", {"canonical": 0.6, "skip:2": 0.4}),
    ):
        folder = out / name
        bams = list(folder.glob("*.bam"))
        if not bams:
            folder.mkdir(parents=True, exist_ok=True)
            simulate(
                folder,
                seed=31 if name == "baseline" else 32,
                gene=cd22_grch38(),
                n_fragments=fragments,
                isoforms=isoforms,
                sample=name,
                write_reference=False,
            )
            bams = list(folder.glob("*.bam"))
        paths.append(bams[0])
    return paths[0], paths[1]


def sheet(folder: Path, n_samples: int, baseline: Path, relapse: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["patient\tsample\ttimepoint\tpath"]
    for k in range(n_samples // 2):
        for timepoint, source in (("baseline", baseline), ("relapse", relapse)):
            name = f"P{k:03d}_{timepoint}"
            link = folder / f"{name}.bam"
            for suffix in ("", ".bai"):
                target = Path(str(link) + suffix)
                if not target.exists():
                    os.symlink(str(source) + suffix, target)
            rows.append(f"P{k:03d}\t{name}\t{timepoint}\t{link.name}")
    path = folder / "samples.tsv"
    path.write_text("\n".join(rows) + "\n")
    return path


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default="20,50,100")
    parser.add_argument("--jobs", default="1,2")
    parser.add_argument("--fragments", type=int, default=3000)
    args = parser.parse_args()
    baseline, relapse = base_pair(args.fragments)
    cli = [sys.executable, "-P", "-m", "cd22scan"]  # -P: the installed package, not the checkout
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        python = min(timed([sys.executable, "-c", "pass"]) for _ in range(3))
        empty = work / "empty.sam"
        empty.write_text("@HD\tVN:1.6\tSO:coordinate\n@SQ\tSN:chr19\tLN:58617616\n")
        startup = min(
            timed([*cli, "scan", str(empty), "--gene", "CD22", "--out", str(work / "e"), "-q"])
            for _ in range(3)
        )
        print(f"python start-up {python:.2f} s; cd22scan scan of an empty input {startup:.2f} s")
        print(f"{'samples':>8s} {'jobs':>5s} {'seconds':>9s} {'s/sample':>9s}")
        for n in (int(s) for s in args.samples.split(",")):
            sample_sheet = sheet(work / f"n{n}", n, baseline, relapse)
            for jobs in (int(j) for j in args.jobs.split(",")):
                out = work / f"out_{n}_{jobs}"
                seconds = timed(
                    [*cli, "run", str(sample_sheet), "--out", str(out), "--jobs", str(jobs), "-q"]
                )
                print(f"{n:8d} {jobs:5d} {seconds:9.2f} {seconds / n:9.3f}", flush=True)


if __name__ == "__main__":
    main()
