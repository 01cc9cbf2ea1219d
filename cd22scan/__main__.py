"""`python -m cd22scan` runs the command line, as the `cd22scan` script does."""

from cd22scan.cli import entry

if __name__ == "__main__":
    entry()
