"""cd22scan.calling.splicing: hand-made junction tables for the formulas, simulated BAMs for
the calls."""

from __future__ import annotations

import math

import polars as pl
import pytest

import cd22scan
from cd22scan.calling import splicing
from cd22scan.demo.simulate import GeneSpec, cd22_grch38, simulate, small_gene, write_gtf
from cd22scan.target.annotation import Exon, GeneModel

# --- hand-made models and tables -----------------------------------------------------------------

# Four exons at the same genomic places on both strands; on − exon 1 is the rightmost.
_GENOMIC = ((101, 200), (301, 400), (501, 600), (701, 800))


def _model(strand: str) -> GeneModel:
    ordered = _GENOMIC if strand == "+" else tuple(reversed(_GENOMIC))
    return GeneModel(
        gene="TOY",
        transcript="TOY-T1",
        contig="chrT",
        strand=strand,
        build=None,
        exons=tuple(Exon(i, s, e) for i, (s, e) in enumerate(ordered, start=1)),
        cds_start=150,
        cds_end=750,
        source="test",
        selection="test",
    )


def _junctions(rows: list[tuple[int, int, int]], strand: str = "+") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "start": [r[0] for r in rows],
            "end": [r[1] for r in rows],
            "strand": [strand] * len(rows),
            "reads": [r[2] for r in rows],
        },
        schema={"start": pl.Int64, "end": pl.Int64, "strand": pl.Utf8, "reads": pl.Int64},
    )


def _row(frame: pl.DataFrame, **where) -> dict:
    for name, value in where.items():
        frame = frame.filter(pl.col(name) == value)
    assert frame.height == 1, (where, frame)
    return frame.row(0, named=True)


def test_psi_formula_plus_strand():
    model = _model("+")
    table = _junctions(
        [
            (201, 300, 30),  # e1→e2
            (401, 500, 50),  # e2→e3
            (201, 500, 10),  # e1→e3 skips exon 2
            (601, 700, 40),  # e3→e4
            (401, 700, 5),  # e2→e4 skips exon 3, and uses exon 2's donor
        ]
    )
    # an antisense junction is not this gene's splicing
    table = pl.concat([table, _junctions([(201, 500, 1000)], strand="-")])
    psi = splicing.exon_psi(table, model)
    assert psi["exon"].to_list() == [2, 3]
    ex2 = _row(psi, exon=2)
    assert (ex2["upstream_reads"], ex2["downstream_reads"], ex2["skipping_reads"]) == (30, 55, 10)
    assert ex2["inclusion_reads"] == 85
    assert ex2["psi"] == pytest.approx(42.5 / (42.5 + 10))
    assert ex2["psi_upstream"] == pytest.approx(30 / 40)
    assert ex2["psi_downstream"] == pytest.approx(55 / 65)
    ex3 = _row(psi, exon=3)
    # upstream of exon 3: e2→e3 and e1→e3 both end at its acceptor
    assert (ex3["upstream_reads"], ex3["downstream_reads"], ex3["skipping_reads"]) == (60, 40, 5)
    assert ex3["psi"] == pytest.approx(50 / 55)


def test_psi_formula_minus_strand_uses_transcript_order():
    model = _model("-")  # exon 1 = 701-800, exon 2 = 501-600, exon 3 = 301-400
    table = _junctions(
        [
            (601, 700, 30),  # e1→e2 (donor 701 is the higher coordinate)
            (401, 500, 50),  # e2→e3
            (401, 700, 10),  # e1→e3 skips exon 2
        ],
        strand="-",
    )
    ex2 = _row(splicing.exon_psi(table, model), exon=2)
    assert (ex2["start"], ex2["end"]) == (501, 600)
    assert (ex2["upstream_reads"], ex2["downstream_reads"], ex2["skipping_reads"]) == (30, 50, 10)
    assert ex2["psi"] == pytest.approx(0.8)


def test_psi_is_null_without_reads():
    psi = splicing.exon_psi(_junctions([]), _model("+"))
    assert psi.height == 2 and psi["psi"].null_count() == 2
    assert psi.schema == pl.Schema(splicing.EXON_PSI_SCHEMA)


@pytest.mark.parametrize("strand", ["+", "-"])
def test_novel_donor_and_acceptor_classification(strand):
    model = _model(strand)
    table = _junctions(
        [
            (201, 300, 9),  # annotated e1–e2 boundary pair: not novel
            (201, 450, 4),  # left side = exon end 200, right side 451 is no exon start
            (251, 500, 3),  # left side 250 is no exon end, right side = exon start 501
            (251, 450, 2),  # neither
            (1001, 1100, 1),  # outside the gene
        ],
        strand=strand,
    )
    novel = splicing.novel_junctions(table, model)
    assert novel.schema == pl.Schema(splicing.NOVEL_JUNCTION_SCHEMA)
    kinds = {(r["start"], r["end"]): r["type"] for r in novel.iter_rows(named=True)}
    if strand == "+":  # donor = left side
        assert kinds[(201, 450)] == "novel_acceptor"
        assert kinds[(251, 500)] == "novel_donor"
    else:  # donor = right (higher) side
        assert kinds[(201, 450)] == "novel_donor"
        assert kinds[(251, 500)] == "novel_acceptor"
    assert kinds[(251, 450)] == "novel_both"
    assert kinds[(1001, 1100)] == "novel_both"
    assert (201, 300) not in kinds
    row = _row(novel, start=201, end=450)
    if strand == "+":
        assert (row["donor_pos"], row["acceptor_pos"], row["donor_exon"]) == (200, 451, 1)
    else:
        assert (row["donor_pos"], row["acceptor_pos"], row["acceptor_exon"]) == (451, 200, 4)
    assert row["in_gene"] and not _row(novel, start=1001)["in_gene"]


@pytest.mark.parametrize("strand", ["+", "-"])
def test_skipping_events_hand_made(strand):
    model = _model(strand)
    # the same transcript-order junctions on both strands
    if strand == "+":
        e12, e13, e14, e34 = (201, 300), (201, 500), (201, 700), (601, 700)
    else:
        e12, e13, e14, e34 = (601, 700), (401, 700), (201, 700), (201, 300)
    table = _junctions(
        [(*e12, 60), (*e13, 20), (*e14, 5), (*e34, 50), (251, 500, 7)], strand=strand
    )
    events = splicing.skipping_events(table, model)
    assert events["event"].to_list() == ["Δex2", "Δex2-3"]
    d2 = _row(events, event="Δex2")
    assert (d2["donor_exon"], d2["acceptor_exon"], d2["skipped_exons"]) == (1, 3, "2")
    assert (d2["start"], d2["end"], d2["reads"], d2["canonical_reads"]) == (*e13, 20, 60)
    assert d2["donor_share"] == pytest.approx(20 / 80)
    assert d2["known_event"] is None
    assert _row(events, event="Δex2-3")["donor_share"] == pytest.approx(5 / 65)
    # exon 2 is 100 nt of CDS: a frameshift
    assert d2["frame"] == "frameshift"


def test_skipping_events_known_event_name():
    from cd22scan.target.annotation import builtin_model

    model = builtin_model("CD22", "GRCh38")
    # §2.4: Δex2 = chr19:35329231-35332546, Δex5-6 = 35336342-35340880
    table = _junctions([(35329231, 35332546, 12), (35336342, 35340880, 3)])
    events = splicing.skipping_events(table, model)
    assert events["event"].to_list() == ["Δex2", "Δex5-6"]
    assert events["known_event"].to_list() == ["Δex2", "Δex5-6"]
    assert events["frame"].to_list() == ["start-lost", "in-frame"]


def test_intron_retention_formula():
    model = _model("+")
    introns = pl.DataFrame(
        {
            "intron": [1, 2, 3],
            "start": [201, 401, 601],
            "end": [300, 500, 700],
            "left_boundary": [0, 10, 0],
            "right_boundary": [0, 30, 0],
            "inside": [0, 80, 0],
        }
    )
    table = _junctions([(201, 300, 40), (401, 500, 60)])
    ir = splicing.intron_retention(introns, table, model)
    assert ir.schema == pl.Schema(splicing.INTRON_RETENTION_SCHEMA)
    assert ir["spliced_reads"].to_list() == [40, 60, 0]
    assert ir["retained_reads"].to_list() == [0.0, 20.0, 0.0]
    assert ir["ir_ratio"].to_list() == [0.0, pytest.approx(20 / 80), None]


def test_expression_formula():
    model = _model("+")
    exons = pl.DataFrame(
        {"exon": [1, 2, 3, 4], "length": [100, 200, 100, 100], "fragments": [50, 100, 0, 40]}
    )
    summary = {"library_size": 2_000_000, "fragments_on_gene": 150}
    expr = splicing.expression(exons, summary, model)
    assert expr.schema == pl.Schema(splicing.EXPRESSION_SCHEMA)
    assert expr["fragments_per_kb"].to_list() == [500.0, 500.0, 0.0, 400.0]
    # median of (0, 400, 500, 500) = 450
    assert expr["relative_coverage"].to_list() == pytest.approx(
        [500 / 450, 500 / 450, 0, 400 / 450]
    )
    assert expr["cpm"].to_list() == [75.0] * 4
    assert splicing.expression(exons, {"fragments_on_gene": 1}, model)["cpm"].null_count() == 4


# --- simulated samples ---------------------------------------------------------------------------

PLANTED = {"canonical": 0.4, "skip:2": 0.4, "retain:3": 0.2}  # exon 2 in 60 % of molecules


def _scan_small(tmp_path_factory, gene: GeneSpec, isoforms, seed: int, n: int = 4000):
    out = tmp_path_factory.mktemp(f"sim_{gene.name}_{seed}")
    sim = simulate(out, seed=seed, gene=gene, isoforms=isoforms, n_fragments=n)
    gtf = write_gtf(sim.gene, out / "gene.gtf")
    return sim, cd22scan.scan(str(sim.bam), gtf=str(gtf), gene=sim.gene.name)


@pytest.fixture(scope="module", params=["+", "-"])
def planted(request, tmp_path_factory):
    return _scan_small(tmp_path_factory, small_gene(request.param), PLANTED, seed=22)


@pytest.fixture(scope="module", params=["+", "-"])
def canonical(request, tmp_path_factory):
    return _scan_small(tmp_path_factory, small_gene(request.param), {"canonical": 1.0}, seed=5)


def _psi_sd(inclusion: int, skipping: int) -> float:
    """Delta-method SD of psi = (I/2) / (I/2 + S) with Poisson junction counts.

    The two inclusion junctions share molecules (a fragment may span both), so Var(I) is taken
    as 2·I (fully correlated), the conservative end; Var(S) = S.
    """
    x, y = inclusion / 2, skipping
    var_x, var_y = 2 * inclusion / 4, skipping
    return math.sqrt(y * y * var_x + x * x * var_y) / (x + y) ** 2


@pytest.mark.slow
def test_planted_exon2_psi(planted):
    sim, result = planted
    psi = splicing.exon_psi(result.junctions, result.model)
    ex2 = _row(psi, exon=2)
    up, skip = ex2["upstream_reads"], ex2["skipping_reads"]
    assert up + skip > 300
    # psi_upstream: e1→e2 vs e1→e3 sit at the same transcript position, so given their total,
    # e1→e2 reads are Binomial(up + skip, 0.6): 4 SD.
    tolerance = 4 * math.sqrt(0.6 * 0.4 / (up + skip))
    assert ex2["psi_upstream"] == pytest.approx(0.6, abs=tolerance)
    # psi from the simulator's own junction truth (0-based keys) is the same formula
    truth = {(s0 + 1, e0): n for (s0, e0), n in sim.truth["junctions"].items()}
    e2 = result.model.exon(2)
    t_incl = sum(n for (s, e), n in truth.items() if e == e2.start - 1 or s == e2.end + 1)
    t_skip = sum(n for (s, e), n in truth.items() if s < e2.start and e > e2.end)
    assert (ex2["inclusion_reads"], ex2["skipping_reads"]) == (t_incl, t_skip)
    assert ex2["psi"] == pytest.approx((t_incl / 2) / (t_incl / 2 + t_skip))
    # exons 3-5 are in every molecule
    others = psi.filter(pl.col("exon") != 2)
    assert others["psi"].min() == 1.0


@pytest.mark.slow
def test_exon_psi_is_unbiased_away_from_the_transcript_ends(tmp_path_factory):
    """With terminal exons longer than the fragments, the rMATS-style psi itself ≈ 0.6."""
    for strand in "+-":
        gene = GeneSpec(
            contig="chrT",
            strand=strand,
            exons=((1000, 1600), (1900, 2050), (2250, 2346), (2796, 2967), (3187, 3800)),
            name="LONGENDS" if strand == "+" else "LONGENDSM",
            contig_length=6000,
        )
        isoforms = {"canonical": 0.6, "skip:2": 0.4}
        _, result = _scan_small(tmp_path_factory, gene, isoforms, seed=7, n=5000)
        ex2 = _row(splicing.exon_psi(result.junctions, result.model), exon=2)
        sd = _psi_sd(ex2["inclusion_reads"], ex2["skipping_reads"])
        assert ex2["psi"] == pytest.approx(0.6, abs=4 * sd), (strand, ex2, sd)


@pytest.mark.slow
def test_planted_skip_event(planted):
    _, result = planted
    events = splicing.skipping_events(result.junctions, result.model)
    assert events["event"].to_list() == ["Δex2"]
    event = events.row(0, named=True)
    assert event["skipped_exons"] == "2" and event["known_event"] is None
    assert (event["donor_exon"], event["acceptor_exon"]) == (1, 3)
    assert event["frame"] == "in-frame"  # small_gene exon 2 is 150 (+) / 135 (−) coding nt
    n = event["reads"] + event["canonical_reads"]
    assert event["donor_share"] == pytest.approx(0.4, abs=4 * math.sqrt(0.24 / n))
    assert splicing.novel_junctions(result.junctions, result.model).height == 0


@pytest.mark.slow
def test_planted_intron3_retention(planted):
    _, result = planted
    ir = splicing.intron_retention(result.introns, result.junctions, result.model)
    assert ir["intron"].to_list() == [1, 2, 3, 4, 5]
    ir3 = _row(ir, intron=3)["ir_ratio"]
    others = ir.filter(pl.col("intron") != 3)["ir_ratio"].to_list()
    assert ir3 > 0.1
    assert max(others) < 0.02
    assert _row(ir, intron=3)["spliced_reads"] > 0


@pytest.mark.slow
def test_canonical_sample_has_full_inclusion_and_no_events(canonical):
    _, result = canonical
    psi = splicing.exon_psi(result.junctions, result.model)
    assert psi["exon"].to_list() == [2, 3, 4, 5]
    assert psi["psi"].to_list() == [1.0] * 4
    assert (psi["inclusion_reads"] > 100).all()
    assert splicing.skipping_events(result.junctions, result.model).height == 0
    assert splicing.novel_junctions(result.junctions, result.model).height == 0
    ir = splicing.intron_retention(result.introns, result.junctions, result.model)
    assert ir["ir_ratio"].max() < 0.02


@pytest.mark.slow
def test_expression_of_a_lost_exon(canonical, tmp_path_factory):
    sim, full = canonical
    _, lost = _scan_small(tmp_path_factory, sim.gene, {"skip:2": 1.0}, seed=6)
    before = splicing.expression(full.exons, full.summary, full.model)
    after = splicing.expression(lost.exons, lost.summary, lost.model)
    assert _row(before, exon=2)["relative_coverage"] > 0.5
    assert _row(after, exon=2)["relative_coverage"] < 0.05
    row = before.row(0, named=True)
    assert row["gene_fragments"] == sim.truth["gene_fragments"]
    assert row["cpm"] == pytest.approx(row["gene_fragments"] / row["library_size"] * 1e6)


@pytest.mark.slow
def test_call_events_adds_the_sample(canonical):
    _, result = canonical
    frames = splicing.call_events(result)
    assert set(frames) == {
        "expression",
        "exon_psi",
        "skipping_events",
        "novel_junctions",
        "intron_retention",
    }
    for frame in frames.values():
        assert frame.columns[0] == "sample"
        assert frame["sample"].unique().to_list() in ([result.sample], [])


@pytest.mark.slow
def test_cd22_grch38_delta_ex2_is_the_known_event(tmp_path_factory):
    out = tmp_path_factory.mktemp("cd22")
    sim = simulate(
        out,
        seed=3,
        gene=cd22_grch38(),
        isoforms={"canonical": 0.6, "skip:2": 0.4},
        n_fragments=3000,
    )
    result = cd22scan.scan(str(sim.bam))
    assert result.model.gene == "CD22" and result.model.build == "GRCh38"
    events = splicing.skipping_events(result.junctions, result.model)
    event = _row(events, event="Δex2")
    assert event["known_event"] == "Δex2"
    assert (event["start"], event["end"]) == (35329231, 35332546)  # domain notes §2.4
    assert event["frame"] == "start-lost"
    assert event["reads"] >= 5  # exon 1 is 44 nt: few fragments reach its donor
    ex2 = _row(splicing.exon_psi(result.junctions, result.model), exon=2)
    n = ex2["upstream_reads"] + ex2["skipping_reads"]
    assert ex2["psi_upstream"] == pytest.approx(0.6, abs=4 * math.sqrt(0.24 / n))


def test_intron_retention_on_the_intron_body():
    model = _model("+")
    introns = pl.DataFrame(
        {
            "intron": [1, 2],
            "start": [201, 401],
            "end": [400, 460],
            "left_boundary": [50, 10],
            "right_boundary": [4, 30],
            "inside": [60, 80],
        }
    )
    # intron 1: an exon extension covers its first 40 nt at depth 100, the body (251-350) has
    # depth 6 except 20 uncovered positions (absent from the table: depth 0)
    pos = list(range(201, 241)) + [p for p in range(251, 351) if not 300 <= p < 320]
    depth = [100] * 40 + [6] * 80
    bases = pl.DataFrame({"pos": pos, "depth": depth})
    # intron 1 is spliced canonically by 44 reads and from a cryptic donor 35 nt into it by 20
    # (same acceptor): both splice across its end, so the spliced side counts 64 (IRFinder)
    table = _junctions([(201, 400, 44), (236, 400, 20), (401, 460, 60)])
    ir = splicing.intron_retention(introns, table, model, bases)
    one, two = ir.row(0, named=True), ir.row(1, named=True)
    assert one["retained_from"] == "intron body" and one["body_depth"] == 6.0
    assert one["spliced_reads"] == 44 and one["spliced_any"] == 64
    assert one["retained_reads"] == 6.0 and one["ir_ratio"] == pytest.approx(6 / 70)
    # intron 2 is 60 nt: no body after 50 nt flanks, so the boundary reads stand in
    assert two["retained_from"] == "boundaries" and two["body_depth"] is None
    assert two["retained_reads"] == 20.0
