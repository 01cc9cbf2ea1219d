"""`cd22scan run`: sample sheet → scans → pairs → cohort tables; sample sheet errors."""

from __future__ import annotations

import polars as pl
import pytest
from cohort_helpers import write_small_cohort

from cd22scan.cli import main
from cd22scan.cohort.run import read_sample_sheet


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cohort")
    sheet, gtf = write_small_cohort(
        tmp,
        [
            ("P1", "P1_base", "baseline", {"canonical": 1.0}, 1),
            ("P1", "P1_rel", "relapse", {"canonical": 0.5, "skip:2": 0.5}, 2),
            ("P2", "P2_base", "baseline", {"canonical": 1.0}, 3),
            ("P2", "P2_rel", "relapse", {"canonical": 1.0}, 4),
            ("P3", "P3_rel", "relapse", {"canonical": 1.0}, 5),
        ],
        n_fragments=1500,
    )
    return tmp, sheet, gtf


@pytest.mark.slow
def test_run_logs_each_scan_with_its_count_when_no_bar_is_shown(cohort, capfd):
    """In a pipeline's log (stderr not a terminal, so no progress bar) every scanned sample is
    still numbered: [1/5] ... [5/5]."""
    tmp, sheet, gtf = cohort
    argv = ["run", str(sheet), "--out", str(tmp / "logged"), "--gtf", str(gtf), "--gene", "SMALL"]
    assert main(argv) == 0
    err = capfd.readouterr().err
    counts = [line.split("]")[0] for line in err.splitlines() if "] scanned " in line]
    assert counts == [f"cd22scan: [{k}/5" for k in range(1, 6)], err


@pytest.mark.slow
def test_run_calls_the_planted_skip_and_reports_unpaired(cohort):
    tmp, sheet, gtf = cohort
    out = tmp / "out"
    argv = ["run", str(sheet), "--out", str(out), "--gtf", str(gtf), "--gene", "SMALL"]
    assert main([*argv, "--jobs", "2"]) == 0
    verdicts = pl.read_csv(out / "cohort_verdicts.tsv", separator="\t")
    by_patient = {r["patient"]: r for r in verdicts.iter_rows(named=True)}
    assert set(by_patient) == {"P1", "P2"}
    assert by_patient["P1"]["aberrant_splicing"] is True
    assert by_patient["P2"]["aberrant_splicing"] is False
    assert by_patient["P2"]["n_called"] == 0
    events = pl.read_csv(
        out / "cohort_events.tsv", separator="\t", schema_overrides={"feature": pl.Utf8}
    )
    called = events.filter(pl.col("called"))
    assert {"patient", "baseline", "relapse"} <= set(events.columns)
    assert "Δex2" in called.filter(pl.col("patient") == "P1")["feature"].to_list()
    summary = pl.read_csv(out / "cohort_summary.tsv", separator="\t")
    text = dict(zip(summary["mechanism"], summary["text"], strict=True))
    assert text["aberrant_splicing"] == "aberrant splicing 1 of 2 assessable (Δex2 1)"
    by_event = dict(zip(summary["mechanism"], summary["by_event"], strict=True))
    assert by_event["aberrant_splicing"] == "Δex2 1" and summary["gene"].unique().to_list() == [
        "SMALL"
    ]
    unpaired = pl.read_csv(out / "unpaired_samples.tsv", separator="\t")
    assert unpaired["sample"].to_list() == ["P3_rel"]
    assert (out / "scans" / "P3_rel.summary.json").exists()  # scanned, not dropped
    assert "aberrant splicing 1 of 2 assessable" in (out / "report.html").read_text()
    pair_report = (out / "pairs" / "P1_base_vs_P1_rel.report.html").read_text()
    assert 'id="verdict"' in pair_report and "Δex2" in pair_report
    # A second run over the scan directories gives the same verdicts (compare from scans).
    rows = ["patient\tsample\ttimepoint\tpath"]
    for r in read_sample_sheet(sheet):
        rows.append(f"{r.patient}\t{r.sample}\t{r.timepoint}\t{out / 'scans'}")
    sheet2 = tmp / "from_scans.csv"
    sheet2.write_text("\n".join(rows).replace("\t", ",") + "\n")
    out2 = tmp / "out2"
    assert main(["run", str(sheet2), "--out", str(out2)]) == 0
    again = pl.read_csv(out2 / "cohort_verdicts.tsv", separator="\t")
    assert again.drop("thresholds").equals(verdicts.drop("thresholds"))


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("patient\tsample\tpath\nP1\tS1\tx.bam\n", "missing column(s) timepoint"),
        ("patient\tsample\ttimepoint\tpath\nP1\tS1\tbaseline\tnope.bam\n", "nope.bam not found"),
        ("patient\tsample\ttimepoint\tpath\nP1\tS1\tlater\tx.bam\n", "baseline or relapse"),
        (
            "patient\tsample\ttimepoint\tpath\nP1\tS1\tbaseline\tx.bam\nP1\tS1\trelapse\tx.bam\n",
            "already on line 2",
        ),
    ],
)
def test_sample_sheet_errors_are_one_line_with_exit_2(tmp_path, capsys, content, needle):
    (tmp_path / "x.bam").write_bytes(b"")
    sheet = tmp_path / "s.tsv"
    sheet.write_text(content)
    assert main(["run", str(sheet), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


@pytest.mark.slow
def test_compare_cli_from_bams_and_from_scan_directories(cohort):
    tmp, _sheet, gtf = cohort
    base, rel = tmp / "P1_base" / "P1_base.bam", tmp / "P1_rel" / "P1_rel.bam"
    out = tmp / "cmp"
    common = ["--gtf", str(gtf), "--gene", "SMALL"]
    assert (
        main(
            ["compare", "--baseline", str(base), "--relapse", str(rel), "--out", str(out), *common]
        )
        == 0
    )
    verdict = pl.read_csv(out / "verdict.tsv", separator="\t")
    assert verdict["aberrant_splicing"][0] is True
    assert "Δex2" in verdict["verdict"][0]
    assert 'id="fig-sashimi"' in (out / "report.html").read_text()
    events = pl.read_parquet(out / "events.parquet")
    assert events.equals(pl.read_csv(out / "events.tsv", separator="\t", schema=events.schema))
    out2 = tmp / "cmp2"
    scans = out / "scans"
    argv = ["compare", "--baseline", str(scans), "--relapse", str(scans), "--out", str(out2)]
    # A directory holding two samples is ambiguous: a usage error (64) naming the option that
    # picks one (--baseline-sample / --relapse-sample, tests/test_scan_cli.py).
    assert main(argv) == 64


def test_cohort_summary_counts_only_assessable_patients():
    from cd22scan.cohort.run import cohort_summary

    na = "not assessable (relapse too thin)"
    rows = [
        # patient, antigen_loss, status, splicing, status, mutation, status
        ("P1", True, "escape", False, "no escape detected", False, na),
        ("P2", False, na, False, na, False, na),
        ("P3", False, "no escape detected", False, "no escape detected", False, na),
        # P4 has two pairs: one thin, one that could show a splicing change
        ("P4", False, na, False, na, False, "no escape detected"),
        ("P4", False, "no escape detected", False, "no escape detected", False, na),
    ]
    verdicts = pl.DataFrame(
        rows,
        schema=[
            "patient",
            "antigen_loss",
            "antigen_loss_status",
            "aberrant_splicing",
            "aberrant_splicing_status",
            "mutation",
            "mutation_status",
        ],
        orient="row",
    )
    summary = cohort_summary(verdicts, ["P1", "P2", "P3", "P4", "P5"])
    text = dict(zip(summary["mechanism"], summary["text"], strict=True))
    assert text == {
        "antigen_loss": "antigen loss 1 of 3 assessable, 1 not",
        "aberrant_splicing": "aberrant splicing 0 of 3 assessable, 1 not",
        "mutation": "mutation 0 of 1 assessable, 3 not",
        # P1 shows escape; P4 is assessable for all three over its two pairs
        "any_escape": "any escape 1 of 2 assessable, 2 not",
    }
    row = summary.row(0, named=True)
    assert (row["patients_assessable"], row["patients_not_assessable"]) == (3, 1)
    assert row["patients_in_sheet"] == 5
