"""Where the real test data are: `shared/realdata` beside the repository (as CI has it), or the
folder named by $CD22SCAN_REALDATA. Tests that read them take the `realdata` fixture
(tests/conftest.py): it skips when the data are missing, and in CI that skip is a failure."""

from __future__ import annotations

import csv
import os
from pathlib import Path

ENV_VAR = "CD22SCAN_REALDATA"
REALDATA = Path(
    os.environ.get(ENV_VAR) or Path(__file__).resolve().parents[2] / "shared" / "realdata"
)
ABI1 = REALDATA / "abi1_encode"  # see its README: 12 ENCODE RNA-seq BAMs over ABI1, hg19


def abi1_bams() -> list[Path]:
    """The BAMs listed in `abi1_encode/input_bams.tsv`, to parametrize tests over.

    When the data are missing this is one placeholder path (test id "missing"), so that the test
    is still collected and its `realdata` fixture reports the missing data (an empty parameter
    set would be a skip that names no folder)."""
    sheet = ABI1 / "input_bams.tsv"
    if not sheet.is_file():
        return [ABI1 / "missing"]
    with sheet.open() as handle:
        return [ABI1 / Path(row[1]).name for row in csv.reader(handle, delimiter="\t")]
