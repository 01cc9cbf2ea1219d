"""Per-sample calls from the count tables: expression, exon PSI, exon skipping, novel junctions
and intron retention. Input: the ``exons`` / ``junctions`` / ``introns`` tables of a scan (see
``tables.py``) and the GeneModel; output: polars frames with the documented, stable columns below.

Coordinates are 1-based inclusive throughout (the tables' convention). A junction row's
``start``/``end`` are its first and last intronic base, so its left exon ends at ``start - 1``
and its right exon starts at ``end + 1``. The donor is the 5' side *of the gene*: the left side on
the + strand, the right (higher) side on the − strand. Only junctions on the gene's strand are
used (the ``strand`` column; a table without one is taken as gene-strand): an antisense junction
is not splicing of this gene's transcript.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from cd22scan.target.annotation import GeneModel

__all__ = [
    "EXON_PSI_SCHEMA",
    "EXPRESSION_SCHEMA",
    "INTRON_RETENTION_SCHEMA",
    "NOVEL_JUNCTION_SCHEMA",
    "SKIPPING_EVENT_SCHEMA",
    "call_events",
    "exon_psi",
    "expression",
    "intron_retention",
    "novel_junctions",
    "skipping_events",
]

EXPRESSION_SCHEMA = {
    "gene": pl.Utf8,
    "exon": pl.Int64,
    "length": pl.Int64,
    "fragments": pl.Int64,
    "fragments_per_kb": pl.Float64,
    "relative_coverage": pl.Float64,
    "gene_fragments": pl.Int64,
    "library_size": pl.Int64,
    "cpm": pl.Float64,
}

EXON_PSI_SCHEMA = {
    "exon": pl.Int64,
    "start": pl.Int64,
    "end": pl.Int64,
    "upstream_reads": pl.Int64,
    "downstream_reads": pl.Int64,
    "inclusion_reads": pl.Int64,
    "skipping_reads": pl.Int64,
    "psi": pl.Float64,
    "psi_upstream": pl.Float64,
    "psi_downstream": pl.Float64,
}

SKIPPING_EVENT_SCHEMA = {
    "event": pl.Utf8,
    "known_event": pl.Utf8,
    "donor_exon": pl.Int64,
    "acceptor_exon": pl.Int64,
    "skipped_exons": pl.Utf8,
    "start": pl.Int64,
    "end": pl.Int64,
    "reads": pl.Int64,
    "canonical_reads": pl.Int64,
    "donor_share": pl.Float64,
    "frame": pl.Utf8,
    "transcripts": pl.Utf8,
}

NOVEL_JUNCTION_SCHEMA = {
    "start": pl.Int64,
    "end": pl.Int64,
    "reads": pl.Int64,
    "type": pl.Utf8,
    "donor_pos": pl.Int64,
    "acceptor_pos": pl.Int64,
    "donor_exon": pl.Int64,
    "acceptor_exon": pl.Int64,
    "in_gene": pl.Boolean,
    "transcripts": pl.Utf8,
}

INTRON_RETENTION_SCHEMA = {
    "intron": pl.Int64,
    "start": pl.Int64,
    "end": pl.Int64,
    "length": pl.Int64,
    "left_boundary": pl.Int64,
    "right_boundary": pl.Int64,
    "inside": pl.Int64,
    "retained_reads": pl.Float64,
    "spliced_reads": pl.Int64,
    "ir_ratio": pl.Float64,
    # added later (new columns go at the end)
    "body_depth": pl.Float64,
    "retained_from": pl.Utf8,
    "spliced_any": pl.Int64,
}

# Intron body for retention (IRFinder-like): the intron without BODY_FLANK nt at either end, so
# that an exon extended by a cryptic donor or acceptor (typically tens of nt) is not retention;
# measured when at least MIN_BODY nt remain.
BODY_FLANK = 50
MIN_BODY = 30


# --- shared helpers ------------------------------------------------------------------------------


def _gene_strand_junctions(junctions: pl.DataFrame, model: GeneModel) -> dict[tuple[int, int], int]:
    """{(start, end): reads} of the junctions on the gene's strand (strand rows summed)."""
    frame = junctions
    if "strand" in frame.columns:
        frame = frame.filter(pl.col("strand").is_null() | (pl.col("strand") == model.strand))
    out: dict[tuple[int, int], int] = {}
    for start, end, reads in frame.select("start", "end", "reads").iter_rows():
        key = (int(start), int(end))
        out[key] = out.get(key, 0) + int(reads or 0)
    return out


def _sides(model: GeneModel, start: int, end: int) -> tuple[int, int, int | None, int | None]:
    """(donor_pos, acceptor_pos, donor_exon, acceptor_exon) of a junction on the gene's strand.

    The positions are the exonic bases next to the intron (1-based); an exon number is given only
    when that base is the annotated boundary of the matching kind (an exon end on the left side,
    an exon start on the right side).
    """
    by_end = {e.end: e.number for e in model.exons}
    by_start = {e.start: e.number for e in model.exons}
    left_pos, right_pos = start - 1, end + 1
    left_exon, right_exon = by_end.get(left_pos), by_start.get(right_pos)
    if model.strand == "+":
        return left_pos, right_pos, left_exon, right_exon
    return right_pos, left_pos, right_exon, left_exon


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _exon_label(first: int, last: int) -> str:
    return str(first) if first == last else f"{first}-{last}"


# --- expression ----------------------------------------------------------------------------------


def expression(exons: pl.DataFrame, summary: Mapping[str, Any], model: GeneModel) -> pl.DataFrame:
    """Gene and per-exon expression, one row per exon (gene-level columns repeated).

    Columns:
      gene, exon (transcript order), length (nt), fragments (fragments with an aligned base in
      the exon), fragments_per_kb = fragments / length × 1000,
      relative_coverage = fragments_per_kb / median over the gene's exons of fragments_per_kb
      (≈ 1 for an evenly covered exon, ≈ 0 for a lost exon; null when that median is 0),
      gene_fragments = summary["fragments_on_gene"] (fragments with an aligned base in any exon),
      library_size = summary["library_size"] (mapped records in the file),
      cpm = gene_fragments / library_size × 1e6 (null without a library size).
    """
    gene_fragments = summary.get("fragments_on_gene")
    library_size = summary.get("library_size")
    cpm = None
    if gene_fragments is not None and library_size:
        cpm = gene_fragments / library_size * 1e6
    rows = []
    for exon, length, fragments in (
        exons.sort("exon").select("exon", "length", "fragments").iter_rows()
    ):
        rows.append(
            {
                "gene": model.gene,
                "exon": exon,
                "length": length,
                "fragments": fragments,
                "fragments_per_kb": fragments / length * 1000 if length else None,
            }
        )
    per_kb = sorted(r["fragments_per_kb"] for r in rows if r["fragments_per_kb"] is not None)
    median = _median(per_kb)
    for row in rows:
        value = row["fragments_per_kb"]
        row["relative_coverage"] = value / median if median and value is not None else None
        row["gene_fragments"] = gene_fragments
        row["library_size"] = library_size
        row["cpm"] = cpm
    return pl.DataFrame(rows, schema=EXPRESSION_SCHEMA, orient="row")


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


# --- exon inclusion ------------------------------------------------------------------------------


def exon_psi(junctions: pl.DataFrame, model: GeneModel) -> pl.DataFrame:
    """PSI of every internal exon (not the first or last) from junction counts, rMATS-JC style.

    Columns:
      exon, start, end (the exon, 1-based inclusive);
      upstream_reads / downstream_reads: reads of every junction that ends at the exon's
        acceptor / starts at its donor (annotated or not, any partner);
      inclusion_reads (IJC) = upstream_reads + downstream_reads;
      skipping_reads (SJC): reads of every junction inside the transcript span whose intron holds
        the whole exon (donor upstream, acceptor downstream), e.g. e1→e3 for exon 2;
      psi = (IJC / 2) / (IJC / 2 + SJC), null when IJC + SJC = 0.
    Effective lengths: each junction is given the same effective length (the read start positions
    that cover it with the minimum anchor); the inclusion isoform has two junctions and the
    skipping isoform one, so IJC is halved (rMATS JC with equal junction lengths).
    psi_upstream = upstream / (upstream + SJC) and psi_downstream = downstream / (downstream + SJC)
    are the one-sided estimates. psi_upstream compares the e(k-1)→ek and e(k-1)→e(k+1) junctions,
    which sit at the same transcript position (end of the upstream exon) in their isoforms, so it
    is free of the positional coverage bias that inflates ``psi`` when the upstream exon is
    shorter than the fragment (the 5' edge sees fewer fragments than the interior).
    """
    counts = _gene_strand_junctions(junctions, model)
    lo, hi = model.span
    rows = []
    for exon in model.exons[1:-1]:
        left = sum(r for (_, end), r in counts.items() if end == exon.start - 1)
        right = sum(r for (start, _), r in counts.items() if start == exon.end + 1)
        skipping = sum(
            r
            for (start, end), r in counts.items()
            if start < exon.start and end > exon.end and start - 1 >= lo and end + 1 <= hi
        )
        upstream, downstream = (left, right) if model.strand == "+" else (right, left)
        inclusion = upstream + downstream
        rows.append(
            {
                "exon": exon.number,
                "start": exon.start,
                "end": exon.end,
                "upstream_reads": upstream,
                "downstream_reads": downstream,
                "inclusion_reads": inclusion,
                "skipping_reads": skipping,
                "psi": _ratio(inclusion / 2, inclusion / 2 + skipping),
                "psi_upstream": _ratio(upstream, upstream + skipping),
                "psi_downstream": _ratio(downstream, downstream + skipping),
            }
        )
    return pl.DataFrame(rows, schema=EXON_PSI_SCHEMA, orient="row")


def skipping_events(junctions: pl.DataFrame, model: GeneModel) -> pl.DataFrame:
    """Exon-skipping junctions: annotated donor and annotated acceptor, ≥ 1 exon between them.

    Columns:
      event: ``Δex2``, ``Δex5-6`` (the skipped exons, transcript order);
      known_event: name of the model's built-in KnownEvent with the same skipped exons, or null;
      donor_exon, acceptor_exon: exon numbers; skipped_exons: "2" or "5-6";
      start, end: the junction (first and last intronic base);
      reads: fragments supporting it;
      canonical_reads: reads of the annotated junction from the same donor (donor → donor + 1);
      donor_share = reads / (reads + canonical_reads): the share of the donor exon's splicing
        that skips (null when both are 0);
      frame: ``GeneModel.skip_frame`` of the skipped exons (in-frame, frameshift, start-lost,
        stop-lost, non-coding);
      transcripts: the gene's transcripts that have this junction as an intron
        (``GeneModel.junction_transcripts``, comma-separated), null when none does: a skip that
        another annotated isoform makes is an isoform, not aberrant splicing.
    Rows with 0 reads are not listed; sorted by donor then acceptor exon.
    """
    counts = _gene_strand_junctions(junctions, model)
    known = {
        tuple(sorted(e.skipped_exons)): e.name
        for e in model.known_events
        if e.kind == "exon_skipping"
    }
    canonical: dict[int, int] = {}
    skips = []
    for (start, end), reads in counts.items():
        _, _, donor, acceptor = _sides(model, start, end)
        if donor is None or acceptor is None:
            continue
        if acceptor == donor + 1:
            canonical[donor] = canonical.get(donor, 0) + reads
        elif acceptor > donor + 1 and reads > 0:
            skips.append((donor, acceptor, start, end, reads))
    rows = []
    for donor, acceptor, start, end, reads in sorted(skips):
        skipped = tuple(range(donor + 1, acceptor))
        label = _exon_label(skipped[0], skipped[-1])
        canon = canonical.get(donor, 0)
        rows.append(
            {
                "event": f"Δex{label}",
                "known_event": known.get(skipped),
                "donor_exon": donor,
                "acceptor_exon": acceptor,
                "skipped_exons": label,
                "start": start,
                "end": end,
                "reads": reads,
                "canonical_reads": canon,
                "donor_share": _ratio(reads, reads + canon),
                "frame": model.skip_frame(skipped),
                "transcripts": ",".join(model.junction_transcripts(start, end)) or None,
            }
        )
    return pl.DataFrame(rows, schema=SKIPPING_EVENT_SCHEMA, orient="row")


def novel_junctions(junctions: pl.DataFrame, model: GeneModel) -> pl.DataFrame:
    """Junctions with a donor or an acceptor that is not an annotated exon boundary.

    Columns:
      start, end (first and last intronic base), reads;
      type: ``novel_donor`` (acceptor annotated), ``novel_acceptor`` (donor annotated) or
        ``novel_both``;
      donor_pos / acceptor_pos: the exonic base next to the intron on the donor / acceptor side
        (the gene's strand decides: on − the donor is the higher coordinate, ``end + 1``);
      donor_exon / acceptor_exon: the exon whose boundary that is, or null when novel;
      in_gene: both sides inside the transcript span (false for junctions in the padding);
      transcripts: the gene's other transcripts that have this junction as an intron
        (comma-separated), null when none does. Novel for the chosen transcript's exon numbers,
        but an annotated isoform when not null.
    Rows with 0 reads are not listed; sorted by start, end.
    """
    counts = _gene_strand_junctions(junctions, model)
    lo, hi = model.span
    rows = []
    for (start, end), reads in sorted(counts.items()):
        if reads <= 0:
            continue
        donor_pos, acceptor_pos, donor, acceptor = _sides(model, start, end)
        if donor is not None and acceptor is not None:
            continue
        if donor is None and acceptor is None:
            kind = "novel_both"
        elif donor is None:
            kind = "novel_donor"
        else:
            kind = "novel_acceptor"
        rows.append(
            {
                "start": start,
                "end": end,
                "reads": reads,
                "type": kind,
                "donor_pos": donor_pos,
                "acceptor_pos": acceptor_pos,
                "donor_exon": donor,
                "acceptor_exon": acceptor,
                "in_gene": lo <= start - 1 and end + 1 <= hi,
                "transcripts": ",".join(model.junction_transcripts(start, end)) or None,
            }
        )
    return pl.DataFrame(rows, schema=NOVEL_JUNCTION_SCHEMA, orient="row")


def _body_depths(bases: pl.DataFrame | None, introns: pl.DataFrame) -> dict[int, float]:
    """{intron: median per-base depth over its body} (positions absent from ``bases`` count 0);
    introns whose body is shorter than MIN_BODY are left out."""
    if bases is None or bases.height == 0:
        return {}
    pos = bases["pos"].to_numpy()
    depth = bases["depth"].to_numpy()
    lo = int(pos.min())
    profile = np.zeros(int(pos.max()) - lo + 1, dtype=np.float64)
    profile[pos - lo] = depth
    out = {}
    for number, start, end in introns.select("intron", "start", "end").iter_rows():
        first, last = start + BODY_FLANK, end - BODY_FLANK
        if last - first + 1 < MIN_BODY:
            continue
        # positions outside the scanned window have no reads
        window = np.zeros(last - first + 1, dtype=np.float64)
        a, b = max(first, lo), min(last, lo + len(profile) - 1)
        if a <= b:
            window[a - first : b - first + 1] = profile[a - lo : b - lo + 1]
        out[int(number)] = float(np.median(window))
    return out


def intron_retention(
    introns: pl.DataFrame,
    junctions: pl.DataFrame,
    model: GeneModel,
    bases: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Intron-retention ratio per annotated intron (IRFinder-like).

    Columns:
      intron (k lies between exons k and k+1), start, end, length;
      left_boundary / right_boundary: fragments with aligned bases on both sides of the genomic
        left / right exon–intron boundary (reads running from exon into intron);
      inside: fragments with any aligned base in the intron (reported, not used in the ratio:
        it also counts pre-mRNA and intronic noise, and grows with intron length);
      body_depth: median per-base depth (the ``bases`` table) over the intron body, the intron
        without BODY_FLANK nt at each end; null without ``bases`` or when fewer than MIN_BODY nt
        remain;
      retained_reads = body_depth where measured ("intron body" in ``retained_from``), else
        (left_boundary + right_boundary) / 2 ("boundaries"). The body, not the boundaries: an
        exon extended by a cryptic donor 30-40 nt into the intron puts reads across one
        boundary and none in the body, and is a novel junction (``novel_junctions``), not
        retention. A junction read and a base's depth have nearly the same chance per molecule
        (a read covers a base from ~read-length start positions, a junction from read-length
        minus twice the anchor), so the two stay comparable;
      spliced_reads = reads of the annotated junction of this intron (exact start and end);
      spliced_any = the larger of the reads of all junctions that start where the intron starts
        and of all that end where it ends (any partner), as IRFinder: molecules spliced across
        either end, so a cryptic donor or an exon skip that shares one end of the intron takes
        nothing from the spliced side;
      ir_ratio = retained_reads / (retained_reads + spliced_any), null when both are 0.
    """
    counts = _gene_strand_junctions(junctions, model)
    body = _body_depths(bases, introns)
    from_start: dict[int, int] = {}
    to_end: dict[int, int] = {}
    for (start, end), reads in counts.items():
        from_start[start] = from_start.get(start, 0) + reads
        to_end[end] = to_end.get(end, 0) + reads
    rows = []
    for number, start, end, left, right, inside in (
        introns.sort("intron")
        .select("intron", "start", "end", "left_boundary", "right_boundary", "inside")
        .iter_rows()
    ):
        depth = body.get(int(number))
        retained = depth if depth is not None else (left + right) / 2
        spliced = counts.get((start, end), 0)
        spliced_any = max(from_start.get(start, 0), to_end.get(end, 0))
        rows.append(
            {
                "intron": number,
                "start": start,
                "end": end,
                "length": end - start + 1,
                "left_boundary": left,
                "right_boundary": right,
                "inside": inside,
                "retained_reads": retained,
                "spliced_reads": spliced,
                "ir_ratio": _ratio(retained, retained + spliced_any),
                "body_depth": depth,
                "retained_from": "intron body" if depth is not None else "boundaries",
                "spliced_any": spliced_any,
            }
        )
    return pl.DataFrame(rows, schema=INTRON_RETENTION_SCHEMA, orient="row")


def call_events(result: Any) -> dict[str, pl.DataFrame]:
    """All per-sample calls of a ScanResult, each frame with a leading ``sample`` column."""
    model = result.model
    frames = {
        "expression": expression(result.exons, result.summary, model),
        "exon_psi": exon_psi(result.junctions, model),
        "skipping_events": skipping_events(result.junctions, model),
        "novel_junctions": novel_junctions(result.junctions, model),
        "intron_retention": intron_retention(result.introns, result.junctions, model, result.bases),
    }
    return {
        name: frame.select(pl.lit(result.sample, dtype=pl.Utf8).alias("sample"), pl.all())
        for name, frame in frames.items()
    }
