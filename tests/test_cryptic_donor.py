"""An exon extended by a cryptic donor is a novel junction, not intron retention (issue 14:
retention measured from boundary-spanning reads called it retention in 3 of 3 held-out pairs)."""

from __future__ import annotations

import polars as pl
import pytest

from cd22scan.calling import splicing
from cd22scan.comparison.pair import compare_samples
from cd22scan.demo.simulate import isoform_segments, simulate, small_gene, write_gtf
from cd22scan.sample.scan import scan


def test_extend_moves_the_donor_on_either_strand():
    plus, minus = small_gene("+"), small_gene("-")
    # exon 3 of + is genomic (2250, 2346): its donor (right end) moves 35 nt into intron 3
    assert isoform_segments(plus, "extend:3:35")[2] == (2250, 2381)
    # exon 3 of − is genomic (2796, 2967): its donor is the left end
    assert isoform_segments(minus, "extend:3:35")[3] == (2761, 2967)
    with pytest.raises(ValueError, match="reaches the next exon"):
        isoform_segments(plus, "extend:3:500")


@pytest.fixture(scope="module", params=["+", "-"])
def pair(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("cryptic")
    gene = small_gene(request.param)
    gtf = write_gtf(gene, root / "g.gtf")
    out = []
    for name, seed, isoforms in (
        ("B", 31, {"canonical": 1.0}),
        ("R", 32, {"canonical": 0.6, "extend:3:35": 0.4}),
    ):
        sim = simulate(root / name, seed=seed, gene=gene, n_fragments=3000, sample=name,
                       isoforms=isoforms, reference_seed=7)  # fmt: skip
        out.append(scan(str(sim.bam), gene=gene.name, gtf=str(gtf)))
    return gene, out[0], out[1]


@pytest.mark.slow
def test_cryptic_donor_is_a_novel_junction_not_retention(pair):
    gene, base, rel = pair
    events = compare_samples(base, rel).events
    ir3 = events.filter(pl.col("feature") == "intron 3").row(0, named=True)
    assert not ir3["called"], ir3
    novel = events.filter((pl.col("event_type") == "novel_junction") & pl.col("called"))
    assert novel.height == 1, novel
    row = novel.row(0, named=True)
    assert row["escape"] and row["direction"] == "up" and row["relapse_value"] > 0.25, row
    # the junction runs from 35 nt past exon 3's end to exon 4 (gene orientation)
    start, end = (int(x) for x in row["feature"].split(":")[1].split("-"))
    introns = rel.introns.filter(pl.col("intron") == 3).row(0, named=True)
    if gene.strand == "+":
        assert (start, end) == (introns["start"] + 35, introns["end"])
    else:
        assert (start, end) == (introns["start"], introns["end"] - 35)


@pytest.mark.slow
def test_boundary_reads_alone_would_call_it_retention(pair):
    """The check can fail: without the intron body (the earlier measure) the same reads make a
    retention ratio that rises by more than the ΔIR threshold."""
    _, base, rel = pair
    ir = {}
    for result in (base, rel):
        by_boundaries = splicing.intron_retention(result.introns, result.junctions, result.model)
        by_body = splicing.intron_retention(
            result.introns, result.junctions, result.model, result.bases
        )
        ir[result.sample] = (
            by_boundaries.filter(pl.col("intron") == 3)["ir_ratio"][0],
            by_body.filter(pl.col("intron") == 3).row(0, named=True),
        )
    assert ir["R"][0] - ir["B"][0] > 0.1  # boundaries: looks like retention
    body_r = ir["R"][1]
    assert body_r["retained_from"] == "intron body" and body_r["ir_ratio"] < 0.02, body_r
