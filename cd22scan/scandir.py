"""Reading a scan directory (written by `cd22scan scan`) back into a ScanResult.

`compare` and `run` accept either BAMs (scanned first) or scan directories; this is the one place
that knows the file names and column types of a scan directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from cd22scan.annotation import GeneModel, builtin_model, load_gtf, model_from_json
from cd22scan.errors import AnnotationError, InputError
from cd22scan.scanner import ScanResult
from cd22scan.tables import EXON_SCHEMA, INDEL_SCHEMA, INTRON_SCHEMA, JUNCTION_SCHEMA

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
        from cd22scan.scanner import region_model

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
    )
