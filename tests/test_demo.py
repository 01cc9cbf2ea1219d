"""The README's first command: `cd22scan demo` makes a cohort, runs it and writes the tables."""

from __future__ import annotations

import polars as pl
import pytest

from cd22scan.cli import main

pytestmark = pytest.mark.slow  # the whole demo cohort: about 75 s


def test_demo_cohort_finds_one_patient_per_mechanism(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    cohort = tmp_path / "demo" / "cohort"
    assert str(cohort) in out
    verdicts = {
        r["patient"]: r
        for r in pl.read_csv(cohort / "cohort_verdicts.tsv", separator="\t").iter_rows(named=True)
    }
    flags = ("antigen_loss", "aberrant_splicing", "mutation")
    expected = {
        "DEMO1": (False, True, False),
        "DEMO2": (True, False, False),
        "DEMO3": (False, False, True),
        "DEMO4": (False, False, False),
    }
    assert {p: tuple(verdicts[p][f] for f in flags) for p in expected} == expected
    assert "Δex2" in verdicts["DEMO1"]["verdict"]
    summary = pl.read_csv(cohort / "cohort_summary.tsv", separator="\t")
    any_escape = "any escape 3 of 3 assessable, 1 not (expression loss 1, "
    texts = summary["text"].to_list()
    assert any(t.startswith(any_escape) for t in texts), texts
    report = (cohort / "report.html").read_text()
    assert any_escape in report and 'id="fig-mechanisms"' in report
    assert len(list((cohort / "pairs").glob("*.report.html"))) == 4
    # the panel cohort: CD19 escape under FMC63, CD22 Δex5-6 under m971, a lineage switch
    panel = tmp_path / "demo" / "panel"
    assert str(panel) in out
    rows = pl.read_csv(panel / "cohort_verdicts.tsv", separator="\t").iter_rows(named=True)
    by = {(r["patient"], r["gene"]): r for r in rows}
    assert by[("DEMO5", "CD19")]["binder_text"] == "CD19 Δex2 at relapse, FMC63 epitope lost"
    assert by[("DEMO6", "CD22")]["binder_text"] == "CD22 Δex5-6 at relapse, m971 epitope retained"
    assert by[("DEMO6", "CD22")]["binder_verdict"] == "epitope retained"
    lineage = pl.read_csv(panel / "cohort_lineage.tsv", separator="\t")
    switched = lineage.filter(pl.col("lineage_switch"))["patient"].to_list()
    assert switched == ["DEMO7"]
