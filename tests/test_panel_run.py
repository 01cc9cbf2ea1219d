"""`run --targets` (issue 15): a simulated panel cohort, every target in one pass per sample.

Built-in GRCh38 models of CD19 (+ strand), CD22 (+), GPRC5D (- strand) and the eight lineage
markers (``lineage_markers.tsv``: CD19, CD79A, CD22, MME; MPO, CD14, FCGR1A, LYZ), each sample
one BAM (``simulate_panel``) with 20,000 background reads. Patients:

* PCD19: CD19 Δexon 2 in half the relapse molecules, CAR CD19:FMC63 (sheet ``car`` column);
* PGPRC5D: GPRC5D (minus strand) 5x fewer fragments at relapse;
* PLIN: lineage switch, B markers 30x down and myeloid markers 30x up;
* PREP: a replicate pair (other read seeds, same expression and splicing): nothing called.
"""

from __future__ import annotations

import polars as pl
import pytest

from cd22scan.cli import main
from cd22scan.demo.simulate import simulate_panel
from cd22scan.target.panel import lineage_markers

pytestmark = pytest.mark.slow  # 8 panel BAMs of 9 genes and a cohort run: about 40 s

TARGETS = ("CD19", "CD22", "GPRC5D")
HIGH, MARKER, LOW = 2000, 600, 20


def _genes(**changes) -> dict[str, dict]:
    markers = lineage_markers()
    genes = {g: {"n_fragments": HIGH} for g in TARGETS}
    genes |= {g: {"n_fragments": MARKER} for g in markers["B"] if g not in TARGETS}
    genes |= {g: {"n_fragments": LOW} for g in markers["myeloid"]}
    for gene, keywords in changes.items():
        genes[gene] = keywords
    return genes


def _switched() -> dict[str, dict]:
    markers = lineage_markers()
    genes = _genes()
    genes |= {g: {"n_fragments": LOW} for g in markers["B"]}
    genes |= {g: {"n_fragments": MARKER} for g in markers["myeloid"]}
    return genes


PATIENTS = {
    "PCD19": (_genes(), _genes(CD19={"n_fragments": HIGH,
                                     "isoforms": {"canonical": 0.5, "skip:2": 0.5}}), "CD19:FMC63"),
    "PGPRC5D": (_genes(), _genes(GPRC5D={"n_fragments": HIGH // 5}), ""),
    "PLIN": (_genes(), _switched(), "CD19:FMC63"),
    "PREP": (_genes(), _genes(), "CD22:m971"),
}  # fmt: skip


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("panelrun")
    lines = ["patient\tsample\ttimepoint\tpath\tcar"]
    for i, (patient, (base, rel, car)) in enumerate(PATIENTS.items()):
        for j, (timepoint, genes) in enumerate((("baseline", base), ("relapse", rel))):
            sample = f"{patient}_{timepoint[0]}"
            bam = simulate_panel(root / sample, seed=1000 + 100 * i + 50 * j, genes=genes,
                                 sample=sample, reference_seed=1000 + 100 * i)  # fmt: skip
            lines.append(f"{patient}\t{sample}\t{timepoint}\t{bam}\t{car}")
    sheet = root / "samples.tsv"
    sheet.write_text("\n".join(lines) + "\n")
    out = root / "out"
    targets = ",".join(dict.fromkeys([*TARGETS, *sum(lineage_markers().values(), ())]))
    assert main(["run", str(sheet), "-o", str(out), "--targets", targets, "--jobs", "2"]) == 0
    return out


def _verdicts(out) -> dict[tuple[str, str], dict]:
    frame = pl.read_csv(out / "cohort_verdicts.tsv", separator="\t")
    return {(r["patient"], r["gene"]): r for r in frame.iter_rows(named=True)}


def test_each_planted_event_is_found_in_its_gene_and_nowhere_else(cohort):
    verdicts = _verdicts(cohort)
    assert verdicts[("PCD19", "CD19")]["aberrant_splicing"] is True
    assert "Δex2" in verdicts[("PCD19", "CD19")]["verdict"]
    assert verdicts[("PGPRC5D", "GPRC5D")]["antigen_loss"] is True  # the minus-strand gene
    planted = {("PCD19", "CD19"), ("PGPRC5D", "GPRC5D")}
    for (patient, gene), row in verdicts.items():
        if patient != "PLIN" and (patient, gene) not in planted:  # PLIN loses every B marker
            assert row["n_called"] == 0, (patient, gene, row["verdict"])


def test_the_binder_of_each_patient_classes_its_events(cohort):
    verdicts = _verdicts(cohort)
    cd19 = verdicts[("PCD19", "CD19")]
    assert (cd19["car"], cd19["binder_verdict"]) == ("FMC63", "CAR target lost")
    assert cd19["binder_text"] == "CD19 Δex2 at relapse, FMC63 epitope lost"
    assert verdicts[("PCD19", "CD22")]["car"] is None  # the patient's CAR is a CD19 CAR
    assert verdicts[("PREP", "CD22")]["binder_verdict"] == "no escape event"
    events = pl.read_csv(cohort / "cohort_events.tsv", separator="\t")
    lost = events.filter(pl.col("escape") & (pl.col("patient") == "PCD19"))
    assert lost["epitope"].to_list() == ["epitope_lost"]


def test_lineage_switch_is_called_for_that_patient_only(cohort):
    lineage = pl.read_csv(cohort / "cohort_lineage.tsv", separator="\t")
    by_patient = {r["patient"]: r for r in lineage.iter_rows(named=True)}
    assert by_patient["PLIN"]["lineage_switch"] is True
    assert by_patient["PLIN"]["text"].startswith("lineage switch suspected: B markers down ")
    assert set(by_patient["PLIN"]["b_down"].split(",")) == set(lineage_markers()["B"])
    assert set(by_patient["PLIN"]["myeloid_up"].split(",")) == set(lineage_markers()["myeloid"])
    for patient in ("PCD19", "PGPRC5D", "PREP"):
        assert by_patient[patient]["status"] == "no lineage switch detected", patient


def test_cohort_summary_counts_per_target_with_the_events(cohort):
    summary = pl.read_csv(cohort / "cohort_summary.tsv", separator="\t")
    text = {(r["gene"], r["mechanism"]): r["text"] for r in summary.iter_rows(named=True)}
    assert text[("CD19", "aberrant_splicing")].startswith("CD19 aberrant splicing 1 of ")
    assert text[("CD19", "aberrant_splicing")].endswith("(Δex2 1)")
    assert text[("GPRC5D", "antigen_loss")].startswith("GPRC5D antigen loss 1 of ")
    assert text[("CD22", "mutation")].startswith("CD22 mutation 0 of ")


def test_files_per_gene_report_and_manifest(cohort):
    for gene in TARGETS:
        assert (cohort / "pairs" / gene / "PCD19_b_vs_PCD19_r.report.html").is_file()
        assert (cohort / "scans" / gene / "PCD19_b.summary.json").is_file()
    assert (cohort / "scans" / "PCD19_b.panel.json").is_file()
    report = (cohort / "report.html").read_text()
    for gene in TARGETS:
        assert f'id="target-{gene}"' in report and f'id="fig-mechanisms-{gene}"' in report
    assert 'href="pairs/CD19/PCD19_b_vs_PCD19_r.report.html"' in report
    assert 'id="lineage"' in report and "lineage switch suspected" in report
    manifest = pl.read_csv(cohort / "manifest.tsv", separator="\t")
    listed = set(manifest["file"].to_list())
    assert "pairs/CD19/PCD19_b_vs_PCD19_r.events.tsv" in listed
    assert "scans/GPRC5D/PREP_r.summary.json" in listed
    assert "cohort_lineage.tsv" in listed


def test_compare_of_b_all_panels_says_lineage_is_not_assessable(tmp_path):
    """Without the myeloid markers the lineage test cannot be made, and says so."""
    genes = {g: {"n_fragments": 300} for g in ("CD19", "CD22")}
    bams = [simulate_panel(tmp_path / s, seed=7 + k, genes=genes, sample=s, background=2000,
                           reference_seed=7) for k, s in enumerate(("B", "R"))]  # fmt: skip
    out = tmp_path / "cmp"
    argv = ["compare", "--baseline", str(bams[0]), "--relapse", str(bams[1]), "--targets", "b-all"]
    assert main([*argv, "-o", str(out)]) == 0
    row = pl.read_csv(out / "lineage.tsv", separator="\t").row(0, named=True)
    assert row["lineage_switch"] is False
    assert row["status"].startswith("not assessable (not scanned in both samples: MPO or two")


def test_multiqc_rows_are_one_per_pair_and_gene(cohort):
    lines = (cohort / "cd22scan_verdicts_mqc.tsv").read_text().splitlines()
    keys = [line.split("\t")[0] for line in lines if not line.startswith("#")][1:]
    assert len(keys) == len(set(keys)) == 4 * 9  # CD19 and CD22 are also B markers
    assert "PCD19_b_vs_PCD19_r CD19" in keys
