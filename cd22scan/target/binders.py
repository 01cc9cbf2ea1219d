"""CAR binders and the protein topology of their targets (built-in data with sources).

Data (versioned, with sources): ``data/binders.tsv`` (each binder's target gene, the exons that
encode its epitope and whether the epitope lies wholly within them) and ``data/topology.tsv``
(signal peptide, extracellular, transmembrane and cytoplasmic parts of the protein, in amino
acids). ``comparison/epitope.py`` uses both to class an event against the CAR a patient got.

``--car CD22:m971`` (several comma-separated, or given more than once) names the binder of each
target; ``parse_cars`` reads that spelling. A binder missing from the table is accepted with a
warning: its epitope is then unknown, so only "no antigen" can be said of an event.
"""

from __future__ import annotations

import csv
import functools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from cd22scan.errors import UsageError
from cd22scan.target.annotation import builtin_genes
from cd22scan.target.panel import ALIASES

log = logging.getLogger("cd22scan")


@dataclass(frozen=True)
class Binder:
    name: str  # e.g. "m971"
    gene: str  # HGNC symbol of the target, e.g. "CD22"
    epitope_exons: tuple[int, ...]  # exons of the gene's built-in model that encode the epitope
    epitope_region: str  # in words
    # True when the epitope lies wholly within ``epitope_exons``: an in-frame change elsewhere
    # on a membrane protein keeps it ("retained"); False: only a change of those exons can be
    # judged (to "lost"), anything else is "unknown".
    within_exons: bool
    evidence: str
    source: str  # literature; "" for a binder that is not in the table

    @property
    def known(self) -> bool:
        return bool(self.source)


@dataclass(frozen=True)
class Topology:
    gene: str
    uniprot: str
    length_aa: int
    signal_peptide: tuple[int, int]  # first and last amino acid, 1-based inclusive
    extracellular: tuple[int, int]
    transmembrane: tuple[int, int]
    cytoplasmic: tuple[int, int]
    source: str


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("cd22scan.target").joinpath("data", name).read_text("utf-8")
    return list(csv.DictReader(text.splitlines(), delimiter="\t"))


def _span(text: str) -> tuple[int, int]:
    first, last = text.split("-")
    return int(first), int(last)


@functools.lru_cache(maxsize=1)
def builtin_binders() -> tuple[Binder, ...]:
    """Every binder of data/binders.tsv."""
    return tuple(
        Binder(
            name=row["binder"],
            gene=row["gene"],
            epitope_exons=tuple(int(x) for x in row["epitope_exons"].split(",") if x),
            epitope_region=row["epitope_region"],
            within_exons=row["epitope_within_exons"] == "yes",
            evidence=row["evidence"],
            source=row["source"],
        )
        for row in _rows("binders.tsv")
    )


@functools.lru_cache(maxsize=1)
def _topologies() -> dict[str, Topology]:
    return {
        row["gene"]: Topology(
            gene=row["gene"],
            uniprot=row["uniprot"],
            length_aa=int(row["length_aa"]),
            signal_peptide=_span(row["signal_peptide"]),
            extracellular=_span(row["extracellular"]),
            transmembrane=_span(row["transmembrane"]),
            cytoplasmic=_span(row["cytoplasmic"]),
            source=row["source"],
        )
        for row in _rows("topology.tsv")
    }


def topology(gene: str) -> Topology | None:
    """The protein topology of a built-in gene, or None when data/topology.tsv lacks it."""
    return _topologies().get(gene)


def binder(gene: str, name: str) -> Binder:
    """The binder ``name`` (any case) of ``gene``; one that is not in the table comes back with
    no epitope exons and no source (its epitope is unknown), with a warning."""
    for item in builtin_binders():
        if item.gene == gene and item.name.lower() == name.lower():
            return item
    known = ", ".join(f"{b.gene}:{b.name}" for b in builtin_binders())
    log.warning(
        "--car %s:%s: no such binder in the built-in table (%s); its epitope is unknown, so "
        "only loss of the antigen can be judged",
        gene,
        name,
        known,
    )
    return Binder(name, gene, (), "unknown", False, "not in the built-in binder table", "")


def _symbol(name: str) -> str:
    """The HGNC symbol of a built-in gene or alias (any case); other names as given (GTF genes)."""
    by_upper = {g.upper(): g for g in builtin_genes()}
    by_upper.update({alias.upper(): gene for alias, gene in ALIASES.items()})
    return by_upper.get(name.upper(), name)


def parse_cars(values: Iterable[str]) -> dict[str, Binder]:
    """{gene: Binder} from ``--car`` values ("CD22:m971", "CD19:FMC63,CD22:m971").

    Gene names are symbols or aliases (CD20, BCMA) in any case; a gene named twice with
    different binders, or a value without ``GENE:BINDER``, is a usage error."""
    out: dict[str, Binder] = {}
    for value in values:
        for part in (p.strip() for p in value.split(",")):
            if not part:
                continue
            gene, sep, name = part.partition(":")
            if not sep or not gene.strip() or not name.strip():
                raise UsageError(
                    f"--car {part!r}: expected GENE:BINDER, e.g. CD22:m971 or CD19:FMC63 "
                    f"(built-in: {', '.join(f'{b.gene}:{b.name}' for b in builtin_binders())})"
                )
            symbol = _symbol(gene.strip())
            item = binder(symbol, name.strip())
            if symbol in out and out[symbol].name.lower() != item.name.lower():
                raise UsageError(
                    f"--car names two binders for {symbol}: {out[symbol].name} and {item.name}"
                )
            out[symbol] = item
    return out
