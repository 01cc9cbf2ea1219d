"""A cohort: sample sheet → one scan per sample (in parallel) → every baseline-vs-relapse pair of a
patient → cohort tables ("escape by mechanism: k of n patients").

Sample sheet (TSV or CSV, header required): patient, sample, timepoint (baseline/relapse), path
(BAM/CRAM/SAM or a scan directory), optional reference, optional car (the patient's CAR binders,
``CD22:m971`` or ``CD19:FMC63;CD22:m971``: every row of a patient that fills it must agree; it
replaces ``--car`` for that patient). Relative paths are resolved against the sheet's folder;
nothing in the sheet is ever executed.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from cd22scan.comparison.dispersion import MIN_BASELINES, PRIOR_DF, calibrate
from cd22scan.comparison.pair import Comparison, Thresholds, compare_samples
from cd22scan.console import progress, setup_worker
from cd22scan.errors import Cd22scanError, InputError, UsageError
from cd22scan.outputs.files import (
    MANIFEST,
    prepare_out_dir,
    read_manifest,
    write_json,
    write_manifest,
    write_table,
)
from cd22scan.outputs.html import write_cohort_report, write_pair_report
from cd22scan.outputs.multiqc import sample_metrics, write_multiqc_files
from cd22scan.outputs.scandir import load_scan, long_read_file_names, scan_file_names, write_scan
from cd22scan.outputs.vcf import NO_REFERENCE_NOTE, write_pair_vcf
from cd22scan.sample.scan import ScanParams, ScanResult, load_target, scan
from cd22scan.target.annotation import GeneModel
from cd22scan.target.binders import Binder, parse_cars

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
    car: str = ""  # the sheet's car column ("" when absent or empty)


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
        car = record.get("car", "")
        if car:
            parse_cars([car.replace(";", ",")])  # a malformed value fails here, with its line
        rows.append(SheetRow(record["patient"], name, timepoint, target, ref_path, line, car))
    if not rows:
        raise InputError(f"{sheet}: no samples")
    return rows


def _scan_one(
    row: SheetRow, params: ScanParams, scans_dir: Path, model: GeneModel | None
) -> ScanResult:
    if row.path.is_dir():
        return load_scan(row.path, row.sample)
    sample_params = replace(
        params,
        sample=row.sample,
        reference=str(row.reference) if row.reference else params.reference,
    )
    result = scan(str(row.path), sample_params, model=model)
    write_scan(result, scans_dir)
    return result


def _scan_worker(
    row: SheetRow, params: ScanParams, scans_dir: Path, model: GeneModel | None
) -> tuple[str, str | None]:
    """Runs in a worker process: scan, write, return (sample, error message or None).
    ``model``: the GTF's model parsed once in the parent (None for a built-in model)."""
    try:
        _scan_one(row, params, scans_dir, model)
        return row.sample, None
    except Cd22scanError as exc:
        return row.sample, str(exc)


@contextlib.contextmanager
def worker_pool(jobs: int) -> Iterator[ProcessPoolExecutor | None]:
    """``jobs`` spawned worker processes (started once, for scans and comparisons), or None."""
    if jobs <= 1:
        yield None
        return
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=_SPAWN,
        initializer=setup_worker,
        initargs=(log.getEffectiveLevel(),),
    ) as pool:
        yield pool


T = TypeVar("T")


def _each_done(
    pool: ProcessPoolExecutor | None, work: Callable[..., T], tasks: list[tuple[Any, ...]]
) -> Iterator[tuple[int, T]]:
    """(index, ``work(*task)``) for every task as it finishes: in ``pool`` if given, else here,
    in order."""
    if pool is None:
        for k, task in enumerate(tasks):
            yield k, work(*task)
        return
    futures = {pool.submit(work, *task): k for k, task in enumerate(tasks)}
    for future in as_completed(futures):
        yield futures[future], future.result()


def scan_all(
    rows: list[SheetRow], params: ScanParams, scans_dir: Path, pool: ProcessPoolExecutor | None
) -> None:
    """Scan every sample once (in ``pool`` if given); a failed sample stops the run with its
    one-line reason."""
    todo = [r for r in rows if not r.path.is_dir()]
    if not todo:
        return
    # The GTF is parsed here, once, and the model handed to every worker (a full GENCODE GTF
    # takes seconds to parse); scan directories carry their model, so nothing re-reads it.
    model = load_target(params)
    errors: list[str] = []
    with progress("samples scanned", unit=" samples", total=len(todo)) as bar:
        tasks = [(row, params, scans_dir, model) for row in todo]
        # Counted here: a bar not shown (no terminal, as in a pipeline's log) counts nothing.
        for done, (_, (sample, error)) in enumerate(_each_done(pool, _scan_worker, tasks), 1):
            bar.update(1)
            log.info("[%d/%d] scanned %s", done, len(todo), sample)
            if error:
                errors.append(error)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InputError(errors[0] + more)


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


def warn_unpaired(sheet: str | Path, rows: list[SheetRow], unpaired: list[dict[str, str]]) -> None:
    """One warning per patient without a baseline or a relapse, naming the sheet's lines."""
    lines = {row.sample: row.line for row in rows}
    by_patient: dict[str, list[dict[str, str]]] = {}
    for row in unpaired:
        by_patient.setdefault(row["patient"], []).append(row)
    for patient, group in by_patient.items():
        present = {row["timepoint"] for row in group}
        missing = "baseline" if "baseline" not in present else "relapse"
        log.warning(
            "%s (line %s): patient %s has no %s sample: scanned, not compared "
            "(listed in unpaired_samples.tsv)",
            sheet,
            ", ".join(str(lines[row["sample"]]) for row in group),
            patient,
            missing,
        )


def patient_cars(
    rows: list[SheetRow], default: dict[str, Binder] | None = None
) -> dict[str, dict[str, Binder]]:
    """{patient: {gene: Binder}}: the sheet's car column where a patient's rows fill it (they
    must agree), else ``default`` (``--car``)."""
    given: dict[str, tuple[str, int]] = {}
    for row in rows:
        if not row.car:
            continue
        seen = given.get(row.patient)
        if seen and seen[0] != row.car:
            raise InputError(
                f"patient {row.patient}: car {row.car!r} on line {row.line} differs from "
                f"{seen[0]!r} on line {seen[1]}"
            )
        given[row.patient] = (row.car, row.line)
    out = {}
    for patient in {row.patient for row in rows}:
        if patient in given:
            out[patient] = parse_cars([given[patient][0].replace(";", ",")])
        else:
            out[patient] = dict(default or {})
    return out


def _load(row: SheetRow, scans_dir: Path) -> ScanResult:
    return load_scan(row.path if row.path.is_dir() else scans_dir, row.sample)


def _event_label(row: dict[str, Any]) -> str:
    if row["event_type"] == "expression_loss":
        return "expression loss"
    if row["event_type"] == "mutation":
        return row.get("hgvs_p") or row["feature"]
    return row.get("known_event") or row["feature"]


_MECHANISM_OF = {
    "expression_loss": "antigen_loss",
    "exon_loss": "antigen_loss",
    "exon_skipping": "aberrant_splicing",
    "intron_retention": "aberrant_splicing",
    "novel_junction": "aberrant_splicing",
    "isoform_shift": "aberrant_splicing",
    "mutation": "mutation",
}


def _by_event(events: pl.DataFrame | None) -> dict[str, str]:
    """{mechanism column: "Δex2 2, c.412del 1"}: patients per escape event, most first."""
    if events is None or events.height == 0 or "escape" not in events.columns:
        return {}
    patients: dict[str, dict[str, set[str]]] = {}
    for row in events.filter(pl.col("escape").fill_null(False)).iter_rows(named=True):
        column = _MECHANISM_OF.get(row["event_type"])
        if column is None:
            continue
        label = _event_label(row)
        for key in (column, "any_escape"):
            patients.setdefault(key, {}).setdefault(label, set()).add(row.get("patient") or "")
    return {
        key: ", ".join(
            f"{label} {len(who)}"
            for label, who in sorted(found.items(), key=lambda item: (-len(item[1]), item[0]))
        )
        for key, found in patients.items()
    }


def cohort_summary(
    verdicts: pl.DataFrame, patients: list[str], events: pl.DataFrame | None = None
) -> pl.DataFrame:
    """How many patients show each mechanism in any of their pairs, out of the patients in whom
    it could have been seen (as the papers report it, with the denominator stated), per gene.

    A patient counts as assessable for a mechanism when any pair's ``MECHANISM_status`` is not
    ``not assessable (...)`` (a verdict without status columns, from before they existed, is
    taken as assessable) or when a pair shows it; ``any_escape`` is assessable when every
    mechanism is. ``events`` (with a ``patient`` column) adds ``by_event``: patients per escape
    event ("Δex2 5, c.412del 1"), also at the end of ``text``. With several genes (a panel run)
    there is one block of rows per gene, its text starting with the gene."""
    genes = (
        list(dict.fromkeys(verdicts["gene"].to_list()))
        if verdicts.height and "gene" in verdicts.columns
        else []
    )
    if len(genes) > 1:
        blocks = []
        for gene in genes:
            mine = events.filter(pl.col("gene") == gene) if events is not None else None
            block = _gene_summary(verdicts.filter(pl.col("gene") == gene), patients, mine)
            block = block.with_columns(
                (pl.lit(f"{gene} ") + pl.col("text")).alias("text"), pl.lit(gene).alias("gene")
            )
            blocks.append(block)
        return pl.concat(blocks, how="vertical")
    summary = _gene_summary(verdicts, patients, events)
    return summary.with_columns(pl.lit(genes[0] if genes else None, pl.Utf8).alias("gene"))


def _gene_summary(
    verdicts: pl.DataFrame, patients: list[str], events: pl.DataFrame | None
) -> pl.DataFrame:
    compared = sorted(set(verdicts["patient"].to_list())) if verdicts.height else []
    escape: dict[str, set[str]] = {}
    assessable: dict[str, set[str]] = {}
    for column, _ in MECHANISMS:
        escape[column], assessable[column] = set(), set()
        status = f"{column}_status"
        for row in verdicts.iter_rows(named=True) if verdicts.height else ():
            if row.get(column):
                escape[column].add(row["patient"])
            text = row.get(status)
            if row.get(column) or not (text or "").startswith("not assessable"):
                assessable[column].add(row["patient"])
    escape["any_escape"] = set().union(*(escape[c] for c, _ in MECHANISMS))
    assessable["any_escape"] = escape["any_escape"] | set.intersection(
        *(assessable[c] for c, _ in MECHANISMS)
    )
    by_event = _by_event(events)
    rows = []
    for column, label in (*MECHANISMS, ("any_escape", "any escape")):
        hit = sorted(escape[column])
        n_ok = len(assessable[column])
        n_not = len(compared) - n_ok
        text = f"{label} {len(hit)} of {n_ok} assessable" + (f", {n_not} not" if n_not else "")
        detail = by_event.get(column, "") if hit else ""
        rows.append(
            {
                "mechanism": column,
                "patients_with": len(hit),
                "patients_compared": len(compared),
                "patients_assessable": n_ok,
                "patients_not_assessable": n_not,
                "patients_in_sheet": len(patients),
                "patients": ",".join(hit),
                "text": text + (f" ({detail})" if detail else ""),
                "by_event": detail,
            }
        )
    return pl.DataFrame(rows, schema_overrides={"by_event": pl.Utf8})


def write_pair_tables(
    pairs_dir: Path, patient: str, pair: str, events: pl.DataFrame, verdict: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Write PAIR.events and PAIR.verdict (.tsv and .parquet) with a leading patient column;
    return both."""
    tag = pl.lit(patient).alias("patient")
    ev, vd = events.select(tag, pl.all()), verdict.select(tag, pl.all())
    write_table(ev, pairs_dir / f"{pair}.events.tsv")
    write_table(vd, pairs_dir / f"{pair}.verdict.tsv")
    return ev, vd


def write_pair_outputs(
    pairs_dir: Path,
    patient: str,
    comparison: Comparison,
    baseline: ScanResult,
    relapse: ScanResult,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Everything `run` writes for one pair: PAIR.report.html, PAIR.variants.vcf.gz (+ .tbi),
    PAIR.events.tsv and PAIR.verdict.tsv (returned, with the patient column)."""
    pair = comparison.pair
    write_pair_report(comparison, baseline, relapse, pairs_dir / f"{pair}.report.html")
    write_pair_vcf(comparison, baseline, pairs_dir / f"{pair}.variants.vcf.gz")
    return write_pair_tables(pairs_dir, patient, pair, comparison.events, comparison.verdict)


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
    summary = cohort_summary(all_verdicts, patients, all_events)
    written = {
        "cohort_events": write_table(all_events, out / "cohort_events.tsv"),
        "cohort_verdicts": write_table(all_verdicts, out / "cohort_verdicts.tsv"),
        "cohort_summary": write_table(summary, out / "cohort_summary.tsv"),
        "unpaired": write_table(
            pl.DataFrame(unpaired, schema=["patient", "sample", "timepoint", "reason"]),
            out / "unpaired_samples.tsv",
        ),
    }
    written["cohort_json"] = write_json(
        {"thresholds": thresholds.as_dict(), "samples": n_samples, "patients": len(patients)},
        out / "cohort.json",
    )
    return written, all_verdicts, summary


def write_cohort_outputs(
    out: Path,
    events: list[pl.DataFrame],
    verdicts: list[pl.DataFrame],
    unpaired: list[dict[str, str]],
    patients: list[str],
    thresholds: Thresholds,
    scans: list[ScanResult],
) -> dict[str, Path]:
    """Everything `run` writes for the cohort (also the Snakemake cohort step): the tables of
    ``write_cohort_tables``, report.html and the MultiQC files; ``scans``: every sample."""
    written, all_verdicts, summary = write_cohort_tables(
        out, events, verdicts, unpaired, patients, thresholds, len(scans)
    )
    written["report"] = write_cohort_report(out)
    all_events = pl.concat(events, how="diagonal_relaxed") if events else pl.DataFrame()
    metrics = [sample_metrics(result) for result in scans]
    for path in write_multiqc_files(out, all_verdicts, metrics, all_events):
        written[f"multiqc:{path.name}"] = path
    for line in summary["text"].to_list():
        log.info("%s", line)
    return written


def _compare_worker(
    pair: Pair,
    baseline: SheetRow,
    relapse: SheetRow,
    scans_dir: Path,
    pairs_dir: Path,
    thresholds: Thresholds,
    cars: dict[str, Binder],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One pair (in a worker process or not): compare, write its files, return its tables."""
    base_scan, rel_scan = _load(baseline, scans_dir), _load(relapse, scans_dir)
    comparison: Comparison = compare_samples(
        base_scan, rel_scan, thresholds=thresholds, binder=cars.get(base_scan.model.gene)
    )
    log.debug("%s: %s", pair.name, comparison.verdict["verdict"][0])
    return write_pair_outputs(pairs_dir, pair.patient, comparison, base_scan, rel_scan)


DISPERSION_FILE = "dispersion.json"  # per gene: the dispersions the pairs were tested with


def learn_dispersion(
    pairs: list[Pair],
    load: Callable[[str], ScanResult],
    thresholds: Thresholds,
    calibrate_dispersion: bool = True,
) -> tuple[Thresholds, dict[str, Any]]:
    """``thresholds`` with the dispersions learned from the pairs' distinct baselines
    (``comparison.dispersion``; ``load`` gives a sample's scan, so a caller that holds them
    already does not read them again), or as given with fewer than ``MIN_BASELINES`` of them or
    without ``calibrate_dispersion``; and the record of what was done (one gene's entry of
    ``DISPERSION_FILE``, read back by ``thresholds_from_record``)."""
    names = sorted({pair.baseline for pair in pairs})
    record: dict[str, Any] = {
        "source": "fixed",
        "baselines": len(names),
        "min_baselines": MIN_BASELINES,
        "prior_df": PRIOR_DF,
        "fixed": {"dispersion": thresholds.dispersion,
                  "expression_dispersion": thresholds.expression_dispersion},
        "learned": [],
    }  # fmt: skip
    if not calibrate_dispersion or len(names) < MIN_BASELINES:
        why = (
            "--fixed-dispersion"
            if not calibrate_dispersion
            else (f"{len(names)} baseline(s), a cohort needs {MIN_BASELINES} to learn its own")
        )
        record["reason"] = why
        log.info("dispersion: fixed (rho %g, expression phi %g): %s", thresholds.dispersion,
                 thresholds.expression_dispersion, why)  # fmt: skip
        return thresholds, record
    scans = [load(name) for name in names]
    calibration = calibrate(scans, thresholds)
    assert calibration is not None
    learned = calibration.thresholds(thresholds)
    record["source"] = learned.dispersion_source()
    record["learned"] = [
        {"event_type": kind, "value": value, "df": df,
         "estimate": calibration.estimates[kind][0], "estimate_df": calibration.estimates[kind][1]}
        for kind, value, df in learned.calibrated
    ]  # fmt: skip
    record["learned_features"] = [
        {"event_type": kind, "feature": name, "value": value, "df": df, "estimate": own,
         "estimate_df": own_df}
        for (kind, name), (value, df, own, own_df) in sorted(calibration.features.items())
    ]  # fmt: skip
    parts = [
        f"{x['event_type']} {x['value']:.3g} (estimate {x['estimate']:.3g}, {x['estimate_df']} df)"
        for x in record["learned"]
    ]
    parts += [f"{x['event_type']} {x['feature']} {x['value']:.3g} (its own spread)"
              for x in record["learned_features"]]  # fmt: skip
    log.info("%s dispersion from %d baselines: %s", scans[0].model.gene, len(names),
             "; ".join(parts))  # fmt: skip
    return learned, record


def read_dispersion(path: str | Path, thresholds: Thresholds, gene: str) -> Thresholds:
    """``thresholds`` with the learned values a ``DISPERSION_FILE`` holds for ``gene`` (as given
    when it holds none: the cohort had too few baselines, or --fixed-dispersion)."""
    path = Path(path)
    try:
        records = json.loads(path.read_text("utf-8"))["genes"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{path}: not a cd22scan dispersion file ({exc}); `run` writes OUT/{DISPERSION_FILE}, "
            "and so does `workflow dispersion`"
        ) from None
    if gene not in records:
        raise InputError(f"{path}: no dispersions for {gene} (genes: {', '.join(records)})")
    return thresholds_from_record(thresholds, records[gene])


def thresholds_from_record(thresholds: Thresholds, record: dict[str, Any]) -> Thresholds:
    """``thresholds`` with the learned values of one gene's ``DISPERSION_FILE`` entry."""
    learned = tuple(
        (x["event_type"], float(x["value"]), float(x["df"])) for x in record.get("learned", [])
    )
    if not learned:
        return thresholds
    wider = tuple(
        (x["event_type"], x["feature"], float(x["value"]), float(x["df"]))
        for x in record.get("learned_features", [])
    )
    return replace(
        thresholds,
        calibrated=learned,
        calibrated_features=wider,
        calibrated_from=int(record["baselines"]),
    )


def write_dispersion(out: Path, records: dict[str, dict[str, Any]]) -> Path:
    """``OUT/dispersion.json``: per gene, the dispersions its pairs were tested with."""
    return write_json({"genes": records}, out / DISPERSION_FILE)


def compare_all(
    pairs: list[Pair],
    by_name: dict[str, SheetRow],
    scans_dir: Path,
    pairs_dir: Path,
    thresholds: Thresholds,
    pool: ProcessPoolExecutor | None,
    cars: dict[str, dict[str, Binder]] | None = None,
) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
    """Every pair's events and verdict, in ``pairs`` order (compared in ``pool`` if given);
    ``cars``: each patient's binders (``patient_cars``)."""
    results: list[tuple[pl.DataFrame, pl.DataFrame] | None] = [None] * len(pairs)
    cars = cars or {}
    tasks = [
        (pair, by_name[pair.baseline], by_name[pair.relapse], scans_dir, pairs_dir, thresholds,
         cars.get(pair.patient, {}))
        for pair in pairs
    ]  # fmt: skip
    with progress("pairs compared", unit=" pairs", total=len(pairs)) as bar:
        for k, result in _each_done(pool, _compare_worker, tasks):
            results[k] = result
            bar.update(1)
    done = [r for r in results if r is not None]
    return [ev for ev, _ in done], [vd for _, vd in done]


def open_run(sheet: str | Path, out_dir: str | Path) -> tuple[list[SheetRow], Path, Path]:
    """The start of every ``run``: the sheet's rows, the output folder and its ``scans/`` folder
    (refusing ``-o -``: a run writes a folder of files)."""
    if str(out_dir) == "-":
        raise UsageError("run writes a folder of files: -o - (standard output) is not one; "
                         "give a folder")  # fmt: skip
    rows = read_sample_sheet(sheet)
    out = prepare_out_dir(out_dir)
    return rows, out, prepare_out_dir(out / "scans")


def run_cohort(
    sheet: str | Path,
    out_dir: str | Path,
    params: ScanParams | None = None,
    *,
    thresholds: Thresholds | None = None,
    jobs: int = 1,
    cars: dict[str, Binder] | None = None,
    calibrate_dispersion: bool = True,
) -> dict[str, Path]:
    """``cars``: the CAR binders by gene (``--car``) of every patient whose sheet rows leave
    the car column empty. ``calibrate_dispersion``: learn the tests' dispersions from the
    cohort's baselines when it has enough (``learn_dispersion``)."""
    params = params or ScanParams()
    thresholds = thresholds or Thresholds()
    rows, out, scans_dir = open_run(sheet, out_dir)
    log.info("scanning %d samples with %d job(s)", len(rows), jobs)
    with worker_pool(jobs) as pool:
        return _scan_and_compare(
            sheet, rows, out, scans_dir, params, thresholds, pool, cars, calibrate_dispersion
        )


def _scan_and_compare(
    sheet: str | Path,
    rows: list[SheetRow],
    out: Path,
    scans_dir: Path,
    params: ScanParams,
    thresholds: Thresholds,
    pool: ProcessPoolExecutor | None,
    cars: dict[str, Binder] | None = None,
    calibrate_dispersion: bool = True,
) -> dict[str, Path]:
    scan_all(rows, params, scans_dir, pool)
    pairs, unpaired, patients = plan_cohort(rows)
    warn_unpaired(sheet, rows, unpaired)
    by_name = {row.sample: row for row in rows}
    pairs_dir = prepare_out_dir(out / "pairs")
    by_patient = patient_cars(rows, cars)
    scans = [_load(row, scans_dir) for row in rows]
    loaded = {row.sample: result for row, result in zip(rows, scans, strict=True)}
    learned, record = learn_dispersion(pairs, loaded.__getitem__, thresholds, calibrate_dispersion)
    events, verdicts = compare_all(pairs, by_name, scans_dir, pairs_dir, learned, pool, by_patient)
    if any(not (s.summary.get("parameters") or {}).get("reference") for s in scans):
        log.info("%s", NO_REFERENCE_NOTE)  # once per run, not per sample
    written = write_cohort_outputs(out, events, verdicts, unpaired, patients, thresholds, scans)
    written["dispersion"] = write_dispersion(out, {scans[0].model.gene: record} if scans else {})
    files = run_files(out, rows, pairs, written)
    written["manifest"] = finish_run(out, files)
    return written


PAIR_SUFFIXES = (
    ".report.html",
    ".variants.vcf.gz",
    ".variants.vcf.gz.tbi",
    ".events.tsv",
    ".events.parquet",
    ".verdict.tsv",
    ".verdict.parquet",
)


def run_files(
    out: Path, rows: list[SheetRow], pairs: list[Pair], written: dict[str, Path]
) -> dict[Path, str]:
    """{file: kind} of everything this run wrote or used in OUT: the scans in OUT/scans (also
    those the sheet names there as scan folders), each pair's files, the cohort files."""
    scans_dir, pairs_dir = out / "scans", out / "pairs"
    files: dict[Path, str] = {}
    for row in rows:
        if not row.path.is_dir() or row.path.resolve() == scans_dir.resolve():
            for name in scan_file_names(row.sample) + long_read_file_names(row.sample):
                files[scans_dir / name] = "scan"
    for pair in pairs:
        for suffix in PAIR_SUFFIXES:
            files[pairs_dir / f"{pair.name}{suffix}"] = "pair"
    for key, path in written.items():
        kind = "multiqc" if key.startswith("multiqc:") else "cohort"
        files[path] = kind
        if path.suffix == ".tsv" and path.with_suffix(".parquet").is_file():
            files[path.with_suffix(".parquet")] = kind
    return {path: kind for path, kind in files.items() if path.is_file()}


def finish_run(out: Path, files: dict[Path, str]) -> Path:
    """Make OUT describe this run only: remove the files an earlier run listed in its
    manifest.tsv that this run did not write (its samples or pairs are no longer in the sheet),
    warn about any other file in scans/ and pairs/ this run did not write (not cd22scan's to
    delete), and write manifest.tsv (file, kind, bytes, sha256) last."""
    current = {path.relative_to(out).as_posix() for path in files}
    stale = [rel for rel in read_manifest(out) if rel not in current and rel != MANIFEST]
    removed = []
    for rel in stale:
        path = out / rel
        if path.is_file() and out.resolve() in path.resolve().parents:
            path.unlink()
            removed.append(rel)
    if removed:
        log.info(
            "removed %d file(s) of an earlier run into %s that this run did not write: %s",
            len(removed),
            out,
            _some(removed),
        )
    strays = sorted(
        path.relative_to(out).as_posix()
        for folder in (out / "scans", out / "pairs")
        if folder.is_dir()
        for path in folder.iterdir()
        if path.is_file() and not path.name.startswith(".")
        and path.relative_to(out).as_posix() not in current
    )  # fmt: skip
    if strays:
        log.warning(
            "%s holds %d file(s) this run did not write (not in %s; written by an earlier run "
            "without a manifest, or by hand): %s",
            out,
            len(strays),
            MANIFEST,
            _some(strays),
        )
    return write_manifest(out, files)


def _some(names: list[str], shown: int = 4) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
