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

log = logging.getLogger("cd22scan")


def _flag_mask(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a flag mask such as 0x704 or 1796, got {text!r}"
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
        default=0x704,
        help="skip records with any of these FLAG bits (samtools --ff) [0x704: unmapped, "
        "secondary, QC-fail, duplicate]",
    )
    r.add_argument(
        "--keep-duplicates",
        action="store_true",
        help="count duplicate-flagged reads (clears 0x400)",
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
        flags &= ~0x400
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
    from cd22scan.outputs import write_scan
    from cd22scan.scanner import scan

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


def _cmd_demo(args: argparse.Namespace) -> int:
    from cd22scan.demo import run_demo

    path = run_demo(args.out, seed=args.seed)
    print(f"cd22scan demo: outputs written to {path}")
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
    level = logging.INFO
    if args.quiet:
        level = logging.WARNING
    elif args.verbose:
        level = logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cd22scan: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


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
