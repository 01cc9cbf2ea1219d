"""Long reads (issue 16): simulated nanopore-like cDNA reads aligned with minimap2 -ax splice.

The genome is the CD22 window (GRCh38 model) as its own contig ``chrL``; reads are whole
molecules of planted isoforms with 5 % errors (substitutions, insertions, deletions), 30 % of
them 5'-truncated and 5 % with an RT template-switching artefact (``demo/longreads.py``).
Relapse: Δex2 alone 25 %, Δex5-6 alone 15 %, both on one molecule 10 %; baseline and a
replicate baseline (other reads): Δex2 5 %. Aligner: minimap2 (Debian, 2.24 here) as a user
runs it, ``minimap2 -ax splice``.
"""

from __future__ import annotations

import shutil
import subprocess

import polars as pl
import pysam
import pytest

from cd22scan.demo.longreads import local_gene, simulate_long_reads
from cd22scan.demo.simulate import cd22_grch38
from cd22scan.errors import UsageError
from cd22scan.sample.longreads import _Layout, assign_read, read_structure
from cd22scan.target.annotation import load_gtf

RELAPSE = {"canonical": 0.5, "skip:2": 0.25, "skip:5-6": 0.15, "skip:2+skip:5-6": 0.10}
BASELINE = {"canonical": 0.95, "skip:2": 0.05}
TOLERANCE = 0.04  # absolute, on fractions of ~1000-1500 informative molecules (3 binomial SE)


# --- reads by hand (no aligner) -----------------------------------------------------------------


def _model():
    gene = local_gene(cd22_grch38())
    return gene


def test_read_structure_splits_blocks_at_introns_only():
    blocks, junctions = read_structure(99, [(0, 10), (2, 2), (0, 5), (3, 100), (1, 3), (0, 20)])
    assert blocks == [(100, 116), (217, 236)]
    assert junctions == [(117, 216)]


def test_a_junction_a_few_nt_off_the_boundary_is_that_boundary(tmp_path):
    from cd22scan.demo.simulate import write_gtf

    gene = _model()
    model = load_gtf(str(write_gtf(gene, tmp_path / "g.gtf")), gene.name, None)
    e = sorted(model.exons, key=lambda x: x.start)
    # exon 1 -> exon 3 (Δex2), the acceptor 9 nt late (nanopore noise at the splice site)
    blocks = [(e[0].start, e[0].end - 3), (e[2].start + 9, e[2].end)]
    junctions = [(e[0].end - 2, e[2].start + 8)]
    label, _, _ = assign_read(blocks, junctions, _Layout(model, 12))
    assert label == "Δex2"
    label, _, _ = assign_read(blocks, junctions, _Layout(model, 6))
    assert label.startswith("novel ")  # outside a tolerance of 6


# --- minimap2 -----------------------------------------------------------------------------------


def _align(sim, out):
    minimap2 = shutil.which("minimap2")
    assert minimap2, "minimap2 is installed by scripts/test.sh (Debian package)"
    sam = out.with_suffix(".sam")
    with open(sam, "wb") as handle:
        subprocess.run([minimap2, "-ax", "splice", "-t", "2", str(sim.reference), str(sim.fastq)],
                       stdout=handle, stderr=subprocess.DEVNULL, check=True)  # fmt: skip
    pysam.sort("-o", str(out), str(sam), catch_stdout=False)
    pysam.index(str(out))
    return out


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    root = tmp_path_factory.mktemp("longreads")
    gene = _model()
    bams = {}
    for name, seed, isoforms in (("base", 1, BASELINE), ("rep", 2, BASELINE), ("rel", 3, RELAPSE)):
        sim = simulate_long_reads(root / name, gene=gene, seed=seed, n_reads=2000,
                                  isoforms=isoforms, template_switch_fraction=0.05,
                                  reference_seed=99, sample=name)  # fmt: skip
        bams[name] = (_align(sim, root / f"{name}.bam"), sim)
    return bams


@pytest.mark.external
@pytest.mark.slow
def test_isoform_fractions_match_the_planted_ones(aligned, tmp_path):
    from cd22scan.cli import main

    bam, sim = aligned["rel"]
    out = tmp_path / "scan"
    argv = ["scan", str(bam), "--gtf", str(sim.gtf), "--gene", "CD22", "--long-reads"]
    assert main([*argv, "-o", str(out)]) == 0
    events = pl.read_csv(out / "rel.long_read_events.tsv", separator="\t")
    fraction = dict(zip(events["event"], events["fraction"], strict=True))
    assert abs(fraction["Δex2"] - 0.35) < TOLERANCE
    assert abs(fraction["Δex5-6"] - 0.25) < TOLERANCE
    pairs = pl.read_csv(out / "rel.long_read_cooccurrence.tsv", separator="\t")
    both = pairs.filter((pl.col("first") == "Δex2") & (pl.col("second") == "Δex5-6"))["reads"]
    isoforms = pl.read_csv(out / "rel.long_read_isoforms.tsv", separator="\t")
    share = dict(zip(isoforms["isoform"], isoforms["fraction"], strict=True))
    # molecules with both skips, among all reads (truncated ones included): 10 % of those
    # that reach exon 1, ~7 % of all
    reads = dict(zip(isoforms["isoform"], isoforms["reads"], strict=True))
    assert both[0] == sum(n for k, n in reads.items() if "Δex2" in k and "Δex5-6" in k)
    assert 0.04 < both[0] / isoforms["reads"].sum() < 0.12
    assert share["full-length"] < 0.5  # 5'-truncated molecules are not called full-length


@pytest.mark.external
@pytest.mark.slow
def test_truncated_molecules_are_not_counted_against_exon_2(aligned):
    """A 5'-truncated read cannot show Δex2: it is not informative for it, so truncation does
    not dilute (or inflate) the Δex2 fraction."""
    from cd22scan.sample.longreads import long_read_tables

    bam, sim = aligned["rel"]
    tables = long_read_tables(str(bam), load_gtf(str(sim.gtf), "CD22", None))
    truth = pl.read_csv(sim.truth, separator="\t")
    reach_exon1 = truth.filter(pl.col("truncated") == 0).height
    row = tables.events.filter(pl.col("event") == "Δex2").row(0, named=True)
    assert row["informative"] < tables.reads
    # informative molecules ~ those not truncated (a truncated read may still start in exon 1)
    assert 0.9 * reach_exon1 <= row["informative"] <= 1.15 * reach_exon1


@pytest.mark.external
@pytest.mark.slow
def test_compare_calls_the_planted_skips_and_nothing_on_the_replicate(aligned, tmp_path):
    from cd22scan.cli import main

    gtf = aligned["base"][1].gtf
    common = ["--gtf", str(gtf), "--gene", "CD22", "--long-reads"]
    for name in ("base", "rep", "rel"):
        assert main(["scan", str(aligned[name][0]), *common, "-o", str(tmp_path / name)]) == 0
    calls = {}
    for other in ("rep", "rel"):
        out = tmp_path / f"base_vs_{other}"
        argv = ["compare", "--baseline", str(tmp_path / "base"), "--relapse", str(tmp_path / other)]
        assert main([*argv, "-o", str(out)]) == 0
        events = pl.read_csv(out / "events.tsv", separator="\t")
        calls[other] = events.filter(pl.col("called"))
    assert calls["rep"].height == 0, calls["rep"].select("event_type", "feature")
    long_read = calls["rel"].filter(pl.col("event_type") == "long_read_isoform")
    assert set(long_read["feature"].to_list()) == {"Δex2", "Δex5-6"}
    assert long_read["escape"].all()
    # template switches: one-off junctions, none called
    novel = calls["rel"].filter(pl.col("feature").str.starts_with("novel"))
    assert novel.height == 0


def test_long_reads_refuse_stdin_and_stream(tmp_path):
    from cd22scan.sample.scan import ScanParams

    with pytest.raises(UsageError, match="indexed"):
        ScanParams(long_reads=True, stream=True).validate()


@pytest.mark.external
@pytest.mark.slow
def test_a_minimap2_long_read_bam_is_recognised_without_the_flag(aligned, caplog):
    from cd22scan.sample.scan import long_read_hint, scan

    bam, sim = aligned["base"]
    assert "minimap2" in (long_read_hint(str(bam)) or "")
    result = scan(str(bam), gene="CD22", gtf=str(sim.gtf))
    assert "long-read alignment" in result.summary["long_reads_suspected"]
    assert "--long-reads" in caplog.text
