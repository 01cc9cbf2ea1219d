"""The VCFs the commands write: `scan` → NAME.variants.vcf.gz, `compare` → variants.vcf.gz (both
samples as columns); bcftools reads them and finds the planted SNV with its counts."""

from __future__ import annotations

import shutil
import subprocess

import polars as pl
import pysam
import pytest
from simulator import simulate, small_gene

from cd22scan.cli import main
from cd22scan.demo.simulate import write_gtf

GENE = small_gene("+")
SNV_POS0 = 2000  # in exon 2 of the small gene (a missense change, as in test_formats)
SEED = 7  # both samples: the same reference sequence

pytestmark = [pytest.mark.slow, pytest.mark.external]  # bcftools reads every VCF


def _bcftools(*args: str) -> str:
    if shutil.which("bcftools") is None:
        pytest.skip("bcftools not on PATH: cannot check that bcftools reads the VCFs")
    done = subprocess.run(["bcftools", *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "[W::" not in done.stderr and "[E::" not in done.stderr, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vcf")
    base = simulate(tmp / "BASE", seed=SEED, gene=GENE, n_fragments=1500, sample="BASE")
    rel = simulate(
        tmp / "REL",
        seed=SEED,
        gene=GENE,
        n_fragments=1500,
        sample="REL",
        variants=[("snv", SNV_POS0, None, 0.4)],
    )
    gtf = write_gtf(GENE, tmp / "gene.gtf")
    return tmp, base, rel, gtf


def _scan(tmp, sim, gtf, *extra: str):
    out = tmp / f"scan_{sim.bam.stem}"
    argv = ["scan", str(sim.bam), "--out", str(out), "--gtf", str(gtf), "--gene", "SMALL"]
    assert main([*argv, "--reference", str(sim.reference), *extra]) == 0
    return out


def _reference_base(sim, pos0: int) -> str:
    with pysam.FastaFile(str(sim.reference)) as fasta:
        return fasta.fetch(fasta.references[0], pos0, pos0 + 1).upper()


def test_scan_vcf_has_the_planted_snv_with_its_counts(samples):
    tmp, _, rel, gtf = samples
    out = _scan(tmp, rel, gtf)
    vcf = out / "REL.variants.vcf.gz"
    assert vcf.exists() and (out / "REL.variants.vcf.gz.tbi").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    fmt = "%CHROM\t%POS\t%REF\t%ALT\t%INFO/CONSEQUENCE\t%INFO/HGVSC\t[%DP\t%AD]\n"
    rows = [line.split("\t") for line in _bcftools("query", "-f", fmt, str(vcf)).splitlines()]
    hits = [r for r in rows if int(r[1]) == SNV_POS0 + 1]
    assert len(hits) == 1, rows
    chrom, _, ref, alt, consequence, hgvsc, dp, ad = hits[0]
    truth = rel.truth["variants"][0]
    assert ref == _reference_base(rel, SNV_POS0) and alt == truth["alt"]
    assert consequence == "missense_variant" and hgvsc.startswith("c.")
    bases = pl.read_parquet(out / "REL.bases.parquet").filter(pl.col("pos") == SNV_POS0 + 1)
    ref_ad, alt_ad = (int(x) for x in ad.split(","))
    assert int(dp) == bases["depth"][0]
    assert alt_ad == bases[alt][0] and ref_ad == int(dp) - alt_ad
    # Counted per base after the quality filter: at most the fragments that carry it.
    assert 0.8 * truth["alt_fragments"] <= alt_ad <= truth["alt_fragments"]
    assert chrom == rel.gene.contig


def test_scan_without_variants_writes_a_header_only_vcf(samples):
    tmp, base, _, gtf = samples
    out = _scan(tmp, base, gtf, "--min-baseq", "13")
    vcf = out / "BASE.variants.vcf.gz"
    header = _bcftools("view", "-h", str(vcf))
    assert header.splitlines()[-1].split("\t")[9:] == ["BASE"]
    assert "##INFO=<ID=CONSEQUENCE" in header and "##FORMAT=<ID=AD" in header
    assert _bcftools("view", "-H", str(vcf)) == ""


def test_compare_vcf_has_both_samples_and_the_test(samples):
    tmp, base, rel, gtf = samples
    out = tmp / "cmp"
    argv = ["compare", "--baseline", str(base.bam), "--relapse", str(rel.bam), "--out", str(out)]
    common = ["--gtf", str(gtf), "--gene", "SMALL", "--reference", str(base.reference)]
    assert main([*argv, *common]) == 0
    vcf = out / "variants.vcf.gz"
    header = _bcftools("view", "-h", str(vcf))
    assert header.splitlines()[-1].split("\t")[9:] == ["BASE", "REL"]
    for field in ("DVAF", "Q", "CALLED"):
        assert f"##INFO=<ID={field}," in header
    fmt = "%POS\t%REF\t%ALT\t%INFO/HGVSC\t%INFO/Q\t%INFO/DVAF\t%INFO/CALLED\t[%SAMPLE=%AD=%DP;]\n"
    rows = [line.split("\t") for line in _bcftools("query", "-f", fmt, str(vcf)).splitlines()]
    events = pl.read_csv(out / "events.tsv", separator="\t").filter(
        pl.col("event_type") == "mutation"
    )
    assert len(rows) == events.height  # one record per tested allele
    hit = [r for r in rows if int(r[0]) == SNV_POS0 + 1]
    assert len(hit) == 1, rows
    _, ref, alt, hgvsc, q, dvaf, called, per_sample = hit[0]
    assert ref == _reference_base(rel, SNV_POS0) and alt == rel.truth["variants"][0]["alt"]
    event = events.filter(pl.col("hgvs_c") == hgvsc).row(0, named=True)
    assert called == "1" and event["called"] is True
    assert float(q) == pytest.approx(event["q_value"], rel=1e-4)
    assert float(dvaf) == pytest.approx(event["effect"], abs=1e-4)
    calls = dict(item.split("=", 1) for item in per_sample.rstrip(";").split(";"))
    base_ad, base_dp = calls["BASE"].split("=")
    rel_ad, rel_dp = calls["REL"].split("=")
    assert int(base_ad.split(",")[1]) == event["baseline_reads"] == 0
    assert int(rel_ad.split(",")[1]) == event["relapse_reads"] > 0
    assert int(base_dp) > 0 and int(rel_dp) > 0
