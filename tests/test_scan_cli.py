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
from cd22scan.demo.simulate import write_gtf

EXON_COLUMNS = [
    "sample", "gene", "transcript", "exon", "contig", "start", "end", "length", "fragments",
    "mean_depth",
]  # fmt: skip
JUNCTION_COLUMNS = [
    "sample", "contig", "start", "end", "strand", "reads", "max_anchor", "annotated",
    "donor_exon", "acceptor_exon", "skipped_exons", "strand_source", "transcripts", "name", "label",
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
    assert bed[0].startswith("# ") and len(bed) - 1 == junctions.height
    capsys.readouterr()
    assert main(["workflow", "path"]) == 0
    path = capsys.readouterr().out.strip()
    assert path.endswith("Snakefile") and Path(path).exists()


# --- folders and conventions: compare inputs, manifest, stdin names, -o -, short options --------


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from cohort_helpers import write_small_cohort

    tmp = tmp_path_factory.mktemp("folders")
    specs = [
        ("P1", "P1_base", "baseline", {"canonical": 1.0}, 1),
        ("P1", "P1_rel", "relapse", {"canonical": 0.6, "skip:2": 0.4}, 2),
        ("P2", "P2_base", "baseline", {"canonical": 1.0}, 3),
        ("P2", "P2_rel", "relapse", {"canonical": 1.0}, 4),
    ]
    sheet, gtf = write_small_cohort(tmp, specs, n_fragments=600)
    out = tmp / "out"
    assert _run(["run", sheet, "-o", out, "--gtf", gtf, "--gene", "SMALL"]) == 0
    return tmp, sheet, gtf, out


def _manifest(out: Path) -> dict[str, dict[str, str]]:
    rows = pl.read_csv(out / "manifest.tsv", separator="\t").to_dicts()
    return {r["file"]: r for r in rows}


def test_run_writes_a_manifest_of_every_file_it_wrote(cohort):
    import hashlib

    _, _, _, out = cohort
    manifest = _manifest(out)
    on_disk = {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.name != "manifest.tsv"
    }
    assert set(manifest) == on_disk
    assert "pairs/P2_base_vs_P2_rel.report.html" in manifest
    assert manifest["scans/P1_rel.summary.json"]["kind"] == "scan"
    assert manifest["cohort_verdicts.tsv"]["kind"] == "cohort"
    for rel, row in manifest.items():
        data = (out / rel).read_bytes()
        assert row["bytes"] == len(data) and row["sha256"] == hashlib.sha256(data).hexdigest()


def test_rerun_with_a_smaller_sheet_removes_the_old_pairs_files(cohort, tmp_path, capsys):
    tmp, sheet, gtf, out = cohort
    rerun = tmp_path / "out"
    shutil.copytree(out, rerun)
    (rerun / "pairs" / "notes_by_hand.txt").write_text("mine\n")
    small = tmp / "p1_only.tsv"
    lines = sheet.read_text().splitlines()
    small.write_text("\n".join(line for line in lines if not line.startswith("P2")) + "\n")
    capsys.readouterr()
    assert _run(["run", small, "-o", rerun, "--gtf", gtf, "--gene", "SMALL"]) == 0
    left = {p.relative_to(rerun).as_posix() for p in rerun.rglob("*") if p.is_file()}
    assert not [name for name in left if "P2" in name], left
    assert "pairs/P1_base_vs_P1_rel.report.html" in left
    assert "pairs/notes_by_hand.txt" in left  # not cd22scan's: kept, and said
    err = capsys.readouterr().err
    assert "notes_by_hand.txt" in err and "did not write" in err
    assert err.count("no --reference") == 1  # once per run, not once per sample
    manifest = _manifest(rerun)
    assert "pairs/notes_by_hand.txt" not in manifest
    assert not [name for name in manifest if "P2" in name]
    verdicts = pl.read_csv(rerun / "cohort_verdicts.tsv", separator="\t")
    assert verdicts["patient"].to_list() == ["P1"]


def test_compare_takes_every_form_of_scan_run_wrote(cohort, tmp_path, capsys):
    _, _, _, out = cohort
    scans = out / "scans"
    forms = [
        ["--baseline", scans, "--baseline-sample", "P1_base", "--relapse", scans / "P1_rel"],
        ["--baseline", scans / "P1_base.summary.json", "--relapse", f"{scans}/P1_rel"],
    ]
    for i, form in enumerate(forms):
        dest = tmp_path / f"cmp{i}"
        assert _run(["compare", *form, "-o", dest]) == 0
        verdict = pl.read_csv(dest / "verdict.tsv", separator="\t").row(0, named=True)
        assert (verdict["baseline"], verdict["relapse"]) == ("P1_base", "P1_rel")
        assert not (dest / "scans").exists()  # scans were read, not re-written
    capsys.readouterr()
    code = _run(["compare", "--baseline", scans, "--relapse", scans / "P1_rel", "-o", tmp_path])
    err = capsys.readouterr().err
    assert code == 64 and "--baseline-sample" in err and "P2_base" in err
    assert len(err.strip().splitlines()) == 1


def test_out_dash_is_stdout_for_one_table_and_a_usage_error_otherwise(small_plus, tmp_path):
    sim, gtf = small_plus
    base = [sys.executable, "-m", "cd22scan.cli"]
    opts = ["--gtf", str(gtf), "--gene", "SMALL"]
    proc = subprocess.run(
        [*base, "scan", str(sim.bam), "--table", "junctions", "-o", "-", *opts],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written, no folder named "-"
    assert _run(["scan", sim.bam, "-o", tmp_path / "files", *opts]) == 0
    on_disk = (tmp_path / "files" / "P1_relapse.junctions.tsv").read_text()
    assert proc.stdout == on_disk
    for argv in (
        ["scan", str(sim.bam), "-o", "-", *opts],
        ["compare", "--baseline", str(sim.bam), "--relapse", str(sim.bam), "-o", "-", *opts],
        ["run", str(tmp_path / "sheet.tsv"), "-o", "-", *opts],
        ["scan", str(sim.bam), "--table", "exons", "-o", str(tmp_path / "x"), *opts],
    ):
        bad = subprocess.run([*base, *argv], capture_output=True, text=True, cwd=tmp_path)
        assert bad.returncode == 64, (argv, bad.stderr)
        assert bad.stderr.startswith("cd22scan: error:") and bad.stdout == ""
        assert not (tmp_path / "-").exists() and not (tmp_path / "x").exists()


def test_two_stdin_scans_into_one_folder_need_a_sample_name(small_plus, tmp_path):
    sim, gtf = small_plus
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "cd22scan.cli", "scan", "-", "-o", str(out), "--gtf", str(gtf)]
    cmd += ["--gene", "SMALL", "-@", "2"]

    def piped(*extra: str):
        with open(sim.bam, "rb") as handle:
            # not from the repository, whose cd22scan/ folder would shadow the installed package
            return subprocess.run(
                [*cmd, *extra], stdin=handle, capture_output=True, text=True, cwd=tmp_path
            )

    first = piped()
    assert first.returncode == 0, first.stderr
    summary = out / "P1_relapse.summary.json"
    before = summary.read_bytes()
    second = piped()
    assert second.returncode == 64 and "--sample" in second.stderr, second.stderr
    assert summary.read_bytes() == before
    third = piped("--sample", "again")
    assert third.returncode == 0 and (out / "again.summary.json").is_file()


def test_version_names_cd22scan_pysam_and_htslib(capsys):
    import pysam.version

    assert main(["--version"]) == 0
    text = capsys.readouterr().out.strip()
    assert text.startswith("cd22scan ")
    assert f"pysam {pysam.__version__}" in text
    assert f"htslib {pysam.version.__htslib_version__}" in text


def test_region_scans_a_window_as_one_pseudo_exon(small_plus, tmp_path, capsys):
    """--region chr:start-end: one exon over the window; its fragments equal the gene scan's
    count of the exon with the same coordinates (same definition: an aligned base inside)."""
    sim, gtf = small_plus
    gene_scan = scan(str(sim.bam), gtf=str(gtf), gene="SMALL")
    exon2 = gene_scan.exons.filter(pl.col("exon") == 2).row(0, named=True)
    region = f"{exon2['contig']}:{exon2['start']:,}-{exon2['end']}"
    assert _run(["scan", sim.bam, "--region", region, "-o", tmp_path / "r"]) == 0
    exons = pl.read_csv(next((tmp_path / "r").glob("*.exons.tsv")), separator="\t")
    assert exons.height == 1
    row = exons.row(0, named=True)
    assert (row["start"], row["end"]) == (exon2["start"], exon2["end"])
    assert row["gene"] == f"{exon2['contig']}:{exon2['start']}-{exon2['end']}"
    assert row["fragments"] == exon2["fragments"] > 0
    from cd22scan.outputs.scandir import load_scan

    loaded = load_scan(tmp_path / "r")  # compare reads a region scan back
    assert loaded.model.gene == row["gene"] and loaded.model.transcript == "region"
    capsys.readouterr()
    for bad in ("chrT:200-100", "chrT", "chrT:x-10"):
        assert _run(["scan", sim.bam, "--region", bad, "-o", tmp_path / "bad"]) == 64
        assert "--region" in capsys.readouterr().err
