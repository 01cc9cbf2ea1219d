"""A scan directory: writing a ScanResult with its calls (`cd22scan scan`) and reading it back.

`compare` and `run` accept either BAMs (scanned first) or scan directories; this is the one place
that knows the file names and column types of a scan directory (``SCAN_FILES``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl

from cd22scan.calling.sample import CALL_TABLES, SampleCalls, sample_calls
from cd22scan.errors import AnnotationError, InputError, UsageError
from cd22scan.outputs.files import (
    prepare_out_dir,
    staged_outputs,
    write_json,
    write_parquet,
    write_table,
)
from cd22scan.outputs.formats import junction_names, write_junctions_bed12
from cd22scan.outputs.vcf import write_scan_vcf
from cd22scan.sample.longreads import (
    COOCCURRENCE_COLUMNS,
    ISOFORM_COLUMNS,
    LongReadTables,
)
from cd22scan.sample.longreads import (
    EVENT_COLUMNS as LONG_READ_EVENT_COLUMNS,
)
from cd22scan.sample.panel import PanelScan
from cd22scan.sample.scan import ScanResult, evidence_schema
from cd22scan.sample.tables import EXON_SCHEMA, INDEL_SCHEMA, INTRON_SCHEMA, JUNCTION_SCHEMA
from cd22scan.target.annotation import (
    GeneModel,
    builtin_model,
    load_gtf,
    model_from_json,
    model_to_json,
)

# The files of one sample, NAME.SUFFIX, by key; the summary (the completion mark) last.
SCAN_FILES = {
    "exons": "exons.tsv",
    "junctions": "junctions.tsv",
    "introns": "introns.tsv",
    "indels": "indels.tsv",
    "bases": "bases.parquet",
    "evidence": "allele_evidence.tsv",
    "junctions_bed": "junctions.bed",
    **{f"calls_{name}": f"calls.{suffix}.parquet" for name, suffix in CALL_TABLES.items()},
    "vcf": "variants.vcf.gz",
    "model": "model.json",
    "summary": "summary.json",
}
# every file on disk, the VCF's index included (the workflow's outputs)
SCAN_SUFFIXES = (*[s for s in SCAN_FILES.values() if s != "summary.json"],
                 "variants.vcf.gz.tbi", "summary.json")  # fmt: skip


# written only by a --long-reads scan (not in SCAN_SUFFIXES: a workflow cannot expect them)
LONG_READ_FILES = {
    "isoforms": "long_read_isoforms.tsv",
    "events": "long_read_events.tsv",
    "cooccurrence": "long_read_cooccurrence.tsv",
}


def _names(sample: str, suffixes: tuple[str, ...]) -> list[str]:
    twins = [s.removesuffix(".tsv") + ".parquet" for s in suffixes if s.endswith(".tsv")]
    return [f"{sample}.{suffix}" for suffix in (*twins, *suffixes)]


def scan_file_names(sample: str) -> list[str]:
    """Every file ``write_scan`` writes for ``sample`` (Parquet twins and the VCF index too)."""
    return _names(sample, SCAN_SUFFIXES)


def long_read_file_names(sample: str) -> list[str]:
    """The files a --long-reads scan writes besides ``scan_file_names``."""
    return _names(sample, tuple(LONG_READ_FILES.values()))


LONG_READ_SCHEMAS = {
    "isoforms": ISOFORM_COLUMNS,
    "events": LONG_READ_EVENT_COLUMNS,
    "cooccurrence": COOCCURRENCE_COLUMNS,
}


def write_scan(result: ScanResult, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write the scan's tables (.tsv), bases (.parquet), junctions (.bed), its calls
    (NAME.calls.*.parquet, ``calling.SampleCalls``), its variant calls (.variants.vcf.gz + .tbi),
    the gene model used (NAME.model.json) and NAME.summary.json (last) into ``out_dir``, all or
    none."""
    path = prepare_out_dir(out_dir)
    files = {key: f"{result.sample}.{suffix}" for key, suffix in SCAN_FILES.items()}
    calls = sample_calls(result)
    with staged_outputs(path, files["summary"]) as stage:
        for table in ("exons", "introns", "indels"):
            write_table(getattr(result, table), stage / files[table])
        # name = the BED12 name (ASCII, unique), label = the reports' Unicode label (Δex2).
        write_table(junction_names(result.junctions), stage / files["junctions"])
        write_parquet(result.bases, stage / files["bases"])
        write_table(result.evidence, stage / files["evidence"])
        write_junctions_bed12(result.junctions, stage / files["junctions_bed"])
        for name, frame in calls.frames().items():
            write_parquet(frame, stage / files[f"calls_{name}"])
        write_scan_vcf(result, stage / files["vcf"], calls.variants)
        if result.long_reads is not None:
            for name, suffix in LONG_READ_FILES.items():
                write_table(getattr(result.long_reads, name), stage / f"{result.sample}.{suffix}")
        # The model makes the directory self-contained: load_scan never re-reads the GTF.
        write_json(model_to_json(result.model), stage / files["model"])
        # The summary goes last: its presence marks a complete scan directory.
        write_json(result.summary, stage / files["summary"])
    return {key: path / file for key, file in files.items()}


def _load_calls(directory: Path, sample: str, summary: dict) -> SampleCalls | None:
    """The calls a scan directory holds, or None (a scan written before they were: the
    ScanResult then makes them on first use)."""
    frames = {}
    for name, suffix in CALL_TABLES.items():
        path = directory / f"{sample}.calls.{suffix}.parquet"
        if not path.exists():
            return None
        try:
            frames[name] = pl.read_parquet(path)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InputError(f"{path}: cannot read table ({exc})") from None
    has_reference = bool((summary.get("parameters") or {}).get("reference"))
    return SampleCalls(sample=sample, has_reference=has_reference, **frames)


TABLE_TYPES = {
    "exons": EXON_SCHEMA,
    "junctions": JUNCTION_SCHEMA,
    "introns": INTRON_SCHEMA,
    "indels": INDEL_SCHEMA,
}


def find_samples(directory: str | Path) -> list[str]:
    """Sample names with a complete scan (their summary.json exists) in ``directory``."""
    return sorted(p.name[: -len(".summary.json")] for p in Path(directory).glob("*.summary.json"))


def _model_from_file(path: Path, summary: dict) -> GeneModel:
    """The gene model the scan used, from NAME.model.json (written since model schema 1)."""
    try:
        model = model_from_json(json.loads(path.read_text(encoding="utf-8")), str(path))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read gene model ({exc})") from None
    except AnnotationError as exc:
        raise InputError(str(exc)) from None
    if (model.gene, model.transcript, model.contig) != (
        summary.get("gene"),
        summary.get("transcript"),
        summary.get("contig"),
    ):
        raise InputError(
            f"{path}: model {model.gene} {model.transcript} on {model.contig} does not match "
            f"the summary ({summary.get('gene')} {summary.get('transcript')} on "
            f"{summary.get('contig')})"
        )
    return model


def _model_from_summary(summary: dict, where: Path) -> GeneModel:
    """Scan directories written before NAME.model.json existed: rebuild the model from the GTF
    (or built-in table) the summary names, as then."""
    params = summary.get("parameters", {})
    gtf = params.get("gtf")
    if params.get("region"):  # scanned with --region: the pseudo-gene again
        from cd22scan.sample.scan import region_model

        model = region_model(params["region"])
    elif gtf:
        model = load_gtf(gtf, summary["gene"], summary["transcript"])
    else:
        model = builtin_model(summary["gene"], summary["build"])
    if model.transcript != summary["transcript"]:
        raise InputError(
            f"{where}: scanned with transcript {summary['transcript']}, "
            f"but the model now gives {model.transcript}"
        )
    return model.with_contig(summary["contig"])


def load_scan(directory: str | Path, sample: str | None = None) -> ScanResult:
    """Load the scan of ``sample`` (default: the only sample) from ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: not a scan directory")
    samples = find_samples(directory)
    if sample is None:
        if len(samples) != 1:
            found = ", ".join(samples) if samples else "none"
            raise InputError(
                f"{directory}: expected one scanned sample, found {found}; name the sample"
            )
        sample = samples[0]
    elif sample not in samples:
        raise InputError(f"{directory}: no complete scan of sample {sample!r} (no summary.json)")
    summary_path = directory / f"{sample}.summary.json"
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{summary_path}: cannot read summary ({exc})") from None
    tables = {}
    for name in ("exons", "junctions", "introns", "indels"):
        path = directory / f"{sample}.{name}.tsv"
        try:
            tables[name] = pl.read_csv(path, separator="\t", schema_overrides=TABLE_TYPES[name])
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InputError(f"{path}: cannot read table ({exc})") from None
    bases_path = directory / f"{sample}.bases.parquet"
    try:
        bases = pl.read_parquet(bases_path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"{bases_path}: cannot read table ({exc})") from None
    evidence_path = directory / f"{sample}.allele_evidence.tsv"
    evidence = pl.DataFrame(schema=evidence_schema())  # a scan written before it existed
    if evidence_path.exists():
        try:
            evidence = pl.read_csv(evidence_path, separator="\t", schema=evidence_schema())
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InputError(f"{evidence_path}: cannot read table ({exc})") from None
    model_path = directory / f"{sample}.model.json"
    if model_path.exists():
        model = _model_from_file(model_path, summary)
    else:
        model = _model_from_summary(summary, summary_path)
    return ScanResult(
        sample=sample,
        model=model,
        exons=tables["exons"],
        junctions=tables["junctions"],
        introns=tables["introns"],
        bases=bases,
        indels=tables["indels"],
        summary=summary,
        evidence=evidence,
        calls=_load_calls(directory, sample, summary),
        long_reads=_load_long_reads(directory, sample, summary),
    )


def _load_long_reads(directory: Path, sample: str, summary: dict) -> LongReadTables | None:
    """The long-read tables of a --long-reads scan (its summary has ``long_reads``), or None."""
    if not summary.get("long_reads"):
        return None
    frames = {}
    for name, suffix in LONG_READ_FILES.items():
        path = directory / f"{sample}.{suffix}"
        try:
            frames[name] = pl.read_csv(path, separator="\t", schema=LONG_READ_SCHEMAS[name])
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InputError(f"{path}: cannot read table ({exc})") from None
    info = summary["long_reads"]
    return LongReadTables(reads=int(info.get("reads_assigned") or 0), summary=info, **frames)


# --- panel scans (issue 15): OUT/GENE/ one-gene scan directories + OUT/NAME.panel.json --------

PANEL_SUFFIX = ".panel.json"


def write_panel(panel: PanelScan, out_dir: str | os.PathLike[str]) -> Path:
    """Each gene's scan into ``out_dir/GENE/`` (a complete one-gene scan directory, so every
    reader of scans works on it), then ``out_dir/NAME.panel.json`` (genes, genes left out and
    why, read mode) last: its presence marks a complete panel scan."""
    path = prepare_out_dir(out_dir)
    for gene, result in panel.results.items():
        write_scan(result, path / gene)
    document = {
        "schema_version": 1,
        "tool": "cd22scan",
        "sample": panel.sample,
        "genes": list(panel.results),
        "targets_absent": panel.absent,
        "read_mode": panel.read_mode,
        "layout": "one folder per gene (GENE/), each a one-gene scan directory",
    }
    with staged_outputs(path, f"{panel.sample}{PANEL_SUFFIX}") as stage:
        write_json(document, stage / f"{panel.sample}{PANEL_SUFFIX}")
    return path / f"{panel.sample}{PANEL_SUFFIX}"


def find_panels(directory: str | Path) -> list[str]:
    """Sample names with a complete panel scan in ``directory``."""
    return sorted(p.name[: -len(PANEL_SUFFIX)] for p in Path(directory).glob(f"*{PANEL_SUFFIX}"))


def load_panel(directory: str | Path, sample: str | None = None) -> PanelScan:
    """A panel scan directory back: every gene's scan (``load_scan(directory/GENE, sample)``)."""
    directory = Path(directory)
    samples = find_panels(directory)
    if sample is None:
        if len(samples) != 1:
            raise UsageError(
                f"{directory}: holds {len(samples)} panel scans ({', '.join(samples) or 'none'});"
                " name one sample"
            )
        sample = samples[0]
    elif sample not in samples:
        raise InputError(f"{directory}: no panel scan of sample {sample!r} ({PANEL_SUFFIX})")
    document = json.loads((directory / f"{sample}{PANEL_SUFFIX}").read_text("utf-8"))
    results = {gene: load_scan(directory / gene, sample) for gene in document["genes"]}
    return PanelScan(
        sample=sample,
        results=results,
        absent=dict(document.get("targets_absent") or {}),
        read_mode=document.get("read_mode", ""),
    )
