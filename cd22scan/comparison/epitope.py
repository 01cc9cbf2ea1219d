"""Does an escape event remove the epitope of the CAR this patient got? (issue 15)

Each escape row of a comparison (``escape`` true: a called event in the escape direction) is put
in one class, with the reason in words:

* ``no_antigen``: no antigen the CAR could bind is expected from the changed transcripts: less
  RNA of the gene (expression loss), the start codon removed (CD22 Δex2), a premature stop or a
  frameshift that starts before the end of the transmembrane helix (the protein cannot reach the
  membrane), or an in-frame change that removes the transmembrane helix.
* ``epitope_lost``: an in-frame change (skipping, loss of an exon) that removes an exon encoding
  the binder's epitope (CD19 Δex2 under FMC63).
* ``epitope_retained``: the protein still reaches the membrane and the epitope's exons are
  untouched, for a binder whose epitope lies wholly within those exons (CD22 Δex5-6 under m971:
  an inference from the domain map, stated as such in the reason).
* ``unknown``: the data cannot tell: no CAR binder given, a binder whose epitope is not fully
  mapped (FMC63 beyond exon 2), a missense change inside the epitope exons, a splice-site
  variant, intron retention or a new junction whose protein product is not predicted, or a gene
  without a topology in ``data/topology.tsv``.

The binder and topology data, with sources, are ``target/binders.py``. The per-pair summary
(``binder_verdict``) is ``CAR target lost`` when any escape row is ``no_antigen`` or
``epitope_lost``, else ``unknown`` when any is unknown, else ``epitope retained`` (all escape rows
keep the epitope) or ``no escape event``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cd22scan.target.annotation import GeneModel
from cd22scan.target.binders import Binder, Topology, topology

NO_ANTIGEN = "no_antigen"
EPITOPE_LOST = "epitope_lost"
EPITOPE_RETAINED = "epitope_retained"
UNKNOWN = "unknown"
CLASSES = (NO_ANTIGEN, EPITOPE_LOST, EPITOPE_RETAINED, UNKNOWN)

TARGET_LOST = "CAR target lost"
RETAINED = "epitope retained"
NO_ESCAPE_EVENT = "no escape event"

_SKIP = re.compile(r"^Δex(\d+)(?:-(\d+))?$")
_EXON = re.compile(r"^exon (\d+)$")
_INTRON = re.compile(r"^intron (\d+)$")
_CODON = re.compile(r"^p\.\(?[A-Z][a-z]{2}(\d+)")
_TRUNCATING = ("stop_gained", "frameshift_variant")
_IN_FRAME = (
    "missense_variant",
    "inframe_insertion",
    "inframe_deletion",
    "protein_altering_variant",
)
_SPLICE = ("splice_acceptor_variant", "splice_donor_variant")


@dataclass(frozen=True)
class Epitope:
    klass: str  # one of CLASSES
    why: str  # the reason, in words


def _codon_spans(model: GeneModel) -> dict[int, tuple[int, int]]:
    """{exon: (first codon, last codon)} of the coding exons, transcript order (1-based)."""
    spans: dict[int, tuple[int, int]] = {}
    done = 0
    for exon in model.exons:
        part = model.coding_part(exon)
        if not part:
            continue
        length = part[1] - part[0] + 1
        spans[exon.number] = (done // 3 + 1, (done + length - 1) // 3 + 1)
        done += length
    return spans


def _exon_of_codon(model: GeneModel, codon: int) -> int | None:
    for number, (first, last) in _codon_spans(model).items():
        if first <= codon <= last:
            return number
    return None


def _removed_exons(row: dict[str, Any]) -> tuple[int, ...] | None:
    feature = row["feature"] or ""
    if row["event_type"] in ("exon_skipping", "isoform_shift", "long_read_isoform"):
        m = _SKIP.match(feature)
        if m:
            first = int(m.group(1))
            return tuple(range(first, int(m.group(2) or first) + 1))
        return None
    if row["event_type"] == "exon_loss":
        m = _EXON.match(feature)
        return (int(m.group(1)),) if m else None
    return None


def _truncated(codon: int, topo: Topology | None, binder: Binder | None, what: str) -> Epitope:
    """A protein that ends at (or turns into another frame at) ``codon``."""
    if topo is None:
        return Epitope(UNKNOWN, f"{what} from codon {codon}; no protein topology for this gene")
    tm_first, tm_last = topo.transmembrane
    if codon <= tm_last:
        return Epitope(
            NO_ANTIGEN,
            f"{what} from codon {codon}, before the end of the transmembrane helix "
            f"(aa {tm_first}-{tm_last}, UniProt {topo.uniprot}): no membrane protein",
        )
    return _kept(binder, f"{what} from codon {codon}, in the cytoplasmic tail")


def _kept(binder: Binder | None, why: str) -> Epitope:
    """The protein reaches the membrane and the change leaves the epitope's exons alone."""
    if binder is None:
        return Epitope(UNKNOWN, f"{why}; no CAR binder given for this gene")
    if not binder.known:
        return Epitope(UNKNOWN, f"{why}; {binder.name} is not in the binder table")
    if binder.within_exons:
        exons = ",".join(map(str, binder.epitope_exons))
        return Epitope(
            EPITOPE_RETAINED,
            f"{why}; the {binder.name} epitope (exon {exons}) is untouched (inferred from the "
            "exon-domain map)",
        )
    exons = ",".join(map(str, binder.epitope_exons))
    return Epitope(
        UNKNOWN,
        f"{why}; the {binder.name} epitope is mapped to exon {exons} only in part",
    )


def _skipped(exons: tuple[int, ...], model: GeneModel, binder: Binder | None) -> Epitope:
    label = f"exon {exons[0]}" if len(exons) == 1 else f"exons {exons[0]}-{exons[-1]}"
    frame = model.skip_frame(exons)
    if frame == "start-lost":
        return Epitope(NO_ANTIGEN, f"removes the start codon ({label})")
    topo = topology(model.gene)
    spans = _codon_spans(model)
    coding = [e for e in exons if e in spans]
    if frame == "frameshift":
        return _truncated(spans[coding[0]][0], topo, binder, f"frameshift by skipping {label}")
    if frame == "non-coding":
        return _kept(binder, f"skipping {label} leaves the coding sequence unchanged")
    if binder is not None and set(exons) & set(binder.epitope_exons):
        return Epitope(EPITOPE_LOST, f"in-frame loss of {label}, which encodes the epitope")
    if topo is not None and coding:
        first, last = spans[coding[0]][0], spans[coding[-1]][1]
        tm_first, tm_last = topo.transmembrane
        if first <= tm_last and last >= tm_first:
            return Epitope(NO_ANTIGEN, f"in-frame loss of {label} removes the transmembrane helix")
    if topo is None:
        return Epitope(UNKNOWN, f"in-frame loss of {label}; no protein topology for this gene")
    return _kept(binder, f"in-frame loss of {label}")


def _mutation(row: dict[str, Any], model: GeneModel, binder: Binder | None) -> Epitope:
    consequence = row["consequence"] or ""
    name = row["hgvs_p"] or row["hgvs_c"] or row["feature"]
    if consequence == "start_lost":
        return Epitope(NO_ANTIGEN, f"{name} removes the start codon")
    m = _CODON.match(row["hgvs_p"] or "")
    codon = int(m.group(1)) if m else None
    if consequence in _TRUNCATING and codon is not None:
        what = "frameshift" if consequence == "frameshift_variant" else "premature stop"
        return _truncated(codon, topology(model.gene), binder, f"{name}: {what}")
    if consequence in _SPLICE:
        return Epitope(UNKNOWN, f"{name} changes a splice site: the isoform made is not predicted")
    if consequence in _IN_FRAME and codon is not None:
        exon = _exon_of_codon(model, codon)
        if binder is not None and exon in binder.epitope_exons:
            return Epitope(
                UNKNOWN,
                f"{name} changes a residue encoded by exon {exon}, in the {binder.name} epitope "
                "region: whether binding is lost is not predicted",
            )
        topo = topology(model.gene)
        if topo is None:
            return Epitope(UNKNOWN, f"{name}; no protein topology for this gene")
        return _kept(binder, f"{name} changes one residue (exon {exon})")
    return Epitope(UNKNOWN, f"{name}: protein consequence not predicted")


def classify(row: dict[str, Any], model: GeneModel, binder: Binder | None) -> Epitope:
    """The class of one escape row of a comparison against ``binder`` (None: no CAR given)."""
    kind = row["event_type"]
    if kind == "expression_loss":
        return Epitope(NO_ANTIGEN, f"less {model.gene} RNA at relapse: less antigen to bind")
    exons = _removed_exons(row)
    if exons is not None:
        return _skipped(exons, model, binder)
    if kind == "long_read_isoform" and (row["feature"] or "").startswith("IR"):
        kind, row = "intron_retention", {**row, "feature": f"intron {row['feature'][2:]}"}
    if kind == "intron_retention":
        m = _INTRON.match(row["feature"] or "")
        known = [e for e in model.known_events if e.kind == "intron_retention"]
        stop = [e for e in known if e.name == f"IR{m.group(1)}"] if m else []
        if stop and stop[0].frame == "premature-stop":
            spans = _codon_spans(model)
            exon = int(m.group(1)) if m else 0
            if exon in spans:
                return _truncated(
                    spans[exon][1], topology(model.gene), binder, f"retention of intron {exon}"
                )
        return Epitope(
            UNKNOWN, f"{row['feature']} retained: the protein of the retaining transcript is not "
            "predicted (most are degraded by nonsense-mediated decay)"
        )  # fmt: skip
    if kind in ("novel_junction", "isoform_shift", "long_read_isoform"):
        return Epitope(UNKNOWN, f"junction {row['feature']}: the protein it makes is not predicted")
    if kind == "mutation":
        return _mutation(row, model, binder)
    return Epitope(UNKNOWN, "not predicted")


def binder_verdict(classes: list[str]) -> str:
    """One pair's summary over the classes of its escape rows (module docstring)."""
    if not classes:
        return NO_ESCAPE_EVENT
    if NO_ANTIGEN in classes or EPITOPE_LOST in classes:
        return TARGET_LOST
    if UNKNOWN in classes:
        return UNKNOWN
    return RETAINED


def sentence(row: dict[str, Any], gene: str, binder: Binder | None, epitope: Epitope) -> str:
    """What a clinician reads: "CD22 Δex5-6 at relapse, m971 epitope retained"."""
    kind = row["event_type"]
    if kind == "expression_loss":
        what = f"{gene} expression loss (log2FC {row['effect']:+.2f})"
    elif kind == "mutation":
        what = f"{gene} {row['hgvs_p'] or row['feature']}"
    elif kind == "intron_retention":
        what = f"{gene} {row['feature']} retention"
    else:
        what = f"{gene} {row['feature']}"
    name = binder.name if binder is not None else "CAR"
    tail = {
        NO_ANTIGEN: f"no {gene} antigen expected",
        EPITOPE_LOST: f"{name} epitope lost",
        EPITOPE_RETAINED: f"{name} epitope retained",
        UNKNOWN: f"{name} epitope: unknown",
    }[epitope.klass]
    return f"{what} at relapse, {tail}"
