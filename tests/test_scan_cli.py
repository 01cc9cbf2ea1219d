"""End-to-end: `cd22scan scan` as users run it — files, formats, stdin, builds, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pysam
import pytest
from simulator import cd22_grch37, cd22_grch38, simulate, small_gene

from cd22scan import scan
from cd22scan.cli import main
from cd22scan.simulate import write_gtf

EXON_COLUMNS = [
    "sample", "gene", "transcript", "exon", "contig", "start", "end", "length", "fragments",
    "mean_depth",
]  # fmt: skip
JUNCTION_COLUMNS = [
    "sample", "contig", "start", "end", "strand", "reads", "max_anchor", "annotated", "transcripts",
    "donor_exon", "acceptor_exon", "skipped_exons", "strand_source",
]  # fmt: skip


@pytest.fixture(scope="module")
def small_plus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("small_plus")
    sim = simulate(
        tmp,
        seed=101,
        gene=small_gene("+"),
        n_fragments=1200,
        isoforms={"canonical": 0.6, "skip:2-3": 0.25, "retain:4": 0.15},
        variants=[("snv", 2000, None, 0.3)],
        sample="P1_relapse",
    )
    gtf = write_gtf(sim.gene, tmp / "small.gtf")
    return sim, gtf


def _run(argv, capsys=None):
    code = main([str(a) for a in argv])
    return code


def _truth_junctions(sim) -> dict[tuple[int, int], int]:
    return {(s + 1, e): n for (s, e), n in sim.truth["junctions"].items()}


def test_scan_writes_documented_tables_with_truth_counts(small_plus, tmp_path):
    sim, gtf = small_plus
    out = tmp_path / "out"
    assert _run(["scan", sim.bam, "--out", out, "--gtf", gtf, "--gene", "SMALL"]) == 0
    name = "P1_relapse"  # from the read group's SM
    exons = pl.read_csv(out / f"{name}.exons.tsv", separator="\t")
    assert exons.columns == EXON_COLUMNS
    assert exons["exon"].to_list() == [1, 2, 3, 4, 5, 6]
    assert exons["fragments"].to_list() == list(sim.truth["exon_fragments"])  # + strand
    assert exons["start"][0] == sim.gene.exons[0][0] + 1  # 1-based
    junctions = pl.read_csv(out / f"{name}.junctions.tsv", separator="\t")
    assert junctions.columns == JUNCTION_COLUMNS
    got = {(r["start"], r["end"]): r["reads"] for r in junctions.iter_rows(named=True)}
    assert got == _truth_junctions(sim)
    skip = junctions.filter(pl.col("skipped_exons") == "2-3")
    assert skip.height == 1
    assert skip["donor_exon"][0] == 1 and skip["acceptor_exon"][0] == 4
    assert not skip["annotated"][0]
    assert (
        junctions.filter(pl.col("annotated"))["skipped_exons"].fill_null("").to_list() == [""] * 5
    )
    summary = json.loads((out / f"{name}.summary.json").read_text())
    assert summary["strandedness"]["mode"] == "fr"
    assert summary["reads"]["removed_duplicate"] == sim.truth["filters"]["duplicate"]
    assert summary["fragments_on_gene"] == sim.truth["gene_fragments"]
    bases = pl.read_parquet(out / f"{name}.bases.parquet")
    assert {"contig", "pos", "ref", "A", "C", "G", "T", "N", "del", "ins", "depth"} <= set(
        bases.columns
    )
    assert (
        bases["depth"]
        == bases["A"] + bases["C"] + bases["G"] + bases["T"] + bases["N"] + bases["del"]
    ).all()


def test_every_table_has_a_parquet_twin_with_the_same_rows(small_plus, tmp_path):
    sim, gtf = small_plus
    out = tmp_path / "out"
    assert _run(["scan", sim.bam, "--out", out, "--gtf", gtf, "--gene", "SMALL"]) == 0
    tsvs = sorted(out.glob("*.tsv"))
    names = {p.name.split(".")[1] for p in tsvs}
    assert names == {"exons", "junctions", "introns", "indels", "allele_evidence"}
    for tsv in tsvs:
        parquet = pl.read_parquet(tsv.with_suffix(".parquet"))
        text = pl.read_csv(tsv, separator="\t", schema=parquet.schema)
        may_be_empty = (".indels.tsv", ".allele_evidence.tsv")
        assert parquet.height > 0 or tsv.name.endswith(may_be_empty), tsv.name
        assert text.equals(parquet, null_equal=True), tsv.name


def test_minus_strand_gene_numbers_exons_from_the_5prime_end(tmp_path):
    sim = simulate(
        tmp_path,
        seed=102,
        gene=small_gene("-"),
        n_fragments=800,
        isoforms={"skip:2": 0.5, "canonical": 0.5},
    )
    gtf = write_gtf(sim.gene, tmp_path / "m.gtf")
    result = scan(str(sim.bam), gtf=str(gtf), gene="SMALLM")
    exons = result.exons.sort("exon")
    # Exon 1 of a - strand gene is the genomically last one.
    assert exons["start"][0] == sim.gene.exons[-1][0] + 1
    assert exons["fragments"].to_list() == list(reversed(sim.truth["exon_fragments"]))
    skip = result.junctions.filter(pl.col("skipped_exons") == "2")
    assert skip.height == 1
    assert (skip["donor_exon"][0], skip["acceptor_exon"][0]) == (1, 3)
    assert skip["strand"][0] == "-"


def _tables_equal(a, b):
    for name in ("exons", "junctions", "introns", "indels", "bases"):
        fa, fb = (
            getattr(a, name).drop("sample", strict=False),
            getattr(b, name).drop("sample", strict=False),
        )
        assert fa.equals(fb), name


def test_stream_sam_cram_and_stdin_equal_indexed_bam(small_plus, tmp_path):
    sim, gtf = small_plus
    kw = {"gtf": str(gtf), "gene": "SMALL", "reference": str(sim.reference)}
    indexed = scan(str(sim.bam), **kw)
    assert indexed.summary["read_mode"] == "indexed"
    streamed = scan(str(sim.bam), stream=True, **kw)
    assert streamed.summary["read_mode"] == "stream"
    _tables_equal(indexed, streamed)
    assert streamed.summary["library_size"] == indexed.summary["library_size"]

    sam = tmp_path / "x.sam"
    pysam.view("-h", "-o", str(sam), str(sim.bam), catch_stdout=False)
    _tables_equal(indexed, scan(str(sam), **kw))

    cram = tmp_path / "x.cram"
    pysam.view("-C", "-T", str(sim.reference), "-o", str(cram), str(sim.bam), catch_stdout=False)
    pysam.index(str(cram))
    _tables_equal(indexed, scan(str(cram), **kw))

    out = tmp_path / "stdin_out"
    cmd = [sys.executable, "-m", "cd22scan.cli", "scan", "-", "--out", str(out), "--gtf", str(gtf)]
    cmd += ["--gene", "SMALL", "--sample", "piped"]
    with open(sim.bam, "rb") as handle:
        proc = subprocess.run(cmd, stdin=handle, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "stream" in proc.stderr
    piped = pl.read_csv(out / "piped.exons.tsv", separator="\t")
    assert piped.drop("sample").equals(indexed.exons.drop("sample"))


@pytest.mark.parametrize(
    ("spec", "contig", "build"),
    [
        (cd22_grch38, "chr19", "GRCh38"),
        (cd22_grch38, "19", "GRCh38"),
        (cd22_grch38, "NC_000019.10", "GRCh38"),
        (cd22_grch37, "chr19", "GRCh37"),
        (cd22_grch37, "NC_000019.9", "GRCh37"),
    ],
)
def test_builtin_cd22_both_builds_all_contig_namings(tmp_path, spec, contig, build):
    gene = spec()
    sim = simulate(
        tmp_path, seed=7, gene=gene, n_fragments=300, contig_name=contig, write_reference=False
    )
    result = scan(str(sim.bam))
    assert result.summary["build"] == build
    assert result.summary["contig"] == contig
    exons = result.exons.sort("exon")
    assert exons["start"][0] == gene.exons[0][0] + 1
    assert exons["fragments"].to_list() == list(sim.truth["exon_fragments"])


def test_build_mismatch_is_refused_with_both_named(tmp_path, capsys):
    sim = simulate(tmp_path, seed=8, gene=cd22_grch37(), n_fragments=50, write_reference=False)
    code = main(["scan", str(sim.bam), "--out", str(tmp_path / "o"), "--build", "GRCh38"])
    err = capsys.readouterr().err
    assert code == 3
    assert "58617616" in err and "59128983" in err and err.count("\n") == 1
    assert str(sim.bam) in err  # names the BAM whose header disagrees


@pytest.mark.parametrize(
    ("content", "code", "needle"),
    [(None, 2, "no such file"), (b"", 2, "empty file"), (b"\x00garbage" * 100, 2, "cannot read")],
)
def test_bad_inputs_give_one_line_and_exit_code(tmp_path, capsys, content, code, needle):
    path = tmp_path / "input.bam"
    if content is not None:
        path.write_bytes(content)
    assert main(["scan", str(path), "--out", str(tmp_path / "o")]) == code
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_unknown_gene_in_gtf_and_bad_option(small_plus, tmp_path, capsys):
    sim, gtf = small_plus
    assert (
        main(["scan", str(sim.bam), "--out", str(tmp_path), "--gtf", str(gtf), "--gene", "NOPE"])
        == 3
    )
    assert "NOPE" in capsys.readouterr().err
    assert main(["scan", str(sim.bam), "--out", str(tmp_path), "--min-mapq", "-1"]) == 64
    assert main(["scan"]) == 64


def test_console_script_runs(small_plus, tmp_path):
    exe = shutil.which("cd22scan")
    if exe is None:
        pytest.skip("cd22scan console script not on PATH (package not installed)")
    sim, gtf = small_plus
    proc = subprocess.run(
        [
            exe,
            "scan",
            str(sim.bam),
            "--out",
            str(tmp_path),
            "--gtf",
            str(gtf),
            "--gene",
            "SMALL",
            "-q",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_scan_writes_bed12_and_workflow_path_is_printed(small_plus, tmp_path, capsys):
    sim, gtf = small_plus
    assert (
        main(["scan", str(sim.bam), "--out", str(tmp_path), "--gtf", str(gtf), "--gene", "SMALL"])
        == 0
    )
    bed = (tmp_path / "P1_relapse.junctions.bed").read_text().splitlines()
    junctions = pl.read_csv(tmp_path / "P1_relapse.junctions.tsv", separator="\t")
    assert bed[0].startswith("track") and len(bed) - 1 == junctions.height
    capsys.readouterr()
    assert main(["workflow", "path"]) == 0
    path = capsys.readouterr().out.strip()
    assert path.endswith("Snakefile") and Path(path).exists()
