"""Contig naming and genome-build detection from a BAM header's contig lengths.

Maps between UCSC (``chr19``), Ensembl (``19``) and RefSeq (``NC_000019.10``) names of the
human primary chromosomes, and tells GRCh38 from GRCh37 by length. The facts come from
``data/contigs.tsv`` (NCBI assembly reports as shipped by bioutils, cross-checked with bioframe).
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources

from cd22scan.errors import AnnotationError

__all__ = [
    "BUILDS",
    "ContigInfo",
    "ContigMatch",
    "aliases_of",
    "builds_for_length",
    "detect_build",
    "expected_length",
    "molecule_of",
    "normalize_build",
    "resolve_contig",
]

BUILDS = ("GRCh38", "GRCh37")

_BUILD_ALIASES = {
    "grch38": "GRCh38",
    "hg38": "GRCh38",
    "grch37": "GRCh37",
    "hg19": "GRCh37",
    "b37": "GRCh37",
    "hs37d5": "GRCh37",
}
_PRIMARY = {str(i) for i in range(1, 23)} | {"X", "Y", "MT"}
_ACCESSION_RE = re.compile(r"^([A-Z]{1,2}_?\d+)(?:\.(\d+))?$", re.IGNORECASE)


@dataclass(frozen=True)
class ContigInfo:
    """One row of data/contigs.tsv: a primary chromosome of one build under all its names."""

    build: str
    molecule: str  # Ensembl-style key: "1".."22", "X", "Y", "MT"
    ucsc: str
    ensembl: str
    refseq: str
    genbank: str
    length: int
    source: str


@dataclass(frozen=True)
class ContigMatch:
    """The header contig that stands for a wanted contig name."""

    wanted: str  # the name asked for (e.g. the gene model's contig)
    name: str  # the name as spelled in the header
    length: int  # its length in the header
    molecule: str | None  # "19", "X", "MT", ... or None for a non-standard contig
    build: str | None  # the one build whose length it has, else None
    fits: tuple[str, ...] = ()  # every build whose length it has (chrM/MT 16569 fits both)


@functools.lru_cache(maxsize=1)
def _table() -> tuple[ContigInfo, ...]:
    text = resources.files("cd22scan.target").joinpath("data", "contigs.tsv").read_text("utf-8")
    rows = csv.DictReader(text.splitlines(), delimiter="\t")
    return tuple(
        ContigInfo(
            build=r["build"],
            molecule=r["molecule"],
            ucsc=r["ucsc"],
            ensembl=r["ensembl"],
            refseq=r["refseq"],
            genbank=r["genbank"],
            length=int(r["length"]),
            source=r["source"],
        )
        for r in rows
    )


@functools.lru_cache(maxsize=1)
def _accessions() -> dict[str, str]:
    """RefSeq/GenBank accession without version (upper case) → molecule."""
    out: dict[str, str] = {}
    for info in _table():
        for acc in (info.refseq, info.genbank):
            if acc:
                out[acc.split(".")[0].upper()] = info.molecule
    return out


def normalize_build(build: str | None) -> str | None:
    """'hg38', 'GRCh38.p14' → 'GRCh38'; 'hg19', 'b37', 'GRCh37.p13' → 'GRCh37'; others unchanged."""
    if build is None:
        return None
    text = build.strip()
    if not text:
        return None
    key = text.lower()
    for prefix, name in _BUILD_ALIASES.items():
        if key == prefix or key.startswith(prefix + "."):
            return name
    return text


def molecule_of(name: str) -> str | None:
    """The primary-chromosome key ("19", "X", "MT") a contig name stands for, or None.

    Knows ``chr19``/``19``/``CHR19``, ``chrM``/``MT``/``chrMT``/``M`` and the RefSeq/GenBank
    accessions of both builds (with or without version).
    """
    text = name.strip()
    match = _ACCESSION_RE.match(text)
    if match:
        found = _accessions().get(match.group(1).upper())
        if found:
            return found
    core = text[3:] if text.lower().startswith("chr") else text
    core = core.upper()
    if core in ("M", "MT"):
        return "MT"
    if core in _PRIMARY and not core.startswith("0"):
        return core
    return None


def aliases_of(name: str) -> tuple[str, ...]:
    """Names that stand for the same chromosome (for messages); the name itself if unknown."""
    molecule = molecule_of(name)
    if molecule is None:
        return (name,)
    names = [name]
    for info in _table():
        if info.molecule == molecule:
            names += [info.ucsc, info.ensembl, info.refseq]
    return tuple(dict.fromkeys(n for n in names if n))


def builds_for_length(molecule: str | None, length: int) -> tuple[str, ...]:
    """Builds in which this chromosome has exactly this length."""
    if molecule is None:
        return ()
    builds = (i.build for i in _table() if i.molecule == molecule and i.length == length)
    return tuple(dict.fromkeys(builds))


def expected_length(molecule: str | None, build: str | None) -> int | None:
    """Length of a primary chromosome in a build (for MT: the rCRS, 16569)."""
    build = normalize_build(build)
    for info in _table():
        if info.molecule == molecule and info.build == build and info.ensembl:
            return info.length
    return None


def _describe(header: Mapping[str, int], limit: int = 8) -> str:
    names = list(header)
    shown = ", ".join(names[:limit])
    more = f", … ({len(names)} in all)" if len(names) > limit else ""
    return shown + more if names else "no contigs"


def resolve_contig(header: Mapping[str, int], wanted_contig: str) -> ContigMatch:
    """Find the header contig for ``wanted_contig`` (exact name first, then chr19/19/NC_ aliases).

    ``header`` maps contig name → length, in header order. Raises AnnotationError when the
    contig is absent or more than one header contig could stand for it.
    """
    if wanted_contig in header:
        name = wanted_contig
    else:
        molecule = molecule_of(wanted_contig)
        candidates = (
            [n for n in header if molecule_of(n) == molecule] if molecule is not None else []
        )
        if len(candidates) > 1:
            # A versioned RefSeq name pins one sequence: keep the candidate with its length.
            pinned = [i.length for i in _table() if i.refseq == wanted_contig]
            by_length = [n for n in candidates if header[n] in pinned]
            if len(by_length) == 1:
                candidates = by_length
        if not candidates:
            others = [a for a in aliases_of(wanted_contig) if a != wanted_contig]
            looked = f" (nor {', '.join(others)})" if others else ""
            raise AnnotationError(
                f"contig {wanted_contig}{looked} is not in the BAM header; "
                f"it has {_describe(header)}"
            )
        if len(candidates) > 1:
            listed = ", ".join(f"{n} ({header[n]} bp)" for n in candidates)
            raise AnnotationError(
                f"contig {wanted_contig} is ambiguous: the BAM header has {listed}; "
                "give the exact contig name"
            )
        name = candidates[0]
    length = int(header[name])
    molecule = molecule_of(name)
    fits = builds_for_length(molecule, length)
    return ContigMatch(
        wanted=wanted_contig,
        name=name,
        length=length,
        molecule=molecule,
        build=fits[0] if len(fits) == 1 else None,
        fits=fits,
    )


def detect_build(header: Mapping[str, int]) -> str | None:
    """'GRCh38' or 'GRCh37' when the primary-chromosome lengths point to one build, else None.

    Only lengths that belong to exactly one build vote (MT 16569 is in both); no vote, or votes
    for both builds (a mixed header), gives None.
    """
    votes: set[str] = set()
    for name, length in header.items():
        fits = builds_for_length(molecule_of(name), int(length))
        if len(fits) == 1:
            votes.add(fits[0])
    return votes.pop() if len(votes) == 1 else None
