"""`cd22scan run --targets`: a cohort over a panel of genes (issue 15).

Each sample is scanned once for every gene (``sample.panel.scan_panel``: one pass over the
file) into ``OUT/scans/`` as a panel folder (``OUT/scans/GENE/NAME.*`` and
``OUT/scans/NAME.panel.json``); a sheet path that is a folder must hold the sample's panel scan.
Each baseline × relapse pair is compared per gene into ``OUT/pairs/GENE/PAIR.*`` (the files of
a one-gene run), with the patient's CAR binder of that gene. The cohort tables are those of a
one-gene run with every gene in them (``gene`` column; ``cohort_summary.tsv`` one block per
gene: "CD19 antigen loss 1 of 4 assessable (expression loss 1)"), plus
``cohort_lineage.tsv``: the lineage-switch test of every pair (``comparison.lineage``).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import polars as pl

from cd22scan.cohort.run import (
    PAIR_SUFFIXES,
    SheetRow,
    _each_done,
    compare_all,
    finish_run,
    learn_dispersion,
    open_run,
    patient_cars,
    plan_cohort,
    warn_unpaired,
    worker_pool,
    write_cohort_outputs,
    write_dispersion,
)
from cd22scan.comparison.lineage import lineage_frame, lineage_switch
from cd22scan.comparison.pair import Thresholds
from cd22scan.console import progress
from cd22scan.errors import Cd22scanError, InputError
from cd22scan.outputs.files import prepare_out_dir, write_table
from cd22scan.outputs.scandir import (
    PANEL_SUFFIX,
    load_scan,
    long_read_file_names,
    scan_file_names,
    write_panel,
)
from cd22scan.sample.panel import scan_panel
from cd22scan.sample.scan import ScanParams, load_target
from cd22scan.target.binders import Binder
from cd22scan.target.panel import lineage_markers

log = logging.getLogger("cd22scan")

LINEAGE_TABLE = "cohort_lineage.tsv"


def _panel_dir(row: SheetRow, scans_dir: Path) -> Path:
    return row.path if row.path.is_dir() else scans_dir


def _panel_genes(row: SheetRow, scans_dir: Path) -> list[str]:
    path = _panel_dir(row, scans_dir) / f"{row.sample}{PANEL_SUFFIX}"
    if not path.is_file():
        raise InputError(
            f"sheet line {row.line}: {row.path} holds no panel scan of {row.sample} "
            f"({path.name}); run --targets needs panel scans (scan --targets) or BAM/CRAM files"
        )
    return list(json.loads(path.read_text("utf-8"))["genes"])


def _scan_panel_worker(
    row: SheetRow, genes: tuple[str, ...], params: ScanParams, scans_dir: Path, models: dict
) -> tuple[str, str | None]:
    try:
        sample_params = replace(
            params,
            sample=row.sample,
            reference=str(row.reference) if row.reference else params.reference,
        )
        panel = scan_panel(str(row.path), genes, sample_params, models=models)
        if not panel.results:
            return row.sample, f"{row.path}: none of the targets has its contig in the header"
        write_panel(panel, scans_dir)
        return row.sample, None
    except Cd22scanError as exc:
        return row.sample, str(exc)


def scan_panels(
    rows: list[SheetRow],
    genes: tuple[str, ...],
    params: ScanParams,
    scans_dir: Path,
    pool: ProcessPoolExecutor | None,
) -> None:
    todo = [r for r in rows if not r.path.is_dir()]
    if not todo:
        return
    # A GTF is parsed here (once per gene), not once per sample.
    models = {g: load_target(replace(params, gene=g)) for g in genes} if params.gtf else {}
    errors: list[str] = []
    with progress("samples scanned", unit=" samples", total=len(todo)) as bar:
        tasks = [(row, genes, params, scans_dir, models) for row in todo]
        for done, (_, (sample, error)) in enumerate(_each_done(pool, _scan_panel_worker, tasks), 1):
            bar.update(1)
            log.info("[%d/%d] scanned %s (%d genes)", done, len(todo), sample, len(genes))
            if error:
                errors.append(error)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InputError(errors[0] + more)


def run_panel_cohort(
    sheet: str | Path,
    out_dir: str | Path,
    genes: tuple[str, ...],
    params: ScanParams | None = None,
    *,
    thresholds: Thresholds | None = None,
    jobs: int = 1,
    cars: dict[str, Binder] | None = None,
    calibrate_dispersion: bool = True,
) -> dict[str, Path]:
    """Every gene of ``genes`` in each pair; dispersions are learned per gene
    (``run.learn_dispersion``)."""
    params = params or ScanParams()
    thresholds = thresholds or Thresholds()
    rows, out, scans_dir = open_run(sheet, out_dir)
    log.info("scanning %d samples for %d genes with %d job(s)", len(rows), len(genes), jobs)
    with worker_pool(jobs) as pool:
        scan_panels(rows, genes, params, scans_dir, pool)
        pairs, unpaired, patients = plan_cohort(rows)
        warn_unpaired(sheet, rows, unpaired)
        by_patient = patient_cars(rows, cars)
        have = {row.sample: set(_panel_genes(row, scans_dir)) for row in rows}
        events, verdicts, files = [], [], {}
        records: dict[str, dict] = {}
        for gene in genes:
            mine = [p for p in pairs if gene in have[p.baseline] and gene in have[p.relapse]]
            left = [p.name for p in pairs if p not in mine]
            if left:
                log.warning("%s: not compared in %s (not scanned in both samples)", gene,
                            ", ".join(left))  # fmt: skip
            if not mine:
                continue
            gene_rows = {
                row.sample: replace(row, path=_panel_dir(row, scans_dir) / gene) for row in rows
            }
            pairs_dir = prepare_out_dir(out / "pairs" / gene)
            learned, records[gene] = learn_dispersion(
                mine,
                lambda name, at=gene_rows: load_scan(at[name].path, name),
                thresholds,
                calibrate_dispersion,
            )
            ev, vd = compare_all(mine, gene_rows, scans_dir, pairs_dir, learned, pool, by_patient)
            events += ev
            verdicts += vd
            for pair in mine:
                for suffix in PAIR_SUFFIXES:
                    files[pairs_dir / f"{pair.name}{suffix}"] = "pair"
    if not verdicts:
        raise InputError(f"{sheet}: no pair has a gene scanned in both samples")
    lineage = _lineage(pairs, rows, scans_dir, have, thresholds)
    first = {row.sample: sorted(have[row.sample], key=genes.index)[0] for row in rows}
    scans = [load_scan(_panel_dir(row, scans_dir) / first[row.sample], row.sample) for row in rows]
    # the lineage table first: the cohort report (written with the cohort tables) shows it
    lineage_path = write_table(lineage, out / LINEAGE_TABLE)
    written = write_cohort_outputs(out, events, verdicts, unpaired, patients, thresholds, scans)
    written["lineage"] = lineage_path
    written["dispersion"] = write_dispersion(out, records)
    for line in lineage.filter(pl.col("lineage_switch"))["text"].to_list():
        log.info("%s", line)
    for row in rows:
        folder = _panel_dir(row, scans_dir)
        if folder.resolve() == scans_dir.resolve():
            files[scans_dir / f"{row.sample}{PANEL_SUFFIX}"] = "scan"
            for gene in have[row.sample]:
                for name in scan_file_names(row.sample) + long_read_file_names(row.sample):
                    files[scans_dir / gene / name] = "scan"
    for key, path in written.items():
        kind = "multiqc" if key.startswith("multiqc:") else "cohort"
        files[path] = kind
        if path.suffix == ".tsv" and path.with_suffix(".parquet").is_file():
            files[path.with_suffix(".parquet")] = kind
    written["manifest"] = finish_run(out, {p: k for p, k in files.items() if p.is_file()})
    return written


def _lineage(pairs, rows, scans_dir: Path, have, thresholds: Thresholds) -> pl.DataFrame:
    """The lineage-switch row of every pair, with the patient first."""
    by_name = {row.sample: row for row in rows}
    markers = [g for genes in lineage_markers().values() for g in genes]
    out = []
    for pair in pairs:
        sides = []
        for sample in (pair.baseline, pair.relapse):
            row = by_name[sample]
            sides.append(
                {
                    g: load_scan(_panel_dir(row, scans_dir) / g, sample)
                    for g in markers
                    if g in have[sample]
                }
            )
        row = lineage_switch(pair.name, *sides, thresholds)
        row.update(baseline=pair.baseline, relapse=pair.relapse)
        out.append({"patient": pair.patient, **row})
    frame = lineage_frame([{k: v for k, v in r.items() if k != "patient"} for r in out])
    return frame.select(pl.Series("patient", [r["patient"] for r in out], pl.Utf8), pl.all())
