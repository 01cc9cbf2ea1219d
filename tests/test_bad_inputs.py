"""Bad inputs, end to end: every one gives one line on stderr naming the file and the problem, its
documented exit code (README "Exit codes"), no traceback and no partial outputs.

Each test is named for the catalogue item it holds. Items already covered elsewhere: missing,
empty and garbage input files and the bad-option exit 64 (test_scan_cli), a build mismatch
(test_scan_cli), sample sheets with missing columns, bad timepoints, duplicate samples or missing
files (test_cohort), GTF syntax details (test_annotation).

stderr is captured at the file-descriptor level (capfd), so htslib's own "[E::...]" lines would
show up here too.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pysam
import pytest
from simulator import simulate, small_gene, write_sam_text_bam

import cd22scan
from cd22scan.cli import main
from cd22scan.demo.simulate import write_gtf

EOF_MARKER_LEN = 28  # the empty BGZF block that ends every BAM
README = Path(__file__).resolve().parents[1] / "README.md"


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A small indexed BAM over SMALL (chrT), its GTF and its reference FASTA."""
    tmp = tmp_path_factory.mktemp("bad_inputs")
    sim = simulate(tmp / "sim", seed=66, gene=small_gene("+"), n_fragments=400, sample="S1")
    gtf = write_gtf(sim.gene, tmp / "small.gtf")
    return sim, gtf


def gene_args(gtf) -> list[str]:
    return ["--gtf", str(gtf), "--gene", "SMALL"]


def run_cli(capfd, argv) -> tuple[int, str]:
    capfd.readouterr()
    code = main([str(a) for a in argv])
    return code, capfd.readouterr().err


def assert_one_error_line(err: str, *needles: str) -> str:
    """Exactly one line, a cd22scan error, no traceback, no htslib chatter; holds each needle."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cd22scan: error: "), err
    assert "Traceback" not in err and "[E::" not in err and "[W::" not in err
    for needle in needles:
        assert needle in lines[0], (needle, err)
    return lines[0]


def assert_no_outputs(out: Path) -> None:
    """Nothing left under the output directory (it may exist, empty)."""
    left = sorted(p.relative_to(out) for p in out.rglob("*")) if out.exists() else []
    assert left == [], left


def copy_bam(src: Path, dst: Path, *, index: bool) -> Path:
    shutil.copyfile(src, dst)
    if index:
        shutil.copyfile(f"{src}.bai", f"{dst}.bai")
    return dst


def bgzf_block_offsets(data: bytes) -> list[int]:
    offsets, at = [], 0
    while at < len(data):
        offsets.append(at)
        at += int.from_bytes(data[at + 16 : at + 18], "little") + 1  # BSIZE = block size - 1
    return offsets


def exon_fragments(out: Path, name: str) -> list[int]:
    return pl.read_csv(out / f"{name}.exons.tsv", separator="\t")["fragments"].to_list()


# --- index: missing, older than the BAM ---------------------------------------------------------


def test_bam_without_index_streams_and_says_how_to_index(sample, tmp_path, capfd):
    sim, gtf = sample
    bam = copy_bam(sim.bam, tmp_path / "noindex.bam", index=False)
    code, err = run_cli(capfd, ["scan", bam, "--out", tmp_path / "o", *gene_args(gtf)])
    assert code == 0, err
    line = next(x for x in err.splitlines() if "has no index" in x)
    assert str(bam) in line and "whole file" in line and f"samtools index {bam}" in line
    summary = json.loads((tmp_path / "o" / "S1.summary.json").read_text())
    assert summary["read_mode"] == "stream"
    assert summary["fragments_on_gene"] == sim.truth["gene_fragments"]
    # --stream is an option and documented.
    assert main(["scan", "--help"]) == 0
    assert "--stream" in capfd.readouterr().out
    assert "`--stream`" in README.read_text()


def test_index_older_than_bam_warns_once_naming_both(sample, tmp_path, capfd):
    sim, gtf = sample
    bam = copy_bam(sim.bam, tmp_path / "stale.bam", index=True)
    old = os.path.getmtime(bam) - 3600
    os.utime(f"{bam}.bai", (old, old))
    code, err = run_cli(capfd, ["scan", bam, "--out", tmp_path / "o", "-q", *gene_args(gtf)])
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 1, err  # ours, not htslib's "[W::hts_idx_load3]" as well
    assert f"{bam}.bai is older than {bam}" in lines[0] and "samtools index" in lines[0]
    assert exon_fragments(tmp_path / "o", "S1") == list(sim.truth["exon_fragments"])


# --- damaged BAM files --------------------------------------------------------------------------


def _cut_mid_block(data: bytes) -> bytes:
    offsets = bgzf_block_offsets(data)
    return data[: (offsets[1] + offsets[2]) // 2]


def _cut_mid_block_keep_eof(data: bytes) -> bytes:
    return _cut_mid_block(data) + data[-EOF_MARKER_LEN:]


def _flip_deflate_bytes(data: bytes) -> bytes:
    offsets = bgzf_block_offsets(data)
    damaged = bytearray(data)
    for at in range(offsets[1] + 40, offsets[1] + 80):
        damaged[at] ^= 0xFF
    return bytes(damaged)


@pytest.mark.parametrize(
    ("damage", "index", "needle"),
    [
        # No EOF marker: refused even when only the marker is gone, because a BAM cut exactly at
        # a block boundary looks the same and its counts would be silently short.
        (_cut_mid_block, False, "no BGZF end-of-file marker"),
        (lambda data: data[:-EOF_MARKER_LEN], False, "no BGZF end-of-file marker"),
        (lambda data: data[:-EOF_MARKER_LEN], True, "no BGZF end-of-file marker"),
        (_cut_mid_block_keep_eof, False, "read error"),
        (_flip_deflate_bytes, True, "read error"),
    ],
    ids=["cut-mid-block", "no-eof-marker", "no-eof-marker-indexed", "cut-eof-kept", "corrupt"],
)
def test_damaged_bam_is_refused_in_one_line(sample, tmp_path, capfd, damage, index, needle):
    sim, gtf = sample
    bam = tmp_path / "damaged.bam"
    bam.write_bytes(damage(sim.bam.read_bytes()))
    if index:
        shutil.copyfile(f"{sim.bam}.bai", f"{bam}.bai")
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["scan", bam, "--out", out, "-q", *gene_args(gtf)])
    assert code == 2
    assert_one_error_line(err, str(bam), needle)
    assert_no_outputs(out)


def test_damaged_bam_through_python_m_has_no_traceback(sample, tmp_path):
    sim, gtf = sample
    bam = tmp_path / "cut.bam"
    bam.write_bytes(_cut_mid_block_keep_eof(sim.bam.read_bytes()))
    cmd = [sys.executable, "-m", "cd22scan", "scan", str(bam), "--out", str(tmp_path / "o"), "-q"]
    # Not run from the repository, whose cd22scan/ folder would shadow the installed package.
    proc = subprocess.run([*cmd, *gene_args(gtf)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert_one_error_line(proc.stderr, str(bam), "read error")


# --- SAM text and record-level problems ---------------------------------------------------------


@pytest.fixture(scope="module")
def sam_text(sample):
    sim, _ = sample
    return pysam.view("-h", str(sim.bam)).splitlines()


def _broken_sam(lines: list[str], lineno: int, edit) -> str:
    out = list(lines)
    out[lineno - 1] = edit(out[lineno - 1].split("\t"))
    return "\n".join(out) + "\n"


SAM_BREAKS = {
    "three-fields": lambda f: "\t".join(f[:3]),
    "cigar-longer-than-seq": lambda f: "\t".join([*f[:5], "5M50M", *f[6:]]),
    "pos-not-a-number": lambda f: "\t".join([*f[:3], "12x", *f[4:]]),
}


@pytest.mark.parametrize("kind", list(SAM_BREAKS))
def test_sam_with_a_broken_line_is_refused_in_one_line(sample, sam_text, tmp_path, capfd, kind):
    _, gtf = sample
    headers = sum(line.startswith("@") for line in sam_text)
    sam = tmp_path / "broken.sam"
    sam.write_text(_broken_sam(sam_text, headers + 40, SAM_BREAKS[kind]))
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["scan", sam, "--out", out, "-q", *gene_args(gtf)])
    assert code == 2
    assert_one_error_line(err, str(sam))
    assert_no_outputs(out)


def test_sam_with_a_broken_line_names_the_line(sample, sam_text, tmp_path, capfd):
    _, gtf = sample
    headers = sum(line.startswith("@") for line in sam_text)
    sam = tmp_path / "broken.sam"
    sam.write_text(_broken_sam(sam_text, headers + 40, SAM_BREAKS["three-fields"]))
    code, err = run_cli(capfd, ["scan", sam, "--out", tmp_path / "o", "-q", *gene_args(gtf)])
    assert code == 2
    assert_one_error_line(err, str(sam), f"line {headers + 40}")


def _bam_with_cigar_seq_disagreement(path: Path) -> Path:
    header = pysam.AlignmentHeader.from_dict(
        {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "chrT", "LN": 6000}]}
    )
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for i, seq_len in enumerate((100, 60)):  # the second record: 100M but 60 bases
            read = pysam.AlignedSegment(header)
            read.query_name, read.flag, read.reference_id = f"r{i}", 0, 0
            read.reference_start, read.mapping_quality = 1550 + i, 60
            read.cigarstring = "100M"
            read.query_sequence = "A" * seq_len
            read.query_qualities = pysam.qualitystring_to_array("I" * seq_len)
            out.write(read)
    return path


def test_bam_record_with_cigar_seq_disagreement_is_refused(sample, tmp_path, capfd):
    _, gtf = sample
    bam = _bam_with_cigar_seq_disagreement(tmp_path / "cigseq.bam")
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["scan", bam, "--out", out, "-q", *gene_args(gtf)])
    assert code == 2
    assert_one_error_line(err, str(bam))
    assert_no_outputs(out)


def test_bam_record_with_cigar_seq_disagreement_names_the_record(sample, tmp_path, capfd):
    _, gtf = sample
    bam = _bam_with_cigar_seq_disagreement(tmp_path / "cigseq.bam")
    code, err = run_cli(capfd, ["scan", bam, "--out", tmp_path / "o", "-q", *gene_args(gtf)])
    assert code == 2
    assert_one_error_line(err, str(bam), "record 2")


def test_core_refuses_cigar_seq_disagreement_with_core_error():
    from cd22scan import _core

    counter = _core.GeneCounter("chrT", 1000, 2000, [(1100, 1200)])
    with pytest.raises(_core.CoreError, match=r"record 1 \(read 'r1'\).*CIGAR"):
        counter.add_sam(b"r1\t0\tchrT\t1101\t60\t10M\t*\t0\t0\tACGTA\tIIIII\n")


# --- sort order ---------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["unsorted", "queryname"])
def test_header_not_coordinate_sorted_is_refused(sample, tmp_path, capfd, order):
    sim, gtf = sample
    with pysam.AlignmentFile(str(sim.bam)) as src:
        header = src.header.to_dict()
        header["HD"]["SO"] = order
        bam = tmp_path / f"{order}.bam"
        with pysam.AlignmentFile(str(bam), "wb", header=header) as out:
            for read in src.fetch(until_eof=True):
                out.write(read)
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["scan", bam, "--out", out, "-q", *gene_args(gtf)])
    assert code == 2
    assert_one_error_line(err, str(bam), f"SO:{order}", "samtools sort")
    assert_no_outputs(out)


def test_records_going_backwards_under_a_coordinate_header_are_refused(sample, tmp_path, capfd):
    sim, gtf = sample
    with pysam.AlignmentFile(str(sim.bam)) as src:
        header = src.header
        reads = [r for r in src.fetch(until_eof=True) if not r.is_unmapped]
    assert header.to_dict()["HD"]["SO"] == "coordinate"
    bam = tmp_path / "backwards.bam"
    with pysam.AlignmentFile(str(bam), "wb", header=header) as out:
        for read in reversed(reads):
            out.write(read)
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["scan", bam, "--out", out, "-q", *gene_args(gtf)])
    assert code == 2
    assert_one_error_line(err, str(bam), "not sorted by position")
    assert_no_outputs(out)


# --- CRAM and its reference ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cram(sample, tmp_path_factory):
    sim, _ = sample
    path = tmp_path_factory.mktemp("cram") / "S1.cram"
    pysam.view("-C", "-T", str(sim.reference), "-o", str(path), str(sim.bam), catch_stdout=False)
    pysam.index(str(path))
    return path


def _other_fasta(path: Path, name: str, length: int) -> Path:
    body = ("ACGTTGCA" * (length // 8 + 1))[:length]
    path.write_text(f">{name}\n" + "\n".join(body[i : i + 60] for i in range(0, length, 60)))
    pysam.faidx(str(path))
    return path


def test_cram_without_reference_is_refused(sample, cram, tmp_path, capfd, monkeypatch):
    _, gtf = sample
    monkeypatch.delenv("REF_PATH", raising=False)
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["scan", cram, "--out", out, *gene_args(gtf)])
    assert code == 2
    assert_one_error_line(err, str(cram), "needs --reference")
    assert_no_outputs(out)


@pytest.mark.parametrize(
    ("name", "length", "needle"),
    [
        ("chrT", 6000, "does not match the header: chrT has MD5"),
        ("chrT", 5000, "has chrT of 5000 bp, the header says 6000 bp"),
        ("chrX", 6000, "has no contig 'chrT'"),
    ],
    ids=["md5", "length", "contig-name"],
)
def test_cram_with_another_reference_is_refused(
    sample, cram, tmp_path, capfd, name, length, needle
):
    _, gtf = sample
    fasta = _other_fasta(tmp_path / "other.fa", name, length)
    out = tmp_path / "o"
    argv = ["scan", cram, "--out", out, "--reference", fasta, *gene_args(gtf)]
    code, err = run_cli(capfd, argv)
    assert code == 2
    assert_one_error_line(err, str(cram), str(fasta), needle)
    assert_no_outputs(out)


def test_cram_with_its_reference_counts_as_the_bam(sample, cram, tmp_path, capfd):
    sim, gtf = sample
    argv = ["scan", cram, "--out", tmp_path, "--reference", sim.reference, *gene_args(gtf)]
    code, err = run_cli(capfd, argv)
    assert code == 0, err
    assert exon_fragments(tmp_path, "S1") == list(sim.truth["exon_fragments"])


# --- annotation and build -----------------------------------------------------------------------


def test_builtin_cd22_on_a_bam_without_chr19(sample, tmp_path, capfd):
    sim, _ = sample
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["scan", sim.bam, "--out", out])
    assert code == 3
    assert_one_error_line(err, str(sim.bam), "chr19", "not in the BAM header", "chrT")
    assert_no_outputs(out)


def test_gtf_gene_on_a_contig_absent_from_the_bam(sample, tmp_path, capfd):
    sim, _ = sample
    gtf = write_gtf(small_gene("+").with_contig("chrQ"), tmp_path / "chrQ.gtf")
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["scan", sim.bam, "--out", out, *gene_args(gtf)])
    assert code == 3
    assert_one_error_line(err, str(sim.bam), "chrQ", "chrT")
    assert_no_outputs(out)


def _edit_gtf(gtf: Path, lineno: int, edit) -> str:
    lines = gtf.read_text().splitlines()
    lines[lineno - 1] = edit(lines[lineno - 1])
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("lineno", "edit", "extra", "needles"),
    [
        (0, None, ["--gene", "NOPE"], ["NOPE"]),
        (0, None, ["--gene", "SMALL", "--transcript", "NOPE-T9"], ["NOPE-T9", "SMALL-T1"]),
        (5, lambda ln: ln.replace("\t1921\t", "\tabc\t"), ["--gene", "SMALL"], [":5:", "'abc'"]),
        (4, lambda ln: "\t".join(ln.split("\t")[:3]), ["--gene", "SMALL"], [":4:", "9"]),
        (3, lambda ln: ln.replace('";', '"'), ["--gene", "SMALL"], [":3:", "attribute"]),
    ],
    ids=["gene-not-found", "transcript-not-found", "bad-start", "few-columns", "bad-attributes"],
)
def test_gtf_problems_exit_3_naming_gtf(sample, tmp_path, capfd, lineno, edit, extra, needles):
    sim, gtf = sample
    if edit is not None:
        bad = tmp_path / "bad.gtf"
        bad.write_text(_edit_gtf(gtf, lineno, edit))
        gtf = bad
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["scan", sim.bam, "--out", out, "--gtf", gtf, *extra])
    assert code == 3
    assert_one_error_line(err, gtf.name, *needles)
    assert_no_outputs(out)


# --- odd but valid reads ------------------------------------------------------------------------

EDGE_HEADER = "@HD VN:1.6 SO:coordinate\n@SQ SN:chrT LN:1000000\n@RG ID:rg SM:E"


def _record(name, flag, pos1, cigar, seq, qual=None):
    qual = qual if qual is not None else ("*" if seq == "*" else "I" * len(seq))
    return f"{name}\t{flag}\tchrT\t{pos1}\t60\t{cigar}\t*\t0\t0\t{seq}\t{qual}"


def _bases(n: int, seed: int = 0) -> str:
    return "".join("ACGT"[(i * 7 + seed + i // 5) % 4] for i in range(n))


def _scan_edge(tmp_path, capfd, gtf, lines) -> tuple[int, str, Path]:
    bam = write_sam_text_bam(tmp_path / "edge.bam", EDGE_HEADER, lines)
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["scan", bam, "--out", out, "-q", *gene_args(gtf)])
    return code, err, out


def test_zero_reads_over_the_gene_gives_zero_counts_and_a_warning(sample, tmp_path, capfd):
    _, gtf = sample
    code, err, out = _scan_edge(tmp_path, capfd, gtf, [_record("far", 0, 500_000, "50M", "A" * 50)])
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 1 and "edge.bam" in lines[0] and "no reads pass the filters" in lines[0]
    assert exon_fragments(out, "E") == [0] * 6
    assert json.loads((out / "E.summary.json").read_text())["fragments_on_gene"] == 0
    assert pl.read_parquet(out / "E.bases.parquet")["depth"].sum() == 0


def test_reads_of_one_strand_only(sample, tmp_path, capfd):
    _, gtf = sample
    # 40 reverse-strand 50M reads inside exon 4 (genomic 2796-2967, 0-based).
    lines = [_record(f"r{i}", 16, 2800 + i, "50M", _bases(50, i)) for i in range(40)]
    code, err, out = _scan_edge(tmp_path, capfd, gtf, lines)
    assert code == 0, err
    assert exon_fragments(out, "E") == [0, 0, 0, 40, 0, 0]
    summary = json.loads((out / "E.summary.json").read_text())
    assert summary["strandedness"]["fragments"] == 40


def test_star_seq_and_star_qual(sample, tmp_path, capfd):
    _, gtf = sample
    lines = [
        _record("noseq", 0, 1551, "50M", "*"),  # a fragment, but no bases (docs/counting.md)
        _record("noqual", 0, 1561, "50M", "C" * 50, "*"),  # QUAL * = quality 255: counted
    ]
    code, err, out = _scan_edge(tmp_path, capfd, gtf, lines)
    assert code == 0, err
    assert exon_fragments(out, "E") == [2, 0, 0, 0, 0, 0]
    bases = pl.read_parquet(out / "E.bases.parquet")
    covered = bases.filter(pl.col("depth") > 0)
    assert covered["pos"].to_list() == list(range(1561, 1611))  # 1-based: only "noqual"
    assert (covered["C"] == 1).all()


def test_a_100kb_read_and_500kb_deletion_and_skip(sample, tmp_path, capfd):
    _, gtf = sample
    lines = [
        _record("long", 0, 1, "100000M", _bases(100_000)),
        _record("del", 0, 1401, "50M500000D50M", _bases(100, 1)),
        _record("skip", 0, 1401, "50M500000N50M", _bases(100, 2)),
    ]
    code, err, out = _scan_edge(tmp_path, capfd, gtf, lines)
    assert code == 0, err
    # Only the long read has aligned bases on the exons; the deletion and the skip jump them.
    assert exon_fragments(out, "E") == [1] * 6
    bases = pl.read_parquet(out / "E.bases.parquet")
    over_gene = bases.filter(pl.col("pos").is_between(1501, 4122))
    assert (over_gene["del"] == 1).all()  # the 500 kb deletion spans the whole gene
    assert (over_gene["depth"] == 2).all()  # the long read's base + the deletion
    junctions = pl.read_csv(out / "E.junctions.tsv", separator="\t")
    assert junctions.select("start", "end", "reads").rows() == [(1451, 501450, 1)]


# --- sample sheets ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort(sample, tmp_path_factory):
    """P1 baseline + relapse, P2 relapse only; paths relative to the sheet."""
    _, gtf = sample
    tmp = tmp_path_factory.mktemp("cohort")
    rows = ["patient\tsample\ttimepoint\tpath"]
    specs = [
        ("P1", "P1_base", "baseline", {"canonical": 1.0}),
        ("P1", "P1_rel", "relapse", {"canonical": 0.5, "skip:2": 0.5}),
        ("P2", "P2_rel", "relapse", {"canonical": 1.0}),
    ]
    for seed, (patient, name, timepoint, isoforms) in enumerate(specs, start=1):
        sim = simulate(
            tmp / "bams", seed=seed, gene=small_gene("+"), n_fragments=400, isoforms=isoforms,
            sample=name, write_reference=False,
        )  # fmt: skip
        rows.append(f"{patient}\t{name}\t{timepoint}\t{sim.bam.relative_to(tmp)}")
    sheet = tmp / "samples.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    return sheet, gtf


COHORT_TABLES = (
    "cohort_events.tsv",
    "cohort_verdicts.tsv",
    "cohort_summary.tsv",
    "unpaired_samples.tsv",
    "cohort_events.parquet",
    "cohort.json",
)


def test_patient_without_baseline_is_scanned_listed_and_said(cohort, tmp_path, capfd, monkeypatch):
    sheet, gtf = cohort
    monkeypatch.chdir(tmp_path)  # paths in the sheet are relative to the sheet, not to the cwd
    code, err = run_cli(capfd, ["run", sheet, "--out", tmp_path / "a", "-q", *gene_args(gtf)])
    assert code == 0, err
    said = [line for line in err.splitlines() if "P2" in line]
    assert len(said) == 1, err
    assert str(sheet) in said[0] and "line 4" in said[0] and "no baseline" in said[0]
    unpaired = pl.read_csv(tmp_path / "a" / "unpaired_samples.tsv", separator="\t")
    assert unpaired.select("patient", "sample").rows() == [("P2", "P2_rel")]
    assert (tmp_path / "a" / "scans" / "P2_rel.summary.json").exists()
    # Determinism: a second run gives byte-identical cohort tables.
    code, err = run_cli(capfd, ["run", sheet, "--out", tmp_path / "b", "-q", *gene_args(gtf)])
    assert code == 0, err
    for name in COHORT_TABLES:
        a, b = (tmp_path / d / name for d in ("a", "b"))
        assert a.read_bytes() == b.read_bytes(), name


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("", ["missing column(s) patient"]),
        ("patient\tsample\ttimepoint\tpath\n", ["no samples"]),
        ("patient\tsample\ttimepoint\tpath\nP1\t\tbaseline\tx.bam\n", [":2:", "empty sample"]),
        (
            "patient\tsample\ttimepoint\tpath\treference\nP1\tS1\tbaseline\tx.bam\tnope.fa\n",
            [":2:", "reference nope.fa not found"],
        ),
        ("patient\tsample\ttimepoint\tpath\nP1\t../S1\tbaseline\tx.bam\n", [":2:", "file name"]),
    ],
    ids=["empty-sheet", "header-only", "empty-field", "missing-reference", "sample-as-path"],
)
def test_more_sample_sheet_errors(tmp_path, capfd, content, needles):
    (tmp_path / "x.bam").write_bytes(b"")
    sheet = tmp_path / "s.tsv"
    sheet.write_text(content)
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["run", sheet, "--out", out])
    assert code == 2
    assert_one_error_line(err, str(sheet), *needles)
    assert not out.exists()


def test_missing_sample_sheet(tmp_path, capfd):
    code, err = run_cli(capfd, ["run", tmp_path / "nope.tsv", "--out", tmp_path / "o"])
    assert code == 2
    assert_one_error_line(err, "nope.tsv", "sample sheet not found")


# --- security -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["$(touch PWNED).bam", "x.bam; touch PWNED", "`touch PWNED`"])
def test_sheet_paths_are_never_executed(tmp_path, capfd, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    sheet = tmp_path / "s.tsv"
    sheet.write_text(f"patient\tsample\ttimepoint\tpath\nP1\tS1\tbaseline\t{path}\n")
    code, err = run_cli(capfd, ["run", sheet, "--out", tmp_path / "o"])
    assert code == 2
    assert_one_error_line(err, path, "not found", str(tmp_path))
    assert not list(tmp_path.rglob("PWNED*"))


def test_sheet_path_with_shell_characters_is_read_as_a_name(sample, tmp_path, capfd, monkeypatch):
    sim, gtf = sample
    odd = tmp_path / "data" / "a b;$(touch PWNED)&.bam"
    odd.parent.mkdir()
    copy_bam(sim.bam, odd, index=True)
    sheet = tmp_path / "data" / "s.tsv"
    sheet.write_text(f"patient\tsample\ttimepoint\tpath\nP1\tS1\tbaseline\t{odd.name}\n")
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(capfd, ["run", sheet, "--out", tmp_path / "o", "-q", *gene_args(gtf)])
    assert code == 0, err
    assert exon_fragments(tmp_path / "o" / "scans", "S1") == list(sim.truth["exon_fragments"])
    assert not list(tmp_path.rglob("PWNED"))


def test_package_builds_no_shell_commands():
    package = Path(cd22scan.__file__).parent
    risky = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|\beval\(|\bexec\(")
    hits = [
        f"{path.name}:{n}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if risky.search(line)
    ]
    assert hits == []
    assert len(list(package.rglob("*.py"))) > 10  # the package itself was searched


# --- outputs: not writable, disk full, re-runs, determinism --------------------------------------


@pytest.mark.parametrize("command", ["scan", "compare", "run"])
def test_output_directory_under_a_file_exits_4(sample, cohort, tmp_path, capfd, command):
    sim, gtf = sample
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    out = blocker / "out"
    argv = {
        "scan": ["scan", sim.bam],
        "compare": ["compare", "--baseline", sim.bam, "--relapse", sim.bam],
        "run": ["run", cohort[0]],
    }[command]
    code, err = run_cli(capfd, [*argv, "--out", out, *gene_args(gtf)])
    assert code == 4
    assert_one_error_line(err, str(out), "cannot create output directory")
    assert blocker.read_text() == "not a folder\n"


def _outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def _no_hidden_leftovers(out: Path) -> None:
    hidden = [p.name for p in out.rglob(".*")]
    assert hidden == [], hidden


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 16 kB tmpfs: too small for one scan's outputs (the bases table alone is ~17 kB)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode})")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.mark.may_skip_in_ci
def test_disk_full_on_a_real_small_filesystem(sample, tiny_tmpfs, capfd):
    sim, gtf = sample
    out = tiny_tmpfs / "out"
    code, err = run_cli(capfd, ["scan", sim.bam, "--out", out, "-q", *gene_args(gtf)])
    assert code == 4
    assert_one_error_line(err, str(out), "No space left on device")
    assert_no_outputs(out)


def _failing_writers(monkeypatch, fail_on: str) -> None:
    """Make one polars writer write half a file and then fail as a full disk does."""
    real_csv, real_parquet = pl.DataFrame.write_csv, pl.DataFrame.write_parquet

    def half_then_enospc(real, kind):
        def writer(frame, file, *args, **kwargs):
            real(frame, file, *args, **kwargs)
            data = Path(file).read_bytes()
            Path(file).write_bytes(data[: len(data) // 2])
            if kind == "parquet":  # polars' own error type, as under a real full disk
                raise pl.exceptions.ComputeError(
                    "parquet: File out of specification: underlying IO error: "
                    "No space left on device (os error 28)"
                )
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return writer

    if fail_on == "tsv":
        monkeypatch.setattr(pl.DataFrame, "write_csv", half_then_enospc(real_csv, "tsv"))
    else:
        monkeypatch.setattr(
            pl.DataFrame, "write_parquet", half_then_enospc(real_parquet, "parquet")
        )


@pytest.mark.parametrize("fail_on", ["tsv", "parquet"])
def test_disk_full_mid_file_leaves_nothing_half_written(
    sample, tmp_path, capfd, monkeypatch, fail_on
):
    sim, gtf = sample
    out = tmp_path / "o"
    _failing_writers(monkeypatch, fail_on)
    code, err = run_cli(capfd, ["scan", sim.bam, "--out", out, "-q", *gene_args(gtf)])
    assert code == 4
    assert_one_error_line(err, str(out / "S1."), "No space left on device")
    assert_no_outputs(out)


def test_disk_full_on_a_rerun_keeps_the_previous_complete_scan(
    sample, tmp_path, capfd, monkeypatch
):
    sim, gtf = sample
    out = tmp_path / "o"
    assert run_cli(capfd, ["scan", sim.bam, "--out", out, *gene_args(gtf)])[0] == 0
    before = _outputs(out)
    _failing_writers(monkeypatch, "parquet")
    argv = ["scan", sim.bam, "--out", out, "--min-mapq", "0", *gene_args(gtf)]
    code, err = run_cli(capfd, argv)
    assert code == 4, err
    assert _outputs(out) == before  # all old, none half-new
    _no_hidden_leftovers(out)


def test_rerun_over_an_output_directory_replaces_every_file(sample, tmp_path, capfd):
    sim, gtf = sample
    out = tmp_path / "o"
    assert (
        run_cli(capfd, ["scan", sim.bam, "--out", out, "--min-mapq", "0", *gene_args(gtf)])[0] == 0
    )
    first = _outputs(out)
    assert run_cli(capfd, ["scan", sim.bam, "--out", out, *gene_args(gtf)])[0] == 0
    second = _outputs(out)
    assert sorted(first) == sorted(second)
    fresh = tmp_path / "fresh"
    assert run_cli(capfd, ["scan", sim.bam, "--out", fresh, *gene_args(gtf)])[0] == 0
    for name, data in _outputs(fresh).items():
        if not name.endswith(".summary.json"):
            assert second[name] == data, name  # the new run's content, nothing stale
    assert json.loads(second["S1.summary.json"])["parameters"]["min_mapq"] == 20
    _no_hidden_leftovers(out)
    mode = (out / "S1.exons.tsv").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # usual permissions, not a temporary file's 0600


RUN_TIME_FIELDS = {"started", "seconds"}


def test_scanning_twice_gives_identical_files(sample, tmp_path, capfd):
    sim, gtf = sample
    for out in ("a", "b"):
        argv = ["scan", sim.bam, "--out", tmp_path / out, "--reference", sim.reference]
        assert run_cli(capfd, [*argv, *gene_args(gtf)])[0] == 0
    a, b = _outputs(tmp_path / "a"), _outputs(tmp_path / "b")
    # 5 tables (with allele evidence) x (TSV, Parquet), bases, BED, 7 calls tables, VCF+tbi,
    # model, summary
    assert sorted(a) == sorted(b) and len(a) == 23
    for name in a:
        if name.endswith(".summary.json"):
            sa, sb = json.loads(a[name]), json.loads(b[name])
            differ = {k for k in sa.keys() | sb.keys() if sa.get(k) != sb.get(k)}
            assert differ <= RUN_TIME_FIELDS, differ
        else:
            assert a[name] == b[name], name


# --- interruption -------------------------------------------------------------------------------


def test_ctrl_c_exits_130_in_one_line(sample, tmp_path, capfd, monkeypatch):
    sim, _ = sample

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("cd22scan.sample.scan.scan", interrupted)
    code, err = run_cli(capfd, ["scan", sim.bam, "--out", tmp_path / "o"])
    assert code == 130
    assert err == "cd22scan: interrupted\n"
    assert_no_outputs(tmp_path / "o")
