"""The public API: one name per stage of the data path, each resolving to the stage's function."""

from __future__ import annotations

import cd22scan


def test_every_public_name_resolves():
    for name in cd22scan.__all__:
        assert getattr(cd22scan, name) is not None, name


def test_scan_compare_and_run_are_the_stage_functions():
    from cd22scan.cohort.run import run_cohort
    from cd22scan.comparison.pair import compare_samples
    from cd22scan.sample.scan import scan

    assert cd22scan.scan is scan
    assert cd22scan.compare is compare_samples
    assert cd22scan.run is run_cohort
    assert {"scan", "compare", "run", "load_scan", "call_sample"} <= set(cd22scan.__all__)
