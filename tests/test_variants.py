"""Variant calling: alleles, VAF, strand bias, SO consequences and HGVS names.

The hand-worked cases use TINY, a 3-exon gene whose sequence is written out below, on the + strand
and mirrored onto the − strand (the reverse complement of the same contig), where every c./p.
name must come out the same while the VCF alleles stay left-aligned on the genomic + strand.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import pysam
import pytest
from Bio.Seq import Seq
from Bio.SeqUtils import seq3
from scipy.stats import fisher_exact

from cd22scan import scan
from cd22scan.calling.stats import fisher_exact_two_sided
from cd22scan.calling.variants import (
    COLUMNS,
    Change,
    Locus,
    TranscriptMap,
    annotate,
    call_variants,
)
from cd22scan.demo.simulate import (
    coding_positions,
    reference_window,
    revcomp,
    simulate,
    small_gene,
    write_gtf,
)
from cd22scan.target.annotation import Exon, GeneModel, builtin_model, load_gtf

# --- TINY: 130 bp contig, 1-based positions ------------------------------------------------------
#   1- 10 upstream                 TTGACCTTGA
#  11- 20 exon 1, 5' UTR c.-10..-1 GCCAGCCACC
#  21- 30 exon 1, CDS c.1..10      ATG GGC TGG C        Met1 Gly2 Trp3 Leu4(C|TG)
#  31- 50 intron 1                 GTAAGTCTTACTTTCCTCAG (GT ... AG)
#  51- 70 exon 2, CDS c.11..30     TG AAA GAA AAG TTT CCC GCA   Lys5 Glu6 Lys7 Phe8 Pro9 Ala10
#  71- 90 intron 2                 GTGAGTATCCTTTTGCGCAG
#  91-105 exon 3, CDS c.31..45     GAT TCT ACA GGA TAA  Asp11 Ser12 Thr13 Gly14 Ter15
# 106-120 exon 3, 3' UTR c.*1..*15 GCTTGACCAATAAAG
# 121-130 downstream               CCTGGATCCA
TINY_REF = (
    "TTGACCTTGA"
    "GCCAGCCACC"
    "ATGGGCTGGC"
    "GTAAGTCTTACTTTCCTCAG"
    "TGAAAGAAAAGTTTCCCGCA"
    "GTGAGTATCCTTTTGCGCAG"
    "GATTCTACAGGATAA"
    "GCTTGACCAATAAAG"
    "CCTGGATCCA"
)
L = len(TINY_REF)
DEPTH = 100


def tiny_model(strand: str) -> GeneModel:
    spans = [(11, 30), (51, 70), (91, 120)]
    cds = (21, 105)
    if strand == "-":
        spans = [(L + 1 - e, L + 1 - s) for s, e in spans]
        cds = (L + 1 - cds[1], L + 1 - cds[0])
    return GeneModel(
        gene="TINY",
        transcript="TINY-T1",
        contig="chrT",
        strand=strand,
        build=None,
        exons=tuple(Exon(i, s, e) for i, (s, e) in enumerate(spans, start=1)),
        cds_start=cds[0],
        cds_end=cds[1],
        source="test",
        selection="test",
    )


def tiny_ref(strand: str) -> str:
    return TINY_REF if strand == "+" else revcomp(TINY_REF)


def mirror(pos: int, strand: str) -> int:
    return pos if strand == "+" else L + 1 - pos


def comp(base: str, strand: str) -> str:
    return base if strand == "+" else revcomp(base)


# --- hand-made input tables ----------------------------------------------------------------------

LETTERS = ("A", "C", "G", "T", "N")


def make_bases(ref: str, start: int = 1, depth: int = DEPTH) -> dict[str, np.ndarray]:
    """Columns of a ``bases`` table: every read shows the reference, half on each strand."""
    n = len(ref)
    cols: dict[str, np.ndarray] = {"pos": np.arange(start, start + n, dtype=np.int64)}
    for key in (*LETTERS, "del", "ins"):
        cols[f"{key}_fwd"] = np.zeros(n, dtype=np.int64)
        cols[f"{key}_rev"] = np.zeros(n, dtype=np.int64)
    for i, base in enumerate(ref):
        cols[f"{base}_fwd"][i] = depth // 2
        cols[f"{base}_rev"][i] = depth - depth // 2
    cols["_ref"] = np.array(list(ref))
    cols["_start"] = np.array([start])
    return cols


def put(cols, pos: int, key: str, fwd: int, rev: int) -> None:
    """Turn ``fwd``/``rev`` reference reads at ``pos`` into ``key`` (a letter or 'del')."""
    i = pos - int(cols["_start"][0])
    ref = str(cols["_ref"][i])
    cols[f"{ref}_fwd"][i] -= fwd
    cols[f"{ref}_rev"][i] -= rev
    cols[f"{key}_fwd"][i] += fwd
    cols[f"{key}_rev"][i] += rev


def to_frame(cols, contig: str = "chrT") -> pl.DataFrame:
    n = len(cols["pos"])
    data: dict[str, object] = {
        "contig": [contig] * n,
        "pos": cols["pos"],
        "ref": list(cols["_ref"]),
    }
    for key in (*LETTERS, "del", "ins"):
        data[key] = cols[f"{key}_fwd"] + cols[f"{key}_rev"]
    data["depth"] = sum(data[k] for k in (*LETTERS, "del"))
    for key in (*LETTERS, "del", "ins"):
        data[f"{key}_fwd"] = cols[f"{key}_fwd"]
        data[f"{key}_rev"] = cols[f"{key}_rev"]
    return pl.DataFrame(data)


INDEL_SCHEMA = {
    "sample": pl.Utf8,
    "contig": pl.Utf8,
    "pos": pl.Int64,
    "kind": pl.Utf8,
    "length": pl.Int64,
    "sequence": pl.Utf8,
    "reads": pl.Int64,
    "forward": pl.Int64,
    "reverse": pl.Int64,
}


def make_indels(rows: list[tuple]) -> pl.DataFrame:
    """rows: (anchor pos, kind, length, sequence, forward, reverse)."""
    return pl.DataFrame(
        [
            {
                "sample": "S",
                "contig": "chrT",
                "pos": pos,
                "kind": kind,
                "length": length,
                "sequence": seq,
                "reads": f + r,
                "forward": f,
                "reverse": r,
            }
            for pos, kind, length, seq, f, r in rows
        ],
        schema=INDEL_SCHEMA,
        orient="row",
    )


def fetcher(ref: str, start0: int = 0):
    def fetch(a: int, b: int) -> str:
        lo, hi = max(a - start0, 0), max(b - start0, 0)
        return ref[lo:hi]

    return fetch


def call_tiny(strand: str, snvs=(), indels=(), fetch=True) -> pl.DataFrame:
    """Calls on TINY with SNVs [(+ strand pos, + strand alt, fwd, rev)] and indels
    [(+ strand anchor, kind, length, + strand inserted bases, fwd, rev)] mirrored onto
    ``strand``; deletions are given by the reads at the deleted bases."""
    ref = tiny_ref(strand)
    cols = make_bases(ref)
    for pos, alt, f, r in snvs:
        put(cols, mirror(pos, strand), comp(alt, strand), f, r)
    rows = []
    for anchor, kind, length, seq, f, r in indels:
        if strand == "+":
            m_anchor, m_seq = anchor, seq
        elif kind == "del":  # deleted anchor+1..anchor+length → mirrored, new anchor before it
            m_anchor, m_seq = L + 1 - (anchor + length) - 1, ""
        else:  # inserted between anchor and anchor+1
            m_anchor, m_seq = L - anchor, revcomp(seq)
        if kind == "del":
            for p in range(m_anchor + 1, m_anchor + length + 1):
                put(cols, p, "del", f, r)
            m_seq = ref[m_anchor : m_anchor + length]
        rows.append((m_anchor, kind, length, m_seq, f, r))
    return call_variants(
        to_frame(cols),
        make_indels(rows),
        tiny_model(strand),
        fetcher(ref) if fetch else None,
        sample="S",
    )


def one(calls: pl.DataFrame) -> dict:
    assert calls.height == 1, calls
    return calls.row(0, named=True)


STRANDS = pytest.mark.parametrize("strand", ["+", "-"])


# --- hand-worked SNVs ----------------------------------------------------------------------------

# (+ strand pos, alt, consequence, c., p., exon, intron), worked out from the TINY table above.
SNV_CASES = [
    # c.5 = pos 25, Gly2 GGC -> GAC Asp
    (25, "A", "missense_variant", "c.5G>A", "p.(Gly2Asp)", 1, None),
    # c.6 = pos 26, Gly2 GGC -> GGT Gly
    (26, "T", "synonymous_variant", "c.6C>T", "p.(Gly2=)", 1, None),
    # c.8 = pos 28, Trp3 TGG -> TAG stop
    (28, "A", "stop_gained", "c.8G>A", "p.(Trp3Ter)", 1, None),
    # c.2 = pos 22, Met1 ATG -> ACG
    (22, "C", "start_lost", "c.2T>C", "p.(Met1?)", 1, None),
    # intron 1 starts at pos 31 after c.10 (pos 30): +1 G, +2 T
    (31, "A", "splice_donor_variant", "c.10+1G>A", "p.?", None, 1),
    (32, "C", "splice_donor_variant", "c.10+2T>C", "p.?", None, 1),
    # intron 1 ends at pos 50 before c.11 (pos 51): -1 G
    (50, "A", "splice_acceptor_variant", "c.11-1G>A", "p.?", None, 1),
    # pos 35 = c.10+5 G: intronic splice region (3..8)
    (35, "C", "splice_region_variant", "c.10+5G>C", "", None, 1),
    # pos 40 = c.10+10 (10 from the donor, 11 from the acceptor) A
    (40, "G", "intron_variant", "c.10+10A>G", "", None, 1),
    # pos 41 = c.11-10 (11 from the donor, 10 from the acceptor) C
    (41, "T", "intron_variant", "c.11-10C>T", "", None, 1),
    # 5' UTR: pos 15 = c.-6 (c.-1 is pos 20), base G
    (15, "A", "5_prime_UTR_variant", "c.-6G>A", "", 1, None),
    # 3' UTR: pos 110 = c.*5 (c.*1 is pos 106), base G
    (110, "T", "3_prime_UTR_variant", "c.*5G>T", "", 3, None),
    # pos 70 = c.30, last base of exon 2, Ala10 GCA -> GCG: synonymous but next to the donor
    (70, "G", "splice_region_variant", "c.30A>G", "p.(Ala10=)", 2, None),
    # pos 104 = c.44, Ter15 TAA -> TGA: still a stop
    (104, "G", "stop_retained_variant", "c.44A>G", "p.(Ter15=)", 3, None),
    # pos 103 = c.43, Ter15 TAA -> CAA Gln; the UTR reads GCT TGA: new stop 2 codons on
    (103, "C", "stop_lost", "c.43T>C", "p.(Ter15GlnextTer2)", 3, None),
    # pos 5 = upstream of the transcript (c.-16 counted on), base C
    (5, "T", "upstream_gene_variant", "c.-16C>T", "", None, None),
]


@STRANDS
@pytest.mark.parametrize("case", SNV_CASES, ids=lambda c: c[3])
def test_hand_worked_snvs(strand, case):
    pos, alt, consequence, name_c, name_p, exon, intron = case
    call = one(call_tiny(strand, snvs=[(pos, alt, 10, 10)]))
    assert call["kind"] == "snv"
    assert call["pos"] == mirror(pos, strand)
    assert call["ref"] == comp(TINY_REF[pos - 1], strand)
    assert call["alt"] == comp(alt, strand)
    assert (call["consequence"], call["hgvs_c"], call["hgvs_p"]) == (consequence, name_c, name_p)
    assert (call["exon"], call["intron"]) == (exon, intron)
    assert (call["depth"], call["alt_reads"], call["alt_forward"], call["alt_reverse"]) == (
        DEPTH,
        20,
        10,
        10,
    )
    assert call["vaf"] == pytest.approx(0.2)


# --- hand-worked indels --------------------------------------------------------------------------


@STRANDS
def test_frameshift_deletion_in_a_run_is_named_at_its_3prime_end(strand):
    # Delete one C of CCC = c.25-27 (pos 65-67), reported at its left end (anchor 64, c.24 T).
    # HGVS shifts 3' in transcript orientation: c.27del (on − it is the genomic-left C).
    # New frame from c.25: CCG Pro9 (same), CAG Gln (was Ala10), ATT, CTA, CAG, GAT, AAG (the old
    # TAA read as AA+G), then the UTR CTT GAC CAA TAA: Ter at residue 19 = 10th from Gln10.
    call = one(call_tiny(strand, indels=[(64, "del", 1, "", 20, 10)]))
    assert (call["kind"], call["consequence"]) == ("del", "frameshift_variant")
    assert (call["hgvs_c"], call["hgvs_p"]) == ("c.27del", "p.(Ala10GlnfsTer10)")
    assert call["exon"] == 2
    # VCF: left-aligned on the genomic + strand with the anchor base.
    if strand == "+":
        assert (call["pos"], call["ref"], call["alt"]) == (64, "TC", "T")
    else:  # GGG at mirrored 64-66 (from 67-65), anchor 63 = complement of pos 68 G -> C
        assert (call["pos"], call["ref"], call["alt"]) == (63, "CG", "C")
    # depth at the first deleted base: all 100 reads (30 of them show the deletion)
    assert (call["depth"], call["alt_reads"]) == (DEPTH, 30)
    assert call["vaf"] == pytest.approx(0.3)


@STRANDS
def test_inframe_deletion_shifted_3prime(strand):
    # c.16-21 = G AAA AG (pos 56-61), codons GAA Glu6 AAG Lys7. Deleting c.17-19 (AAA) leaves
    # G+AG = GAG Glu: Lys7 is gone. The run of A is c.17-20, so the 3' name is c.18_20del.
    call = one(call_tiny(strand, indels=[(56, "del", 3, "", 10, 10)]))
    assert (call["consequence"], call["hgvs_c"], call["hgvs_p"]) == (
        "inframe_deletion",
        "c.18_20del",
        "p.(Lys7del)",
    )
    if strand == "+":
        assert (call["pos"], call["ref"], call["alt"]) == (56, "GAAA", "G")
    else:  # mirrored run TTTT at 71-74 after C at 70 (from pos 61 G)... left-aligned at 70
        assert (call["pos"], call["ref"], call["alt"]) == (70, "CTTT", "C")


@STRANDS
def test_insertion_copying_the_preceding_base_is_a_dup(strand):
    # Insert T before TTT c.22-24 (anchor pos 61 = c.21 G): HGVS shifts to after c.24 -> c.24dup.
    # New frame from c.25: TCC Ser (was Pro9), CGC, AGA, TTC, TAC, AGG, ATA, AGC, then the UTR
    # TTG ACC AAT AAA G: no stop before the transcript ends -> fsTer?.
    call = one(call_tiny(strand, indels=[(61, "ins", 1, "T", 10, 10)]))
    assert (call["kind"], call["consequence"]) == ("ins", "frameshift_variant")
    assert (call["hgvs_c"], call["hgvs_p"]) == ("c.24dup", "p.(Pro9SerfsTer?)")
    if strand == "+":
        assert (call["pos"], call["ref"], call["alt"]) == (61, "G", "GT")


@STRANDS
def test_two_codon_deletion_and_inframe_dup(strand):
    # c.16-21 = GAA AAG (Glu6 Lys7), followed by TTT: deleting all six cannot shift (G != T).
    call = one(call_tiny(strand, indels=[(55, "del", 6, "", 10, 10)]))
    assert (call["consequence"], call["hgvs_c"], call["hgvs_p"]) == (
        "inframe_deletion",
        "c.16_21del",
        "p.(Glu6_Lys7del)",
    )
    # Inserting AAG after c.21 copies c.19-21: c.19_21dup, and Lys7 again: p.(Lys7dup).
    call = one(call_tiny(strand, indels=[(61, "ins", 3, "AAG", 10, 10)]))
    assert (call["consequence"], call["hgvs_c"], call["hgvs_p"]) == (
        "inframe_insertion",
        "c.19_21dup",
        "p.(Lys7dup)",
    )


@STRANDS
def test_inframe_insertion_and_plain_insertion(strand):
    # Insert GCC (Ala) between c.21 and c.22 (pos 61/62): AAG Lys7 | GCC | TTT Phe8.
    # Not a copy of the bases before (AAG) -> c.21_22insGCC, p.(Lys7_Phe8insAla).
    call = one(call_tiny(strand, indels=[(61, "ins", 3, "GCC", 10, 10)]))
    assert (call["consequence"], call["hgvs_c"], call["hgvs_p"]) == (
        "inframe_insertion",
        "c.21_22insGCC",
        "p.(Lys7_Phe8insAla)",
    )


@STRANDS
def test_deletion_of_a_donor_site(strand):
    # Delete pos 31-32 (GT, c.10+1_10+2) with anchor pos 30 (c.10 C).
    call = one(call_tiny(strand, indels=[(30, "del", 2, "", 10, 10)]))
    assert call["consequence"] == "splice_donor_variant"
    assert call["hgvs_p"] == "p.?"
    assert call["intron"] == 1


@STRANDS
def test_thresholds_and_scope(strand):
    # 2 alt reads (< min_alt 3) and 4 of 100 (< min_vaf 0.05) are not called; 5 of 100 is.
    calls = call_tiny(strand, snvs=[(25, "A", 1, 1), (26, "T", 2, 2), (28, "A", 3, 2)])
    assert calls["hgvs_c"].to_list() == ["c.8G>A"]


def test_nothing_in_the_middle_of_a_long_intron(tmp_path):
    gene = small_gene("+")
    (ws, _), ref = reference_window(gene, 3)
    cols = make_bases(ref, start=ws + 1)
    intron_mid = gene.exons[0][1] + 150  # intron 1 is 300 bp: 150 bp from either exon
    near_exon = gene.exons[0][1] + 15  # 15 bp into the intron: reported
    for p in (intron_mid, near_exon):
        alt = "A" if ref[p - 1 - ws] != "A" else "C"
        put(cols, p, alt, 20, 20)
    m = load_gtf(write_gtf(gene, tmp_path / "g.gtf"), gene.name)
    calls = call_variants(to_frame(cols), make_indels([]), m, fetcher(ref, ws), sample="S")
    assert calls["pos"].to_list() == [near_exon]
    assert calls["consequence"].to_list() == ["intron_variant"]
    assert calls["hgvs_c"][0].startswith("c.80+15")  # exon 1 codes 80 nt (1541-1620)


# --- without a reference -------------------------------------------------------------------------


def test_without_reference_coding_is_unknown_and_warned(caplog):
    with caplog.at_level(logging.WARNING, logger="cd22scan"):
        calls = call_tiny(
            "+",
            snvs=[(25, "A", 10, 10), (40, "G", 10, 10)],
            indels=[(64, "del", 1, "", 10, 10)],
            fetch=False,
        )
    warnings = [r for r in caplog.records if "--reference" in r.getMessage()]
    assert len(warnings) == 1
    rows = {r["pos"]: r for r in calls.iter_rows(named=True)}
    assert rows[25]["consequence"] == "unknown" and rows[25]["ref"] == "N"
    assert rows[25]["hgvs_p"] == "p.?"
    assert rows[40]["consequence"] == "intron_variant"  # position alone decides it
    assert (rows[64]["ref"], rows[64]["alt"], rows[64]["hgvs_c"]) == ("NN", "N", "c.25del")
    assert rows[64]["consequence"] == "unknown"


# --- coordinate mapping --------------------------------------------------------------------------


@STRANDS
def test_c_positions_of_exon_ends(strand):
    tmap = TranscriptMap(tiny_model(strand))
    names = {p: tmap.c_position(mirror(p, strand)) for p in (11, 20, 21, 30, 51, 70, 91, 105, 106)}
    assert names == {
        11: "-10",
        20: "-1",
        21: "1",
        30: "10",
        51: "11",
        70: "30",
        91: "31",
        105: "45",
        106: "*1",
    }
    assert tmap.c_position(mirror(125, strand)) == "*20"  # downstream, counted on


def test_builtin_cd22_cds_ends_map_to_c1_and_the_stop():
    model = builtin_model("CD22", "GRCh38")
    tmap = TranscriptMap(model)
    assert tmap.c_position(model.cds_start) == "1"  # + strand
    assert tmap.c_position(model.cds_end) == str(model.cds_length())
    assert model.cds_length() % 3 == 0
    assert tmap.c_position(model.cds_start - 1) == "-1"
    assert tmap.c_position(model.cds_end + 1) == "*1"


def test_annotate_directly_on_minus_strand():
    # The − strand mirror of c.5G>A, given as a Change on the genomic + strand.
    model = tiny_model("-")
    locus = Locus(1, tiny_ref("-"))
    note = annotate(TranscriptMap(model), Change(L + 1 - 25, L + 1 - 25, "T"), locus)
    assert (note.consequence, note.hgvs_c, note.hgvs_p) == (
        "missense_variant",
        "c.5G>A",
        "p.(Gly2Asp)",
    )


# --- strand bias ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "table",
    [
        (50, 50, 10, 10),
        (50, 50, 20, 0),
        (90, 10, 3, 7),
        (0, 0, 0, 0),
        (5, 0, 0, 5),
        (1000, 980, 37, 2),
        (12, 30, 7, 1),
        (3, 3, 3, 3),
    ],
)
def test_strand_bias_matches_scipy(table):
    a, b, c, d = table
    expected = fisher_exact([[a, b], [c, d]], alternative="two-sided")[1]
    assert fisher_exact_two_sided(a, b, c, d) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_strand_bias_column_uses_ref_and_alt_strand_counts():
    # ref G at pos 25: 90 reads left, 40 fwd + 50 rev after moving 10 fwd + 0 rev to A.
    call = one(call_tiny("+", snvs=[(25, "A", 10, 0)]))
    assert call["strand_bias_p"] == pytest.approx(fisher_exact([[40, 50], [10, 0]])[1])


def test_columns_are_stable():
    calls = call_tiny("+", snvs=[(25, "A", 10, 10)])
    assert dict(calls.schema) == COLUMNS
    empty = call_tiny("+")
    assert empty.height == 0 and dict(empty.schema) == COLUMNS


# --- end to end on a simulated BAM ---------------------------------------------------------------


def _codon_change(coding: str, index: int, want: str) -> str | None:
    """An alt base at CDS ``index`` whose codon becomes 'missense' or 'stop'."""
    codon_start = index - index % 3
    ref_aa = str(Seq(coding[codon_start : codon_start + 3]).translate())
    for base in "ACGT":
        if base == coding[index]:
            continue
        codon = list(coding[codon_start : codon_start + 3])
        codon[index % 3] = base
        aa = str(Seq("".join(codon)).translate())
        if (want == "stop" and aa == "*") or (want == "missense" and aa not in ("*", ref_aa)):
            return base
    return None


@pytest.mark.slow
@pytest.mark.parametrize("strand", ["+", "-"])
def test_end_to_end_simulated_bam(tmp_path, strand):
    gene = small_gene(strand)
    seed = 11
    (ws, _), ref = reference_window(gene, seed)
    positions = coding_positions(gene)  # 0-based genomic, transcript order
    coding = "".join(ref[p - ws] if strand == "+" else revcomp(ref[p - ws]) for p in positions)
    # missense around codon 40, nonsense from codon 120 on (first index that can become a stop)
    mis_index = next(i for i in range(118, 200) if _codon_change(coding, i, "missense"))
    stop_index = next(i for i in range(360, 600) if _codon_change(coding, i, "stop"))
    mis_alt = _codon_change(coding, mis_index, "missense")
    stop_alt = _codon_change(coding, stop_index, "stop")
    # 1-bp deletion of CDS base c.601 (genomic anchor = the base before it on the + strand)
    del_gpos = positions[600]
    variants = [
        ("snv", positions[mis_index], comp(mis_alt, strand), 0.15),
        ("snv", positions[stop_index], comp(stop_alt, strand), 0.5),
        ("del", del_gpos - 1, 1, 0.3),
    ]
    sim = simulate(tmp_path, seed=seed, gene=gene, variants=variants, n_fragments=6000)
    gtf = write_gtf(gene, tmp_path / "g.gtf")
    result = scan(str(sim.bam), gtf=str(gtf), gene=gene.name, reference=str(sim.reference))
    with pysam.FastaFile(str(sim.reference)) as fasta:
        ref_all = fasta.fetch(gene.contig).upper()
    fetch = fetcher(ref_all)
    calls = call_variants(result.bases, result.indels, result.model, fetch, sample="S1")
    assert calls.height == 3, calls
    rows = {
        r["kind"] + ("" if r["kind"] != "snv" else str(r["pos"])): r
        for r in calls.iter_rows(named=True)
    }

    mis = rows[f"snv{positions[mis_index] + 1}"]
    codon = mis_index // 3
    assert mis["consequence"] == "missense_variant"
    ref_aa = seq3(str(Seq(coding[codon * 3 : codon * 3 + 3]).translate()))
    assert mis["hgvs_c"] == f"c.{mis_index + 1}{coding[mis_index]}>{mis_alt}"
    assert mis["hgvs_p"].startswith(f"p.({ref_aa}{codon + 1}")
    assert abs(mis["vaf"] - 0.15) < 0.06

    stop = rows[f"snv{positions[stop_index] + 1}"]
    assert stop["consequence"] == "stop_gained"
    assert stop["hgvs_p"].endswith(f"{stop_index // 3 + 1}Ter)")
    assert abs(stop["vaf"] - 0.5) < 0.1

    deletion = rows["del"]
    assert deletion["consequence"] == "frameshift_variant"
    assert "fsTer" in deletion["hgvs_p"]
    # 3' rule: the name sits at the transcript-3' end of the run of equal bases (same exon here)
    run_end = 600
    while (
        coding[run_end + 1] == coding[600] and abs(positions[run_end + 1] - positions[run_end]) == 1
    ):
        run_end += 1
    assert deletion["hgvs_c"] == f"c.{run_end + 1}del"
    assert abs(deletion["vaf"] - 0.3) < 0.08
    # The simulator's own count (alt / covering fragments) agrees closely with the VAF called
    # from the pileup (the nominal VAFs above allow for sampling).
    for truth, call in zip(sim.truth["variants"], (mis, stop, deletion), strict=True):
        expected = truth["alt_fragments"] / truth["covering_fragments"]
        assert call["vaf"] == pytest.approx(expected, abs=0.03)
