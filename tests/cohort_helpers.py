"""Small simulated cohorts for the tests of run, MultiQC and the workflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from simulator import simulate, small_gene

from cd22scan.demo.simulate import write_gtf

# (patient, sample, timepoint, isoforms, seed)
CohortSpec = tuple[str, str, str, dict[str, float], int]


def write_small_cohort(
    folder: Path, specs: list[CohortSpec], *, n_fragments: int, bam_dir: str = ""
) -> tuple[Path, Path]:
    """Simulate every sample of ``specs`` over ``small_gene("+")`` (in ``folder/bam_dir/SAMPLE``)
    and write ``folder/gene.gtf`` and ``folder/samples.tsv`` (paths relative to the sheet).
    Returns (sample sheet, GTF)."""
    gene = small_gene("+")
    gtf = write_gtf(gene, folder / "gene.gtf")
    lines = ["patient\tsample\ttimepoint\tpath"]
    for patient, sample, timepoint, isoforms, seed in specs:
        sim = simulate(
            folder / bam_dir / sample,
            seed=seed,
            gene=gene,
            n_fragments=n_fragments,
            isoforms=isoforms,
            sample=sample,
        )
        lines.append(f"{patient}\t{sample}\t{timepoint}\t{sim.bam.relative_to(folder)}")
    sheet = folder / "samples.tsv"
    sheet.write_text("\n".join(lines) + "\n")
    return sheet, gtf


def replicate_cohort_specs(patients: int, seed: int, rho: float = 0.01) -> list[CohortSpec]:
    """Patients whose baseline and relapse differ only by biology: each sample draws its own
    Δex2 and intron 3 retention shares (beta, means 0.05 and 0.08, intra-class correlation
    ``rho``), as scripts/validation.py draws them."""
    rng = np.random.default_rng(seed)
    scale = 1 / rho - 1

    def share(mean: float) -> float:
        return float(rng.beta(mean * scale, (1 - mean) * scale))

    specs: list[CohortSpec] = []
    for p in range(patients):
        for timepoint in ("baseline", "relapse"):
            skip, retain = share(0.05), share(0.08)
            isoforms = {"canonical": 1 - skip - retain, "skip:2": skip, "retain:3": retain}
            specs.append((f"P{p}", f"P{p}_{timepoint[0].upper()}", timepoint, isoforms,
                          seed + 10 * p + (timepoint == "relapse")))  # fmt: skip
    return specs
