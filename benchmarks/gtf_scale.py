"""A GTF of GENCODE size: how long one parse takes, and `cd22scan run` with it.

    python benchmarks/gtf_scale.py --lines 2500000 --samples 4
    python benchmarks/gtf_scale.py --lines 2500000 --samples 4 --code /tmp/old_checkout

Writes, in a temporary folder (never committed), a GTF of about ``--lines`` lines: the real
GENCODE v19 ABI1 records of ../shared/realdata (361 lines) copied under other gene names and
ids (GENE000001, ENSGB000001, ENSTB000001.1, ...), with the real ABI1 in the middle, so the
target is found after half the file as in a whole-genome GTF. Then times

- one parse: ``load_gtf(GTF, "ABI1")`` in this process (best of ``--repeats``);
- ``cd22scan run`` in a fresh process on ``--samples`` real ENCODE ABI1 BAMs (half baseline,
  half relapse, ``--jobs`` workers) with ``--gtf`` the big GTF and ``--reference``.

``--code DIR`` runs `cd22scan run` from another checkout (its ``cd22scan`` package first on
PYTHONPATH; it needs its compiled ``_core`` in place), to compare before/after a change.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REAL = Path(__file__).resolve().parents[1].parent.parent / "shared" / "realdata" / "abi1_encode"
if not REAL.is_dir():
    REAL = Path("/work/shared/realdata/abi1_encode")


def gff3_records(records: list[str]) -> list[str]:
    """The GTF records as GENCODE-style GFF3 (ID/Parent, tag=a,b; CDS and stop_codon apart)."""
    out = []
    for line in records:
        f = line.split("\t")
        attrs: dict[str, list[str]] = {}
        for key, value in re.findall(r'(\S+) "?([^";]*)"?;', f[8]):
            attrs.setdefault(key, []).append(value)
        gene_id, tid = attrs["gene_id"][0], attrs["transcript_id"][0]
        names = f"gene_id={gene_id};gene_name={attrs['gene_name'][0]}"
        if f[2] == "gene":
            col9 = f"ID={gene_id};{names}"
        elif f[2] == "transcript":
            tags = ",".join(attrs.get("tag", []))
            col9 = (
                f"ID={tid};Parent={gene_id};transcript_id={tid};{names};"
                f"transcript_name={attrs['transcript_name'][0]}" + (f";tag={tags}" if tags else "")
            )
        else:
            col9 = f"Parent={tid};{names}"
        out.append("\t".join([*f[:8], col9]))
    return out


def write_big_gtf(path: Path, lines: int, gff3: bool = False) -> int:
    """The ABI1 records repeated under other names until about ``lines`` lines (as GFF3 with
    ``gff3``); returns the number of lines written."""
    records = [
        line
        for line in (REAL / "annotation.gtf").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    if gff3:
        records = gff3_records(records)
    copies = max(1, lines // len(records))
    middle = copies // 2
    written = 0
    with open(path, "w") as out:
        for k in range(copies):
            if k == middle:
                block = records
            else:
                block = [
                    line.replace("ABI1", f"GENE{k:06d}")
                    .replace("ENSG00000136754", f"ENSGB{k:06d}")
                    .replace("ENST", f"ENSTB{k:06d}_")
                    for line in records
                ]
            out.write("\n".join(block) + "\n")
            written += len(block)
    return written


def time_parse(gtf: Path, repeats: int) -> tuple[float, float]:
    """Best wall and best CPU seconds of ``load_gtf`` (CPU time: this shared VM's load makes
    wall time vary several-fold between runs)."""
    from cd22scan.target.annotation import load_gtf

    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        model = load_gtf(gtf, "ABI1")
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    assert model.gene == "ABI1"
    return best, best_cpu


def sample_sheet(folder: Path, n: int) -> Path:
    bams = sorted(REAL.glob("*.bam"))[:n]
    rows = ["patient\tsample\ttimepoint\tpath"]
    for k, bam in enumerate(bams):
        timepoint = "baseline" if k % 2 == 0 else "relapse"
        rows.append(f"P{k // 2}\tS{k:02d}_{timepoint}\t{timepoint}\t{bam}")
    sheet = folder / "samples.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    return sheet


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_run(
    gtf: Path, sheet: Path, out: Path, jobs: int, code: Path | None
) -> tuple[float, float]:
    """Wall seconds and CPU seconds (the process and its workers) of one `cd22scan run`."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = f"{code}{os.pathsep}{env.get('PYTHONPATH', '')}"
    argv = [
        sys.executable, "-m", "cd22scan", "run", str(sheet), "--out", str(out),
        "--gtf", str(gtf), "--gene", "ABI1", "--reference", str(REAL / "chr10_abi1.fa.gz"),
        "--jobs", str(jobs), "--quiet",
    ]  # fmt: skip
    started, cpu = time.perf_counter(), _children_cpu()
    # cwd: the temporary folder, so that "-m cd22scan" does not import the checkout in the
    # current directory ahead of PYTHONPATH.
    subprocess.run(argv, check=True, env=env, cwd=sheet.parent)
    return time.perf_counter() - started, _children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=2_500_000)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--code", type=Path, help="another checkout to time `run` from")
    parser.add_argument("--gff3", action="store_true", help="write and read GFF3, not GTF")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cd22scan_gtf_") as tmp:
        folder = Path(tmp)
        gtf = folder / ("big.gff3" if args.gff3 else "big.gtf")
        started = time.perf_counter()
        n = write_big_gtf(gtf, args.lines, args.gff3)
        size = gtf.stat().st_size / 1e6
        kind = "GFF3" if args.gff3 else "GTF"
        took = time.perf_counter() - started
        print(f"{kind}: {n} lines, {size:.0f} MB, written in {took:.1f} s")
        parse, parse_cpu = time_parse(gtf, args.repeats)
        print(f"one parse (load_gtf, best of {args.repeats}): {parse:.2f} s wall, "
              f"{parse_cpu:.2f} s CPU ({parse_cpu / n * 1e6:.2f} us CPU a line)")  # fmt: skip
        sheet = sample_sheet(folder, args.samples)
        seconds, cpu = time_run(gtf, sheet, folder / "out", args.jobs, args.code)
        which = f" (code from {args.code})" if args.code else ""
        print(
            f"cd22scan run, {args.samples} samples, --jobs {args.jobs}{which}: "
            f"{seconds:.1f} s wall, {cpu:.1f} s CPU"
        )


if __name__ == "__main__":
    main()
