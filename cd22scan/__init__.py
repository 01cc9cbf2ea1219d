"""cd22scan: find how leukemia escapes CAR T cells (antigen loss, mutation, aberrant splicing).

Public API, one name per stage of the data path (DESIGN.md): ``GeneModel``, ``builtin_model``,
``load_gtf`` (target); ``scan``, ``ScanParams``, ``ScanResult`` (sample); ``call_sample``,
``SampleCalls`` (calling); ``compare`` (= ``compare_samples``), ``Thresholds``, ``Comparison``
(comparison); ``run`` (= ``run_cohort``: a sample sheet to every output); ``load_scan`` (a scan
directory back). Imports are lazy so that the command line starts fast and the annotation layer
works without the compiled core.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("cd22scan")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

# public name -> (module, attribute)
_EXPORTS = {
    "GeneModel": ("cd22scan.target.annotation", "GeneModel"),
    "builtin_model": ("cd22scan.target.annotation", "builtin_model"),
    "load_gtf": ("cd22scan.target.annotation", "load_gtf"),
    "ScanParams": ("cd22scan.sample.scan", "ScanParams"),
    "ScanResult": ("cd22scan.sample.scan", "ScanResult"),
    "scan": ("cd22scan.sample.scan", "scan"),
    "SampleCalls": ("cd22scan.calling.sample", "SampleCalls"),
    "call_sample": ("cd22scan.calling.sample", "sample_calls"),
    "Comparison": ("cd22scan.comparison.pair", "Comparison"),
    "Thresholds": ("cd22scan.comparison.pair", "Thresholds"),
    "compare": ("cd22scan.comparison.pair", "compare_samples"),
    "run": ("cd22scan.cohort.run", "run_cohort"),
    "load_scan": ("cd22scan.outputs.scandir", "load_scan"),
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        return getattr(import_module(module), attribute)
    raise AttributeError(f"module 'cd22scan' has no attribute {name!r}")
