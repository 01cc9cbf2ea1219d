"""Seeded long-read (ONT/PacBio cDNA) simulator: whole transcripts with known isoforms.

Each read is one transcript molecule of a named isoform (``simulate.isoform_segments``:
``canonical``, ``skip:2``, ``skip:5-6``, ``retain:2``, joined with ``+``), drawn by the given
fractions; a ``truncated_fraction`` of reads lose a random part of their 5' end (keeping at
least ``min_length`` nt), as reverse transcription and nanopore reads often do; errors are
substitutions, insertions and deletions at ``error_rate`` in total (40:30:30); reads come from
either strand (cDNA). A ``template_switch_fraction`` of reads carry an RT template-switching
artefact: a random stretch of 50-400 nt of the transcript missing, which an aligner writes as
a junction no transcript has.

Output: ``NAME.fastq`` and ``NAME.truth.tsv`` (read, isoform, truncated, template_switch,
first and last transcript position). The genome is the gene's window as its own contig
(``local_gene``: the gene shifted so that its window starts at 0), written as FASTA with a GTF,
so that an aligner (``minimap2 -ax splice``) can be run on it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cd22scan.demo.simulate import GeneSpec, isoform_segments, reference_window, revcomp, write_gtf

_BASES = np.array(list("ACGT"))


def local_gene(gene: GeneSpec, contig: str = "chrL", pad: int = 1000) -> GeneSpec:
    """``gene`` moved onto its own contig that is exactly its window (gene ± ``pad``)."""
    shift = gene.start - pad
    exons = tuple((s - shift, e - shift) for s, e in gene.exons)
    cds = (gene.cds[0] - shift, gene.cds[1] - shift) if gene.cds else None
    length = exons[-1][1] + pad
    return replace(gene, contig=contig, exons=exons, cds=cds, contig_length=length, build=None)


@dataclass
class LongReadSim:
    fastq: Path
    truth: Path
    reference: Path  # plain FASTA of the local contig
    gtf: Path
    gene: GeneSpec


def write_genome(gene: GeneSpec, folder: Path, seed: int) -> tuple[Path, Path, str]:
    """The local contig's FASTA (+ .fai) and GTF; returns (fasta, gtf, sequence)."""
    window, seq = reference_window(gene, seed)
    assert window == (0, gene.length_of_contig), (window, gene.length_of_contig)
    folder.mkdir(parents=True, exist_ok=True)
    fasta = folder / f"{gene.contig}.fa"
    fasta.write_text(f">{gene.contig}\n" + "".join(seq[i:i + 60] + "\n"
                                                   for i in range(0, len(seq), 60)))  # fmt: skip
    import pysam

    pysam.faidx(str(fasta))
    gtf = write_gtf(gene, folder / f"{gene.name}.gtf")
    return fasta, gtf, seq


def _mutate(seq: str, rate: float, rng: np.random.Generator) -> str:
    if rate <= 0:
        return seq
    out = []
    draws = rng.random(len(seq))
    for base, u in zip(seq, draws, strict=True):
        if u >= rate:
            out.append(base)
        elif u < rate * 0.4:
            out.append(_BASES[(int(rng.integers(1, 4)) + "ACGT".find(base)) % 4])
        elif u < rate * 0.7:
            out.append(base + _BASES[int(rng.integers(0, 4))])
        # else: deleted
    return "".join(out)


def simulate_long_reads(
    out_dir,
    *,
    gene: GeneSpec,
    seed: int,
    n_reads: int = 2000,
    isoforms: dict[str, float] | None = None,
    error_rate: float = 0.05,
    truncated_fraction: float = 0.3,
    template_switch_fraction: float = 0.0,
    min_length: int = 300,
    reference_seed: int | None = None,
    sample: str = "LR1",
) -> LongReadSim:
    """Simulate ``n_reads`` long reads of ``gene`` (a ``local_gene``) into ``out_dir``."""
    out = Path(out_dir)
    fasta, gtf, genome = write_genome(gene, out / "genome", reference_seed or seed)
    rng = np.random.default_rng([seed, 7])
    isoforms = dict(isoforms or {"canonical": 1.0})
    names = list(isoforms)
    weights = np.array([isoforms[n] for n in names], dtype=float)
    weights /= weights.sum()
    transcripts = {}
    for name in names:
        segments = isoform_segments(gene, name)
        sense = "".join(genome[s:e] for s, e in segments)
        transcripts[name] = sense if gene.strand == "+" else revcomp(sense)
    fastq, truth = out / f"{sample}.fastq", out / f"{sample}.truth.tsv"
    with open(fastq, "w") as fq, open(truth, "w") as tt:
        tt.write("read\tisoform\ttruncated\ttemplate_switch\tfirst\tlast\n")
        for i in range(n_reads):
            name = names[int(rng.choice(len(names), p=weights))]
            molecule = transcripts[name]
            first = 0
            truncated = bool(rng.random() < truncated_fraction)
            if truncated:
                first = int(rng.integers(1, max(2, len(molecule) - min_length)))
            piece = molecule[first:]
            switched = bool(rng.random() < template_switch_fraction)
            if switched and len(piece) > 1200:
                cut = int(rng.integers(300, len(piece) - 800))
                piece = piece[:cut] + piece[cut + int(rng.integers(50, 400)) :]
            read = _mutate(piece, error_rate, rng)
            if rng.random() < 0.5:
                read = revcomp(read)
            qname = f"lr{i:06d}"
            fq.write(f"@{qname}\n{read}\n+\n{'5' * len(read)}\n")
            tt.write(f"{qname}\t{name}\t{int(truncated)}\t{int(switched)}\t{first}\t"
                     f"{len(molecule)}\n")  # fmt: skip
    return LongReadSim(fastq=fastq, truth=truth, reference=fasta, gtf=gtf, gene=gene)
