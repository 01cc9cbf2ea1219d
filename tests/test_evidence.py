"""Per-allele read evidence (cd22scan.sample.evidence) and the variant FILTERs it feeds, on a
small BAM written here with a planted PCR-duplicate stack, checked against a slow independent count
(pysam ``get_aligned_pairs`` per read, no CIGAR walking)."""

from __future__ import annotations

from array import array
from collections import defaultdict

import numpy as np
import polars as pl
import pysam
import pytest

from cd22scan import scan
from cd22scan.calling.sample import sample_calls
from cd22scan.calling.variants import filter_reasons
from cd22scan.outputs.scandir import load_scan, write_scan
from cd22scan.sample.evidence import candidates

CONTIG = "chrS"
LENGTH = 3000
EXON = (1001, 2000)  # 1-based inclusive, + strand
READ = 60
SNV_REAL = 1300  # 1-based: alt on 12 single reads + 3 overlapping pairs, distinct starts
SNV_STACK = 1600  # one start, one strand: 15 reads (plus excluded dup / low MAPQ / low BQ)
DEL_STACK = 1800  # 2-bp deletion after this anchor, one start, 8 reads
INS_REAL = 1400  # 1-base insertion after this anchor, 6 reads, distinct starts


def _alt(ref: str) -> str:
    return {"A": "C", "C": "G", "G": "T", "T": "A"}[ref]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    rng = np.random.default_rng(7)
    ref = "".join(rng.choice(list("ACGT"), LENGTH))
    d = tmp_path_factory.mktemp("evidence")
    fasta = d / "ref.fa"
    fasta.write_text(f">{CONTIG}\n{ref}\n")
    pysam.faidx(str(fasta))
    gtf = d / "genes.gtf"
    attrs = 'gene_id "G1"; gene_name "TOY"; transcript_id "TOY-T1";'
    gtf.write_text(
        f'{CONTIG}\tt\tgene\t{EXON[0]}\t{EXON[1]}\t.\t+\t.\tgene_id "G1"; gene_name "TOY";\n'
        f"{CONTIG}\tt\ttranscript\t{EXON[0]}\t{EXON[1]}\t.\t+\t.\t{attrs}\n"
        f"{CONTIG}\tt\texon\t{EXON[0]}\t{EXON[1]}\t.\t+\t.\t{attrs} exon_number 1;\n"
    )
    header = pysam.AlignmentHeader.from_dict(
        {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": CONTIG, "LN": LENGTH}]}
    )
    records = []

    def add(name, start0, cigar, seq, *, flag=0, mapq=60, quals=None, mate=-1):
        a = pysam.AlignedSegment(header)
        a.query_name, a.flag, a.reference_id, a.reference_start = name, flag, 0, start0
        a.mapping_quality, a.cigartuples, a.query_sequence = mapq, cigar, seq
        a.query_qualities = array("B", quals or [30] * len(seq))
        if mate >= 0:
            a.next_reference_id, a.next_reference_start = 0, mate
        records.append(a)

    def with_snv(start0, pos1):
        seq = list(ref[start0 : start0 + READ])
        seq[pos1 - 1 - start0] = _alt(ref[pos1 - 1])
        return "".join(seq)

    for i in range(600):  # background: reference reads over the exon, both strands
        s = int(rng.integers(EXON[0] - 1, EXON[1] - READ))
        add(f"bg{i}", s, [(0, READ)], ref[s : s + READ], flag=16 * int(rng.integers(0, 2)))
    for i in range(12):  # a real SNV: distinct starts, both strands
        s = SNV_REAL - 1 - 5 - 4 * i
        add(f"real{i}", s, [(0, READ)], with_snv(s, SNV_REAL), flag=16 * (i % 2))
    for i in range(3):  # overlapping mates both carrying it: one fragment each
        s1, s2 = SNV_REAL - 1 - 50 + i, SNV_REAL - 1 - 20 + i
        add(f"pair{i}", s1, [(0, READ)], with_snv(s1, SNV_REAL), flag=99, mate=s2)
        add(f"pair{i}", s2, [(0, READ)], with_snv(s2, SNV_REAL), flag=147, mate=s1)
    s = SNV_STACK - 1 - 30
    for i in range(15):  # the stack: one start, reverse strand
        add(f"stack{i}", s, [(0, READ)], with_snv(s, SNV_STACK), flag=16)
    add("dup", s + 1, [(0, READ)], with_snv(s + 1, SNV_STACK), flag=16 | 0x400)
    add("lowmapq", s + 2, [(0, READ)], with_snv(s + 2, SNV_STACK), mapq=5)
    low_bq = [30] * READ
    low_bq[30 - 3] = 5
    add("lowbq", s + 3, [(0, READ)], with_snv(s + 3, SNV_STACK), quals=low_bq)
    s = DEL_STACK - 30
    for i in range(8):  # deletion stack: 30M2D30M from one start
        seq = ref[s : s + 30] + ref[s + 32 : s + 62]
        add(f"del{i}", s, [(0, 30), (2, 2), (0, 30)], seq)
    for i in range(6):  # real insertion, distinct starts
        s = INS_REAL - 20 - 3 * i
        k = INS_REAL - s
        seq = ref[s : s + k] + "G" + ref[s + k : s + READ - 1]
        add(f"ins{i}", s, [(0, k), (1, 1), (0, READ - 1 - k)], seq, flag=16 * (i % 2))
    records.sort(key=lambda a: a.reference_start)
    bam = d / "toy.bam"
    with pysam.AlignmentFile(str(bam), "wb", header=header) as out:
        for a in records:
            out.write(a)
    pysam.index(str(bam))
    result = scan(str(bam), gtf=str(gtf), gene="TOY", reference=str(fasta), sample="toy")
    return result, bam, ref, d


def _slow_evidence(bam, min_mapq=20, min_baseq=13, exclude=0x704):
    """Every allele of every passing read, by get_aligned_pairs; mates count once."""
    support = defaultdict(dict)  # key -> {query name: (start, reverse, end distance)}
    with pysam.AlignmentFile(str(bam)) as f:
        for read in f.fetch(CONTIG):
            if read.flag & exclude or read.mapping_quality < min_mapq:
                continue
            seq, quals = read.query_sequence, read.query_qualities
            qs, qe = read.query_alignment_start, read.query_alignment_end
            pairs = read.get_aligned_pairs()
            events = []
            for j, (q, r) in enumerate(pairs):
                if q is not None and r is not None and quals[q] >= min_baseq:
                    events.append(((r + 1, "snv", seq[q]), min(q - qs, qe - 1 - q)))
                if r is None and (j == 0 or pairs[j - 1][1] is not None):
                    run = [p for p in pairs[j:]]
                    n = next(i for i, p in enumerate(run) if p[1] is not None)
                    anchor = pairs[j - 1][1] + 1
                    events.append(((anchor, "ins", seq[q : q + n]), min(q - qs, qe - (q + n))))
                if q is None and (j == 0 or pairs[j - 1][0] is not None):
                    run = pairs[j:]
                    n = next(i for i, p in enumerate(run) if p[0] is not None)
                    after = run[n][0]
                    events.append(((r, "del", str(n)), min(after - qs, qe - after)))
            for key, dist in events:
                support[key].setdefault(
                    read.query_name, (read.reference_start, read.is_reverse, dist)
                )
    return support


def test_evidence_equals_a_slow_count(planted):
    result, bam, ref, _ = planted
    evidence = result.evidence
    slow = _slow_evidence(bam)
    keys = {(r["pos"], r["kind"], r["allele"]) for r in evidence.iter_rows(named=True)}
    assert (SNV_REAL, "snv", _alt(ref[SNV_REAL - 1])) in keys
    assert (SNV_STACK, "snv", _alt(ref[SNV_STACK - 1])) in keys
    assert (DEL_STACK, "del", "2") in keys and (INS_REAL, "ins", "G") in keys
    for row in evidence.iter_rows(named=True):
        reads = slow[(row["pos"], row["kind"], row["allele"])].values()
        stacks = defaultdict(int)
        for start, reverse, _ in reads:
            stacks[(start, reverse)] += 1
        assert row["alt_reads"] == len(reads), row
        assert row["alt_reverse"] == sum(rev for _, rev, _ in reads), row
        assert row["alt_forward"] == sum(not rev for _, rev, _ in reads), row
        assert row["alt_starts"] == len(stacks) and row["max_stack"] == max(stacks.values()), row
        assert row["end_distance_sum"] == sum(d for _, _, d in reads), row
    stack = evidence.filter(pl.col("pos") == SNV_STACK).row(0, named=True)
    # duplicate-flagged, low-MAPQ and low-base-quality reads are left out; mates count once
    assert (stack["alt_reads"], stack["alt_starts"], stack["max_stack"]) == (15, 1, 15)
    real = evidence.filter(pl.col("pos") == SNV_REAL).row(0, named=True)
    assert real["alt_reads"] == 15 and real["alt_starts"] == 15


def test_planted_stack_is_filtered_and_real_alleles_pass(planted):
    result, _, _, _ = planted
    v = {(r["pos"], r["kind"]): r for r in sample_calls(result).variants.iter_rows(named=True)}
    assert v[(SNV_REAL, "snv")]["filter"] == "PASS"
    assert v[(INS_REAL, "ins")]["filter"] == "PASS"
    # one start and strand: dup_stack; all reverse while the site has both: strand_bias
    stack = v[(SNV_STACK, "snv")]
    assert stack["strand_bias_p"] < 1e-3, stack
    assert stack["filter"] == "dup_stack;strand_bias"
    assert v[(DEL_STACK, "del")]["filter"].startswith("dup_stack")
    assert result.summary["duplicates"]["estimated"]


def test_evidence_and_filter_survive_the_scan_directory(planted):
    result, _, _, d = planted
    write_scan(result, d / "out")
    loaded = load_scan(d / "out")
    assert loaded.evidence.equals(result.evidence)
    assert sample_calls(loaded).variants.equals(sample_calls(result).variants)
    with pysam.VariantFile(str(d / "out" / "toy.variants.vcf.gz")) as vcf:
        assert "dup_stack" in vcf.header.filters and "strand_bias" in vcf.header.filters
        got = {rec.pos: list(rec.filter.keys()) for rec in vcf}
    assert got[SNV_REAL] == ["PASS"]
    assert got[SNV_STACK] == ["dup_stack", "strand_bias"]


def test_filter_rules():
    base = dict(alt_reads=10, alt_forward=5, alt_reverse=5, strand_bias_p=0.5,
                site_on_both_strands=True, alt_starts=8, max_stack_share=0.2,
                mean_end_distance=20.0)  # fmt: skip
    assert filter_reasons(**base) == []
    assert filter_reasons(**{**base, "alt_reads": 2}) == ["low_support"]
    assert filter_reasons(**{**base, "alt_starts": 2}) == ["dup_stack"]
    assert filter_reasons(**{**base, "max_stack_share": 0.51}) == ["dup_stack"]
    assert filter_reasons(**{**base, "max_stack_share": 0.5}) == []
    one_strand = {**base, "alt_forward": 10, "alt_reverse": 0, "strand_bias_p": 1e-4}
    assert filter_reasons(**one_strand) == ["strand_bias"]
    # a site read on one strand only (e.g. a read end) is not strand bias
    assert filter_reasons(**{**one_strand, "site_on_both_strands": False}) == []
    assert filter_reasons(**{**one_strand, "alt_reverse": 1}) == []
    assert filter_reasons(**{**base, "mean_end_distance": 4.9}) == ["read_end"]
    # no read evidence (stream mode): only the count rules apply
    none = {**base, "alt_starts": None, "max_stack_share": None, "mean_end_distance": None}
    assert filter_reasons(**none) == []


def test_stream_mode_has_no_evidence_and_filters_from_counts(planted):
    _, bam, _, d = planted
    result = scan(
        str(bam), gtf=str(d / "genes.gtf"), gene="TOY", reference=str(d / "ref.fa"), stream=True
    )
    assert result.evidence.height == 0 and not result.summary["duplicates"]["estimated"]
    v = {(r["pos"], r["kind"]): r for r in sample_calls(result).variants.iter_rows(named=True)}
    stack = v[(SNV_STACK, "snv")]
    assert stack["alt_starts"] is None and stack["filter"] == "strand_bias"


def test_candidate_positions_are_capped(planted):
    result, _, _, _ = planted
    full = candidates(result.bases, result.indels, result.model)
    capped = candidates(result.bases, result.indels, result.model, max_sites=2)
    assert len(full.positions()) > 2 and len(capped.positions()) == 2
    assert capped.capped == len(full.positions()) - 2
    # the positions with most alt reads are kept: the two SNVs (15 reads each)
    assert capped.positions() == [SNV_REAL, SNV_STACK]


def test_candidates_skip_alleles_below_the_vaf_floor():
    """A deep site's error-level letters are not re-read (that would cost a Python pass over
    every read of a deep sample); an allele at a callable VAF is."""
    from cd22scan.sample.evidence import MIN_CANDIDATE_VAF
    from cd22scan.target.annotation import builtin_model

    model = builtin_model()
    exon = model.exons[2]
    row = {"contig": model.contig, "ref": "A", "N": 0, "del": 0, "ins": 0}
    bases = pl.DataFrame(
        [
            {**row, "pos": exon.start + 5, "A": 985, "C": 10, "G": 5, "T": 0, "depth": 1000},
            {**row, "pos": exon.start + 6, "A": 950, "C": 50, "G": 0, "T": 0, "depth": 1000},
        ]
    )
    indels = pl.DataFrame(
        [
            {"pos": exon.start + 5, "kind": "del", "length": 2, "sequence": "AA", "reads": 8},
            {"pos": exon.start + 6, "kind": "ins", "length": 1, "sequence": "T", "reads": 40},
        ]
    )
    want = candidates(bases, indels, model)
    assert 10 < MIN_CANDIDATE_VAF * 1000 < 50
    assert want.snv == {exon.start + 6: {"C"}}
    assert want.indel == {(exon.start + 6, "ins", "T")}


def _slow_candidate_letters(bases: pl.DataFrame, min_alt: int, min_vaf: float) -> dict:
    """The candidate rule row by row, with no prefilter: the reference for ``candidates``."""
    out = {}
    for row in bases.iter_rows(named=True):
        if row["depth"] <= 0:
            continue
        ref = row["ref"] if row["ref"] in "ACGT" and len(row["ref"]) == 1 else None
        stand_in = ref or max("ACGT", key=lambda x: row[x])
        floor = max(min_alt, min_vaf * row["depth"])
        letters = {x for x in "ACGT" if x != stand_in and row[x] >= floor}
        if letters:
            out[row["pos"]] = letters
    return out


def test_candidates_equal_the_row_by_row_rule_on_random_tables():
    import random

    from cd22scan.target.annotation import builtin_model

    model = builtin_model()
    exon = model.exons[2]
    rng = random.Random(7)
    rows = []
    for i in range(400):
        counts = {x: rng.choice([0, 0, 1, 2, 3, 5, 20, 100, 1000]) for x in "ACGT"}
        rows.append({"contig": model.contig, "pos": exon.start + i % (exon.end - exon.start),
                     "ref": rng.choice(["A", "C", "G", "T", "N"]), **counts, "N": 0, "del": 0,
                     "ins": 0, "depth": sum(counts.values())})  # fmt: skip
    # one row per position (a bases table has one)
    bases = pl.DataFrame(rows).unique("pos", keep="first").sort("pos")
    indels = pl.DataFrame(
        schema={
            "pos": pl.Int64,
            "kind": pl.Utf8,
            "length": pl.Int64,
            "sequence": pl.Utf8,
            "reads": pl.Int64,
        }
    )
    for min_vaf in (0.0, 0.02, 0.3):
        want = candidates(bases, indels, model, min_vaf=min_vaf, max_sites=10_000)
        assert want.snv == _slow_candidate_letters(bases, 3, min_vaf)
