"""GFF3 input (RefSeq, Ensembl and GENCODE style): the model equals the one from the equivalent
GTF; GFF3 is told by content; file:line errors for malformed lines (exit 3)."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import pytest
from simulator import simulate, small_gene

from cd22scan.cli import main
from cd22scan.demo.simulate import write_gtf as write_sim_gtf
from cd22scan.errors import AnnotationError
from cd22scan.target.annotation import GeneModel, load_gtf

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "abi1_encode"
if not REAL.is_dir():
    REAL = Path("/work/shared/realdata/abi1_encode")
ABI1_GTF = REAL / "annotation.gtf"

# A two-transcript gene, 1-based inclusive. T1: 3 exons, CDS 290-416 incl. the stop codon
# 414-416 (+ strand); T2: 2 exons, CDS 241-300 plus its stop in exon 2.
TRANSCRIPTS = {
    "+": [
        ("T1", "GENEA-201", [(100, 300), (400, 500), (600, 900)], (290, 416)),
        ("T2", "GENEA-202", [(200, 300), (400, 500)], (241, 406)),
    ],
    "-": [
        ("T1", "GENEA-201", [(100, 300), (400, 500), (600, 900)], (290, 405)),
        ("T2", "GENEA-202", [(200, 300), (400, 500)], (241, 406)),
    ],
}


def _cds_parts(exons, cds):
    return [(max(s, cds[0]), min(e, cds[1])) for s, e in exons if s <= cds[1] and e >= cds[0]]


def _stop(cds, strand):
    return (cds[1] - 2, cds[1]) if strand == "+" else (cds[0], cds[0] + 2)


def _without_stop(parts, strand):
    """GTF CDS lines (GENCODE/Ensembl): the CDS parts less the stop codon (not split here)."""
    if strand == "+":
        *rest, (s, e) = parts
        return [*rest, (s, e - 3)]
    (s, e), *rest = parts
    return [(s + 3, e), *rest]


def gtf_text(strand: str, tags: dict[str, str], versioned: bool) -> str:
    gid = "G1.3" if versioned else "G1"
    lines = ["#!genome-build GRCh38.p14"]
    common = f'gene_id "{gid}"; gene_name "GENEA";'
    lines.append(f"chr1\tt\tgene\t100\t900\t.\t{strand}\t.\t{common}")
    for tid, name, exons, cds in TRANSCRIPTS[strand]:
        tid = f"{tid}.1" if versioned else tid
        tag = " ".join(f'tag "{t}";' for t in tags.get(tid.split(".")[0], "").split(",") if t)
        attrs = f'{common} transcript_id "{tid}"; transcript_name "{name}"; {tag}'
        lo, hi = exons[0][0], exons[-1][1]
        lines.append(f"chr1\tt\ttranscript\t{lo}\t{hi}\t.\t{strand}\t.\t{attrs}")
        for s, e in exons:
            lines.append(f"chr1\tt\texon\t{s}\t{e}\t.\t{strand}\t.\t{attrs}")
        for s, e in _without_stop(_cds_parts(exons, cds), strand):
            lines.append(f"chr1\tt\tCDS\t{s}\t{e}\t.\t{strand}\t0\t{attrs}")
        s, e = _stop(cds, strand)
        lines.append(f"chr1\tt\tstop_codon\t{s}\t{e}\t.\t{strand}\t0\t{attrs}")
    return "\n".join(lines) + "\n"


def refseq_gff3(strand: str, tags: dict[str, str]) -> str:
    """RefSeq style: gene-/rna-/exon-/cds- IDs, gene= on every line, CDS with the stop codon,
    tag=MANE Select (with a space), a ### and a ##FASTA section at the end."""
    lines = [
        "##gff-version 3",
        "#!gff-spec-version 1.21",
        "#!genome-build GRCh38.p14",
        "##sequence-region chr1 1 10000",
        f"chr1\tBestRefSeq\tgene\t100\t900\t.\t{strand}\t.\tID=gene-GENEA;Dbxref=GeneID:1;"
        "Name=GENEA;description=a kinase%3B with %3D and %2C in it;gbkey=Gene;gene=GENEA;"
        "gene_biotype=protein_coding",
    ]
    for tid, _name, exons, cds in TRANSCRIPTS[strand]:
        tid = f"{tid}.1"
        tag = tags.get(tid.split(".")[0], "").replace("MANE_Select", "MANE Select")
        lo, hi = exons[0][0], exons[-1][1]
        lines.append(
            f"chr1\tBestRefSeq\tmRNA\t{lo}\t{hi}\t.\t{strand}\t.\tID=rna-{tid};"
            f"Parent=gene-GENEA;Name={tid};gbkey=mRNA;gene=GENEA;"
            + (f"tag={tag};" if tag else "")
            + f"transcript_id={tid}"
        )
        ordered = exons if strand == "+" else exons[::-1]
        for k, (s, e) in enumerate(ordered, 1):
            lines.append(
                f"chr1\tBestRefSeq\texon\t{s}\t{e}\t.\t{strand}\t.\tID=exon-{tid}-{k};"
                f"Parent=rna-{tid};gene=GENEA;transcript_id={tid}"
            )
        for s, e in _cds_parts(exons, cds):
            lines.append(
                f"chr1\tBestRefSeq\tCDS\t{s}\t{e}\t.\t{strand}\t0\tID=cds-P{tid};"
                f"Parent=rna-{tid};gene=GENEA;protein_id=P{tid}"
            )
    lines += ["###", "##FASTA", ">chr1", "ACGTNNNN", "this is not GFF3 at all"]
    return "\n".join(lines) + "\n"


def ensembl_gff3(strand: str, tags: dict[str, str], shuffle: bool = False) -> str:
    """Ensembl style: gene:/transcript:/CDS: IDs, no gene name on exon lines, tag=a,b,c, an
    exon shared by both transcripts (Parent=t1,t2), UTR lines; ``shuffle`` puts every child
    before its parents (allowed by the spec)."""
    head = ["##gff-version 3", "##sequence-region   1 1 10000", "#!genome-build  GRCh38.p14"]
    lines = [
        f"chr1\tensembl_havana\tgene\t100\t900\t.\t{strand}\t.\tID=gene:G1;Name=GENEA;"
        "biotype=protein_coding;description=a kinase [Source:HGNC%3BAcc:1];gene_id=G1;version=3"
    ]
    exon_parents: dict[tuple[int, int], list[str]] = {}
    for tid, name, exons, cds in TRANSCRIPTS[strand]:
        tag = tags.get(tid, "")
        lo, hi = exons[0][0], exons[-1][1]
        lines.append(
            f"chr1\tensembl_havana\tmRNA\t{lo}\t{hi}\t.\t{strand}\t.\tID=transcript:{tid};"
            f"Parent=gene:G1;Name={name};biotype=protein_coding;"
            + (f"tag={tag};" if tag else "")
            + f"transcript_id={tid};version=1"
        )
        for s, e in exons:
            exon_parents.setdefault((s, e), []).append(f"transcript:{tid}")
        for s, e in _cds_parts(exons, cds):
            lines.append(
                f"chr1\tensembl_havana\tCDS\t{s}\t{e}\t.\t{strand}\t0\tID=CDS:P{tid};"
                f"Parent=transcript:{tid};protein_id=P{tid}"
            )
        lines.append(
            f"chr1\tensembl_havana\tthree_prime_UTR\t{hi - 5}\t{hi}\t.\t{strand}\t.\t"
            f"Parent=transcript:{tid}"
        )
    for (s, e), parents in sorted(exon_parents.items()):
        lines.append(
            f"chr1\tensembl_havana\texon\t{s}\t{e}\t.\t{strand}\t.\tParent={','.join(parents)};"
            f"Name=E{s};constitutive=0;exon_id=E{s};rank=1;version=1"
        )
    if shuffle:
        lines.reverse()
    return "\n".join([*head, *lines, "###"]) + "\n"


def _write(path: Path, text: str, compress: bool = False) -> Path:
    if compress:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def same_model(gff: GeneModel, gtf: GeneModel) -> None:
    """Every field equal except ``source`` (which names the file and its format)."""
    assert gff.source.startswith("GFF3 ") and gtf.source.startswith("GTF ")
    assert dataclasses.replace(gff, source=gtf.source) == gtf


TAG_CASES = [
    ({}, "T2", "longest CDS"),
    ({"T1": "basic", "T2": ""}, "T1", "tag basic"),
    ({"T1": "basic,Ensembl_canonical", "T2": "basic"}, "T1", "tag Ensembl_canonical"),
    ({"T1": "basic,Ensembl_canonical", "T2": "basic,MANE_Select"}, "T2", "tag MANE_Select"),
]


@pytest.mark.parametrize("strand", ["+", "-"])
@pytest.mark.parametrize("tags, chosen, why", TAG_CASES)
def test_ensembl_gff3_gives_the_model_of_the_ensembl_gtf(tmp_path, strand, tags, chosen, why):
    gtf = load_gtf(_write(tmp_path / "a.gtf", gtf_text(strand, tags, versioned=False)), "GENEA")
    assert gtf.transcript == chosen and why in gtf.selection
    for shuffle in (False, True):
        path = _write(tmp_path / f"e{shuffle}.gff3", ensembl_gff3(strand, tags, shuffle))
        same_model(load_gtf(path, "GENEA"), gtf)
    for query in ("G1", "GENEA"):
        assert load_gtf(path, query).transcript == chosen
    # A transcript asked for by id or by Name, as in the GTF by transcript_id / transcript_name.
    for wanted in ("T1", "GENEA-201"):
        same_model(
            load_gtf(path, "GENEA", wanted),
            load_gtf(tmp_path / "a.gtf", "GENEA", wanted),
        )


@pytest.mark.parametrize("strand", ["+", "-"])
@pytest.mark.parametrize("tags, chosen, why", TAG_CASES)
def test_refseq_gff3_gives_the_model_of_the_gtf(tmp_path, strand, tags, chosen, why):
    versioned = {f"{k}": v for k, v in tags.items()}
    gtf_path = _write(tmp_path / "a.gtf", gtf_text(strand, versioned, versioned=True))
    gtf = load_gtf(gtf_path, "GENEA")
    assert gtf.transcript == f"{chosen}.1"
    text = refseq_gff3(strand, versioned)
    # Told by content: gzip or not, whatever the file is called.
    for name, packed in (("r.gff3", False), ("r.gff.gz", True), ("annotation.txt", False)):
        model = load_gtf(_write(tmp_path / name, text, packed), "GENEA")
        # RefSeq transcript names are their accessions; the GTF above has GENEA-20x names,
        # which only matter to --transcript.
        same_model(model, gtf)
    # No ##gff-version line and a neutral name: the key=value attributes tell GFF3.
    bare = text.replace("##gff-version 3\n", "")
    same_model(load_gtf(_write(tmp_path / "bare.txt", bare), "GENEA"), gtf)
    assert load_gtf(tmp_path / "r.gff3", "GENEA").build == "GRCh38"


def test_gff3_percent_encoding_and_name_attributes(tmp_path):
    text = ensembl_gff3("+", {}).replace("Name=GENEA", "Name=GENE%20A%3B1")
    path = _write(tmp_path / "enc.gff3", text)
    model = load_gtf(path, "GENE A;1")
    assert model.gene == "GENE A;1"
    # Parent and ID values are decoded too: an encoded Parent still finds its transcript.
    encoded = ensembl_gff3("+", {}).replace("Parent=transcript:T1", "Parent=transcript%3AT1")
    plain = load_gtf(_write(tmp_path / "p.gff3", ensembl_gff3("+", {})), "GENEA", "T1")
    decoded = load_gtf(_write(tmp_path / "q.gff3", encoded), "GENEA", "T1")
    assert dataclasses.replace(decoded, source=plain.source) == plain


@pytest.mark.skipif(not ABI1_GTF.exists(), reason="real data missing")
def test_real_gencode_gtf_as_gff3_gives_the_same_models(tmp_path):
    """The real GENCODE v19 ABI1 GTF turned into GENCODE-style GFF3 (ID/Parent, tag=a,b, CDS
    and stop_codon kept apart): the default and every requested transcript are the same."""
    import re

    out = ["##gff-version 3"]  # no build line: the GTF has none either
    tids = []
    for line in ABI1_GTF.read_text().splitlines():
        if line.startswith("#"):
            continue
        f = line.split("\t")
        attrs: dict[str, list[str]] = {}
        for key, value in re.findall(r'(\S+) "?([^";]*)"?;', f[8]):
            attrs.setdefault(key, []).append(value)
        gene_id, tid = attrs["gene_id"][0], attrs["transcript_id"][0]
        keep = f"gene_name={attrs['gene_name'][0]}"
        if f[2] == "gene":
            col9 = f"ID={gene_id};gene_id={gene_id};{keep}"
        elif f[2] == "transcript":
            tids.append(tid)
            tags = ",".join(attrs.get("tag", []))
            col9 = (
                f"ID={tid};Parent={gene_id};transcript_id={tid};{keep};"
                f"transcript_name={attrs['transcript_name'][0]}" + (f";tag={tags}" if tags else "")
            )
        else:
            col9 = f"Parent={tid};{keep}"
        out.append("\t".join([*f[:8], col9]))
    gff = _write(tmp_path / "abi1.gff3", "\n".join(out) + "\n")
    same_model(load_gtf(gff, "ABI1"), load_gtf(ABI1_GTF, "ABI1"))
    assert len(tids) > 10
    for tid in tids:
        same_model(load_gtf(gff, "ABI1", tid), load_gtf(ABI1_GTF, "ABI1", tid))


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, message",
    [
        ("chr1\tt\texon\t10\t20", r":6: expected 9 tab-separated columns, found 5$"),
        ("chr1\tt\texon\tten\t20\t.\t+\t.\tParent=x", r":6: start and end must be integers"),
        ("chr1\tt\texon\t30\t20\t.\t+\t.\tParent=x", r":6: start 30 > end 20$"),
        (
            "chr1\tt\tmRNA\t100\t900\t.\t+\t.\tID=transcript:T9;Parent=gene:G1;oops",
            r":6: attribute column is not GFF3 key=value pairs",
        ),
    ],
)
def test_gff3_malformed_line_names_file_and_line(tmp_path, bad, message):
    lines = ensembl_gff3("+", {}).splitlines()
    lines.insert(5, bad)
    path = _write(tmp_path / "bad.gff3", "\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=rf"^{path}{message}") as info:
        load_gtf(path, "GENEA")
    assert "\n" not in str(info.value)


def test_gff3_gene_not_found_and_transcript_not_found(tmp_path):
    path = _write(tmp_path / "a.gff3", refseq_gff3("+", {}))
    with pytest.raises(
        AnnotationError, match=r"^GFF3 .*: gene GENEB not found .*close names: GENEA"
    ):
        load_gtf(path, "GENEB")
    with pytest.raises(AnnotationError, match=r"^GFF3 .*: gene GENEA has no transcript T9"):
        load_gtf(path, "GENEA", "T9")


@pytest.fixture(scope="module")
def small_bam(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gff3_bam")
    gene = small_gene("+")
    sim = simulate(tmp, seed=7, gene=gene, n_fragments=200, isoforms={"canonical": 1.0})
    return sim.bam, write_sim_gtf(gene, tmp / "gene.gtf")


def _as_gff3(gtf: Path, out: Path) -> Path:
    """The simulator's GTF as GFF3 (gene → transcript → exon/CDS/stop_codon)."""
    import re

    lines = ["##gff-version 3"]
    for line in gtf.read_text().splitlines():
        f = line.split("\t")
        attrs = dict(re.findall(r'(\S+) "([^"]*)"', f[8]))
        if f[2] == "gene":
            col9 = f"ID={attrs['gene_id']};Name={attrs['gene_name']}"
        elif f[2] == "transcript":
            col9 = f"ID={attrs['transcript_id']};Parent={attrs['gene_id']};tag=basic"
        else:
            col9 = f"Parent={attrs['transcript_id']}"
        lines.append("\t".join([*f[:8], col9]))
    out.write_text("\n".join(lines) + "\n")
    return out


def test_scan_with_gff3_equals_scan_with_gtf_and_bad_gff3_exits_3(small_bam, tmp_path, capsys):
    bam, gtf = small_bam
    gff = _as_gff3(gtf, tmp_path / "gene.gff3")
    for name, annotation in (("gtf", gtf), ("gff", gff)):
        argv = ["scan", str(bam), "--gtf", str(annotation), "--gene", "SMALL"]
        assert main([*argv, "--out", str(tmp_path / name)]) == 0
    sample = Path(bam).stem
    for table in ("exons", "junctions", "introns"):
        a = (tmp_path / "gtf" / f"{sample}.{table}.tsv").read_text()
        assert a == (tmp_path / "gff" / f"{sample}.{table}.tsv").read_text()
    # --annotation is the same option under its format-neutral name.
    argv = ["scan", str(bam), "--annotation", str(gff), "--gene", "SMALL"]
    assert main([*argv, "--out", str(tmp_path / "alias")]) == 0
    capsys.readouterr()
    lines = gff.read_text().splitlines()
    lines.insert(3, "chr1\tt\texon\t5\t1\t.\t+\t.\tParent=x")
    bad = tmp_path / "bad.gff3"
    bad.write_text("\n".join(lines) + "\n")
    argv = ["scan", str(bam), "--gtf", str(bad), "--gene", "SMALL", "--out", str(tmp_path / "b")]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert f"{bad}:4: start 5 > end 1" in err and err.count("\n") == 1


def test_gffread_style_gff3_without_gene_lines(tmp_path):
    """gffread writes transcripts with geneID=/gene_name= and no gene line."""
    lines = ["##gff-version 3", "#!genome-build GRCh38.p14"]
    for tid, name, exons, cds in TRANSCRIPTS["+"]:
        lo, hi = exons[0][0], exons[-1][1]
        lines.append(
            f"chr1\tgffread\ttranscript\t{lo}\t{hi}\t.\t+\t.\tID={tid};geneID=G1;"
            f"gene_name=GENEA;transcript_name={name}"
        )
        lines += [f"chr1\tgffread\texon\t{s}\t{e}\t.\t+\t.\tParent={tid}" for s, e in exons]
        lines += [
            f"chr1\tgffread\tCDS\t{s}\t{e}\t.\t+\t0\tParent={tid}"
            for s, e in _cds_parts(exons, cds)
        ]
    path = _write(tmp_path / "gffread.gff3", "\n".join(lines) + "\n")
    gtf = _write(tmp_path / "a.gtf", gtf_text("+", {}, versioned=False))
    for query in ("GENEA", "G1"):
        same_model(load_gtf(path, query), load_gtf(gtf, query))
    with pytest.raises(AnnotationError, match=r"gene GENEB not found .*close names: GENEA"):
        load_gtf(path, "GENEB")


def test_unversioned_ensembl_ids_match_a_versioned_query(tmp_path):
    """Ensembl ids carry no version (it is a separate attribute): ENSG.3 / T1.1 still match."""
    path = _write(tmp_path / "e.gff3", ensembl_gff3("+", {}))
    assert load_gtf(path, "G1.3").gene == "GENEA"
    assert load_gtf(path, "GENEA", "T1.1").transcript == "T1"
    gtf = _write(tmp_path / "e.gtf", gtf_text("+", {}, versioned=False))
    assert load_gtf(gtf, "GENEA", "T1.1").transcript == "T1"
