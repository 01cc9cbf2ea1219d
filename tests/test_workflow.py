"""The shipped Snakemake workflow gives the same cohort tables as `cd22scan run` (run_cohort)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from cohort_helpers import replicate_cohort_specs, write_small_cohort
from polars.testing import assert_frame_equal

from cd22scan.cli import main
from cd22scan.cohort.run import read_sample_sheet, run_cohort
from cd22scan.cohort.workflow import snakefile_path
from cd22scan.comparison.dispersion import MIN_BASELINES
from cd22scan.outputs.multiqc import GENERAL_STATS_FILE, VERDICTS_FILE
from cd22scan.sample.scan import ScanParams

pytestmark = [
    pytest.mark.slow,
    pytest.mark.external,
    pytest.mark.skipif(
        importlib.util.find_spec("snakemake") is None,
        reason="snakemake is not installed (pip install 'cd22scan[test]' or pip install snakemake)",
    ),
]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workflow")
    sheet, gtf = write_small_cohort(
        tmp,
        [
            ("P1", "P1_base", "baseline", {"canonical": 1.0}, 11),
            ("P1", "P1_rel", "relapse", {"canonical": 0.6, "skip:2": 0.4}, 12),
            ("P2", "P2_base", "baseline", {"canonical": 1.0}, 13),
            ("P2", "P2_rel", "relapse", {"canonical": 1.0}, 14),
            ("P3", "P3_rel", "relapse", {"canonical": 1.0}, 15),  # unpaired: scanned, not compared
        ],
        n_fragments=1500,
        bam_dir="bams",
    )
    reference = tmp / "run"
    run_cohort(sheet, reference, ScanParams(gene="SMALL", gtf=str(gtf)), jobs=2)
    return tmp, sheet, gtf, reference


def _snakemake(cwd: Path, *config: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # `cd22scan` of the interpreter running the tests, first on PATH for the shell rules.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    argv = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile_path())]
    argv += ["--cores", "2", "--config", *config]
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


# Keys of a scan's summary.json that record when it ran, not what it found.
RUN_TIME_KEYS = ("started", "seconds")


def _files(root: Path) -> dict[str, Path]:
    """Every file under root by relative path; the workflow's own logs/ are its only extra, and
    run's manifest.tsv is run's own (Snakemake keeps its own record of what it wrote)."""
    found = {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}
    return {
        name: p
        for name, p in found.items()
        if not name.startswith("logs/") and name != "manifest.tsv"
    }


def _same_content(name: str, got: Path, want: Path, got_root: Path, want_root: Path) -> None:
    if name.endswith(".parquet"):
        assert_frame_equal(pl.read_parquet(got), pl.read_parquet(want))
    elif name.endswith(".vcf.gz"):
        assert gzip.decompress(got.read_bytes()) == gzip.decompress(want.read_bytes()), name
    elif name.endswith(".summary.json"):
        a, b = json.loads(got.read_text()), json.loads(want.read_text())
        for key in RUN_TIME_KEYS:
            a.pop(key), b.pop(key)
        assert a == b, name
    elif name == "report.html":  # the cohort report names its own folder
        a = got.read_text().replace(str(got_root.resolve()), "OUT")
        b = want.read_text().replace(str(want_root.resolve()), "OUT")
        assert a == b, name
    else:
        assert got.read_bytes() == want.read_bytes(), name


def _same_files(out: Path, reference: Path) -> None:
    """The workflow wrote the files `cd22scan run` wrote, with the same contents."""
    got, want = _files(out), _files(reference)
    assert sorted(got) == sorted(want)
    for name in want:
        _same_content(name, got[name], want[name], out, reference)


def test_workflow_writes_the_files_of_run(cohort):
    tmp, sheet, gtf, reference = cohort
    out = tmp / "wf"
    config = (f"samplesheet={sheet.name}", "out=wf", f"scan_args=--gtf {gtf} --gene SMALL")
    _snakemake(tmp, *config)
    _same_files(out, reference)
    names = set(_files(out))
    pair = "P1_base_vs_P1_rel"
    for kind in (
        "events.tsv",
        "events.parquet",
        "verdict.tsv",
        "verdict.parquet",
        "report.html",
        "variants.vcf.gz",
    ):
        assert f"pairs/{pair}.{kind}" in names
    assert {"report.html", GENERAL_STATS_FILE, VERDICTS_FILE, "cohort_events.parquet"} <= names
    assert "scans/P3_rel.variants.vcf.gz" in names  # scanned, not compared
    verdicts = pl.read_csv(out / "cohort_verdicts.tsv", separator="\t")
    by_patient = {r["patient"]: r for r in verdicts.iter_rows(named=True)}
    assert by_patient["P1"]["aberrant_splicing"] is True
    assert by_patient["P2"]["n_called"] == 0
    # Nothing left to do on a second invocation.
    again = _snakemake(tmp, *config)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_workflow_reads_scan_directories(cohort):
    """Sheet paths that are (multi-sample) scan directories are read in place, as run does."""
    tmp, sheet, _, reference = cohort
    rows = ["patient,sample,timepoint,path"]
    for r in read_sample_sheet(sheet):
        rows.append(f"{r.patient},{r.sample},{r.timepoint},{reference / 'scans'}")
    sheet2 = tmp / "from_scans.csv"
    sheet2.write_text("\n".join(rows) + "\n")
    run_cohort(sheet2, tmp / "run_scans")
    _snakemake(tmp, f"samplesheet={sheet2.name}", "out=wf_scans")
    _same_files(tmp / "wf_scans", tmp / "run_scans")
    assert not list((tmp / "wf_scans").glob("scans/*"))  # nothing copied or rescanned


def test_sample_sheet_text_never_reaches_the_shell_unquoted(cohort):
    tmp, _, gtf, _ = cohort
    work = tmp / "quoting"
    work.mkdir()
    base, rel = "b 1;$(touch PWNED)", "r'2\"`touch PWNED2`"
    sheet = work / "odd names.tsv"
    sheet.write_text(
        "patient\tsample\ttimepoint\tpath\n"
        f"P 9\t{base}\tbaseline\t../bams/P2_base/P2_base.bam\n"
        f"P 9\t{rel}\trelapse\t../bams/P2_rel/P2_rel.bam\n"
    )
    _snakemake(
        work, f"samplesheet={sheet.name}", "out=o u t", f"scan_args=--gtf {gtf} --gene SMALL"
    )
    assert not list(work.glob("PWNED*"))
    verdicts = pl.read_csv(work / "o u t" / "cohort_verdicts.tsv", separator="\t")
    assert verdicts.select("patient", "baseline", "relapse").row(0) == ("P 9", base, rel)


def test_snakefile_declares_threads_and_an_environment():
    """Every rule that runs a job has threads: and conda:, the scan passes its threads as -@,
    and the environment file it names is shipped beside it."""
    text = snakefile_path().read_text()
    rules = text.split("\nrule ")[1:]
    jobs = [r for r in rules if "shell:" in r]
    assert len(jobs) == 4  # scan, dispersion, compare, cohort
    for rule in jobs:
        assert "threads:" in rule and "conda:" in rule, rule.splitlines()[0]
    scan_rule = next(r for r in jobs if r.startswith("scan:"))
    assert "-@ {threads}" in scan_rule
    env = snakefile_path().parent / "environment.yaml"
    assert 'ENV = "environment.yaml"' in text and env.is_file()
    assert "pysam" in env.read_text() and "cd22scan" in env.read_text()


def test_workflow_learns_the_dispersion_as_run_does(tmp_path):
    """A cohort with enough baselines: the workflow's dispersion step learns what run learns
    (dispersion.json and every pair's files equal), and --fixed-dispersion is said there."""
    sheet, gtf = write_small_cohort(
        tmp_path, replicate_cohort_specs(MIN_BASELINES, seed=500), n_fragments=600,
        bam_dir="bams",
    )  # fmt: skip
    run_cohort(sheet, tmp_path / "run", ScanParams(gene="SMALL", gtf=str(gtf)), jobs=2)
    _snakemake(tmp_path, f"samplesheet={sheet.name}", "out=wf",
               f"scan_args=--gtf {gtf} --gene SMALL")  # fmt: skip
    _same_files(tmp_path / "wf", tmp_path / "run")
    record = json.loads((tmp_path / "wf" / "dispersion.json").read_text())["genes"]["SMALL"]
    assert record["source"].startswith(f"cohort: {MIN_BASELINES} baselines")
    assert {x["event_type"] for x in record["learned"]} >= {"expression_loss", "exon_skipping"}
    verdicts = pl.read_csv(tmp_path / "wf" / "cohort_verdicts.tsv", separator="\t")
    assert set(verdicts["dispersion_source"]) == {record["source"]}

    assert main(["workflow", "dispersion", str(sheet), str(tmp_path / "wf"),
                 "--fixed-dispersion"]) == 0  # fmt: skip
    fixed = json.loads((tmp_path / "wf" / "dispersion.json").read_text())["genes"]["SMALL"]
    assert (fixed["source"], fixed["learned"], fixed["reason"]) == (
        "fixed",
        [],
        "--fixed-dispersion",
    )
