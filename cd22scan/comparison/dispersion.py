"""Over-dispersion learned from a cohort's baselines, per event type (issue 14).

A pair's tests (``comparison.pair``) allow for the variability between two libraries that no
replicate of the pair measures, with fixed values (rho 0.01 for proportions, phi 0.05 for gene
counts). A cohort has many baselines, and they measure it, as DESeq2 and rMATS measure it from
replicates: the baselines of different patients differ at least as much as two samples of one
patient do when nothing changed (biology, library preparation, RNA quality), so a dispersion
learned from them makes the pair's test neither blind to that variability nor stricter than the
cohort shows is needed.

What is learned (per gene, from the distinct baseline samples of the pairs compared)
------------------------------------------------------------------------------------
* ``expression_loss``: phi of the gene's fragments over library size (``nb_dispersion_moments``).
* ``exon_loss``: rho of each exon's fragments as a share of the gene's.
* ``exon_skipping``: rho of each skipping junction's share of its donor's splicing (reads of
  reads + canonical reads; a baseline without the junction: 0 of its canonical reads), the
  measure ``pair`` tests; novel junctions and isoform shifts are tested with it (the same
  measure, and a cohort's baselines rarely share a novel junction).
* ``intron_retention``: rho of round(retained) of round(retained) + spliced reads per intron.

Each is the pooled moment estimate over that type's features (``calling.stats``), then moved
toward the fixed value as limma moves a variance toward its prior
(``squeeze_dispersion``, ``PRIOR_DF`` prior degrees of freedom): with few baselines or one
feature the fixed value still weighs, with many the cohort decides. A learned rho is uncertain,
and a test that takes it as known rejects too often where it came out low (7.5 % of replicate
pairs at p < 0.05 with rho from three junctions of 8 baselines, tests/test_dispersion.py); its
proportions are therefore referred to F(1, d), d = the estimate's degrees of freedom +
``PRIOR_DF`` (``Thresholds.rho_df``; edgeR's quasi-likelihood F-test), which brings that to
the nominal 5 %. Gene expression keeps its exact conditional test (there is no statistic to
refer to F), so its guard is the prior: on simulated cohorts of 8 baselines (gamma depth, BCV
0.15) the one-sided test at p < 0.05 rejected 7.4 % of replicate pairs with the raw estimate,
5.2 / 3.7 / 2.6 % with 1 / 2 / 4 prior degrees of freedom, and found a 2x loss in 93 / 92 / 91 /
89 % (0 / 1 / 2 / 4; ``python scripts/dispersion_prior.py``, 6000 pairs each); 2 keeps false calls
under the nominal rate with most of the sensitivity.

One value per type assumes its features vary alike; an exon or junction that varies more
between samples than the others (an alternatively spliced one) would be tested too leniently
with the pooled value. Each proportion feature's own estimate is therefore also taken, moved
toward its type's value with ``FEATURE_PRIOR_DF`` prior degrees of freedom, and used for that
feature (with its own degrees of freedom) when it is wider than the type's: never narrower,
as DESeq2 keeps a gene's own dispersion when it lies above the fitted one.

Mutations keep the fixed rho (the alleles of a cohort's baselines are germline, different per
patient: they measure nothing about a relapse allele) and so do long-read events.

A cohort calibrates when it has at least ``MIN_BASELINES`` distinct baselines for the gene: the
moment estimate of phi from one gene's m baselines has a relative standard error of about
sqrt(2 / (m - 1)), 0.53 at 8, and at 8 the false-call and sensitivity checks of
tests/test_dispersion.py hold; ``run`` does it unless ``--fixed-dispersion``; every verdict row
says which values were used (``dispersion_source``, ``dispersions``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from cd22scan.calling.sample import sample_calls
from cd22scan.calling.stats import (
    beta_binomial_rho_moments,
    nb_dispersion_moments,
    squeeze_dispersion,
)
from cd22scan.comparison.pair import Thresholds, _by, retention_counts, skip_counts
from cd22scan.sample.scan import ScanResult

__all__ = [
    "FEATURE_PRIOR_DF",
    "MIN_BASELINES",
    "PRIOR_DF",
    "Calibration",
    "calibrate",
    "features",
]

MIN_BASELINES = 8
PRIOR_DF = 2.0
FEATURE_PRIOR_DF = 4.0
CALIBRATED_TYPES = ("expression_loss", "exon_loss", "exon_skipping", "intron_retention")

Observation = tuple[int, float]  # (count, total): k of n reads, or fragments of a library size


@dataclass(frozen=True)
class Calibration:
    """What a cohort's baselines gave: per event type the moment estimate and its degrees of
    freedom (``estimates``) and the value used after moving toward the fixed one (``values``)."""

    baselines: int
    estimates: dict[str, tuple[float, int]]
    values: dict[str, float]
    # (event type, feature) -> (value, df, own estimate, its df): the features whose own spread
    # is wider than their type's (``FEATURE_PRIOR_DF``)
    features: dict[tuple[str, str], tuple[float, float, float, int]] = field(default_factory=dict)

    def thresholds(self, fixed: Thresholds) -> Thresholds:
        """``fixed`` with these values in force (types without an estimate stay fixed); each
        with its degrees of freedom, the estimate's plus ``PRIOR_DF``."""
        learned = tuple(
            (kind, self.values[kind], self.estimates[kind][1] + PRIOR_DF)
            for kind in CALIBRATED_TYPES
            if kind in self.values
        )
        wider = tuple(
            (kind, name, value, df)
            for (kind, name), (value, df, _, _) in sorted(self.features.items())
        )
        return replace(
            fixed, calibrated=learned, calibrated_features=wider, calibrated_from=self.baselines
        )


def features(baselines: Sequence[ScanResult]) -> dict[str, dict[str, list[Observation]]]:
    """Per calibrated event type, its features by the name the pair's rows give them (``gene``,
    ``exon 2``, ``Δex2``, ``intron 3``), each a list of (count, total), one per baseline,
    measured as ``comparison.pair`` measures the pair's rows."""
    frames = [sample_calls(result).frames() for result in baselines]
    out: dict[str, dict[str, list[Observation]]] = {kind: {} for kind in CALIBRATED_TYPES}

    gene = []
    for result in baselines:
        count, size = result.summary.get("fragments_on_gene"), result.summary.get("library_size")
        if count is not None and size:
            gene.append((int(count), float(size)))
    out["expression_loss"]["gene"] = gene

    exons = [_by(f["expression"], "exon") for f in frames]
    for exon in sorted({e for sample in exons for e in sample}):
        out["exon_loss"][f"exon {exon}"] = [
            (int(x["fragments"] or 0), float(x["gene_fragments"] or 0))
            for sample in exons
            if (x := sample.get(exon)) is not None
        ]

    skips = [_by(f["skipping_events"], "event") for f in frames]
    introns = [_by(f["intron_retention"], "intron") for f in frames]
    donors = {e: x["donor_exon"] for sample in skips for e, x in sample.items()}
    for event in sorted(donors):
        out["exon_skipping"][event] = [
            skip_counts(skip, intron, event, donors[event])
            for skip, intron in zip(skips, introns, strict=True)
        ]

    for number in sorted({k for sample in introns for k in sample}):
        out["intron_retention"][f"intron {number}"] = [
            retention_counts(sample[number]) for sample in introns if number in sample
        ]
    return out


def calibrate(
    baselines: Sequence[ScanResult], fixed: Thresholds, min_baselines: int = MIN_BASELINES
) -> Calibration | None:
    """The cohort's dispersions from its distinct baseline scans of one gene, or None with fewer
    than ``min_baselines`` of them. ``fixed``: the values moved toward (the user's thresholds)."""
    distinct = list({result.sample: result for result in baselines}.values())
    if len(distinct) < min_baselines:
        return None
    by_type = features(distinct)
    estimates: dict[str, tuple[float, int]] = {}
    values: dict[str, float] = {}
    wider: dict[tuple[str, str], tuple[float, float, float, int]] = {}
    for kind in CALIBRATED_TYPES:
        if kind == "expression_loss":
            estimate, df = nb_dispersion_moments(list(by_type[kind].values()))
            prior = fixed.expression_dispersion
        else:
            whole = {
                name: [(int(k), int(n)) for k, n in observed]
                for name, observed in by_type[kind].items()
            }
            estimate, df = beta_binomial_rho_moments(list(whole.values()))
            prior = fixed.dispersion
        estimates[kind] = (estimate, df)
        if df <= 0:
            continue
        value = squeeze_dispersion(estimate, df, prior, PRIOR_DF)
        values[kind] = min(value, 0.999) if kind != "expression_loss" else value
        if kind == "expression_loss":
            continue
        for name, observed in whole.items():
            own, own_df = beta_binomial_rho_moments([observed])
            if own_df == 0:
                continue
            moved = min(0.999, squeeze_dispersion(own, own_df, values[kind], FEATURE_PRIOR_DF))
            if moved > values[kind]:
                wider[(kind, name)] = (moved, own_df + FEATURE_PRIOR_DF, own, own_df)
    return Calibration(baselines=len(distinct), estimates=estimates, values=values, features=wider)
