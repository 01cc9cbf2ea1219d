"""What a user sees on stderr: the log set-up of the command line and progress bars (tqdm).

A bar is shown only when stderr is a terminal and info messages are on (not with ``--quiet``, not
through the Python API unless its caller turned the ``cd22scan`` logger to INFO), and never in
worker processes, whose bars would overwrite each other's lines. Log lines go through
``tqdm.write`` so that they print above a running bar instead of through it.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from tqdm import tqdm

__all__ = ["progress", "setup_logging", "setup_worker", "showing_progress", "version_text"]

log = logging.getLogger("cd22scan")

_bars_allowed = True


def version_text() -> str:
    """``cd22scan X (pysam Y, htslib Z)``: what ``--version`` prints and the reports name."""
    import pysam
    import pysam.version

    from cd22scan import __version__

    version = __version__
    if version.endswith("+unknown"):  # a source tree run without installing: the built core's
        try:
            from cd22scan import _core

            version = _core.__version__
        except ImportError:
            pass
    htslib = pysam.version.__htslib_version__
    return f"cd22scan {version} (pysam {pysam.__version__}, htslib {htslib})"


class _BarSafeHandler(logging.Handler):
    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging must never raise into the work it reports on
            self.handleError(record)


def setup_logging(level: int) -> None:
    """Messages of the ``cd22scan`` logger at ``level`` and above, to stderr, one line each."""
    handler = _BarSafeHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cd22scan: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def setup_worker(level: int) -> None:
    """Initializer of worker processes: the parent's log level, no progress bars."""
    global _bars_allowed
    _bars_allowed = False
    setup_logging(level)


def showing_progress() -> bool:
    if not _bars_allowed or not log.isEnabledFor(logging.INFO):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def progress(desc: str, unit: str, total: int | None = None, *, scale: bool = False) -> tqdm:
    """A tqdm bar on stderr (disabled, so a no-op, when ``showing_progress()`` is false).
    Without ``total`` it shows a running count and rate; ``scale`` prints 12.3k for 12 300."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=scale,
        file=sys.stderr,
        disable=not showing_progress(),
        leave=False,
        dynamic_ncols=True,
        mininterval=0.2,
    )
