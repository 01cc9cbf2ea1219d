"""HTML reports: a simulated Δex2 pair renders a self-contained page with the verdict, three
well-formed SVG figures and the highlighted skipping arc; a headless chromium loads it."""

from __future__ import annotations

import dataclasses
import html as html_lib
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl
import pytest

from cd22scan import scan
from cd22scan.cohort.run import cohort_summary
from cd22scan.comparison.pair import compare_samples
from cd22scan.demo.simulate import simulate, small_gene, write_gtf
from cd22scan.outputs.files import write_tsv
from cd22scan.outputs.html import (
    render_cohort_report,
    render_pair_report,
    write_cohort_report,
    write_pair_report,
)

GENE = small_gene("+")
FIGURES = ("fig-sashimi", "fig-exon-coverage", "fig-vaf")
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def _scan(tmp: Path, sample: str, seed: int, **kwargs):
    out = tmp / sample
    sim = simulate(out, seed=seed, gene=GENE, sample=sample, n_fragments=1500, **kwargs)
    gtf = write_gtf(GENE, out / "gene.gtf")
    return scan(str(sim.bam), gtf=str(gtf), gene=GENE.name, reference=str(sim.reference))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    baseline = _scan(tmp, "BASE", seed=21, isoforms={"canonical": 1.0})
    relapse = _scan(tmp, "REL", seed=25, isoforms={"canonical": 0.6, "skip:2": 0.4})
    return compare_samples(baseline, relapse), baseline, relapse


def _svgs(page: str) -> dict[str, ET.Element]:
    found = {}
    for text in re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL):
        element = ET.fromstring(text)  # raises on malformed XML
        found[element.get("id")] = element
    return found


@pytest.mark.slow
def test_pair_report_has_verdict_figures_and_skip_arc(pair):
    comparison, baseline, relapse = pair
    verdict = comparison.verdict.row(0, named=True)
    assert verdict["aberrant_splicing"]
    page = render_pair_report(comparison, baseline, relapse)

    # the verdict comes first, before any figure, with its evidence text (escaped)
    block = re.search(r'<section id="verdict" class="verdict escape".*?</section>', page, re.S)
    assert block, "verdict block missing or not coloured as escape"
    assert "Escape: aberrant splicing" in block.group(0)
    assert verdict["verdict"] in block.group(0)
    assert "Δex2" in verdict["verdict"]
    assert page.index('id="verdict"') < min(page.index(f'id="{f}"') for f in FIGURES)

    svgs = _svgs(page)
    assert set(FIGURES) <= set(svgs)
    for fig in FIGURES:
        assert svgs[fig].find("title") is not None and svgs[fig].find("title").text

    # the skipping junction is a red arc labelled Δex2 with its read count, in the relapse only
    sashimi = svgs["fig-sashimi"]
    skip_arcs = [p for p in sashimi.iter("path") if "skip" in (p.get("class") or "")]
    assert len(skip_arcs) == 1
    assert skip_arcs[0].get("stroke") == "#d62728"
    reads = relapse.junctions.filter(pl.col("skipped_exons") == "2")["reads"].item()
    labels = [t.text for t in sashimi.iter("text") if "skip" in (t.get("class") or "")]
    assert labels == [f"Δex2 {reads}"]
    assert len([r for r in sashimi.iter("rect") if r.get("class") == "exon"]) == 12  # 2 panels
    assert len(list(sashimi.iter("polygon"))) == 2  # one coverage area per sample

    # per-exon bars: 6 exons x 2 samples; no variants in this pair
    bars = [r for r in svgs["fig-exon-coverage"].iter("rect") if "bar" in (r.get("class") or "")]
    assert len(bars) == 12
    assert "no variants" in "".join(svgs["fig-vaf"].itertext())

    # events table: the called row first
    rows = re.findall(r"<tr( class=\"called\")?><td>(yes)?</td><td>([a-z_]+)</td>", page)
    assert rows[0] == (' class="called"', "yes", "exon_skipping")
    assert all(not r[0] for r in rows[1:])

    # self-contained: no scripts, no external resources
    assert not EXTERNAL.search(page)
    assert "<script" not in page and "<link" not in page


@pytest.mark.slow
def test_user_text_is_escaped(pair):
    comparison, baseline, relapse = pair
    evil = "<b>x</b>&'\""
    verdict = comparison.verdict.with_columns(pl.lit(evil).alias("verdict"))
    events = comparison.events.with_columns(
        pl.when(pl.col("called")).then(pl.lit(evil)).otherwise(pl.col("feature")).alias("feature")
    )
    hacked = type(comparison)(
        pair="P<1>", baseline="B&", relapse="R", events=events, verdict=verdict
    )
    page = render_pair_report(hacked, baseline, relapse)
    assert evil not in page
    assert "&lt;b&gt;x&lt;/b&gt;&amp;&#x27;&quot;" in page
    assert "P&lt;1&gt;" in page
    _svgs(page)


@pytest.mark.slow
def test_vaf_figure_draws_tested_mutations(pair):
    comparison, baseline, relapse = pair
    row = {c: None for c in comparison.events.columns}
    row.update(
        event_type="mutation", feature="c.151T>G", hgvs_p="p.(Tyr51Asp)", baseline_value=0.0,
        relapse_value=0.34, effect=0.34, baseline_reads=0, relapse_reads=120, called=True,
        q_value=1e-9, p_value=1e-10, consequence="missense_variant", direction="up",
    )  # fmt: skip
    events = pl.concat([comparison.events, pl.DataFrame([row], schema=comparison.events.schema)])
    hacked = type(comparison)(
        pair=comparison.pair,
        baseline=comparison.baseline,
        relapse=comparison.relapse,
        events=events,
        verdict=comparison.verdict,
    )
    vaf = _svgs(render_pair_report(hacked, baseline, relapse))["fig-vaf"]
    dots = [c for c in vaf.iter("circle") if "vaf" in (c.get("class") or "")]
    assert len(dots) == 2
    assert "c.151T>G p.(Tyr51Asp)" in "".join(vaf.itertext())


@pytest.mark.slow
def test_write_pair_report_is_atomic_and_utf8(pair, tmp_path):
    comparison, baseline, relapse = pair
    path = write_pair_report(comparison, baseline, relapse, tmp_path / "sub" / "pair.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["pair.html"]  # no temporary left


@pytest.mark.slow
def test_cohort_report(pair, tmp_path):
    comparison, _, _ = pair
    out = tmp_path / "cohort"
    (out / "pairs").mkdir(parents=True)
    tagged = comparison.verdict.select(pl.lit("P1").alias("patient"), pl.all())
    calm = tagged.with_columns(
        pl.lit("P2").alias("patient"),
        pl.lit("B2_vs_R2").alias("pair"),
        pl.lit(False).alias("aberrant_splicing"),
        pl.lit(0).cast(pl.Int64).alias("n_called"),
        pl.lit("no evidence of antigen loss, mutation or aberrant splicing").alias("verdict"),
    )
    verdicts = pl.concat([tagged, calm])
    events = comparison.events.select(pl.lit("P1").alias("patient"), pl.all())
    write_tsv(verdicts, out / "cohort_verdicts.tsv")
    write_tsv(events, out / "cohort_events.tsv")
    write_tsv(cohort_summary(verdicts, ["P1", "P2"]), out / "cohort_summary.tsv")
    (out / "pairs" / f"{comparison.pair}.report.html").write_text("<html></html>")

    page = render_cohort_report(out)
    assert "aberrant splicing 1 of 2" in page
    assert page.index("aberrant splicing 1 of 2") < page.index('id="fig-mechanisms"')
    assert f'href="pairs/{comparison.pair}.report.html"' in page
    assert 'href="pairs/B2_vs_R2.report.html"' not in page  # no report written for P2
    assert "Δex2" in page  # called events table
    assert "fig-mechanisms" in _svgs(page)
    assert not EXTERNAL.search(page)
    written = write_cohort_report(out)
    assert written == out / "report.html" and written.read_text(encoding="utf-8") == page


def test_cohort_report_of_empty_run(tmp_path):
    (tmp_path / "cohort_verdicts.tsv").write_text("")
    page = render_cohort_report(tmp_path)
    assert "No baseline–relapse pairs were compared" in page
    _svgs(page)


@pytest.mark.external
@pytest.mark.slow
def test_chromium_renders_the_pair_report(pair, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not on PATH (apt-get install chromium): headless check not run")
    comparison, baseline, relapse = pair
    page = write_pair_report(comparison, baseline, relapse, tmp_path / "report.html")
    url = page.resolve().as_uri()
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    env = {**os.environ, "HOME": str(tmp_path)}  # chromium writes its profile under HOME
    dom = subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, env=env
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="verdict"' in dom.stdout
    assert "Escape: aberrant splicing" in dom.stdout
    for fig in FIGURES:
        assert f'id="{fig}"' in dom.stdout
    png = tmp_path / "report.png"
    shot = subprocess.run(
        [*flags, f"--screenshot={png}", "--window-size=1200,2000", url],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    if os.environ.get("CD22SCAN_KEEP_ARTIFACTS"):
        artifacts = Path(__file__).parent / "artifacts"
        artifacts.mkdir(exist_ok=True)
        shutil.copy(png, artifacts / "report.png")


# --- layout in a real browser: label boxes, axes, no sideways scroll ---------------------------

MEASURE = """<script>
(() => {
  const box = e => { const r = e.getBoundingClientRect();
                     return [r.left, r.top, r.right, r.bottom]; };
  const texts = sel => [...document.querySelectorAll(sel)].map(e => ({
      text: e.textContent, box: box(e), svg: e.ownerSVGElement && e.ownerSVGElement.id }));
  const html = document.documentElement;
  const out = {
    scrollWidth: html.scrollWidth, clientWidth: html.clientWidth,
    labels: texts("svg text.arc-label"),
    depth: texts("svg text.depth-label"),
    genomic: texts("svg text.genomic-label"),
    genomicTicks: document.querySelectorAll("svg line.genomic-tick").length,
    svgText: texts("svg text"),
    svgs: [...document.querySelectorAll("svg")].map(e => ({id: e.id, box: box(e)})),
    tables: [...document.querySelectorAll(".table-wrap")].map(e => ({
      box: box(e), parentRight: e.parentElement.getBoundingClientRect().right })),
    text: document.body.innerText,
  };
  const pre = document.createElement("pre");
  pre.id = "measure";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def _chromium_measure(html_path: Path, width: int, tmp: Path, screenshot: Path | None = None):
    """Load a copy of the page (with a measuring script added at the end of its body) in headless
    chromium at ``width`` px and return what the script measured in the DOM."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not on PATH (apt-get install chromium): headless check not run")
    page = html_path.read_text(encoding="utf-8")
    probe = html_path.with_name(f".probe.{width}.{html_path.name}")
    probe.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    flags.append(f"--window-size={width},2400")
    env = {**os.environ, "HOME": str(tmp)}
    dom = subprocess.run(
        [*flags, "--dump-dom", probe.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    if screenshot is not None:
        shot = subprocess.run(
            [*flags, f"--screenshot={screenshot}", html_path.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
        )
        assert shot.returncode == 0, shot.stderr[-2000:]
    probe.unlink()
    found = re.search(r'<pre id="measure">(.*?)</pre>', dom.stdout, flags=re.DOTALL)
    assert found, dom.stdout[-2000:]
    return json.loads(html_lib.unescape(found.group(1)))


def _overlaps(a, b) -> bool:
    return a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5


def _crowded(result):
    """The issue's case: several junctions skipping exon 2 (alternative donors and acceptors)
    and novel junctions, all with their middles within a few pixels of each other."""
    extra = []
    for i, (d_start, d_end, reads) in enumerate(
        [(0, 0, 435), (6, 0, 181), (0, -9, 77), (12, -4, 40), (3, -15, 12), (20, 0, 9)]
    ):
        extra.append(
            {
                "sample": result.sample,
                "contig": "chrT",
                "start": 1622 + d_start,  # after exon 1 (1500-1620, 1-based: 1501-1621)
                "end": 2250 + d_end,  # before exon 3
                "strand": "+",
                "reads": reads,
                "max_anchor": 30,
                "annotated": False,
                "donor_exon": 1 if d_start == 0 else None,
                "acceptor_exon": 3 if d_end == 0 else None,
                "skipped_exons": "2",
                "strand_source": "XS",
            }
        )
        extra.append(
            {
                **extra[-1],
                "start": 2000 + 7 * i,
                "end": 2300 + 5 * i,
                "reads": 3 + i,
                "skipped_exons": None,
                "donor_exon": None,
                "acceptor_exon": None,
            }
        )
    # A junction wholly outside the gene (another gene in the window): no arc, no label.
    extra.append({**extra[-1], "start": 100, "end": 400, "reads": 777})
    frame = pl.DataFrame(extra, schema=result.junctions.schema, orient="row")
    return dataclasses.replace(result, junctions=pl.concat([result.junctions, frame]))


@pytest.mark.parametrize("width", [1000, 1600])
def test_chromium_layout_labels_axes_and_no_sideways_scroll(pair, tmp_path, width):
    comparison, baseline, relapse = pair
    crowded = _crowded(relapse)
    page = write_pair_report(comparison, baseline, crowded, tmp_path / "pair.html")
    m = _chromium_measure(page, width, tmp_path)
    assert m["clientWidth"] == width or m["clientWidth"] > width - 20  # the viewport we asked
    assert m["scrollWidth"] <= m["clientWidth"], (m["scrollWidth"], m["clientWidth"])
    labels = m["labels"]
    assert sum("Δex2" in lab["text"] for lab in labels) >= 6  # the crowded skipping arcs
    assert not [lab for lab in labels if "777" in lab["text"]]  # outside the gene: not drawn
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            assert not _overlaps(a["box"], b["box"]), (a, b)
    # Every text inside the figures stays inside its figure (nothing clipped at the left edge).
    svgs = {s["id"]: s["box"] for s in m["svgs"]}
    for t in m["svgText"]:
        left, _, right, _ = svgs[t["svg"]]
        assert left - 0.5 <= t["box"][0] and t["box"][2] <= right + 0.5, t
    # Depth axes: 0 and several round values per panel, none overlapping another text.
    assert len(m["depth"]) >= 2 * 3
    depth_values = {t["text"] for t in m["depth"]}
    assert "0" in depth_values and len(depth_values) >= 3
    others = [t for t in m["svgText"] if t["svg"] == "fig-sashimi"]
    for t in m["depth"] + m["genomic"]:
        for o in others:
            if o["box"] != t["box"]:
                assert not _overlaps(t["box"], o["box"]), (t, o)
    # A genomic coordinate axis: tick marks and at least three labelled positions, increasing.
    assert m["genomicTicks"] >= 3 and len(m["genomic"]) >= 3
    positions = [int(t["text"].replace(",", "")) for t in m["genomic"]]
    assert positions == sorted(positions) and positions[0] >= 1500 and positions[-1] <= 4200
    # Tables wrap or scroll inside their own box.
    for table in m["tables"]:
        assert table["box"][2] <= table["parentRight"] + 0.5


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0028, "2.8e-03"), (0.049, "0.049"), (0.0501, "0.0501"), (0.05, "0.05"), (0.0099, "9.9e-03"),
     (1.0, "1"), (0.5, "0.5"), (3.2e-12, "3.2e-12"), (0.0, "0"), (None, "")],
)  # fmt: skip
def test_p_and_q_are_scientific_below_001_and_never_round_across_005(value, text):
    from cd22scan.outputs.html import _fmt_p

    assert _fmt_p(value) == text


def test_events_table_prints_q_in_scientific_notation(pair):
    comparison, baseline, relapse = pair
    events = comparison.events.with_columns(
        pl.when(pl.int_range(pl.len()) == 0).then(0.0028).otherwise(0.049).alias("q_value")
    )
    page = render_pair_report(dataclasses.replace(comparison, events=events), baseline, relapse)
    cells = re.findall(r'<td class="num">([^<]*)</td></tr>', page)  # q is the last column
    assert sorted(cells) == sorted(["2.8e-03"] + ["0.049"] * (events.height - 1))


def test_cohort_report_names_gene_transcript_and_versions(pair, tmp_path):
    import pysam
    import pysam.version

    from cd22scan.outputs.scandir import write_scan

    comparison, baseline, _ = pair
    out = tmp_path / "cohort"
    write_scan(baseline, out / "scans")
    write_tsv(comparison.verdict.select(pl.lit("P1").alias("patient"), pl.all()),
              out / "cohort_verdicts.tsv")  # fmt: skip
    page = render_cohort_report(out)
    target = re.search(r'<p class="meta" id="target">(.*?)</p>', page).group(1)
    assert f"gene {GENE.name}" in target and f"transcript {baseline.model.transcript}" in target
    tool = re.search(r'<p class="meta" id="tool">(.*?)</p>', page).group(1)
    assert tool.startswith("cd22scan ") and f"pysam {pysam.__version__}" in tool
    assert f"htslib {pysam.version.__htslib_version__}" in tool
