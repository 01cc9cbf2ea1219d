"""The gene model inside a scan directory (NAME.model.json): round trip, scans that outlive their
GTF, old scan directories, and one GTF parse per `run` / `compare`."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from cohort_helpers import write_small_cohort

from cd22scan.cli import main
from cd22scan.cohort import run as cohort
from cd22scan.errors import AnnotationError, InputError
from cd22scan.outputs.scandir import load_scan
from cd22scan.target import annotation
from cd22scan.target.annotation import (
    GeneModel,
    KnownEvent,
    builtin_model,
    load_gtf,
    model_from_json,
    model_to_json,
)


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("model_cohort")
    sheet, gtf = write_small_cohort(
        tmp,
        [
            ("P1", "P1_base", "baseline", {"canonical": 1.0}, 11),
            ("P1", "P1_rel", "relapse", {"canonical": 0.5, "skip:2": 0.5}, 12),
            ("P2", "P2_base", "baseline", {"canonical": 1.0}, 13),
            ("P2", "P2_rel", "relapse", {"canonical": 1.0}, 14),
        ],
        n_fragments=300,
    )
    return tmp, sheet, gtf


def _through_json(model: GeneModel) -> GeneModel:
    return model_from_json(json.loads(json.dumps(model_to_json(model))))


@pytest.mark.parametrize("build", ["GRCh38", "GRCh37"])
def test_builtin_model_round_trips_with_every_field(build):
    model = builtin_model("CD22", build)
    back = _through_json(model)
    assert back == model
    # compare=False fields are not in ==: check every field one by one.
    for f in dataclasses.fields(GeneModel):
        assert getattr(back, f.name) == getattr(model, f.name), f.name
    assert back.known_events and back.exon_domains


def test_gtf_model_round_trips(small_cohort):
    _, _, gtf = small_cohort
    model = load_gtf(gtf, "SMALL")
    back = _through_json(model)
    assert back == model
    # compare=False in GeneModel: checked on its own (every transcript's introns)
    assert back.annotated_junctions == model.annotated_junctions != ()


def test_a_field_added_to_the_model_is_carried_without_edits():
    """A GeneModel with one more field goes through unchanged."""
    wider = dataclasses.make_dataclass(
        "WiderModel",
        [("extra_introns", tuple[tuple[int, int], ...], dataclasses.field(default=()))],
        bases=(GeneModel,),
        frozen=True,
    )
    base = builtin_model()
    model = wider(
        **{f.name: getattr(base, f.name) for f in dataclasses.fields(GeneModel)},
        extra_introns=((35329231, 35330000), (35331000, 35332000)),
    )
    data = json.loads(json.dumps(model_to_json(model)))
    back = annotation._dataclass_from_plain(wider, data["model"], "test")
    assert back == model
    assert back.extra_introns == ((35329231, 35330000), (35331000, 35332000))


def test_model_json_refuses_other_files_and_newer_schemas():
    doc = model_to_json(builtin_model())
    with pytest.raises(AnnotationError, match=r"^x: not a cd22scan gene model file$"):
        model_from_json({"kind": "something else"}, "x")
    with pytest.raises(AnnotationError, match=r"schema version 99; this cd22scan reads up to 1"):
        model_from_json({**doc, "schema_version": 99}, "x")
    broken = json.loads(json.dumps(doc))
    del broken["model"]["exons"]
    with pytest.raises(AnnotationError, match=r"field 'exons' is missing"):
        model_from_json(broken, "x")
    broken = json.loads(json.dumps(doc))
    broken["model"]["exons"][0]["start"] = "35329187"
    with pytest.raises(AnnotationError, match=r"expected int, found '35329187'"):
        model_from_json(broken, "x")
    broken = json.loads(json.dumps(doc))
    broken["model"]["known_events"] = [{"name": "Δex2"}]
    with pytest.raises(AnnotationError, match=r"KnownEvent field 'kind' is missing"):
        model_from_json(broken, "x")
    assert KnownEvent  # the type the message names


def test_scan_directory_outlives_its_gtf(small_cohort, tmp_path):
    """scan with --gtf, then move the GTF away: load_scan and compare still work (the model
    comes from NAME.model.json); without the model file an old directory re-reads the GTF and,
    when it is gone, says so in one line."""
    tmp, _, gtf = small_cohort
    moved = shutil.copy(gtf, tmp_path / "gene.gtf")
    out = tmp_path / "scans"
    for sample in ("P1_base", "P1_rel"):
        bam = tmp / sample / f"{sample}.bam"
        assert (
            main(
                [
                    "scan",
                    str(bam),
                    "--gtf",
                    str(moved),
                    "--gene",
                    "SMALL",
                    "--out",
                    str(out / sample),
                ]
            )
            == 0
        )
    expected = load_gtf(moved, "SMALL")
    doc = json.loads((out / "P1_base" / "P1_base.model.json").read_text())
    assert doc["schema_version"] == 1 and doc["model"]["transcript"] == expected.transcript
    moved.unlink()
    loaded = load_scan(out / "P1_base")
    assert loaded.model == expected.with_contig(loaded.summary["contig"])
    argv = ["compare", "--baseline", str(out / "P1_base"), "--relapse", str(out / "P1_rel")]
    assert main([*argv, "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "verdict.tsv").exists()
    # An old directory (no model file) falls back to the GTF the summary names.
    (out / "P1_base" / "P1_base.model.json").unlink()
    with pytest.raises(AnnotationError, match=r"gene\.gtf: file not found$"):
        load_scan(out / "P1_base")
    shutil.copy(gtf, moved)
    old = load_scan(out / "P1_base").model
    # The re-read model says "as requested" where the scan had the default rule's reason:
    # one more reason to keep the model in the directory.
    assert old == dataclasses.replace(loaded.model, selection=old.selection)


def test_model_file_that_disagrees_with_the_summary_is_refused(small_cohort, tmp_path):
    tmp, _, gtf = small_cohort
    out = tmp_path / "s"
    bam = tmp / "P1_base" / "P1_base.bam"
    assert main(["scan", str(bam), "--gtf", str(gtf), "--gene", "SMALL", "--out", str(out)]) == 0
    path = out / "P1_base.model.json"
    doc = json.loads(path.read_text())
    doc["model"]["transcript"] = "OTHER-T9"
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"model SMALL OTHER-T9 .* does not match the summary"):
        load_scan(out)


def _count_gtf_parses(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = annotation._scan_gtf

    def counting(*args, **kwargs):
        calls.append(str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(annotation, "_scan_gtf", counting)
    return calls


def test_run_parses_the_gtf_once_whatever_the_number_of_samples(small_cohort, monkeypatch):
    tmp, sheet, gtf = small_cohort
    calls = _count_gtf_parses(monkeypatch)
    argv = ["run", str(sheet), "--out", str(tmp / "run1"), "--gtf", str(gtf), "--gene", "SMALL"]
    assert main(argv) == 0
    assert calls == [str(gtf)]  # 4 samples, 2 pairs: one parse (before: 3 per sample)
    # A second run over the scan directories written by the first parses nothing.
    calls.clear()
    rows = ["patient\tsample\ttimepoint\tpath"] + [
        f"P1\t{s}\t{t}\t{tmp / 'run1' / 'scans'}"
        for s, t in (("P1_base", "baseline"), ("P1_rel", "relapse"))
    ]
    sheet2 = tmp / "from_scans.tsv"
    sheet2.write_text("\n".join(rows) + "\n")
    assert main(["run", str(sheet2), "--out", str(tmp / "run2")]) == 0
    assert calls == []


def test_compare_of_two_bams_parses_the_gtf_once(small_cohort, monkeypatch):
    tmp, _, gtf = small_cohort
    calls = _count_gtf_parses(monkeypatch)
    base, rel = tmp / "P2_base" / "P2_base.bam", tmp / "P2_rel" / "P2_rel.bam"
    argv = ["compare", "--baseline", str(base), "--relapse", str(rel), "--gtf", str(gtf)]
    assert main([*argv, "--gene", "SMALL", "--out", str(tmp / "cmp_once")]) == 0
    assert calls == [str(gtf)]


def test_run_in_worker_processes_never_reads_the_gtf_there(small_cohort, monkeypatch):
    """With -j 2 the scans run in spawned processes, out of reach of a patch: the GTF is moved
    away right after the parent's parse, so a worker that parsed it again would fail."""
    tmp, sheet, gtf = small_cohort
    hidden = tmp / "gene.gtf.hidden"
    real = cohort.load_target

    def parse_then_hide(params):
        model = real(params)
        gtf.rename(hidden)
        return model

    monkeypatch.setattr(cohort, "load_target", parse_then_hide)
    try:
        argv = ["run", str(sheet), "--out", str(tmp / "run_j2"), "--gtf", str(gtf)]
        assert main([*argv, "--gene", "SMALL", "--jobs", "2"]) == 0
        assert not gtf.exists()
    finally:
        if hidden.exists():
            hidden.rename(gtf)
