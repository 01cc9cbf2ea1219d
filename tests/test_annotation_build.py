"""An annotation of the other build without a header naming it (a GTF cut by grep): told from
the splice motifs of its introns in --reference, or from reads that use its introns only at one
constant shift; tested on the real ENCODE ABI1 GTF shifted by a few kb."""

from __future__ import annotations

from pathlib import Path

import pytest

from cd22scan.cli import main
from cd22scan.errors import AnnotationError
from cd22scan.target.annotation import (
    Exon,
    GeneModel,
    check_junctions_fit_model,
    check_splice_motifs,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "abi1_encode"
if not REAL.is_dir():
    REAL = Path("/work/shared/realdata/abi1_encode")
needs_realdata = pytest.mark.skipif(not REAL.is_dir(), reason="real data missing")
BAMS = sorted(REAL.glob("*.bam"))


def _model(strand: str = "+") -> GeneModel:
    exons = [(101, 200), (301, 400), (501, 600), (701, 800), (901, 1000)]
    ordered = exons if strand == "+" else exons[::-1]
    return GeneModel(
        gene="G",
        transcript="T",
        contig="chr1",
        strand=strand,
        build=None,
        exons=tuple(Exon(k, s, e) for k, (s, e) in enumerate(ordered, 1)),
        cds_start=None,
        cds_end=None,
        source="test",
        selection="test",
    )


def _reference(model: GeneModel, motifs: list[tuple[str, str]]) -> str:
    """A sequence of N with the given (+ strand) dinucleotides at both ends of each intron."""
    seq = ["N"] * 1200
    for intron, (left, right) in zip(model.introns(), motifs, strict=False):
        seq[intron.start - 1 : intron.start + 1] = left
        seq[intron.end - 2 : intron.end] = right
    return "".join(seq)


@pytest.mark.parametrize("strand, good", [("+", ("GT", "AG")), ("-", ("CT", "AC"))])
def test_splice_motifs_decide_only_with_enough_known_introns(strand, good):
    model = _model(strand)
    bad = ("AA", "TT")

    def check(motifs):
        seq = _reference(model, motifs)
        return check_splice_motifs(model, lambda a, b: seq[a:b], "a.gtf", "ref.fa")

    assert check([good] * 4) == (4, 4)
    assert check([good, good, bad, bad]) == (2, 4)  # half canonical: kept
    assert check([bad, bad]) == (0, 2)  # too few known introns to decide
    with pytest.raises(AnnotationError, match=r"^a\.gtf: G T: 3 of 4 introns lack a GT-AG"):
        check([good, bad, bad, bad])


def test_junctions_shifted_by_one_offset_are_refused():
    model = _model("+")
    introns = [(i.start, i.end) for i in model.introns()]
    in_place = [(s, e, 10) for s, e in introns]
    assert check_junctions_fit_model(model, in_place, "a.gtf", "x.bam") is None
    shifted = [(s - 700, e - 700, 10) for s, e in introns[:3]]
    with pytest.raises(AnnotationError, match=r"at 3 of them shifted by -700 bp \(30 reads\)"):
        check_junctions_fit_model(model, shifted, "a.gtf", "x.bam")
    # One intron in place outweighs any shifted ones (a real model meets such coincidences).
    assert check_junctions_fit_model(model, [*shifted, (*introns[0], 1)], "a", "b") is None
    # Two shifted introns are too few to tell; many reads inside the gene at none of its
    # introns give a warning text, not a refusal.
    two = [(s + 7, e + 7, 15) for s, e in introns[:2]]
    doubt = check_junctions_fit_model(model, two, "a.gtf", "x.bam")
    assert doubt and "none of the 30 spliced reads of x.bam inside G" in doubt


def _shifted_gtf(tmp_path: Path, shift: int) -> Path:
    """The real GENCODE ABI1 GTF (no header, as cut by grep) with every coordinate moved."""
    out = []
    for line in (REAL / "annotation.gtf").read_text().splitlines():
        f = line.split("\t")
        f[3], f[4] = str(int(f[3]) + shift), str(int(f[4]) + shift)
        out.append("\t".join(f))
    path = tmp_path / f"abi1_shift{shift}.gtf"
    path.write_text("\n".join(out) + "\n")
    return path


@needs_realdata
@pytest.mark.parametrize("shift", [1000, -2000])
def test_real_gtf_of_another_build_is_refused_with_and_without_reference(tmp_path, capsys, shift):
    gtf = _shifted_gtf(tmp_path, shift)
    scan = ["scan", str(BAMS[0]), "--gtf", str(gtf), "--gene", "ABI1", "--out", str(tmp_path)]
    assert main([*scan, "--reference", str(REAL / "chr10_abi1.fa.gz")]) == 3
    err = capsys.readouterr().err
    assert "3 of 3 introns lack a GT-AG/GC-AG/AT-AC splice motif" in err, err
    assert err.count("\n") == 1
    assert main(scan) == 3
    err = capsys.readouterr().err
    assert f"at 3 of them shifted by {-shift:+d} bp" in err and err.count("\n") == 1, err


@needs_realdata
def test_real_gtf_of_the_right_build_passes_both_checks(tmp_path, caplog):
    """No false alarm on the real annotation: every real BAM, with and without reference."""
    gtf = REAL / "annotation.gtf"
    for k, bam in enumerate(BAMS):
        argv = ["scan", str(bam), "--gtf", str(gtf), "--gene", "ABI1", "-q"]
        if k % 2:
            argv += ["--reference", str(REAL / "chr10_abi1.fa.gz")]
        assert main([*argv, "--out", str(tmp_path / str(k))]) == 0
    assert "build" not in caplog.text
