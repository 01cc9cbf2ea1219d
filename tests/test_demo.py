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
    assert "any escape 3 of 3 assessable, 1 not" in summary["text"].to_list()
    report = (cohort / "report.html").read_text()
    assert "any escape 3 of 3 assessable, 1 not" in report and 'id="fig-mechanisms"' in report
    assert len(list((cohort / "pairs").glob("*.report.html"))) == 4
