"""Tests of the data factory (tests/simulator.py) and the reference counter
(tests/reference_counter.py): the simulator's truth must equal an independent count of its BAM,
and hand-written SAM cases pin the counting rules of docs/counting.md with numbers worked by hand.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import tempfile
from itertools import pairwise

import numpy as np
import pysam
import pytest
import reference_counter as rc
import simulator as sim
from hypothesis import given, settings
from hypothesis import strategies as st
from samtools_pileup import needs_samtools

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def summed_junctions(result) -> dict[tuple[int, int], int]:
    """Reference junction fragments summed over orientation and xs (a fragment has one of each)."""
    out: dict[tuple[int, int], int] = {}
    for start, end, _orientation, _xs, fragments, _max_anchor in result.junctions:
        out[(start, end)] = out.get((start, end), 0) + fragments
    return out


def count_window(res: sim.SimResult, **kwargs) -> rc.RefResult:
    ws, we = res.window
    return rc.reference_count(res.bam, res.gene.contig, ws, we, res.gene.exons, **kwargs)


def assert_truth_equals_reference(res: sim.SimResult) -> rc.RefResult:
    ref = count_window(res)
    truth = res.truth
    assert ref.filters == truth["filters"]
    assert ref.exon_fragments == truth["exon_fragments"]
    assert summed_junctions(ref) == truth["junctions"]
    assert ref.intron_counts == truth["intron_counts"]
    assert ref.fragments == truth["fragments"]
    assert ref.gene_fragments == truth["gene_fragments"]
    assert ref.strand_evidence == tuple(truth["strand_evidence"])
    return ref


def binomial_ok(k: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def orf_ok(coding: str) -> bool:
    codons = [coding[i : i + 3] for i in range(0, len(coding), 3)]
    stops = {"TAA", "TAG", "TGA"}
    return (
        len(coding) % 3 == 0
        and codons[0] == "ATG"
        and codons[-1] in stops
        and not any(c in stops for c in codons[:-1])
    )


HEADER = "@SQ\tSN:chrT\tLN:1000"
BASE_KEYS = rc.BASE_COUNT_KEYS


def nonzero_counts(result: rc.RefResult, window_start: int = 0) -> dict[tuple[str, int], int]:
    """{(key, pos0): count} for every non-zero per-position count."""
    out = {}
    for key in BASE_KEYS:
        for i in np.flatnonzero(result.base_counts[key]):
            out[(key, int(i) + window_start)] = int(result.base_counts[key][i])
    return out


def tiny(tmp_path, lines, name="t.bam", **kwargs):
    return sim.write_sam_text_bam(tmp_path / name, HEADER, lines, **kwargs)


# --------------------------------------------------------------------------------------------
# simulator: determinism, file validity, structure
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_sim(tmp_path_factory) -> sim.SimResult:
    return sim.simulate(
        tmp_path_factory.mktemp("small"),
        seed=101,
        gene=sim.small_gene("+"),
        n_fragments=700,
        isoforms={"canonical": 0.6, "skip:3": 0.2, "retain:4": 0.1, "pre_mrna": 0.1},
        variants=[("snv", 2850, None, 0.5), ("del", 3250, 3, 0.5), ("ins", 2000, "AC", 0.5)],
        write_reference=True,
    )


def test_same_seed_gives_identical_bam_bytes(tmp_path):
    kwargs = dict(seed=42, gene=sim.small_gene("-"), n_fragments=300, write_reference=False)
    a = sim.simulate(tmp_path / "a", **kwargs)
    b = sim.simulate(tmp_path / "b", **kwargs)
    c = sim.simulate(tmp_path / "c", **{**kwargs, "seed": 43})
    digest = [hashlib.sha256(r.bam.read_bytes()).hexdigest() for r in (a, b, c)]
    assert digest[0] == digest[1]
    assert digest[0] != digest[2]
    assert a.truth == b.truth
    with pysam.AlignmentFile(str(a.bam)) as fa, pysam.AlignmentFile(str(c.bam)) as fc:
        assert [r.to_string() for r in fa] != [r.to_string() for r in fc]


@needs_samtools
def test_samtools_accepts_the_bam_and_counts_every_record(small_sim):
    bam = str(small_sim.bam)
    records = small_sim.truth["records"]
    assert subprocess.run(["samtools", "quickcheck", "-v", bam]).returncode == 0

    def view_count(*args: str) -> int:
        out = subprocess.run(["samtools", "view", "-c", *args, bam], capture_output=True)
        assert out.returncode == 0, out.stderr
        return int(out.stdout)

    assert view_count() == records["total"]
    assert view_count("-f", "0x400") == records["duplicate"]
    assert view_count("-f", "0x100") == records["secondary"]
    assert view_count("-f", "0x800") == records["supplementary"]
    assert view_count("-f", "0x200") == records["qcfail"]
    assert view_count("-f", "0x4") == records["unmapped"]
    # every noise kind is present with the default fractions
    noise_kinds = "duplicate secondary supplementary low_mapq qcfail unmapped softclipped"
    for kind in [*noise_kinds.split(), "outside_window", "mapq255"]:
        assert records[kind] > 0, kind


def test_records_are_well_formed(small_sim):
    gene = small_sim.gene
    ws, _ = small_sim.window
    seq = small_sim.window_sequence
    introns = set(gene.introns)
    for segments in small_sim.truth["isoform_segments"].values():
        introns |= {(a[1], b[0]) for a, b in pairwise(segments)}
    primaries: dict[tuple[str, int], pysam.AlignedSegment] = {}
    with pysam.AlignmentFile(str(small_sim.bam)) as bam:
        header = bam.header.to_dict()
        assert header["HD"]["SO"] == "coordinate"
        assert header["RG"][0]["SM"] == "S1"
        last = -1
        records = list(bam.fetch(until_eof=True))
    for r in records:
        if r.is_unmapped:
            assert r.cigartuples is None
            continue
        assert r.reference_start >= last
        last = r.reference_start
        query_len = sum(n for op, n in r.cigartuples if op in (0, 1, 4, 7, 8))
        assert query_len == len(r.query_sequence) == len(r.query_qualities)
        assert min(r.query_qualities) >= 2 and max(r.query_qualities) <= 41
        spliced = any(op == 3 for op, _ in r.cigartuples)
        if spliced:
            assert r.get_tag("XS") == "+"
        else:
            assert not r.has_tag("XS")
        assert r.has_tag("NH") and r.get_tag("RG") == "S1"
        if any(op == 5 for op, _ in r.cigartuples):
            assert r.is_supplementary
        ref_pos = r.reference_start
        for op, n in r.cigartuples:
            if op == 3:
                assert (ref_pos, ref_pos + n) in introns
                assert seq[ref_pos - ws : ref_pos - ws + 2] == "GT"
                assert seq[ref_pos + n - 2 - ws : ref_pos + n - ws] == "AG"
            if op in (0, 2, 3, 7, 8):
                ref_pos += n
        if not (r.is_secondary or r.is_supplementary):
            primaries[(r.query_name, 1 if r.is_read1 else 2)] = r
    # mate fields point at the mate's primary record
    for (name, which), r in primaries.items():
        mate = primaries.get((name, 3 - which))
        if r.is_paired and mate is not None:
            assert r.next_reference_start == mate.reference_start
            assert r.mate_is_reverse == mate.is_reverse
            assert r.mate_is_unmapped == mate.is_unmapped
            assert r.is_read1 != mate.is_read1


@pytest.mark.parametrize(
    ("strand", "paired", "library", "seed"),
    [
        ("+", True, "fr", 1),
        ("-", True, "rf", 2),
        ("-", True, "unstranded", 3),
        ("+", False, "fr", 4),
        ("-", False, "fr", 5),
    ],
)
def test_truth_equals_reference_counter(tmp_path, strand, paired, library, seed):
    res = sim.simulate(
        tmp_path,
        seed=seed,
        gene=sim.small_gene(strand),
        n_fragments=500,
        paired=paired,
        library=library,
        isoforms={
            "canonical": 0.5,
            "skip:2": 0.2,
            "skip:4-5": 0.1,
            "retain:3": 0.1,
            "pre_mrna": 0.1,
        },
        supplementary_fraction=0.03,
        write_reference=False,
    )
    ref = assert_truth_equals_reference(res)
    # stranded libraries put every gene fragment in one orientation
    if library == "fr":
        expected = 0 if strand == "+" else 1
        assert ref.strand_evidence[1 - expected] == 0 < ref.strand_evidence[expected]
    if library == "rf":
        expected = 1 if strand == "+" else 0
        assert ref.strand_evidence[1 - expected] == 0 < ref.strand_evidence[expected]
    assert sum(res.truth["isoform_fragments"].values()) == 500


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    strand=st.sampled_from("+-"),
    paired=st.booleans(),
    library=st.sampled_from(["fr", "rf", "unstranded"]),
    skip=st.floats(0.0, 0.6),
    read_length=st.sampled_from([50, 76, 100, 150]),
    insert_mean=st.sampled_from([80, 150, 250]),
)
def test_truth_equals_reference_counter_property(
    seed, strand, paired, library, skip, read_length, insert_mean
):
    # heavy noise and short inserts (mates overlapping, reads trimmed) on few fragments
    with tempfile.TemporaryDirectory() as out:
        res = sim.simulate(
            out,
            seed=seed,
            gene=sim.small_gene(strand),
            n_fragments=80,
            read_length=read_length,
            insert_mean=insert_mean,
            paired=paired,
            library=library,
            isoforms={"canonical": 1 - skip, "skip:2-3": skip / 2, "retain:5": skip / 2},
            variants=[("del", 3250, 2, 0.5), ("ins", 2850, "T", 0.5)],
            dup_fraction=0.1,
            secondary_fraction=0.1,
            low_mapq_fraction=0.1,
            qcfail_fraction=0.1,
            supplementary_fraction=0.1,
            softclip_fraction=0.1,
            unmapped_fraction=0.1,
            outside_fraction=0.05,
            error_rate=0.01,
            write_reference=False,
        )
        assert_truth_equals_reference(res)


def test_small_sim_truth_equals_reference_counter(small_sim):
    ref = assert_truth_equals_reference(small_sim)
    # all records touch the window, so nothing is off target
    assert ref.filters["off_target"] == 0


def test_cd22_grch38_reference_header_orf_and_truth(tmp_path):
    res = sim.simulate(
        tmp_path, seed=7, n_fragments=400, isoforms={"canonical": 0.8, "skip:2": 0.2}
    )
    gene = res.gene
    assert gene == sim.cd22_grch38()
    assert gene.exons[1] == (35332018, 35332074)  # exon 2, 1-based 35332019-35332074
    assert gene.cds == (35332040, 35346697)
    with pysam.AlignmentFile(str(res.bam)) as bam:
        assert bam.header.get_reference_length("chr19") == sim.GRCH38_CHR19_LENGTH
    assert res.reference is not None
    with pysam.FastaFile(str(res.reference)) as fasta:
        assert fasta.get_reference_length("chr19") == sim.GRCH38_CHR19_LENGTH
        coding = "".join(fasta.fetch("chr19", p, p + 1) for p in sim.coding_positions(gene))
        assert orf_ok(coding)
        assert len(coding) == 2544
        ws, we = res.window
        assert fasta.fetch("chr19", ws - 5, ws) == "NNNNN"
        assert fasta.fetch("chr19", ws, we) == res.window_sequence
        for start, end in gene.introns:
            assert fasta.fetch("chr19", start, start + 2) == "GT"
            assert fasta.fetch("chr19", end - 2, end) == "AG"
    assert_truth_equals_reference(res)


def test_cd22_grch37_is_grch38_shifted():
    g38, g37 = sim.cd22_grch38(), sim.cd22_grch37()
    shift = 490_903
    assert [(s + shift, e + shift) for s, e in g38.exons] == list(g37.exons)
    assert g37.exons[0] == (35820089, 35820133)
    assert g37.contig_length == sim.GRCH37_CHR19_LENGTH
    assert len(g38.exons) == 14 and g38.strand == "+"


@pytest.mark.parametrize("strand", ["+", "-"])
def test_small_gene_orf_and_splice_sites(strand):
    gene = sim.small_gene(strand)
    (ws, _we), seq = sim.reference_window(gene, seed=9)
    coding = "".join(seq[p - ws] for p in sim.coding_positions(gene))
    if strand == "-":
        coding = coding.translate(str.maketrans("ACGT", "TGCA"))  # positions already reversed
    assert orf_ok(coding)
    for start, end in gene.introns:
        donor, acceptor = seq[start - ws : start - ws + 2], seq[end - 2 - ws : end - ws]
        assert (donor, acceptor) == (("GT", "AG") if strand == "+" else ("CT", "AC"))
    assert 150 <= min(e - s for s, e in gene.introns) <= max(e - s for s, e in gene.introns) <= 600
    assert gene.exon(1) == (gene.exons[0] if strand == "+" else gene.exons[-1])


@pytest.mark.slow
def test_planted_psi_and_vaf(tmp_path):
    gene = sim.small_gene("+")
    psi = 0.7
    res = sim.simulate(
        tmp_path,
        seed=2024,
        gene=gene,
        n_fragments=3000,
        isoforms={"canonical": psi, "skip:3": 1 - psi},
        variants=[("snv", 2850, None, 0.3), ("del", 3250, 3, 0.5), ("ins", 2000, "AC", 0.2)],
        write_reference=False,
    )
    truth = res.truth
    # fragments are drawn in proportion to fraction x effective length
    lengths = {n: sum(e - s for s, e in segs) for n, segs in truth["isoform_segments"].items()}
    weight = {n: truth["isoform_fractions"][n] * (lengths[n] - 250 + 1) for n in lengths}
    share = weight["canonical"] / sum(weight.values())
    assert binomial_ok(truth["isoform_fragments"]["canonical"], 3000, share)

    # PSI from junction fragments (rMATS junction-count style) recovers the molecule fraction
    junctions = truth["junctions"]
    e2, e3, e4 = gene.exon(2), gene.exon(3), gene.exon(4)
    inclusion = (junctions[(e2[1], e3[0])] + junctions[(e3[1], e4[0])]) / 2
    skipping = junctions[(e2[1], e4[0])]
    psi_hat = inclusion / (inclusion + skipping)
    n = inclusion + skipping
    assert abs(psi_hat - psi) < 4 * math.sqrt(psi * (1 - psi) / n) + 0.02

    ref = assert_truth_equals_reference(res)
    ws = res.window[0]
    for v in truth["variants"]:
        assert v["covering_fragments"] > 100
        assert binomial_ok(v["alt_fragments"], v["covering_fragments"], v["vaf"])
        if v["kind"] == "snv":
            p = v["pos0"] - ws
            counts = {b: int(ref.base_counts[f"{b}_fwd"][p]) for b in "ACGTN"}
            for b in "ACGTN":
                counts[b] += int(ref.base_counts[f"{b}_rev"][p])
            assert abs(counts[v["alt"]] / sum(counts.values()) - v["vaf"]) < 0.1
        if v["kind"] == "del":
            events = [(f, r) for a, n_del, f, r in ref.deletions if (a, n_del) == (3250, 3)]
            assert events and abs(sum(events[0]) - v["alt_fragments"]) <= 3
        if v["kind"] == "ins":
            events = [(f, r) for a, s, f, r in ref.insertions if (a, s) == (2000, "AC")]
            assert events and 0 < sum(events[0]) <= v["alt_fragments"] + 3


def test_xs_tags_off_and_contig_rename(tmp_path):
    res = sim.simulate(
        tmp_path,
        seed=3,
        gene=sim.small_gene("-"),
        n_fragments=100,
        xs_tags=False,
        contig_name="T",
        sample="P7",
        write_reference=False,
    )
    with pysam.AlignmentFile(str(res.bam)) as bam:
        assert bam.references == ("T",)
        assert bam.header.to_dict()["RG"][0]["SM"] == "P7"
        assert not any(r.has_tag("XS") for r in bam.fetch(until_eof=True))
    assert res.gene.contig == "T"
    assert_truth_equals_reference(res)


def test_isoform_names():
    gene = sim.small_gene("-")  # transcript exon 1 is the genomic last exon
    ex = gene.exons
    assert sim.isoform_segments(gene, "canonical") == list(ex)
    assert sim.isoform_segments(gene, "skip:1") == list(ex[:-1])
    assert sim.isoform_segments(gene, "skip:2-3") == [ex[0], ex[1], ex[2], ex[5]]
    assert sim.isoform_segments(gene, "retain:1") == [*ex[:4], (ex[4][0], ex[5][1])]
    assert sim.isoform_segments(gene, "pre_mrna") == [(ex[0][0], ex[5][1])]
    with pytest.raises(ValueError):
        sim.isoform_segments(gene, "skip:2+retain:2")


# --------------------------------------------------------------------------------------------
# reference counter: hand-written cases, numbers worked out by hand
# --------------------------------------------------------------------------------------------


def test_keeper_hash_matches_htslib():
    # x31("p1") = 'p'*31 + '1' = 112*31 + 49
    assert rc.x31_hash("p1") == 3521
    assert not rc.keeper_is_first("p1")
    assert not rc.keeper_is_first("p2")
    assert rc.keeper_is_first("p3")


def test_overlap_agreeing_bases_go_to_the_keeper(tmp_path):
    # a: 0-based 10..19 ACGTACGTAC (forward); b: 15..24 CGTACGGGGG (reverse); all Q40.
    # At 15..19 both agree: the keeper gets Q80, the other Q0, so each base counts once.
    lines = []
    for name in ("p1", "p3"):
        lines += [
            f"{name} 99 chrT 11 60 10M = 16 15 ACGTACGTAC IIIIIIIIII",
            f"{name} 147 chrT 16 60 10M = 11 -15 CGTACGGGGG IIIIIIIIII",
        ]
    for name, keeper_a in (("p1", False), ("p3", True)):
        bam = tiny(tmp_path, [line for line in lines if line.startswith(name)], f"{name}.bam")
        result = rc.reference_count(bam, "chrT", 0, 100, [(0, 100)])
        fwd = sum(int(result.base_counts[f"{b}_fwd"].sum()) for b in "ACGTN")
        rev = sum(int(result.base_counts[f"{b}_rev"].sum()) for b in "ACGTN")
        assert (fwd, rev) == ((10, 5) if keeper_a else (5, 10))
        overlap_key = "C_fwd" if keeper_a else "C_rev"
        assert result.base_counts[overlap_key][15] == 1 and result.base_counts[overlap_key][19] == 1
        assert int(rc.depth(result).sum()) == 15
        plain = rc.reference_count(bam, "chrT", 0, 100, [(0, 100)], dedup_overlaps=False)
        assert int(rc.depth(plain).sum()) == 20
        assert result.exon_fragments == [1] and result.fragments == 1


def test_overlap_quality_rules(tmp_path):
    # Both mates cover 0-based 10..15.          pos:  10  11  12  13  14  15
    # a (fwd) ACGTAC, Q 10 40 20 30 15 93         a:  A10 C40 G20 T30 A15 C93
    # b (rev) AGCAGC, Q 10 30 30 30 15 93         b:  A10 G30 C30 A30 G15 C93
    # keeper is b for "p2", a for "p3".
    def pair(name: str) -> list[str]:
        return [
            f"{name} 99 chrT 11 60 6M = 11 6 ACGTAC +I5?0~",
            f"{name} 147 chrT 11 60 6M = 11 -6 AGCAGC +???0~",
        ]

    expected_p2 = {
        ("A_rev", 10): 1,  # same letter, 10+10=20 to keeper b
        ("C_fwd", 11): 1,  # differ, a higher: a gets int(0.8*40)=32
        ("C_rev", 12): 1,  # differ, b higher: b gets 24
        ("A_rev", 13): 1,  # differ, equal: keeper b gets 24
        # 14: differ, equal 15: keeper gets int(0.8*15)=12 < 13, nothing counted
        ("C_rev", 15): 1,  # same letter, min(200, 186) to keeper b
    }
    expected_p3 = {
        ("A_fwd", 10): 1,
        ("C_fwd", 11): 1,
        ("C_rev", 12): 1,
        ("T_fwd", 13): 1,  # keeper a keeps its own letter
        ("C_fwd", 15): 1,
    }
    for name, expected in (("p2", expected_p2), ("p3", expected_p3)):
        bam = tiny(tmp_path, pair(name), f"{name}.bam")
        assert nonzero_counts(rc.reference_count(bam, "chrT", 0, 100, [(0, 100)])) == expected

    bam = tiny(tmp_path, pair("p2"), "plain.bam")
    plain = rc.reference_count(bam, "chrT", 0, 100, [(0, 100)], dedup_overlaps=False)
    assert nonzero_counts(plain) == {
        ("C_fwd", 11): 1, ("G_rev", 11): 1,
        ("G_fwd", 12): 1, ("C_rev", 12): 1,
        ("T_fwd", 13): 1, ("A_rev", 13): 1,
        ("A_fwd", 14): 1, ("G_rev", 14): 1,
        ("C_fwd", 15): 1, ("C_rev", 15): 1,
    }  # fmt: skip

    # without the proper-pair bit (97/145) the mates are not paired for overlap
    not_proper = [
        "p2 97 chrT 11 60 6M = 11 6 ACGTAC +I5?0~",
        "p2 145 chrT 11 60 6M = 11 -6 AGCAGC +???0~",
    ]
    bam = tiny(tmp_path, not_proper, "np.bam")
    assert nonzero_counts(rc.reference_count(bam, "chrT", 0, 100, [(0, 100)])) == nonzero_counts(
        plain
    )


def test_mate_deletions_counted_once(tmp_path):
    # d1: a 0-based 10..14 M, 15-16 D, 17..21 M; b 12..14 M, 15-16 D, 17..23 M: same deletion.
    # d2: a as d1; b deletes only 15 (event (14, 1)): its per-position del at 15 is dropped,
    #     but its different event is still counted.
    lines = [
        "d1 99 chrT 11 60 5M2D5M = 13 14 ACGTAACGTA IIIIIIIIII",
        "d1 147 chrT 13 60 3M2D7M = 11 -14 GTAACGTAAA IIIIIIIIII",
    ]
    bam = tiny(tmp_path, lines, "d1.bam")
    result = rc.reference_count(bam, "chrT", 0, 100, [(0, 100)])
    assert result.deletions == [(14, 2, 1, 0)]
    assert list(np.flatnonzero(result.base_counts["del_fwd"])) == [15, 16]
    assert result.base_counts["del_rev"].sum() == 0
    plain = rc.reference_count(bam, "chrT", 0, 100, [(0, 100)], dedup_overlaps=False)
    assert plain.deletions == [(14, 2, 1, 1)]
    assert plain.base_counts["del_rev"][15] == plain.base_counts["del_rev"][16] == 1

    lines = [
        "d2 99 chrT 11 60 5M2D5M = 13 14 ACGTAACGTA IIIIIIIIII",
        "d2 147 chrT 13 60 3M1D8M = 11 -14 GTAACGTAAAA IIIIIIIIIII",
    ]
    bam = tiny(tmp_path, lines, "d2.bam")
    result = rc.reference_count(bam, "chrT", 0, 100, [(0, 100)])
    assert result.deletions == [(14, 1, 0, 1), (14, 2, 1, 0)]
    assert result.base_counts["del_fwd"][15] == result.base_counts["del_fwd"][16] == 1
    assert result.base_counts["del_rev"].sum() == 0


def test_insertion_rules(tmp_path):
    lines = [
        "i1 0 chrT 11 60 5M2I3M * 0 0 ACGTAGGCCA IIIIIIIIII",  # anchor 14: counted fwd
        "i2 0 chrT 11 60 2S2I6M * 0 0 TTGGACGTAC IIIIIIIIII",  # after S: not counted
        "i3 16 chrT 11 60 4M1D2I4M * 0 0 ACGTGGACGT IIIIIIIIII",  # after D: not counted
        "i4 0 chrT 11 60 5M2I3M * 0 0 ACGTAGGCCA IIII#IIIII",  # anchor Q2 < 13: not counted
        "i5 16 chrT 11 60 5M2I3M * 0 0 ACGTATTCCA IIIIIIIIII",  # counted rev
        "i6 0 chrT 11 60 5M0D2I3M * 0 0 ACGTAGGCCA IIIIIIIIII",  # zero-length op ignored
        "i7 0 chrT 11 60 2I8M * 0 0 GGACGTACGT IIIIIIIIII",  # read start: not counted
    ]
    bam = tiny(tmp_path, lines)
    result = rc.reference_count(bam, "chrT", 0, 100, [(0, 100)])
    assert result.insertions == [(14, "GG", 2, 0), (14, "TT", 0, 1)]
    assert result.deletions == [(13, 1, 0, 1)]  # i3: 10..13 M, D at 14
    assert result.base_counts["del_rev"][14] == 1
    # the anchor base 'A' at 14 counts for i1, i2, i6, i7 (fwd) and i5 (rev); i3 has a deletion
    # there and i4's base has Q2
    assert result.base_counts["A_fwd"][14] == 4
    assert result.base_counts["A_rev"][14] == 1
    # insertions outside the window are not listed
    assert rc.reference_count(bam, "chrT", 20, 100, [(20, 100)]).insertions == []


def test_junction_anchor_threshold_and_keys(tmp_path):
    exons = [(10, 30), (60, 90)]
    lines = [
        "j1 0 chrT 23 60 8M30N20M * 0 0 " + "A" * 28 + " " + "I" * 28 + " XS:A:+",  # anchors 8,20
        "j2 0 chrT 24 60 7M30N20M * 0 0 " + "A" * 27 + " " + "I" * 27,  # left anchor 7
        "j3 16 chrT 21 60 6M2D2M30N20M * 0 0 " + "A" * 28 + " " + "I" * 28 + " XS:A:-",  # 6+2
        "j4 0 chrT 21 60 10M30N12M20N9M * 0 0 " + "A" * 31 + " " + "I" * 31 + " XS:i:5",
        "j5 0 chrT 26 60 20M * 0 0 " + "A" * 20 + " " + "I" * 20,  # 25..44: exon->intron
        "j6 0 chrT 51 60 20M * 0 0 " + "A" * 20 + " " + "I" * 20,  # 50..69: intron->exon
    ]
    bam = tiny(tmp_path, lines)
    result = rc.reference_count(bam, "chrT", 0, 200, exons)
    assert result.junctions == [
        (30, 60, 0, 0, 1, 10),  # j4 (XS:i is not XS:A)
        (30, 60, 0, 1, 1, 8),  # j1
        (30, 60, 1, 2, 1, 8),  # j3: reverse read 1 -> orientation 1; D not in the anchor
        (72, 92, 0, 0, 1, 9),  # j4 second intron: min(12, 9)
    ]
    assert rc.reference_count(bam, "chrT", 0, 200, exons, min_anchor=9).junctions == [
        (30, 60, 0, 0, 1, 10),
        (72, 92, 0, 0, 1, 9),
    ]
    assert rc.reference_count(bam, "chrT", 0, 200, exons, min_anchor=10).junctions == [
        (30, 60, 0, 0, 1, 10),
    ]
    assert result.exon_fragments == [5, 5]  # j6 starts in the intron, j5 ends in it
    assert result.intron_counts == [(1, 1, 2)]
    assert result.gene_fragments == result.fragments == 6
    assert result.strand_evidence == (5, 1)


def test_fragments_join_mates_and_count_once(tmp_path):
    exons = [(0, 50), (100, 150)]
    lines = [
        # f1: both mates in exon 1, read 2 also in exon 2 -> each exon counts once
        "f1 99 chrT 11 60 10M = 41 95 AAAAAAAAAA IIIIIIIIII",
        "f1 147 chrT 41 60 5M55N5M = 11 -95 AAAAAAAAAA IIIIIIIIII",
        # f2: read 2 forward first (orientation 1), mate unmapped -> a fragment on its own
        "f2 137 chrT 21 60 10M = 21 0 AAAAAAAAAA IIIIIIIIII",
        "f2 69 chrT 21 0 * = 21 0 AAAAAAAAAA IIIIIIIIII",
        # f3: supplementary does not add a fragment or exon count
        "f3 2048 chrT 121 60 10M * 0 0 AAAAAAAAAA IIIIIIIIII",
    ]
    bam = tiny(tmp_path, lines)
    result = rc.reference_count(bam, "chrT", 0, 200, exons)
    assert result.fragments == 2
    assert result.exon_fragments == [2, 1]
    assert result.strand_evidence == (1, 1)
    assert result.filters["unmapped"] == 1 and result.filters["used_supplementary"] == 1
    # f1's 5M55N5M: anchors 5 < 8, so no junction
    assert result.junctions == []
    assert result.base_counts["A_fwd"][120:130].sum() == 10  # supplementary counts per position


def test_filter_order_and_reasons(tmp_path):
    seq, qual = "ACGTACGTAC", "IIIIIIIIII"
    lines = [
        f"s1 256 chrT 11 0 10M * 0 0 {seq} {qual}",  # secondary (before low_mapq)
        f"q1 1536 chrT 11 60 10M * 0 0 {seq} {qual}",  # qcfail + dup -> qcfail
        f"d1 1024 chrT 11 0 10M * 0 0 {seq} {qual}",  # dup + MAPQ 0 -> duplicate
        f"l1 0 chrT 11 19 10M * 0 0 {seq} {qual}",  # low_mapq
        f"l2 0 chrT 11 20 10M * 0 0 {seq} {qual}",  # used
        f"l3 0 chrT 11 255 10M * 0 0 {seq} {qual}",  # used (255 is a number)
        f"sp 2048 chrT 21 60 10M * 0 0 {seq} {qual}",  # used supplementary
        f"o1 0 chrT 501 60 10M * 0 0 {seq} {qual}",  # off target for window [0, 200)
        f"u1 4 * 0 0 * * 0 0 {seq} {qual}",  # unmapped
    ]
    bam = tiny(tmp_path, lines)
    result = rc.reference_count(bam, "chrT", 0, 200, [(0, 50)])
    assert result.filters == {
        "records": 9, "unmapped": 1, "secondary": 1, "qcfail": 1, "duplicate": 1,
        "other_flags": 0, "low_mapq": 1, "off_target": 1, "used": 3, "used_supplementary": 1,
    }  # fmt: skip
    assert result.fragments == 2
    excluding = rc.reference_count(bam, "chrT", 0, 200, [(0, 50)], exclude_flags=0xF04)
    assert excluding.filters["other_flags"] == 1 and excluding.filters["used"] == 2


def test_unsorted_records_are_refused(tmp_path):
    lines = [
        "r1 0 chrT 51 60 10M * 0 0 ACGTACGTAC IIIIIIIIII",
        "r2 0 chrT 11 60 10M * 0 0 ACGTACGTAC IIIIIIIIII",
    ]
    bam = tiny(tmp_path, lines, sort=False)
    with pytest.raises(rc.ReferenceCountError, match="not sorted"):
        rc.reference_count(bam, "chrT", 0, 100, [(0, 100)])
