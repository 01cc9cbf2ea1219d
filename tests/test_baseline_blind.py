"""A relapse mutation at a site the baseline does not cover (issue 14): tested alone against
sequencing error and reported with ``baseline_status``, instead of never being called."""

from __future__ import annotations

import math

import pytest

from cd22scan.calling.stats import binomial_upper_tail
from cd22scan.comparison.pair import compare_samples
from cd22scan.demo.simulate import simulate, small_gene
from cd22scan.sample.scan import scan


def test_binomial_upper_tail_equals_the_exact_sum():
    for k, n, p in ((0, 10, 0.1), (3, 10, 0.1), (57, 58, 0.01), (5, 200, 0.01), (10, 10, 0.5)):
        exact = sum(math.comb(n, x) * p**x * (1 - p) ** (n - x) for x in range(k, n + 1))
        assert binomial_upper_tail(k, n, p) == pytest.approx(min(1.0, exact), rel=1e-9)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("blind")
    gene = small_gene("+")
    exon3 = gene.exon(3)
    # baseline: every molecule skips exon 3 (no read covers it); relapse: exon 3 included and
    # carrying a SNV at VAF ~0.95
    base = simulate(root / "b", seed=5, gene=gene, n_fragments=1500, sample="B",
                    isoforms={"skip:3": 1.0})  # fmt: skip
    rel = simulate(root / "r", seed=5, gene=gene, n_fragments=1500, sample="R",
                   variants=[("snv", exon3[0] + 40, None, 0.95)])  # fmt: skip
    b = scan(str(base.bam), gene=gene.name, gtf=str(_gtf(root, gene)),
             reference=str(base.reference))  # fmt: skip
    r = scan(str(rel.bam), gene=gene.name, gtf=str(_gtf(root, gene)),
             reference=str(rel.reference))  # fmt: skip
    return compare_samples(b, r)


def _gtf(root, gene):
    from cd22scan.demo.simulate import write_gtf

    path = root / "g.gtf"
    return path if path.exists() else write_gtf(gene, path)


def test_uncovered_baseline_mutation_is_called_and_says_so(pair):
    events = pair.events.filter(pair.events["event_type"] == "mutation")
    blind = events.filter(events["baseline_status"] == "not_covered")
    assert blind.height >= 1
    row = blind.sort("relapse_reads", descending=True).row(0, named=True)
    assert row["baseline_reads"] == 0 and row["relapse_value"] > 0.8
    assert row["effect"] == pytest.approx(row["relapse_value"])
    assert row["called"] is True and row["p_value"] < 1e-10
    from cd22scan.comparison.pair import PROTEIN_ALTERING

    # never escape (new or pre-existing cannot be told); a protein-altering one makes the
    # mutation verdict "not assessable", naming it
    assert row["escape"] is False
    status = pair.verdict["mutation_status"][0]
    if row["consequence"] in PROTEIN_ALTERING:
        assert status.startswith("not assessable (relapse allele(s) at sites the baseline")
        assert row["feature"] in status
