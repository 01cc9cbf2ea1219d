"""Command line: argument parsing and exit codes only; the work is done by the API.

Exit codes: 0 success; 1 unexpected error (a bug: traceback printed; for a bug in the
counting core, ``_core.CoreBug``, one line and the traceback with -v); 2 bad input data;
3 annotation/build problem; 4 output not writable; 64 bad usage; 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from cd22scan import __version__, _core
from cd22scan.errors import Cd22scanError, UsageError
from cd22scan.sample.flags import DEFAULT_EXCLUDE_FLAGS, FLAG_DUPLICATE

log = logging.getLogger("cd22scan")


class _VersionAction(argparse.Action):
    """``--version``: cd22scan, pysam and htslib versions (pysam is imported only here)."""

    def __init__(self, option_strings: Sequence[str], version: str, dest: str = "version",
                 **kwargs: object) -> None:  # fmt: skip
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs=0, help="print versions")

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # type: ignore[override]
        from cd22scan.console import version_text

        print(version_text())
        parser.exit()


def _flag_mask(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a flag mask such as {DEFAULT_EXCLUDE_FLAGS:#x} or {DEFAULT_EXCLUDE_FLAGS}, "
            f"got {text!r}"
        ) from None


def _add_scan_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("target gene")
    g.add_argument(
        "--gene",
        default="CD22",
        help="one gene (built-in: see --targets; any gene with --gtf) [CD22]",
    )
    g.add_argument(
        "--targets",
        metavar="LIST",
        nargs="?",
        const="b-all",
        help="several genes in one pass over the file, e.g. CD19,CD22 (--targets alone: the "
        "B-ALL targets CD19,CD22); 'b-all' = CD19,CD22, "
        "'all' = the six CAR targets (CD19, CD22, MS4A1/CD20, TNFRSF17/BCMA, GPRC5D, CD7), "
        "'panel' = targets and lineage markers; with --gtf, genes of the GTF. Writes one "
        "scan folder per gene (OUT/GENE/) and OUT/NAME.panel.json",
    )
    g.add_argument(
        "--build",
        default="auto",
        choices=["auto", "GRCh38", "GRCh37"],
        help="genome build of the built-in model; auto = from the BAM header (default)",
    )
    g.add_argument(
        "--gtf",
        "--annotation",
        dest="gtf",
        metavar="FILE",
        help="GTF or GFF3 (plain or .gz; told by content) to take the gene model from",
    )
    g.add_argument(
        "--region",
        metavar="CHR:START-END",
        help="scan this window (1-based inclusive, as samtools) instead of a gene: one "
        "pseudo-exon over it, named CHR:START-END; --gene/--gtf/--transcript are not used",
    )
    g.add_argument(
        "--transcript",
        help="transcript id in the GTF (default: MANE Select > Ensembl canonical > longest CDS)",
    )
    r = p.add_argument_group("reads")
    r.add_argument("--reference", help="reference FASTA (needed for CRAM; adds ref bases)")
    r.add_argument("--min-mapq", type=int, default=20, help="minimum mapping quality [20]")
    r.add_argument("--min-baseq", type=int, default=13, help="minimum base quality [13]")
    r.add_argument(
        "--min-anchor",
        type=int,
        default=8,
        help="minimum aligned bases each side of a junction [8]",
    )
    r.add_argument(
        "--exclude-flags",
        type=_flag_mask,
        default=DEFAULT_EXCLUDE_FLAGS,
        help="skip records with any of these FLAG bits (samtools --ff) "
        f"[{DEFAULT_EXCLUDE_FLAGS:#x}: unmapped, "
        "secondary, QC-fail, duplicate]",
    )
    r.add_argument(
        "--keep-duplicates",
        action="store_true",
        help=f"count duplicate-flagged reads (clears {FLAG_DUPLICATE:#x})",
    )
    r.add_argument(
        "--no-overlap-dedup",
        action="store_true",
        help="count bases seen by both mates of a pair twice (samtools mpileup -x)",
    )
    r.add_argument(
        "--strand",
        default="auto",
        choices=["auto", "unstranded", "fr", "rf"],
        help="library strandedness: fr = read 1 on the transcript strand; rf = dUTP [auto]",
    )
    r.add_argument(
        "--stream", action="store_true", help="read the whole file even if it has an index"
    )
    r.add_argument("--padding", type=int, default=500, help="bases read beyond the gene [500]")
    r.add_argument(
        "--long-reads",
        action="store_true",
        help="long reads (ONT, PacBio): also assign each read to an isoform (full-length, Δex2, "
        "retained intron, novel, fragment) and write the isoform, event and co-occurrence "
        "tables; compare then tests event fractions per molecule (needs an index)",
    )
    r.add_argument(
        "--junction-tolerance",
        type=int,
        default=12,
        metavar="NT",
        help="long reads: a junction within NT of an exon boundary is that boundary [12]",
    )
    r.add_argument(
        "-@",
        "--threads",
        type=int,
        default=1,
        help="htslib decompression threads, as samtools -@ [1]",
    )


def _params_from_args(args: argparse.Namespace):
    from cd22scan.sample.scan import ScanParams

    flags = args.exclude_flags
    if args.keep_duplicates:
        flags &= ~FLAG_DUPLICATE
    return ScanParams(
        gene=args.gene,
        build=args.build,
        gtf=args.gtf,
        transcript=args.transcript,
        reference=args.reference,
        sample=getattr(args, "sample", None),
        min_mapq=args.min_mapq,
        min_baseq=args.min_baseq,
        min_anchor=args.min_anchor,
        exclude_flags=flags,
        dedup_overlaps=not args.no_overlap_dedup,
        strand=args.strand,
        stream=args.stream,
        padding=args.padding,
        threads=args.threads,
        region=args.region,
        long_reads=args.long_reads,
        junction_tolerance=args.junction_tolerance,
    )


SCAN_TABLES = ("exons", "junctions", "introns", "indels")


def _cmd_scan(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cd22scan.outputs.files import check_out_dir
    from cd22scan.outputs.scandir import write_scan
    from cd22scan.sample.scan import scan

    to_stdout = args.out == "-"
    if to_stdout and not args.table:
        raise UsageError(
            "-o - (standard output) needs --table NAME: scan writes several files, and one table "
            f"({', '.join(SCAN_TABLES)}) goes to standard output"
        )
    if args.table and not to_stdout:
        raise UsageError("--table NAME writes one table to standard output: use it with -o -")
    if not to_stdout:
        check_out_dir(args.out)  # before the scan, which can take a while
    if args.targets:
        return _scan_panel_cli(args, to_stdout)
    result = scan(args.bam, _params_from_args(args))
    _note_no_reference([result])
    if to_stdout:
        _table_to_stdout(result, args.table)
        return 0
    existing = Path(args.out) / f"{result.sample}.summary.json"
    if args.bam == "-" and args.sample is None and existing.is_file():
        raise UsageError(
            f"{args.out}: already holds a scan of sample {result.sample!r} ({existing.name}); "
            "name this scan of standard input with --sample NAME"
        )
    written = write_scan(result, args.out)
    s = result.summary
    log.info(
        "%s: %s %s on %s (%s): %d fragments on the gene; outputs in %s",
        result.sample,
        s["gene"],
        s["transcript"],
        s["contig"],
        s["build"],
        s["fragments_on_gene"],
        written["summary"].parent,
    )
    return 0


def _targets(args: argparse.Namespace) -> tuple[str, ...]:
    """The genes of --targets: built-in names and sets, or (with --gtf) names as given."""
    from cd22scan.target.panel import resolve_targets

    if args.region:
        raise UsageError("--targets and --region exclude each other: --region scans one window")
    if args.transcript:
        raise UsageError("--transcript picks the transcript of one --gene, not of --targets")
    if args.gtf:
        genes = tuple(dict.fromkeys(g.strip() for g in args.targets.split(",") if g.strip()))
        if not genes:
            raise UsageError(f"--targets {args.targets!r} names no gene")
        return genes
    return resolve_targets(args.targets)


def _scan_panel_cli(args: argparse.Namespace, to_stdout: bool) -> int:
    from pathlib import Path

    from cd22scan.outputs.scandir import PANEL_SUFFIX, write_panel
    from cd22scan.sample.panel import scan_panel

    if to_stdout:
        raise UsageError("--targets writes one folder per gene: -o - (one table) takes --gene")
    genes = _targets(args)
    panel = scan_panel(args.bam, genes, _params_from_args(args))
    if not panel.results:
        raise UsageError(
            f"{args.bam}: none of the targets ({', '.join(genes)}) has its contig in the header"
        )
    _note_no_reference(list(panel.results.values()))
    existing = Path(args.out) / f"{panel.sample}{PANEL_SUFFIX}"
    if args.bam == "-" and args.sample is None and existing.is_file():
        raise UsageError(
            f"{args.out}: already holds a panel scan of sample {panel.sample!r}; name this scan "
            "of standard input with --sample NAME"
        )
    written = write_panel(panel, args.out)
    for gene, result in panel.results.items():
        log.info("%s: %s %s on %s: %d fragments on the gene", panel.sample, gene,
                 result.summary["transcript"], result.summary["contig"],
                 result.summary["fragments_on_gene"])  # fmt: skip
    log.info("%s: %d genes (%s read); outputs in %s", panel.sample, len(panel.results),
             panel.read_mode, written.parent)  # fmt: skip
    return 0


def _note_no_reference(results) -> None:
    """Say once per command that a scan without --reference has no coding consequences."""
    from cd22scan.outputs.vcf import NO_REFERENCE_NOTE

    if any(not (r.summary.get("parameters") or {}).get("reference") for r in results):
        log.info("%s", NO_REFERENCE_NOTE)


def _table_to_stdout(result, table: str) -> None:
    """One scan table as TSV on standard output, as the folder's NAME.TABLE.tsv would hold it."""
    from cd22scan.outputs.formats import junction_names

    frame = getattr(result, table)
    if table == "junctions":
        frame = junction_names(frame)
    sys.stdout.write(frame.write_csv(separator="\t", null_value=""))
    sys.stdout.flush()


def _add_threshold_options(p: argparse.ArgumentParser) -> None:
    from cd22scan.comparison.pair import THRESHOLD_OPTIONS, Thresholds

    d = Thresholds()
    g = p.add_argument_group("calling thresholds (all must hold for an event to be called)")
    for option, name, kind, text in THRESHOLD_OPTIONS:
        default = getattr(d, name)
        g.add_argument(option, dest=name, type=kind, default=default, help=f"{text} [{default}]")


def _add_car_option(p: argparse.ArgumentParser, per_patient: bool = False) -> None:
    where = (
        "; a sample sheet's optional `car` column sets it per patient and wins over this"
        if per_patient
        else ""
    )
    p.add_argument(
        "--car",
        action="append",
        default=[],
        metavar="GENE:BINDER",
        help="the CAR binder of a target, e.g. CD22:m971 or CD19:FMC63 (comma-separated or "
        "repeated): every escape event is classed as no antigen, epitope lost, epitope retained "
        f"or unknown for that binder (data/binders.tsv, docs/panel.md){where}",
    )


def _cars(args: argparse.Namespace) -> dict:
    from cd22scan.target.binders import parse_cars

    return parse_cars(getattr(args, "car", None) or [])


def thresholds_from_namespace(args: argparse.Namespace):
    from cd22scan.comparison.pair import THRESHOLD_OPTIONS, Thresholds

    return Thresholds.from_options(
        {name: getattr(args, name) for _, name, _, _ in THRESHOLD_OPTIONS}
    )


def _load_or_scan(
    path: str,
    args: argparse.Namespace,
    sample: str | None = None,
    role: str = "",
    model=None,
):
    """A compare input: a scan `scan` or `run` wrote — its folder (``OUT`` or ``OUT/scans``, with
    ``sample`` when it holds several), ``FOLDER/NAME`` (the sample's file prefix) or
    ``FOLDER/NAME.summary.json`` — or a BAM/CRAM/SAM, scanned first (named ``sample`` if given)."""
    import dataclasses
    from pathlib import Path

    from cd22scan.outputs.scandir import find_samples, load_scan
    from cd22scan.sample.scan import scan

    given = Path(path)
    option = f"--{role}-sample" if role else "--sample"
    suffix = ".summary.json"
    if given.name.endswith(suffix) and given.is_file():
        name = given.name[: -len(suffix)]
        if sample is not None and sample != name:
            raise UsageError(f"{path}: is the scan of {name!r}, but {option} is {sample!r}")
        return load_scan(given.parent, name)
    if given.is_dir():
        samples = find_samples(given)
        if sample is None and len(samples) > 1:
            raise UsageError(
                f"{path}: holds the scans of {len(samples)} samples ({', '.join(samples)}); "
                f"name one with {option} NAME, or give {path.rstrip('/')}/NAME"
            )
        return load_scan(given, sample)
    prefix_summary = given.parent / f"{given.name}{suffix}"
    if not given.exists() and prefix_summary.is_file():
        if sample is not None and sample != given.name:
            raise UsageError(f"{path}: is the scan of {given.name!r}, but {option} is {sample!r}")
        return load_scan(given.parent, given.name)
    params = _params_from_args(args)
    if sample is not None:
        params = dataclasses.replace(params, sample=sample)
    return scan(path, params, model=model)


def _is_scan(path: str) -> bool:
    """Whether a compare input names a scan (folder, FOLDER/NAME, NAME.summary.json)."""
    from pathlib import Path

    given = Path(path)
    if given.is_dir() or (given.name.endswith(".summary.json") and given.is_file()):
        return True
    return not given.exists() and (given.parent / f"{given.name}.summary.json").is_file()


def _out_dir(args: argparse.Namespace) -> str:
    """--out of a command that writes a folder of files: ``-`` (standard output) is refused."""
    if args.out == "-":
        raise UsageError(
            f"{args.command} writes several files: -o - (standard output) is only for one table "
            "(cd22scan scan BAM --table junctions -o -); give a folder"
        )
    return args.out


def _cmd_compare(args: argparse.Namespace) -> int:

    from cd22scan.comparison.pair import compare_samples
    from cd22scan.outputs.files import prepare_out_dir, write_table
    from cd22scan.outputs.scandir import write_scan
    from cd22scan.sample.scan import load_target

    out = prepare_out_dir(_out_dir(args))
    given = (args.baseline, args.relapse)
    if args.targets or any(_is_panel(p) for p in given):
        return _compare_panels(args, out)
    # One parse of the GTF for both BAMs; scans carry their own model.
    model = None if all(_is_scan(p) for p in given) else load_target(_params_from_args(args))
    baseline = _load_or_scan(args.baseline, args, args.baseline_sample, "baseline", model)
    relapse = _load_or_scan(args.relapse, args, args.relapse_sample, "relapse", model)
    _note_no_reference([baseline, relapse])
    if baseline.sample == relapse.sample:
        from cd22scan.errors import UsageError

        raise UsageError(f"baseline and relapse have the same sample name {baseline.sample!r}")
    for result, given in ((baseline, args.baseline), (relapse, args.relapse)):
        if not _is_scan(given):
            write_scan(result, out / "scans")
    cars = _cars(args)
    _warn_unused_cars(cars, [baseline.model.gene])
    thresholds = thresholds_from_namespace(args)
    if args.dispersion_from:
        from cd22scan.cohort.run import read_dispersion

        thresholds = read_dispersion(args.dispersion_from, thresholds, baseline.model.gene)
    comparison = compare_samples(
        baseline, relapse, thresholds=thresholds, binder=cars.get(baseline.model.gene)
    )
    write_table(comparison.events, out / "events.tsv")
    write_table(comparison.verdict, out / "verdict.tsv")
    from cd22scan.outputs.html import write_pair_report
    from cd22scan.outputs.vcf import write_pair_vcf

    write_pair_vcf(comparison, baseline, out / "variants.vcf.gz")
    report = write_pair_report(comparison, baseline, relapse, out / "report.html")
    log.info("report: %s", report)
    log.info("%s: %s", comparison.pair, comparison.verdict["verdict"][0])
    return 0


def _warn_unused_cars(cars: dict, genes) -> None:
    for gene, binder in cars.items():
        if gene not in genes:
            log.warning(
                "--car %s:%s: %s is not compared here (genes: %s); the binder is not used",
                gene,
                binder.name,
                gene,
                ", ".join(genes),
            )


def _is_panel(path: str) -> bool:
    from pathlib import Path

    from cd22scan.outputs.scandir import find_panels

    return Path(path).is_dir() and bool(find_panels(path))


def _load_or_scan_panel(path: str, args: argparse.Namespace, sample: str | None, genes):
    import dataclasses

    from cd22scan.outputs.scandir import load_panel
    from cd22scan.sample.panel import scan_panel

    if _is_panel(path):
        return load_panel(path, sample), True
    if _is_scan(path):
        raise UsageError(
            f"{path}: is a one-gene scan; compare it with another one-gene scan (no --targets), "
            "or scan both samples with --targets"
        )
    if genes is None:
        raise UsageError(f"{path}: a BAM compared with a panel scan needs --targets LIST")
    params = _params_from_args(args)
    if sample is not None:
        params = dataclasses.replace(params, sample=sample)
    return scan_panel(path, genes, params), False


def _compare_panels(args: argparse.Namespace, out) -> int:
    """compare on panel scans (or BAMs with --targets): every gene present in both samples,
    each into OUT/GENE/ (events, verdict, VCF, report) and all genes in OUT/events.tsv and
    OUT/verdict.tsv (their `gene` column tells them apart)."""
    import polars as pl

    from cd22scan.comparison.pair import compare_samples
    from cd22scan.outputs.files import prepare_out_dir, write_table
    from cd22scan.outputs.html import write_pair_report
    from cd22scan.outputs.scandir import write_panel
    from cd22scan.outputs.vcf import write_pair_vcf

    genes = _targets(args) if args.targets else None
    baseline, b_loaded = _load_or_scan_panel(args.baseline, args, args.baseline_sample, genes)
    relapse, r_loaded = _load_or_scan_panel(args.relapse, args, args.relapse_sample, genes)
    if baseline.sample == relapse.sample:
        raise UsageError(f"baseline and relapse have the same sample name {baseline.sample!r}")
    for panel, loaded in ((baseline, b_loaded), (relapse, r_loaded)):
        if not loaded:
            write_panel(panel, out / "scans")
    wanted = genes or tuple(baseline.results)
    common = [g for g in wanted if g in baseline.results and g in relapse.results]
    for gene in wanted:
        if gene not in common:
            missing = [p.sample for p in (baseline, relapse) if gene not in p.results]
            log.warning("%s: not compared: no scan of it in %s", gene, " and ".join(missing))
    if not common:
        raise UsageError(f"{baseline.sample} and {relapse.sample} have no scanned gene in common")
    thresholds = thresholds_from_namespace(args)
    cars = _cars(args)
    _warn_unused_cars(cars, common)
    events, verdicts = [], []
    for gene in common:
        b, r = baseline.results[gene], relapse.results[gene]
        _note_no_reference([b, r])
        used = thresholds
        if args.dispersion_from:
            from cd22scan.cohort.run import read_dispersion

            used = read_dispersion(args.dispersion_from, thresholds, gene)
        comparison = compare_samples(b, r, thresholds=used, binder=cars.get(gene))
        folder = prepare_out_dir(out / gene)
        write_table(comparison.events, folder / "events.tsv")
        write_table(comparison.verdict, folder / "verdict.tsv")
        write_pair_vcf(comparison, b, folder / "variants.vcf.gz")
        write_pair_report(comparison, b, r, folder / "report.html")
        events.append(comparison.events)
        verdicts.append(comparison.verdict)
        log.info("%s %s: %s", comparison.pair, gene, comparison.verdict["verdict"][0])
    write_table(pl.concat(events, how="vertical"), out / "events.tsv")
    write_table(pl.concat(verdicts, how="vertical"), out / "verdict.tsv")
    from cd22scan.comparison.lineage import lineage_frame, lineage_switch

    pair = f"{baseline.sample}_vs_{relapse.sample}"
    lineage = lineage_switch(pair, baseline.results, relapse.results, thresholds)
    lineage.update(baseline=baseline.sample, relapse=relapse.sample)
    write_table(lineage_frame([lineage]), out / "lineage.tsv")
    log.info("%s: %s", pair, lineage["text"])
    log.info("reports: %s/GENE/report.html for %s", out, ", ".join(common))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    if args.targets:
        from cd22scan.cohort.panel_run import run_panel_cohort

        run_panel_cohort(
            args.samplesheet,
            args.out,
            _targets(args),
            _params_from_args(args),
            thresholds=thresholds_from_namespace(args),
            jobs=args.jobs,
            cars=_cars(args),
            calibrate_dispersion=not args.fixed_dispersion,
        )
        log.info("cohort outputs in %s (one folder per gene in pairs/)", args.out)
        return 0
    from cd22scan.cohort.run import run_cohort

    run_cohort(
        args.samplesheet,
        args.out,
        _params_from_args(args),
        thresholds=thresholds_from_namespace(args),
        jobs=args.jobs,
        cars=_cars(args),
        calibrate_dispersion=not args.fixed_dispersion,
    )
    log.info("cohort outputs in %s", args.out)
    return 0


def _cmd_workflow(args: argparse.Namespace) -> int:
    from cd22scan.cohort import workflow as workflow_files

    if args.what == "path":
        print(workflow_files.snakefile_path())
    elif args.what == "dispersion":
        workflow_files.learn_cohort_dispersion(
            args.samplesheet, args.out, args.compare_args, args.fixed_dispersion
        )
    elif args.what == "compare-pair":
        workflow_files.compare_pair(args.samplesheet, args.out, args.pair, args.compare_args)
    else:
        workflow_files.aggregate_cohort(args.samplesheet, args.out, args.compare_args)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from cd22scan.demo.run import run_demo

    path, panel = run_demo(args.out, seed=args.seed)
    print(f"cd22scan demo: cohort report at {path / 'report.html'} (tables in {path})")
    print(f"cd22scan demo: panel cohort (CD19, CD22, lineage markers; CAR per patient) at "
          f"{panel / 'report.html'} (tables in {panel})")  # fmt: skip
    return 0


def _verbosity_options(parser: argparse.ArgumentParser, default: object) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="only warnings and errors"
    )
    group.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="debug messages"
    )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _verbosity_options(common, argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="cd22scan",
        description="Find how leukemia escapes CAR T cells: antigen loss, mutation and aberrant "
        "splicing of CD22 (or any gene) in BAM/CRAM files.",
    )
    parser.add_argument("--version", action=_VersionAction, version=__version__)
    _verbosity_options(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_scan = sub.add_parser(
        "scan",
        parents=[common],
        help="count one sample over the target gene",
        description="Count exon fragments, junctions, intron retention and per-position bases of "
        "one sample over the target gene; write tables to --out.",
    )
    p_scan.add_argument("bam", help="BAM, CRAM or SAM file; - for standard input")
    p_scan.add_argument(
        "-o",
        "--out",
        required=True,
        help="output directory; - = standard output, for the one table --table names",
    )
    p_scan.add_argument(
        "--table",
        choices=SCAN_TABLES,
        help="with -o -: write this table (TSV, as NAME.TABLE.tsv) to standard output only",
    )
    p_scan.add_argument("--sample", help="sample name (default: read group SM, else file stem)")
    _add_scan_options(p_scan)
    p_scan.set_defaults(func=_cmd_scan)

    p_cmp = sub.add_parser(
        "compare",
        parents=[common],
        help="baseline vs relapse of one patient",
        description="Compare a baseline and a relapse sample (scan directories or BAMs, which "
        "are scanned first); write events.tsv/.parquet, verdict.tsv, variants.vcf.gz and "
        "report.html to --out.",
    )
    scan_help = (
        "a scan: its folder (OUT/scans of run), FOLDER/NAME or NAME.summary.json; or a "
        "BAM/CRAM/SAM, scanned first"
    )
    p_cmp.add_argument("--baseline", required=True, help=scan_help)
    p_cmp.add_argument("--relapse", required=True, help=scan_help)
    p_cmp.add_argument(
        "--baseline-sample",
        metavar="NAME",
        help="the baseline's sample in a folder of several scans (or the name of a scanned BAM)",
    )
    p_cmp.add_argument(
        "--relapse-sample",
        metavar="NAME",
        help="the relapse's sample in a folder of several scans (or the name of a scanned BAM)",
    )
    p_cmp.add_argument("-o", "--out", required=True, help="output directory")
    _add_scan_options(p_cmp)
    _add_threshold_options(p_cmp)
    p_cmp.add_argument(
        "--dispersion-from",
        metavar="FILE",
        help="test with the dispersions a cohort learned (OUT/dispersion.json of run or of the "
        "workflow) instead of --dispersion and the fixed expression dispersion",
    )
    _add_car_option(p_cmp)
    p_cmp.set_defaults(func=_cmd_compare)

    p_run = sub.add_parser(
        "run",
        parents=[common],
        help="a cohort from a sample sheet",
        description="Scan every sample of a sample sheet (patient, sample, timepoint, path "
        "[, reference]), compare each patient's baseline with each relapse, write cohort tables.",
    )
    p_run.add_argument("samplesheet", help="TSV or CSV sample sheet")
    p_run.add_argument("-o", "--out", required=True, help="output directory")
    p_run.add_argument("--jobs", type=int, default=1, help="samples scanned in parallel [1]")
    _add_scan_options(p_run)
    _add_threshold_options(p_run)
    p_run.add_argument(
        "--fixed-dispersion",
        action="store_true",
        help="test every pair with --dispersion and the fixed expression dispersion even when "
        "the cohort has enough baselines (8 per gene) to learn them (comparison/dispersion.py)",
    )
    _add_car_option(p_run, per_patient=True)
    p_run.set_defaults(func=_cmd_run)

    p_wf = sub.add_parser(
        "workflow",
        parents=[common],
        help="the shipped Snakemake workflow: its path, and the steps its rules run",
        description="Print the path of the Snakefile shipped with cd22scan, for "
        'snakemake --snakefile "$(cd22scan workflow path)" --config samplesheet=S out=DIR; '
        "compare-pair and cohort are the workflow's steps (what run does for one pair / for the "
        "cohort, from the scans in OUT).",
    )
    wf_steps = p_wf.add_subparsers(dest="what", metavar="STEP", required=True)
    wf_path = wf_steps.add_parser("path", parents=[common], help="print the Snakefile's location")
    wf_path.set_defaults(func=_cmd_workflow)
    for step, text in (
        (
            "dispersion",
            "learn the tests' dispersions from the cohort's baselines into "
            "OUT/dispersion.json, as run does (the workflow's step, before compare-pair)",
        ),
        ("compare-pair", "compare one pair of the sheet into OUT/pairs (the workflow's step)"),
        ("cohort", "write the cohort files from OUT/pairs and OUT/scans (the workflow's step)"),
    ):
        p_step = wf_steps.add_parser(step, parents=[common], help=text, description=text)
        p_step.add_argument("samplesheet", help="the sample sheet of the workflow")
        p_step.add_argument("out", help="the workflow's output directory")
        if step == "compare-pair":
            p_step.add_argument("pair", help="pair name, BASELINE_vs_RELAPSE")
        if step == "dispersion":
            p_step.add_argument(
                "--fixed-dispersion",
                action="store_true",
                help="keep the stated dispersions (as run --fixed-dispersion)",
            )
        p_step.add_argument(
            "--compare-args",
            default="",
            help="threshold options as for compare, one string: --compare-args='--max-q 0.01'",
        )
        p_step.set_defaults(func=_cmd_workflow)

    p_demo = sub.add_parser(
        "demo",
        parents=[common],
        help="simulate a small example and run cd22scan on it",
        description="Simulate "
        "reads over CD22 (GRCh38) with planted escape events, scan them and write the outputs.",
    )
    p_demo.add_argument(
        "-o", "--out", default="cd22scan_demo", help="output directory [cd22scan_demo]"
    )
    p_demo.add_argument("--seed", type=int, default=22, help="simulation seed [22]")
    p_demo.set_defaults(func=_cmd_demo)
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    from cd22scan.console import setup_logging

    level = logging.INFO
    if args.quiet:
        level = logging.WARNING
    elif args.verbose:
        level = logging.DEBUG
    setup_logging(level)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage; we reserve 2 for bad data
        code = exc.code if isinstance(exc.code, int) else 1
        return 0 if code == 0 else UsageError.exit_code
    _setup_logging(args)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return UsageError.exit_code
    try:
        return args.func(args)
    except Cd22scanError as exc:
        print(f"cd22scan: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except _core.CoreBug as exc:
        return _report_core_bug(exc, verbose=getattr(args, "verbose", False))
    except KeyboardInterrupt:
        print("cd22scan: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


def _report_core_bug(exc: _core.CoreBug, *, verbose: bool) -> int:
    """A bug in the counting core: exit 1 with one line (the Python traceback only shows where
    the core was called, so it is printed with -v only)."""
    if verbose:
        traceback.print_exception(exc)
    hint = "" if verbose else "; -v shows the traceback"
    print(f"cd22scan: error: {exc} (cd22scan {__version__}{hint})", file=sys.stderr)
    return 1


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
