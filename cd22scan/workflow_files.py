"""The Snakemake workflow shipped with the package (DESIGN.md, Scale): the steps of `cd22scan run`
as rules, so a cluster executor can spread a cohort of hundreds of BAMs over many machines.

    snakemake --snakefile "$(cd22scan workflow path)" --cores 8 \\
        --config samplesheet=samples.tsv out=cohort_out scan_args="--gtf genes.gtf --gene CD22"

Rules: one ``cd22scan scan`` per BAM/CRAM sample (into ``OUT/scans/SAMPLE/``; a sample whose sheet
path is already a scan directory is copied there instead), one ``cd22scan compare`` per
baseline × relapse pair of a patient (into ``OUT/pairs/PAIR/``), and one cohort step
(:func:`aggregate_cohort`) writing the same tables as ``cd22scan run``: ``pairs/PAIR.events.tsv``
and ``.verdict.tsv``, ``cohort_events.tsv`` (+ ``.parquet``), ``cohort_verdicts.tsv``,
``cohort_summary.tsv``, ``unpaired_samples.tsv`` and ``cohort.json``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import polars as pl

from cd22scan.cohort import (
    TIMEPOINTS,
    SheetRow,
    read_sample_sheet,
    write_cohort_tables,
    write_pair_tables,
)
from cd22scan.compare import VERDICT_COLUMNS, Thresholds
from cd22scan.errors import InputError, UsageError
from cd22scan.outputs import prepare_out_dir

__all__ = [
    "SCAN_SUFFIXES",
    "Pair",
    "aggregate_cohort",
    "plan_cohort",
    "snakefile_path",
    "thresholds_from_args",
]

# The files of one sample in a scan directory (outputs.write_scan), summary (the completion mark)
# last.
SCAN_SUFFIXES = (
    "exons.tsv",
    "junctions.tsv",
    "introns.tsv",
    "indels.tsv",
    "bases.parquet",
    "summary.json",
)


def snakefile_path() -> Path:
    """Path of the installed Snakefile (for ``snakemake --snakefile``)."""
    path = Path(str(resources.files("cd22scan").joinpath("workflow", "Snakefile")))
    if not path.is_file():
        raise InputError(f"{path}: the packaged Snakefile is missing (broken installation?)")
    return path


@dataclass(frozen=True)
class Pair:
    """One baseline × relapse comparison of a patient."""

    patient: str
    baseline: str
    relapse: str

    @property
    def name(self) -> str:  # Comparison.pair
        return f"{self.baseline}_vs_{self.relapse}"


def plan_cohort(rows: list[SheetRow]) -> tuple[list[Pair], list[dict[str, str]], list[str]]:
    """Pairs to compare, unpaired samples and patients, in the order ``run_cohort`` uses
    (patients sorted; each baseline × each relapse in sheet order)."""
    by_patient: dict[str, dict[str, list[SheetRow]]] = {}
    for row in rows:
        group = by_patient.setdefault(row.patient, {t: [] for t in TIMEPOINTS})
        group[row.timepoint].append(row)
    pairs: list[Pair] = []
    unpaired: list[dict[str, str]] = []
    for patient in sorted(by_patient):
        group = by_patient[patient]
        if not group["baseline"] or not group["relapse"]:
            missing = "baseline" if not group["baseline"] else "relapse"
            for row in group["baseline"] + group["relapse"]:
                unpaired.append(
                    {"patient": patient, "sample": row.sample, "timepoint": row.timepoint,
                     "reason": f"no {missing} sample for this patient"}
                )  # fmt: skip
            continue
        for base in group["baseline"]:
            for rel in group["relapse"]:
                pairs.append(Pair(patient, base.sample, rel.sample))
    names: dict[str, Pair] = {}
    for pair in pairs:
        if pair.name in names:
            raise InputError(
                f"pair name {pair.name!r} is ambiguous ({names[pair.name]} and {pair}); "
                "rename a sample"
            )
        names[pair.name] = pair
    return pairs, unpaired, sorted(by_patient)


def thresholds_from_args(compare_args: str = "") -> Thresholds:
    """The calling thresholds that ``cd22scan compare COMPARE_ARGS`` uses."""
    from cd22scan import cli

    argv = ["compare", "--baseline", "-", "--relapse", "-", "--out", "-"]
    try:
        args = cli.build_parser().parse_args([*argv, *shlex.split(compare_args)])
    except SystemExit:
        raise UsageError(f"compare_args {compare_args!r}: not valid compare options") from None
    return cli.thresholds_from_namespace(args)


def aggregate_cohort(
    samplesheet: str | Path, out: str | Path, compare_args: str = ""
) -> dict[str, Path]:
    """The cohort step of the workflow: read every ``OUT/pairs/PAIR/`` written by
    ``cd22scan compare`` and write the cohort tables of ``cd22scan run``."""
    rows = read_sample_sheet(samplesheet)
    pairs, unpaired, patients = plan_cohort(rows)
    thresholds = thresholds_from_args(compare_args)
    out = prepare_out_dir(out)
    pairs_dir = prepare_out_dir(out / "pairs")
    events, verdicts = [], []
    for pair in pairs:
        where = pairs_dir / pair.name
        try:
            ev = pl.read_parquet(where / "events.parquet")
            vd = pl.read_csv(
                where / "verdict.tsv", separator="\t", schema_overrides=VERDICT_COLUMNS
            )
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InputError(f"{where}: cannot read the comparison ({exc})") from None
        ev, vd = write_pair_tables(pairs_dir, pair.patient, pair.name, ev, vd)
        events.append(ev)
        verdicts.append(vd)
    written, _verdicts, _summary = write_cohort_tables(
        out, events, verdicts, unpaired, patients, thresholds, len(rows)
    )
    return written
