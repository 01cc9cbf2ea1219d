"""`cd22scan demo`: a small synthetic CD22 cohort with one patient per escape mechanism, run
through `cd22scan run`, with the cohort tables (and report) written to the output folder.

Patients (GRCh38, paired-end, fr-stranded; baseline and relapse each):
* DEMO1 aberrant splicing: CD22 Δexon 2 in 50 % of relapse molecules;
* DEMO2 antigen loss: 4× fewer CD22 fragments at relapse, library size held fixed;
* DEMO3 mutation: a frameshift deletion (VAF 0.4) and a missense SNV (VAF 0.3) in exon 4;
* DEMO4 no escape: the same expression, splicing and sequence at both time points.

and a panel cohort (``OUT/panel``, ``run --targets`` over CD19, CD22 and the lineage markers,
the CAR of each patient in the sheet's ``car`` column; issue 15):
* DEMO5 after a CD19 CAR (FMC63): CD19 Δexon 2 in 50 % of relapse molecules (epitope lost);
* DEMO6 after a CD22 CAR (m971): CD22 Δexons 5-6 in 50 % of relapse molecules (epitope kept);
* DEMO7 after a CD19 CAR (FMC63): lineage switch, B markers 30x down, myeloid markers 30x up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cd22scan.cohort.panel_run import run_panel_cohort
from cd22scan.cohort.run import run_cohort, worker_pool
from cd22scan.console import progress
from cd22scan.demo.simulate import add_background_reads, cd22_grch38, simulate, simulate_panel
from cd22scan.outputs.files import prepare_out_dir
from cd22scan.sample.scan import ScanParams
from cd22scan.target.panel import lineage_markers

log = logging.getLogger("cd22scan")

T = TypeVar("T")

FRAGMENTS = 2500
BACKGROUND = 20_000  # off-gene reads: the library size that CPM is measured against
BACKGROUND_SPAN = (10_000_000, 12_000_000)


def _patients() -> list[tuple[str, dict, dict]]:
    gene = cd22_grch38()
    exon4 = gene.exon(4)
    canonical = {"isoforms": {"canonical": 1.0}}
    return [
        ("DEMO1", canonical, {"isoforms": {"canonical": 0.5, "skip:2": 0.5}}),
        ("DEMO2", canonical, {"isoforms": {"canonical": 1.0}, "n_fragments": FRAGMENTS // 4}),
        (
            "DEMO3",
            canonical,
            {
                "isoforms": {"canonical": 1.0},
                "variants": [("del", exon4[0] + 40, 1, 0.4), ("snv", exon4[0] + 100, None, 0.3)],
            },
        ),
        ("DEMO4", canonical, canonical),
    ]


def _simulate_sample(task: tuple) -> tuple[str, str, str, str | None]:
    """Worker: simulate one sample; returns (patient, sample, timepoint, bam, reference)."""
    data_dir, patient, timepoint, spec, seed, bg_seed = task
    sample = f"{patient}_{timepoint}"
    n = spec.get("n_fragments", FRAGMENTS)
    # One seed per patient: both time points share the reference sequence.
    sim = simulate(
        data_dir / sample,
        seed=seed,
        gene=cd22_grch38(),
        n_fragments=n,
        isoforms=spec["isoforms"],
        variants=spec.get("variants", ()),
        sample=sample,
        write_reference=timepoint == "baseline",
    )
    add_background_reads(
        sim.bam,
        BACKGROUND + FRAGMENTS - n,
        seed=bg_seed,
        start=BACKGROUND_SPAN[0],
        end=BACKGROUND_SPAN[1],
    )
    reference = str(sim.reference) if sim.reference else None
    return patient, sample, timepoint, str(sim.bam), reference


def make_demo_cohort(data_dir: Path, seed: int, jobs: int = 2) -> Path:
    """Simulate the cohort's BAMs (``jobs`` at a time) and write its sample sheet."""
    tasks = []
    for i, (patient, baseline, relapse) in enumerate(_patients()):
        for j, (timepoint, spec) in enumerate((("baseline", baseline), ("relapse", relapse))):
            tasks.append(
                (data_dir, patient, timepoint, spec, seed * 100 + i, seed * 100 + i * 2 + j)
            )
    log.info("simulating %d samples over CD22 (GRCh38)", len(tasks))
    done = _simulate_all(_simulate_sample, tasks, jobs)
    references = {patient: ref for patient, _s, tp, _b, ref in done if tp == "baseline"}
    rows = ["patient\tsample\ttimepoint\tpath\treference"]
    for patient, sample, timepoint, bam, _ref in done:
        ref = Path(references[patient]).relative_to(data_dir)
        rows.append(f"{patient}\t{sample}\t{timepoint}\t{Path(bam).relative_to(data_dir)}\t{ref}")
    sheet = data_dir / "samples.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    return sheet


PANEL_TARGET_FRAGMENTS = 2000
PANEL_MARKER_FRAGMENTS = 600
PANEL_LOW = 20  # a marker of the other lineage


def panel_genes() -> tuple[str, ...]:
    """The demo panel: CD19, CD22 and the lineage markers (lineage_markers.tsv)."""
    markers = [g for genes in lineage_markers().values() for g in genes]
    return tuple(dict.fromkeys(("CD19", "CD22", *markers)))


def _panel_patients() -> list[tuple[str, str, dict, dict]]:
    markers = lineage_markers()
    normal = {g: {"n_fragments": PANEL_MARKER_FRAGMENTS} for g in markers["B"]}
    normal |= {g: {"n_fragments": PANEL_LOW} for g in markers["myeloid"]}
    normal |= {g: {"n_fragments": PANEL_TARGET_FRAGMENTS} for g in ("CD19", "CD22")}
    switched = {g: {"n_fragments": PANEL_LOW} for g in markers["B"]}
    switched |= {g: {"n_fragments": PANEL_MARKER_FRAGMENTS} for g in markers["myeloid"]}

    def spliced(gene: str, isoform: str) -> dict:
        relapse = dict(normal)
        relapse[gene] = {"n_fragments": PANEL_TARGET_FRAGMENTS,
                         "isoforms": {"canonical": 0.5, isoform: 0.5}}  # fmt: skip
        return relapse

    return [
        ("DEMO5", "CD19:FMC63", normal, spliced("CD19", "skip:2")),
        ("DEMO6", "CD22:m971", normal, spliced("CD22", "skip:5-6")),
        ("DEMO7", "CD19:FMC63", normal, switched),
    ]


def _simulate_panel_sample(task: tuple) -> tuple[str, str, str, str]:
    data_dir, patient, timepoint, genes, seed, reference_seed = task
    sample = f"{patient}_{timepoint}"
    order = {g: genes[g] for g in panel_genes()}
    bam = simulate_panel(data_dir / sample, seed=seed, genes=order, sample=sample,
                         background=BACKGROUND, reference_seed=reference_seed)  # fmt: skip
    return patient, sample, timepoint, str(bam)


def _simulate_all(simulate_one: Callable[[tuple], T], tasks: list[tuple], jobs: int) -> list[T]:
    """``simulate_one`` of every task, in order, over ``jobs`` processes, with a progress bar."""
    with (
        progress("samples simulated", unit=" samples", total=len(tasks)) as bar,
        worker_pool(jobs) as pool,
    ):
        done = []
        for result in (pool.map if pool else map)(simulate_one, tasks):
            done.append(result)
            bar.update(1)
    return done


def make_demo_panel(data_dir: Path, seed: int, jobs: int = 2) -> Path:
    """Simulate the panel cohort's BAMs and write its sample sheet (with a car column)."""
    tasks, cars = [], {}
    for i, (patient, car, baseline, relapse) in enumerate(_panel_patients()):
        cars[patient] = car
        for j, (timepoint, genes) in enumerate((("baseline", baseline), ("relapse", relapse))):
            tasks.append((data_dir, patient, timepoint, genes, seed * 1000 + 100 * i + 50 * j,
                          seed * 1000 + 100 * i))  # fmt: skip
    log.info("simulating %d samples over %d genes (GRCh38)", len(tasks), len(panel_genes()))
    done = _simulate_all(_simulate_panel_sample, tasks, jobs)
    rows = ["patient\tsample\ttimepoint\tpath\tcar"]
    for patient, sample, timepoint, bam in done:
        rel = Path(bam).relative_to(data_dir)
        rows.append(f"{patient}\t{sample}\t{timepoint}\t{rel}\t{cars[patient]}")
    sheet = data_dir / "samples.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    return sheet


def run_demo(out_dir: str | Path, seed: int = 22, jobs: int = 2) -> tuple[Path, Path]:
    """The CD22 cohort (``OUT/cohort``) and the panel cohort (``OUT/panel``); returns both."""
    out = prepare_out_dir(out_dir)
    data = prepare_out_dir(out / "input")
    sheet = make_demo_cohort(data, seed, jobs)
    cohort_dir = out / "cohort"
    run_cohort(sheet, cohort_dir, ScanParams(), jobs=jobs)
    panel_sheet = make_demo_panel(prepare_out_dir(out / "input_panel"), seed, jobs)
    panel_dir = out / "panel"
    run_panel_cohort(panel_sheet, panel_dir, panel_genes(), ScanParams(), jobs=jobs)
    return cohort_dir, panel_dir
