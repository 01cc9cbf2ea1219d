"""Dispersion learned from a cohort's baselines (comparison.dispersion, issue 14).

The estimators are checked on counts drawn from the models they assume (seeded numpy), the
calibrated test's false calls against the nominal rate on simulated replicate pairs with
biological variability (gamma depth, beta isoform shares, as scripts/validation.py), and the
path through ``run`` on simulated BAMs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from cohort_helpers import replicate_cohort_specs, write_small_cohort
from polars.testing import assert_frame_equal
from simulator import simulate, small_gene

from cd22scan import scan
from cd22scan.calling.stats import (
    beta_binomial_rho_moments,
    beta_binomial_two_sample_test,
    log2_fold_change,
    nb_dispersion_moments,
    poisson_rate_test,
    rho_from_nb_dispersion,
    squeeze_dispersion,
)
from cd22scan.cli import main
from cd22scan.cohort.run import run_cohort
from cd22scan.comparison.dispersion import (
    CALIBRATED_TYPES,
    FEATURE_PRIOR_DF,
    MIN_BASELINES,
    PRIOR_DF,
    calibrate,
    features,
)
from cd22scan.comparison.pair import EVENT_TYPES, Thresholds, compare_samples
from cd22scan.demo.simulate import write_gtf
from cd22scan.errors import UsageError
from cd22scan.outputs.scandir import load_scan
from cd22scan.sample.scan import ScanParams

LIBRARY = 1_000_000


def _beta_binomial(rng: np.random.Generator, n: int, mean: float, rho: float) -> int:
    scale = 1 / rho - 1
    return int(rng.binomial(n, rng.beta(mean * scale, (1 - mean) * scale)))


def _gamma_poisson(rng: np.random.Generator, mean: float, phi: float) -> int:
    return int(rng.poisson(mean * rng.gamma(1 / phi, phi)))


# --- the estimators -------------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.002, 0.01, 0.05])
def test_rho_moments_recover_the_simulated_rho(rho: float) -> None:
    rng = np.random.default_rng(7)
    features = []
    for mean in np.linspace(0.02, 0.6, 25):
        features.append(
            [(_beta_binomial(rng, n := int(rng.integers(100, 2000)), mean, rho), n)
             for _ in range(30)]
        )  # fmt: skip
    estimate, df = beta_binomial_rho_moments(features)
    assert df == 25 * 29
    assert estimate == pytest.approx(rho, rel=0.2)


def test_rho_moments_of_binomial_counts_are_near_zero_and_features_without_spread_ignored() -> None:
    rng = np.random.default_rng(8)
    binomial = [[(int(rng.binomial(500, 0.2)), 500) for _ in range(20)] for _ in range(20)]
    estimate, _ = beta_binomial_rho_moments(binomial)
    assert 0 <= estimate < 5e-4
    # a feature at share 0 (or 1) everywhere, a lone sample and empty samples say nothing
    useless = [[(0, 100)] * 5, [(100, 100)] * 5, [(3, 10)], [(0, 0), (0, 0)]]
    assert beta_binomial_rho_moments(useless) == (0.0, 0)
    assert beta_binomial_rho_moments(binomial + useless)[1] == 20 * 19
    with pytest.raises(ValueError):
        beta_binomial_rho_moments([[(5, 3), (1, 3)]])


@pytest.mark.parametrize("phi", [0.0225, 0.1])
def test_nb_moments_recover_the_simulated_phi(phi: float) -> None:
    rng = np.random.default_rng(9)
    features = []
    for mean in (200, 1000, 3000, 10000):
        for _ in range(10):
            sizes = rng.uniform(0.5, 2.0, size=12) * LIBRARY
            features.append([(_gamma_poisson(rng, mean * s / LIBRARY, phi), s) for s in sizes])
    estimate, df = nb_dispersion_moments(features)
    assert df == 40 * 11
    assert estimate == pytest.approx(phi, rel=0.2)


def test_nb_moments_of_poisson_counts_are_near_zero() -> None:
    rng = np.random.default_rng(10)
    poisson = [[(int(rng.poisson(2000)), LIBRARY) for _ in range(12)] for _ in range(30)]
    estimate, _ = nb_dispersion_moments(poisson)
    assert 0 <= estimate < 5e-4
    assert nb_dispersion_moments([[(0, LIBRARY)] * 4]) == (0.0, 0)


def test_squeeze_moves_toward_the_prior_by_degrees_of_freedom() -> None:
    assert squeeze_dispersion(0.02, 4, 0.05, 4) == pytest.approx(0.035)
    assert squeeze_dispersion(0.02, 396, 0.05, 4) == pytest.approx(0.0203)
    assert squeeze_dispersion(0.02, 0, 0.05, 4) == 0.05
    with pytest.raises(ValueError):
        squeeze_dispersion(0.02, 0, 0.05, 0)


# --- thresholds carry the learned values ----------------------------------------------------------


def test_thresholds_use_the_learned_value_per_event_type() -> None:
    fixed = Thresholds()
    assert fixed.dispersion_source() == "fixed"
    assert fixed.dispersions() == {
        **{
            kind: fixed.expression_dispersion if kind == "expression_loss" else fixed.dispersion
            for kind in EVENT_TYPES
        },
        "features": {},
    }
    learned = Thresholds(
        calibrated=(("expression_loss", 0.02, 11.0), ("exon_skipping", 0.004, 30.0)),
        calibrated_from=9,
    )
    assert learned.phi() == 0.02
    # novel junctions and isoform shifts are the same measure as skipping
    for kind in ("exon_skipping", "novel_junction", "isoform_shift"):
        assert (learned.rho(kind), learned.rho_df(kind)) == (0.004, 30.0)
    for kind in ("exon_loss", "intron_retention", "mutation", "long_read_isoform"):
        assert (learned.rho(kind), learned.rho_df(kind)) == (learned.dispersion, None)
    assert learned.dispersion_source().startswith("cohort: 9 baselines")
    for bad in (("exon_skipping", 1.5, 9.0), ("no_such_type", 0.01, 9.0), ("exon_loss", 0.01, 0)):
        with pytest.raises(UsageError):
            Thresholds(calibrated=(bad,))


# --- false calls at the nominal rate, sensitivity kept (counts drawn as validation.py) -----------

BCV = 0.15  # the between-sample variability of depth in scripts/validation.py (phi 0.0225)
RHO = 0.01  # of isoform shares


def _replicate_cohorts(seed: int, cohorts: int, pairs: int, baselines: int):
    """For each simulated cohort: the dispersions learned from ``baselines`` baselines (gene
    counts and three junction shares per sample), then ``pairs`` pairs without change and as
    many with a 2x loss and a ΔPSI of 0.25, tested with the fixed and the learned values."""
    rng = np.random.default_rng(seed)
    fragments = 3000
    shares = (0.03, 0.05, 0.3)
    out = {"fixed": [], "cohort": []}
    for _ in range(cohorts):
        gene = [[(_gamma_poisson(rng, fragments, BCV**2), LIBRARY) for _ in range(baselines)]]
        junctions = [
            [(_beta_binomial(rng, n, mean, RHO), n) for n in rng.integers(100, 400, baselines)]
            for mean in shares
        ]
        phi, df = nb_dispersion_moments(gene)
        rho, df_rho = beta_binomial_rho_moments([[(k, int(n)) for k, n in f] for f in junctions])
        fixed = Thresholds()
        values = {
            "fixed": (fixed.expression_dispersion, fixed.dispersion, None),
            "cohort": (
                squeeze_dispersion(phi, df, fixed.expression_dispersion, PRIOR_DF),
                squeeze_dispersion(rho, df_rho, fixed.dispersion, PRIOR_DF),
                df_rho + PRIOR_DF,
            ),
        }
        for _ in range(pairs):
            kb, kr = (_gamma_poisson(rng, fragments, BCV**2) for _ in range(2))
            kloss = _gamma_poisson(rng, fragments / 2, BCV**2)
            n = 300
            jb, jr = _beta_binomial(rng, n, 0.05, RHO), _beta_binomial(rng, n, 0.05, RHO)
            jup = _beta_binomial(rng, n, 0.30, RHO)
            for mode, (phi_used, rho_used, rho_df) in values.items():
                r = rho_from_nb_dispersion(phi_used, 0.5)
                out[mode].append(
                    {
                        "expression_null": poisson_rate_test(
                            kb, LIBRARY, kr, LIBRARY, r, "greater"
                        ),
                        "expression_loss": poisson_rate_test(
                            kb, LIBRARY, kloss, LIBRARY, r, "greater"
                        ),
                        "loss_log2fc": log2_fold_change(kb, LIBRARY, kloss, LIBRARY),
                        "skip_null": beta_binomial_two_sample_test(
                            jb, n, jr, n, rho_used, dispersion_df=rho_df
                        ),
                        "skip_up": beta_binomial_two_sample_test(
                            jb, n, jup, n, rho_used, dispersion_df=rho_df
                        ),
                    }
                )
    return {mode: pl.DataFrame(rows) for mode, rows in out.items()}


def test_learned_dispersion_keeps_false_calls_at_the_nominal_rate_and_finds_more() -> None:
    """At MIN_BASELINES baselines per cohort, 100 cohorts of 20 replicate pairs each: a test at
    p < 0.05 on pairs without change rejects at most the nominal 5 % (plus the binomial noise of
    2000 pairs, 3 SE), with the dispersions learned from each cohort's baselines; and finds the
    2x loss more often than the fixed phi (0.05, wider than the simulated BCV 0.15) allows."""
    frames = _replicate_cohorts(seed=11, cohorts=100, pairs=20, baselines=MIN_BASELINES)
    cohort, fixed = frames["cohort"], frames["fixed"]
    n = cohort.height
    bound = 0.05 + 3 * math.sqrt(0.05 * 0.95 / n)
    for column in ("expression_null", "skip_null"):
        assert (cohort[column] < 0.05).mean() <= bound, column
    found = {
        mode: ((frame["expression_loss"] < 0.05) & (frame["loss_log2fc"] < 0)).mean()
        for mode, frame in frames.items()
    }
    assert found["cohort"] >= found["fixed"] + 0.1, found
    assert (cohort["skip_up"] < 0.05).mean() >= (fixed["skip_up"] < 0.05).mean() - 0.01


# --- from scans: features, calibrate, run ---------------------------------------------------------


def test_features_measure_what_the_pair_tests(tmp_path: Path) -> None:
    """The skipping feature of a baseline is the pair's row counts: reads of reads + canonical,
    and the expression feature its fragments over library size."""
    gene = small_gene("+")
    gtf = write_gtf(gene, tmp_path / "gene.gtf")
    results = []
    for i, isoforms in enumerate(({"canonical": 0.8, "skip:2": 0.2}, {"canonical": 1.0})):
        sim = simulate(tmp_path / f"s{i}", seed=40 + i, gene=gene, n_fragments=600,
                       isoforms=isoforms, sample=f"S{i}")  # fmt: skip
        results.append(scan(str(sim.bam), gtf=str(gtf), gene=gene.name))
    got = features(results)
    assert set(got) == set(CALIBRATED_TYPES)
    pair = compare_samples(results[0], results[1]).events
    skip = pair.filter(pl.col("event_type") == "exon_skipping").row(0, named=True)
    (kb, nb), (kr, nr) = got["exon_skipping"][skip["feature"]]
    assert kb == skip["baseline_reads"]
    assert kr == skip["relapse_reads"] == 0
    assert kb / nb == pytest.approx(skip["baseline_value"])
    assert nr > 0  # the sample without the junction still has its donor's canonical reads
    assert got["expression_loss"] == {
        "gene": [
            (r.summary["fragments_on_gene"], float(r.summary["library_size"])) for r in results
        ]
    }
    # every exon and intron row of the pair has its feature, under the row's name
    for kind in ("exon_loss", "intron_retention"):
        rows = pair.filter(pl.col("event_type") == kind)["feature"].to_list()
        assert rows and set(rows) <= set(got[kind])
        assert all(len(got[kind][name]) == 2 for name in rows)


@pytest.mark.slow
def test_run_learns_the_dispersion_from_enough_baselines(tmp_path: Path) -> None:
    """A cohort of MIN_BASELINES patients without change: every verdict row says the values came
    from its baselines and lists them; the learned rho of the skipping share is near the
    simulated 0.01 (moved toward the fixed 0.01, so the check is on the raw estimate in the
    log-free frame: between 0.002 and 0.05); with --fixed-dispersion or one patient fewer the
    fixed values are used and said."""
    specs = replicate_cohort_specs(MIN_BASELINES, seed=300)
    sheet, gtf = write_small_cohort(tmp_path, specs, n_fragments=1500)
    params = ScanParams(gtf=str(gtf), gene="SMALL")
    run_cohort(sheet, tmp_path / "out", params)
    verdicts = pl.read_csv(tmp_path / "out" / "cohort_verdicts.tsv", separator="\t")
    assert verdicts.height == MIN_BASELINES
    sources = set(verdicts["dispersion_source"].to_list())
    assert sources == {
        f"cohort: {MIN_BASELINES} baselines (expression_loss, exon_loss, exon_skipping, "
        "intron_retention); others fixed"
    }
    report = (tmp_path / "out" / "report.html").read_text()
    assert (
        f'id="dispersion">dispersion of the tests: SMALL: cohort: {MIN_BASELINES} baselines'
        in report
    )
    pair_report = (tmp_path / "out" / "pairs" / "P0_B_vs_P0_R.report.html").read_text()
    assert f"<summary>Dispersion: cohort: {MIN_BASELINES} baselines" in pair_report
    used = json.loads(verdicts["dispersions"][0])
    assert set(used) == {*EVENT_TYPES, "features"}
    assert used["mutation"] == Thresholds().dispersion  # never learned
    assert used["novel_junction"] == used["exon_skipping"]
    assert used["exon_skipping"] != Thresholds().dispersion
    # the learned values are the calibration of the baselines' scans
    scans_dir = tmp_path / "out" / "scans"
    baselines = [load_scan(scans_dir, s[1]) for s in specs if s[2] == "baseline"]
    calibration = calibrate(baselines, Thresholds())
    assert calibration is not None
    assert calibration.values["exon_skipping"] == pytest.approx(used["exon_skipping"], rel=1e-5)
    assert 0.002 < calibration.estimates["exon_skipping"][0] < 0.05
    assert calibrate(baselines[1:], Thresholds()) is None
    # the learned rho's test is referred to F(1, estimate df + PRIOR_DF)
    learned = calibration.thresholds(Thresholds())
    assert learned.rho_df("exon_skipping") == calibration.estimates["exon_skipping"][1] + PRIOR_DF

    # compare of one pair with the cohort's file gives the run's rows for that pair
    pair_out = tmp_path / "one"
    argv = [
        "compare",
        "--baseline",
        str(scans_dir),
        "--baseline-sample",
        "P0_B",
        "--relapse",
        str(scans_dir),
        "--relapse-sample",
        "P0_R",
        "-o",
        str(pair_out),
    ]
    assert main([*argv, "--dispersion-from", str(tmp_path / "out" / "dispersion.json")]) == 0
    one = pl.read_csv(pair_out / "verdict.tsv", separator="\t")
    in_run = verdicts.filter(pl.col("pair") == "P0_B_vs_P0_R")
    assert one["dispersions"].to_list() == in_run["dispersions"].to_list()
    run_events = pl.read_csv(tmp_path / "out" / "pairs" / "P0_B_vs_P0_R.events.tsv", separator="\t")
    assert_frame_equal(
        pl.read_csv(pair_out / "events.tsv", separator="\t"), run_events.drop("patient")
    )
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main([*argv, "--dispersion-from", str(bad)]) != 0
    assert main([*argv]) == 0  # without the file: the stated values
    assert pl.read_csv(pair_out / "verdict.tsv", separator="\t")["dispersion_source"][0] == "fixed"

    run_cohort(sheet, tmp_path / "fixed", params, calibrate_dispersion=False)
    fixed = pl.read_csv(tmp_path / "fixed" / "cohort_verdicts.tsv", separator="\t")
    assert set(fixed["dispersion_source"].to_list()) == {"fixed"}
    assert json.loads(fixed["dispersions"][0])["exon_skipping"] == Thresholds().dispersion


def test_f_reference_of_an_estimated_dispersion() -> None:
    """F(1, d) upper tail equals scipy's; the test with an estimated rho is more cautious than
    with a known one and tends to it as the degrees of freedom grow."""
    from scipy import stats as scipy_stats

    from cd22scan.calling.stats import f_1_df_sf

    for statistic in (0.1, 1.0, 3.84, 10.0, 40.0):
        for df in (1, 3.5, 10, 200):
            assert f_1_df_sf(statistic, df) == pytest.approx(
                scipy_stats.f.sf(statistic, 1, df), rel=1e-9
            )
    assert f_1_df_sf(0.0, 5) == 1.0
    with pytest.raises(ValueError):
        f_1_df_sf(1.0, 0)
    known = beta_binomial_two_sample_test(10, 300, 40, 300, 0.01)
    few = beta_binomial_two_sample_test(10, 300, 40, 300, 0.01, dispersion_df=6)
    many = beta_binomial_two_sample_test(10, 300, 40, 300, 0.01, dispersion_df=1e7)
    assert known < few
    assert many == pytest.approx(known, rel=1e-4)
    one_sided = beta_binomial_two_sample_test(10, 300, 40, 300, 0.01, "greater", 6)
    assert one_sided == pytest.approx(few / 2)


def test_a_feature_that_varies_more_than_its_type_keeps_its_own_dispersion() -> None:
    """Twelve junction shares of rho 0.001 and one of rho 0.05 (an alternatively spliced exon)
    over 10 baselines: the pooled value is near the quiet ones, the loud feature gets its own
    wider value, and its replicate pairs reach p < 0.05 at about the nominal rate with it
    (above twice that with the pooled value). The quiet features keep the pooled value."""
    rng = np.random.default_rng(21)
    baselines, n = 10, 400
    rhos = {f"quiet {i}": 0.001 for i in range(12)} | {"loud": 0.05}
    observed = {
        name: [(_beta_binomial(rng, n, 0.3, rho), n) for _ in range(baselines)]
        for name, rho in rhos.items()
    }
    pooled, df = beta_binomial_rho_moments(list(observed.values()))
    value = squeeze_dispersion(pooled, df, Thresholds().dispersion, PRIOR_DF)
    own, own_df = beta_binomial_rho_moments([observed["loud"]])
    wider = squeeze_dispersion(own, own_df, value, FEATURE_PRIOR_DF)
    assert value < 0.02 < wider
    t = Thresholds(
        calibrated=(("exon_skipping", value, df + PRIOR_DF),),
        calibrated_features=(("exon_skipping", "loud", wider, own_df + FEATURE_PRIOR_DF),),
        calibrated_from=baselines,
    )
    assert t.rho("exon_skipping", "loud") == wider
    assert t.rho("isoform_shift", "loud") == wider  # the same measure
    assert t.rho("exon_skipping", "quiet 1") == t.rho("exon_skipping") == value
    pairs = [(_beta_binomial(rng, n, 0.3, 0.05), _beta_binomial(rng, n, 0.3, 0.05))
             for _ in range(2000)]  # fmt: skip
    rate = {
        label: np.mean([
            beta_binomial_two_sample_test(a, n, b, n, t.rho("exon_skipping", feature),
                                          dispersion_df=t.rho_df("exon_skipping", feature)) < 0.05
            for a, b in pairs
        ])
        for label, feature in (("own", "loud"), ("pooled", None))
    }  # fmt: skip
    assert rate["own"] <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 2000), rate
    assert rate["pooled"] > 0.10, rate


def test_run_help_states_the_baselines_needed(capsys) -> None:
    assert main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"baselines ({MIN_BASELINES} per gene)" in text


def test_cohort_report_line_names_each_gene_unless_all_agree() -> None:
    from cd22scan.outputs.html import _dispersion_line

    same = pl.DataFrame({"gene": ["CD19", "CD22", "CD22"], "dispersion_source": ["fixed"] * 3})
    assert "fixed (all 2 genes)" in _dispersion_line(same)
    mixed = pl.DataFrame(
        {"gene": ["CD19", "CD22"], "dispersion_source": ["fixed", "cohort: 9 baselines (x)"]}
    )
    assert "CD19: fixed; CD22: cohort: 9 baselines (x)" in _dispersion_line(mixed)
    assert _dispersion_line(pl.DataFrame({"gene": ["CD22"]})) == ""
