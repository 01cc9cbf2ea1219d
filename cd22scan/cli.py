"""Command line: argument parsing and exit codes only; the work is done by the API.

Exit codes: 0 success; 1 unexpected error (a bug: traceback printed); 2 bad input data;
3 annotation/build problem; 4 output not writable; 64 bad usage; 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from cd22scan import __version__
from cd22scan.errors import Cd22scanError, UsageError
from cd22scan.samflags import DEFAULT_EXCLUDE_FLAGS, FLAG_DUPLICATE

log = logging.getLogger("cd22scan")


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
    g.add_argument("--gene", default="CD22", help="gene name (built-in: CD22; any gene with --gtf)")
    g.add_argument(
        "--build",
        default="auto",
        choices=["auto", "GRCh38", "GRCh37"],
        help="genome build of the built-in model; auto = from the BAM header (default)",
    )
    g.add_argument("--gtf", help="GTF (plain or .gz) to take the gene model from")
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
    r.add_argument("--threads", type=int, default=1, help="htslib decompression threads [1]")


def _params_from_args(args: argparse.Namespace):
    from cd22scan.scanner import ScanParams

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
    )


def _cmd_scan(args: argparse.Namespace) -> int:
    from cd22scan.outputs import check_out_dir
    from cd22scan.scandir import write_scan
    from cd22scan.scanner import scan

    check_out_dir(args.out)  # before the scan, which can take a while
    result = scan(args.bam, _params_from_args(args))
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


def _add_threshold_options(p: argparse.ArgumentParser) -> None:
    from cd22scan.compare import THRESHOLD_OPTIONS, Thresholds

    d = Thresholds()
    g = p.add_argument_group("calling thresholds (all must hold for an event to be called)")
    for option, name, kind, text in THRESHOLD_OPTIONS:
        default = getattr(d, name)
        g.add_argument(option, dest=name, type=kind, default=default, help=f"{text} [{default}]")


def thresholds_from_namespace(args: argparse.Namespace):
    from cd22scan.compare import THRESHOLD_OPTIONS, Thresholds

    return Thresholds.from_options(
        {name: getattr(args, name) for _, name, _, _ in THRESHOLD_OPTIONS}
    )


def _load_or_scan(path: str, args: argparse.Namespace):
    from pathlib import Path

    from cd22scan.scandir import load_scan
    from cd22scan.scanner import scan

    if Path(path).is_dir():
        return load_scan(path)
    return scan(path, _params_from_args(args))


def _cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cd22scan.compare import compare_samples
    from cd22scan.outputs import prepare_out_dir, write_table
    from cd22scan.scandir import write_scan

    out = prepare_out_dir(args.out)
    baseline = _load_or_scan(args.baseline, args)
    relapse = _load_or_scan(args.relapse, args)
    if baseline.sample == relapse.sample:
        from cd22scan.errors import UsageError

        raise UsageError(f"baseline and relapse have the same sample name {baseline.sample!r}")
    for result, given in ((baseline, args.baseline), (relapse, args.relapse)):
        if not Path(given).is_dir():
            write_scan(result, out / "scans")
    comparison = compare_samples(baseline, relapse, thresholds=thresholds_from_namespace(args))
    write_table(comparison.events, out / "events.tsv")
    write_table(comparison.verdict, out / "verdict.tsv")
    from cd22scan.report_html import write_pair_report
    from cd22scan.vcf_outputs import write_pair_vcf

    write_pair_vcf(comparison, baseline, out / "variants.vcf.gz")
    report = write_pair_report(comparison, baseline, relapse, out / "report.html")
    log.info("report: %s", report)
    log.info("%s: %s", comparison.pair, comparison.verdict["verdict"][0])
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from cd22scan.cohort import run_cohort

    run_cohort(
        args.samplesheet,
        args.out,
        _params_from_args(args),
        thresholds=thresholds_from_namespace(args),
        jobs=args.jobs,
    )
    log.info("cohort outputs in %s", args.out)
    return 0


def _cmd_workflow(args: argparse.Namespace) -> int:
    from cd22scan import workflow_files

    if args.what == "path":
        print(workflow_files.snakefile_path())
    elif args.what == "compare-pair":
        workflow_files.compare_pair(args.samplesheet, args.out, args.pair, args.compare_args)
    else:
        workflow_files.aggregate_cohort(args.samplesheet, args.out, args.compare_args)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from cd22scan.demo import run_demo

    path = run_demo(args.out, seed=args.seed)
    print(f"cd22scan demo: cohort report at {path / 'report.html'} (tables in {path})")
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
    parser.add_argument("--version", action="version", version=f"cd22scan {__version__}")
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
    p_scan.add_argument("--out", required=True, help="output directory")
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
    p_cmp.add_argument("--baseline", required=True, help="scan directory or BAM/CRAM/SAM")
    p_cmp.add_argument("--relapse", required=True, help="scan directory or BAM/CRAM/SAM")
    p_cmp.add_argument("--out", required=True, help="output directory")
    _add_scan_options(p_cmp)
    _add_threshold_options(p_cmp)
    p_cmp.set_defaults(func=_cmd_compare)

    p_run = sub.add_parser(
        "run",
        parents=[common],
        help="a cohort from a sample sheet",
        description="Scan every sample of a sample sheet (patient, sample, timepoint, path "
        "[, reference]), compare each patient's baseline with each relapse, write cohort tables.",
    )
    p_run.add_argument("samplesheet", help="TSV or CSV sample sheet")
    p_run.add_argument("--out", required=True, help="output directory")
    p_run.add_argument("--jobs", type=int, default=1, help="samples scanned in parallel [1]")
    _add_scan_options(p_run)
    _add_threshold_options(p_run)
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
        ("compare-pair", "compare one pair of the sheet into OUT/pairs (the workflow's step)"),
        ("cohort", "write the cohort files from OUT/pairs and OUT/scans (the workflow's step)"),
    ):
        p_step = wf_steps.add_parser(step, parents=[common], help=text, description=text)
        p_step.add_argument("samplesheet", help="the sample sheet of the workflow")
        p_step.add_argument("out", help="the workflow's output directory")
        if step == "compare-pair":
            p_step.add_argument("pair", help="pair name, BASELINE_vs_RELAPSE")
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
    p_demo.add_argument("--out", default="cd22scan_demo", help="output directory [cd22scan_demo]")
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
    except KeyboardInterrupt:
        print("cd22scan: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
