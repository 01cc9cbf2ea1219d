"""Per-allele read evidence of candidate alleles: a second, small pysam pass over the reads that
cover candidate positions only, after the core's counts (the core counts bases, not which read
start or read position supports them).

A candidate is an allele the variant calling would consider: an SNV letter other than the
reference (or, without one, the most frequent letter) with >= ``min_alt`` reads and a VAF >=
``MIN_CANDIDATE_VAF`` at a position in the exons ± ``variants.SITE_PADDING``, or an indel of the
indel table at that VAF (several raw representations can merge into one left-aligned allele).
At most ``MAX_SITES`` positions are re-read (the ones with most alt reads; a warning says when
capped).

Reads pass the scan's filters: flags in ``exclude_flags`` (0x704 unless --keep-duplicates), MAPQ
< ``min_mapq``, and for an SNV the base quality < ``min_baseq``. The two mates of a fragment
count once per allele (the first mate seen gives its strand and start).

Columns of ``EVIDENCE_SCHEMA`` (one row per raw allele; coordinates 1-based like the indel table):

* ``pos`` — SNV: the base; indel: the anchor base before it (as read, not left-aligned).
* ``kind`` (``snv``/``ins``/``del``), ``allele`` — SNV letter, inserted bases, or deleted length.
* ``alt_reads``, ``alt_forward``, ``alt_reverse`` — fragments with the allele, all / by strand.
* ``alt_starts`` — distinct (alignment start, strand) of those reads: a stack of reads with one
  start and strand (PCR duplicates when duplicates are not marked) is one piece of evidence.
* ``max_stack`` — reads of the largest such stack.
* ``end_distance_sum`` — summed distance of the allele from the nearer end of the aligned part
  of the read (bases); mean = sum / alt_reads.
* ``duplicate_like`` / ``fragments`` (in the summary, not the table) — paired fragments over the
  candidate sites sharing (start, strand, mate start) with another: a duplicate-level estimate.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass, field

import polars as pl
import pysam

from cd22scan.target.annotation import GeneModel

__all__ = ["EVIDENCE_SCHEMA", "MAX_SITES", "Candidates", "allele_evidence", "candidates"]

log = logging.getLogger("cd22scan")

MAX_SITES = 2000  # candidate positions re-read at most; a few reads each, so ~1 s on a laptop
_FETCH_GAP = 300  # candidate positions closer than this are fetched as one region
# An allele is re-read only at a VAF that could reach a call (the default --min-delta-vaf is
# 0.05): in a deep sample sequencing errors put >= 3 reads of some other letter at nearly every
# position, and re-reading all of them in Python would cost more than the scan itself. Alleles
# below it keep the count-only FILTER rules (README, Variant FILTER).
MIN_CANDIDATE_VAF = 0.02

EVIDENCE_SCHEMA: dict[str, type[pl.DataType]] = {
    "pos": pl.Int64,
    "kind": pl.Utf8,
    "allele": pl.Utf8,
    "alt_reads": pl.Int64,
    "alt_forward": pl.Int64,
    "alt_reverse": pl.Int64,
    "alt_starts": pl.Int64,
    "max_stack": pl.Int64,
    "end_distance_sum": pl.Int64,
}

_LETTERS = ("A", "C", "G", "T")


@dataclass
class Candidates:
    """Positions (1-based) to re-read: SNV letters by position, indel anchors by kind."""

    snv: dict[int, set[str]] = field(default_factory=dict)
    indel: set[tuple[int, str, str]] = field(default_factory=set)  # (anchor pos, kind, allele)
    capped: int = 0  # positions dropped by MAX_SITES

    def positions(self) -> list[int]:
        return sorted(set(self.snv) | {p for p, _, _ in self.indel})


def candidates(
    bases: pl.DataFrame,
    indels: pl.DataFrame,
    model: GeneModel,
    *,
    min_alt: int = 3,
    min_vaf: float = MIN_CANDIDATE_VAF,
    padding: int = 20,
    max_sites: int = MAX_SITES,
) -> Candidates:
    """The candidate alleles of a scan's ``bases`` / ``indels`` tables
    (``cd22scan.sample.tables``)."""
    scope = pl.any_horizontal(
        [pl.col("pos").is_between(e.start - padding, e.end + padding) for e in model.exons]
    )
    # Keep, in polars, only positions where some letter other than the reference (or, without
    # one, than the most frequent letter) reaches the floor; the loop below then sees few rows.
    floor = pl.max_horizontal(pl.lit(float(min_alt)), pl.col("depth") * min_vaf)
    passing = pl.sum_horizontal([(pl.col(x) >= floor).cast(pl.Int32) for x in _LETTERS])
    ref_passing = pl.sum_horizontal(
        [((pl.col("ref") == x) & (pl.col(x) >= floor)).cast(pl.Int32) for x in _LETTERS]
    )
    has_ref = pl.col("ref").is_in(_LETTERS)
    some_alt = (has_ref & (passing - ref_passing >= 1)) | (~has_ref & (passing >= 2))
    near = bases.filter(scope & (pl.col("depth") > 0) & some_alt)
    out = Candidates()
    weight: dict[int, int] = defaultdict(int)
    for row in near.iter_rows(named=True):
        ref = row["ref"] if row.get("ref") in _LETTERS else None
        stand_in = ref or max(_LETTERS, key=lambda x: row[x])
        floor = max(min_alt, min_vaf * row["depth"])
        letters = {x for x in _LETTERS if x != stand_in and row[x] >= floor}
        if letters:
            out.snv[row["pos"]] = letters
            weight[row["pos"]] += max(row[x] for x in letters)
    depth = dict(zip(bases["pos"].to_list(), bases["depth"].to_list(), strict=True))
    for row in indels.filter(pl.col("reads") > 0).iter_rows(named=True):
        if row["reads"] < min_vaf * depth.get(row["pos"], 0):
            continue
        allele = str(row["length"]) if row["kind"] == "del" else row["sequence"].upper()
        out.indel.add((row["pos"], row["kind"], allele))
        weight[row["pos"]] += row["reads"]
    positions = out.positions()
    if len(positions) > max_sites:
        keep = set(sorted(positions, key=lambda p: (-weight[p], p))[:max_sites])
        out.snv = {p: v for p, v in out.snv.items() if p in keep}
        out.indel = {x for x in out.indel if x[0] in keep}
        out.capped = len(positions) - max_sites
    return out


def _regions(positions: list[int]) -> list[tuple[int, int]]:
    """1-based positions -> merged 0-based half-open fetch regions (with a base of room)."""
    regions: list[list[int]] = []
    for p in positions:
        if regions and p - regions[-1][1] <= _FETCH_GAP:
            regions[-1][1] = p + 1
        else:
            regions.append([p - 1, p + 1])
    return [(max(0, a - 1), b) for a, b in regions]


def _read_events(
    read: pysam.AlignedSegment, want: Candidates, snv_positions: list[int], min_baseq: int
):
    """(key, query offset from the nearer aligned end) of every candidate allele in ``read``."""
    qstart, qend = read.query_alignment_start, read.query_alignment_end
    seq = read.query_sequence or ""
    quals = read.query_qualities
    ref0 = read.reference_start
    q = 0
    for op, length in read.cigartuples or ():
        if op in (0, 7, 8):  # M, =, X: only the candidate positions in the block (bisect)
            lo = bisect_left(snv_positions, ref0 + 1)
            hi = bisect_right(snv_positions, ref0 + length)
            for pos in snv_positions[lo:hi]:
                i = q + pos - 1 - ref0
                if i < len(seq):
                    base = seq[i].upper()
                    if base in want.snv[pos] and (quals is None or quals[i] >= min_baseq):
                        yield (pos, "snv", base), min(i - qstart, qend - 1 - i)
            ref0 += length
            q += length
        elif op == 1:  # I: after reference base ref0 (0-based ref0 - 1 -> 1-based ref0)
            key = (ref0, "ins", seq[q : q + length].upper())
            if key in want.indel:
                yield key, min(q - qstart, qend - (q + length))
            q += length
        elif op == 2:  # D: deleted bases from 0-based ref0; anchor = 1-based ref0
            key = (ref0, "del", str(length))
            if key in want.indel:
                yield key, min(q - qstart, qend - q)
            ref0 += length
        elif op == 3:  # N
            ref0 += length
        elif op == 4:  # S
            q += length


def allele_evidence(
    alignments: pysam.AlignmentFile,
    contig: str,
    want: Candidates,
    *,
    min_mapq: int,
    min_baseq: int,
    exclude_flags: int,
) -> tuple[pl.DataFrame, dict[str, int]]:
    """The evidence table of ``want`` from an indexed ``alignments`` file, and the duplicate
    estimate {fragments, duplicate_like, reads_marked_duplicate} over the re-read reads."""
    seen: set[tuple[str | None, tuple]] = set()  # (query name, allele key): mates count once
    reads_seen: set[tuple[str | None, bool, int]] = set()
    stacks: dict[tuple, dict[tuple[int, bool], int]] = defaultdict(lambda: defaultdict(int))
    strands: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    ends: dict[tuple, int] = defaultdict(int)
    fragment_keys: dict[tuple[int, bool, int], int] = defaultdict(int)
    marked = 0
    snv_positions = sorted(want.snv)
    for start0, end0 in _regions(want.positions()):
        for read in alignments.fetch(contig, start0, end0):
            if read.is_duplicate:
                marked += 1
            if read.flag & exclude_flags or read.mapping_quality < min_mapq or read.is_unmapped:
                continue
            ident = (read.query_name, read.is_read2, read.reference_start)
            if ident in reads_seen:  # a read fetched by two regions
                continue
            reads_seen.add(ident)
            if read.is_paired and read.is_read1 and not read.mate_is_unmapped:
                fragment_keys[
                    (read.reference_start, read.is_reverse, read.next_reference_start)
                ] += 1
            for key, distance in _read_events(read, want, snv_positions, min_baseq):
                if (read.query_name, key) in seen:
                    continue
                seen.add((read.query_name, key))
                stacks[key][(read.reference_start, read.is_reverse)] += 1
                strands[key][1 if read.is_reverse else 0] += 1
                ends[key] += max(distance, 0)
    rows = []
    for key, by_start in stacks.items():
        fwd, rev = strands[key]
        rows.append(
            {
                "pos": key[0],
                "kind": key[1],
                "allele": key[2],
                "alt_reads": fwd + rev,
                "alt_forward": fwd,
                "alt_reverse": rev,
                "alt_starts": len(by_start),
                "max_stack": max(by_start.values()),
                "end_distance_sum": ends[key],
            }
        )
    frame = pl.DataFrame(rows, schema=EVIDENCE_SCHEMA, orient="row").sort(["pos", "kind", "allele"])
    fragments = sum(fragment_keys.values())
    duplicate_like = sum(n - 1 for n in fragment_keys.values())
    return frame, {
        "fragments": fragments,
        "duplicate_like": duplicate_like,
        "reads_marked_duplicate": marked,
    }
