"""Baseline vs relapse for one patient: effect sizes, tests and a verdict (polars).

Input: two ``ScanResult`` objects of the same gene model (``scanner.scan``); output: a
``Comparison`` whose ``events`` frame has one row per tested feature and whose ``verdict`` frame
has one row naming the strongest evidence of antigen loss, mutation or aberrant splicing.

Why effect size *and* test
--------------------------
One baseline and one relapse sample have no replicates, so nothing measures how much two
libraries of the same tumour differ. A plain Fisher / binomial test on thousands of reads treats
every read as an independent draw and calls a 0.50 → 0.52 PSI shift "significant"; library
preparation, RNA quality and biology move proportions by more than that. Each row is therefore
tested with a stated over-dispersion (``stats.beta_binomial_two_sample_test``, rho =
``Thresholds.dispersion``; counts of the gene with ``stats.poisson_rate_test`` and a
negative-binomial dispersion), and a row is **called** only when, together,

* its effect passes the effect-size threshold (log2FC ≤ ``min_log2fc_loss``, |ΔPSI| ≥
  ``min_delta_psi``, |ΔIR| ≥ ``min_delta_ir``, |ΔVAF| ≥ ``min_delta_vaf``),
* q < ``max_q`` (Benjamini–Hochberg in three families: the pre-specified hypotheses, gene
  expression and the target's known events; the other expression and splicing rows; the
  mutation rows, whose number grows with depth; rows without a read in
  either sample are left out of the correction, q = 1, as DESeq2's independent filtering; the
  pre-specified hypotheses state their direction in advance, a loss and more skipping at
  relapse, and are tested one-sided, ``alternative`` of the tests in ``calling.stats``), and
* the sample where the event is seen (the one with the larger value) has ≥ ``min_reads`` reads
  behind it (fragments of the gene or exon, junction reads, retained reads, alt reads).

The dispersions are the stated ones unless ``Thresholds.calibrated`` holds values a cohort's
baselines gave (``comparison.dispersion``; ``run`` with >= 8 baselines): then each event type
uses its own (``Thresholds.rho`` / ``phi``), a feature that varies more than its type its own
wider one, learned proportions are referred to F(1, d), and the verdict row says so
(``dispersion_source``, ``dispersions``).

Tests, per ``event_type`` (effects are relapse − baseline, or log2 relapse / baseline)
------------------------------------------------------------------------------------------
* ``expression_loss`` (feature ``gene``): fragments on the gene (``fragments_on_gene``) per
  library size (``summary["library_size"]``, mapped records). effect = log2 fold change of the
  rate (pseudocount 0.5); p = one-sided (baseline rate greater) ``poisson_rate_test``
  conditional on the total, beta-binomial with
  rho = ``rho_from_nb_dispersion(expression_dispersion, share)`` (an NB dispersion φ, edgeR's
  BCV²; share = the baseline's share of the two library sizes). values = CPM.
* ``exon_loss`` (feature ``exon k``): the exon's fragments as a share of the gene's fragments,
  so a uniform drop in expression is not an exon loss. effect = log2 fold change of that share;
  p = beta-binomial (rho = ``dispersion``) on exon fragments of gene fragments. values = that
  share (0-1) in each sample; an exon with no fragment in either sample has effect and p null.
* ``exon_skipping`` (feature ``Δex2``, ``Δex5-6``): the skipping junction's share of its donor
  exon's splicing, reads / (reads + canonical reads of the donor → donor + 1 junction)
  (``donor_share`` of ``splicing.skipping_events``). This share, rather than exon PSI, is used
  because it names one junction, covers multi-exon skips, and compares two junctions that start
  at the same donor (no positional bias). effect = ΔPSI of that share; p = beta-binomial on
  reads of reads + canonical, one-sided (more at relapse) for a known event of the target. A
  sample without the junction gets 0 reads and the canonical reads of its donor
  (``spliced_reads`` of that intron).
* ``intron_retention`` (feature ``intron k``): ``ir_ratio`` = retained / (retained + spliced)
  of ``splicing.intron_retention`` (retained: median depth of the intron body; spliced: reads
  across either end of the intron, ``spliced_any``); effect = ΔIR; p = beta-binomial on
  round(retained) of round(retained) + spliced.
* ``novel_junction`` (feature ``contig:start-end``, the intron, 1-based inclusive): the
  junction's share of its annotated side: reads / (reads + canonical reads of the annotated donor
  (novel acceptor) or into the annotated acceptor (novel donor)); with neither side annotated,
  reads / fragments on the gene. effect = ΔPSI of that share; p = beta-binomial.
* ``mutation`` (feature = HGVS c. name, ``c.412del``): alleles of ``variants.call_variants`` with
  ≥ 3 alt reads and either VAF ≥ 0.05 or VAF ≥ ``min_delta_vaf`` with more alt reads than that
  sample's own substitution error rate explains (``variants.mismatch_rate``, binomial upper
  tail < 1e-6) in either sample; the other sample's alt reads and depth at the
  same VCF allele are looked up (0 alt reads and the site's depth when absent). effect = ΔVAF;
  p = beta-binomial on alt reads of depth.

* ``isoform_shift``: an ``exon_skipping`` or ``novel_junction`` row whose junction is an
  intron of another annotated transcript of the gene (``transcripts`` names them; see
  ``GeneModel.junction_transcripts``), tested the same way. A known event of the target stays
  ``exon_skipping`` even when an isoform has it (a pre-specified hypothesis).

``direction`` is ``up`` (effect > 0) or ``down`` (< 0), null for no change. Only losses can be
called for ``expression_loss`` / ``exon_loss``. ``escape`` marks a called row that is escape
evidence, which only the escape direction is: a called expression loss or loss of a coding exon
(antigen loss); ``up`` (more at relapse) skipping of coding exons or of a known event, more
intron retention, a new junction inside the gene, or an isoform shift that loses the protein
(frameshift, start- or stop-lost) (aberrant splicing); an ``up`` mutation whose consequence alters
the protein or a splice site (``PROTEIN_ALTERING``) and whose FILTER is PASS (null counts as PASS).
Other called rows are changes: listed in the verdict text, not counted as escape.

Verdict per mechanism (``antigen_loss_status``, ``aberrant_splicing_status``,
``mutation_status``): ``escape``, ``no escape detected``, or ``not assessable (why)`` when an
event of the minimum size in force could not have been called with this pair's counts (its
test alone would not reach ``max_q`` or fewer than ``min_reads`` reads would show it):
antigen loss from the baseline's fragments and the library sizes; aberrant splicing at the donor
of a known skipping event (or of any annotated intron when the target has none), a ΔPSI of
``min_delta_psi`` from 0; mutation at the median depth over the CDS (uncovered bases count 0),
a new allele at ``min_delta_vaf``, and only with a reference (consequences need one).
"""

from __future__ import annotations

import json
import logging
import math
import shlex
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import polars as pl

from cd22scan.calling.sample import SampleCalls, call_sample, sample_calls
from cd22scan.calling.stats import (
    benjamini_hochberg,
    beta_binomial_two_sample_test,
    binomial_upper_tail,
    log2_fold_change,
    poisson_rate_test,
    rho_from_nb_dispersion,
)
from cd22scan.calling.variants import COLUMNS as VARIANT_COLUMNS
from cd22scan.calling.variants import mismatch_rate
from cd22scan.comparison.epitope import binder_verdict, classify, sentence
from cd22scan.errors import InputError, UsageError
from cd22scan.sample.scan import ScanResult
from cd22scan.target.annotation import GeneModel
from cd22scan.target.binders import Binder
from cd22scan.target.contigs import molecule_of

log = logging.getLogger("cd22scan")

__all__ = [
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "MUTATION_COLUMNS",
    "PROTEIN_ALTERING",
    "THRESHOLD_OPTIONS",
    "VERDICT_COLUMNS",
    "Comparison",
    "Thresholds",
    "compare_samples",
]

RefFetch = Callable[[int, int], str]

EVENT_TYPES = (
    "expression_loss",
    "exon_loss",
    "exon_skipping",
    "intron_retention",
    "novel_junction",
    "isoform_shift",
    "mutation",
    "long_read_isoform",
)
SPLICING_TYPES = (
    "exon_skipping",
    "intron_retention",
    "novel_junction",
    "isoform_shift",
    "long_read_isoform",
)
LOSS_TYPES = ("expression_loss", "exon_loss")
# Event types tested with the dispersion learned for another (Thresholds.rho).
_CALIBRATED_AS = {"novel_junction": "exon_skipping", "isoform_shift": "exon_skipping"}

PROTEIN_ALTERING = frozenset(
    {
        "splice_acceptor_variant",
        "splice_donor_variant",
        "stop_gained",
        "frameshift_variant",
        "stop_lost",
        "start_lost",
        "inframe_insertion",
        "inframe_deletion",
        "missense_variant",
        "protein_altering_variant",
    }
)

EVENT_COLUMNS = {
    "pair": pl.Utf8,
    "baseline": pl.Utf8,
    "relapse": pl.Utf8,
    "gene": pl.Utf8,
    "event_type": pl.Utf8,
    "feature": pl.Utf8,
    "known_event": pl.Utf8,
    "baseline_value": pl.Float64,
    "relapse_value": pl.Float64,
    "effect": pl.Float64,
    "baseline_reads": pl.Int64,
    "relapse_reads": pl.Int64,
    "consequence": pl.Utf8,
    "hgvs_c": pl.Utf8,
    "hgvs_p": pl.Utf8,
    "p_value": pl.Float64,
    "q_value": pl.Float64,
    "called": pl.Boolean,
    "direction": pl.Utf8,
    # added later (new columns go at the end: the column order is an interface)
    "escape": pl.Boolean,
    "transcripts": pl.Utf8,
    "filter": pl.Utf8,
    "car": pl.Utf8,  # the binder the epitope was judged against (--car), null without one
    "epitope": pl.Utf8,  # epitope.CLASSES, escape rows only
    "epitope_reason": pl.Utf8,
    # mutation rows: the baseline's depth at the site (BASELINE_STATUSES)
    "baseline_status": pl.Utf8,
}

VERDICT_COLUMNS = {
    "pair": pl.Utf8,
    "baseline": pl.Utf8,
    "relapse": pl.Utf8,
    "gene": pl.Utf8,
    "antigen_loss": pl.Boolean,
    "aberrant_splicing": pl.Boolean,
    "mutation": pl.Boolean,
    "n_called": pl.Int64,
    "verdict": pl.Utf8,
    "thresholds": pl.Utf8,
    # added later (new columns go at the end: the column order is an interface)
    "antigen_loss_status": pl.Utf8,
    "aberrant_splicing_status": pl.Utf8,
    "mutation_status": pl.Utf8,
    "n_escape": pl.Int64,
    "n_changes": pl.Int64,
    "car": pl.Utf8,
    "binder_verdict": pl.Utf8,  # epitope.binder_verdict over the escape rows
    "binder_text": pl.Utf8,  # "CD22 Δex5-6 at relapse, m971 epitope retained"
    # "fixed" or "cohort: N baselines (...)" (Thresholds.dispersion_source), and the dispersion
    # in force per event type as JSON (phi for expression_loss, rho for the others)
    "dispersion_source": pl.Utf8,
    "dispersions": pl.Utf8,
}

# Comparison.mutations: one row per tested allele and sample (long form, the two samples of the
# pair), the counts of ``variants.call_variants`` plus the allele's test from the events frame.
MUTATION_COLUMNS: dict[str, type[pl.DataType]] = {
    **VARIANT_COLUMNS,
    "feature": pl.Utf8,
    "effect": pl.Float64,
    "p_value": pl.Float64,
    "q_value": pl.Float64,
    "called": pl.Boolean,
}
_ANNOTATION = ("gene", "transcript", "contig", "kind", "consequence", "hgvs_c", "hgvs_p")
_ANNOTATION_NUMBERS = ("exon", "intron")

# Baseline depth at a relapse allele's site: >= BASELINE_MIN_DEPTH "covered", fewer
# "low_coverage", none "not_covered". Without baseline reads the two-sample test has nothing to
# compare; the relapse allele is then tested alone, against sequencing error
# (BASELINE_BLIND_ERROR per base, binomial upper tail), effect = its VAF, and the row and verdict
# say the baseline was not covered: absence of baseline evidence is not absence.
BASELINE_MIN_DEPTH = 20
BASELINE_BLIND_ERROR = 0.01
LONG_READ_FILTER = "long_read_errors"  # variants.FILTERS
LONG_READ_MUTATIONS = (
    "long reads: allele calls need an error model for 5-10 % error reads, not built yet; "
    "use short reads of the same sample"
)
NO_EVIDENCE = "no evidence of antigen loss, mutation or aberrant splicing"
# Candidate alleles: the per-sample calling defaults of variants.call_variants.
_CANDIDATE_MIN_ALT = 3
_CANDIDATE_MIN_VAF = 0.05
# Below that VAF, an allele is tested when its reads are this unlikely from sequencing errors
# alone (~1e4 allele letters over a gene's exons: Bonferroni at 0.01).
_ERROR_MODEL_P = 1e-6
_PSEUDOCOUNT = 0.5
# A row's private flag while it is built: would a called row in the escape direction be escape
# evidence (a coding exon, a known event, ...)? Dropped before the frame is made.
_ESCAPE_IF_UP = "_escape_if_up"
_PROTEIN_LOST = ("frameshift", "start-lost", "stop-lost")


@dataclass(frozen=True)
class Thresholds:
    min_log2fc_loss: float = -1.0  # expression_loss / exon_loss need log2FC <= this
    min_delta_psi: float = 0.10  # |ΔPSI| of skipping / novel junction shares
    min_delta_ir: float = 0.10
    min_delta_vaf: float = 0.03
    max_q: float = 0.05
    min_reads: int = 5  # reads behind an event in the sample where it is seen
    dispersion: float = 0.01  # beta-binomial rho for proportions
    expression_dispersion: float = 0.05  # negative-binomial phi for gene counts
    # Dispersions learned from a cohort's baselines, (event type, value, degrees of freedom)
    # (``comparison.dispersion.calibrate``): phi for expression_loss, rho for the others; a type
    # not listed keeps the fixed value above. ``calibrated_from``: how many baselines.
    calibrated: tuple[tuple[str, float, float], ...] = ()
    calibrated_from: int = 0
    # Features whose own spread is wider than their type's: (event type, feature, rho, df)
    calibrated_features: tuple[tuple[str, str, float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.min_log2fc_loss >= 0:
            raise UsageError(f"min_log2fc_loss must be < 0; got {self.min_log2fc_loss}")
        for name in ("min_delta_psi", "min_delta_ir", "min_delta_vaf", "expression_dispersion"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be >= 0; got {getattr(self, name)}")
        if not 0 < self.max_q <= 1:
            raise UsageError(f"max_q must be in (0, 1]; got {self.max_q}")
        if self.min_reads < 0:
            raise UsageError(f"min_reads must be >= 0; got {self.min_reads}")
        if not 0 <= self.dispersion < 1:
            raise UsageError(f"dispersion must be in [0, 1); got {self.dispersion}")
        for kind, value, df in self.calibrated:
            top = math.inf if kind == "expression_loss" else 1.0
            if kind not in EVENT_TYPES or not 0 <= value < top or not df > 0:
                raise UsageError(
                    f"calibrated dispersion {kind}={value} ({df} df): not a valid value"
                )
        for kind, name, value, df in self.calibrated_features:
            if (
                kind not in EVENT_TYPES
                or kind == "expression_loss"
                or not 0 <= value < 1
                or (not df > 0)
            ):
                raise UsageError(
                    f"calibrated dispersion {kind} {name}={value} ({df} df): not a valid value"
                )

    def as_dict(self) -> dict:
        """The thresholds as the user set them (the ``thresholds`` JSON of a verdict row); the
        learned dispersions are in its ``dispersions`` column."""
        return {k: v for k, v in asdict(self).items() if not k.startswith("calibrated")}

    def rho(self, event_type: str, feature: str | None = None) -> float:
        """The beta-binomial rho a proportion of ``event_type`` is tested with: the cohort's
        for this feature when it varies more than its type, else the cohort's for the type
        (novel junctions and isoform shifts: the skipping value, the same measure, a junction's
        share of its donor's splicing), else the fixed ``dispersion``."""
        learned = self._learned(event_type, feature)
        return self.dispersion if learned is None else learned[0]

    def rho_df(self, event_type: str, feature: str | None = None) -> float | None:
        """The degrees of freedom of a learned rho (its test is referred to F(1, df)), None for
        the fixed value (``stats.beta_binomial_two_sample_test``)."""
        learned = self._learned(event_type, feature)
        return None if learned is None else learned[1]

    def _learned(self, event_type: str, feature: str | None = None) -> tuple[float, float] | None:
        kind = _CALIBRATED_AS.get(event_type, event_type)
        for name, where, value, df in self.calibrated_features:
            if name == kind and where == feature:
                return value, df
        for name, value, df in self.calibrated:
            if name == kind:
                return value, df
        return None

    def phi(self) -> float:
        """The negative-binomial phi of gene counts: the cohort's or ``expression_dispersion``."""
        learned = self._learned("expression_loss")
        return self.expression_dispersion if learned is None else learned[0]

    def dispersions(self) -> dict[str, Any]:
        """Every event type's dispersion in force (phi for expression_loss, rho for the rest),
        and under ``features`` those of features tested with their own wider value."""
        out: dict[str, Any] = {
            kind: self.phi() if kind == "expression_loss" else self.rho(kind)
            for kind in EVENT_TYPES
        }
        out["features"] = {f"{kind} {name}": value for kind, name, value, _ in
                           self.calibrated_features}  # fmt: skip
        return out

    def dispersion_source(self) -> str:
        if not self.calibrated:
            return "fixed"
        kinds = ", ".join(kind for kind, _, _ in self.calibrated)
        return f"cohort: {self.calibrated_from} baselines ({kinds}); others fixed"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Thresholds:
        """Thresholds from ``{field name: value}``; fields not given keep their defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(f"unknown threshold(s) {', '.join(unknown)}; known: {sorted(known)}")
        return cls(**options)

    @classmethod
    def from_args(cls, text: str) -> Thresholds:
        """Thresholds from command-line options as ``cd22scan compare`` takes them
        (``THRESHOLD_OPTIONS``), e.g. ``"--max-q 0.01 --min-delta-psi=0.2"``."""
        by_option = {option: (name, kind) for option, name, kind, _ in THRESHOLD_OPTIONS}
        words = shlex.split(text)
        values: dict[str, Any] = {}
        i = 0
        while i < len(words):
            option, _, value = words[i].partition("=")
            if option not in by_option:
                raise UsageError(
                    f"compare options {text!r}: {words[i]!r} is not a threshold option "
                    f"({', '.join(by_option)})"
                )
            if not _:
                if i + 1 >= len(words):
                    raise UsageError(f"compare options {text!r}: {option} needs a value")
                i += 1
                value = words[i]
            name, kind = by_option[option]
            try:
                values[name] = kind(value)
            except ValueError:
                raise UsageError(
                    f"compare options {text!r}: {option} needs a {kind.__name__}, got {value!r}"
                ) from None
            i += 1
        return cls.from_options(values)


# Command-line option -> (Thresholds field, type, help); the CLI and the workflow both read this.
THRESHOLD_OPTIONS: tuple[tuple[str, str, type, str], ...] = (
    ("--max-log2fc", "min_log2fc_loss", float, "expression/exon loss needs log2FC <= this"),
    ("--min-delta-psi", "min_delta_psi", float, "|ΔPSI| for splicing events"),
    ("--min-delta-ir", "min_delta_ir", float, "|ΔIR| for intron retention"),
    ("--min-delta-vaf", "min_delta_vaf", float, "ΔVAF for mutations"),
    ("--max-q", "max_q", float, "Benjamini-Hochberg q within a pair"),
    ("--min-event-reads", "min_reads", int, "reads behind an event"),
    ("--dispersion", "dispersion", float, "beta-binomial over-dispersion for proportions"),
)


@dataclass
class Comparison:
    pair: str  # "BASELINE_vs_RELAPSE"
    baseline: str
    relapse: str
    events: pl.DataFrame
    verdict: pl.DataFrame
    thresholds: Thresholds = field(default_factory=Thresholds)
    # the mutation rows of ``events`` as alleles, one row per allele and sample (VCF writer)
    mutations: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=MUTATION_COLUMNS))


# --- helpers -------------------------------------------------------------------------------------


def _share(k: float, n: float) -> float | None:
    return k / n if n > 0 else None


def _direction(effect: float | None) -> str | None:
    if effect is None or effect == 0 or math.isnan(effect):
        return None
    return "up" if effect > 0 else "down"


def _row(event_type: str, feature: str, **values: Any) -> dict[str, Any]:
    row = {name: None for name in EVENT_COLUMNS}
    row.update(event_type=event_type, feature=feature, **values)
    return row


def _by(frame: pl.DataFrame, key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in frame.iter_rows(named=True)}


def _calls_for(result: ScanResult, given: RefFetch | None) -> SampleCalls:
    """The scan's own calls, or calls made with the reference bases the caller hands in."""
    return sample_calls(result) if given is None else call_sample(result, given)


# --- per event type ------------------------------------------------------------------------------


def _long_read_rows(
    b: ScanResult, r: ScanResult, model: GeneModel, t: Thresholds
) -> list[dict[str, Any]]:
    """``long_read_isoform`` rows (both scans --long-reads): per event of either sample, the
    molecules with it of the molecules informative for it (``longreads``), beta-binomial."""
    if b.long_reads is None or r.long_reads is None:
        return []
    eb, er = _by(b.long_reads.events, "event"), _by(r.long_reads.events, "event")
    known = {e.name for e in model.known_events}
    rows = []
    for event in sorted(set(eb) | set(er)):
        xb, xr = eb.get(event), er.get(event)
        kind = (xb or xr)["kind"]
        kb, nb = (xb["reads"], xb["informative"]) if xb else (0, b.long_reads.reads)
        kr, nr = (xr["reads"], xr["informative"]) if xr else (0, r.long_reads.reads)
        if kind == "exon_skipping" and (not xb or not xr):
            # informative molecules of an event one sample never shows: those reaching both
            # flanking exons are not known there; all its reads over the gene stand in
            nb = nb if xb else b.long_reads.reads
            nr = nr if xr else r.long_reads.reads
        row = _proportion_row(
            "long_read_isoform", event, kb, nb, kr, nr, t,
            known_event=event if event in known else None,
        )  # fmt: skip
        if kind == "exon_skipping":
            numbers = [int(x) for x in event[3:].split("-")]
            skipped = tuple(range(numbers[0], numbers[-1] + 1))
            row[_ESCAPE_IF_UP] = event in known or model.skip_frame(skipped) != "non-coding"
        else:  # retention, a novel junction: fewer mature molecules of the target
            row[_ESCAPE_IF_UP] = True
        rows.append(row)
    return rows


def _expression_rows(b: ScanResult, r: ScanResult, t: Thresholds) -> list[dict[str, Any]]:
    kb, kr = b.summary.get("fragments_on_gene"), r.summary.get("fragments_on_gene")
    nb, nr = b.summary.get("library_size"), r.summary.get("library_size")
    if kb is None or kr is None or not nb or not nr:
        return []  # no library size: expression cannot be compared
    return [
        _row(
            "expression_loss",
            "gene",
            baseline_value=kb / nb * 1e6,
            relapse_value=kr / nr * 1e6,
            effect=log2_fold_change(kb, nb, kr, nr, _PSEUDOCOUNT),
            baseline_reads=kb,
            relapse_reads=kr,
            p_value=_loss_p(kb, nb, kr, nr, t),
        )
    ]


def _loss_p(kb: int, nb: float, kr: int, nr: float, t: Thresholds) -> float:
    """p of gene expression lost at relapse: fragments kb of library nb against kr of nr,
    negative-binomial phi ``t.phi()``; one-sided, a pre-specified directional hypothesis."""
    rho = rho_from_nb_dispersion(t.phi(), share=nb / (nb + nr))
    return poisson_rate_test(kb, nb, kr, nr, dispersion=min(rho, 0.999), alternative="greater")


def _exon_rows(
    eb: pl.DataFrame, er: pl.DataFrame, model: GeneModel, t: Thresholds
) -> list[dict[str, Any]]:
    """exon_loss rows. baseline_value / relapse_value are in the unit of the effect: the exon's
    fragments over the gene's fragments (0-1), and effect = log2 of their ratio (pseudocount
    0.5). An exon with no fragment in either sample is not tested (effect and p null)."""
    rows = []
    base, rel = _by(eb, "exon"), _by(er, "exon")
    for exon in sorted(set(base) | set(rel)):
        xb, xr = base.get(exon), rel.get(exon)
        if xb is None or xr is None:
            continue
        kb, kr = xb["fragments"] or 0, xr["fragments"] or 0
        nb, nr = xb["gene_fragments"] or 0, xr["gene_fragments"] or 0
        if nb <= 0 or nr <= 0:
            continue
        seen = kb > 0 or kr > 0
        # losing a UTR-only exon does not remove the antigen (a model without a CDS cannot tell)
        coding = model.cds_start is None or model.coding_part(model.exon(exon)) is not None
        rows.append(
            _row(
                "exon_loss",
                f"exon {exon}",
                **{_ESCAPE_IF_UP: coding},
                baseline_value=_share(kb, nb),
                relapse_value=_share(kr, nr),
                effect=log2_fold_change(kb, nb, kr, nr, _PSEUDOCOUNT) if seen else None,
                baseline_reads=kb,
                relapse_reads=kr,
                p_value=beta_binomial_two_sample_test(
                    min(kb, nb),
                    nb,
                    min(kr, nr),
                    nr,
                    t.rho("exon_loss", f"exon {exon}"),
                    dispersion_df=t.rho_df("exon_loss", f"exon {exon}"),
                )
                if seen
                else None,
            )
        )
    return rows


def _proportion_row(
    event_type: str,
    feature: str,
    kb: int,
    nb: int,
    kr: int,
    nr: int,
    t: Thresholds,
    alternative: str = "two-sided",
    **extra,
) -> dict[str, Any]:
    vb, vr = _share(kb, nb), _share(kr, nr)
    effect = (vr or 0.0) - (vb or 0.0) if nb > 0 and nr > 0 else None
    p = (
        beta_binomial_two_sample_test(
            kb, nb, kr, nr, t.rho(event_type, feature), alternative, t.rho_df(event_type, feature)
        )
        if nb and nr
        else None
    )
    return _row(
        event_type,
        feature,
        baseline_value=vb,
        relapse_value=vr,
        effect=effect,
        baseline_reads=kb,
        relapse_reads=kr,
        p_value=p,
        **extra,
    )


def _canonical(ir: dict[Any, dict[str, Any]], intron: int | None) -> int:
    row = ir.get(intron)
    return int(row["spliced_reads"]) if row else 0


def skip_counts(
    skips: dict[Any, dict[str, Any]], introns: dict[Any, dict[str, Any]], event: str, donor: int
) -> tuple[int, int]:
    """One sample's (reads, reads + canonical reads of the donor) of a skipping event, from its
    skipping events and introns by name; a sample without the junction has 0 of its donor's
    canonical reads (``spliced_reads`` of that intron). ``comparison.dispersion`` measures a
    cohort's baselines with it too."""
    x = skips.get(event)
    if x is None:
        return 0, _canonical(introns, donor)
    return int(x["reads"]), int(x["reads"]) + int(x["canonical_reads"])


def retention_counts(intron: dict[str, Any]) -> tuple[int, int]:
    """One sample's (round(retained), round(retained) + spliced) of an intron: spliced across
    either end (IRFinder's ``spliced_any``); scans written before that column was computed have
    the exact junction only (``spliced_reads``)."""
    retained = round(intron["retained_reads"])
    spliced = intron.get("spliced_any")
    return retained, retained + int(intron["spliced_reads"] if spliced is None else spliced)


def _skipping_rows(fb: dict, fr: dict, model: GeneModel, t: Thresholds) -> list[dict[str, Any]]:
    sb, sr = _by(fb["skipping_events"], "event"), _by(fr["skipping_events"], "event")
    irb, irr = _by(fb["intron_retention"], "intron"), _by(fr["intron_retention"], "intron")
    any_row = {**sr, **sb}
    order = sorted(any_row, key=lambda e: (any_row[e]["donor_exon"], any_row[e]["acceptor_exon"]))
    rows = []
    for event in order:
        donor = any_row[event]["donor_exon"]
        kb, nb = skip_counts(sb, irb, event, donor)
        kr, nr = skip_counts(sr, irr, event, donor)
        info = any_row[event]
        known, transcripts = info["known_event"], info["transcripts"]
        # A skip that another annotated transcript makes is an isoform shift, unless it is a
        # known escape event of the target (a pre-specified hypothesis, annotated or not).
        kind = "isoform_shift" if transcripts and not known else "exon_skipping"
        # a known event is a pre-specified, directional hypothesis (more skipping at relapse):
        # one-sided; any other skip is exploratory and tested both ways
        row = _proportion_row(
            kind, event, kb, nb, kr, nr, t,
            "greater" if known else "two-sided", known_event=known, transcripts=transcripts,
        )  # fmt: skip
        # more skipping is escape evidence when it removes coding sequence (a model without a
        # CDS cannot tell, so it counts); an isoform shift only when the protein is lost
        coding = info["frame"] != "non-coding" or model.cds_start is None
        lost = info["frame"] in _PROTEIN_LOST
        row[_ESCAPE_IF_UP] = bool(known) or (lost if kind == "isoform_shift" else coding)
        rows.append(row)
    return rows


def _retention_rows(fb: dict, fr: dict, t: Thresholds) -> list[dict[str, Any]]:
    irb, irr = _by(fb["intron_retention"], "intron"), _by(fr["intron_retention"], "intron")
    rows = []
    for intron in sorted(set(irb) & set(irr)):
        xb, xr = irb[intron], irr[intron]
        (kb, nb), (kr, nr) = retention_counts(xb), retention_counts(xr)
        row = _proportion_row("intron_retention", f"intron {intron}", kb, nb, kr, nr, t)
        row[_ESCAPE_IF_UP] = True  # more retention: fewer mature transcripts of the target
        # report the ratio as splicing.intron_retention defines it (unrounded)
        row["baseline_value"], row["relapse_value"] = xb["ir_ratio"], xr["ir_ratio"]
        if xb["ir_ratio"] is not None and xr["ir_ratio"] is not None:
            row["effect"] = xr["ir_ratio"] - xb["ir_ratio"]
        rows.append(row)
    return rows


def _novel_rows(
    fb: dict, fr: dict, b: ScanResult, r: ScanResult, t: Thresholds
) -> list[dict[str, Any]]:
    nb_, nr_ = fb["novel_junctions"], fr["novel_junctions"]
    jb = {(x["start"], x["end"]): x for x in nb_.iter_rows(named=True)}
    jr = {(x["start"], x["end"]): x for x in nr_.iter_rows(named=True)}
    irb, irr = _by(fb["intron_retention"], "intron"), _by(fr["intron_retention"], "intron")
    gene_b = int(b.summary.get("fragments_on_gene") or 0)
    gene_r = int(r.summary.get("fragments_on_gene") or 0)
    contig = b.model.contig
    rows = []
    for key in sorted(set(jb) | set(jr)):
        info = jb.get(key) or jr[key]
        kb = jb[key]["reads"] if key in jb else 0
        kr = jr[key]["reads"] if key in jr else 0
        if info["donor_exon"] is not None:  # novel acceptor: compete with the donor's canonical
            cb, cr = _canonical(irb, info["donor_exon"]), _canonical(irr, info["donor_exon"])
            nb, nr = kb + cb, kr + cr
        elif info["acceptor_exon"] is not None:  # novel donor: canonical into the acceptor
            intron = info["acceptor_exon"] - 1
            cb, cr = _canonical(irb, intron), _canonical(irr, intron)
            nb, nr = kb + cb, kr + cr
        else:
            nb, nr = max(gene_b, kb), max(gene_r, kr)
        transcripts = info["transcripts"]
        kind = "isoform_shift" if transcripts else "novel_junction"
        row = _proportion_row(
            kind, f"{contig}:{key[0]}-{key[1]}", kb, nb, kr, nr, t, transcripts=transcripts
        )
        # a new junction inside the gene may break the protein; an annotated isoform's junction
        # (frame unknown here) is reported as a change
        row[_ESCAPE_IF_UP] = kind == "novel_junction" and bool(info["in_gene"])
        rows.append(row)
    return rows


def _site_depth(bases: pl.DataFrame, pos: int) -> int:
    hit = bases.filter(pl.col("pos") == pos)
    return int(hit["depth"][0]) if hit.height else 0


def _allele_row(
    note: dict[str, Any], seen: dict[str, Any] | None, sample: str, depth: int
) -> dict[str, Any]:
    """One sample's counts of a tested allele; an allele it does not show has 0 alt reads over
    the site's depth. Annotation comes from ``note`` so both samples' rows agree."""
    if seen is not None:
        row = dict(seen)
    else:
        row = {**note, "sample": sample, "depth": depth, "alt_reads": 0, "alt_forward": 0,
               "alt_reverse": 0, "vaf": 0.0 if depth else None, "strand_bias_p": None,
               "alt_starts": None, "max_stack_share": None, "mean_end_distance": None,
               "filter": None}  # fmt: skip
    row.update({k: note[k] for k in (*_ANNOTATION, *_ANNOTATION_NUMBERS)})
    return row


def _mutation_rows(
    b: ScanResult, r: ScanResult, sb: SampleCalls, sr: SampleCalls, t: Thresholds
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], dict[str, Any]]]]:
    """The mutation event rows and, for each, the (baseline, relapse) allele rows."""
    # Every allele seen at all (min_alt 1, VAF 0), so the other sample's counts can be looked up.
    calls_b, calls_r = sb.alleles, sr.alleles
    key = ("pos", "ref", "alt")
    vb = {tuple(x[k] for k in key): x for x in calls_b.iter_rows(named=True)}
    vr = {tuple(x[k] for k in key): x for x in calls_r.iter_rows(named=True)}

    # An allele is tested when it has >= 3 reads and either VAF >= 0.05 or more reads than the
    # sample's own substitution errors explain (binomial upper tail < _ERROR_MODEL_P against
    # ``mismatch_rate``) at a VAF that could still make a call (>= min_delta_vaf; below it in
    # both samples no ΔVAF can reach the threshold, so testing it would only dilute the others'
    # q-values: independent filtering). Deep samples test alleles below 5 %, shallow ones keep
    # the 5 % floor.
    eb, er = mismatch_rate(b.bases), mismatch_rate(r.bases)

    def candidate(x: dict[str, Any], rate: float) -> bool:
        if x["alt_reads"] < _CANDIDATE_MIN_ALT:
            return False
        if x["vaf"] >= _CANDIDATE_MIN_VAF:
            return True
        if x["vaf"] < t.min_delta_vaf:
            return False
        depth = max(int(x["depth"] or 0), int(x["alt_reads"]))
        return binomial_upper_tail(int(x["alt_reads"]), depth, rate) < _ERROR_MODEL_P

    keys = sorted(
        {k for k, x in vb.items() if candidate(x, eb)}
        | {k for k, x in vr.items() if candidate(x, er)}
    )
    rows = []
    alleles = []
    for allele in keys:
        pos, ref, alt = allele
        xb, xr = vb.get(allele), vr.get(allele)
        # An indel's depth is taken at the first deleted base / the anchor (call_variants).
        at = pos + 1 if len(ref) > len(alt) else pos
        kb, nb = (xb["alt_reads"], xb["depth"]) if xb else (0, _site_depth(b.bases, at))
        kr, nr = (xr["alt_reads"], xr["depth"]) if xr else (0, _site_depth(r.bases, at))
        note = xr if xr is not None and (xb is None or xr["vaf"] >= xb["vaf"]) else xb
        assert note is not None
        depth_b = max(nb, kb)
        status = (
            "covered"
            if depth_b >= BASELINE_MIN_DEPTH
            else ("low_coverage" if depth_b > 0 else "not_covered")
        )
        rows.append(
            _proportion_row(
                "mutation",
                note["hgvs_c"] or f"{note['contig']}:{pos}{ref}>{alt}",
                kb,
                max(nb, kb),
                kr,
                max(nr, kr),
                t,
                consequence=note["consequence"],
                hgvs_c=note["hgvs_c"],
                hgvs_p=note["hgvs_p"],
                # FILTER of the sample with the higher VAF (the one that shows the change)
                filter=note.get("filter"),
                baseline_status=status,
            )
        )
        if status == "not_covered" and nr > 0:
            row = rows[-1]
            row["effect"] = kr / max(nr, kr)
            row["p_value"] = binomial_upper_tail(kr, max(nr, kr), BASELINE_BLIND_ERROR)
        alleles.append(
            (
                _allele_row(note, xb, b.sample, max(nb, kb)),
                _allele_row(note, xr, r.sample, max(nr, kr)),
            )
        )
    return rows, alleles


# --- calling and verdict -------------------------------------------------------------------------


def _is_called(row: dict[str, Any], t: Thresholds) -> bool:
    effect, q = row["effect"], row["q_value"]
    if effect is None or q is None or math.isnan(effect) or not q < t.max_q:
        return False
    kind = row["event_type"]
    if kind == "mutation" and row.get("filter") not in (None, "PASS"):
        return False  # a FILTERed allele (variants.FILTERS) is not a call
    if kind in LOSS_TYPES:
        size_ok = effect <= t.min_log2fc_loss
        seen_reads = row["baseline_reads"]  # a loss is seen in the baseline
    else:
        bar = {
            "exon_skipping": t.min_delta_psi,
            "novel_junction": t.min_delta_psi,
            "isoform_shift": t.min_delta_psi,
            "intron_retention": t.min_delta_ir,
            "mutation": t.min_delta_vaf,
            "long_read_isoform": t.min_delta_ir
            if (row["feature"] or "").startswith("IR")
            else t.min_delta_psi,
        }[kind]
        size_ok = abs(effect) >= bar
        seen_reads = row["relapse_reads"] if effect > 0 else row["baseline_reads"]
    return size_ok and (seen_reads or 0) >= t.min_reads


def _mechanism(row: dict[str, Any]) -> str | None:
    """The escape mechanism a called row is evidence for, or None (a change, not escape).

    Only the escape direction counts: a loss of expression or of a coding exon; more skipping
    of coding exons, more retention or a new junction in the gene at relapse (``up``); a new
    (``up``) protein-altering mutation whose FILTER is PASS (a null FILTER counts as PASS)."""
    if not row["called"]:
        return None
    kind = row["event_type"]
    if kind in LOSS_TYPES:
        return "antigen loss" if row.get(_ESCAPE_IF_UP, True) else None
    if kind in SPLICING_TYPES:
        up = row["direction"] == "up" and row.get(_ESCAPE_IF_UP, True)
        return "aberrant splicing" if up else None
    if (
        kind == "mutation"
        and row["direction"] == "up"
        and row["consequence"] in PROTEIN_ALTERING
        and row.get("filter") in (None, "PASS")
        and row.get("baseline_status") != "not_covered"  # new or pre-existing: cannot tell
    ):
        return "mutation"
    return None


def _describe(row: dict[str, Any]) -> str:
    label = {
        "expression_loss": "log2FC",
        "exon_loss": "log2FC",
        "exon_skipping": "ΔPSI",
        "novel_junction": "ΔPSI",
        "isoform_shift": "ΔPSI",
        "intron_retention": "ΔIR",
        "mutation": "ΔVAF",
        "long_read_isoform": "Δfraction of molecules",
    }[row["event_type"]]
    feature = row["feature"]
    if row["event_type"] == "mutation" and row["hgvs_p"]:
        feature = f"{feature} {row['hgvs_p']}"
    if row["event_type"] == "mutation" and row.get("baseline_status") == "not_covered":
        feature = f"{feature} (baseline not covered: VAF vs sequencing error)"
    elif row["event_type"] == "expression_loss":
        feature = "gene expression"
    elif row["event_type"] == "isoform_shift":
        feature = f"isoform shift {feature}"
    elif row["event_type"] == "long_read_isoform":
        feature = f"{feature} (long reads)"
    return f"{feature} {label} {row['effect']:+.2f} (q={row['q_value']:.2g})"


def _strength(row: dict[str, Any]) -> tuple[float, float]:
    return (row["q_value"], -abs(row["effect"]))


# --- what the data could have shown --------------------------------------------------------------
# A mechanism is assessable when an event of the minimum size in force would have been called
# with the counts this pair has: the test of that event alone (a pre-specified hypothesis, before
# any correction) reaches q < max_q and the sample where it would be seen has >= min_reads reads.

_MIN_CANDIDATE_ALT = 3


def _loss_power(b: ScanResult, r: ScanResult, t: Thresholds) -> str | None:
    """None when a loss of the minimum fold would be called, else why not."""
    kb = int(b.summary.get("fragments_on_gene") or 0)
    nb, nr = b.summary.get("library_size"), r.summary.get("library_size")
    if not nb or not nr:
        return "no library size"
    fold = 2**t.min_log2fc_loss
    if kb < t.min_reads:
        return f"baseline has {kb} fragments on the gene, fewer than min_reads {t.min_reads}"
    kr = round(kb * nr / nb * fold)
    p = _loss_p(kb, nb, kr, nr, t)
    if p < t.max_q:
        return None
    return (
        f"a {1 / fold:.3g}-fold loss from {kb} baseline fragments would give p={p:.2g} "
        f"(max_q {t.max_q})"
    )


def _proportion_power(
    nb: int,
    nr: int,
    share_b: float,
    delta: float,
    t: Thresholds,
    alternative: str,
    feature: str | None = None,
) -> float:
    """p of a rise of ``delta`` from ``share_b`` with these denominators (1.0 if untestable);
    ``feature``: the skipping event, for its own learned dispersion."""
    if nb <= 0 or nr <= 0:
        return 1.0
    kb = round(share_b * nb)
    kr = round(min(1.0, share_b + delta) * nr)
    if kr < t.min_reads:
        return 1.0
    return beta_binomial_two_sample_test(
        kb, nb, kr, nr, t.rho("exon_skipping", feature), alternative,
        t.rho_df("exon_skipping", feature),
    )  # fmt: skip


def _median_int(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0


def _splicing_power(fb: dict, fr: dict, model: GeneModel, t: Thresholds) -> str | None:
    """None when a ΔPSI of min_delta_psi (from no skipping) would be called at the donor of a
    known skipping event of the target (the pre-specified hypotheses), or of any annotated
    intron when the target has none; else why not. The donor's canonical junction reads in each
    sample are the denominators (``spliced_reads`` of that intron)."""
    irb, irr = _by(fb["intron_retention"], "intron"), _by(fr["intron_retention"], "intron")
    if not irb or not irr:
        return "the gene model has no introns"
    known = [e for e in model.known_events if e.kind == "exon_skipping" and e.skipped_exons]
    if known:
        places = {e.name: min(e.skipped_exons) - 1 for e in known}
    else:
        places = {f"intron {k}": k for k in sorted(irb)}
    best: tuple[float, str, int, int] | None = None
    for name, intron in places.items():
        nb, nr = _canonical(irb, intron), _canonical(irr, intron)
        p = _proportion_power(
            nb, nr, 0.0, t.min_delta_psi, t, "greater" if known else "two-sided",
            name if known else None,
        )  # fmt: skip
        if best is None or p < best[0]:
            best = (p, name, nb, nr)
    assert best is not None
    p, name, nb, nr = best
    if p < t.max_q:
        return None
    where = "known events" if known else "annotated introns"
    return (
        f"best of the {where}: {name} donor has {nb} (baseline) / {nr} (relapse) canonical "
        f"junction reads; a ΔPSI of {t.min_delta_psi:g} would give p={p:.2g} or fewer than "
        f"{t.min_reads} reads"
    )


def _blind_mutations(rows: list[dict[str, Any]]) -> str | None:
    """Why mutation escape cannot be judged when called protein-altering relapse alleles sit
    where the baseline has no read (new or pre-existing cannot be told), else None."""
    blind = [
        row
        for row in rows
        if row["event_type"] == "mutation"
        and row["called"]
        and row.get("baseline_status") == "not_covered"
        and row["consequence"] in PROTEIN_ALTERING
        and row.get("filter") in (None, "PASS")
    ]
    if not blind:
        return None
    named = ", ".join(
        f"{row['feature']}{' ' + row['hgvs_p'] if row['hgvs_p'] else ''} VAF "
        f"{row['relapse_value']:.2f}"
        for row in blind[:3]
    )
    return (
        f"relapse allele(s) at sites the baseline does not cover: {named}; new or pre-existing "
        "cannot be told"
    )


def _coding_depths(result: ScanResult) -> list[int]:
    model = result.model
    parts = [model.coding_part(e) for e in model.exons]
    parts = [x for x in parts if x]
    if not parts or result.bases.height == 0:
        return []
    inside = pl.any_horizontal([pl.col("pos").is_between(lo, hi) for lo, hi in parts])
    return [int(x) for x in result.bases.filter(inside)["depth"].to_list()]


def _mutation_power(b: ScanResult, r: ScanResult, has_reference: bool, t: Thresholds) -> str | None:
    """None when a new allele at ΔVAF min_delta_vaf would be called at the median coding depth
    (uncovered coding bases count as depth 0); else why not."""
    if not has_reference:
        return "no reference: consequences of variants cannot be named"
    model = b.model
    if model.cds_start is None:
        return "the gene model has no CDS"
    cds = model.cds_length()
    depth_b, depth_r = _coding_depths(b), _coding_depths(r)
    nb = _median_int(depth_b + [0] * max(0, cds - len(depth_b)))
    nr = _median_int(depth_r + [0] * max(0, cds - len(depth_r)))
    kr = round(t.min_delta_vaf * nr)
    if nr > 0 and kr >= max(t.min_reads, _MIN_CANDIDATE_ALT) and nb > 0:
        p = beta_binomial_two_sample_test(0, nb, kr, nr, t.rho("mutation"))
        if p < t.max_q:
            return None
    else:
        p = 1.0
    return (
        f"median coding depth {nb} (baseline) / {nr} (relapse): a new allele at VAF "
        f"{t.min_delta_vaf:g} would have {kr} alt reads (min_reads {t.min_reads}), p={p:.2g}"
    )


ESCAPE = "escape"
NO_ESCAPE = "no escape detected"


def _status(escaped: bool, why_not: str | None) -> str:
    if escaped:
        return ESCAPE
    return NO_ESCAPE if why_not is None else f"not assessable ({why_not})"


def _verdict_text(rows: list[dict[str, Any]], statuses: dict[str, str]) -> str:
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        mechanism = _mechanism(row)
        if mechanism and (mechanism not in best or _strength(row) < _strength(best[mechanism])):
            best[mechanism] = row
    ordered = sorted(best.items(), key=lambda item: _strength(item[1]))
    parts = [f"{mechanism}: {_describe(row)}" for mechanism, row in ordered]
    if not parts:
        parts = [NO_EVIDENCE]
    blind = [f"{m} {s}" for m, s in statuses.items() if s.startswith("not assessable")]
    if blind:
        parts.append("; ".join(blind))
    changes = sorted((row for row in rows if row["called"] and not _mechanism(row)), key=_strength)
    if changes:
        shown = ", ".join(_describe(row) for row in changes[:3])
        more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
        parts.append(f"changes not counted as escape: {shown}{more}")
    return "; ".join(parts)


def _judge_epitopes(
    rows: list[dict[str, Any]], model: GeneModel, binder: Binder | None
) -> tuple[str, str]:
    """Class every escape row against the binder (``epitope`` columns); return the pair's
    ``binder_verdict`` and the sentences of its strongest escape rows."""
    escape_rows = []
    for row in rows:
        row["car"] = binder.name if binder is not None else None
        if not row["escape"]:
            continue
        judged = classify(row, model, binder)
        row["epitope"], row["epitope_reason"] = judged.klass, judged.why
        escape_rows.append((row, judged))
    escape_rows.sort(key=lambda item: _strength(item[0]))
    summary = binder_verdict([judged.klass for _, judged in escape_rows])
    if not escape_rows:
        return summary, f"no {model.gene} escape event at relapse"
    texts = [sentence(row, model.gene, binder, judged) for row, judged in escape_rows[:3]]
    if len(escape_rows) > 3:
        texts.append(f"and {len(escape_rows) - 3} more")
    return summary, "; ".join(texts)


def _q_values(rows: list[dict[str, Any]]) -> list[float | None]:
    """Benjamini–Hochberg per family: the pre-specified hypotheses (gene expression and the
    target's known events); the other expression and splicing rows; the mutation rows (their
    number grows with depth, and they have a verdict of their own, so they do not dilute the
    splicing evidence). Rows without a read in either sample are left out (they cannot reach
    any p-value: DESeq2's independent filtering), q = 1."""
    prespecified = [
        i
        for i, row in enumerate(rows)
        if row["event_type"] == "expression_loss" or row.get("known_event")
    ]
    testable = [
        i
        for i, row in enumerate(rows)
        if i not in prespecified
        and row["p_value"] is not None
        and (row["baseline_reads"] or 0) + (row["relapse_reads"] or 0) > 0
    ]
    mutations = [i for i in testable if rows[i]["event_type"] == "mutation"]
    others = [i for i in testable if rows[i]["event_type"] != "mutation"]
    q: list[float | None] = [None if row["p_value"] is None else 1.0 for row in rows]
    for family in (prespecified, others, mutations):
        for i, value in zip(
            family, benjamini_hochberg([rows[i]["p_value"] for i in family]), strict=True
        ):
            q[i] = value
    return q


def _contig_key(contig: str) -> str:
    """chr19, 19 and NC_000019.10 are one chromosome: positions compare, names need not."""
    return molecule_of(contig) or contig


def _refuse_other_reference(baseline: ScanResult, relapse: ScanResult) -> None:
    """Refuse a pair scanned against different builds (the @SQ dictionaries of the two files
    differ in build or in the gene contig's length: positions would not correspond); say in one
    line when only the contig's name differs (chr19 vs 19 of one build), which is compared."""
    sides = []
    for result in (baseline, relapse):
        length = result.summary.get("contig_length")
        sides.append((result.model.build, int(length) if length else None, result.model.contig))
    (build_b, len_b, contig_b), (build_r, len_r, contig_r) = sides
    if (build_b and build_r and build_b != build_r) or (len_b and len_r and len_b != len_r):
        raise InputError(
            f"cannot compare {baseline.sample} ({build_b or 'build unknown'}, {contig_b} "
            f"{len_b} bp) with {relapse.sample} ({build_r or 'build unknown'}, {contig_r} "
            f"{len_r} bp): the two files were aligned to different references; realign one "
            "so that both use one build"
        )
    if contig_b != contig_r and _contig_key(contig_b) == _contig_key(contig_r):
        log.warning(
            "%s names the contig %s and %s names it %s (same length%s): compared by position",
            baseline.sample,
            contig_b,
            relapse.sample,
            contig_r,
            f", {build_b}" if build_b else "",
        )


def _six_digits(values: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _six_digits(value) if isinstance(value, dict) else float(f"{value:.6g}")
        for key, value in values.items()
    }


def compare_samples(
    baseline: ScanResult,
    relapse: ScanResult,
    *,
    thresholds: Thresholds = Thresholds(),
    baseline_fetch: RefFetch | None = None,
    relapse_fetch: RefFetch | None = None,
    binder: Binder | None = None,
) -> Comparison:
    """Compare a baseline and a relapse scan of one patient (tests in the module docstring).

    ``baseline_fetch`` / ``relapse_fetch`` return reference bases of a 0-based half-open range
    (for variant consequences); None builds one from the scan's ``--reference`` when it had one.
    ``binder``: the CAR binder of this gene (``--car``); every escape row is classed against it
    (``comparison.epitope``), and with a binder the verdict text ends with what it means for
    that CAR.
    """
    if binder is not None and binder.gene != baseline.model.gene:
        raise UsageError(
            f"--car {binder.gene}:{binder.name} is a binder of {binder.gene}, not of "
            f"{baseline.model.gene}"
        )
    t = thresholds
    mb, mr = baseline.model, relapse.model
    _refuse_other_reference(baseline, relapse)
    if (mb.gene, mb.transcript, _contig_key(mb.contig), mb.exons) != (
        mr.gene,
        mr.transcript,
        _contig_key(mr.contig),
        mr.exons,
    ):
        raise UsageError(
            f"cannot compare {baseline.sample} ({mb.gene} {mb.transcript} on {mb.contig}) with "
            f"{relapse.sample} ({mr.gene} {mr.transcript} on {mr.contig}): different gene models"
        )
    pair = f"{baseline.sample}_vs_{relapse.sample}"
    sb, sr = _calls_for(baseline, baseline_fetch), _calls_for(relapse, relapse_fetch)
    fb, fr = sb.frames(), sr.frames()
    mutation_rows, alleles = _mutation_rows(baseline, relapse, sb, sr, t)
    long_reads = baseline.long_reads is not None or relapse.long_reads is not None
    if long_reads:
        # Allele calls assume short-read error rates; on 5-10 % error long reads, misaligned
        # bases at splice sites look like alleles. Reported, never called (FILTER).
        for row in mutation_rows:
            row["filter"] = LONG_READ_FILTER
    rows = [
        *_expression_rows(baseline, relapse, t),
        *_exon_rows(fb["expression"], fr["expression"], mb, t),
        *_skipping_rows(fb, fr, mb, t),
        *_retention_rows(fb, fr, t),
        *_novel_rows(fb, fr, baseline, relapse, t),
        *mutation_rows,
        *_long_read_rows(baseline, relapse, mb, t),
    ]
    for row, q in zip(rows, _q_values(rows), strict=True):
        row.update(pair=pair, baseline=baseline.sample, relapse=relapse.sample, gene=mb.gene)
        row["q_value"] = q
        row["direction"] = _direction(row["effect"])
        row["called"] = _is_called(row, t)
        row["escape"] = _mechanism(row) is not None
    mechanisms = {_mechanism(row) for row in rows}
    statuses = {
        "antigen loss": _status("antigen loss" in mechanisms, _loss_power(baseline, relapse, t)),
        "aberrant splicing": _status(
            "aberrant splicing" in mechanisms, _splicing_power(fb, fr, mb, t)
        ),
        "mutation": _status(
            "mutation" in mechanisms,
            LONG_READ_MUTATIONS
            if long_reads
            else _blind_mutations(rows)
            or _mutation_power(baseline, relapse, sb.has_reference and sr.has_reference, t),
        ),
    }
    verdict_text = _verdict_text(rows, statuses)
    for row in rows:
        row.pop(_ESCAPE_IF_UP, None)
    binder_summary, binder_text = _judge_epitopes(rows, mb, binder)
    if binder is not None:
        verdict_text = f"{verdict_text}; CAR {binder.gene}:{binder.name}: {binder_text}"
    # Rows are built in a fixed order (type, then exon / event / position), kept by a stable sort.
    rank = {kind: i for i, kind in enumerate(EVENT_TYPES)}
    rows.sort(key=lambda row: rank[row["event_type"]])
    events = pl.DataFrame(rows, schema=EVENT_COLUMNS, orient="row")
    tested = ("feature", "effect", "p_value", "q_value", "called")
    mutations = pl.DataFrame(
        [
            {**allele, **{k: event[k] for k in tested}}
            for event, pair_rows in zip(mutation_rows, alleles, strict=True)
            for allele in pair_rows
        ],
        schema=MUTATION_COLUMNS,
        orient="row",
    )
    n_escape = sum(bool(row["escape"]) for row in rows)
    n_called = sum(bool(row["called"]) for row in rows)
    verdict = pl.DataFrame(
        [
            {
                "pair": pair,
                "baseline": baseline.sample,
                "relapse": relapse.sample,
                "gene": mb.gene,
                "antigen_loss": "antigen loss" in mechanisms,
                "aberrant_splicing": "aberrant splicing" in mechanisms,
                "mutation": "mutation" in mechanisms,
                "antigen_loss_status": statuses["antigen loss"],
                "aberrant_splicing_status": statuses["aberrant splicing"],
                "mutation_status": statuses["mutation"],
                "n_called": n_called,
                "n_escape": n_escape,
                "n_changes": n_called - n_escape,
                "verdict": verdict_text,
                "thresholds": json.dumps(t.as_dict(), sort_keys=True),
                "car": binder.name if binder is not None else None,
                "binder_verdict": binder_summary,
                "binder_text": binder_text,
                "dispersion_source": t.dispersion_source(),
                "dispersions": json.dumps(_six_digits(t.dispersions())),
            }
        ],
        schema=VERDICT_COLUMNS,
        orient="row",
    )
    return Comparison(
        pair=pair,
        baseline=baseline.sample,
        relapse=relapse.sample,
        events=events,
        verdict=verdict,
        thresholds=t,
        mutations=mutations,
    )
