"""Baseline vs relapse: planted escapes are called with the right type, feature and name; pairs
without a planted change call nothing. Simulated on ``small_gene("+")`` (6 exons, fast)."""

from __future__ import annotations

import json

import polars as pl
import pytest
from Bio.Seq import Seq

from cd22scan import scan
from cd22scan.comparison.pair import (
    EVENT_COLUMNS,
    NO_EVIDENCE,
    VERDICT_COLUMNS,
    Thresholds,
    _mechanism,
    _q_values,
    compare_samples,
)
from cd22scan.demo.simulate import (
    cd22_grch38,
    coding_positions,
    reference_window,
    simulate,
    small_gene,
    write_gtf,
)

GENE = small_gene("+")
N = 3000

pytestmark = pytest.mark.slow  # every test scans 3000-fragment samples: 1-6 s each


def _scan(tmp, sample: str, seed: int, **kwargs):
    out = tmp / sample
    sim = simulate(out, seed=seed, gene=GENE, sample=sample, n_fragments=N, **kwargs)
    gtf = write_gtf(GENE, out / "gene.gtf")
    return scan(str(sim.bam), gtf=str(gtf), gene=GENE.name, reference=str(sim.reference))


def _called(comparison) -> pl.DataFrame:
    return comparison.events.filter(pl.col("called"))


def _one(comparison, event_type: str, feature: str) -> dict:
    rows = comparison.events.filter(
        (pl.col("event_type") == event_type) & (pl.col("feature") == feature)
    )
    assert rows.height == 1, comparison.events
    return rows.row(0, named=True)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    return _scan(tmp_path_factory.mktemp("base"), "BASE", seed=21)


def test_no_change_between_two_seeds_calls_nothing(baseline, tmp_path):
    other = _scan(tmp_path, "REL", seed=22)
    comparison = compare_samples(baseline, other)
    assert comparison.pair == "BASE_vs_REL"
    assert comparison.events.schema == pl.Schema(EVENT_COLUMNS)
    assert comparison.verdict.schema == pl.Schema(VERDICT_COLUMNS)
    assert _called(comparison).height == 0, _called(comparison)
    verdict = comparison.verdict.row(0, named=True)
    assert not (verdict["antigen_loss"] or verdict["aberrant_splicing"] or verdict["mutation"])
    assert verdict["verdict"] == "no evidence of antigen loss, mutation or aberrant splicing"
    assert json.loads(verdict["thresholds"]) == Thresholds().as_dict()
    # every tested row has a q-value, and BH q >= p
    tested = comparison.events.filter(pl.col("p_value").is_not_null())
    assert tested.height > 10
    assert (tested["q_value"] >= tested["p_value"] - 1e-12).all()


def test_two_baseline_replicates_call_nothing(tmp_path):
    # a second library of the same baseline: same settings, another seed, and a small isoform
    # wobble (2 % skipping) that is biological noise, not an escape
    one = _scan(tmp_path, "P1_BASE_A", seed=31, isoforms={"canonical": 0.99, "skip:2": 0.01})
    two = _scan(tmp_path, "P1_BASE_B", seed=32, isoforms={"canonical": 0.97, "skip:2": 0.03})
    comparison = compare_samples(one, two)
    assert _called(comparison).height == 0, _called(comparison)


def test_expression_drop_is_antigen_loss(baseline, tmp_path):
    # The simulated BAM holds only the gene, so its library size (mapped records) would shrink
    # with the gene's fragments and CPM would not change. In real data the library is the whole
    # transcriptome; so the relapse is simulated with a quarter of the fragments and given the
    # baseline's library size.
    sim_low = simulate(tmp_path / "LOW4", seed=24, gene=GENE, sample="LOW", n_fragments=N // 4)
    low = scan(str(sim_low.bam), gtf=str(write_gtf(GENE, tmp_path / "g.gtf")), gene=GENE.name)
    low.summary["library_size"] = baseline.summary["library_size"]
    comparison = compare_samples(baseline, low)
    row = _one(comparison, "expression_loss", "gene")
    assert row["called"] and row["direction"] == "down"
    assert row["effect"] == pytest.approx(-2.0, abs=0.3)
    assert row["q_value"] < 0.05
    verdict = comparison.verdict.row(0, named=True)
    assert verdict["antigen_loss"] and not verdict["aberrant_splicing"]
    assert verdict["verdict"].startswith("antigen loss: gene expression log2FC -")
    # a uniform drop is not an exon loss
    assert not _called(comparison).filter(pl.col("event_type") == "exon_loss").height


def test_exon2_skipping_and_intron3_retention(baseline, tmp_path):
    relapse = _scan(tmp_path, "REL", seed=25, isoforms={"canonical": 0.6, "skip:2": 0.4})
    comparison = compare_samples(baseline, relapse)
    row = _one(comparison, "exon_skipping", "Δex2")
    assert row["called"] and row["direction"] == "up"
    assert row["baseline_reads"] == 0 and row["baseline_value"] == 0.0
    assert row["effect"] == pytest.approx(0.4, abs=0.12)
    called = _called(comparison)
    assert set(called["event_type"]) <= {"exon_skipping"}, called
    verdict = comparison.verdict.row(0, named=True)
    assert verdict["aberrant_splicing"] and not verdict["antigen_loss"]
    assert verdict["verdict"].startswith("aberrant splicing: Δex2 ΔPSI +0.")

    retained = _scan(tmp_path, "RET", seed=26, isoforms={"canonical": 0.7, "retain:3": 0.3})
    comparison = compare_samples(baseline, retained)
    row = _one(comparison, "intron_retention", "intron 3")
    assert row["called"] and row["direction"] == "up"
    assert row["effect"] > 0.15
    assert set(_called(comparison)["feature"]) == {"intron 3"}, _called(comparison)
    assert comparison.verdict["aberrant_splicing"][0]


def _coding(seed: int) -> tuple[list[int], str]:
    (ws, _), ref = reference_window(GENE, seed)
    positions = coding_positions(GENE)
    return positions, "".join(ref[p - ws] for p in positions)


def _alt_for(coding: str, index: int, want: str) -> str | None:
    start = index - index % 3
    ref_aa = str(Seq(coding[start : start + 3]).translate())
    for base in "ACGT":
        if base == coding[index]:
            continue
        codon = list(coding[start : start + 3])
        codon[index % 3] = base
        aa = str(Seq("".join(codon)).translate())
        if (want == "stop" and aa == "*") or (want == "missense" and aa not in ("*", ref_aa)):
            return base
    return None


def test_planted_mutations_are_called_with_their_names(baseline, tmp_path):
    seed = 21  # the baseline's seed: same reference sequence, so the same alleles
    positions, coding = _coding(seed)
    mis = next(i for i in range(120, 200) if _alt_for(coding, i, "missense"))
    stop = next(i for i in range(360, 600) if _alt_for(coding, i, "stop"))
    # a 1-bp deletion of a base unlike both neighbours, so its HGVS name does not shift
    dele = next(i for i in range(500, 560) if coding[i] not in (coding[i - 1], coding[i + 1]))
    variants = [
        ("snv", positions[mis], _alt_for(coding, mis, "missense"), 0.15),
        ("snv", positions[stop], _alt_for(coding, stop, "stop"), 0.3),
        ("del", positions[dele] - 1, 1, 0.3),
    ]
    relapse = _scan(tmp_path, "REL", seed=seed, variants=variants)
    comparison = compare_samples(baseline, relapse)
    called = _called(comparison)
    assert set(called["event_type"]) == {"mutation"}, called
    by_name = {row["hgvs_c"]: row for row in called.iter_rows(named=True)}
    mis_name = f"c.{mis + 1}{coding[mis]}>{_alt_for(coding, mis, 'missense')}"
    stop_name = f"c.{stop + 1}{coding[stop]}>{_alt_for(coding, stop, 'stop')}"
    expected = {
        mis_name: "missense_variant",
        stop_name: "stop_gained",
        f"c.{dele + 1}del": "frameshift_variant",
    }
    assert {k: by_name[k]["consequence"] for k in by_name} == expected
    for name, row in by_name.items():
        assert row["feature"] == name and row["direction"] == "up"
        assert row["baseline_reads"] <= 2  # a sequencing error may match the allele
    assert by_name[mis_name]["effect"] == pytest.approx(0.15, abs=0.07)
    assert by_name[f"c.{dele + 1}del"]["effect"] == pytest.approx(0.3, abs=0.1)
    assert by_name[f"c.{dele + 1}del"]["hgvs_p"].startswith("p.(")
    assert by_name[stop_name]["hgvs_p"].endswith(f"{stop // 3 + 1}Ter)")
    verdict = comparison.verdict.row(0, named=True)
    assert verdict["mutation"] and verdict["n_called"] == 3
    assert verdict["verdict"].startswith("mutation: c.")


def test_splice_donor_snv_is_seen_in_retained_intron_reads(tmp_path):
    # An intronic base is covered only by unspliced molecules, so a donor +1 SNV is visible in
    # RNA only through intron retention; both samples retain some of intron 2 so the site has
    # depth in both, and the relapse (mutant) retains more, as a broken donor would.
    seed = 51
    positions, _ = _coding(seed)
    donor0 = GENE.exon(2)[1]  # first intronic base of intron 2 (0-based)
    last_c = positions.index(donor0 - 1) + 1  # c. of the exon's last base
    base = _scan(tmp_path, "BASE", seed=seed, isoforms={"canonical": 0.9, "retain:2": 0.1})
    relapse = _scan(
        tmp_path,
        "REL",
        seed=seed,
        isoforms={"canonical": 0.7, "retain:2": 0.3},
        variants=[("snv", donor0, None, 0.6)],
    )
    comparison = compare_samples(base, relapse)
    row = _one(comparison, "mutation", f"c.{last_c}+1G>A")
    assert row["called"] and row["direction"] == "up"
    assert row["consequence"] == "splice_donor_variant" and row["hgvs_p"] == "p.?"
    assert row["effect"] == pytest.approx(0.6, abs=0.15)
    assert _one(comparison, "intron_retention", "intron 2")["called"]
    verdict = comparison.verdict.row(0, named=True)
    assert verdict["mutation"] and verdict["aberrant_splicing"]


def test_effect_size_threshold_holds_back_a_significant_tiny_shift(baseline, tmp_path):
    relapse = _scan(tmp_path, "REL", seed=27, isoforms={"canonical": 0.95, "skip:2": 0.05})
    strict = compare_samples(baseline, relapse)
    row = _one(strict, "exon_skipping", "Δex2")
    assert not row["called"]  # ΔPSI ≈ 0.05 < 0.10
    loose = compare_samples(baseline, relapse, thresholds=Thresholds(min_delta_psi=0.01))
    assert _one(loose, "exon_skipping", "Δex2")["q_value"] == row["q_value"]


def test_cd22_grch38_delta_ex2_is_the_known_event(tmp_path):
    gene = cd22_grch38()
    base = simulate(tmp_path / "b", seed=41, gene=gene, sample="CD22_BASE", n_fragments=3000)
    rel = simulate(
        tmp_path / "r",
        seed=42,
        gene=gene,
        sample="CD22_REL",
        n_fragments=3000,
        isoforms={"canonical": 0.5, "skip:2": 0.5},
    )
    comparison = compare_samples(scan(str(base.bam)), scan(str(rel.bam)))
    row = _one(comparison, "exon_skipping", "Δex2")
    assert row["known_event"] == "Δex2"
    assert row["called"] and row["direction"] == "up"
    assert comparison.verdict["gene"][0] == "CD22"
    assert comparison.verdict["aberrant_splicing"][0]


def test_exon_loss_values_share_the_effects_unit_and_0_0_exons_are_untested():
    """exon_loss rows: both values are exon fragments / gene fragments (never a median-normalised
    value beside a null), and an exon with 0 fragments in both samples gets no effect and no p."""
    from types import SimpleNamespace

    import polars as pl

    from cd22scan.comparison.pair import Thresholds, _exon_rows

    def frame(fragments, gene):
        return pl.DataFrame(
            {
                "exon": [1, 2, 3],
                "fragments": fragments,
                "relative_coverage": [None, None, None],
                "gene_fragments": [gene] * 3,
            }
        )

    no_cds = SimpleNamespace(cds_start=None)
    found = _exon_rows(frame([400, 0, 12], 800), frame([0, 0, 30], 60), no_cds, Thresholds())
    rows = {r["feature"]: r for r in found}
    assert rows["exon 1"]["baseline_value"] == 0.5 and rows["exon 1"]["relapse_value"] == 0.0
    assert rows["exon 1"]["effect"] < -5 and rows["exon 1"]["p_value"] < 0.01
    assert rows["exon 2"]["effect"] is None and rows["exon 2"]["p_value"] is None
    assert (rows["exon 2"]["baseline_value"], rows["exon 2"]["relapse_value"]) == (0.0, 0.0)
    assert rows["exon 3"]["baseline_value"] == 12 / 800 and rows["exon 3"]["relapse_value"] == 0.5


# --- verdict semantics: direction, isoforms, what the data could show --------------------------


def test_less_skipping_at_relapse_is_a_change_not_escape(baseline, tmp_path):
    # the reverse of test_exon2_skipping...: skipping falls from 0.4 to 0, a called change in
    # the non-escape direction; it must not turn the verdict nor read as "no change"
    skipping = _scan(tmp_path, "SKIP", seed=25, isoforms={"canonical": 0.6, "skip:2": 0.4})
    comparison = compare_samples(skipping, baseline)
    row = _one(comparison, "exon_skipping", "Δex2")
    assert row["called"] and row["direction"] == "down" and not row["escape"]
    verdict = comparison.verdict.row(0, named=True)
    assert not verdict["aberrant_splicing"]
    assert verdict["aberrant_splicing_status"] == "no escape detected"
    assert verdict["n_escape"] == 0 and verdict["n_changes"] == verdict["n_called"] >= 1
    assert verdict["verdict"].startswith(NO_EVIDENCE)
    assert "changes not counted as escape: Δex2 ΔPSI -0." in verdict["verdict"]


def _gtf_with_skipping_isoform(path) -> str:
    """The small gene's GTF plus a second transcript SMALL-T2 without exon 2 (in-frame, 150 nt)."""
    gtf = write_gtf(GENE, path)
    lines = gtf.read_text().splitlines()
    second_exon = f"\t{GENE.exons[1][0] + 1}\t{GENE.exons[1][1]}\t"
    t2 = [
        line.replace('"SMALL-T1"', '"SMALL-T2"')
        for line in lines
        if '"SMALL-T1"' in line and "\tsim\texon\t" in line and second_exon not in line
    ]
    gtf.write_text("\n".join([*lines, *t2]) + "\n")
    return str(gtf)


def test_skip_made_by_an_annotated_isoform_is_an_isoform_shift(tmp_path):
    base = simulate(tmp_path / "b", seed=21, gene=GENE, sample="BASE", n_fragments=N)
    rel = simulate(
        tmp_path / "r",
        seed=25,
        gene=GENE,
        sample="REL",
        n_fragments=N,
        isoforms={"canonical": 0.6, "skip:2": 0.4},
    )
    gtf = _gtf_with_skipping_isoform(tmp_path / "two.gtf")
    sb, sr = (scan(str(s.bam), gtf=gtf, gene=GENE.name) for s in (base, rel))
    assert sr.model.transcript == "SMALL-T1"  # the chosen transcript still numbers the exons
    junction = sr.junctions.filter(pl.col("skipped_exons") == "2").row(0, named=True)
    assert junction["annotated"] and junction["transcripts"] == "SMALL-T2"
    comparison = compare_samples(sb, sr)
    row = _one(comparison, "isoform_shift", "Δex2")
    assert row["transcripts"] == "SMALL-T2"
    assert row["called"] and row["direction"] == "up" and not row["escape"]  # in-frame
    verdict = comparison.verdict.row(0, named=True)
    assert not verdict["aberrant_splicing"] and verdict["n_escape"] == 0
    assert "isoform shift Δex2 ΔPSI +0." in verdict["verdict"]


def test_thin_relapse_is_not_assessable(baseline, tmp_path):
    thin = simulate(tmp_path / "t", seed=28, gene=GENE, sample="THIN", n_fragments=60)
    relapse = scan(str(thin.bam), gtf=str(write_gtf(GENE, tmp_path / "g.gtf")), gene=GENE.name)
    verdict = compare_samples(baseline, relapse).verdict.row(0, named=True)
    assert verdict["aberrant_splicing_status"].startswith("not assessable (best of the annotated")
    # no reference with the relapse: consequences cannot be named
    assert verdict["mutation_status"].startswith("not assessable (no reference")
    assert "aberrant splicing not assessable" in verdict["verdict"]
    # the well-covered pair of the same gene is assessable for all three
    other = _scan(tmp_path, "REL", seed=22)
    full = compare_samples(baseline, other).verdict.row(0, named=True)
    assert {full[f"{m}_status"] for m in ("antigen_loss", "aberrant_splicing", "mutation")} == {
        "no escape detected"
    }, full


def test_only_pass_mutations_count_as_escape():
    row = {
        "called": True,
        "event_type": "mutation",
        "direction": "up",
        "consequence": "stop_gained",
    }
    assert _mechanism(row) == "mutation"  # no FILTER column yet: PASS
    assert _mechanism({**row, "filter": "PASS"}) == "mutation"
    assert _mechanism({**row, "filter": "strand_bias;duplicates"}) is None
    assert _mechanism({**row, "direction": "down"}) is None
    assert _mechanism({**row, "consequence": "synonymous_variant"}) is None


def test_prespecified_hypotheses_are_not_diluted_by_empty_rows():
    def row(kind, p, reads, known=None):
        return {"event_type": kind, "p_value": p, "baseline_reads": reads, "relapse_reads": reads,
                "known_event": known}  # fmt: skip

    rows = [
        row("expression_loss", 0.03, 3000),
        row("exon_skipping", 0.01, 40, known="Δex2"),
        *[row("novel_junction", 1.0, 0) for _ in range(20)],  # no read in either sample
        row("exon_skipping", 0.004, 12),
        row("intron_retention", 0.5, 30),
    ]
    q = _q_values(rows)
    # expression and the known event: BH over those two only
    assert q[0] == pytest.approx(0.03) and q[1] == pytest.approx(0.02)
    assert q[2:22] == [1.0] * 20  # left out of the correction
    assert q[22] == pytest.approx(0.008) and q[23] == pytest.approx(0.5)
