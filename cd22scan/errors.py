"""Errors a user can cause. Each class carries the exit code the CLI returns for it.

The CLI prints one line (the message) and exits with the code; tracebacks are for bugs only.
"""


class Cd22scanError(Exception):
    exit_code = 1


class InputError(Cd22scanError):
    """A bad input file or bad content in it (BAM/CRAM/SAM, reference, sample sheet)."""

    exit_code = 2


class AnnotationError(Cd22scanError):
    """Gene, transcript or GTF problem; build or contig mismatch between model and BAM."""

    exit_code = 3


class UsageError(Cd22scanError):
    """Options that cannot work together or are out of range."""

    exit_code = 64


class OutputError(Cd22scanError):
    """An output could not be written (directory not writable, disk full)."""

    exit_code = 4
