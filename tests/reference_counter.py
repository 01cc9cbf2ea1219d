"""Slow, obviously correct reference implementation of docs/counting.md, written from that page.

It reads every record of a SAM/BAM file in file order through pysam's parsed fields (never SAM
text), so it shares no code with the Rust core or its SAM parser. Tests demand that the core's
``CountResult`` equals ``reference_count(...)`` field by field. Coordinates are 0-based half-open.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

import numpy as np
import pysam

BASE_COUNT_KEYS: tuple[str, ...] = (
    "A_fwd", "A_rev", "C_fwd", "C_rev", "G_fwd", "G_rev",
    "T_fwd", "T_rev", "N_fwd", "N_rev", "del_fwd", "del_rev",
)  # fmt: skip
FILTER_KEYS: tuple[str, ...] = (
    "records", "unmapped", "secondary", "qcfail", "duplicate",
    "other_flags", "low_mapq", "off_target", "used", "used_supplementary",
)  # fmt: skip

# SAM flag bits
PAIRED, PROPER, UNMAP, MUNMAP, REVERSE = 0x1, 0x2, 0x4, 0x8, 0x10
READ2, SECONDARY, QCFAIL, DUP, SUPPLEMENTARY = 0x80, 0x100, 0x200, 0x400, 0x800

# pysam CIGAR op codes -> letters; anything else (e.g. 9 = B) is an error
_OP_LETTER = {0: "M", 1: "I", 2: "D", 3: "N", 4: "S", 5: "H", 6: "P", 7: "=", 8: "X"}
_MATCH_OPS = {"M", "=", "X"}
_QUERY_OPS = {"M", "I", "S", "=", "X"}
_U32 = 0xFFFFFFFF


class ReferenceCountError(ValueError):
    """Input the contract refuses (unsorted records, CIGAR/SEQ length mismatch, unknown op)."""


@dataclass
class RefResult:
    """Same attribute names and layouts as ``cd22scan._core.CountResult``."""

    filters: dict[str, int]
    base_counts: dict[str, np.ndarray]
    insertions: list[tuple[int, str, int, int]]
    deletions: list[tuple[int, int, int, int]]
    exon_fragments: list[int]
    junctions: list[tuple[int, int, int, int, int, int]]
    intron_counts: list[tuple[int, int, int]]
    strand_evidence: tuple[int, int]
    gene_fragments: int
    fragments: int


def x31_hash(name: str) -> int:
    """htslib's __ac_X31_hash_string on unsigned 32-bit arithmetic."""
    data = name.encode()
    if not data:
        return 0
    h = data[0]
    for c in data[1:]:
        h = ((h << 5) - h + c) & _U32
    return h


def wang_hash(k: int) -> int:
    """htslib's __ac_Wang_hash on unsigned 32-bit arithmetic."""
    k &= _U32
    k = (k + (~(k << 15) & _U32)) & _U32
    k ^= k >> 10
    k = (k + (k << 3)) & _U32
    k ^= k >> 6
    k = (k + (~(k << 11) & _U32)) & _U32
    k ^= k >> 16
    return k


def keeper_is_first(qname: str) -> bool:
    """True when the first mate ("a") keeps the summed quality of agreeing overlap bases."""
    return wang_hash(x31_hash(qname)) & 1 == 1


@dataclass
class _Record:
    """One record as the contract sees it, walked once into plain Python lists."""

    index: int
    qname: str
    flag: int
    pos: int
    mapq: int
    ops: list[tuple[str, int]]  # zero-length ops dropped
    seq: str | None
    quals: list[int]  # 255 per base when QUAL is '*'
    mate_same_contig: bool
    pnext: int  # 0-based, -1 when absent
    tlen: int
    xs: int
    end: int = 0  # 0-based exclusive end on the reference, set by _walk_cigar
    aligned: list[tuple[int, int]] = field(default_factory=list)  # (ref_pos, query_index)
    deleted: list[int] = field(default_factory=list)  # ref positions under D
    deletion_events: list[tuple[int, int]] = field(default_factory=list)  # (anchor, length)
    insertion_events: list[tuple[int, int, str]] = field(default_factory=list)  # (anchor, q, bases)
    junctions: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, min anchor)

    @property
    def reverse(self) -> bool:
        return bool(self.flag & REVERSE)

    @property
    def orientation(self) -> int:
        is_read2 = bool(self.flag & READ2) and bool(self.flag & PAIRED)
        return 0 if self.reverse == is_read2 else 1


def _walk_cigar(rec: _Record) -> int:
    """Fill the record's aligned/deleted/insertion/junction lists and its end; return the
    reference length."""
    ref = rec.pos
    q = 0
    previous_op = None
    for op, n in rec.ops:
        if op in _MATCH_OPS:
            for i in range(n):
                rec.aligned.append((ref + i, q + i))
            ref += n
            q += n
        elif op == "I":
            if previous_op in _MATCH_OPS and rec.seq is not None:
                rec.insertion_events.append((ref - 1, q - 1, rec.seq[q : q + n].upper()))
            q += n
        elif op == "S":
            q += n
        elif op == "D":
            rec.deletion_events.append((ref - 1, n))
            for i in range(n):
                rec.deleted.append(ref + i)
            ref += n
        elif op == "N":
            ref += n
        # H and P: nothing
        previous_op = op

    # Junction anchors: M/=/X reference lengths of the stretches between N ops.
    stretches = [0]
    intron_spans = []
    ref = rec.pos
    for op, n in rec.ops:
        if op in _MATCH_OPS:
            stretches[-1] += n
            ref += n
        elif op == "N":
            intron_spans.append((ref, ref + n))
            stretches.append(0)
            ref += n
        elif op == "D":
            ref += n
    for k, (start, end) in enumerate(intron_spans):
        rec.junctions.append((start, end, min(stretches[k], stretches[k + 1])))
    rec.end = ref
    return ref - rec.pos


def _read_records(bam_path) -> list[tuple[pysam.AlignedSegment, str | None]]:
    with pysam.AlignmentFile(str(bam_path), check_sq=False) as bam:
        return [(r, r.reference_name) for r in bam.fetch(until_eof=True)]


def _make_record(index: int, seg: pysam.AlignedSegment) -> _Record:
    ops = []
    for code, n in seg.cigartuples or []:
        if code not in _OP_LETTER:
            raise ReferenceCountError(f"record {seg.query_name}: unknown CIGAR op code {code}")
        if n > 0:
            ops.append((_OP_LETTER[code], n))
    seq = seg.query_sequence
    if seq is not None:
        query_len = sum(n for op, n in ops if op in _QUERY_OPS)
        if query_len != len(seq):
            raise ReferenceCountError(
                f"record {seg.query_name}: CIGAR query length {query_len} != SEQ length {len(seq)}"
            )
    raw_quals = seg.query_qualities
    if seq is None:
        quals: list[int] = []
    elif raw_quals is None:
        quals = [255] * len(seq)
    else:
        quals = list(raw_quals)
    xs = 0
    if seg.has_tag("XS"):
        value, value_type = seg.get_tag("XS", with_value_type=True)
        if value_type == "A":
            xs = {"+": 1, "-": 2}.get(value, 0)
    return _Record(
        index=index,
        qname=seg.query_name,
        flag=seg.flag,
        pos=seg.reference_start,
        mapq=seg.mapping_quality,
        ops=ops,
        seq=seq,
        quals=quals,
        mate_same_contig=(seg.next_reference_id >= 0 and seg.next_reference_id == seg.reference_id),
        pnext=seg.next_reference_start,
        tlen=seg.template_length,
        xs=xs,
    )


def _filter_reason(
    seg: pysam.AlignedSegment,
    rec: _Record | None,
    reflen: int,
    contig: str,
    rname: str | None,
    window: tuple[int, int],
    min_mapq: int,
    exclude_flags: int,
) -> str:
    flag = seg.flag
    if flag & UNMAP or not seg.cigartuples or seg.reference_id < 0:
        return "unmapped"
    if flag & SECONDARY and exclude_flags & SECONDARY:
        return "secondary"
    if flag & QCFAIL and exclude_flags & QCFAIL:
        return "qcfail"
    if flag & DUP and exclude_flags & DUP:
        return "duplicate"
    if flag & exclude_flags & ~(UNMAP | SECONDARY | QCFAIL | DUP):
        return "other_flags"
    if seg.mapping_quality < min_mapq:
        return "low_mapq"
    assert rec is not None
    span_start, span_end = rec.pos, rec.pos + reflen
    # an empty span intersects nothing
    if rname != contig or not (span_start < window[1] and span_end > window[0]):
        return "off_target"
    return "used"


def _adjust_overlap(a: _Record, b: _Record, qa: list[int], qb: list[int]) -> None:
    """htslib tweak_overlap_quality on the two quality lists (in place), as counting.md says."""
    if a.seq is None or b.seq is None:
        return  # a record without bases has nothing to compare
    keep_a = keeper_is_first(a.qname)
    b_at = dict(b.aligned)
    for ref_pos, ia in a.aligned:
        if ref_pos not in b_at:
            continue
        ib = b_at[ref_pos]
        qual_a, qual_b = qa[ia], qb[ib]
        if a.seq[ia].upper() == b.seq[ib].upper():
            summed = min(200, qual_a + qual_b)
            if keep_a:
                qa[ia], qb[ib] = summed, 0
            else:
                qa[ia], qb[ib] = 0, summed
        elif qual_a > qual_b:
            qa[ia], qb[ib] = int(0.8 * qual_a), 0
        elif qual_b > qual_a:
            qa[ia], qb[ib] = 0, int(0.8 * qual_b)
        elif keep_a:
            qa[ia], qb[ib] = int(0.8 * qual_a), 0
        else:
            qa[ia], qb[ib] = 0, int(0.8 * qual_b)


def _any_between(sorted_positions: list[int], start: int, end: int) -> bool:
    """Whether some position p of the sorted list has start <= p < end."""
    i = bisect_left(sorted_positions, start)
    return i < len(sorted_positions) and sorted_positions[i] < end


READ1 = 0x40
MATE_SUFFIXES = {"": None, "/1,/2": "/", ".1,.2": "."}
"""Mate-name conventions (docs/counting.md): label -> separator before the mate's digit."""


def mate_stem(qname: str, flag: int, mate_suffix: str) -> str:
    """The name a record pairs under: ``qname`` without its own mate's suffix (``/1`` on a
    first segment, ``/2`` on a last one, or ``.1``/``.2``), when the file uses one."""
    separator = MATE_SUFFIXES[mate_suffix]
    if separator is None or not flag & PAIRED:
        return qname
    which = flag & (READ1 | READ2)
    digit = {READ1: "1", READ2: "2"}.get(which)
    suffix = f"{separator}{digit}"
    if digit is None or not qname.endswith(suffix) or len(qname) == len(suffix):
        return qname
    return qname[: -len(suffix)]


def reference_count(
    bam_path,
    contig: str,
    window_start: int,
    window_end: int,
    exons,
    *,
    min_mapq: int = 20,
    min_baseq: int = 13,
    min_anchor: int = 8,
    exclude_flags: int = 0x704,
    dedup_overlaps: bool = True,
    mate_suffix: str = "",
) -> RefResult:
    """Count one gene window of ``bam_path`` exactly as docs/counting.md defines it.

    ``mate_suffix`` ("", "/1,/2" or ".1,.2"): the file's mate-name convention; mates pair under
    their names without it."""
    if not 0 <= window_start < window_end:
        raise ReferenceCountError(f"bad window [{window_start}, {window_end})")
    exons = [(int(s), int(e)) for s, e in exons]
    window = (window_start, window_end)

    # ---- record filter (file order) -------------------------------------------------------
    filters = dict.fromkeys(FILTER_KEYS, 0)
    used: list[_Record] = []
    last_pos_on_contig = -1
    for index, (seg, rname) in enumerate(_read_records(bam_path)):
        filters["records"] += 1
        if rname == contig:
            if seg.reference_start < last_pos_on_contig:
                raise ReferenceCountError("records are not sorted by position")
            last_pos_on_contig = seg.reference_start
        rec = None
        reflen = 0
        mapped = not (seg.flag & UNMAP or not seg.cigartuples or seg.reference_id < 0)
        if mapped:
            rec = _make_record(index, seg)
            rec.qname = mate_stem(rec.qname, rec.flag, mate_suffix)
            reflen = _walk_cigar(rec)
        reason = _filter_reason(seg, rec, reflen, contig, rname, window, min_mapq, exclude_flags)
        filters[reason] += 1
        if reason == "used":
            assert rec is not None
            used.append(rec)
            if rec.flag & SUPPLEMENTARY:
                filters["used_supplementary"] += 1

    # ---- mate overlap: pair records as htslib's pileup would (streaming definition) --------
    quals = {rec.index: list(rec.quals) for rec in used}
    skip_deleted: dict[int, set[int]] = {rec.index: set() for rec in used}
    skip_del_events: dict[int, set[tuple[int, int]]] = {rec.index: set() for rec in used}
    if dedup_overlaps:
        waiting: dict[str, _Record] = {}
        for rec in used:
            # a waiting record whose mate position has been passed can no longer be paired
            for name in [n for n, w in waiting.items() if rec.pos > w.pnext]:
                del waiting[name]
            if rec.qname in waiting:
                a = waiting.pop(rec.qname)
                b = rec
                if abs(a.tlen) >= 2 * len(a.seq or "") and a.pnext >= a.end:
                    continue  # htslib's "no overlap possible": a is never adjusted
                _adjust_overlap(a, b, quals[a.index], quals[b.index])
                if a.seq is not None and b.seq is not None:
                    skip_deleted[b.index] = set(a.deleted) & set(b.deleted)
                    skip_del_events[b.index] = set(a.deletion_events) & set(b.deletion_events)
            elif (
                rec.flag & PAIRED
                and rec.flag & PROPER
                and not rec.flag & MUNMAP
                and rec.mate_same_contig
                and rec.pnext >= rec.pos
            ):
                waiting[rec.qname] = rec

    # ---- per-position counts ----------------------------------------------------------------
    width = window_end - window_start
    counts = {key: [0] * width for key in BASE_COUNT_KEYS}
    insertions: dict[tuple[int, str], list[int]] = {}
    deletions: dict[tuple[int, int], list[int]] = {}
    for rec in used:
        if rec.seq is None:
            continue  # SEQ '*' adds nothing per position
        strand = "rev" if rec.reverse else "fwd"
        strand_index = 1 if rec.reverse else 0
        q = quals[rec.index]
        for ref_pos, qi in rec.aligned:
            if window_start <= ref_pos < window_end and q[qi] >= min_baseq:
                letter = rec.seq[qi].upper()
                if letter not in ("A", "C", "G", "T"):
                    letter = "N"
                counts[f"{letter}_{strand}"][ref_pos - window_start] += 1
        for ref_pos in rec.deleted:
            if window_start <= ref_pos < window_end and ref_pos not in skip_deleted[rec.index]:
                counts[f"del_{strand}"][ref_pos - window_start] += 1
        for anchor, length in rec.deletion_events:
            if (anchor, length) in skip_del_events[rec.index]:
                continue
            if window_start <= anchor < window_end or window_start <= anchor + 1 < window_end:
                deletions.setdefault((anchor, length), [0, 0])[strand_index] += 1
        for anchor, qi, bases in rec.insertion_events:
            if window_start <= anchor < window_end and q[qi] >= min_baseq:
                insertions.setdefault((anchor, bases), [0, 0])[strand_index] += 1

    # ---- fragments: primary used records joined by QNAME ------------------------------------
    fragments: list[list[_Record]] = []
    open_fragment: dict[str, int] = {}
    for rec in used:
        if rec.flag & (SECONDARY | SUPPLEMENTARY):
            continue
        if rec.qname in open_fragment:
            fragments[open_fragment.pop(rec.qname)].append(rec)
        elif (
            rec.flag & PAIRED
            and not rec.flag & MUNMAP
            and rec.mate_same_contig
            and rec.pnext >= rec.pos
        ):
            open_fragment[rec.qname] = len(fragments)
            fragments.append([rec])
        else:
            fragments.append([rec])

    exon_fragments = [0] * len(exons)
    introns = [(exons[i][1], exons[i + 1][0]) for i in range(len(exons) - 1)]
    intron_counts = [[0, 0, 0] for _ in introns]
    junctions: dict[tuple[int, int, int, int], list[int]] = {}  # key -> [fragments, max_anchor]
    strand_evidence = [0, 0]
    gene_fragments = 0
    for records in fragments:
        orientation = records[0].orientation
        xs = next((r.xs for r in records if r.xs != 0), 0)
        positions_per_record = [{p for p, _ in r.aligned} for r in records]
        all_positions = sorted(set().union(*positions_per_record))

        touches_exon = False
        for i, (start, end) in enumerate(exons):
            if _any_between(all_positions, start, end):
                exon_fragments[i] += 1
                touches_exon = True
        if touches_exon:
            gene_fragments += 1
            strand_evidence[orientation] += 1

        for k, (intron_start, intron_end) in enumerate(introns):
            if any(intron_start - 1 in ps and intron_start in ps for ps in positions_per_record):
                intron_counts[k][0] += 1
            if any(intron_end - 1 in ps and intron_end in ps for ps in positions_per_record):
                intron_counts[k][1] += 1
            if _any_between(all_positions, intron_start, intron_end):
                intron_counts[k][2] += 1

        best_anchor: dict[tuple[int, int], int] = {}
        for r in records:
            for start, end, anchor in r.junctions:
                if anchor >= min_anchor:
                    best_anchor[(start, end)] = max(best_anchor.get((start, end), 0), anchor)
        for (start, end), anchor in best_anchor.items():
            entry = junctions.setdefault((start, end, orientation, xs), [0, 0])
            entry[0] += 1
            entry[1] = max(entry[1], anchor)

    return RefResult(
        filters=filters,
        base_counts={key: np.asarray(values, dtype=np.uint32) for key, values in counts.items()},
        insertions=sorted((a, s, f, r) for (a, s), (f, r) in insertions.items()),
        deletions=sorted((a, n, f, r) for (a, n), (f, r) in deletions.items()),
        exon_fragments=exon_fragments,
        junctions=sorted((s, e, o, x, n, m) for (s, e, o, x), (n, m) in junctions.items()),
        intron_counts=[tuple(c) for c in intron_counts],
        strand_evidence=(strand_evidence[0], strand_evidence[1]),
        gene_fragments=gene_fragments,
        fragments=len(fragments),
    )


def depth(result: RefResult) -> np.ndarray:
    """depth[p] = A + C + G + T + N + del at p, both strands (docs/counting.md)."""
    return np.sum([result.base_counts[k] for k in BASE_COUNT_KEYS], axis=0, dtype=np.uint32)
