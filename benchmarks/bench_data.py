"""Benchmark inputs, made by the benchmarks themselves (seeded, cached per size).

The simulator is pure Python (~1.2 k fragments/s), so a large BAM is built from one simulated
sample of ``BASE_FRAGMENTS`` fragments repeated under new read names until it holds the wanted
number of records, then coordinate-sorted and indexed with samtools (pysam).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pysam

from cd22scan.demo.simulate import cd22_grch38, simulate

BASE_FRAGMENTS = 20_000
CACHE = Path(os.environ.get("CD22SCAN_BENCH_CACHE", Path(tempfile.gettempdir()) / "cd22scan-bench"))


def base_sample() -> Path:
    out = CACHE / f"base_{BASE_FRAGMENTS}"
    bam = out / "sample.bam"
    if not (bam.exists() and Path(str(bam) + ".bai").exists()):
        out.mkdir(parents=True, exist_ok=True)
        simulate(
            out,
            seed=2026,
            gene=cd22_grch38(),
            n_fragments=BASE_FRAGMENTS,
            isoforms={"canonical": 0.7, "skip:2": 0.3},
            variants=[("snv", 35336100, None, 0.3)],
            write_reference=False,
        )
        produced = next(out.glob("*.bam"))
        if produced != bam:
            produced.rename(bam)
            Path(str(produced) + ".bai").rename(str(bam) + ".bai")
    return bam


def large_bam(n_records: int) -> Path:
    """A CD22 RNA-seq BAM with about ``n_records`` records (copies of the base sample)."""
    target = CACHE / f"cd22_{n_records}.bam"
    if target.exists() and Path(str(target) + ".bai").exists():
        return target
    base = base_sample()
    unsorted = CACHE / f"cd22_{n_records}.unsorted.bam"
    with pysam.AlignmentFile(str(base)) as src:
        records = list(src.fetch(until_eof=True))
        with pysam.AlignmentFile(str(unsorted), "wb", template=src) as dst:
            written = 0
            copy = 0
            while written < n_records:
                for read in records:
                    read.query_name = f"c{copy}_{read.query_name}" if copy else read.query_name
                    dst.write(read)
                    if copy:
                        read.query_name = read.query_name.split("_", 1)[1]
                    written += 1
                    if written >= n_records:
                        break
                copy += 1
    pysam.sort("-@", "2", "-o", str(target), str(unsorted))
    pysam.index(str(target))
    unsorted.unlink()
    return target


def _grch38_contigs() -> list[tuple[str, int]]:
    """chr1..chr22, chrX, chrY with their GRCh38 lengths (the package's contig table)."""
    from importlib.resources import files

    rows = []
    table = files("cd22scan").joinpath("data/contigs.tsv").read_text().splitlines()
    header = table[0].split("\t")
    for line in table[1:]:
        row = dict(zip(header, line.split("\t"), strict=False))
        if row["build"] == "GRCh38" and row["molecule"] in {*map(str, range(1, 23)), "X", "Y"}:
            rows.append((row["ucsc"], int(row["length"])))
    return rows


def dna_bam(depth: int = 2000, read_length: int = 150, seed: int = 7) -> Path:
    """A DNA-like (capture) BAM: read pairs tiling CD22's coding exons ± 100 bp at ``depth``×,
    unspliced, with two heterozygous SNVs and base errors; sorted and indexed."""
    import random

    from cd22scan import builtin_model

    target = CACHE / f"dna_{depth}x.bam"
    if target.exists() and Path(str(target) + ".bai").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    model = builtin_model("CD22", "GRCh38")
    rng = random.Random(seed)
    lo, hi = model.window(500)
    ref = "".join(rng.choice("ACGT") for _ in range(hi - lo + 1000))
    assert model.cds_start is not None and model.cds_end is not None
    cds0, cds1 = model.cds_start - 1, model.cds_end  # 0-based half-open
    cds = [
        (max(e.start - 1, cds0) - 100, min(e.end, cds1) + 100)
        for e in sorted(model.exons, key=lambda e: e.start)
        if e.end > cds0 and e.start - 1 < cds1
    ]
    snvs = {cds[1][0] + 150: "T", cds[5][0] + 160: "G"}
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "chr19", "LN": 58617616}]}
    records = []
    serial = 0
    for start, end in cds:
        # Placements span the target plus an insert: scale so the target's mean depth is ~depth.
        n_pairs = depth * (end - start + 300 - read_length) // (2 * read_length)
        for _ in range(n_pairs):
            insert = max(read_length, int(rng.gauss(300, 40)))
            left = rng.randint(start - insert + read_length, end - read_length)
            right = left + insert - read_length
            serial += 1
            for pos, flag in ((left, 99), (right, 147)):
                seq = list(ref[pos - lo : pos - lo + read_length])
                for p, alt in snvs.items():
                    if pos <= p < pos + read_length and serial % 2:
                        seq[p - pos] = alt
                for i in range(read_length):
                    if rng.random() < 0.002:
                        seq[i] = rng.choice("ACGT")
                records.append((pos, flag, serial, left, right, insert, "".join(seq)))
    records.sort()
    unsorted = CACHE / f"dna_{depth}x.tmp.bam"
    qual = pysam.qualitystring_to_array("I" * read_length)
    with pysam.AlignmentFile(str(unsorted), "wb", header=header) as out:
        for pos, flag, serial, left, right, insert, seq in records:
            a = pysam.AlignedSegment(out.header)
            a.query_name = f"d{serial}"
            a.flag = flag
            a.reference_id = 0
            a.reference_start = pos
            a.mapping_quality = 60
            a.cigarstring = f"{read_length}M"
            a.next_reference_id = 0
            a.next_reference_start = right if flag == 99 else left
            a.template_length = insert if flag == 99 else -insert
            a.query_sequence = seq
            a.query_qualities = qual
            out.write(a)
    unsorted.rename(target)
    pysam.index(str(target))
    return target


SAMTOOLS_BAM_WRITER = ["samtools", "view", "-b", "-@", "2", "--output-fmt-option", "level=1"]


def stream_bam(n_records: int = 40_000_000, gene_records: int = 1_000_000) -> Path:
    """A whole-genome-like BAM of about ``n_records`` records with the CD22 sample of
    ``large_bam(gene_records)`` inside chr19; the rest are 100 bp reads spread over chr1..chrY.
    Written as SAM text through ``samtools view`` (needs samtools on PATH); not indexed: it is
    for stream and stdin input."""
    import shutil
    import subprocess

    target = CACHE / f"genome_{n_records}.bam"
    if target.exists():
        return target
    if shutil.which("samtools") is None:
        raise RuntimeError("samtools is needed to build the stream benchmark BAM")
    gene = large_bam(gene_records)
    contigs = _grch38_contigs()
    total_length = sum(length for _, length in contigs)
    background = n_records - gene_records
    seq = "ACGT" * 25
    qual = "I" * 100
    partial = CACHE / f"genome_{n_records}.tmp.bam"
    header = "@HD\tVN:1.6\tSO:coordinate\n" + "".join(
        f"@SQ\tSN:{name}\tLN:{length}\n" for name, length in contigs
    )
    with subprocess.Popen(
        [*SAMTOOLS_BAM_WRITER, "-o", str(partial), "-"],
        stdin=subprocess.PIPE,
    ) as proc:
        assert proc.stdin is not None
        write = proc.stdin.write
        write(header.encode())
        serial = 0
        for name, length in contigs:
            n = background * length // total_length
            step = max(1, (length - 200) // max(n, 1))
            gene_lines = None
            if name == "chr19":
                gene_lines = subprocess.run(
                    ["samtools", "view", str(gene)], check=True, capture_output=True
                ).stdout.splitlines(keepends=True)
                gene_start = int(gene_lines[0].split(b"\t")[3])
                gene_end = int(gene_lines[-1].split(b"\t")[3])
            chunk = []
            for k in range(n):
                pos = 1 + k * step
                if gene_lines is not None and pos >= gene_start:
                    write("".join(chunk).encode())
                    chunk = []
                    write(b"".join(gene_lines))
                    gene_lines = None
                if gene_lines is None and name == "chr19" and pos <= gene_end + 1000:
                    continue  # the gene's stretch holds only the gene sample's reads
                serial += 1
                chunk.append(f"g{serial}\t0\t{name}\t{pos}\t60\t100M\t*\t0\t0\t{seq}\t{qual}\n")
                if len(chunk) == 100_000:
                    write("".join(chunk).encode())
                    chunk = []
            write("".join(chunk).encode())
        proc.stdin.close()
    if proc.returncode != 0:
        raise RuntimeError(f"samtools view failed with exit code {proc.returncode}")
    partial.rename(target)
    return target
