"""`cd22scan demo`: a small synthetic CD22 cohort with one patient per escape mechanism, run
through `cd22scan run`, with the cohort tables (and report) written to the output folder.

Patients (GRCh38, paired-end, fr-stranded; baseline and relapse each):
* DEMO1 aberrant splicing: CD22 Δexon 2 in 50 % of relapse molecules;
* DEMO2 antigen loss: 4× fewer CD22 fragments at relapse, library size held fixed;
* DEMO3 mutation: a frameshift deletion (VAF 0.4) and a missense SNV (VAF 0.3) in exon 4;
* DEMO4 no escape: the same expression, splicing and sequence at both time points.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cd22scan.outputs import prepare_out_dir
from cd22scan.scanner import ScanParams
from cd22scan.simulate import add_background_reads, cd22_grch38, simulate

log = logging.getLogger("cd22scan")

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


def make_demo_cohort(data_dir: Path, seed: int) -> Path:
    """Simulate the cohort's BAMs and write its sample sheet; returns the sheet."""
    gene = cd22_grch38()
    rows = ["patient\tsample\ttimepoint\tpath\treference"]
    for i, (patient, baseline, relapse) in enumerate(_patients()):
        for j, (timepoint, spec) in enumerate((("baseline", baseline), ("relapse", relapse))):
            sample = f"{patient}_{timepoint}"
            n = spec.get("n_fragments", FRAGMENTS)
            log.info("simulating %s (%d fragments)", sample, n)
            # One seed per patient: both time points share the reference sequence.
            sim = simulate(
                data_dir / sample,
                seed=seed * 100 + i,
                gene=gene,
                n_fragments=n,
                isoforms=spec["isoforms"],
                variants=spec.get("variants", ()),
                sample=sample,
                write_reference=(j == 0),
            )
            add_background_reads(
                sim.bam,
                BACKGROUND + FRAGMENTS - n,
                seed=seed * 100 + i * 2 + j,
                start=BACKGROUND_SPAN[0],
                end=BACKGROUND_SPAN[1],
            )
            if j == 0:
                reference = sim.reference
            rows.append(
                f"{patient}\t{sample}\t{timepoint}\t{sim.bam.relative_to(data_dir)}"
                f"\t{Path(reference).relative_to(data_dir)}"
            )
    sheet = data_dir / "samples.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    return sheet


def run_demo(out_dir: str | Path, seed: int = 22, jobs: int = 2) -> Path:
    from cd22scan.cohort import run_cohort

    out = prepare_out_dir(out_dir)
    data = prepare_out_dir(out / "input")
    sheet = make_demo_cohort(data, seed)
    cohort_dir = out / "cohort"
    run_cohort(sheet, cohort_dir, ScanParams(), jobs=jobs)
    return cohort_dir
