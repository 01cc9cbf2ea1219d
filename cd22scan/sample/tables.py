"""Per-sample tables from the core's counts (polars), in 1-based inclusive coordinates.

This is the one place where the core's 0-based half-open positions become the 1-based
inclusive positions of every output (GTF/VCF convention).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np
import polars as pl

from cd22scan import _core
from cd22scan.sample.strandedness import fragment_strand
from cd22scan.target.annotation import GeneModel

BASES = ("A", "C", "G", "T", "N")
PLUS_MOTIFS = {("GT", "AG"), ("GC", "AG"), ("AT", "AC")}
MINUS_MOTIFS = {("CT", "AC"), ("CT", "GC"), ("GT", "AT")}

EXON_SCHEMA: dict[str, pl.DataType] = {
    "sample": pl.Utf8,
    "gene": pl.Utf8,
    "transcript": pl.Utf8,
    "exon": pl.Int64,
    "contig": pl.Utf8,
    "start": pl.Int64,
    "end": pl.Int64,
    "length": pl.Int64,
    "fragments": pl.Int64,
    "mean_depth": pl.Float64,
}

JUNCTION_SCHEMA: dict[str, pl.DataType] = {
    "sample": pl.Utf8,
    "contig": pl.Utf8,
    "start": pl.Int64,
    "end": pl.Int64,
    "strand": pl.Utf8,
    "reads": pl.Int64,
    "max_anchor": pl.Int64,
    "annotated": pl.Boolean,
    "donor_exon": pl.Int64,
    "acceptor_exon": pl.Int64,
    "skipped_exons": pl.Utf8,
    "strand_source": pl.Utf8,
    # added later (new columns go at the end: the column order is an interface)
    "transcripts": pl.Utf8,
}

INTRON_SCHEMA: dict[str, pl.DataType] = {
    "sample": pl.Utf8,
    "gene": pl.Utf8,
    "transcript": pl.Utf8,
    "intron": pl.Int64,
    "contig": pl.Utf8,
    "start": pl.Int64,
    "end": pl.Int64,
    "length": pl.Int64,
    "left_boundary": pl.Int64,
    "right_boundary": pl.Int64,
    "inside": pl.Int64,
}

INDEL_SCHEMA: dict[str, pl.DataType] = {
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

RefFetch = Callable[[int, int], str]
"""Returns the reference bases of [start0, end0) upper-cased ('' if unknown)."""


def depth_array(result: _core.CountResult) -> np.ndarray:
    counts = result.base_counts
    total = np.zeros_like(counts["A_fwd"], dtype=np.int64)
    for key in _core.BASE_COUNT_KEYS:
        total += counts[key]
    return total


def _genomic_to_number(model: GeneModel) -> list[int]:
    """Exon numbers (transcript order) in the genomic order the core counted them."""
    return [exon.number for exon in model.genomic_exons()]


def exon_table(
    model: GeneModel, result: _core.CountResult, sample: str, window_start0: int
) -> pl.DataFrame:
    depth = depth_array(result)
    rows = []
    numbers = _genomic_to_number(model)
    for exon, fragments, number in zip(
        model.genomic_exons(), result.exon_fragments, numbers, strict=True
    ):
        lo = exon.start - 1 - window_start0
        hi = exon.end - window_start0
        mean_depth = float(depth[lo:hi].mean()) if hi > lo else 0.0
        rows.append(
            {
                "sample": sample,
                "gene": model.gene,
                "transcript": model.transcript,
                "exon": number,
                "contig": model.contig,
                "start": exon.start,
                "end": exon.end,
                "length": exon.end - exon.start + 1,
                "fragments": fragments,
                "mean_depth": round(mean_depth, 4),
            }
        )
    return pl.DataFrame(rows, schema=EXON_SCHEMA, orient="row").sort("exon")


def _motif_strand(fetch: RefFetch | None, start0: int, end0: int) -> str | None:
    if fetch is None:
        return None
    donor = fetch(start0, start0 + 2)
    acceptor = fetch(end0 - 2, end0)
    if len(donor) != 2 or len(acceptor) != 2:
        return None
    if (donor, acceptor) in PLUS_MOTIFS:
        return "+"
    if (donor, acceptor) in MINUS_MOTIFS:
        return "-"
    return None


def _format_exon_numbers(numbers: list[int]) -> str:
    if not numbers:
        return ""
    numbers = sorted(numbers)
    if numbers == list(range(numbers[0], numbers[-1] + 1)) and len(numbers) > 1:
        return f"{numbers[0]}-{numbers[-1]}"
    return ",".join(str(n) for n in numbers)


def junction_table(
    model: GeneModel,
    result: _core.CountResult,
    sample: str,
    library_mode: str,
    fetch: RefFetch | None,
) -> pl.DataFrame:
    """One row per (intron, strand) with fragment counts; strand from library, XS, motif or gene.

    ``strand_source`` says which: ``library`` (stranded protocol), ``XS`` (aligner tag),
    ``motif`` (splice-site dinucleotides in the reference) or ``gene`` (the target gene's strand,
    the last resort for unstranded reads without XS and without a reference).
    """
    exons = model.genomic_exons()
    by_start = {e.start: e.number for e in exons}
    by_end = {e.end: e.number for e in exons}
    agg: dict[tuple[int, int, str, str], list[int]] = defaultdict(lambda: [0, 0])
    motif_cache: dict[tuple[int, int], str | None] = {}
    for start0, end0, orientation, xs, fragments, max_anchor in result.junctions:
        strand = fragment_strand(library_mode, orientation)
        source = "library"
        if strand is None and xs:
            strand, source = ("+" if xs == 1 else "-"), "XS"
        if strand is None:
            key = (start0, end0)
            if key not in motif_cache:
                motif_cache[key] = _motif_strand(fetch, start0, end0)
            strand, source = motif_cache[key], "motif"
        if strand is None:
            strand, source = model.strand, "gene"
        slot = agg[(start0, end0, strand, source)]
        slot[0] += fragments
        slot[1] = max(slot[1], max_anchor)
    # Merge rows of one intron+strand that got their strand from different sources.
    merged: dict[tuple[int, int, str], list] = {}
    for (start0, end0, strand, source), (frags, anchor) in agg.items():
        key = (start0, end0, strand)
        if key in merged:
            merged[key][0] += frags
            merged[key][1] = max(merged[key][1], anchor)
            merged[key][2].add(source)
        else:
            merged[key] = [frags, anchor, {source}]
    rows = []
    for (start0, end0, strand), (frags, anchor, sources) in sorted(merged.items()):
        start, end = start0 + 1, end0  # first and last intron base, 1-based
        left_exon = by_end.get(start - 1)
        right_exon = by_start.get(end + 1)
        if model.strand == "+":
            donor, acceptor = left_exon, right_exon
        else:
            donor, acceptor = right_exon, left_exon
        skipped = [e.number for e in exons if e.start >= start and e.end <= end]
        # annotated: an intron of any transcript of the gene (GeneModel.junction_transcripts)
        transcripts = model.junction_transcripts(start, end)
        rows.append(
            {
                "sample": sample,
                "contig": model.contig,
                "start": start,
                "end": end,
                "strand": strand,
                "reads": frags,
                "max_anchor": anchor,
                "annotated": bool(transcripts),
                "transcripts": ",".join(transcripts) or None,
                "donor_exon": donor,
                "acceptor_exon": acceptor,
                "skipped_exons": _format_exon_numbers(skipped) or None,
                "strand_source": ",".join(sorted(sources)),
            }
        )
    return pl.DataFrame(rows, schema=JUNCTION_SCHEMA, orient="row")


def intron_table(model: GeneModel, result: _core.CountResult, sample: str) -> pl.DataFrame:
    rows = []
    introns = sorted(model.introns(), key=lambda i: i.start)
    for intron, (left, right, inside) in zip(introns, result.intron_counts, strict=True):
        rows.append(
            {
                "sample": sample,
                "gene": model.gene,
                "transcript": model.transcript,
                "intron": intron.number,
                "contig": model.contig,
                "start": intron.start,
                "end": intron.end,
                "length": intron.end - intron.start + 1,
                "left_boundary": left,
                "right_boundary": right,
                "inside": inside,
            }
        )
    return pl.DataFrame(rows, schema=INTRON_SCHEMA, orient="row").sort("intron")


def bases_table(
    result: _core.CountResult, contig: str, window_start0: int, reference: str
) -> pl.DataFrame:
    """Every window position: base, deletion and insertion counts, total and by strand."""
    counts = result.base_counts
    n = len(counts["A_fwd"])
    pos = np.arange(window_start0 + 1, window_start0 + 1 + n, dtype=np.int64)
    ins_fwd = np.zeros(n, dtype=np.int64)
    ins_rev = np.zeros(n, dtype=np.int64)
    for anchor0, _allele, fwd, rev in result.insertions:
        i = anchor0 - window_start0
        if 0 <= i < n:
            ins_fwd[i] += fwd
            ins_rev[i] += rev
    ref = reference if len(reference) == n else "N" * n
    columns: dict[str, object] = {
        "contig": pl.Series("contig", [contig] * n, dtype=pl.Utf8),
        "pos": pos,
        "ref": pl.Series("ref", list(ref), dtype=pl.Utf8),
    }
    for base in (*BASES, "del"):
        columns[base] = counts[f"{base}_fwd"].astype(np.int64) + counts[f"{base}_rev"]
    columns["ins"] = ins_fwd + ins_rev
    columns["depth"] = depth_array(result)
    for base in (*BASES, "del"):
        columns[f"{base}_fwd"] = counts[f"{base}_fwd"].astype(np.int64)
        columns[f"{base}_rev"] = counts[f"{base}_rev"].astype(np.int64)
    columns["ins_fwd"] = ins_fwd
    columns["ins_rev"] = ins_rev
    return pl.DataFrame(columns)


def indel_table(
    result: _core.CountResult, contig: str, sample: str, fetch: RefFetch | None
) -> pl.DataFrame:
    """Insertion and deletion alleles. ``pos`` is the 1-based anchor base before the event (VCF)."""
    rows = []
    for anchor0, allele, fwd, rev in result.insertions:
        rows.append(
            {
                "sample": sample,
                "contig": contig,
                "pos": anchor0 + 1,
                "kind": "ins",
                "length": len(allele),
                "sequence": allele,
                "reads": fwd + rev,
                "forward": fwd,
                "reverse": rev,
            }
        )
    for anchor0, length, fwd, rev in result.deletions:
        seq = fetch(anchor0 + 1, anchor0 + 1 + length) if fetch is not None else ""
        rows.append(
            {
                "sample": sample,
                "contig": contig,
                "pos": anchor0 + 1,
                "kind": "del",
                "length": length,
                "sequence": seq,
                "reads": fwd + rev,
                "forward": fwd,
                "reverse": rev,
            }
        )
    return pl.DataFrame(rows, schema=INDEL_SCHEMA, orient="row").sort(
        ["pos", "kind", "length", "sequence"]
    )
