"""The per-sample calling stage: computed once, kept with the scan, written and read back; and
the package's imports free of circles."""

from __future__ import annotations

import ast
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import cd22scan.calling.sample
from cd22scan import cli, scan
from cd22scan.calling.sample import CALL_TABLES, call_sample, sample_calls
from cd22scan.comparison.pair import Thresholds, compare_samples
from cd22scan.demo.simulate import simulate, small_gene, write_gtf
from cd22scan.errors import UsageError
from cd22scan.outputs.scandir import SCAN_FILES, load_scan, scan_file_names, write_scan

GENE = small_gene("+")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calls")
    gtf = write_gtf(GENE, tmp / "gene.gtf")
    out = []
    for name, seed, isoforms in (("B", 51, None), ("R", 52, {"canonical": 0.6, "skip:2": 0.4})):
        sim = simulate(tmp / name, seed=seed, gene=GENE, sample=name, n_fragments=2000,
                       isoforms=isoforms)  # fmt: skip
        out.append(scan(str(sim.bam), gtf=str(gtf), gene=GENE.name, reference=str(sim.reference)))
    return tmp, out


def test_calls_are_written_with_the_scan_and_read_back(pair):
    tmp, (base, _) = pair
    written = write_scan(base, tmp / "scans")
    for name, suffix in CALL_TABLES.items():
        assert written[f"calls_{name}"].name == f"B.calls.{suffix}.parquet"
        assert written[f"calls_{name}"].exists()
    assert set(written) == set(SCAN_FILES)
    # the list run's manifest and stale-file check rely on is what is on disk
    on_disk = sorted(p.name for p in (tmp / "scans").iterdir())
    assert on_disk == sorted(scan_file_names("B"))
    loaded = load_scan(tmp / "scans", "B")
    assert loaded.calls is not None  # read from the directory, not made again
    for name, frame in base.calls.frames().items():
        assert_frame_equal(loaded.calls.frames()[name], frame)
    assert loaded.calls.has_reference and base.calls.has_reference
    assert base.calls.variants.height <= base.calls.alleles.height
    # the calls equal a fresh call of the same scan
    again = call_sample(base, None)
    assert_frame_equal(again.skipping_events, base.calls.skipping_events)


def test_compare_consumes_the_kept_calls(pair, monkeypatch):
    _, (base, rel) = pair
    sample_calls(base), sample_calls(rel)  # made once here
    calls_made = []
    monkeypatch.setattr(cd22scan.calling.sample, "call_sample", lambda *a: calls_made.append(a))
    monkeypatch.setattr("cd22scan.comparison.pair.call_sample", lambda *a: calls_made.append(a))
    comparison = compare_samples(base, rel)
    assert calls_made == []
    row = comparison.events.filter(pl.col("feature") == "Δex2").row(0, named=True)
    assert row["called"]


def test_thresholds_from_options_without_the_cli():
    t = Thresholds.from_args("--max-q 0.01 --min-delta-psi=0.2 --min-event-reads 5")
    assert (t.max_q, t.min_delta_psi, t.min_reads) == (0.01, 0.2, 5)
    assert Thresholds.from_args("") == Thresholds()
    args = cli.build_parser().parse_args(
        ["compare", "--baseline", "-", "--relapse", "-", "--out", "-", "--max-q", "0.01",
         "--min-delta-psi", "0.2", "--min-event-reads", "5"]
    )  # fmt: skip
    assert cli.thresholds_from_namespace(args) == t
    for bad in ("--jobs 2", "--max-q", "--max-q x", "--max-q 2"):
        with pytest.raises(UsageError):
            Thresholds.from_args(bad)


def _imports(path: Path) -> set[str]:
    """cd22scan modules a module imports at its top level (what runs when it is imported)."""
    tree = ast.parse(path.read_text())
    return {
        node.module
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cd22scan")
    } | {
        alias.name
        for node in tree.body
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.startswith("cd22scan")
    }


def test_no_import_circles_in_the_package():
    package = Path(cd22scan.calling.sample.__file__).parent
    graph = {f"cd22scan.{p.stem}": _imports(p) for p in package.glob("*.py")}
    circles = []
    for start in graph:
        stack = [(start, [start])]
        while stack:
            here, path = stack.pop()
            for nxt in graph.get(here, ()):
                if nxt == start:
                    circles.append(" -> ".join([*path, nxt]))
                elif nxt not in path:
                    stack.append((nxt, [*path, nxt]))
    assert circles == []
