"""SAM FLAG bits the reader filters on (SAM specification, section 1.4)."""

from __future__ import annotations

__all__ = ["DEFAULT_EXCLUDE_FLAGS", "FLAG_DUPLICATE"]

FLAG_DUPLICATE = 0x400
# UNMAP | SECONDARY | QCFAIL | DUP: what samtools mpileup skips by default (its --ff)
DEFAULT_EXCLUDE_FLAGS = 0x704
