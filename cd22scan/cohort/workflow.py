"""The Snakemake workflow shipped with the package (DESIGN.md, Scale): the steps of `cd22scan run`
as rules, so a cluster executor can spread a cohort of hundreds of BAMs over many machines.

    snakemake --snakefile "$(cd22scan workflow path)" --cores 8 \\
        --config samplesheet=samples.tsv out=cohort_out scan_args="--gtf genes.gtf --gene CD22"

Rules: one ``cd22scan scan`` per BAM/CRAM sample (into ``OUT/scans/``, as ``run``; a sample whose
sheet path is already a scan directory is read from there, as ``run`` does), one
:func:`compare_pair` per baseline × relapse pair of a patient (``pairs/PAIR.*``: events, verdict,
report, VCF) and one cohort step (:func:`aggregate_cohort`: cohort tables, report, MultiQC files).
Both call the functions ``run`` calls (``cohort.write_pair_outputs``,
``cohort.write_cohort_outputs``), so the workflow writes the files ``run`` writes, plus its
``logs/``.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import polars as pl

from cd22scan.cohort.run import (
    DISPERSION_FILE,
    Pair,
    SheetRow,
    learn_dispersion,
    patient_cars,
    plan_cohort,
    read_dispersion,
    read_sample_sheet,
    write_cohort_outputs,
    write_dispersion,
    write_pair_outputs,
)
from cd22scan.comparison.pair import VERDICT_COLUMNS, Thresholds, compare_samples
from cd22scan.errors import InputError
from cd22scan.outputs.files import prepare_out_dir
from cd22scan.outputs.scandir import SCAN_SUFFIXES, load_scan
from cd22scan.sample.scan import ScanResult

__all__ = [
    "SCAN_SUFFIXES",
    "Pair",
    "aggregate_cohort",
    "compare_pair",
    "learn_cohort_dispersion",
    "plan_cohort",
    "scan_directory",
    "snakefile_path",
    "thresholds_from_args",
]

# The files of one sample in a scan directory: scandir.SCAN_SUFFIXES (re-exported).

# The pair's events with their types (PAIR.events.parquet, written beside the TSV as by `run`),
# read by the cohort step: the TSV cannot tell an empty string from a missing value, and
# cohort_events.parquet must equal run's.
TYPED_EVENTS_SUFFIX = "events.parquet"


def snakefile_path() -> Path:
    """Path of the installed Snakefile (for ``snakemake --snakefile``)."""
    path = Path(str(resources.files("cd22scan.cohort").joinpath("snakemake", "Snakefile")))
    if not path.is_file():
        raise InputError(f"{path}: the packaged Snakefile is missing (broken installation?)")
    return path


def scan_directory(row: SheetRow, out: str | Path) -> Path:
    """Where a sample's scan is: its sheet path when that is a scan directory, else OUT/scans
    (where ``run`` writes it too)."""
    return row.path if row.path.is_dir() else Path(out) / "scans"


def thresholds_from_args(compare_args: str = "") -> Thresholds:
    """The calling thresholds that ``cd22scan compare COMPARE_ARGS`` uses."""
    return Thresholds.from_args(compare_args)


def _load(row: SheetRow, out: Path) -> ScanResult:
    return load_scan(scan_directory(row, out), row.sample)


def learn_cohort_dispersion(
    samplesheet: str | Path, out: str | Path, compare_args: str = "", fixed: bool = False
) -> Path:
    """The dispersion step of the workflow, once before the comparisons: what ``run`` learns from
    the cohort's baselines (``cohort.learn_dispersion``), written to ``OUT/dispersion.json``
    for every compare step to read."""
    rows = read_sample_sheet(samplesheet)
    pairs, _, _ = plan_cohort(rows)
    out = prepare_out_dir(out)
    by_name = {row.sample: row for row in rows}

    @functools.cache
    def load(name: str) -> ScanResult:  # the gene's name below reuses a baseline's scan
        return _load(by_name[name], out)

    _, record = learn_dispersion(pairs, load, thresholds_from_args(compare_args), not fixed)
    if not pairs:
        return write_dispersion(out, {})
    return write_dispersion(out, {load(pairs[0].baseline).model.gene: record})


def compare_pair(
    samplesheet: str | Path, out: str | Path, pair_name: str, compare_args: str = ""
) -> dict[str, Path]:
    """The compare step of the workflow: one pair, the per-pair files of ``cd22scan run``
    (``cohort.write_pair_outputs``) plus the typed events for the cohort step; tested with the
    dispersions of OUT/dispersion.json (``learn_cohort_dispersion``)."""
    rows = {row.sample: row for row in read_sample_sheet(samplesheet)}
    pairs, _, _ = plan_cohort(list(rows.values()))
    by_name = {pair.name: pair for pair in pairs}
    if pair_name not in by_name:
        raise InputError(f"{samplesheet}: no pair {pair_name!r} in the sample sheet")
    pair = by_name[pair_name]
    out = Path(out)
    baseline, relapse = _load(rows[pair.baseline], out), _load(rows[pair.relapse], out)
    cars = patient_cars(list(rows.values())).get(pair.patient, {})  # the sheet's car column
    # OUT/dispersion.json: the dispersion step's (the Snakefile runs it before every compare)
    thresholds = read_dispersion(
        out / DISPERSION_FILE, thresholds_from_args(compare_args), baseline.model.gene
    )
    comparison = compare_samples(
        baseline, relapse, thresholds=thresholds, binder=cars.get(baseline.model.gene)
    )
    pairs_dir = prepare_out_dir(out / "pairs")
    write_pair_outputs(pairs_dir, pair.patient, comparison, baseline, relapse)
    typed = pairs_dir / f"{pair.name}.{TYPED_EVENTS_SUFFIX}"
    return {"events": pairs_dir / f"{pair.name}.events.tsv", "typed_events": typed}


def aggregate_cohort(
    samplesheet: str | Path, out: str | Path, compare_args: str = ""
) -> dict[str, Path]:
    """The cohort step of the workflow: read every pair written by :func:`compare_pair` and
    write the cohort files of ``cd22scan run`` (``cohort.write_cohort_outputs``)."""
    rows = read_sample_sheet(samplesheet)
    pairs, unpaired, patients = plan_cohort(rows)
    thresholds = thresholds_from_args(compare_args)
    out = prepare_out_dir(out)
    pairs_dir = out / "pairs"
    verdict_schema = {"patient": pl.Utf8, **VERDICT_COLUMNS}
    events, verdicts = [], []
    for pair in pairs:
        typed = pairs_dir / f"{pair.name}.{TYPED_EVENTS_SUFFIX}"
        verdict = pairs_dir / f"{pair.name}.verdict.tsv"
        try:
            events.append(pl.read_parquet(typed))
            verdicts.append(pl.read_csv(verdict, separator="\t", schema=verdict_schema))
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InputError(
                f"{pairs_dir}: cannot read the comparison {pair.name} ({exc})"
            ) from None
    scans = [_load(row, out) for row in rows]
    return write_cohort_outputs(out, events, verdicts, unpaired, patients, thresholds, scans)
