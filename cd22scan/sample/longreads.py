"""Long reads (ONT, PacBio): each read assigned to an isoform of the gene (issue 16).

One long read is one molecule, so it shows which exons are missing together. Each primary
alignment over the gene (not unmapped, secondary, supplementary, QC-failed or duplicate; MAPQ
>= ``min_mapq``) is read once from its CIGAR:

* **junctions** are its ``N`` operations. A junction matches an annotated exon boundary pair
  when its donor and acceptor are each within ``tolerance`` nt (default 8, as long-read tools
  allow for nanopore error near splice sites; ``--junction-tolerance``) of an exon end and
  the start of a later exon. A matched junction that jumps over exons is a skip of those exons
  (``Δex2``, ``Δex5-6``, numbered in transcript order); one that matches no boundary pair is
  ``novel`` (counted per junction, rounded to the tolerance).
* **retention** of intron k: the read's aligned blocks cover at least 90 % of the intron
  body with no junction across it.
* **informative**: an event can be seen in a read only if the read reaches both flanking
  exons (for ``Δex2``: exons 1 and 3; for intron k: exons k and k+1). A read that starts
  inside the gene (a 5'-truncated molecule, common with reverse transcription and nanopore)
  is therefore not counted for the events it cannot show, instead of being called full-length
  or skipping: fractions are reads with the event / reads informative for it.

Per read: an isoform label, ``full-length`` (reaches the first and last exon, every junction
canonical), ``canonical fragment`` (canonical junctions only, not reaching both ends), or the
events joined with ``+`` (``Δex2+Δex5-6``). Tables: ``isoforms`` (label, reads, fraction),
``events`` (event, reads, informative, fraction) and ``cooccurrence`` (two events on one
molecule, reads). Artefacts: 5' truncation as above; RT template switching makes one-off
junctions at random places, each ``novel`` junction with its own (small) count, so that
``compare``'s ``min_reads`` keeps them from being called; internal priming gives 3' fragments,
which are informative only for the events they span.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pysam

from cd22scan.target.annotation import GeneModel

DEFAULT_TOLERANCE = 8
RETAINED_SHARE = 0.9
_SKIP_FLAGS = 0x4 | 0x100 | 0x800 | 0x200 | 0x400
_REF_CONSUMING = {0, 2, 7, 8}  # M, D, =, X
_N = 3

ISOFORM_COLUMNS = {"isoform": pl.Utf8, "reads": pl.Int64, "fraction": pl.Float64}
EVENT_COLUMNS = {
    "event": pl.Utf8,
    "kind": pl.Utf8,  # exon_skipping, intron_retention, novel_junction
    "reads": pl.Int64,
    "informative": pl.Int64,
    "fraction": pl.Float64,
}
COOCCURRENCE_COLUMNS = {"first": pl.Utf8, "second": pl.Utf8, "reads": pl.Int64}


def read_structure(start0: int, cigar: list[tuple[int, int]]) -> tuple[list, list]:
    """(aligned blocks, junctions) of one alignment, 1-based inclusive genomic intervals; a
    block is interrupted only by ``N`` (deletions belong to the block)."""
    blocks, junctions = [], []
    pos = start0
    block_start = start0
    for op, n in cigar:
        if op == _N:
            if pos > block_start:
                blocks.append((block_start + 1, pos))
            junctions.append((pos + 1, pos + n))
            pos += n
            block_start = pos
        elif op in _REF_CONSUMING:
            pos += n
    if pos > block_start:
        blocks.append((block_start + 1, pos))
    return blocks, junctions


@dataclass
class _Layout:
    """The model's exons in genomic order with transcript numbers."""

    model: GeneModel
    tolerance: int
    genomic: list = field(init=False)

    def __post_init__(self) -> None:
        self.genomic = sorted(self.model.exons, key=lambda e: e.start)
        self._ends = [e.end for e in self.genomic]
        # every position within tolerance of an exon end / start -> that exon (the nearest wins)
        self._end_at: dict[int, int] = {}
        self._start_at: dict[int, int] = {}
        for table, attr in ((self._end_at, "end"), (self._start_at, "start")):
            for d in range(self.tolerance, -1, -1):  # farthest first: nearer ones overwrite
                for i, exon in enumerate(self.genomic):
                    table[getattr(exon, attr) - d] = i
                    table[getattr(exon, attr) + d] = i

    def number(self, index: int) -> int:
        return self.genomic[index].number

    def end_index(self, pos: int) -> int | None:
        """Genomic index of the exon whose end is within tolerance of ``pos``."""
        return self._end_at.get(pos)

    def start_index(self, pos: int) -> int | None:
        return self._start_at.get(pos)

    def touched(self, blocks: list) -> set[int]:
        """Genomic indices of the exons the read's blocks overlap."""
        out = set()
        for s, e in blocks:
            i = bisect_left(self._ends, s)  # first exon ending at or after the block's start
            while i < len(self.genomic) and self.genomic[i].start <= e:
                out.add(i)
                i += 1
        return out


def _skip_name(numbers: list[int]) -> str:
    lo, hi = min(numbers), max(numbers)
    return f"Δex{lo}" if lo == hi else f"Δex{lo}-{hi}"


def assign_read(
    blocks: list, junctions: list, layout: _Layout, touched: set[int] | None = None
) -> tuple[str, list, list]:
    """(isoform label, events seen, events this read is informative for); ``touched``: the
    genomic exon indices the blocks overlap, when the caller has them."""
    touched = layout.touched(blocks) if touched is None else touched
    n = len(layout.genomic)
    events: list[tuple[str, str]] = []
    spanned_gaps: set[int] = set()  # genomic intron indices crossed by a canonical junction
    for start, end in junctions:
        left, right = layout.end_index(start - 1), layout.start_index(end + 1)
        if left is not None and right is not None and right > left:
            if right == left + 1:
                spanned_gaps.add(left)
                continue
            numbers = [layout.number(i) for i in range(left + 1, right)]
            events.append((_skip_name(numbers), "exon_skipping"))
            continue
        t = layout.tolerance
        label = f"{layout.model.contig}:{round(start / t) * t}-{round(end / t) * t}"
        events.append((f"novel {label}", "novel_junction"))
    for gap in range(min(touched, default=0), max(touched, default=0)):
        lo, hi = layout.genomic[gap].end + 1, layout.genomic[gap + 1].start - 1
        if hi < lo or gap in spanned_gaps:
            continue
        covered = sum(max(0, min(e, hi) - max(s, lo) + 1) for s, e in blocks)
        if covered >= RETAINED_SHARE * (hi - lo + 1):
            k = min(layout.number(gap), layout.number(gap + 1))  # intron k: after exon k
            events.append((f"IR{k}", "intron_retention"))
    informative = []
    if touched:
        first, last = min(touched), max(touched)
        for gap in range(first, last):
            k = min(layout.number(gap), layout.number(gap + 1))
            informative.append(f"IR{k}")
        informative.append(("span", first, last))
    names = sorted({name for name, _ in events})
    if names:
        label = "+".join(names)
    elif touched and min(touched) == 0 and max(touched) == n - 1:
        label = "full-length"
    else:
        label = "canonical fragment"
    return label, events, informative


@dataclass
class LongReadTables:
    isoforms: pl.DataFrame
    events: pl.DataFrame
    cooccurrence: pl.DataFrame
    reads: int  # primary alignments over the gene that were assigned
    summary: dict[str, Any]


def _informative_for(event: str, kind: str, span: tuple[int, int], layout: _Layout) -> bool:
    """Does a read touching genomic exon indices span[0]..span[1] reach both flanking exons
    of ``event``?"""
    first, last = span
    if kind == "exon_skipping":
        numbers = event[3:].split("-")
        lo, hi = int(numbers[0]), int(numbers[-1])
        idx = {layout.number(i): i for i in range(len(layout.genomic))}
        flank = sorted((idx[lo - 1], idx[hi + 1])) if lo > 1 and hi + 1 in idx else None
        return flank is not None and first <= flank[0] and last >= flank[1]
    return True  # intron_retention handled per read, novel: every read over the gene


def long_read_tables(
    path: str,
    model: GeneModel,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    min_mapq: int = 0,
    reference: str | None = None,
) -> LongReadTables:
    """Assign every primary alignment over ``model`` (an indexed BAM/CRAM) to an isoform."""
    layout = _Layout(model, tolerance)
    labels: Counter[str] = Counter()
    seen: Counter[tuple[str, str]] = Counter()
    kinds: dict[str, str] = {}
    ir_informative: Counter[str] = Counter()
    spans: Counter[tuple[int, int]] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    lengths = []
    start, end = min(e.start for e in model.exons), max(e.end for e in model.exons)
    with pysam.AlignmentFile(path, reference_filename=reference) as bam:
        for read in bam.fetch(model.contig, start - 1, end):
            if read.flag & _SKIP_FLAGS or read.mapping_quality < min_mapq:
                continue
            blocks, junctions = read_structure(read.reference_start, read.cigartuples or [])
            touched = layout.touched(blocks)
            if not touched:
                continue
            label, events, informative = assign_read(blocks, junctions, layout, touched)
            lengths.append(read.query_length)
            labels[label] += 1
            names = sorted({name for name, _ in events})
            for name, kind in events:
                kinds[name] = kind
            for name in names:
                seen[(name, kinds[name])] += 1
            for a, b in itertools.combinations(names, 2):
                pairs[(a, b)] += 1
            for item in informative:
                if isinstance(item, tuple):
                    spans[(item[1], item[2])] += 1
                else:
                    ir_informative[item] += 1
    total = sum(labels.values())
    known = {e.name: e for e in model.known_events if e.kind == "exon_skipping"}
    for name in known:
        kinds.setdefault(name, "exon_skipping")
    event_rows = []
    for name, kind in sorted(kinds.items()):
        reads = seen.get((name, kind), 0)
        if kind == "intron_retention":
            informative = ir_informative.get(name, 0)
        elif kind == "novel_junction":
            informative = total
        else:
            informative = sum(
                n for span, n in spans.items() if _informative_for(name, kind, span, layout)
            )
        event_rows.append(
            {
                "event": name,
                "kind": kind,
                "reads": reads,
                "informative": informative,
                "fraction": reads / informative if informative else None,
            }
        )
    isoforms = pl.DataFrame(
        [
            {"isoform": label, "reads": n, "fraction": n / total}
            for label, n in sorted(labels.items(), key=lambda item: (-item[1], item[0]))
        ],
        schema=ISOFORM_COLUMNS,
        orient="row",
    )
    lengths.sort()
    summary = {
        "long_reads": True,
        "junction_tolerance": tolerance,
        "reads_assigned": total,
        "median_read_length": lengths[len(lengths) // 2] if lengths else None,
        "full_length_reads": labels.get("full-length", 0),
    }
    return LongReadTables(
        isoforms=isoforms,
        events=pl.DataFrame(event_rows, schema=EVENT_COLUMNS, orient="row"),
        cooccurrence=pl.DataFrame(
            [{"first": a, "second": b, "reads": n} for (a, b), n in sorted(pairs.items())],
            schema=COOCCURRENCE_COLUMNS,
            orient="row",
        ),
        reads=total,
        summary=summary,
    )
