"""Writing per-sample outputs: every file goes to a temporary name and is renamed when complete,
so a crash or a full disk never leaves a truncated table under its final name."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import polars as pl

from cd22scan.errors import OutputError


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only on success."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _write(final: Path, writer: Callable[[Path], None]) -> Path:
    try:
        with atomic_path(final) as tmp:
            writer(tmp)
    except OSError as exc:
        raise OutputError(f"{final}: cannot write ({exc.strerror or exc})") from None
    return final


def write_tsv(frame: pl.DataFrame, final: Path) -> Path:
    return _write(final, lambda tmp: frame.write_csv(tmp, separator="\t", null_value=""))


def write_parquet(frame: pl.DataFrame, final: Path) -> Path:
    return _write(final, lambda tmp: frame.write_parquet(tmp, statistics=False))


def write_table(frame: pl.DataFrame, final_tsv: Path) -> Path:
    """A table as TSV (``final_tsv``) and as Parquet beside it (same name, ``.parquet``), with
    the same columns and types; returns the TSV path."""
    write_tsv(frame, final_tsv)
    write_parquet(frame, final_tsv.with_suffix(".parquet"))
    return final_tsv


def write_json(data: dict[str, Any], final: Path) -> Path:
    def writer(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            _dump(data, handle)

    return _write(final, writer)


def _dump(data: dict[str, Any], handle: IO[str]) -> None:
    json.dump(data, handle, indent=2, sort_keys=False)
    handle.write("\n")


def prepare_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    path = Path(out_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create output directory ({exc.strerror})") from None
    if not os.access(path, os.W_OK):
        raise OutputError(f"{path}: output directory is not writable")
    return path


def write_scan(result: Any, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Write NAME.exons, .junctions, .introns, .indels (each .tsv and .parquet), .bases.parquet,
    .junctions.bed, .variants.vcf.gz (+ .tbi) and NAME.summary.json (last) into ``out_dir``."""
    path = prepare_out_dir(out_dir)
    name = result.sample
    written = {
        "exons": write_table(result.exons, path / f"{name}.exons.tsv"),
        "junctions": write_table(result.junctions, path / f"{name}.junctions.tsv"),
        "introns": write_table(result.introns, path / f"{name}.introns.tsv"),
        "indels": write_table(result.indels, path / f"{name}.indels.tsv"),
        "bases": write_parquet(result.bases, path / f"{name}.bases.parquet"),
    }
    from cd22scan.formats import write_junctions_bed12

    written["junctions_bed"] = write_junctions_bed12(
        result.junctions, path / f"{name}.junctions.bed"
    )
    from cd22scan.vcf_outputs import write_scan_vcf

    written["vcf"] = write_scan_vcf(result, path / f"{name}.variants.vcf.gz")
    # The summary goes last: its presence marks a complete scan directory.
    written["summary"] = write_json(result.summary, path / f"{name}.summary.json")
    return written
