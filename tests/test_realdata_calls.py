"""Calls on real reads: the 12 ENCODE ABI1 BAMs of ../shared/realdata, paired within each cell
type as 6 "patients" (no escape is expected between two libraries of one cell type; they differ
by donor, so germline SNPs and isoform usage differ). Every call that remains is listed below with
why it is there. The shared data are required: a missing folder fails this test, it does not
skip (CD22SCAN_SHARED names another place for ``shared``, e.g. from a git worktree).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import polars as pl
import pytest

from cd22scan import scan
from cd22scan.calling.sample import sample_calls
from cd22scan.comparison.dispersion import calibrate
from cd22scan.comparison.pair import Thresholds, compare_samples

SHARED = Path(os.environ.get("CD22SCAN_SHARED", Path(__file__).resolve().parents[2] / "shared"))
REALDATA = SHARED / "realdata" / "abi1_encode"

# Called rows other than mutations, exactly, per pair (baseline, relapse) with escape or not.
SPLICING_AND_EXPRESSION: dict[tuple[str, str], dict[tuple[str, str], bool]] = {
    ("ENCLB024ZZZ", "ENCLB025ZZZ"): {},
    ("ENCLB017ZZZ", "ENCLB002ZZZ"): {},
    ("ENCLB271TJH", "ENCLB459IUG"): {},
    # Nearest miss: skipping of exon 10 (of ENST00000355394) 0.31 -> 0.52 of its donor's
    # splicing, p 0.009, q 0.13 among 14 splicing/expression rows; the junction
    # 27040713-27047990 is an intron of ENST00000346832, -376138, -376166 and -376170, so an
    # in-frame isoform_shift, a change and not escape even if called. It was called while
    # mutation rows shared its Benjamini-Hochberg family (germline SNPs of different donors
    # lifted it by rank); mutations are a family of their own now (comparison.pair._q_values).
    ("ENCLB779RPP", "ENCLB764KEB"): {},
    ("ENCLB008ZZZ", "ENCLB009ZZZ"): {},
    ("ENCLB555AXD", "ENCLB303ZZZ"): {
        # Retention of intron 9 falls 0.17 -> 0.03 (median depth of the 3320-nt intron body
        # 64 -> 6 against 311 -> 180 reads spliced across its ends), q 0.039: less retention is
        # not escape. (Intron 8 shows why retention is measured on the body: 145 reads cross
        # its left boundary, none reach its body, and the chosen transcript's intron 8
        # junction has 2 reads while 350 splice across its ends: an alternative exon end, which
        # the boundary measure made an IR ratio of 0.97.)
        ("intron_retention", "intron 9"): False,
    },
}
# Mutation rows called today: all in the 3' UTR, synonymous, or falling at relapse (germline SNPs
# of different donors: VAF 0.3-0.6, or their loss; below 5 % VAF, tested since the error model,
# c.*11dup 0.02 -> 0.10 and c.*726T>A 0 -> 0.036, both 3' UTR): changes, not escape. No
# mutation is escape.
# The two artefacts of issue 14 carry a FILTER and are not called (variants.filter_reasons):
# * c.1296_1297del p.(Tyr432Ter) in ENCLB764KEB: 23 reads, all reverse, all one alignment start
#   (flag 147, start 27040538, CIGAR 46M2D55M): one PCR-duplicate stack -> dup_stack (1 distinct
#   start < 3, the stack holds 100 % > 50 %); strand p 0.035 is not below 1e-3, so no strand_bias.
# * c.1201C>T (missense) in ENCLB459IUG: 24 reads, all forward, one start -> dup_stack, and
#   strand_bias (p 1.4e-4 < 1e-3, alt on one strand while the site has reads on both).
ARTEFACTS = {
    ("ENCLB764KEB", "c.1296_1297del"): "dup_stack",
    ("ENCLB459IUG", "c.1201C>T"): "dup_stack;strand_bias",
}


def _pairs() -> list[tuple[str, str]]:
    sheet = REALDATA / "input_bams.tsv"
    assert sheet.exists(), f"real data not found at {REALDATA} (../shared beside the repo)"
    groups: dict[str, list[str]] = {}
    with sheet.open() as handle:
        for row in csv.reader(handle, delimiter="\t"):
            groups.setdefault(row[2], []).append(row[0])
    return [(ids[i], ids[i + 1]) for ids in groups.values() for i in (0, 2)]


@pytest.fixture(scope="module")
def scans() -> dict:
    sheet = REALDATA / "input_bams.tsv"
    assert sheet.exists(), f"real data not found at {REALDATA} (../shared beside the repo)"
    out = {}
    with sheet.open() as handle:
        for sample, bam, _ in csv.reader(handle, delimiter="\t"):
            out[sample] = scan(
                str(REALDATA / Path(bam).name),
                gtf=str(REALDATA / "annotation.gtf"),
                gene="ABI1",
                reference=str(REALDATA / "chr10_abi1.fa.gz"),
                sample=sample,
            )
    return out


def test_junctions_of_other_transcripts_are_annotated(scans):
    junctions = pl.concat([s.junctions for s in scans.values()])
    for start, end in ((27040713, 27047990), (27048165, 27054146)):
        rows = junctions.filter((pl.col("start") == start) & (pl.col("end") == end))
        assert rows.height > 0 and rows["annotated"].all(), rows
        assert len(rows["transcripts"][0].split(",")) == 4


def test_calls_on_real_pairs_are_the_explained_ones(scans):
    pairs = _pairs()
    assert set(pairs) == set(SPLICING_AND_EXPRESSION)
    for baseline, relapse in pairs:
        comparison = compare_samples(scans[baseline], scans[relapse])
        called = comparison.events.filter(pl.col("called"))
        other = called.filter(pl.col("event_type") != "mutation")
        got = {(r["event_type"], r["feature"]): r["escape"] for r in other.iter_rows(named=True)}
        assert got == SPLICING_AND_EXPRESSION[(baseline, relapse)], (baseline, relapse, other)
        escapes = called.filter(pl.col("escape") & (pl.col("event_type") == "mutation"))
        assert escapes.height == 0, escapes
        assert (called.filter(pl.col("event_type") == "mutation")["filter"] == "PASS").all()
        verdict = comparison.verdict.row(0, named=True)
        # no pair is aberrant splicing or antigen loss; a green verdict has no escape row
        assert not verdict["aberrant_splicing"] and not verdict["antigen_loss"]
        assert verdict["n_escape"] == escapes.height
        assert verdict["n_changes"] == called.height - escapes.height
        # the 3' slice of ABI1 covers little of the CDS: mutations are not assessable unless
        # a (artefact) call shows one
        if not verdict["mutation"]:
            assert verdict["mutation_status"].startswith("not assessable (median coding depth")


def test_duplicate_stack_artefacts_are_filtered(scans):
    for (sample, hgvs), reasons in ARTEFACTS.items():
        row = sample_calls(scans[sample]).variants.filter(pl.col("hgvs_c") == hgvs)
        assert row.height == 1, (sample, hgvs)
        assert row["filter"][0] == reasons, row
        assert row["alt_starts"][0] == 1 and row["max_stack_share"][0] == 1.0, row
    # ENCODE did not mark duplicates: 33-82 % of the fragments over candidate sites repeat
    # another's start, strand and mate start, and the scan says so (HIGH_DUPLICATE_SHARE 0.3)
    for sample, result in scans.items():
        summary = result.summary["duplicates"]
        assert summary["estimated"] and summary["reads_marked_duplicate"] == 0, sample
        assert summary["duplicate_like_share"] > 0.3, (sample, summary)


def test_artefact_mutation_rows_are_not_called(scans):
    pairs = {"ENCLB764KEB": "ENCLB779RPP", "ENCLB459IUG": "ENCLB271TJH"}
    for (relapse, hgvs), reasons in ARTEFACTS.items():
        comparison = compare_samples(scans[pairs[relapse]], scans[relapse])
        row = comparison.events.filter(pl.col("feature") == hgvs).row(0, named=True)
        # significant by counts (q 0.017 and 0.008), not called because of the FILTER
        assert row["q_value"] < 0.05 and row["effect"] > 0.05, row
        assert row["filter"] == reasons and not row["called"] and not row["escape"], row


def test_dispersion_learned_from_the_real_libraries(scans):
    """The 12 ENCODE libraries as one cohort (all as baselines: `run` learns from >= 8 distinct
    baselines, and these 6 pairs have 6). Real libraries of different donors and labs spread
    wider than the stated guesses for splicing (rho 0.01): learned skipping rho 0.13 (Δex9-10
    alone 0.49), retention 0.03, exon shares 0.017; gene expression phi 0.026 (estimate 0.022,
    edgeR's typical BCV 0.15 between replicates). With them no pair has a called row other than
    mutations (the intron 9 retention change of ENCLB555AXD, q 0.039 with rho 0.01, is within
    what these libraries show) and none has an escape row."""
    calibration = calibrate(list(scans.values()), Thresholds())
    assert calibration is not None and calibration.baselines == 12
    values = calibration.values
    assert values["exon_skipping"] > 0.1 and values["intron_retention"] > 0.02
    assert values["exon_loss"] > Thresholds().dispersion
    assert 0.015 < values["expression_loss"] < Thresholds().expression_dispersion
    assert calibration.features[("exon_skipping", "Δex9-10")][0] > 0.4
    learned = calibration.thresholds(Thresholds())
    for baseline, relapse in _pairs():
        events = compare_samples(scans[baseline], scans[relapse], thresholds=learned).events
        assert events.filter(pl.col("escape")).height == 0, (baseline, relapse)
        other = events.filter(pl.col("called") & (pl.col("event_type") != "mutation"))
        assert other.height == 0, (baseline, relapse, other)
