"""Tests' name for the data factory, which lives in the package (``cd22scan.demo.simulate``) because
``cd22scan demo`` uses it too. There is one simulator; this module only re-exports it."""

from cd22scan.demo.simulate import *  # noqa: F403
from cd22scan.demo.simulate import (  # noqa: F401  (names used by tests, private or not)
    GRCH37_CHR19_LENGTH,
    GRCH37_MINUS_GRCH38,
    GRCH38_CHR19_LENGTH,
    GeneSpec,
    SimResult,
    cd22_grch37,
    cd22_grch38,
    coding_positions,
    isoform_segments,
    reference_window,
    simulate,
    small_gene,
    write_sam_text_bam,
)
