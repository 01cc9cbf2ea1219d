"""Writing per-sample outputs: every file goes to a temporary name and is renamed when complete,
so a crash or a full disk never leaves a truncated table under its final name. A scan's files are
written together in a staging folder and moved in only when all of them are complete."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import polars as pl

from cd22scan.errors import OutputError


def _file_mode() -> int:
    """The mode open() would give a new file (0o666 less the umask); mkstemp gives 0o600."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only on success."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # Outputs are read by colleagues and pipelines: the usual permissions, not mkstemp's.
        os.chmod(tmp_path, _FILE_MODE)
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
    except pl.exceptions.PolarsError as exc:
        # polars reports a failed write (e.g. a full disk under write_parquet) as its own error.
        if "os error" not in str(exc).lower() and "io error" not in str(exc).lower():
            raise
        raise OutputError(f"{final}: cannot write ({_os_reason(str(exc))})") from None
    return final


def _os_reason(message: str) -> str:
    """The OS reason ("No space left on device") out of a polars write error message."""
    return message.rsplit("IO error: ", 1)[-1].split(" (os error")[0].strip() or message


def write_text(text: str, final: Path) -> Path:
    """A UTF-8 text file (an HTML report, a MultiQC file), written atomically."""
    return _write(final, lambda tmp: tmp.write_text(text, encoding="utf-8"))


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


def check_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Refuse an output directory that cannot be created or written, without creating it, so a
    long scan does not end in "cannot write" and a bad input leaves no empty folder behind."""
    path = Path(out_dir)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{path}: cannot create output directory ({existing} is not a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: output directory is not writable ({existing})")
    return path


@contextlib.contextmanager
def staged_outputs(out_dir: Path, last: str) -> Iterator[Path]:
    """Yield a hidden staging folder inside ``out_dir``; when the block succeeds, move its files
    into ``out_dir`` (``last`` at the end) and remove it. On failure nothing is moved, so
    ``out_dir`` keeps its previous complete set of files, or none."""
    try:
        staging = Path(tempfile.mkdtemp(prefix=".staging.", dir=out_dir))
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write ({exc.strerror or exc})") from None
    try:
        try:
            yield staging
        except OutputError as exc:
            # Name the file the user asked for, not its staging copy.
            raise OutputError(str(exc).replace(str(staging), str(out_dir))) from None
        names = sorted(p.name for p in staging.iterdir())
        try:
            # The marker of a complete set goes away first and comes back last.
            (out_dir / last).unlink(missing_ok=True)
            for name in sorted(names, key=lambda n: n == last):
                os.replace(staging / name, out_dir / name)
        except OSError as exc:
            raise OutputError(f"{out_dir}: cannot write ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


MANIFEST = "manifest.tsv"


def read_manifest(out_dir: Path) -> list[str]:
    """The files (relative paths) an earlier run listed in ``OUT/manifest.tsv``; [] if none."""
    path = out_dir / MANIFEST
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t")[0] != "file":
        return []
    return [line.split("\t")[0] for line in lines[1:] if line.strip()]


def write_manifest(out_dir: Path, files: dict[Path, str]) -> Path:
    """``OUT/manifest.tsv``: every file this run wrote (file relative to OUT, kind, bytes,
    sha256), sorted by file; written last, atomically."""
    rows = []
    for path, kind in files.items():
        if path.is_file():
            rel = path.relative_to(out_dir).as_posix()
            rows.append((rel, kind, path.stat().st_size, _sha256(path)))
    rows.sort()
    frame = pl.DataFrame(
        rows, schema={"file": pl.Utf8, "kind": pl.Utf8, "bytes": pl.Int64, "sha256": pl.Utf8},
        orient="row",
    )  # fmt: skip
    return write_tsv(frame, out_dir / MANIFEST)
