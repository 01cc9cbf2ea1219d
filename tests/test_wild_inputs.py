"""Inputs from the wild (issue 18): the header quirks, mate names and mixed files that public
alignments carry. Each test writes a small file that reproduces one quirk and runs it end to end
through the CLI: exit code, the one line cd22scan says, no traceback, and the counts.

A BAM with a header htslib cannot parse cannot be written by samtools or pysam (both parse the
header first), so ``rewrite_header`` swaps the header block of a good BAM byte for byte.
"""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import pysam
import pytest
from core_helpers import assert_same_counts, core_count
from reference_counter import reference_count
from simulator import cd22_grch37, cd22_grch38, simulate, small_gene

from cd22scan.cli import main
from cd22scan.demo.simulate import write_gtf
from cd22scan.sample.reader import open_alignments, parse_header_text, survey_reads

# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A small indexed, paired-end BAM over SMALL (chrT) and its GTF."""
    tmp = tmp_path_factory.mktemp("wild")
    sim = simulate(tmp / "sim", seed=18, gene=small_gene("+"), n_fragments=300, sample="S1")
    gtf = write_gtf(sim.gene, tmp / "small.gtf")
    return sim, gtf


def gene_args(gtf) -> list[str]:
    return ["--gtf", str(gtf), "--gene", "SMALL"]


def run_cli(capfd, argv) -> tuple[int, str]:
    capfd.readouterr()
    code = main([str(a) for a in argv])
    return code, capfd.readouterr().err


def no_traceback(err: str) -> None:
    assert "Traceback" not in err and "[E::" not in err and "[W::" not in err, err


def summary_of(out: Path) -> dict:
    return json.loads(next(out.glob("*.summary.json")).read_text())


def split_bam(src: Path) -> tuple[str, list[tuple[str, int]], bytes]:
    """A BAM's header text, binary target list and the records after them (uncompressed)."""
    raw = Path(src).read_bytes()
    raw = gzip.decompress(raw)
    (l_text,) = struct.unpack_from("<i", raw, 4)
    text = raw[8 : 8 + l_text].rstrip(b"\0").decode()
    off = 8 + l_text
    (n_ref,) = struct.unpack_from("<i", raw, off)
    off += 4
    refs = []
    for _ in range(n_ref):
        (l_name,) = struct.unpack_from("<i", raw, off)
        name = raw[off + 4 : off + 4 + l_name - 1].decode()
        (length,) = struct.unpack_from("<i", raw, off + 4 + l_name)
        refs.append((name, length))
        off += 4 + l_name + 4
    return text, refs, raw[off:]


def write_bam(dst: Path, text: str, refs: list[tuple[str, int]], body: bytes) -> Path:
    """A BGZF BAM with this header text and target list, whatever htslib thinks of them."""
    encoded = text.encode()
    head = b"BAM\1" + struct.pack("<i", len(encoded)) + encoded + struct.pack("<i", len(refs))
    for name, length in refs:
        name_z = name.encode() + b"\0"
        head += struct.pack("<i", len(name_z)) + name_z + struct.pack("<i", length)
    with pysam.BGZFile(str(dst), "wb") as out:
        out.write(head + body)
    pysam.index(str(dst))
    return dst


def rewrite_header(src: Path, dst: Path, edit) -> Path:
    """Copy BAM ``src`` to ``dst`` with header text ``edit(text)`` (same target list)."""
    text, refs, body = split_bam(src)
    return write_bam(dst, edit(text), refs, body)


def bam_with_refs(src: Path, dst: Path, refs: list[tuple[str, int]]) -> Path:
    """``src`` with exactly these @SQ entries (text and target list); records keep their tids."""
    text, _, body = split_bam(src)
    kept = [x for x in text.splitlines() if not x.startswith("@SQ")]
    sq = [f"@SQ\tSN:{n}\tLN:{n_len}" for n, n_len in refs]
    return write_bam(dst, "\n".join(kept[:1] + sq + kept[1:]) + "\n", refs, body)


def with_star_pg(text: str) -> str:
    """A STAR-style @PG line whose last field is empty (the line ends in a tab)."""
    return text + "@PG\tID:STAR\tPN:STAR\t\n"


# --- 1. malformed header lines ------------------------------------------------------------------


def test_header_parser_reports_empty_field_and_keeps_the_rest():
    text = "@HD\tVN:1.6\tSO:coordinate\n@SQ\tSN:chrT\tLN:10\tM5:abc\n@PG\tID:STAR\t\n"
    header = parse_header_text(text)
    assert header.sort_order == "coordinate"
    assert header.md5 == {"chrT": "abc"}
    assert header.problems == [
        "header line 3 (@PG) field 3 is empty (a trailing tab?), not TAG:VALUE"
    ]
    # pysam's own parser refuses this text: the reason the reader parses it itself.
    with pytest.raises(ValueError):
        pysam.AlignmentHeader.from_text(text).to_dict()


@pytest.mark.parametrize("stream", [False, True], ids=["indexed", "stream"])
def test_empty_pg_field_warns_once_and_counts_as_the_clean_bam(sample, tmp_path, capfd, stream):
    sim, gtf = sample
    bam = rewrite_header(sim.bam, tmp_path / "star.bam", with_star_pg)
    # The quirk is real: pysam cannot parse this header.
    with pysam.AlignmentFile(str(bam)) as handle, pytest.raises(ValueError):
        handle.header.to_dict()
    extra = ["--stream"] if stream else []
    code, err = run_cli(capfd, ["scan", bam, "--out", tmp_path / "o", *extra, *gene_args(gtf)])
    assert code == 0, err
    no_traceback(err)
    warned = [line for line in err.splitlines() if "not TAG:VALUE" in line]
    assert len(warned) == 1, err
    assert str(bam) in warned[0] and "header line" in warned[0] and "@PG" in warned[0]
    summary = summary_of(tmp_path / "o")
    assert summary["read_mode"] == ("stream" if stream else "indexed")
    assert summary["fragments_on_gene"] == sim.truth["gene_fragments"]
    assert summary["header_problems"] == [warned[0].split(": ", 2)[-1].split("; ignored")[0]]


def test_empty_pg_field_through_python_m_has_no_traceback(sample, tmp_path):
    sim, gtf = sample
    bam = rewrite_header(sim.bam, tmp_path / "star.bam", with_star_pg)
    done = subprocess.run(
        [sys.executable, "-m", "cd22scan", "scan", str(bam), "--out", str(tmp_path / "o"),
         *gene_args(gtf)],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    # (cwd: not the repository, whose cd22scan/ folder would shadow the installed package)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("extra", "needle"),
    [("@PG\tID:STAR\t", "(@PG) field 3 is empty"), ("@SQ\tSN:chrT\tLN:5", "SN:chrT a second time")],
    ids=["empty-pg-field", "duplicate-sq"],
)
def test_sam_text_with_a_bad_header_line_is_refused_naming_it(
    sample, tmp_path, capfd, extra, needle
):
    """htslib cannot open SAM text whose header does not parse (samtools view neither)."""
    sim, gtf = sample
    sam = tmp_path / "bad.sam"
    text = pysam.view("-h", "--no-PG", str(sim.bam))
    head = [x for x in text.splitlines() if x.startswith("@")]
    body = [x for x in text.splitlines() if not x.startswith("@")]
    sam.write_text("\n".join([*head, extra, *body]) + "\n")
    code, err = run_cli(capfd, ["scan", sam, "--out", tmp_path / "o", *gene_args(gtf)])
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cd22scan: error: "), err
    assert str(sam) in lines[0] and f"header line {len(head) + 1} " in lines[0]
    assert needle in lines[0]
    no_traceback(err)


# --- 1. one reference name listed twice ---------------------------------------------------------


def test_duplicate_sq_of_another_contig_warns_and_counts(sample, tmp_path, capfd):
    sim, gtf = sample
    # Another contig, listed twice in the text and in htslib's binary target list.
    refs = [*split_bam(sim.bam)[1], ("chrZ", 500), ("chrZ", 500)]
    bam = bam_with_refs(sim.bam, tmp_path / "dup_other.bam", refs)
    code, err = run_cli(capfd, ["scan", bam, "--out", tmp_path / "o", *gene_args(gtf)])
    assert code == 0, err
    no_traceback(err)
    warned = [line for line in err.splitlines() if "more than once" in line]
    assert len(warned) == 1 and "chrZ" in warned[0] and str(bam) in warned[0], err
    summary = summary_of(tmp_path / "o")
    assert summary["fragments_on_gene"] == sim.truth["gene_fragments"]
    assert summary["duplicate_contigs"] == ["chrZ"]


def test_duplicate_sq_of_the_gene_contig_is_refused(sample, tmp_path, capfd):
    sim, gtf = sample
    refs = split_bam(sim.bam)[1]
    bam = bam_with_refs(sim.bam, tmp_path / "dup_gene.bam", [*refs, ("chrT", refs[0][1])])
    code, err = run_cli(capfd, ["scan", bam, "--out", tmp_path / "o", *gene_args(gtf)])
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 2, err  # the header warning, then the refusal
    assert "more than once" in lines[0]
    assert lines[1].startswith("cd22scan: error: ") and "@SQ SN:chrT more than once" in lines[1]
    no_traceback(err)


# --- 2. mate names with suffixes ----------------------------------------------------------------


def rename_mates(src: Path, dst: Path, style: str) -> Path:
    """``src`` with every paired record renamed: ``slash`` NAME/1 NAME/2, ``dot`` NAME.1 NAME.2
    (HISAT2 on SRA reads dumped with read ids), ``spot`` SRR18.<n> for both mates of the n-th
    template (``fastq-dump`` without ``--readids``: identical names, many ending in .1 or .2)."""
    spots: dict[str, int] = {}
    with (
        pysam.AlignmentFile(str(src)) as bam,
        pysam.AlignmentFile(str(dst), "wb", template=bam) as out,
    ):
        for read in bam.fetch(until_eof=True):
            name = read.query_name
            if read.flag & 0x1:
                mate = "1" if read.flag & 0x40 else "2"
                if style == "slash":
                    read.query_name = f"{name}/{mate}"
                elif style == "dot":
                    read.query_name = f"{name}.{mate}"
                else:
                    read.query_name = f"SRR18.{spots.setdefault(name, len(spots) + 1)}"
            out.write(read)
    pysam.index(str(dst))
    return dst


@pytest.fixture(scope="module")
def renamed(sample, tmp_path_factory):
    sim, _ = sample
    tmp = tmp_path_factory.mktemp("renamed")
    return {style: rename_mates(sim.bam, tmp / f"{style}.bam", style) for style in STYLES}


STYLES = {"slash": "/1,/2", "dot": ".1,.2", "spot": None}


def count_args(sim, bam) -> tuple:
    gene = sim.gene
    window = gene.window(300)
    return (str(bam), gene.contig, window[0], window[1], list(gene.exons))


@pytest.mark.parametrize("handover", ["bam", "text"])
@pytest.mark.parametrize("style", ["slash", "dot"])
def test_suffixed_mates_count_as_the_original_pairs(sample, renamed, style, handover):
    """Fragments per exon, junctions, and bases with overlap de-duplication: identical to the
    original names, in the core and in the reference counter."""
    sim, _ = sample
    label = STYLES[style]
    original = core_count(*count_args(sim, sim.bam), handover=handover)
    core = core_count(*count_args(sim, renamed[style]), handover=handover, mate_suffix=label)
    ref = reference_count(*count_args(sim, renamed[style]), mate_suffix=label)
    assert_same_counts(core, ref)
    assert_same_counts(core, original)
    assert list(core.exon_fragments) == list(sim.truth["exon_fragments"])
    # The quirk is real: without the convention every mate is a fragment of its own.
    untold = core_count(*count_args(sim, renamed[style]), handover=handover)
    assert untold.fragments > original.fragments
    # ... and a base both mates cover counts twice (de-duplication needs the pair).
    bases = {k: int(sum(v)) for k, v in original.base_counts.items()}
    assert sum(int(sum(v)) for v in untold.base_counts.values()) > sum(bases.values())


def test_detection_per_file(sample, renamed):
    sim, _ = sample
    found = {}
    for style, bam in [("original", sim.bam), *renamed.items()]:
        with open_alignments(str(bam)) as source:
            found[style] = survey_reads(source, "chrT", *sim.gene.window(300)).mate_suffix
    # Identical names per spot (SRR18.1 for both mates of spot 1) keep pairing by full name.
    assert found == {"original": None, "slash": "/1,/2", "dot": ".1,.2", "spot": None}


@pytest.mark.parametrize("style", ["slash", "dot", "spot"])
@pytest.mark.parametrize("stream", [False, True], ids=["indexed", "stream"])
def test_scan_pairs_suffixed_mates_and_says_so(sample, renamed, tmp_path, capfd, style, stream):
    sim, gtf = sample
    extra = ["--stream"] if stream else []
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["scan", renamed[style], "--out", out, *extra, *gene_args(gtf)])
    assert code == 0, err
    no_traceback(err)
    summary = summary_of(out)
    assert summary["mate_name_suffix"] == STYLES[style]
    assert summary["fragments_on_gene"] == sim.truth["gene_fragments"]
    said = [line for line in err.splitlines() if "mates are named" in line]
    assert len(said) == (0 if style == "spot" else 1), err


# --- 3. mixed single/paired records, many flagged records, cohorts on other references ---------


def make_mixed(src: Path, dst: Path) -> Path:
    """``src`` with every other template turned single-end: its last segment dropped, its first
    segment's pairing flags and mate fields cleared (a merge of SE and PE runs of one sample)."""
    singles: dict[str, bool] = {}
    with (
        pysam.AlignmentFile(str(src)) as bam,
        pysam.AlignmentFile(str(dst), "wb", template=bam) as out,
    ):
        for read in bam.fetch(until_eof=True):
            if read.flag & 0x1:
                single = singles.setdefault(read.query_name, len(singles) % 2 == 0)
                if single:
                    if read.flag & 0x80:
                        continue
                    read.flag &= ~(0x1 | 0x2 | 0x8 | 0x20 | 0x40 | 0x80)
                    read.next_reference_id = -1
                    read.next_reference_start = -1
                    read.template_length = 0
            out.write(read)
    pysam.index(str(dst))
    return dst


def test_mixed_single_and_paired_records_are_said_and_counted_as_the_reference(
    sample, tmp_path, capfd
):
    sim, gtf = sample
    bam = make_mixed(sim.bam, tmp_path / "mixed.bam")
    ref = reference_count(*count_args(sim, bam))
    assert_same_counts(core_count(*count_args(sim, bam)), ref)
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["scan", bam, "--out", out, *gene_args(gtf)])
    assert code == 0, err
    no_traceback(err)
    said = [line for line in err.splitlines() if "mixes paired-end and single-end" in line]
    assert len(said) == 1 and str(bam) in said[0], err
    summary = summary_of(out)
    layout = summary["read_layout"]
    assert layout["layout"] == "mixed" and 0 < layout["paired"] < layout["sampled"]
    assert summary["fragments_on_gene"] == ref.gene_fragments
    # The untouched paired file says "paired" and warns nothing.
    code, err = run_cli(capfd, ["scan", sim.bam, "--out", tmp_path / "p", *gene_args(gtf)])
    assert code == 0 and "mixes" not in err, err
    assert summary_of(tmp_path / "p")["read_layout"]["layout"] == "paired"


def test_many_secondary_and_qcfail_records_are_said_in_one_line(tmp_path, capfd):
    sim = simulate(
        tmp_path / "sim", seed=181, gene=small_gene("+"), n_fragments=300,
        secondary_fraction=0.6, qcfail_fraction=0.2, sample="F1",
    )  # fmt: skip
    gtf = write_gtf(sim.gene, tmp_path / "small.gtf")
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["scan", sim.bam, "--out", out, *gene_args(gtf)])
    assert code == 0, err
    said = [line for line in err.splitlines() if "were left out" in line]
    assert len(said) == 1, err
    reads = summary_of(out)["reads"]
    assert f"{reads['removed_secondary']} secondary (0x100)" in said[0]
    assert f"{reads['removed_qcfail']} QC-fail (0x200)" in said[0]
    assert summary_of(out)["fragments_on_gene"] == sim.truth["gene_fragments"]
    # The default simulation (1% of each) says nothing.
    plain = simulate(tmp_path / "plain", seed=181, gene=small_gene("+"), n_fragments=300)
    code, err = run_cli(capfd, ["scan", plain.bam, "--out", tmp_path / "p", *gene_args(gtf)])
    assert code == 0 and "were left out" not in err, err


@pytest.fixture(scope="module")
def cd22_on_builds(tmp_path_factory):
    """CD22 simulated on GRCh38 chr19, on GRCh38 named "19" and on GRCh37 chr19."""
    tmp = tmp_path_factory.mktemp("builds")
    common = {"n_fragments": 200, "seed": 182}
    return {
        "38": simulate(tmp / "a", gene=cd22_grch38(), sample="P1_base", **common).bam,
        "38_ensembl": simulate(
            tmp / "b", gene=cd22_grch38(), contig_name="19", sample="P1_rel", **common
        ).bam,
        "37": simulate(
            tmp / "c", gene=cd22_grch37(), build="GRCh37", sample="P1_rel37", **common
        ).bam,
    }


def test_pair_on_different_builds_is_refused_in_one_line(cd22_on_builds, tmp_path, capfd):
    base, rel = cd22_on_builds["38"], cd22_on_builds["37"]
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["compare", "--baseline", base, "--relapse", rel, "--out", out])
    assert code == 2, err
    no_traceback(err)
    lines = [line for line in err.splitlines() if line.startswith("cd22scan: error: ")]
    assert len(lines) == 1, err
    assert "GRCh38" in lines[0] and "GRCh37" in lines[0] and "different references" in lines[0]


def test_pair_with_chr19_and_19_of_one_build_is_compared_and_said(cd22_on_builds, tmp_path, capfd):
    base, rel = cd22_on_builds["38"], cd22_on_builds["38_ensembl"]
    out = tmp_path / "o"
    code, err = run_cli(capfd, ["compare", "--baseline", base, "--relapse", rel, "--out", out])
    assert code == 0, err
    no_traceback(err)
    said = [line for line in err.splitlines() if "compared by position" in line]
    assert len(said) == 1 and "chr19" in said[0] and " 19 " in said[0], err


def test_run_with_a_patient_on_two_builds_stops_in_one_line(cd22_on_builds, tmp_path, capfd):
    """``run``: the refusal names both samples; nothing is compared across builds silently."""
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(
        "patient\tsample\ttimepoint\tpath\n"
        f"P1\tP1_base\tbaseline\t{cd22_on_builds['38']}\n"
        f"P1\tP1_rel37\trelapse\t{cd22_on_builds['37']}\n"
    )
    code, err = run_cli(capfd, ["run", sheet, "--out", tmp_path / "o", "-q"])
    assert code == 2, err
    no_traceback(err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cd22scan: error: "), err
    assert "P1_base (GRCh38" in lines[0] and "P1_rel37 (GRCh37" in lines[0]
