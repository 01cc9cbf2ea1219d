"""Standard-format outputs that other tools read: VCF (bgzipped + tabix), junctions as BED12
(regtools / TopHat ``junctions.bed`` layout) and the summary JSON.

Tables here are 1-based inclusive (GTF/VCF convention, see ``tables``); BED is 0-based half-open,
and ``_junction_bed_row`` is the one place that converts. Every file is written under a temporary
name and renamed when complete (``outputs.atomic_path``), the VCF's index before the VCF.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import pysam

from cd22scan.calling.variants import FILTERS
from cd22scan.errors import OutputError
from cd22scan.outputs.files import atomic_path, write_json

__all__ = [
    "junction_label",
    "junction_names",
    "write_junctions_bed12",
    "write_summary_json",
    "write_vcf",
]

InfoField = tuple[str, str, str, str, str]
"""An INFO field: (ID, Number, Type, Description, variant-frame column)."""

INFO_FIELDS: tuple[InfoField, ...] = (
    ("GENE", "1", "String", "Gene symbol", "gene"),
    ("TRANSCRIPT", "1", "String", "Transcript the consequence is given on", "transcript"),
    ("KIND", "1", "String", "Allele kind (snv, insertion, deletion)", "kind"),
    ("CONSEQUENCE", "1", "String", "Most severe Sequence Ontology consequence", "consequence"),
    ("HGVSC", "1", "String", "HGVS coding (c.) name on TRANSCRIPT", "hgvs_c"),
    ("HGVSP", "1", "String", "HGVS protein (p.) name on TRANSCRIPT", "hgvs_p"),
    ("EXON", "1", "Integer", "Exon number on TRANSCRIPT (transcript order)", "exon"),
    ("INTRON", "1", "Integer", "Intron number on TRANSCRIPT (transcript order)", "intron"),
    # SBP, not SB: VCF reserves INFO/SB for four strand counts (Number=4, Integer).
    ("SBP", "1", "Float", "Strand-bias p-value of the alt reads (Fisher)", "strand_bias_p"),
)

FORMAT_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("GT", "1", "String", "Genotype (not called: ./.)"),
    ("DP", "1", "Integer", "Read depth at the site (A+C+G+T+N+deletions)"),
    (
        "AD",
        "R",
        "Integer",
        "Allelic depths for the REF and ALT alleles; REF is the frame's ref_reads when given, "
        "else depth minus ALT reads (reads of other alleles count as REF)",
    ),
    ("AF", "A", "Float", "Variant allele fraction: ALT reads / DP"),
    (
        "ADF",
        "R",
        "Integer",
        "Forward-strand reads of REF (ref_forward when given, else missing) and ALT",
    ),
    (
        "ADR",
        "R",
        "Integer",
        "Reverse-strand reads of REF (ref_reverse when given, else missing) and ALT",
    ),
)

# The pair VCF's per-sample strand bias (a scan VCF has one sample and keeps it in INFO/SBP).
SBP_FORMAT = ("SBP", "1", "Float", "Strand-bias p-value of this sample's alt reads (Fisher)")

# Characters that cannot appear raw in a VCF INFO value (VCF 4.3 percent-encoding).
_INFO_ESCAPES = {"%": "%25", ";": "%3B", "=": "%3D", ",": "%2C", " ": "%20", "\t": "%09"}


def _info_text(value: str) -> str:
    return "".join(_INFO_ESCAPES.get(ch, ch) for ch in value)


def _meta_text(value: Any) -> str:
    return " ".join(str(value).split())


def _vcf_header(
    contigs: dict[str, int | None],
    samples: Sequence[str],
    reference: str | None,
    source_info: dict[str, Any],
    info_fields: Sequence[InfoField],
    format_fields: Sequence[tuple[str, str, str, str]] = FORMAT_FIELDS,
) -> pysam.VariantHeader:
    header = pysam.VariantHeader()
    header.add_meta("source", "cd22scan")
    if reference:
        header.add_meta("reference", f"file://{Path(reference).resolve()}")
    for key, value in source_info.items():
        if value is None:
            continue
        safe_key = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(key))
        header.add_meta(f"cd22scan_{safe_key}", _meta_text(value))
    for name, length in contigs.items():
        header.contigs.add(name, length=None if length is None else int(length))
    for field_id, description in FILTERS.items():
        header.filters.add(field_id, None, None, description)
    for field_id, number, kind, description, _ in info_fields:
        header.info.add(field_id, number, kind, description)
    for field_id, number, kind, description in format_fields:
        header.formats.add(field_id, number, kind, description)
    for sample in samples:
        header.add_sample(sample)
    return header


def _sorted_rows(variants: pl.DataFrame, contigs: dict[str, int | None]) -> list[dict[str, Any]]:
    if variants.height == 0:
        return []
    unknown = sorted(set(variants["contig"].to_list()) - set(contigs))
    if unknown:
        raise OutputError(
            f"VCF: variant contig(s) {', '.join(unknown)} not among the header contigs "
            f"({', '.join(contigs) or 'none'})"
        )
    order = {name: i for i, name in enumerate(contigs)}
    rows = variants.to_dicts()
    rows.sort(key=lambda r: (order[r["contig"]], int(r["pos"]), r["ref"], r["alt"]))
    return rows


def _fill_filter(record: Any, row: dict[str, Any]) -> None:
    """FILTER from the frame's ``filter`` column (``PASS`` or reasons joined by ``;``, see
    ``variants.FILTERS``); missing (``.``) when the frame has none."""
    value = row.get("filter")
    if not value:
        return
    for reason in str(value).split(";"):
        record.filter.add(reason)


def _fill_info(record: Any, row: dict[str, Any], info_fields: Sequence[InfoField]) -> None:
    for field_id, _, kind, _, column in info_fields:
        value = row.get(column)
        if value is None or (kind == "Float" and value != value):  # null or NaN
            continue
        if kind == "Flag":
            if value:
                record.info[field_id] = True
            continue
        if kind == "String":
            if str(value) == "":  # an empty String would be written as a bare flag (KEY;)
                continue
            value = _info_text(str(value))
        record.info[field_id] = value


def _fill_call(record: Any, row: dict[str, Any] | None, sample: str, sbp: bool = False) -> None:
    call = record.samples[sample]
    call["GT"] = (None, None)
    if row is None:  # the sample has no row for this allele: all values missing
        return
    depth = row.get("depth")
    alt_reads = row.get("alt_reads")
    if depth is not None:
        call["DP"] = int(depth)
    ref_reads = row.get("ref_reads")
    if ref_reads is None and depth is not None and alt_reads is not None:
        ref_reads = max(int(depth) - int(alt_reads), 0)
    call["AD"] = (
        None if ref_reads is None else int(ref_reads),
        None if alt_reads is None else int(alt_reads),
    )
    if row.get("vaf") is not None:
        call["AF"] = float(row["vaf"])
    for field_id, ref_column, alt_column in (
        ("ADF", "ref_forward", "alt_forward"),
        ("ADR", "ref_reverse", "alt_reverse"),
    ):
        ref_n, alt_n = row.get(ref_column), row.get(alt_column)
        if alt_n is not None:
            call[field_id] = (None if ref_n is None else int(ref_n), int(alt_n))
    p_value = row.get("strand_bias_p")
    if sbp and p_value is not None and p_value == p_value:  # not null, not NaN
        call["SBP"] = float(p_value)


def _allele_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["contig"], int(row["pos"]), str(row["ref"]), str(row["alt"]))


def write_vcf(
    variants: pl.DataFrame,
    path: str | os.PathLike[str],
    *,
    contigs: dict[str, int | None],
    sample: str | Sequence[str],
    reference: str | None = None,
    source_info: dict[str, Any] | None = None,
    extra_info: Sequence[InfoField] = (),
    sample_sbp: bool = False,
) -> Path:
    """Write ``variants`` (``variants.call_variants`` frame) as a sorted, bgzipped VCFv4.2 with a
    tabix index beside it (``PATH.tbi``). ``path`` should end in ``.vcf.gz``.

    One record per allele; GT is ``./.`` (cd22scan counts alleles, it does not genotype).
    ``sample`` is one name (every row is that sample's) or several names: then the frame is in
    long form, rows are matched to sample columns by their ``sample`` column, the rows of one
    allele (contig, pos, ref, alt) make one record whose INFO comes from its first row, and a
    sample without a row gets missing values. ``contigs`` ({name: length or None}, header order
    = sort order) must hold every variant contig; ``source_info`` items become
    ``##cd22scan_KEY=VALUE`` header lines; ``extra_info`` adds INFO fields (ID, Number, Type,
    Description, column) after ``INFO_FIELDS`` (Type Flag: set when the column is true).
    ``sample_sbp`` moves the strand-bias p-value (column ``strand_bias_p``) from INFO/SBP to
    FORMAT/SBP, one per sample (the pair VCF). A null or empty value leaves its key out. An empty
    frame gives a valid header-only VCF.
    """
    final = Path(path)
    samples = [sample] if isinstance(sample, str) else list(sample)
    if not samples or len(set(samples)) != len(samples):
        raise ValueError(f"VCF samples must be distinct and at least one; got {samples}")
    info_fields = (*INFO_FIELDS, *extra_info)
    format_fields = FORMAT_FIELDS
    if sample_sbp:
        info_fields = tuple(f for f in info_fields if f[0] != "SBP")
        format_fields = (*FORMAT_FIELDS, SBP_FORMAT)
    rows = _sorted_rows(variants, contigs)
    header = _vcf_header(contigs, samples, reference, source_info or {}, info_fields, format_fields)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    except OSError as exc:
        raise OutputError(f"{final}: cannot write ({exc.strerror or exc})") from None
    try:
        plain = work / "out.vcf"
        with pysam.VariantFile(str(plain), "w", header=header) as vcf:
            for _, group in itertools.groupby(rows, key=_allele_key):
                alleles = list(group)
                first = alleles[0]
                record = vcf.new_record(
                    contig=first["contig"],
                    start=int(first["pos"]) - 1,  # pysam is 0-based; VCF POS = start + 1
                    alleles=(str(first["ref"]), str(first["alt"])),
                )
                _fill_filter(record, first)
                _fill_info(record, first, info_fields)
                if len(samples) == 1:
                    _fill_call(record, first, samples[0], sample_sbp)
                else:
                    by_sample = {row.get("sample"): row for row in alleles}
                    for name in samples:
                        _fill_call(record, by_sample.get(name), name, sample_sbp)
                vcf.write(record)
        gz = Path(pysam.tabix_index(str(plain), preset="vcf", force=True, keep_original=False))
        tbi = Path(f"{gz}.tbi")
        # The index goes first so a VCF under its final name always has its index.
        os.replace(tbi, Path(f"{final}.tbi"))
        os.replace(gz, final)
    except OSError as exc:
        raise OutputError(f"{final}: cannot write ({exc.strerror or exc})") from None
    finally:
        for leftover in work.iterdir() if work.exists() else ():
            with contextlib.suppress(OSError):
                leftover.unlink()
        with contextlib.suppress(OSError):
            work.rmdir()
    return final


# --- junctions as BED12 -------------------------------------------------------------------------

RGB_SKIPPING = "255,0,0"  # exon skipping: red
RGB_ANNOTATED = "0,0,255"  # annotated (canonical) junction: blue
RGB_NOVEL = "255,140,0"  # any other junction: orange
BED_SCORE_MAX = 1000


def junction_label(row: dict[str, Any]) -> str:
    """The readable (Unicode) event label of a junction row, as the reports print it: ``Δex8``
    (skipped exons), ``ex1-ex2`` (an annotated intron, donor then acceptor exon) or ``novel``."""
    if row.get("skipped_exons"):
        return f"Δex{row['skipped_exons']}"
    if row.get("annotated") and row.get("donor_exon") is not None:
        return f"ex{row['donor_exon']}-ex{row['acceptor_exon']}"
    return "novel"


def _base_name(row: dict[str, Any]) -> str:
    """ASCII name of a junction; unique per intron because every name that does not name both
    exon ends carries the intron's coordinates (1-based inclusive, as in the TSV)."""
    start, end = int(row["start"]), int(row["end"])
    donor, acceptor = row.get("donor_exon"), row.get("acceptor_exon")
    both_ends = donor is not None and acceptor is not None
    if row.get("skipped_exons"):
        skipped = str(row["skipped_exons"]).replace(",", "_")
        if both_ends:  # an exon end on each side fixes the coordinates
            return f"skip_ex{skipped}"
        return f"skip_ex{skipped}_{start}-{end}"
    if row.get("annotated") and both_ends:
        return f"ex{donor}-ex{acceptor}"
    return f"novel_{start}-{end}"


_STRAND_SUFFIX = {"+": "plus", "-": "minus"}


def junction_names(junctions: pl.DataFrame) -> pl.DataFrame:
    """``junctions`` with two more columns: ``name``, the ASCII name the BED12 file uses (unique
    within the table: ``skip_ex8``, ``ex7-ex8``, ``skip_ex8_27040101-27041000``,
    ``novel_27040101-27041000``; an intron seen on both strands gets ``_plus`` / ``_minus``), and
    ``label``, the readable Unicode label of the reports (``Δex8``, ``ex7-ex8``, ``novel``)."""
    frame = junctions.drop([c for c in ("name", "label") if c in junctions.columns])
    rows = frame.to_dicts()
    per_intron: dict[tuple[Any, int, int], int] = {}
    for row in rows:
        key = (row["contig"], int(row["start"]), int(row["end"]))
        per_intron[key] = per_intron.get(key, 0) + 1
    names: list[str] = []
    seen: set[str] = set()
    for row in rows:
        name = _base_name(row)
        if per_intron[(row["contig"], int(row["start"]), int(row["end"]))] > 1:
            name += "_" + _STRAND_SUFFIX.get(str(row.get("strand")), "nostrand")
        serial, unique = 1, name
        while unique in seen:  # not reached by the rules above; a guard, not a naming scheme
            serial += 1
            unique = f"{name}_{serial}"
        seen.add(unique)
        names.append(unique)
    return frame.with_columns(
        pl.Series("name", names, dtype=pl.Utf8),
        pl.Series("label", [junction_label(row) for row in rows], dtype=pl.Utf8),
    )


def _junction_bed_row(row: dict[str, Any]) -> tuple[int, int, list[str]]:
    """One BED12 line of a junction: two blocks, the anchors either side of the intron.

    The table's intron is [start, end], 1-based inclusive; in BED it is [start - 1, end).
    """
    intron_start0, intron_end0 = int(row["start"]) - 1, int(row["end"])
    anchor = max(int(row.get("max_anchor") or 0), 1)
    left = max(min(anchor, intron_start0), 1)
    right = anchor
    chrom_start = intron_start0 - left
    chrom_end = intron_end0 + right
    reads = int(row["reads"])
    strand = str(row["strand"]) if row.get("strand") in ("+", "-") else "."
    if row.get("skipped_exons"):
        rgb = RGB_SKIPPING
    elif row.get("annotated"):
        rgb = RGB_ANNOTATED
    else:
        rgb = RGB_NOVEL
    fields = [
        str(row["contig"]),
        str(chrom_start),
        str(chrom_end),
        str(row["name"]),
        str(min(reads, BED_SCORE_MAX)),
        strand,
        str(chrom_start),
        str(chrom_end),
        rgb,
        "2",
        f"{left},{right}",
        f"0,{intron_end0 - chrom_start}",
    ]
    return chrom_start, chrom_end, fields


def _bed_lines(junctions: pl.DataFrame, min_reads: int) -> Iterable[str]:
    frame = junction_names(junctions).filter(pl.col("reads") >= min_reads)
    lines = [_junction_bed_row(row) for row in frame.iter_rows(named=True)]
    # Sorted as tabix/bedtools want it: contig, then chromStart (the left anchor's start, not
    # the intron's), then chromEnd and name so the order is total.
    lines.sort(key=lambda line: (line[2][0], line[0], line[1], line[2][3]))
    for _, _, fields in lines:
        yield "\t".join(fields)


def write_junctions_bed12(
    junctions: pl.DataFrame, path: str | os.PathLike[str], *, min_reads: int = 1
) -> Path:
    """Write the junction table (``tables.junction_table``) as BED12, like regtools / TopHat
    ``junctions.bed``: one line per junction and strand with ≥ ``min_reads`` reads; the two
    blocks are the longest anchors (``max_anchor``, ≥ 1 bp) either side of the intron, so the gap
    between them is exactly the intron.

    name = the ASCII ``name`` of ``junction_names`` (``skip_ex2``, ``ex1-ex2``,
    ``novel_START-END``; unique in the file, the key into the TSV's ``name`` column, whose
    ``reads`` is exact); score = reads capped at 1000 (BED limit); itemRgb red for skipping, blue
    for annotated, orange for other junctions; sorted by contig, chromStart and chromEnd (what
    ``tabix -p bed`` and ``bedtools`` require). The first line is a ``#`` comment saying so
    (no UCSC track line, which tabix reports as an unparsable record).
    """
    final = Path(path)
    samples = junctions["sample"].unique().to_list() if "sample" in junctions.columns else []
    name = samples[0] if len(samples) == 1 else "cd22scan"
    # A '#' comment, not a UCSC "track" line: tabix -p bed reports a track line as an error
    # ("Failed to parse TBX_GENERIC"); '#' lines are skipped by tabix, bedtools and IGV.
    comment = (
        f"# {name} splice junctions (cd22scan): name = junction (the TSV's name column), "
        "score = min(reads, 1000), itemRgb red = exon skipping, blue = annotated, orange = other"
    )
    lines = [comment, *_bed_lines(junctions, min_reads)]
    try:
        with atomic_path(final) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{final}: cannot write ({exc.strerror or exc})") from None
    return final


def write_summary_json(summary: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a scan summary as JSON (atomic); ``schema_version`` stays the first key."""
    if "schema_version" not in summary:
        raise ValueError("summary has no schema_version")
    ordered = {"schema_version": summary["schema_version"], **summary}
    return write_json(ordered, Path(path))
