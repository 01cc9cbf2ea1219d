"""The README's first command: `cd22scan demo` simulates, scans and writes the outputs."""

from __future__ import annotations

import json

import polars as pl

from cd22scan.cli import main


def test_demo_writes_a_scan_with_the_planted_exon2_skip(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    scan_dir = tmp_path / "demo" / "scan"
    assert str(scan_dir) in out
    summary = json.loads((scan_dir / "demo_relapse.summary.json").read_text())
    assert summary["gene"] == "CD22" and summary["build"] == "GRCh38"
    junctions = pl.read_csv(
        scan_dir / "demo_relapse.junctions.tsv",
        separator="\t",
        schema_overrides={"skipped_exons": pl.Utf8},
    )
    skip = junctions.filter(pl.col("skipped_exons") == "2")
    include = junctions.filter((pl.col("donor_exon") == 1) & (pl.col("acceptor_exon") == 2))
    # 40 % of molecules skip exon 2: the skip junction must carry a large share of exon-1 reads.
    share = skip["reads"].sum() / (skip["reads"].sum() + include["reads"].sum())
    assert 0.25 < share < 0.55, share
    indels = pl.read_csv(scan_dir / "demo_relapse.indels.tsv", separator="\t")
    frameshift = indels.filter((pl.col("kind") == "del") & (pl.col("length") == 1))
    assert frameshift["reads"].max() >= 20
