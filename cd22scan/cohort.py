"""A cohort: sample sheet → one scan per sample (in parallel) → every baseline-vs-relapse pair of a
patient → cohort tables ("escape by mechanism: k of n patients").

Sample sheet (TSV or CSV, header required): patient, sample, timepoint (baseline/relapse), path
(BAM/CRAM/SAM or a scan directory), optional reference. Relative paths are resolved against the
sheet's folder; nothing in the sheet is ever executed.
"""

from __future__ import annotations

import csv
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from cd22scan.compare import Comparison, Thresholds, compare_samples
from cd22scan.errors import Cd22scanError, InputError
from cd22scan.multiqc import sample_metrics, write_multiqc_files
from cd22scan.outputs import prepare_out_dir, write_json, write_parquet, write_scan, write_tsv
from cd22scan.report_html import write_cohort_report, write_pair_report
from cd22scan.scandir import load_scan
from cd22scan.scanner import ScanParams, ScanResult, scan

log = logging.getLogger("cd22scan")

# Workers are spawned, not forked: a fork copies the parent's thread pools (polars, htslib)
# with their locks held, and the child can hang forever on its first use of them.
_SPAWN = multiprocessing.get_context("spawn")

REQUIRED = ("patient", "sample", "timepoint", "path")
TIMEPOINTS = ("baseline", "relapse")
MECHANISMS = (
    ("antigen_loss", "antigen loss"),
    ("aberrant_splicing", "aberrant splicing"),
    ("mutation", "mutation"),
)


@dataclass(frozen=True)
class SheetRow:
    patient: str
    sample: str
    timepoint: str
    path: Path
    reference: Path | None
    line: int


def read_sample_sheet(path: str | Path) -> list[SheetRow]:
    sheet = Path(path)
    if not sheet.is_file():
        raise InputError(f"{sheet}: sample sheet not found")
    text = sheet.read_text()
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if "\t" in first else ","
    reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise InputError(
            f"{sheet}: missing column(s) {', '.join(missing)} (need {', '.join(REQUIRED)}; "
            f"found {', '.join(columns) or 'no header'})"
        )
    rows: list[SheetRow] = []
    seen: dict[str, int] = {}
    for line, raw in enumerate(reader, start=2):
        record = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(record.values()):
            continue
        for column in REQUIRED:
            if not record.get(column):
                raise InputError(f"{sheet}:{line}: empty {column}")
        timepoint = record["timepoint"].lower()
        if timepoint not in TIMEPOINTS:
            given = record["timepoint"]
            raise InputError(
                f"{sheet}:{line}: timepoint must be baseline or relapse, got {given!r}"
            )
        name = record["sample"]
        if name in seen:
            raise InputError(f"{sheet}:{line}: sample {name!r} already on line {seen[name]}")
        if "/" in name or name.startswith("."):
            raise InputError(f"{sheet}:{line}: sample name {name!r} cannot be used as a file name")
        seen[name] = line
        target = (sheet.parent / record["path"]).resolve()
        if not target.exists():
            raise InputError(f"{sheet}:{line}: {record['path']} not found (looked at {target})")
        reference = record.get("reference") or None
        ref_path = (sheet.parent / reference).resolve() if reference else None
        if ref_path is not None and not ref_path.exists():
            raise InputError(f"{sheet}:{line}: reference {reference} not found")
        rows.append(SheetRow(record["patient"], name, timepoint, target, ref_path, line))
    if not rows:
        raise InputError(f"{sheet}: no samples")
    return rows


def _scan_one(row: SheetRow, params: ScanParams, scans_dir: Path) -> ScanResult:
    if row.path.is_dir():
        return load_scan(row.path, row.sample)
    sample_params = replace(
        params,
        sample=row.sample,
        reference=str(row.reference) if row.reference else params.reference,
    )
    result = scan(str(row.path), sample_params)
    write_scan(result, scans_dir)
    return result


def _scan_worker(row: SheetRow, params: ScanParams, scans_dir: Path) -> tuple[str, str | None]:
    """Runs in a worker process: scan, write, return (sample, error message or None)."""
    try:
        _scan_one(row, params, scans_dir)
        return row.sample, None
    except Cd22scanError as exc:
        return row.sample, str(exc)


def scan_all(rows: list[SheetRow], params: ScanParams, scans_dir: Path, jobs: int) -> None:
    """Scan every sample once; a failed sample stops the run with its one-line reason."""
    todo = [r for r in rows if not r.path.is_dir()]
    if not todo:
        return
    errors: list[str] = []
    done = 0
    if jobs <= 1:
        for row in todo:
            _, error = _scan_worker(row, params, scans_dir)
            done += 1
            log.info("[%d/%d] scanned %s", done, len(todo), row.sample)
            if error:
                errors.append(error)
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=_SPAWN) as pool:
            futures = [pool.submit(_scan_worker, row, params, scans_dir) for row in todo]
            for future in as_completed(futures):
                sample, error = future.result()
                done += 1
                log.info("[%d/%d] scanned %s", done, len(todo), sample)
                if error:
                    errors.append(error)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InputError(errors[0] + more)


def _load(row: SheetRow, scans_dir: Path) -> ScanResult:
    return load_scan(row.path if row.path.is_dir() else scans_dir, row.sample)


def cohort_summary(verdicts: pl.DataFrame, patients: list[str]) -> pl.DataFrame:
    """How many patients show each mechanism in any of their pairs, as the papers report it."""
    compared = sorted(set(verdicts["patient"].to_list())) if verdicts.height else []
    rows = []
    for column, label in (*MECHANISMS, ("any_escape", "any escape")):
        if verdicts.height:
            flag = (
                pl.any_horizontal([pl.col(c) for c, _ in MECHANISMS])
                if column == "any_escape"
                else pl.col(column)
            )
            hit = verdicts.filter(flag)["patient"].unique().sort().to_list()
        else:
            hit = []
        rows.append(
            {
                "mechanism": column,
                "patients_with": len(hit),
                "patients_compared": len(compared),
                "patients_in_sheet": len(patients),
                "patients": ",".join(hit),
                "text": f"{label} {len(hit)} of {len(compared)}",
            }
        )
    return pl.DataFrame(rows)


def write_pair_tables(
    pairs_dir: Path, patient: str, pair: str, events: pl.DataFrame, verdict: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Write PAIR.events.tsv and PAIR.verdict.tsv with a leading patient column; return both."""
    tag = pl.lit(patient).alias("patient")
    ev, vd = events.select(tag, pl.all()), verdict.select(tag, pl.all())
    write_tsv(ev, pairs_dir / f"{pair}.events.tsv")
    write_tsv(vd, pairs_dir / f"{pair}.verdict.tsv")
    return ev, vd


def write_cohort_tables(
    out: Path,
    events: list[pl.DataFrame],
    verdicts: list[pl.DataFrame],
    unpaired: list[dict[str, str]],
    patients: list[str],
    thresholds: Thresholds,
    n_samples: int,
) -> tuple[dict[str, Path], pl.DataFrame, pl.DataFrame]:
    """The cohort tables of `cd22scan run` (also written by the Snakemake cohort rule).

    Returns (written files, all verdicts, cohort summary)."""
    all_events = pl.concat(events, how="diagonal_relaxed") if events else pl.DataFrame()
    all_verdicts = pl.concat(verdicts, how="diagonal_relaxed") if verdicts else pl.DataFrame()
    summary = cohort_summary(all_verdicts, patients)
    written = {
        "cohort_events": write_tsv(all_events, out / "cohort_events.tsv"),
        "cohort_verdicts": write_tsv(all_verdicts, out / "cohort_verdicts.tsv"),
        "cohort_summary": write_tsv(summary, out / "cohort_summary.tsv"),
        "unpaired": write_tsv(
            pl.DataFrame(unpaired, schema=["patient", "sample", "timepoint", "reason"]),
            out / "unpaired_samples.tsv",
        ),
    }
    if all_events.height:
        written["cohort_events_parquet"] = write_parquet(all_events, out / "cohort_events.parquet")
    written["cohort_json"] = write_json(
        {"thresholds": thresholds.as_dict(), "samples": n_samples, "patients": len(patients)},
        out / "cohort.json",
    )
    return written, all_verdicts, summary


def run_cohort(
    sheet: str | Path,
    out_dir: str | Path,
    params: ScanParams | None = None,
    *,
    thresholds: Thresholds | None = None,
    jobs: int = 1,
) -> dict[str, Path]:
    params = params or ScanParams()
    thresholds = thresholds or Thresholds()
    rows = read_sample_sheet(sheet)
    out = prepare_out_dir(out_dir)
    scans_dir = prepare_out_dir(out / "scans")
    log.info("scanning %d samples with %d job(s)", len(rows), jobs)
    scan_all(rows, params, scans_dir, jobs)
    by_patient: dict[str, dict[str, list[SheetRow]]] = {}
    for row in rows:
        by_patient.setdefault(row.patient, {"baseline": [], "relapse": []})[row.timepoint].append(
            row
        )
    events, verdicts, unpaired = [], [], []
    pairs_dir = prepare_out_dir(out / "pairs")
    for patient in sorted(by_patient):
        group = by_patient[patient]
        if not group["baseline"] or not group["relapse"]:
            missing = "baseline" if not group["baseline"] else "relapse"
            for row in group["baseline"] + group["relapse"]:
                unpaired.append(
                    {"patient": patient, "sample": row.sample, "timepoint": row.timepoint,
                     "reason": f"no {missing} sample for this patient"}
                )  # fmt: skip
            lines = ", ".join(str(r.line) for r in group["baseline"] + group["relapse"])
            log.warning(
                "%s (line %s): patient %s has no %s sample: scanned, not compared "
                "(listed in unpaired_samples.tsv)",
                sheet,
                lines,
                patient,
                missing,
            )
            continue
        for base in group["baseline"]:
            for rel in group["relapse"]:
                base_scan, rel_scan = _load(base, scans_dir), _load(rel, scans_dir)
                comparison: Comparison = compare_samples(base_scan, rel_scan, thresholds=thresholds)
                write_pair_report(
                    comparison, base_scan, rel_scan, pairs_dir / f"{comparison.pair}.report.html"
                )
                ev, vd = write_pair_tables(
                    pairs_dir, patient, comparison.pair, comparison.events, comparison.verdict
                )
                events.append(ev)
                verdicts.append(vd)
    written, all_verdicts, summary = write_cohort_tables(
        out, events, verdicts, unpaired, sorted(by_patient), thresholds, len(rows)
    )
    written["report"] = write_cohort_report(out)
    per_sample = [sample_metrics(_load(row, scans_dir)) for row in rows]
    written["multiqc"] = out
    write_multiqc_files(out, all_verdicts, per_sample)
    for line in summary["text"].to_list():
        log.info("%s", line)
    return written
