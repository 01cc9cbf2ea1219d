#!/usr/bin/env python3
"""Regenerate docs/validation.md: what cd22scan finds, and what it calls by mistake.

Through the public API only (simulate -> scan -> compare_samples), so a change to any calling
step shows up here. Simulated CD22 (GRCh38) pairs with biological variability between the two
samples of a pair: each sample draws its own isoform shares (beta, mean as planted, rho 0.01)
and its own depth (gamma, BCV 0.15, as edgeR's typical biological CV between replicates); the
simulator adds duplicates, low-MAPQ, QC-fail, secondary and supplementary records and
sequencing errors. Per setting, REPS pairs; a planted event is "found" when its row is called
in the escape direction; a false call is any other called row counted as escape.

    python scripts/validation.py --reps 6 --out docs/validation.md

With ../shared/realdata beside the repo (or CD22SCAN_SHARED) it adds the calls on the ENCODE
ABI1 pairs. Takes about 10 s per simulated sample on one core.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from cd22scan import scan
from cd22scan.comparison.dispersion import MIN_BASELINES, calibrate
from cd22scan.comparison.pair import Thresholds, compare_samples
from cd22scan.demo.simulate import cd22_grch38, coding_positions, simulate

REPO = Path(__file__).resolve().parents[1]
GENE = cd22_grch38()
BASE_SKIP = 0.03  # baseline Δex2 share (CD22-203 exists in normal B cells)
BASE_RETAIN = 0.05  # baseline retention of intron 3
RHO = 0.01  # between-sample variability of isoform shares
BCV = 0.15  # between-sample variability of depth


def _beta(rng: np.random.Generator, mean: float) -> float:
    if mean <= 0:
        return 0.0
    a = mean * (1 / RHO - 1)
    b = (1 - mean) * (1 / RHO - 1)
    return float(rng.beta(a, b))


def _sample(tmp: Path, name: str, seed: int, setting: dict, *, relapse: bool):
    rng = np.random.default_rng(seed)
    skip = _beta(rng, BASE_SKIP + (setting.get("d_skip", 0.0) if relapse else 0.0))
    retain = _beta(rng, BASE_RETAIN + (setting.get("d_ir", 0.0) if relapse else 0.0))
    extend = _beta(rng, setting.get("extend", 0.0)) if relapse else 0.0
    fold = setting.get("fold", 1.0) if relapse else 1.0
    depth = setting["fragments"] * rng.gamma(1 / BCV**2, BCV**2)
    n = max(50, round(depth / fold))
    variants = []
    if relapse and setting.get("vaf"):
        variants = [("snv", coding_positions(GENE)[300], None, setting["vaf"])]
    sim = simulate(
        tmp / name,
        seed=seed,
        gene=GENE,
        sample=name,
        n_fragments=n,
        isoforms={
            "canonical": 1 - skip - retain - extend,
            "skip:2": skip,
            "retain:3": retain,
            "extend:3:35": extend,
        },
        variants=variants,
        write_reference=True,
    )
    result = scan(str(sim.bam), reference=str(sim.reference))
    # The simulated BAM holds only the gene; a real library's size does not shrink with the
    # gene's expression, so every sample gets the library size of an unchanged one.
    result.summary["library_size"] = round(
        result.summary["library_size"] * setting["fragments"] / n
    )
    return result


SETTINGS = [
    # name, event row that must be called, setting, reps as a multiple of --reps, target
    ("replicates (no change)", None, {"fragments": 3000}, 1.0, "no false call"),
    ("Δex2 ΔPSI 0.10", ("exon_skipping", "Δex2"), {"fragments": 3000, "d_skip": 0.10}, 0.5, ""),
    ("Δex2 ΔPSI 0.25", ("exon_skipping", "Δex2"), {"fragments": 3000, "d_skip": 0.25}, 1.0,
     ">= 90 %"),
    ("Δex2 ΔPSI 0.25, 6000 fragments", ("exon_skipping", "Δex2"),
     {"fragments": 6000, "d_skip": 0.25}, 0.5, ""),
    ("Δex2 ΔPSI 0.25, 1000 fragments", ("exon_skipping", "Δex2"),
     {"fragments": 1000, "d_skip": 0.25}, 0.5, ""),
    ("expression loss 2x", ("expression_loss", "gene"), {"fragments": 3000, "fold": 2.0}, 1.0,
     ">= 90 %"),
    ("expression loss 4x", ("expression_loss", "gene"), {"fragments": 3000, "fold": 4.0}, 0.5,
     ""),
    ("ΔIR 0.20 (intron 3)", ("intron_retention", "intron 3"), {"fragments": 3000, "d_ir": 0.20},
     1.0, ">= 90 %"),
    ("cryptic donor 35 nt into intron 3, share 0.30", ("novel_junction", None),
     {"fragments": 3000, "extend": 0.30}, 0.5, "a novel junction, no retention call"),
    ("SNV VAF 0.30 (missense)", ("mutation", None), {"fragments": 3000, "vaf": 0.30}, 0.5, ""),
    ("replicates, ~1000x coding depth", None, {"fragments": 16000}, 0.5, "no false call"),
    ("SNV VAF 0.05 (missense), ~1000x", ("mutation", None), {"fragments": 16000, "vaf": 0.05},
     0.5, ">= 90 %"),
]  # fmt: skip


def _simulated(reps: int, tmp: Path, t: Thresholds, jobs: int = 1) -> list[dict]:
    """One row per setting, the settings spread over ``jobs`` processes (seeds are fixed per
    setting and pair, so the table does not depend on ``jobs``)."""
    work = [(index, reps, tmp / f"setting{index}", t) for index in range(len(SETTINGS))]
    if jobs <= 1:
        return [_setting(*w) for w in work]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_setting, *zip(*work, strict=True)))


# The thresholds each pair is compared with: the stated dispersions, the ones the setting's own
# baselines give (comparison.dispersion; a setting with fewer than MIN_BASELINES pairs has none),
# and those with a 1.5-fold expression / exon loss threshold (what the learned dispersion allows).
MODES = ("fixed", "fixed, 1.5x loss", "cohort", "cohort, 1.5x loss")
LOWER_LOSS = -0.585  # log2(1 / 1.5)


# Rows that are the planted event seen another way, neither found nor false: skipping exon 2
# lowers exon 2's share of the gene's fragments (an exon_loss row of the same event).
CONSEQUENCES = {"Δex2": {("exon_loss", "exon 2")}}


def _tally(c, target) -> tuple[bool, int, int, bool]:
    """(found, false escape rows, relapse reads of the planted row, a mechanism not assessable)"""
    escape = c.events.filter(pl.col("escape"))
    for kind, feature in CONSEQUENCES.get(target[1] if target else None, ()):
        escape = escape.filter(~((pl.col("event_type") == kind) & (pl.col("feature") == feature)))
    hit = escape.filter(pl.col("event_type") == target[0]) if target else escape.clear()
    if target and target[1] is not None:
        hit = hit.filter(pl.col("feature") == target[1])
    reads = 0
    if target:
        planted = c.events.filter(pl.col("event_type") == target[0])
        if target[1] is not None:
            planted = planted.filter(pl.col("feature") == target[1])
        else:  # the planted allele / junction: the relapse's largest value
            planted = planted.sort("relapse_value", descending=True, nulls_last=True)
        reads = int(planted["relapse_reads"][0]) if planted.height else 0
    verdict = c.verdict.row(0, named=True)
    blind = any(
        str(verdict[f"{m}_status"]).startswith("not assessable")
        for m in ("antigen_loss", "aberrant_splicing", "mutation")
    )
    return hit.height > 0, escape.height - hit.height, reads, blind


def _setting(index: int, reps: int, tmp: Path, t: Thresholds) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    label, target, setting, share, goal = SETTINGS[index]
    n = max(2, round(reps * share))
    pairs = []
    for rep in range(n):
        seed = 1000 * (index + 1) + 10 * rep
        base = _sample(tmp, f"B{index}_{rep}", seed, setting, relapse=False)
        rel = _sample(tmp, f"R{index}_{rep}", seed + 1, setting, relapse=True)
        pairs.append((base, rel))
    calibration = calibrate([base for base, _ in pairs], t)
    thresholds = {"fixed": t, "fixed, 1.5x loss": replace(t, min_log2fc_loss=LOWER_LOSS)}
    learned = "-"
    if calibration is not None:
        cohort = calibration.thresholds(t)
        thresholds["cohort"] = cohort
        thresholds["cohort, 1.5x loss"] = replace(cohort, min_log2fc_loss=LOWER_LOSS)
        learned = ", ".join(f"{kind} {value:.3g}" for kind, value, _ in cohort.calibrated)
        if cohort.calibrated_features:
            learned += "; own: " + ", ".join(
                f"{kind} {name} {value:.3g}" for kind, name, value, _ in cohort.calibrated_features
            )
    tallies = {mode: [_tally(compare_samples(b, r, thresholds=thr), target) for b, r in pairs]
               for mode, thr in thresholds.items()}  # fmt: skip
    for path in tmp.glob(f"[BR]{index}_*"):
        for f in path.iterdir():
            f.unlink()
        path.rmdir()
    row: dict = {"setting": label, "fragments": setting["fragments"], "pairs": n,
                 "target": goal or "-"}  # fmt: skip
    for mode in MODES:
        got = tallies.get(mode)
        if got is None:
            row[mode] = "-"
            continue
        found = sum(x[0] for x in got)
        cell = f"found {found} of {n} ({100 * found / n:.0f} %); " if target else ""
        false = sum(x[1] for x in got)
        row[mode] = f"{cell}false {false} (in {sum(x[1] > 0 for x in got)} pairs)"
    reads = [x[2] for x in tallies["fixed"]]
    row["median relapse reads of the event"] = int(np.median(reads)) if target else "-"
    row["pairs with a mechanism not assessable (fixed)"] = sum(x[3] for x in tallies["fixed"])
    row["dispersions learned from the baselines"] = learned
    print(label, row, file=sys.stderr, flush=True)
    return row


def _real(t: Thresholds) -> tuple[list[dict], str] | None:
    shared = Path(os.environ.get("CD22SCAN_SHARED", REPO.parent / "shared"))
    data = shared / "realdata" / "abi1_encode"
    if not (data / "input_bams.tsv").exists():
        return None
    groups: dict[str, list[str]] = {}
    scans = {}
    with (data / "input_bams.tsv").open() as handle:
        for sample, bam, group in csv.reader(handle, delimiter="\t"):
            groups.setdefault(group, []).append(sample)
            scans[sample] = scan(str(data / Path(bam).name), gtf=str(data / "annotation.gtf"),
                                 gene="ABI1", reference=str(data / "chr10_abi1.fa.gz"),
                                 sample=sample)  # fmt: skip
    # The 12 libraries as one cohort, all as baselines (run needs >= 8 distinct baselines;
    # these 6 pairs have 6): what real libraries show of the dispersions
    calibration = calibrate(list(scans.values()), t)
    assert calibration is not None
    learned = calibration.thresholds(t)
    rows = []
    for ids in groups.values():
        for b, r in ((ids[0], ids[1]), (ids[2], ids[3])):
            c = compare_samples(scans[b], scans[r], thresholds=t)
            v = c.verdict.row(0, named=True)
            escape = c.events.filter(pl.col("escape"))
            c2 = compare_samples(scans[b], scans[r], thresholds=learned)
            called2 = c2.events.filter(pl.col("called"))
            rows.append(
                {
                    "pair": f"{b} vs {r}",
                    "escape rows": ", ".join(escape["feature"].to_list()) or "none",
                    "other called changes": v["n_changes"],
                    "antigen loss": v["antigen_loss_status"],
                    "aberrant splicing": v["aberrant_splicing_status"],
                    "mutation": v["mutation_status"],
                    "escape rows (learned)": ", ".join(
                        c2.events.filter(pl.col("escape"))["feature"].to_list()
                    )
                    or "none",
                    "called changes other than mutations (fixed / learned)": (
                        f"{_names(c.events)} / {_names(c2.events)}"
                    ),
                    "called mutation rows (learned)": called2.filter(
                        pl.col("event_type") == "mutation"
                    ).height,
                }
            )
    values = ", ".join(f"{kind} {value:.3g}" for kind, value, _ in learned.calibrated)
    own = ", ".join(f"{k} {n} {v:.3g}" for k, n, v, _ in learned.calibrated_features)
    return rows, f"{values}; own: {own or 'none'}"


def _names(events: pl.DataFrame) -> str:
    called = events.filter(pl.col("called") & (pl.col("event_type") != "mutation"))
    return ", ".join(f"{r['event_type']} {r['feature']}" for r in called.iter_rows(named=True)) or (
        "none"
    )


def _table(rows: list[dict]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=6)
    p.add_argument("--jobs", type=int, default=1, help="settings run in parallel processes")
    p.add_argument("--out", default=str(REPO / "docs" / "validation.md"))
    args = p.parse_args(argv)
    t = Thresholds()
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        simulated = _simulated(args.reps, Path(tmp), t, args.jobs)
    real = _real(t)
    text = [
        "# Validation",
        "",
        "Generated by `python scripts/validation.py --reps "
        f"{args.reps}` ({time.time() - started:.0f} s); do not edit by hand.",
        "",
        f"Thresholds: `{t.as_dict()}`.",
        "",
        "## Simulated CD22 pairs",
        "",
        "Each pair: a baseline and a relapse, each with its own isoform shares (beta, rho "
        f"{RHO}) and depth (gamma, BCV {BCV}); baseline Δex2 share {BASE_SKIP}, intron 3 "
        f"retention {BASE_RETAIN}; planted effects on the relapse. Found = the planted row "
        "called in the escape direction; false escape calls = any other row counted as escape "
        "(and in how many pairs).",
        "",
        "Each pair is compared four ways: with the stated dispersions (`fixed`); with the "
        "dispersions learned from the baselines of the same setting, which are unchanged "
        "samples, as a cohort's baselines are (`cohort`, `comparison/dispersion.py`; only "
        f"settings with >= {MIN_BASELINES} pairs); and each of those with a 1.5-fold loss "
        f"threshold (`--max-log2fc {LOWER_LOSS}` instead of -1; `1.5x loss`). Each cell: the "
        "planted event found, and false escape calls (in how many pairs). An exon 2 loss "
        "called in a Δex2 pair is the planted skip seen as exon loss, counted neither way.",
        "",
        _table(simulated),
        "",
        f"Seeds here (1000-{1000 * len(SETTINGS) + 191}) are not the ones the defaults were "
        "tuned on (77000-80291, 91000-92151): the table is held out.",
        "",
        "Why a target is missed, where it is:",
        "",
        "* Δex2 at 3000 fragments: CD22 exon 1 is 44 nt, so only fragments that start in those "
        "44 nt read the exon 1→3 skipping junction; the median relapse pair has the number of "
        "skipping reads in the column above, and the test cannot be sure of a few reads against "
        "a baseline's 0-4. Twice the depth (6000 fragments) shows the same effect is found.",
        "* Expression loss 2x: the effect threshold is a 2-fold loss (`min_log2fc_loss` -1), "
        "so about half of the pairs with a true 2-fold loss estimate a smaller one and are not "
        "called by design, whatever the dispersion (14 of 20 with the stated phi 0.05 and with "
        "the learned 0.02-0.04; the simulated BCV 0.15 is phi 0.0225). A 1.5-fold threshold "
        "with the learned phi finds 17 of 20 (85 %) and calls nothing on the replicates, but in "
        "the Δex2 settings calls a loss in 2-3 pairs whose two simulated depths differ by more "
        "than 1.5x (two gamma draws at BCV 0.15 differ that much one way in ~3 % of pairs, and "
        "the test passes its nominal share of those): the default stays -1, and "
        "`--max-log2fc -0.585` with a cohort's dispersion is the choice for a user who accepts "
        "that rate.",
        "* ΔIR 0.20: retention of intron 3 is not a pre-specified event, so it is tested in the "
        "exploratory family (all splicing and exon rows of the gene). With the learned rho "
        "17 of 20 are found (14 with the stated 0.01); the misses drew a smaller change "
        "(ΔIR 0.11-0.16 on ~35 retained reads at relapse, p 0.007-0.03), which the correction "
        "over the family lifts to q 0.1-0.5. Retention is measured on the intron body (median "
        "depth), so the cryptic-donor row must show a novel junction and no retention call.",
        "* Learned values per setting (last column): each setting's baselines are a cohort of "
        "10-20 unchanged samples; `own` lists the features whose own spread was wider than "
        "their type's and were tested with it.",
        "",
        "## Real ENCODE ABI1 pairs (no escape expected)",
        "",
    ]
    if real is None:
        text.append("../shared/realdata not found: not run.")
    else:
        rows, learned = real
        text += [
            "Each pair compared with the stated dispersions and with those learned from the 12 "
            "libraries as one cohort (all as baselines: `run` learns from >= "
            f"{MIN_BASELINES} distinct baselines, and these 6 pairs have 6). Learned: "
            f"{learned}. Real libraries of different donors and labs spread wider than the "
            "stated guess for splicing (rho 0.01), so the learned values call less.",
            "",
            _table(rows),
        ]
    Path(args.out).write_text("\n".join(text) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
