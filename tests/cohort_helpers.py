"""Small simulated cohorts for the tests of run, MultiQC and the workflow."""

from __future__ import annotations

from pathlib import Path

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
