"""``python -m cd22scan``: the same as the ``cd22scan`` command."""

from cd22scan.cli import entry

entry()
