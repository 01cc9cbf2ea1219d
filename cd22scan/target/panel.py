"""The built-in CAR-T target panel: which genes, under which names, and the lineage markers.

Data (versioned, with sources): ``data/models.tsv`` (one MANE Select transcript per gene and build),
``data/transcripts.tsv`` (why that transcript), ``data/events.tsv`` (known escape events per gene),
``data/lineage_markers.tsv`` (B-lineage and myeloid markers of the lineage-switch score). See
docs/panel.md for the sources and what is unverified.
"""

from __future__ import annotations

import csv
import functools
from importlib import resources

from cd22scan.errors import UsageError
from cd22scan.target.annotation import builtin_genes

# The CAR-T targets of the panel (HGNC symbols), in the order reports list them.
CAR_TARGETS = ("CD19", "CD22", "MS4A1", "TNFRSF17", "GPRC5D", "CD7")
# The default of `scan --targets`: the targets of B-ALL CAR T cells (Pan et al., Leukemia 2019).
B_ALL_TARGETS = ("CD19", "CD22")
# Protein or common names users type, to HGNC symbols.
ALIASES = {"CD20": "MS4A1", "BCMA": "TNFRSF17", "CD10": "MME", "CD64": "FCGR1A", "CD79a": "CD79A"}
# Spellings of --targets that name a set.
SETS = ("all", "b-all", "panel")


@functools.lru_cache(maxsize=1)
def _marker_rows() -> tuple[dict[str, str], ...]:
    text = resources.files("cd22scan.target").joinpath("data", "lineage_markers.tsv")
    return tuple(csv.DictReader(text.read_text("utf-8").splitlines(), delimiter="\t"))


def lineage_markers() -> dict[str, tuple[str, ...]]:
    """Lineage -> marker genes ({"B": (...), "myeloid": (...)}), from lineage_markers.tsv."""
    out: dict[str, list[str]] = {}
    for row in _marker_rows():
        out.setdefault(row["lineage"], []).append(row["gene"])
    return {lineage: tuple(genes) for lineage, genes in out.items()}


def panel_genes() -> tuple[str, ...]:
    """The CAR targets, then the lineage markers that are not targets."""
    markers = [g for genes in lineage_markers().values() for g in genes]
    return tuple(dict.fromkeys((*CAR_TARGETS, *markers)))


def canonical_name(name: str) -> str:
    """The HGNC symbol of a built-in gene named ``name`` (any case, or an alias), or raise."""
    key = name.strip()
    by_upper = {g.upper(): g for g in builtin_genes()}
    by_upper.update({alias.upper(): gene for alias, gene in ALIASES.items()})
    if key.upper() not in by_upper:
        raise UsageError(
            f"--targets: no built-in gene {key!r}; built-in: {', '.join(builtin_genes())} "
            f"(aliases {', '.join(f'{a}={g}' for a, g in ALIASES.items())}; sets "
            f"{', '.join(SETS)}); use --gtf for any other gene"
        )
    return by_upper[key.upper()]


def resolve_targets(spec: str) -> tuple[str, ...]:
    """Genes of a ``--targets`` value: comma-separated names or aliases, or a set — ``all`` (the
    six CAR targets), ``b-all`` (CD19, CD22), ``panel`` (targets and lineage markers). Order is
    kept, duplicates dropped."""
    genes: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        lowered = part.lower()
        if lowered == "all":
            genes.extend(CAR_TARGETS)
        elif lowered == "b-all":
            genes.extend(B_ALL_TARGETS)
        elif lowered == "panel":
            genes.extend(panel_genes())
        else:
            genes.append(canonical_name(part))
    if not genes:
        raise UsageError(f"--targets {spec!r} names no gene")
    return tuple(dict.fromkeys(genes))
