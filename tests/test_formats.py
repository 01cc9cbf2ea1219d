"""Standard formats: VCF (bcftools reads it), junction BED12, summary JSON, MultiQC files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import polars as pl
import pysam
import pytest
from cohort_helpers import write_small_cohort

import cd22scan
from cd22scan.cohort import run_cohort
from cd22scan.formats import write_junctions_bed12, write_summary_json, write_vcf
from cd22scan.multiqc import (
    GENERAL_STATS_FILE,
    VERDICTS_FILE,
    sample_metrics,
    write_multiqc_files,
)
from cd22scan.scandir import load_scan
from cd22scan.scanner import ScanParams, reference_fetch
from cd22scan.simulate import simulate, small_gene, write_gtf
from cd22scan.variants import call_variants


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("formats")
    sim = simulate(
        tmp,
        seed=1,
        gene=small_gene("+"),
        n_fragments=800,
        isoforms={"canonical": 0.6, "skip:2": 0.4},
        variants=[("snv", 2000, None, 0.3)],
    )
    gtf = write_gtf(sim.gene, tmp / "gene.gtf")
    res = cd22scan.scan(str(sim.bam), gtf=str(gtf), gene="SMALL", reference=str(sim.reference))
    fetch = reference_fetch(str(sim.reference), res.model.contig)
    variants = call_variants(res.bases, res.indels, res.model, fetch, sample=res.sample)
    with pysam.AlignmentFile(str(sim.bam)) as bam:
        contigs = dict(zip(bam.references, bam.lengths, strict=True))
    return tmp, sim, res, variants, contigs


def _bcftools(*args: str) -> str:
    if shutil.which("bcftools") is None:
        pytest.skip("bcftools not on PATH")
    done = subprocess.run(["bcftools", *args], capture_output=True, text=True, check=True)
    assert "[W::" not in done.stderr, done.stderr  # htslib header sanity warnings
    return done.stdout


@pytest.mark.external
def test_vcf_is_sorted_indexed_and_read_by_bcftools(scanned, tmp_path):
    _, sim, res, variants, contigs = scanned
    assert variants.height >= 1
    shuffled = variants.sample(fraction=1.0, shuffle=True, seed=3)
    vcf = write_vcf(
        shuffled,
        tmp_path / "s.vcf.gz",
        contigs=contigs,
        sample=res.sample,
        reference=str(sim.reference),
        source_info={"version": cd22scan.__version__, "gene": "SMALL"},
    )
    assert vcf.exists() and (tmp_path / "s.vcf.gz.tbi").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.vcf.gz", "s.vcf.gz.tbi"]
    assert int(_bcftools("index", "-n", str(vcf)).strip()) == variants.height
    header = _bcftools("view", "-h", str(vcf))
    assert "##fileformat=VCFv4.2" in header
    for contig, length in contigs.items():
        assert f"##contig=<ID={contig},length={length}>" in header
    assert "##cd22scan_gene=SMALL" in header
    body = _bcftools(
        "query",
        "-f",
        "%CHROM\t%POS\t%REF\t%ALT\t%INFO/GENE\t%INFO/CONSEQUENCE\t%INFO/HGVSC\t[%GT\t%DP\t%AD\t%AF\t%ADF\t%ADR]\n",
        str(vcf),
    )
    rows = [line.split("\t") for line in body.splitlines()]
    positions = [(r[0], int(r[1])) for r in rows]
    assert positions == sorted(positions)
    expected = variants.sort("pos", "ref", "alt").to_dicts()
    for row, want in zip(rows, expected, strict=True):
        assert int(row[1]) == want["pos"] and row[2] == want["ref"] and row[3] == want["alt"]
        assert row[4] == "SMALL" and row[5] == want["consequence"]
        assert row[7] == "./."
        assert int(row[8]) == want["depth"]
        ref_ad, alt_ad = (int(x) for x in row[9].split(","))
        assert alt_ad == want["alt_reads"] and ref_ad == want["depth"] - want["alt_reads"]
        assert float(row[10]) == pytest.approx(want["vaf"], abs=1e-4)
        assert row[11] == f".,{want['alt_forward']}" and row[12] == f".,{want['alt_reverse']}"


@pytest.mark.external
def test_empty_vcf_is_header_only_and_valid(scanned, tmp_path):
    _, _, _, variants, contigs = scanned
    vcf = write_vcf(variants.clear(), tmp_path / "e.vcf.gz", contigs=contigs, sample="x")
    assert int(_bcftools("index", "-n", str(vcf)).strip()) == 0
    assert _bcftools("view", "-H", str(vcf)) == ""


def test_vcf_unknown_contig_is_an_error_and_leaves_nothing(scanned, tmp_path):
    _, _, _, variants, _ = scanned
    with pytest.raises(cd22scan.errors.OutputError, match="not among the header contigs"):
        write_vcf(variants, tmp_path / "bad.vcf.gz", contigs={"other": 10}, sample="x")
    assert list(tmp_path.iterdir()) == []


def test_junction_bed12_round_trips_intron_coordinates(scanned, tmp_path):
    _, _, res, _, _ = scanned
    bed = write_junctions_bed12(res.junctions, tmp_path / "j.bed")
    lines = bed.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("track ") and 'itemRgb="On"' in lines[0]
    got = []
    for line in lines[1:]:
        f = line.split("\t")
        assert len(f) == 12
        start, end = int(f[1]), int(f[2])
        sizes = [int(x) for x in f[10].split(",")]
        offsets = [int(x) for x in f[11].split(",")]
        assert f[9] == "2" and offsets[0] == 0 and min(sizes) >= 1
        assert start + offsets[1] + sizes[1] == end  # last block ends at chromEnd
        assert (int(f[6]), int(f[7])) == (start, end)
        intron = (start + sizes[0], start + offsets[1])  # BED: 0-based half-open
        reads = int(f[3].rsplit("|", 1)[1])
        assert int(f[4]) == min(reads, 1000)
        got.append((f[0], intron[0], intron[1], f[5], reads, f[3], f[8]))
    table = res.junctions.sort("contig", "start", "end", "strand")
    want = [
        (r["contig"], r["start"] - 1, r["end"], r["strand"] or ".", r["reads"])
        for r in table.iter_rows(named=True)
    ]
    assert [g[:5] for g in got] == want
    skip = [g for g in got if g[5].startswith("Δex2|")]
    assert skip and all(g[6] == "255,0,0" for g in skip)


def test_junction_bed12_min_reads_filters(scanned, tmp_path):
    _, _, res, _, _ = scanned
    cut = int(res.junctions["reads"].max())
    bed = write_junctions_bed12(res.junctions, tmp_path / "j.bed", min_reads=cut)
    assert (
        len(bed.read_text().splitlines()) - 1 == res.junctions.filter(pl.col("reads") >= cut).height
    )


def test_summary_json_keeps_schema_version(scanned, tmp_path):
    _, _, res, _, _ = scanned
    path = write_summary_json(res.summary, tmp_path / "s.summary.json")
    data = json.loads(path.read_text())
    assert next(iter(data)) == "schema_version"
    assert data["schema_version"] == res.summary["schema_version"]
    assert data["fragments_on_gene"] == res.summary["fragments_on_gene"]


# --- MultiQC ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort_out(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mqc")
    specs = [
        ("P1", "P1_base", "baseline", {"canonical": 1.0}, 1),
        ("P1", "P1_rel", "relapse", {"canonical": 0.5, "skip:2": 0.5}, 2),
        ("P2", "P2_base", "baseline", {"canonical": 1.0}, 3),
        ("P2", "P2_rel", "relapse", {"canonical": 1.0}, 4),
    ]
    sheet, gtf = write_small_cohort(tmp, specs, n_fragments=1200)
    out = tmp / "out"
    run_cohort(sheet, out, ScanParams(gtf=str(gtf), gene="SMALL"))
    verdicts = pl.read_csv(out / "cohort_verdicts.tsv", separator="\t")
    per_sample = [sample_metrics(load_scan(out / "scans", s[1])) for s in specs]
    written = write_multiqc_files(out / "multiqc", verdicts, per_sample)
    return out, verdicts, per_sample, written


@pytest.mark.slow
def test_multiqc_files_are_written(cohort_out):
    out, verdicts, _, written = cohort_out
    assert [p.name for p in written] == [GENERAL_STATS_FILE, VERDICTS_FILE]
    stats = json.loads((out / "multiqc" / GENERAL_STATS_FILE).read_text())
    assert stats["plot_type"] == "generalstats"
    assert stats["data"]["P1_rel"]["skip_dex2"] > 0.3
    assert stats["data"]["P1_base"]["skip_dex2"] == 0.0  # not seen, donor splices: share 0
    assert stats["data"]["P1_rel"]["escape_events"] >= 1
    table = (out / "multiqc" / VERDICTS_FILE).read_text().splitlines()
    assert '# plot_type: "table"' in table
    assert sum(not line.startswith("#") for line in table) == 1 + verdicts.height


@pytest.mark.external
@pytest.mark.slow
def test_multiqc_finds_the_custom_content(cohort_out, tmp_path):
    pytest.importorskip("multiqc", reason="multiqc not installed (pip install multiqc)")
    out, _, _, _ = cohort_out
    report = tmp_path / "report"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "multiqc",
            "--no-ansi",
            "-f",
            "-o",
            str(report),
            str(out / "multiqc"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data_dir = report / "multiqc_data"
    general = (data_dir / "multiqc_general_stats.txt").read_text()
    assert "P1_rel" in general and "skip_dex2" in general
    data = json.loads((data_dir / "multiqc_data.json").read_text())
    text = json.dumps(data)
    assert "cd22scan_verdicts" in text
    assert "P1_base_vs_P1_rel" in text
    lines = [line.split("\t") for line in general.splitlines()]
    columns = [c.rsplit("-", 1)[-1] for c in lines[0]]
    rows = {f[0]: dict(zip(columns, f, strict=True)) for f in lines[1:]}
    assert set(rows) == {"P1_base", "P1_rel", "P2_base", "P2_rel"}
    assert float(rows["P1_rel"]["skip_dex2"]) > 0.3
    assert float(rows["P1_base"]["skip_dex2"]) == 0.0
    assert int(float(rows["P1_rel"]["escape_events"])) >= 1
    assert int(float(rows["P1_base"]["fragments_on_gene"])) > 500


def test_junction_bed12_handmade_rows(tmp_path):
    frame = pl.DataFrame(
        {
            "sample": ["x", "x"],
            "contig": ["chr1", "chr1"],
            "start": [5, 100],
            "end": [50, 200],
            "strand": [None, "-"],
            "reads": [2000, 3],
            "max_anchor": [30, 0],
            "annotated": [False, True],
            "donor_exon": [None, 2],
            "acceptor_exon": [None, 1],
            "skipped_exons": [None, None],
            "strand_source": ["gene", "XS"],
        }
    )
    lines = write_junctions_bed12(frame, tmp_path / "h.bed").read_text().splitlines()[1:]
    first, second = (line.split("\t") for line in lines)
    # Left anchor clipped at the contig start; score capped, exact reads in the name.
    assert first[1:6] == ["0", "80", "J1|2000", "1000", "."]
    assert first[10:12] == ["4,30", "0,50"]
    # max_anchor 0 still gives 1-bp blocks; the intron is [99, 200) in BED.
    assert second[1:6] == ["98", "201", "ex2-ex1|3", "3", "-"]
    assert second[10:12] == ["1,1", "0,102"]
