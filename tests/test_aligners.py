"""Real aligners (issue 16): reads realigned by STAR and HISAT2 give the calls of the simulator's
own BAM.

A small genome is built around the simulated gene (CD22's exon structure, GRCh38 MANE Select, moved
onto a 120 kb contig ``chrA``; random sequence elsewhere) plus a 30 kb decoy contig ``chrD`` that
holds an exact copy of exons 10-14 with their introns and 150 nt on each side, so that reads there
map to two places (multi-mappers: NH > 1, MAPQ < 255/60, secondary records). All samples share that
genome (``simulate(reference_seed=...)``). The simulator's primary records are written as paired
FASTQ (``samtools collate | samtools fastq -F 0x900``) and aligned as a user would:

* STAR 2.7 (Debian ``rna-star``): ``STAR --runMode genomeGenerate --genomeSAindexNbases 7
  --sjdbGTFfile gene.gtf --sjdbOverhang 99``, then ``STAR --twopassMode Basic
  --outSAMtype BAM SortedByCoordinate --outSAMstrandField intronMotif`` (unique hits MAPQ 255,
  NH/HI tags, XS on spliced reads only);
* HISAT2 2.2 (Debian ``hisat2``): ``hisat2_extract_splice_sites.py gene.gtf``, ``hisat2-build``,
  ``hisat2 --known-splicesite-infile`` | ``samtools sort``.

Then every pair is scanned (GTF + reference) and compared exactly as from the simulator's BAM:
the planted Δex2, antigen loss and frameshift are called as escape from every aligner's BAM, the
set of escape rows equals the simulator BAM's, and a replicate pair calls nothing.
Versions of the aligners used are printed in the test output (``-s``) and in tests/data/aligners.md.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pysam
import pytest

import cd22scan
from cd22scan.demo.simulate import (
    GeneSpec,
    cd22_grch38,
    coding_positions,
    reference_window,
    simulate,
    write_gtf,
)

pytestmark = [pytest.mark.external, pytest.mark.slow]

CONTIG, CONTIG_LENGTH, GENE_START = "chrA", 120_000, 40_000
DECOY, DECOY_LENGTH, DECOY_AT = "chrD", 30_000, 10_000
REFERENCE_SEED = 11
FRAGMENTS = 2500
BACKGROUND, BACKGROUND_SPAN = 20_000, (80_000, 118_000)
ALIGNERS = ("STAR", "hisat2")


def _gene() -> GeneSpec:
    g = cd22_grch38()
    shift = GENE_START - g.start
    assert g.cds is not None
    return GeneSpec(
        contig=CONTIG,
        strand="+",
        exons=tuple((s + shift, e + shift) for s, e in g.exons),
        cds=(g.cds[0] + shift, g.cds[1] + shift),
        name="CD22",
        contig_length=CONTIG_LENGTH,
    )


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise AssertionError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def _genome(tmp: Path, gene: GeneSpec, window_seq: str, window: tuple[int, int]) -> Path:
    """chrA: random flanks + the simulator's window; chrD: random + a copy of exons 10-14 with
    their introns and 150 nt on each side (a paralogous copy: reads there map twice)."""
    rng = np.random.default_rng(99)
    bases = np.array(list("ACGT"))
    ws, we = window
    chr_a = "".join(bases[rng.integers(0, 4, ws)]) + window_seq
    chr_a += "".join(bases[rng.integers(0, 4, CONTIG_LENGTH - we)])
    paralog = chr_a[gene.exon(10)[0] - 150 : gene.exon(14)[1] + 150]
    chr_d = "".join(bases[rng.integers(0, 4, DECOY_LENGTH)])
    chr_d = chr_d[:DECOY_AT] + paralog + chr_d[DECOY_AT + len(paralog) :]
    fasta = tmp / "genome.fa"
    with open(fasta, "w") as out:
        for name, seq in ((CONTIG, chr_a), (DECOY, chr_d)):
            out.write(f">{name}\n")
            out.writelines(seq[i : i + 60] + "\n" for i in range(0, len(seq), 60))
    return fasta


def _background(fasta: Path, r1: Path, r2: Path, seed: int) -> None:
    """Append BACKGROUND read pairs from chrA's far flank (unspliced, error-free): the rest of the
    library, so that library size does not shrink with the gene (antigen loss stays visible)."""
    chr_a = "".join(pysam.FastaFile(str(fasta)).fetch(CONTIG, *BACKGROUND_SPAN))
    rng = np.random.default_rng([seed, 7])
    comp = str.maketrans("ACGT", "TGCA")
    with open(r1, "a") as f1, open(r2, "a") as f2:
        for i, start in enumerate(rng.integers(0, len(chr_a) - 300, BACKGROUND)):
            frag = chr_a[start : start + 250]
            f1.write(f"@bg{i:06d}\n{frag[:100]}\n+\n{'I' * 100}\n")
            f2.write(f"@bg{i:06d}\n{frag[-100:].translate(comp)[::-1]}\n+\n{'I' * 100}\n")


def _fastq(bam: Path, out: Path) -> tuple[Path, Path]:
    r1, r2 = out / f"{bam.stem}_1.fq", out / f"{bam.stem}_2.fq"
    collated = out / f"{bam.stem}.collated.bam"
    pysam.collate("-o", str(collated), str(bam), catch_stdout=False)
    _run(
        ["samtools", "fastq", "-F", "0x900", "-n", "-1", str(r1), "-2", str(r2),
         "-0", "/dev/null", "-s", "/dev/null", str(collated)]
    )  # fmt: skip
    return r1, r2


def _star(tmp: Path, fasta: Path, gtf: Path, reads: dict[str, tuple[Path, Path]]) -> dict:
    index = tmp / "star_index"
    index.mkdir()
    _run(
        ["STAR", "--runMode", "genomeGenerate", "--runThreadN", "2", "--genomeDir", str(index),
         "--genomeFastaFiles", str(fasta), "--sjdbGTFfile", str(gtf), "--sjdbOverhang", "99",
         "--genomeSAindexNbases", "7", "--outFileNamePrefix", str(tmp / "star_index_")]
    )  # fmt: skip
    bams = {}
    for name, (r1, r2) in reads.items():
        prefix = tmp / f"star_{name}_"
        _run(
            ["STAR", "--runThreadN", "2", "--genomeDir", str(index), "--readFilesIn", str(r1),
             str(r2), "--twopassMode", "Basic", "--outSAMtype", "BAM", "SortedByCoordinate",
             "--outSAMstrandField", "intronMotif", "--outSAMattrRGline", f"ID:{name}",
             f"SM:{name}", "--outFileNamePrefix", str(prefix)]
        )  # fmt: skip
        bam = Path(f"{prefix}Aligned.sortedByCoord.out.bam")
        pysam.index(str(bam))
        bams[name] = bam
    return bams


def _hisat2(tmp: Path, fasta: Path, gtf: Path, reads: dict[str, tuple[Path, Path]]) -> dict:
    sites = tmp / "splice_sites.txt"
    with open(sites, "w") as out:
        subprocess.run(["hisat2_extract_splice_sites.py", str(gtf)], stdout=out, check=True)
    index = tmp / "hisat2_index" / "genome"
    index.parent.mkdir()
    _run(["hisat2-build", "-q", "-p", "2", str(fasta), str(index)])
    bams = {}
    for name, (r1, r2) in reads.items():
        sam = tmp / f"hisat2_{name}.sam"
        _run(
            ["hisat2", "-p", "2", "-x", str(index), "-1", str(r1), "-2", str(r2),
             "--known-splicesite-infile", str(sites), "--rg-id", name, "--rg", f"SM:{name}",
             "-S", str(sam)]
        )  # fmt: skip
        bam = tmp / f"hisat2_{name}.bam"
        pysam.sort("-o", str(bam), str(sam), catch_stdout=False)
        pysam.index(str(bam))
        bams[name] = bam
    return bams


def _versions() -> dict[str, str]:
    star = subprocess.run(["STAR", "--version"], capture_output=True, text=True).stdout.strip()
    hisat = subprocess.run(["hisat2", "--version"], capture_output=True, text=True).stdout
    return {"STAR": star, "hisat2": hisat.splitlines()[0].split()[-1] if hisat else "?"}


SAMPLES = {
    # name: (seed, fragments, isoforms, variants?)
    "base1": (1, FRAGMENTS, {"canonical": 0.97, "skip:2": 0.03}, False),
    "base2": (2, FRAGMENTS, {"canonical": 0.97, "skip:2": 0.03}, False),
    "skip2": (3, FRAGMENTS, {"canonical": 0.5, "skip:2": 0.5}, False),
    "loss": (4, FRAGMENTS // 5, {"canonical": 0.97, "skip:2": 0.03}, False),
    "fs": (5, FRAGMENTS, {"canonical": 0.97, "skip:2": 0.03}, True),
}
PAIRS = {
    "replicate": ("base1", "base2"),
    "skip2": ("base1", "skip2"),
    "loss": ("base1", "loss"),
    "frameshift": ("base1", "fs"),
}


@pytest.fixture(scope="module")
def aligned(tmp_path_factory) -> dict:
    for tool in ("STAR", "hisat2", "hisat2-build", "hisat2_extract_splice_sites.py", "samtools"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (scripts/test.sh installs it from Debian)")
    tmp = tmp_path_factory.mktemp("aligners")
    gene = _gene()
    gtf = write_gtf(gene, tmp / "gene.gtf")
    positions = coding_positions(gene)
    anchor = next(p for p in positions[150:] if p + 1 in positions and p + 2 in positions)
    window, window_seq = reference_window(gene, REFERENCE_SEED)
    fasta = _genome(tmp, gene, window_seq, window)
    reference = tmp / "genome.fa.gz"
    pysam.tabix_compress(str(fasta), str(reference), force=True)
    pysam.faidx(str(reference))
    own, reads = {}, {}
    for name, (seed, n, isoforms, frameshift) in SAMPLES.items():
        variants = [("del", anchor, 1, 0.5)] if frameshift else []
        sim = simulate(
            tmp / "sim" / name, seed=seed, gene=gene, n_fragments=n, isoforms=isoforms,
            variants=variants, sample=name, reference_seed=REFERENCE_SEED,
            write_reference=False, outside_fraction=0.0,
        )  # fmt: skip
        assert sim.window_sequence == window_seq
        own[name] = sim.bam
        reads[name] = _fastq(sim.bam, tmp / "sim" / name)
        _background(reference, *reads[name], seed=seed)
    bams = {"simulator": own, "STAR": _star(tmp, fasta, gtf, reads)}
    bams["hisat2"] = _hisat2(tmp, fasta, gtf, reads)
    scans = {
        aligner: {
            name: cd22scan.scan(
                str(bam), gene="CD22", gtf=str(gtf), reference=str(reference), sample=name
            )
            for name, bam in by_sample.items()
        }
        for aligner, by_sample in bams.items()
    }
    # The simulator's BAM holds the gene only; its library is the gene's records plus the
    # background pairs the aligners got (2 records each), as in the FASTQ.
    for result in scans["simulator"].values():
        result.summary["library_size"] += 2 * BACKGROUND
    print("aligner versions:", _versions())
    return {"bams": bams, "scans": scans, "gene": gene}


def _escapes(aligned: dict, aligner: str, pair: str) -> set[tuple[str, str]]:
    b, r = PAIRS[pair]
    scans = aligned["scans"][aligner]
    events = cd22scan.compare(scans[b], scans[r]).events
    return {(row["event_type"], row["known_event"] or row["feature"]) for row in
            events.filter(events["escape"]).iter_rows(named=True)}  # fmt: skip


EXPECTED = {
    "replicate": lambda e: not e,
    "skip2": lambda e: any(name == "Δex2" for _, name in e),
    "loss": lambda e: any(kind == "expression_loss" for kind, _ in e),
    "frameshift": lambda e: any(kind == "mutation" for kind, _ in e),
}


@pytest.mark.parametrize("pair", sorted(PAIRS))
@pytest.mark.parametrize("aligner", ["simulator", *ALIGNERS])
def test_planted_escape_is_called_from_each_aligner(aligned, aligner, pair):
    escapes = _escapes(aligned, aligner, pair)
    assert EXPECTED[pair](escapes), (aligner, pair, escapes)


@pytest.mark.parametrize("pair", sorted(PAIRS))
@pytest.mark.parametrize("aligner", ALIGNERS)
def test_aligner_calls_equal_the_simulator_bam_calls(aligned, aligner, pair):
    assert _escapes(aligned, aligner, pair) == _escapes(aligned, "simulator", pair)


@pytest.mark.parametrize("aligner", ALIGNERS)
def test_aligner_conventions_are_present_and_handled(aligned, aligner):
    """The conventions this test exists for really occur in the aligner's BAM, and the counted
    exon counts follow the simulator BAM's where fragments are placed uniquely (unique STAR hits
    at MAPQ 255 kept) and drop where they are not (multi-mappers over the decoy's copy excluded
    by MAPQ, whichever copy the aligner made primary)."""
    bam = aligned["bams"][aligner]["base1"]
    mapq, nh_multi, spliced_xs, unspliced_xs, unspliced, decoy = set(), 0, 0, 0, 0, 0
    with pysam.AlignmentFile(str(bam)) as f:
        for read in f:
            if read.is_unmapped:
                continue
            mapq.add(read.mapping_quality)
            nh_multi += read.has_tag("NH") and read.get_tag("NH") > 1
            spliced = "N" in (read.cigarstring or "")
            has_xs = read.has_tag("XS")
            spliced_xs += spliced and has_xs
            unspliced_xs += (not spliced) and has_xs
            unspliced += not spliced
            decoy += read.reference_name == DECOY
    assert nh_multi > 0, "no multi-mappers"
    # XS marks spliced reads (STAR: both mates of a pair with a spliced mate), not every read:
    # the strand of an unspliced fragment comes from the library, never from XS.
    assert spliced_xs > 0 and unspliced_xs < unspliced
    assert decoy > 0, "no read on the decoy copy"
    if aligner == "STAR":  # unique hits at MAPQ 255, multi-mappers at 3 or 1
        assert 255 in mapq and mapq & {0, 1, 3}
    ours = _exon_fragments(aligned["scans"][aligner]["base1"])
    truth = _exon_fragments(aligned["scans"]["simulator"]["base1"])
    # Exons 1-13: fragments are placed uniquely (those over exons 10-13 reach exon 9 across a
    # 2.9 kb intron); the aligner's BAM counts up to ~5 % more, because the simulator flags
    # duplicate, QC-fail and low-MAPQ fragments that an aligner does not (measured: STAR and
    # HISAT2 +0 to +5 %). Exon 14 (796 nt, 3' end) lies inside the copy: most of its fragments
    # map twice and are not counted (measured: 208 and 207 of the simulator's 628).
    for exon in range(1, 14):
        assert -0.05 * truth[exon] - 3 <= ours[exon] - truth[exon] <= 0.08 * truth[exon] + 3
    assert ours[14] < 0.5 * truth[14], (aligner, ours[14], truth[14])


def _exon_fragments(result) -> dict[int, int]:
    return dict(zip(result.exons["exon"], result.exons["fragments"], strict=True))


def test_fastq_holds_every_primary_read(aligned, tmp_path):
    """The FASTQ the aligners read carries each simulated fragment once per mate."""
    bam = aligned["bams"]["simulator"]["base1"]
    with pysam.AlignmentFile(str(bam)) as f:
        primary = sum(1 for r in f if not (r.is_secondary or r.is_supplementary))
    r1, r2 = _fastq(bam, tmp_path)
    lines = r1.read_text().count("\n") + r2.read_text().count("\n")
    assert lines == 4 * primary
