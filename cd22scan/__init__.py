"""cd22scan: find how leukemia escapes CAR T cells (antigen loss, mutation, aberrant splicing).

Public API: ``scan`` (one sample over the target gene), ``ScanParams``, ``ScanResult``,
``GeneModel``, ``builtin_model``, ``load_gtf``. Imports are lazy so that the command line starts
fast and the annotation layer works without the compiled core.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("cd22scan")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

_EXPORTS = {
    "GeneModel": "cd22scan.annotation",
    "builtin_model": "cd22scan.annotation",
    "load_gtf": "cd22scan.annotation",
    "ScanParams": "cd22scan.scanner",
    "ScanResult": "cd22scan.scanner",
    "scan": "cd22scan.scanner",
}

__all__ = [
    "GeneModel",
    "ScanParams",
    "ScanResult",
    "__version__",
    "builtin_model",
    "load_gtf",
    "scan",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cd22scan' has no attribute {name!r}")
