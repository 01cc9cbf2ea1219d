"""One pass over a BAM for several genes (issue 15): each gene's tables equal a one-gene scan of
that gene, indexed and streamed, on a simulated BAM with genes on both strands and two contigs."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import polars as pl
import pysam
import pytest

from cd22scan.demo.simulate import GeneSpec, simulate, small_gene, write_gtf
from cd22scan.sample.panel import scan_panel
from cd22scan.sample.scan import scan

TIMING = ("seconds", "started")


def _genes() -> list[GeneSpec]:
    plus = replace(small_gene("+"), contig_length=14_000)
    shifted = tuple((s + 7000, e + 7000) for s, e in plus.exons)
    assert plus.cds is not None
    far = replace(plus, name="FAR", exons=shifted, cds=(plus.cds[0] + 7000, plus.cds[1] + 7000))
    minus = replace(small_gene("-"), contig="chrU")
    return [plus, far, minus]


@pytest.fixture(scope="module")
def panel_bam(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    tmp = tmp_path_factory.mktemp("panel")
    parts, gtf_lines = [], []
    for index, gene in enumerate(_genes()):
        sim = simulate(tmp / gene.name, seed=40 + index, gene=gene, n_fragments=600,
                       isoforms={"canonical": 0.8, "skip:2": 0.2}, sample="P1")  # fmt: skip
        parts.append(str(sim.bam))
        gtf_lines.append(write_gtf(gene, tmp / f"{gene.name}.gtf").read_text())
    bam = tmp / "panel.bam"
    pysam.merge("-f", "-o", str(bam), *parts, catch_stdout=False)
    pysam.index(str(bam))
    gtf = tmp / "panel.gtf"
    gtf.write_text("".join(gtf_lines))
    return bam, gtf, [g.name for g in _genes()]


def _same(a, b) -> None:
    for table in ("exons", "junctions", "introns", "bases", "indels"):
        assert getattr(a, table).equals(getattr(b, table)), table
    sa = {k: v for k, v in a.summary.items() if k not in TIMING}
    sb = {k: v for k, v in b.summary.items() if k not in TIMING}
    assert sa == sb


@pytest.mark.parametrize("stream", [False, True])
def test_each_gene_equals_its_one_gene_scan(panel_bam, stream):
    bam, gtf, genes = panel_bam
    panel = scan_panel(str(bam), genes, gtf=str(gtf), stream=stream)
    assert panel.genes == tuple(genes) and not panel.absent
    assert panel.read_mode == ("stream" if stream else "indexed")
    for gene in genes:
        one = scan(str(bam), gene=gene, gtf=str(gtf), stream=stream)
        assert one.summary["fragments_on_gene"] > 300
        _same(panel.results[gene], one)


def test_stream_from_stdin_reads_the_file_once(panel_bam, tmp_path):
    """Standard input can be read only once: every gene is counted from that one read."""
    bam, gtf, genes = panel_bam
    code = (
        "import sys, json; from cd22scan.sample.panel import scan_panel;"
        f"p = scan_panel('-', {genes!r}, gtf={str(gtf)!r});"
        "print(json.dumps({g: r.summary['fragments_on_gene'] for g, r in p.results.items()}))"
    )
    with open(bam, "rb") as handle:
        # outside the checkout: there ``import cd22scan`` would find the uncompiled sources
        done = subprocess.run([sys.executable, "-c", code], stdin=handle, capture_output=True,
                              text=True, check=True, cwd=tmp_path)  # fmt: skip
    got = json.loads(done.stdout)
    for gene in genes:
        assert got[gene] == scan(str(bam), gene=gene, gtf=str(gtf)).summary["fragments_on_gene"]


def test_a_gene_on_an_absent_contig_is_left_out_and_said(panel_bam, caplog):
    bam, gtf, genes = panel_bam
    other = Path(gtf).with_name("other.gtf")
    moved = replace(small_gene("+"), contig="chrZ", name="ELSEWHERE")
    other.write_text(Path(gtf).read_text() + write_gtf(moved, other.with_suffix(".x")).read_text())
    panel = scan_panel(str(bam), [*genes, "ELSEWHERE"], gtf=str(other))
    assert panel.genes == tuple(genes)
    assert "chrZ" in panel.absent["ELSEWHERE"]
    assert "ELSEWHERE not scanned" in caplog.text


def test_tables_of_a_panel_are_not_all_the_same(panel_bam):
    """Guard for the test above: the genes really differ (a bug feeding one gene's records to
    all counters would make every table equal)."""
    bam, gtf, genes = panel_bam
    panel = scan_panel(str(bam), genes, gtf=str(gtf), stream=True)
    exons = [panel.results[g].exons.select("start", "fragments") for g in genes]
    assert not exons[0].equals(exons[1]) and not exons[0].equals(exons[2])
    assert all(pl.Series(e["fragments"]).sum() > 0 for e in exons)


def _relapse_bam(tmp: Path) -> Path:
    parts = []
    for index, gene in enumerate(_genes()):
        skip = 0.7 if gene.name == "SMALL" else 0.2
        sim = simulate(tmp / gene.name, seed=60 + index, gene=gene, n_fragments=600,
                       isoforms={"canonical": 1 - skip, "skip:2": skip}, sample="R1")  # fmt: skip
        parts.append(str(sim.bam))
    bam = tmp / "relapse.bam"
    pysam.merge("-f", "-o", str(bam), *parts, catch_stdout=False)
    pysam.index(str(bam))
    return bam


def test_cli_panel_scan_then_compare_per_gene(panel_bam, tmp_path):
    from cd22scan.cli import main

    bam, gtf, genes = panel_bam
    relapse = _relapse_bam(tmp_path / "sim")
    targets = ",".join(genes)
    for path, out in ((bam, "b"), (relapse, "r")):
        assert main(["scan", str(path), "--gtf", str(gtf), "--targets", targets,
                     "-o", str(tmp_path / out)]) == 0  # fmt: skip
    panel = json.loads((tmp_path / "b" / "P1.panel.json").read_text())
    assert panel["genes"] == genes and panel["targets_absent"] == {}
    for gene in genes:  # each gene folder is a complete one-gene scan
        assert (tmp_path / "b" / gene / "P1.summary.json").is_file()
    out = tmp_path / "cmp"
    argv = ["compare", "--baseline", str(tmp_path / "b"), "--relapse", str(tmp_path / "r")]
    assert main([*argv, "-o", str(out)]) == 0
    verdict = pl.read_csv(out / "verdict.tsv", separator="\t")
    assert verdict["gene"].to_list() == genes
    splicing = dict(zip(verdict["gene"], verdict["aberrant_splicing"], strict=True))
    assert splicing == {"SMALL": True, "FAR": False, "SMALLM": False}
    for gene in genes:
        assert (out / gene / "report.html").is_file() and (out / gene / "events.tsv").is_file()
    events = pl.read_csv(out / "events.tsv", separator="\t")
    assert set(events["gene"]) == set(genes)


def test_cli_targets_refusals(panel_bam, tmp_path):
    from cd22scan.cli import main

    bam, gtf, _ = panel_bam
    assert main(["scan", str(bam), "--targets", "CD19,NOPE", "-o", str(tmp_path / "x")]) == 64
    assert main(["scan", str(bam), "--gtf", str(gtf), "--targets", "SMALL", "--table",
                 "exons", "-o", "-"]) == 64  # fmt: skip
    assert main(["scan", str(bam), "--targets", "all", "--region", "chrT:1-100",
                 "-o", str(tmp_path / "y")]) == 64  # fmt: skip


def test_targets_alone_means_the_b_all_targets():
    from cd22scan.cli import build_parser

    args = build_parser().parse_args(["scan", "x.bam", "--targets", "-o", "out"])
    assert args.targets == "b-all"
    args = build_parser().parse_args(["scan", "x.bam", "-o", "out"])
    assert args.targets is None  # no --targets: one gene (--gene, CD22)
