"""The Rust core equals the independent pure-Python reference counter, table by table."""

from __future__ import annotations

import pytest
from core_helpers import assert_same_counts, core_count
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_counter import reference_count
from simulator import cd22_grch38, simulate, small_gene

CASES = [
    # (strand, paired, library, dedup)
    ("+", True, "fr", True),
    ("-", True, "rf", True),
    ("+", True, "unstranded", False),
    ("-", False, "fr", True),
    ("+", True, "rf", False),
]


def _both(sim, *, batch=997, handover="bam", **params):
    gene = sim.gene
    window = gene.window(300)
    args = (str(sim.bam), gene.contig, window[0], window[1], list(gene.exons))
    core = core_count(*args, batch=batch, handover=handover, **params)
    return core, reference_count(*args, **params)


@pytest.mark.parametrize("handover", ["bam", "text"])
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(("strand", "paired", "library", "dedup"), CASES)
def test_core_equals_reference_on_simulated_samples(
    tmp_path, seed, strand, paired, library, dedup, handover
):
    sim = simulate(
        tmp_path,
        seed=seed,
        gene=small_gene(strand),
        n_fragments=600,
        paired=paired,
        library=library,
        insert_mean=180,
        insert_sd=60,
        isoforms={"canonical": 0.6, "skip:3": 0.25, "retain:2": 0.15},
        variants=[("snv", 2000, None, 0.3), ("del", 2830, 2, 0.4), ("ins", 3200, "TTA", 0.3)],
        error_rate=0.01,
    )
    core, ref = _both(sim, dedup_overlaps=dedup, handover=handover)
    assert core.filters["used"] > 500
    assert_same_counts(core, ref)


def test_core_equals_reference_on_cd22(tmp_path):
    sim = simulate(
        tmp_path,
        seed=7,
        gene=cd22_grch38(),
        n_fragments=800,
        isoforms={"canonical": 0.6, "skip:2": 0.4},
    )
    core, ref = _both(sim)
    assert core.gene_fragments > 700
    assert_same_counts(core, ref)


@pytest.mark.slow
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 10_000),
    min_mapq=st.sampled_from([0, 1, 20, 60]),
    min_baseq=st.sampled_from([0, 13, 30]),
    min_anchor=st.sampled_from([1, 8, 25]),
    exclude_flags=st.sampled_from([0x704, 0x304, 0xF04, 0x4]),
    dedup=st.booleans(),
    batch=st.sampled_from([1, 7, 5000]),
)
def test_core_equals_reference_for_any_parameters(
    tmp_path_factory, seed, min_mapq, min_baseq, min_anchor, exclude_flags, dedup, batch
):
    tmp = tmp_path_factory.mktemp("hyp")
    sim = simulate(
        tmp,
        seed=seed,
        gene=small_gene("+" if seed % 2 else "-"),
        n_fragments=150,
        insert_mean=150,
        isoforms={"canonical": 0.7, "skip:2-3": 0.3},
        dup_fraction=0.1,
        secondary_fraction=0.05,
        supplementary_fraction=0.05,
        low_mapq_fraction=0.1,
        softclip_fraction=0.1,
    )
    core, ref = _both(
        sim,
        batch=batch,
        min_mapq=min_mapq,
        min_baseq=min_baseq,
        min_anchor=min_anchor,
        exclude_flags=exclude_flags,
        dedup_overlaps=dedup,
    )
    assert_same_counts(core, ref)


def test_batch_boundaries_do_not_change_counts(tmp_path):
    sim = simulate(tmp_path, seed=11, gene=small_gene("+"), n_fragments=300, insert_mean=120)
    gene = sim.gene
    w = gene.window(300)
    args = (str(sim.bam), gene.contig, w[0], w[1], list(gene.exons))
    one = core_count(*args, batch=1)
    big = core_count(*args, batch=100_000)
    assert_same_counts(one, big)


def test_simulator_truth_is_found_by_the_core(tmp_path):
    """Known truth, not just agreement: exon and junction fragment counts the simulator planted."""
    sim = simulate(
        tmp_path,
        seed=5,
        gene=small_gene("-"),
        n_fragments=800,
        isoforms={"canonical": 0.5, "skip:2": 0.3, "retain:4": 0.2},
    )
    gene = sim.gene
    w = gene.window(300)
    core = core_count(str(sim.bam), gene.contig, w[0], w[1], list(gene.exons))
    assert list(core.exon_fragments) == list(sim.truth["exon_fragments"])
    junctions: dict[tuple[int, int], int] = {}
    for start, end, _o, _xs, frags, _anchor in core.junctions:
        junctions[(start, end)] = junctions.get((start, end), 0) + frags
    assert junctions == dict(sim.truth["junctions"])
    assert core.gene_fragments == sim.truth["gene_fragments"]
