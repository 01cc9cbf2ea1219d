"""Suite-wide test set-up: which cd22scan is under test, the real-data fixture, and CI honesty.

- The default `pytest` runs the fast set (`-m "not slow and not external"` in pyproject's
  addopts); `bash scripts/test.sh` (CI) runs every test with `-m ""`.
- In CI (the `CI` environment variable set, as CI services and `.ci/run` set it) a skipped test
  is a failure: a missing tool (samtools, bcftools, chromium, multiqc, snakemake), a missing
  `shared/realdata` or a missing console script means CI did not check what the README states.
  A test whose skip depends on the machine rather than on its set-up (mounting a tmpfs needs
  privileges) says so with `@pytest.mark.may_skip_in_ci`.
- In CI the tests must import the installed wheel, not the `cd22scan/` folder of the checkout.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
from realdata_helpers import ABI1, ENV_VAR

import cd22scan

REPO = Path(__file__).resolve().parents[1]


def in_ci() -> bool:
    """True when the `CI` environment variable is set to anything but empty, 0, false or no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# --- which cd22scan is under test ---------------------------------------------------------------


def _package_problem() -> str | None:
    """Why the imported cd22scan is not the one to test, or None."""
    try:
        core = importlib.import_module("cd22scan._core")
    except ImportError as exc:
        return (
            f"cd22scan imported from {Path(cd22scan.__file__).parent} has no compiled core "
            f"({exc}); build it: pip install . (or maturin develop --profile dev-release)"
        )
    package = Path(cd22scan.__file__).resolve().parent
    if in_ci() and package == REPO / "cd22scan":
        return (
            f"CI must test the installed wheel, but cd22scan was imported from the checkout "
            f"({package}, core {Path(core.__file__).name}): install it with pip install . "
            "(not editable) and run pytest without the repository on sys.path"
        )
    return None


def pytest_report_header(config) -> list[str]:
    core = importlib.import_module("cd22scan._core") if _package_problem() is None else None
    lines = [
        f"cd22scan {cd22scan.__version__} from {Path(cd22scan.__file__).parent}"
        + (f" (core {Path(core.__file__).name})" if core else ""),
        f"real data: {ABI1} ({'present' if ABI1.is_dir() else 'missing'}; ${ENV_VAR} moves it)",
    ]
    if in_ci():
        lines.append("CI is set: a skipped test fails (see tests/conftest.py)")
    return lines


def pytest_sessionstart(session) -> None:
    problem = _package_problem()
    if problem is not None:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)


# --- real data ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def realdata() -> Path:
    """`shared/realdata/abi1_encode`: 12 real ENCODE RNA-seq BAMs over ABI1, their GTF and
    reference. Skips when it is missing; in CI that skip is a failure (CI has ../shared)."""
    if not (ABI1 / "input_bams.tsv").is_file():
        pytest.skip(
            f"real reads not found at {ABI1} (shared/realdata beside the repository, "
            f"or set {ENV_VAR} to a copy of shared/realdata)"
        )
    return ABI1


# --- CI: a skip is a failure --------------------------------------------------------------------


def _skip_reason(report) -> str:
    if isinstance(report.longrepr, tuple):  # (path, line, "Skipped: reason")
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    return str(report.longrepr)


def _fail_in_ci(report, where: str) -> None:
    report.outcome = "failed"
    report.longrepr = (
        f"{where} skipped while CI is set: {_skip_reason(report)}\n"
        "CI must run every test: install what it needs (scripts/test.sh does), or mark a skip "
        "that depends on the machine with @pytest.mark.may_skip_in_ci"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and in_ci()
        and item.get_closest_marker("may_skip_in_ci") is None
        and not item.config.getoption("benchmark_only", default=False)
    ):
        _fail_in_ci(report, "test")
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield
    if report.skipped and in_ci():
        _fail_in_ci(report, "module")
    return report
