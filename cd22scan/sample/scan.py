"""One sample: pick the gene model, read the window, count in the core, build the tables.

``scan()`` is the per-sample stage of the data path (DESIGN.md); it returns polars tables and a
summary dict and writes nothing (``scandir.write_scan`` does).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pysam

from cd22scan import _core
from cd22scan.console import progress
from cd22scan.errors import AnnotationError, InputError, UsageError
from cd22scan.sample import tables
from cd22scan.sample.evidence import EVIDENCE_SCHEMA, allele_evidence, candidates
from cd22scan.sample.flags import DEFAULT_EXCLUDE_FLAGS
from cd22scan.sample.reader import (
    MATE_SUFFIX_SAMPLE,
    AlignmentSource,
    check_reference,
    feed_window,
    htslib_quiet,
    library_size,
    open_alignments,
    survey_reads,
)
from cd22scan.sample.strandedness import resolve as resolve_strandedness
from cd22scan.target.annotation import (
    GeneModel,
    builtin_genes,
    builtin_model,
    check_junctions_fit_model,
    check_model_against_header,
    check_splice_motifs,
    load_gtf,
)
from cd22scan.target.contigs import detect_build, resolve_contig

log = logging.getLogger("cd22scan")

SCHEMA_VERSION = 1
DEFAULT_PADDING = 500


@dataclass(frozen=True)
class ScanParams:
    gene: str = "CD22"
    build: str = "auto"
    gtf: str | None = None
    transcript: str | None = None
    reference: str | None = None
    sample: str | None = None
    min_mapq: int = 20
    min_baseq: int = 13
    min_anchor: int = 8
    exclude_flags: int = DEFAULT_EXCLUDE_FLAGS
    dedup_overlaps: bool = True
    strand: str = "auto"
    stream: bool = False
    padding: int = DEFAULT_PADDING
    threads: int = 1
    region: str | None = None  # "chr:start-end" (1-based inclusive): scanned as a pseudo-gene
    long_reads: bool = False  # also assign each read to an isoform (sample/longreads.py)
    junction_tolerance: int = 12  # long reads: nt a junction may be off an exon boundary

    def validate(self) -> None:
        if self.long_reads and (self.stream or self.region):
            raise UsageError(
                "--long-reads needs an indexed BAM/CRAM (it re-reads the gene's alignments) and "
                "a gene model; not --stream, standard input or --region"
            )
        for name in ("min_mapq", "min_baseq", "min_anchor", "padding", "junction_tolerance"):
            value = getattr(self, name)
            if value < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 0; got {value}")
        if self.build not in ("auto", "GRCh38", "GRCh37"):
            raise UsageError(f"--build must be auto, GRCh38 or GRCh37; got {self.build!r}")
        if self.transcript and not self.gtf:
            raise UsageError("--transcript needs --gtf (the built-in models have one transcript)")
        if not 0 <= self.exclude_flags <= 0xFFFF:
            raise UsageError(
                f"--exclude-flags must be a 16-bit flag mask; got {self.exclude_flags}"
            )


@dataclass
class ScanResult:
    sample: str
    model: GeneModel
    exons: pl.DataFrame
    junctions: pl.DataFrame
    introns: pl.DataFrame
    bases: pl.DataFrame
    indels: pl.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    # Read evidence of the candidate alleles (``evidence.EVIDENCE_SCHEMA``); empty when the
    # reads could not be re-read (stream mode) or the scan directory predates it.
    evidence: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=evidence_schema()), compare=False
    )
    # The per-sample calls (a calling.sample.SampleCalls): the calling stage fills this in
    # (calling.sample.sample_calls), a loaded scan directory hands in the ones it holds. Typed
    # Any because the sample stage does not import the stage after it.
    calls: Any = field(default=None, repr=False, compare=False)
    # Long reads (``--long-reads``): a ``longreads.LongReadTables`` (isoforms, events,
    # co-occurrence), None for short-read scans.
    long_reads: Any = field(default=None, repr=False, compare=False)


def choose_model(
    params: ScanParams, source: AlignmentSource, loaded: GeneModel | None = None
) -> GeneModel:
    """The gene model in the BAM's own contig naming, refusing build mismatches.

    ``loaded``: the model of ``params.gtf`` already parsed (by ``load_target``), so that a
    cohort parses its GTF once, not once per sample."""
    try:
        return _choose_model(params, source, loaded)
    except AnnotationError as exc:
        # Model-vs-header messages say "the BAM header"; name which file that is.
        message = str(exc)
        if "header" in message and source.display_name not in message:
            message = f"{source.display_name}: {message}"
        raise AnnotationError(message) from None


def load_target(params: ScanParams) -> GeneModel | None:
    """The model of ``params.gtf`` (parsed here, once), or None for a built-in model, whose
    build is told per BAM header."""
    if not params.gtf:
        return None
    return load_gtf(params.gtf, params.gene, params.transcript)


def region_model(region: str, strand: str = "+") -> GeneModel:
    """``--region chr:start-end`` (1-based inclusive, as samtools; commas allowed) as a
    pseudo-gene: one exon over the region, no CDS, named after the region."""
    from cd22scan.target.annotation import Exon

    text = region.replace(",", "")
    contig, _, span = text.rpartition(":")
    start_text, _, end_text = span.partition("-")
    try:
        start, end = int(start_text), int(end_text)
    except ValueError:
        start = end = 0
    if not contig or start < 1 or end < start:
        raise UsageError(
            f"--region: expected chr:start-end (1-based, start <= end), got {region!r}"
        )
    name = f"{contig}:{start}-{end}"
    return GeneModel(
        gene=name,
        transcript="region",
        contig=contig,
        strand=strand,
        build=None,
        exons=(Exon(1, start, end),),
        cds_start=None,
        cds_end=None,
        source=f"--region {name}",
        selection="the region given with --region (one pseudo-exon)",
    )


def _choose_model(
    params: ScanParams, source: AlignmentSource, loaded: GeneModel | None
) -> GeneModel:
    if params.region:
        return check_model_against_header(region_model(params.region), source.contigs)
    if params.gtf:
        model = loaded or load_gtf(params.gtf, params.gene, params.transcript)
        if params.build != "auto" and model.build and model.build != params.build:
            raise AnnotationError(
                f"{params.gtf}: GTF says build {model.build} but --build {params.build} was given"
            )
        return check_model_against_header(model, source.contigs)
    genes = {g.upper(): g for g in builtin_genes()}
    if params.gene.upper() not in genes:
        raise AnnotationError(
            f"no built-in model for gene {params.gene!r} (built-in: {', '.join(builtin_genes())});"
            " give --gtf FILE for any other gene"
        )
    gene = genes[params.gene.upper()]
    build = params.build
    if build == "auto":
        reference_model = builtin_model(gene, "GRCh38")
        match = resolve_contig(source.contigs, reference_model.contig)
        build = match.build or detect_build(source.contigs)
        if build is None:
            raise AnnotationError(
                f"{source.display_name}: cannot tell the build from the header: "
                f"{match.name} has length {match.length}, which fits neither GRCh38 nor GRCh37;"
                " pass --build or use --gtf"
            )
    return check_model_against_header(builtin_model(gene, build), source.contigs)


FLAGGED_SHARE = 0.10
"""Share of the window's records that are secondary or QC-fail above which the scan says so."""


def _warn_if_many_flagged(display: str, filters: dict[str, int]) -> None:
    """One line when many records over the gene were left out as secondary or QC-fail (an
    aligner reporting many multi-mappers, or a vendor QC run): the counts stand, but fewer
    reads than the file holds were used."""
    seen = filters.get("records", 0)
    kinds = [
        f"{filters[key]} {what}"
        for key, what in (("secondary", "secondary (0x100)"), ("qcfail", "QC-fail (0x200)"))
        if filters.get(key, 0) and filters[key] >= FLAGGED_SHARE * seen
    ]
    if kinds:
        log.warning(
            "%s: of %d records over the gene, %s were left out (--exclude-flags); see the "
            "summary's reads.removed_* counts",
            display,
            seen,
            " and ".join(kinds),
        )


def reference_fetch(reference: str | None, contig: str) -> tables.RefFetch | None:
    if reference is None:
        return None
    try:
        fasta = pysam.FastaFile(reference)
    except (OSError, ValueError) as exc:
        raise InputError(f"{reference}: cannot open reference FASTA ({exc})") from None
    names = set(fasta.references)
    name = contig
    if name not in names:
        try:
            name = resolve_contig(
                dict(zip(fasta.references, fasta.lengths, strict=True)), contig
            ).name
        except AnnotationError:
            raise InputError(
                f"{reference}: reference has no contig {contig!r} (has {len(names)} others)"
            ) from None

    def fetch(start0: int, end0: int) -> str:
        if end0 <= start0 or start0 < 0:
            return ""
        return fasta.fetch(name, start0, end0).upper()

    return fetch


@dataclass
class _Job:
    """One gene of one sample between choosing its model and building its tables."""

    params: ScanParams
    model: GeneModel
    annotation: str
    fetch: tables.RefFetch | None
    sample: str
    window_start0: int
    window_end0: int
    survey: Any
    counter: Any  # _core.GeneCounter


@dataclass
class _Read:
    """What the open file tells about one gene's pass, kept for the tables and summary."""

    stats: Any  # reader.ReadStats
    result: Any  # the core's CountResult
    lib_size: int | None
    fmt: str
    display: str
    contig_length: int
    header_problems: list[Any]
    duplicate_contigs: list[Any]
    can_reread: bool


def _prepare(
    path: str, params: ScanParams, source: AlignmentSource, model: GeneModel | None
) -> _Job:
    """Choose the model, check the reference, survey the reads and make the core's counter."""
    model = choose_model(params, source, model)
    source.refuse_ambiguous(model.contig)
    annotation = params.gtf or "built-in model"
    fetch = None
    if params.reference is not None:
        check_reference(source, params.reference, model.contig)
        fetch = reference_fetch(params.reference, model.contig)
        # An annotation of the other build (e.g. cut by grep, with no header naming its
        # build) has introns that do not start with GT and end with AG in the reference.
        check_splice_motifs(model, fetch, annotation, params.reference)
    sample = params.sample or source.default_sample_name()
    log.debug(
        "%s: %s %s (%s) on %s, build %s", sample, model.gene, model.transcript,
        model.selection, model.contig, model.build,
    )  # fmt: skip
    window_start0, window_end0 = model.window(params.padding)
    window_end0 = min(window_end0, source.contigs[model.contig])
    survey = survey_reads(source, model.contig, window_start0, window_end0, params.reference)
    mate_suffix = survey.mate_suffix
    if survey.layout == "mixed":
        log.warning(
            "%s mixes paired-end and single-end records (%d paired of the first %d primary "
            "records over the gene): each pair counts as one fragment, each single read as one",
            source.display_name,
            survey.paired,
            survey.sampled,
        )
    if mate_suffix is not None:
        first, second = mate_suffix.split(",")
        log.info(
            "%s: mates are named NAME%s and NAME%s; pairing them by NAME",
            source.display_name,
            first,
            second,
        )
    counter = _core.GeneCounter(
        model.contig,
        window_start0,
        window_end0,
        model.core_exons(),
        min_mapq=params.min_mapq,
        min_baseq=params.min_baseq,
        min_anchor=params.min_anchor,
        exclude_flags=params.exclude_flags,
        dedup_overlaps=params.dedup_overlaps,
        mate_suffix=mate_suffix or "",
    )
    return _Job(params, model, annotation, fetch, sample, window_start0, window_end0, survey,
                counter)  # fmt: skip


def _log_stream_mode(path: str, params: ScanParams, source: AlignmentSource) -> None:
    if path == "-":
        log.info("reading standard input to the end (stream mode)")
    elif not source.has_index and not params.stream:
        log.info(
            "%s has no index: reading the whole file (stream mode); %s",
            source.display_name,
            "a sorted, indexed BAM is read faster (samtools sort, samtools index)"
            if source.format == "SAM"
            else f"index it to read only the gene: samtools index {source.display_name}",
        )


def _collect(path: str, source: AlignmentSource, job: _Job, stats: Any) -> _Read:
    """Finish the counter and keep what the summary needs from the open file."""
    log.debug(
        "%s: %d records read (%s), %d handed to the counter over %s:%d-%d",
        job.sample,
        stats.records_read,
        stats.mode,
        stats.records_to_core,
        job.model.contig,
        job.window_start0 + 1,
        job.window_end0,
    )
    try:
        result = job.counter.finish()
    except _core.CoreError as exc:
        raise InputError(f"{source.display_name}: {exc}") from None
    lib_size = stats.mapped_records_in_file
    if lib_size is None:
        lib_size = library_size(source)
    return _Read(
        stats=stats,
        result=result,
        lib_size=lib_size,
        fmt=source.format,
        display=source.display_name,
        contig_length=source.contigs[job.model.contig],
        header_problems=list(source.header_problems),
        duplicate_contigs=list(source.duplicate_contigs),
        can_reread=path != "-" and source.has_index and not job.params.stream,
    )


def scan(
    path: str,
    params: ScanParams | None = None,
    *,
    model: GeneModel | None = None,
    **overrides: Any,
) -> ScanResult:
    """Scan one BAM/CRAM/SAM over the target gene. Keyword overrides set ScanParams fields.

    ``model``: the model of ``params.gtf`` from ``load_target(params)``, when the caller scans
    several BAMs with one GTF (parsed once); by default the GTF is parsed here."""
    params = params or ScanParams()
    if overrides:
        params = ScanParams(**{**params.__dict__, **overrides})
    params.validate()
    started = time.time()
    with (
        htslib_quiet(),
        open_alignments(path, params.reference, threads=params.threads) as source,
    ):
        job = _prepare(path, params, source, model)
        _log_stream_mode(path, params, source)
        # No total: the index does not say cheaply how many records the window holds.
        with progress(f"{job.sample}: records", unit=" records", scale=True) as bar:
            stats = feed_window(
                source,
                job.counter,
                job.model.contig,
                job.window_start0,
                job.window_end0,
                stream=params.stream,
                on_batch=bar.update,
            )
        done = _collect(path, source, job, stats)
    result = _tables(path, job, done, started)
    if params.long_reads:
        add_long_reads(result, path, params)
    else:
        hint = long_read_hint(path, params.reference)
        if hint:
            result.summary["long_reads_suspected"] = hint
            log.warning("%s: %s; scan with --long-reads for per-molecule isoforms", path, hint)
    return result


def long_read_hint(path: str, reference: str | None = None) -> str | None:
    """Why ``path`` looks like long reads (its @PG lines name a long-read aligner or preset),
    or None. Standard input is not looked at (it can be read once)."""
    if path == "-" or not os.path.isfile(path):
        return None
    try:
        with htslib_quiet(), pysam.AlignmentFile(path, reference_filename=reference) as handle:
            programs = handle.header.to_dict().get("PG", [])
    except (OSError, ValueError):
        return None
    for pg in programs:
        line = f"{pg.get('PN', '')} {pg.get('CL', '')}"
        if "splice:sr" in line:  # minimap2's short-read splice preset
            continue
        for mark in ("splice:hq", "map-ont", "map-pb", "map-hifi", "-ax splice", "pbmm2",
                     "-x splice"):  # fmt: skip
            if mark in line:
                return f"@PG {pg.get('ID', '')} ({mark}) is a long-read alignment"
    return None


def add_long_reads(result: ScanResult, path: str, params: ScanParams) -> None:
    """Assign each alignment to an isoform (``longreads.long_read_tables``) and keep the
    tables and their summary in ``result``."""
    from cd22scan.sample.longreads import long_read_tables

    if path == "-":
        raise UsageError("--long-reads re-reads the gene's alignments: give a file, not stdin")
    tables_ = long_read_tables(
        path,
        result.model,
        tolerance=params.junction_tolerance,
        min_mapq=params.min_mapq,
        reference=params.reference,
    )
    result.long_reads = tables_
    result.summary["long_reads"] = tables_.summary
    log.info(
        "%s: %d long reads assigned to isoforms (%d full-length, median %s nt)",
        result.sample,
        tables_.reads,
        tables_.summary["full_length_reads"],
        tables_.summary["median_read_length"],
    )


def _tables(path: str, job: _Job, done: _Read, started: float) -> ScanResult:
    """Tables, checks and summary of one gene of one sample."""
    params, model, fetch, sample = job.params, job.model, job.fetch, job.sample
    window_start0, window_end0, survey = job.window_start0, job.window_end0, job.survey
    result, stats, display = done.result, done.stats, done.display
    mate_suffix = survey.mate_suffix
    strandedness = resolve_strandedness(params.strand, result.strand_evidence, model.strand)
    reference_bases = fetch(window_start0, window_end0) if fetch else ""
    exons = tables.exon_table(model, result, sample, window_start0)
    junctions = tables.junction_table(model, result, sample, strandedness.mode, fetch)
    introns = tables.intron_table(model, result, sample)
    bases = tables.bases_table(result, model.contig, window_start0, reference_bases)
    indels = tables.indel_table(result, model.contig, sample, fetch)
    # Without a reference: reads that use the model's introns only shifted by one offset.
    junction_rows = junctions.select("start", "end", "reads").iter_rows()
    doubt = check_junctions_fit_model(model, junction_rows, job.annotation, display)
    if doubt:
        log.warning("%s", doubt)
    _warn_if_many_flagged(display, result.filters)
    evidence, duplicates = _evidence(path, params, model, bases, indels, done.can_reread, sample)
    if result.filters["used"] == 0:
        log.warning("%s: no reads pass the filters over %s %s", display, model.gene, model.contig)
    summary = {
        "schema_version": SCHEMA_VERSION,
        "tool": "cd22scan",
        "version": _core.__version__,
        "sample": sample,
        "input": display if path == "-" else str(Path(path)),
        "format": done.fmt,
        "read_mode": stats.mode,
        "gene": model.gene,
        "transcript": model.transcript,
        "model_source": model.source,
        "transcript_selection": model.selection,
        "build": model.build,
        "contig": model.contig,
        "contig_length": done.contig_length,
        "strand": model.strand,
        "window": {"start": window_start0 + 1, "end": window_end0},
        "parameters": {
            "min_mapq": params.min_mapq,
            "min_baseq": params.min_baseq,
            "min_anchor": params.min_anchor,
            "exclude_flags": params.exclude_flags,
            "dedup_overlaps": params.dedup_overlaps,
            "strand": params.strand,
            "padding": params.padding,
            "reference": str(Path(params.reference).resolve()) if params.reference else None,
            "gtf": str(Path(params.gtf).resolve()) if params.gtf else None,
            "region": params.region,
        },
        "reads": {
            "records_read": stats.records_read,
            "records_in_window": stats.records_to_core,
            **{
                f"removed_{k}": v
                for k, v in result.filters.items()
                if k not in ("records", "used", "used_supplementary")
            },
            "used": result.filters["used"],
            "used_supplementary": result.filters["used_supplementary"],
        },
        "header_problems": done.header_problems,
        "duplicate_contigs": done.duplicate_contigs,
        "mate_name_suffix": mate_suffix,
        "read_layout": {
            "layout": survey.layout,
            "paired": survey.paired,
            "single": survey.sampled - survey.paired,
            "sampled": survey.sampled,
            "how": f"first {MATE_SUFFIX_SAMPLE} records over the window (primary, mapped)",
        },
        "library_size": done.lib_size,
        "library_size_definition": "mapped records in the file (samtools idxstats)",
        "fragments_in_window": result.fragments,
        "fragments_on_gene": result.gene_fragments,
        "strandedness": {
            "mode": strandedness.mode,
            "how": strandedness.how,
            "fraction_fr": strandedness.fraction_fr,
            "fragments": strandedness.fragments,
        },
        "duplicates": duplicates,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 3),
    }
    return ScanResult(sample, model, exons, junctions, introns, bases, indels, summary, evidence)


def evidence_schema() -> dict[str, type[pl.DataType]]:
    return {"sample": pl.Utf8, "contig": pl.Utf8, **EVIDENCE_SCHEMA}


# Share of paired fragments over the candidate sites that repeat another's (start, strand, mate
# start) above which unmarked duplicates are worth a warning: random RNA-seq fragments of a
# highly expressed gene repeat starts too, so only a clear excess is said.
HIGH_DUPLICATE_SHARE = 0.3


def _evidence(
    path: str,
    params: ScanParams,
    model: GeneModel,
    bases: pl.DataFrame,
    indels: pl.DataFrame,
    can_reread: bool,
    sample: str,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Read evidence of the candidate alleles (a second pysam pass over their positions only)
    and the duplicate estimate for the summary."""
    empty = pl.DataFrame(schema=evidence_schema())
    if not can_reread:
        log.info("%s: reads not re-readable (stream mode): no per-allele read evidence, "
                 "variant FILTERs use the counts only", sample)  # fmt: skip
        return empty, {"estimated": False}
    want = candidates(bases, indels, model)
    if want.capped:
        log.warning("%s: %d candidate variant positions not re-read for read evidence "
                    "(at most %d; the ones with most alt reads are kept)",
                    sample, want.capped, len(want.positions()))  # fmt: skip
    if not want.positions():
        return empty, {"estimated": False}
    with htslib_quiet(), open_alignments(path, params.reference) as source:
        frame, dup = allele_evidence(
            source.handle,
            model.contig,
            want,
            min_mapq=params.min_mapq,
            min_baseq=params.min_baseq,
            exclude_flags=params.exclude_flags,
        )
    share = dup["duplicate_like"] / dup["fragments"] if dup["fragments"] else 0.0
    summary = {
        "estimated": True,
        **dup,
        "duplicate_like_share": round(share, 4),
        "candidate_sites": len(want.positions()),
        "candidate_sites_capped": want.capped,
    }
    if share > HIGH_DUPLICATE_SHARE and dup["reads_marked_duplicate"] == 0:
        log.warning("%s: %.0f%% of fragments over candidate variant sites share start, strand "
                    "and mate start with another, and no read is marked duplicate (flag 0x400):"
                    " run samtools markdup (or Picard MarkDuplicates) for honest variant support",
                    sample, 100 * share)  # fmt: skip
    frame = frame.select(
        pl.lit(sample, dtype=pl.Utf8).alias("sample"),
        pl.lit(model.contig, dtype=pl.Utf8).alias("contig"),
        *frame.columns,
    )
    return frame, summary
