"""Alleles below 5 % VAF at depth (issue 14): the sample's own substitution error rate decides
whether an allele is tested, not a hard VAF floor; mutation rows get a q-value family of their
own so that many alleles do not dilute the splicing evidence."""

from __future__ import annotations

import polars as pl
import pytest

from cd22scan.calling.variants import ERROR_RATE_FLOOR, mismatch_rate
from cd22scan.comparison.pair import Thresholds, _q_values, _row, compare_samples
from cd22scan.demo.simulate import coding_positions, simulate, small_gene, write_gtf
from cd22scan.sample.scan import scan


def _scan(root, name, seed, *, n, error_rate=0.002, variants=(), reference_seed=7):
    gene = small_gene("+")
    sim = simulate(root / name, seed=seed, gene=gene, n_fragments=n, sample=name,
                   error_rate=error_rate, variants=list(variants),
                   reference_seed=reference_seed)  # fmt: skip
    gtf = root / "g.gtf"
    if not gtf.exists():
        write_gtf(gene, gtf)
    return scan(str(sim.bam), gene=gene.name, gtf=str(gtf), reference=str(sim.reference))


@pytest.mark.parametrize("error_rate", [0.002, 0.01])
def test_mismatch_rate_measures_the_simulated_error(tmp_path, error_rate):
    # a planted allele at VAF 0.3 is an allele, not an error: it must not raise the rate
    site = coding_positions(small_gene("+"))[100]
    result = _scan(tmp_path, "S", 3, n=2000, error_rate=error_rate,
                   variants=[("snv", site, None, 0.3)])  # fmt: skip
    # the simulator draws a wrong base with probability error_rate, one of three letters
    assert mismatch_rate(result.bases) == pytest.approx(error_rate / 3, rel=0.25)


def test_mismatch_rate_floor_and_shallow_sites():
    empty = pl.DataFrame(schema={x: pl.Int64 for x in ("A", "C", "G", "T")})
    assert mismatch_rate(empty) == ERROR_RATE_FLOOR
    shallow = pl.DataFrame({"A": [5], "C": [1], "G": [0], "T": [0]})  # depth < 20: not used
    assert mismatch_rate(shallow) == ERROR_RATE_FLOOR
    deep = pl.DataFrame({"A": [997, 60], "C": [3, 40], "G": [0, 0], "T": [0, 0]})
    # site 1: 3 errors of 1000 reads; site 2: C at 40 % is an allele, A at 60 % the major letter
    assert mismatch_rate(deep) == pytest.approx(3 / (3 * 1100))


@pytest.fixture(scope="module")
def deep_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("deep")
    site = coding_positions(small_gene("+"))[300]
    base = _scan(root, "B", 11, n=5000)
    rel = _scan(root, "R", 12, n=5000, variants=[("snv", site, None, 0.04)])
    return base, rel


@pytest.mark.slow
def test_allele_below_five_percent_is_called_at_depth(deep_pair):
    base, rel = deep_pair
    events = compare_samples(base, rel).events.filter(pl.col("event_type") == "mutation")
    planted = events.sort("relapse_value", descending=True).row(0, named=True)
    # ~1100x over the site: ~45 alt reads at VAF ~0.04, which the 5 % floor never tested
    assert planted["relapse_reads"] >= 25 and 0.025 < planted["relapse_value"] < 0.05, planted
    assert planted["called"] and planted["escape"] and planted["filter"] == "PASS", planted
    # nothing else: sequencing errors at this depth (0.2 %) are explained by the error model
    assert events.filter(pl.col("called")).height == 1, events


@pytest.mark.slow
def test_same_allele_is_not_tested_under_the_error_models_reach(deep_pair):
    base, rel = deep_pair
    # with min_delta_vaf above the allele's VAF no ΔVAF could reach it: it is not tested at all
    events = compare_samples(base, rel, thresholds=Thresholds(min_delta_vaf=0.05)).events
    mutations = events.filter(pl.col("event_type") == "mutation")
    assert mutations.filter(pl.col("relapse_value") < 0.05).height == 0, mutations


def test_mutation_rows_have_their_own_family():
    def row(kind, p):
        return _row(kind, "x", p_value=p, baseline_reads=10, relapse_reads=10)

    splicing = [row("intron_retention", 0.004), row("novel_junction", 0.5)]
    alone = _q_values(splicing)
    many_snps = [row("mutation", 1e-12) for _ in range(30)]
    together = _q_values(splicing + many_snps)
    # 30 tiny mutation p-values would have lifted the retention row under one BH family
    # (0.004 * 32 / 31 < 0.05 instead of 0.004 * 2 / 1); they leave it as it was
    assert together[:2] == alone == [pytest.approx(0.008), pytest.approx(0.5)]
    assert together[2:] == [pytest.approx(1e-12)] * 30
