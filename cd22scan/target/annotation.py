"""The target: a gene model (one transcript) from the built-in tables or from a GTF.

Coordinates in a GeneModel are 1-based and inclusive (GTF/VCF style); ``core_exons()`` and
``window()`` are the one place that converts to the 0-based half-open coordinates of BAM and the
counting core. Exons are numbered 1..n in transcript order, as clinicians number them.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import difflib
import functools
import gzip
import itertools
import re
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Any, Union, get_args, get_origin, get_type_hints

from cd22scan.errors import AnnotationError
from cd22scan.target import contigs

__all__ = [
    "Exon",
    "GeneModel",
    "Intron",
    "KnownEvent",
    "builtin_genes",
    "builtin_model",
    "check_junctions_fit_model",
    "check_model_against_header",
    "check_splice_motifs",
    "load_gtf",
    "model_from_json",
    "model_to_json",
]


@dataclass(frozen=True)
class Exon:
    number: int  # 1..n in transcript order
    start: int  # 1-based, inclusive
    end: int  # 1-based, inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class Intron:
    number: int  # intron k lies between exons k and k+1 in transcript order
    start: int  # first intronic base, 1-based
    end: int  # last intronic base, 1-based inclusive (STAR SJ.out.tab / regtools convention)

    @property
    def length(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class KnownEvent:
    name: str  # e.g. "Δex2"
    kind: str  # e.g. "exon_skipping"
    skipped_exons: tuple[int, ...]  # exon numbers (transcript order)
    frame: str  # "in-frame", "frameshift", "start-lost", "stop-lost", "non-coding"
    effect: str  # protein consequence in words
    source: str  # literature and annotation models behind the event


@dataclass(frozen=True)
class GeneModel:
    gene: str
    transcript: str
    contig: str
    strand: str  # "+" or "-"
    build: str | None  # "GRCh38", "GRCh37", another build name, or None when unknown
    exons: tuple[Exon, ...]  # transcript order, numbered 1..n
    cds_start: int | None  # lowest genomic CDS base incl. stop codon (1-based), or None
    cds_end: int | None  # highest genomic CDS base incl. stop codon (1-based), or None
    source: str  # where the coordinates come from
    selection: str  # why this transcript
    known_events: tuple[KnownEvent, ...] = ()
    exon_domains: tuple[tuple[int, str], ...] = field(default=(), compare=False)
    # Introns of every transcript of the gene on the model's contig and strand, as
    # (start, end, transcript ids): first and last intronic base, 1-based inclusive, sorted.
    # Empty means "only the chosen transcript is known" (``junction_transcripts`` falls back).
    annotated_junctions: tuple[tuple[int, int, tuple[str, ...]], ...] = field(
        default=(), compare=False
    )

    def __post_init__(self) -> None:
        where = f"gene model {self.gene} {self.transcript}"
        if self.strand not in ("+", "-"):
            raise AnnotationError(f"{where}: strand must be + or -, not {self.strand!r}")
        if not self.exons:
            raise AnnotationError(f"{where}: no exons")
        for index, exon in enumerate(self.exons, start=1):
            if exon.number != index:
                raise AnnotationError(f"{where}: exons must be numbered 1..n in order")
            if not 1 <= exon.start <= exon.end:
                raise AnnotationError(f"{where}: exon {index} has start {exon.start} > end")
        ordered = self.genomic_exons()
        expected = ordered if self.strand == "+" else tuple(reversed(ordered))
        if tuple(self.exons) != expected:
            raise AnnotationError(
                f"{where}: exons are not in transcript order for the {self.strand} strand"
            )
        for left, right in itertools.pairwise(ordered):
            if right.start <= left.end + 1:
                raise AnnotationError(
                    f"{where}: exons {left.number} and {right.number} overlap or abut "
                    f"({left.start}-{left.end}, {right.start}-{right.end})"
                )
        if (self.cds_start is None) != (self.cds_end is None):
            raise AnnotationError(f"{where}: CDS needs both a start and an end")
        if self.cds_start is not None and self.cds_end is not None:
            lo, hi = self.span
            if not lo <= self.cds_start <= self.cds_end <= hi:
                raise AnnotationError(
                    f"{where}: CDS {self.cds_start}-{self.cds_end} is not inside the "
                    f"transcript {lo}-{hi}"
                )

    # --- shape ---

    @property
    def span(self) -> tuple[int, int]:
        """First and last transcribed base (1-based, inclusive)."""
        ordered = self.genomic_exons()
        return ordered[0].start, ordered[-1].end

    def exon(self, number: int) -> Exon:
        if not 1 <= number <= len(self.exons):
            raise AnnotationError(
                f"{self.gene} {self.transcript} has exons 1-{len(self.exons)}, not {number}"
            )
        return self.exons[number - 1]

    def genomic_exons(self) -> tuple[Exon, ...]:
        """Exons sorted by genomic start (exon numbers keep their transcript order)."""
        return tuple(sorted(self.exons, key=lambda e: e.start))

    def introns(self) -> tuple[Intron, ...]:
        """Introns in transcript order; intron k lies between exon k and exon k+1."""
        out = []
        for first, second in itertools.pairwise(self.exons):
            if self.strand == "+":
                start, end = first.end + 1, second.start - 1
            else:
                start, end = second.end + 1, first.start - 1
            out.append(Intron(first.number, start, end))
        return tuple(out)

    def junction_transcripts(self, start: int, end: int) -> tuple[str, ...]:
        """Transcripts of the gene with the intron ``start``-``end`` (1-based inclusive), or ().

        The chosen transcript is always counted for its own introns, so a model without
        ``annotated_junctions`` still knows its own."""
        found = {
            tx for s, e, ids in self.annotated_junctions if (s, e) == (start, end) for tx in ids
        }
        if any((i.start, i.end) == (start, end) for i in self.introns()):
            found.add(self.transcript)
        return tuple(sorted(found))

    def window(self, padding: int = 0) -> tuple[int, int]:
        """The transcript span plus ``padding`` on each side, 0-based half-open, clipped at 0.

        The caller clips the end at the contig length (the model does not know it).
        """
        if padding < 0:
            raise ValueError("padding must be >= 0")
        lo, hi = self.span
        return max(0, lo - 1 - padding), hi + padding

    def exon_number_at(self, pos: int) -> int | None:
        """Number of the exon that holds 1-based position ``pos``, or None."""
        for exon in self.exons:
            if exon.start <= pos <= exon.end:
                return exon.number
        return None

    def core_exons(self) -> list[tuple[int, int]]:
        """Exons as (start0, end0), 0-based half-open, in genomic order: what the core counts."""
        return [(e.start - 1, e.end) for e in self.genomic_exons()]

    def with_contig(self, name: str) -> GeneModel:
        """The same model under the contig name used by a BAM header."""
        return dataclasses.replace(self, contig=name)

    # --- coding sequence ---

    def coding_part(self, exon: Exon) -> tuple[int, int] | None:
        """The CDS bases (incl. stop codon) inside ``exon``, 1-based inclusive, or None."""
        if self.cds_start is None or self.cds_end is None:
            return None
        lo, hi = max(exon.start, self.cds_start), min(exon.end, self.cds_end)
        return (lo, hi) if lo <= hi else None

    def cds_length(self) -> int:
        """Coding length in nt including the stop codon (0 for a non-coding transcript)."""
        total = 0
        for exon in self.exons:
            part = self.coding_part(exon)
            if part:
                total += part[1] - part[0] + 1
        return total

    def skip_frame(self, skipped: Sequence[int]) -> str:
        """Reading-frame consequence of skipping these exons.

        "start-lost" if they hold the first CDS base (in transcript order), "stop-lost" if
        they hold the last, "non-coding" if none is coding, else "in-frame" or "frameshift"
        by the coding nt removed.
        """
        if self.cds_start is None or self.cds_end is None:
            return "non-coding"
        first, last = (
            (self.cds_start, self.cds_end) if self.strand == "+" else (self.cds_end, self.cds_start)
        )
        removed = 0
        for number in skipped:
            exon = self.exon(number)
            if exon.start <= first <= exon.end:
                return "start-lost"
            if exon.start <= last <= exon.end:
                return "stop-lost"
            part = self.coding_part(exon)
            if part:
                removed += part[1] - part[0] + 1
        if removed == 0:
            return "non-coding"
        return "in-frame" if removed % 3 == 0 else "frameshift"

    def skip_junction(self, first: int, last: int) -> Intron:
        """The intron of the junction that skips exons ``first``..``last`` (transcript order).

        ``number`` is the exon before the skipped run, so Δex2 of CD22 is the e1→e3 junction.
        """
        if not 1 < first <= last < len(self.exons):
            raise AnnotationError(
                f"{self.gene} {self.transcript}: cannot skip exons {first}-{last} of "
                f"1-{len(self.exons)} (the first and last exon cannot be skipped)"
            )
        donor, acceptor = self.exon(first - 1), self.exon(last + 1)
        if self.strand == "+":
            return Intron(donor.number, donor.end + 1, acceptor.start - 1)
        return Intron(donor.number, acceptor.end + 1, donor.start - 1)

    def event_junction(self, event: KnownEvent) -> Intron:
        """The junction of a known exon-skipping event."""
        return self.skip_junction(min(event.skipped_exons), max(event.skipped_exons))

    def domain_of(self, number: int) -> str:
        """What an exon encodes (built-in models only; DERIVED text), or ''."""
        return dict(self.exon_domains).get(number, "")


# --- the model as JSON (NAME.model.json of a scan directory) -----------------------------------

MODEL_SCHEMA_VERSION = 1
_MODEL_KIND = "cd22scan gene model"


def _to_plain(value: Any) -> Any:
    """A model value as JSON data: dataclasses as objects, tuples/sets as arrays."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_to_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_to_plain(v) for v in value)
    return value


def _from_plain(hint: Any, value: Any, where: str) -> Any:
    """JSON data back to the type ``hint`` of a dataclass field (the inverse of _to_plain)."""
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union or type(hint).__name__ == "UnionType":
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            with contextlib.suppress(AnnotationError, TypeError, ValueError):
                return _from_plain(arg, value, where)
        raise AnnotationError(f"{where}: {value!r} is not a {hint}")
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise AnnotationError(f"{where}: expected an object for {hint.__name__}")
        return _dataclass_from_plain(hint, value, where)
    if origin in (tuple, frozenset, set, list):
        if not isinstance(value, list):
            raise AnnotationError(f"{where}: expected an array, found {value!r}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise AnnotationError(f"{where}: expected {len(args)} items, found {value!r}")
            return tuple(_from_plain(a, v, where) for a, v in zip(args, value, strict=True))
        items = [_from_plain(args[0] if args else Any, v, where) for v in value]
        return tuple(items) if origin is tuple else origin(items)
    if hint is Any:
        return value
    if hint in (int, str, float, bool):
        # JSON has one number type; bool is an int in Python, so check it apart.
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise AnnotationError(f"{where}: expected {hint.__name__}, found {value!r}")
        return value
    raise TypeError(f"no JSON reading for field type {hint!r}")  # a bug: a new field type


def _dataclass_from_plain(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _from_plain(hints[f.name], data[f.name], f"{where} {f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise AnnotationError(f"{where}: {cls.__name__} field {f.name!r} is missing")
    return cls(**kwargs)


def model_to_json(model: GeneModel) -> dict[str, Any]:
    """The model as a JSON document: every GeneModel field (a field added later is carried
    without further edits), plus the schema version and a kind."""
    return {
        "schema_version": MODEL_SCHEMA_VERSION,
        "kind": _MODEL_KIND,
        "coordinates": "1-based inclusive (GTF/VCF style)",
        "model": _to_plain(model),
    }


def model_from_json(document: Mapping[str, Any], where: str = "model") -> GeneModel:
    """The GeneModel of a ``model_to_json`` document; AnnotationError naming ``where`` when it
    is not one (another kind, a newer schema, a missing or mistyped field)."""
    if not isinstance(document, Mapping) or document.get("kind") != _MODEL_KIND:
        raise AnnotationError(f"{where}: not a {_MODEL_KIND} file")
    version = document.get("schema_version")
    if not isinstance(version, int) or version > MODEL_SCHEMA_VERSION:
        raise AnnotationError(
            f"{where}: gene model schema version {version!r}; this cd22scan reads up to "
            f"{MODEL_SCHEMA_VERSION} (a newer cd22scan wrote it)"
        )
    data = document.get("model")
    if not isinstance(data, dict):
        raise AnnotationError(f"{where}: no 'model' object")
    return _dataclass_from_plain(GeneModel, data, where)


# --- built-in models -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _builtin_selection() -> dict[tuple[str, str], str]:
    """(gene, build) -> why this transcript (data/transcripts.tsv)."""
    rows = csv.DictReader(_data_text("transcripts.tsv").splitlines(), delimiter="\t")
    return {(r["gene"], r["build"]): r["selection"] for r in rows}


def _data_text(name: str) -> str:
    return resources.files("cd22scan.target").joinpath("data", name).read_text("utf-8")


@functools.lru_cache(maxsize=1)
def _builtin_rows() -> tuple[dict[str, str], ...]:
    return tuple(csv.DictReader(_data_text("models.tsv").splitlines(), delimiter="\t"))


@functools.lru_cache(maxsize=1)
def _builtin_events() -> dict[str, tuple[KnownEvent, ...]]:
    out: dict[str, list[KnownEvent]] = {}
    for row in csv.DictReader(_data_text("events.tsv").splitlines(), delimiter="\t"):
        source = row["literature"]
        if row["ensembl_110_model"]:
            source += f"; Ensembl 110 model {row['ensembl_110_model']}"
        out.setdefault(row["gene"], []).append(
            KnownEvent(
                name=row["event"],
                kind=row["kind"],
                skipped_exons=tuple(int(x) for x in row["skipped_exons"].split(",") if x),
                frame=row["frame"],
                effect=row["effect"],
                source=source,
            )
        )
    return {gene: tuple(events) for gene, events in out.items()}


def builtin_genes() -> tuple[str, ...]:
    """Genes with a built-in model."""
    return tuple(dict.fromkeys(row["gene"] for row in _builtin_rows()))


def _builtin_builds(gene: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(r["build"] for r in _builtin_rows() if r["gene"] == gene))


@functools.cache
def builtin_model(gene: str = "CD22", build: str = "GRCh38") -> GeneModel:
    """The built-in model of ``gene`` on ``build`` ('GRCh38'/'hg38' or 'GRCh37'/'hg19')."""
    genes = builtin_genes()
    by_upper = {g.upper(): g for g in genes}
    name = by_upper.get(gene.strip().upper())
    if name is None:
        raise AnnotationError(
            f"no built-in model for gene {gene!r} (built-in: {', '.join(genes)}); "
            "use a GTF for any other gene"
        )
    wanted = contigs.normalize_build(build)
    rows = [r for r in _builtin_rows() if r["gene"] == name and r["build"] == wanted]
    if not rows:
        raise AnnotationError(
            f"no built-in {name} model for build {build!r} "
            f"(built-in: {', '.join(_builtin_builds(name))})"
        )
    rows.sort(key=lambda r: int(r["exon"]))
    exons = tuple(Exon(int(r["exon"]), int(r["start"]), int(r["end"])) for r in rows)
    cds_starts = [int(r["cds_start"]) for r in rows if r["cds_start"].strip()]
    cds_ends = [int(r["cds_end"]) for r in rows if r["cds_end"].strip()]
    sources = dict.fromkeys(r["source"] for r in rows)
    cds_sources = dict.fromkeys(r["cds_source"] for r in rows if r["cds_source"])
    return GeneModel(
        gene=name,
        transcript=rows[0]["transcript"],
        contig=rows[0]["contig"],
        strand=rows[0]["strand"],
        build=wanted,
        exons=exons,
        cds_start=min(cds_starts) if cds_starts else None,
        cds_end=max(cds_ends) if cds_ends else None,
        source=(
            f"built-in table data/models.tsv ({wanted}); exons: {' | '.join(sources)}; "
            f"CDS: {' | '.join(cds_sources) or 'none'}"
        ),
        selection=_builtin_selection().get((name, wanted), "built-in model"),
        known_events=_builtin_events().get(name, ()),
        exon_domains=tuple((int(r["exon"]), r["domain"]) for r in rows if r.get("domain")),
    )


# --- GTF -----------------------------------------------------------------------------------------

# key "value"; or key value; — quoted values may hold spaces and semicolons.
_ATTR_RE = re.compile(r'\s*([^\s";]+)\s+(?:"((?:[^"\\]|\\.)*)"|([^\s;"]+))\s*(?:;|$)')
_GENE_ID_RE = re.compile(r'(?:^|;)\s*gene_id\s+"?([^";]+)"?')
_GENE_NAME_RE = re.compile(r'(?:^|;)\s*gene_name\s+"?([^";]+)"?')
_BUILD_RE = re.compile(r"\b(GRCh3[78](?:\.p\d+)?|hg19|hg38)\b", re.IGNORECASE)
_VERSION_RE = re.compile(r"^(.+?)\.(\d+)(_PAR_Y)?$")
_CDS_FEATURES = ("CDS", "stop_codon", "start_codon")


def _strip_version(identifier: str) -> str:
    match = _VERSION_RE.match(identifier)
    return match.group(1) + (match.group(3) or "") if match else identifier


def _parse_attributes(text: str, where: str) -> tuple[dict[str, str], list[str]]:
    """GTF column 9 → (first value per key, all ``tag`` values)."""
    attrs: dict[str, str] = {}
    tags: list[str] = []
    pos, size = 0, len(text)
    while pos < size:
        if text[pos:].strip() in ("", ";"):
            break
        match = _ATTR_RE.match(text, pos)
        if match is None or match.end() == pos:
            hint = (
                " (it looks like GFF3 key=value, in a file whose first lines are GTF)"
                if "=" in text
                else ""
            )
            raise AnnotationError(
                f"{where}: attribute column is not GTF 'key \"value\";' pairs{hint}: "
                f"{text.strip()[:80]!r}"
            )
        key = match.group(1)
        value = match.group(2) if match.group(2) is not None else match.group(3)
        if key == "tag":
            tags.append(value)
        attrs.setdefault(key, value)
        pos = match.end()
    return attrs, tags


def _open_text(path: Path) -> IO[str]:
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


@dataclass
class _Transcript:
    transcript_id: str
    gene_id: str
    gene_name: str
    first_line: int
    name: str = ""
    tags: set[str] = field(default_factory=set)
    exons: set[tuple[int, int]] = field(default_factory=set)
    places: dict[tuple[str, str], int] = field(default_factory=dict)  # (contig, strand) → line
    cds_lo: int | None = None
    cds_hi: int | None = None

    @property
    def spliced_length(self) -> int:
        return sum(end - start + 1 for start, end in self.exons)

    def cds_length(self) -> int:
        if self.cds_lo is None or self.cds_hi is None:
            return 0
        lo, hi = self.cds_lo, self.cds_hi
        return sum(max(0, min(end, hi) - max(start, lo) + 1) for start, end in self.exons)


@dataclass
class _GtfScan:
    kind: str = "GTF"  # "GTF" or "GFF3": how the file was read (told from its content)
    build: str | None = None
    transcripts: dict[str, _Transcript] = field(default_factory=dict)
    gene_ids: set[str] = field(default_factory=set)
    gene_line: int | None = None
    names: set[str] = field(default_factory=set)  # every gene_name and gene_id seen
    data_lines: int = 0


def _gene_matches(query: str, attrs: Mapping[str, str]) -> bool:
    gene_id = attrs.get("gene_id", "")
    return query in (attrs.get("gene_name"), gene_id) or (
        bool(gene_id) and _strip_version(gene_id) == query
    )


@contextlib.contextmanager
def _open_gtf(path: Path, label: str) -> Iterator[IO[str]]:
    """The GTF as text (gzip or plain, told by content), with read errors as AnnotationError."""
    try:
        handle = _open_text(path)
    except FileNotFoundError:
        raise AnnotationError(f"GTF {label}: file not found") from None
    except OSError as exc:
        raise AnnotationError(f"GTF {label}: cannot read ({exc.strerror or exc})") from None
    try:
        with handle:
            yield handle
    except UnicodeDecodeError:
        raise AnnotationError(f"GTF {label}: not UTF-8 text (is it a GTF?)") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise AnnotationError(f"GTF {label}: truncated or corrupt gzip data ({exc})") from None
    except OSError as exc:
        raise AnnotationError(f"GTF {label}: read error ({exc})") from None


def _bad_line(label: str, lineno: int, fields: list[str]) -> AnnotationError:
    """The error for a data line that is not 9 columns with integer start <= end."""
    where = f"{label}:{lineno}"
    if len(fields) != 9:
        return AnnotationError(f"{where}: expected 9 tab-separated columns, found {len(fields)}")
    try:
        start, end = int(fields[3]), int(fields[4])
    except ValueError:
        return AnnotationError(
            f"{where}: start and end must be integers, found {fields[3]!r} and {fields[4]!r}"
        )
    if start < 1:
        return AnnotationError(f"{where}: start {start} < 1")
    return AnnotationError(f"{where}: start {start} > end {end}")


def _data_fields(raw: str, label: str, lineno: int) -> tuple[list[str], int, int] | None:
    """The 9 columns, start and end of a GTF/GFF3 data line (integers, 1 <= start <= end); None
    for a blank line; ``_bad_line``'s error otherwise."""
    fields = raw.rstrip("\r\n").split("\t")
    if len(fields) != 9:
        if not raw.strip():
            return None
        raise _bad_line(label, lineno, fields)
    try:
        start, end = int(fields[3]), int(fields[4])
    except ValueError:
        raise _bad_line(label, lineno, fields) from None
    if start < 1 or start > end:
        raise _bad_line(label, lineno, fields)
    return fields, start, end


def _note_build(scan: Any, raw: str) -> None:
    """A header line naming the build (``#!genome-build``, ``#description``) sets scan.build."""
    if scan.build is None and ("genome-build" in raw or "description" in raw):
        found = _BUILD_RE.search(raw)
        if found:
            scan.build = contigs.normalize_build(found.group(1))


def _scan_gtf(path: Path, label: str, gene: str) -> _GtfScan:
    """One pass over the GTF: check every line, keep the lines of ``gene``."""
    scan = _GtfScan()
    last_key = None
    with _open_gtf(path, label) as handle:
        for lineno, raw in enumerate(handle, start=1):
            if raw.startswith("#"):
                _note_build(scan, raw)
                continue
            line = _data_fields(raw, label, lineno)
            if line is None:
                continue
            fields, start, end = line
            scan.data_lines += 1
            attr_text = fields[8]
            # Every gene's name and id, for "did you mean"; parsed once per run of lines.
            key = attr_text.split(";", 1)[0]
            if key != last_key:
                last_key = key
                for pattern in (_GENE_ID_RE, _GENE_NAME_RE):
                    found = pattern.search(attr_text)
                    if found:
                        scan.names.add(found.group(1).strip())
            if gene in attr_text:
                _add_feature(scan, gene, fields, start, end, f"{label}:{lineno}", lineno)
    return scan


def _add_feature(
    scan: _GtfScan, gene: str, fields: list[str], start: int, end: int, where: str, lineno: int
) -> None:
    attrs, tags = _parse_attributes(fields[8], where)
    if not _gene_matches(gene, attrs):
        return
    feature = fields[2]
    scan.gene_ids.add(attrs.get("gene_id", gene))
    if scan.gene_line is None:
        scan.gene_line = lineno
    transcript_id = attrs.get("transcript_id")
    if not transcript_id or feature == "gene":
        if feature == "exon":
            raise AnnotationError(f"{where}: exon line without transcript_id")
        return
    tx = scan.transcripts.get(transcript_id)
    if tx is None:
        tx = _Transcript(
            transcript_id,
            attrs.get("gene_id", ""),
            attrs.get("gene_name", attrs.get("gene_id", gene)),
            lineno,
        )
        scan.transcripts[transcript_id] = tx
    tx.tags.update(tags)
    tx.name = tx.name or attrs.get("transcript_name", "")
    if feature in ("exon", "transcript", *_CDS_FEATURES):
        tx.places.setdefault((fields[0], fields[6]), lineno)
    if feature == "exon":
        tx.exons.add((start, end))
    elif feature in _CDS_FEATURES:
        tx.cds_lo = start if tx.cds_lo is None else min(tx.cds_lo, start)
        tx.cds_hi = end if tx.cds_hi is None else max(tx.cds_hi, end)


# --- GFF3 ----------------------------------------------------------------------------------------

_GFF3_PARTS = ("exon", *_CDS_FEATURES)  # features that hang under a transcript by Parent
_PARENT_RE = re.compile(r"(?:^|;)\s*Parent=([^;]*)")
_GFF3_ATTR_START = re.compile(r"\s*[^\s=;\"]+=")
_GTF_ATTR_START = re.compile(r"\s*[^\s=;\"]+\s+\S")
_GENE_PREFIXES = ("gene:", "gene-")  # Ensembl (gene:ENSG...) and RefSeq (gene-CD22) IDs
_TRANSCRIPT_PREFIXES = ("transcript:", "rna-")
_TRANSCRIPT_TYPE_RE = re.compile(r"(?:RNA|transcript)$")  # mRNA, transcript, lnc_RNA, ...


def _sniff_kind(path: Path, label: str) -> str:
    """'GFF3' or 'GTF', from the first lines: a ``##gff-version 3`` directive or the first
    data line's attribute column (``key=value`` vs ``key "value"``); the suffix only decides a
    file without data lines."""
    with _open_gtf(path, label) as handle:
        for raw in itertools.islice(handle, 10000):
            if raw.startswith("##gff-version"):
                return "GFF3" if raw.split()[1:2] and raw.split()[1].startswith("3") else "GTF"
            if raw.startswith("#") or not raw.strip():
                continue
            fields = raw.rstrip("\r\n").split("\t")
            if len(fields) != 9:
                break
            if _GFF3_ATTR_START.match(fields[8]) and not _GTF_ATTR_START.match(fields[8]):
                return "GFF3"
            return "GTF"
    suffixes = [x.lower() for x in path.suffixes]
    return "GFF3" if any(x in (".gff", ".gff3") for x in suffixes) else "GTF"


def _scan_annotation(path: Path, label: str, gene: str) -> _GtfScan:
    if _sniff_kind(path, label) == "GFF3":
        return _scan_gff3(path, label, gene)
    return _scan_gtf(path, label, gene)


def _gff3_attributes(text: str, where: str) -> dict[str, list[str]]:
    """GFF3 column 9 → key → values (comma-separated multiple values, percent-decoded)."""
    attrs: dict[str, list[str]] = {}
    for part in text.strip().split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise AnnotationError(
                f"{where}: attribute column is not GFF3 key=value pairs: {text.strip()[:80]!r}"
            )
        attrs.setdefault(key, []).extend(urllib.parse.unquote(v) for v in value.split(","))
    return attrs


def _unquote_all(value: str) -> list[str]:
    return [urllib.parse.unquote(v) for v in value.split(",")]


def _first(attrs: Mapping[str, list[str]], *keys: str) -> str:
    for key in keys:
        values = attrs.get(key)
        if values and values[0]:
            return values[0]
    return ""


def _strip_prefix(identifier: str, prefixes: Sequence[str]) -> str:
    for prefix in prefixes:
        if identifier.startswith(prefix):
            return identifier[len(prefix) :]
    return identifier


def _gff3_gene_id(attrs: Mapping[str, list[str]]) -> str:
    return _first(attrs, "gene_id", "geneID") or _strip_prefix(_first(attrs, "ID"), _GENE_PREFIXES)


def _gff3_gene_matches(query: str, attrs: Mapping[str, list[str]], *, own_id: bool) -> bool:
    """``query`` is the gene's name or id (Ensembl GFF3 ids have no version: one given in the
    query is ignored). ``own_id``: the feature's ID is the gene's (a gene line)."""
    gene_id = _gff3_gene_id(attrs) if own_id else _first(attrs, "gene_id", "geneID")
    names = {_first(attrs, k) for k in ("Name" if own_id else "", "gene_name", "gene")} - {""}
    if query in names:
        return True
    if not gene_id:
        return False
    unversioned = _VERSION_RE.match(gene_id) is None
    return _gene_matches(query, {"gene_id": gene_id}) or (
        unversioned and _strip_version(query) == gene_id
    )


@dataclass
class _Gff3Gene:
    gene_id: str
    name: str
    line: int


def _scan_gff3(path: Path, label: str, gene: str) -> _GtfScan:
    """One pass over a GFF3: check every line, follow gene → transcript → exon/CDS by
    ID/Parent. Children seen before their parent (allowed, rare) wait until the end."""
    scan = _GtfScan(kind="GFF3")
    genes: dict[str, _Gff3Gene] = {}  # ID of a matching gene feature → gene
    by_id: dict[str, _Transcript] = {}  # ID of a transcript of the gene → transcript
    seen_ids: set[str] = set()  # IDs of every feature other than exon/CDS (parents)
    waiting: list[tuple[int, list[str], int, int]] = []  # parts whose parent is not seen yet
    waiting_nodes: list[tuple[int, list[str], dict[str, list[str]]]] = []  # transcripts, same
    with _open_gtf(path, label) as handle:
        for lineno, raw in enumerate(handle, start=1):
            if raw.startswith("#"):
                if raw.startswith("##FASTA"):
                    break
                _note_build(scan, raw)
                continue
            if raw.startswith(">"):  # FASTA without its ##FASTA directive
                break
            line = _data_fields(raw, label, lineno)
            if line is None:
                continue
            fields, start, end = line
            scan.data_lines += 1
            if fields[2] in _GFF3_PARTS:
                # Most lines: parts of other genes. Only their Parent is read here.
                found = _PARENT_RE.search(fields[8])
                if found is None:
                    continue
                value = found.group(1)
                parents = _unquote_all(value) if "%" in value else value.split(",")
                if any(p in by_id for p in parents):
                    _gff3_part(by_id, fields, start, end, f"{label}:{lineno}", lineno)
                elif any(p not in seen_ids for p in parents):
                    waiting.append((lineno, fields, start, end))
                continue
            where = f"{label}:{lineno}"
            attrs = _gff3_attributes(fields[8], where)
            feature_id = _first(attrs, "ID")
            if feature_id:
                seen_ids.add(feature_id)
            parents = attrs.get("Parent", [])
            if not parents and _TRANSCRIPT_TYPE_RE.search(fields[2]):
                # A transcript without a gene line (gffread output: geneID=, gene_name=).
                for key in ("gene_name", "gene", "geneID", "gene_id"):
                    if _first(attrs, key):
                        scan.names.add(_first(attrs, key))
                if _gff3_gene_matches(gene, attrs, own_id=False):
                    gene_id = _first(attrs, "gene_id", "geneID")
                    name = _first(attrs, "gene_name", "gene") or gene_id
                    scan.gene_ids.add(gene_id or name)
                    if scan.gene_line is None:
                        scan.gene_line = lineno
                    orphan = _Gff3Gene(gene_id, name, lineno)
                    _gff3_transcript(scan, by_id, orphan, attrs, fields, where, lineno)
                continue
            is_gene = not parents or fields[2].endswith("gene")
            if is_gene:
                for key in ("Name", "gene_name", "gene", "gene_id"):
                    if _first(attrs, key):
                        scan.names.add(_first(attrs, key))
                if feature_id and _gff3_gene_matches(gene, attrs, own_id=True):
                    gene_id = _gff3_gene_id(attrs)
                    name = _first(attrs, "Name", "gene_name", "gene") or gene_id
                    genes[feature_id] = _Gff3Gene(gene_id, name, lineno)
                    scan.gene_ids.add(gene_id)
                    if scan.gene_line is None:
                        scan.gene_line = lineno
                continue
            parent_gene = next((genes[p] for p in parents if p in genes), None)
            if parent_gene is not None:
                _gff3_transcript(scan, by_id, parent_gene, attrs, fields, where, lineno)
            elif any(p not in seen_ids for p in parents):
                waiting_nodes.append((lineno, fields, attrs))
    for lineno, fields, attrs in waiting_nodes:
        parent_gene = next((genes[p] for p in attrs["Parent"] if p in genes), None)
        if parent_gene is not None:
            where = f"{label}:{lineno}"
            _gff3_transcript(scan, by_id, parent_gene, attrs, fields, where, lineno)
    for lineno, fields, start, end in waiting:
        _gff3_part(by_id, fields, start, end, f"{label}:{lineno}", lineno)
    # A feature under the gene without exons (a RefSeq "exon-less" record) is no transcript.
    with_exons = {k: t for k, t in scan.transcripts.items() if t.exons}
    if with_exons:
        scan.transcripts = with_exons
    return scan


def _gff3_transcript(
    scan: _GtfScan,
    by_id: dict[str, _Transcript],
    gene: _Gff3Gene,
    attrs: Mapping[str, list[str]],
    fields: list[str],
    where: str,
    lineno: int,
) -> None:
    feature_id = _first(attrs, "ID")
    if not feature_id:
        raise AnnotationError(f"{where}: {fields[2]} of gene {gene.name} without an ID")
    transcript_id = _first(attrs, "transcript_id") or _strip_prefix(
        feature_id, _TRANSCRIPT_PREFIXES
    )
    if transcript_id in scan.transcripts:  # e.g. a RefSeq transcript on X and on Y
        transcript_id = feature_id
    tx = _Transcript(transcript_id, gene.gene_id, gene.name, lineno)
    tx.name = _first(attrs, "transcript_name", "Name")
    # RefSeq spells tags with spaces ("MANE Select"), Ensembl with underscores.
    tx.tags.update(t.strip().replace(" ", "_") for t in attrs.get("tag", []) if t.strip())
    tx.places.setdefault((fields[0], fields[6]), lineno)
    scan.transcripts[transcript_id] = tx
    by_id[feature_id] = tx


def _gff3_part(
    by_id: Mapping[str, _Transcript],
    fields: list[str],
    start: int,
    end: int,
    where: str,
    lineno: int,
) -> None:
    """An exon/CDS/codon line: added to each of its parents that is a transcript of the gene."""
    attrs = _gff3_attributes(fields[8], where)  # checked in full: it belongs to the gene
    for parent in attrs.get("Parent", []):
        tx = by_id.get(parent)
        if tx is None:
            continue
        tx.places.setdefault((fields[0], fields[6]), lineno)
        if fields[2] == "exon":
            tx.exons.add((start, end))
        else:
            tx.cds_lo = start if tx.cds_lo is None else min(tx.cds_lo, start)
            tx.cds_hi = end if tx.cds_hi is None else max(tx.cds_hi, end)


def _rank(tx: _Transcript) -> tuple[int, int, str]:
    return (-tx.cds_length(), -tx.spliced_length, tx.transcript_id)


def _choose(transcripts: Sequence[_Transcript], gene: str) -> tuple[_Transcript, str]:
    """Default transcript: MANE_Select > Ensembl_canonical > basic with the longest CDS >
    longest CDS > longest transcript; ties by id."""
    count = f"{len(transcripts)} transcript{'s' if len(transcripts) != 1 else ''} of {gene}"
    for tag, why in (("MANE_Select", "tag MANE_Select"), ("Ensembl_canonical", None)):
        tagged = sorted((t for t in transcripts if tag in t.tags), key=_rank)
        if tagged:
            reason = why or "tag Ensembl_canonical (no MANE_Select tag)"
            return tagged[0], f"{reason}; chosen from {count}"
    basic = sorted((t for t in transcripts if "basic" in t.tags), key=_rank)
    if basic:
        best = basic[0]
        return best, (
            f"tag basic with the longest CDS ({best.cds_length()} nt incl. stop; "
            f"{best.spliced_length} nt spliced); no MANE_Select or Ensembl_canonical tag; "
            f"chosen from {count}"
        )
    best = sorted(transcripts, key=_rank)[0]
    if best.cds_length():
        return best, (
            f"longest CDS ({best.cds_length()} nt incl. stop); no MANE_Select, "
            f"Ensembl_canonical or basic tag; chosen from {count}"
        )
    return best, (
        f"longest transcript ({best.spliced_length} nt spliced; no CDS in the GTF); "
        f"no MANE_Select, Ensembl_canonical or basic tag; chosen from {count}"
    )


def _find_transcript(scan: _GtfScan, wanted: str) -> _Transcript | None:
    """By transcript_id (exact, or without version when none is given) or transcript_name."""
    if wanted in scan.transcripts:
        return scan.transcripts[wanted]
    # Ensembl GTF/GFF3 ids carry no version: a version in ``wanted`` is then ignored.
    hits = {
        t.transcript_id: t
        for t in scan.transcripts.values()
        if wanted in (_strip_version(t.transcript_id), t.name)
        or (
            _VERSION_RE.match(t.transcript_id) is None and t.transcript_id == _strip_version(wanted)
        )
    }
    return next(iter(hits.values())) if len(hits) == 1 else None


def load_gtf(path: str | Path, gene: str, transcript: str | None = None) -> GeneModel:
    """One transcript of ``gene`` from a GTF or GFF3 (plain or gzipped) as a GeneModel.

    GTF or GFF3 is told from the content (``##gff-version 3``, or ``key=value`` attributes),
    not from the file name. ``gene`` matches gene_name or gene_id (version optional; in GFF3
    also Name, gene and ID); ``transcript`` matches transcript_id (version optional) or
    transcript_name (GFF3: Name). Without it the default rule picks one (see ``selection`` of
    the result). The CDS spans the CDS, start_codon and stop_codon features.
    """
    label = str(path)
    gene = gene.strip()
    if not gene:
        raise AnnotationError(f"annotation {label}: empty gene name")
    scan = _scan_annotation(Path(path), label, gene)
    kind = scan.kind
    what = f"{kind} {label}"
    if not scan.transcripts:
        if scan.gene_line is not None:
            raise AnnotationError(
                f"{what}: gene {gene} (line {scan.gene_line}) has no transcript or exon lines"
            )
        if scan.data_lines == 0:
            raise AnnotationError(f"{what}: no annotation lines (empty file?)")
        if not scan.names:
            raise AnnotationError(
                f"{what}: gene {gene} not found; no line has a gene_id or gene_name "
                f"attribute (is this a {kind}?)"
            )
        by_upper: dict[str, str] = {}
        for name in sorted(scan.names):
            by_upper.setdefault(name.upper(), name)
        close = difflib.get_close_matches(gene.upper(), list(by_upper), n=5, cutoff=0.6)
        hint = (
            f"; close names: {', '.join(by_upper[c] for c in close)}"
            if close
            else "; no similar gene name"
        )
        raise AnnotationError(
            f"{what}: gene {gene} not found by gene_name or gene_id "
            f"({len(scan.names)} gene names/ids read){hint}"
        )
    all_tx = sorted(scan.transcripts.values(), key=lambda t: t.transcript_id)
    if transcript is not None:
        chosen = _find_transcript(scan, transcript.strip())
        if chosen is None:
            listed = [t.transcript_id + (f" ({t.name})" if t.name else "") for t in all_tx]
            shown = ", ".join(listed[:40]) + (
                f", … ({len(listed)} in all)" if len(listed) > 40 else ""
            )
            raise AnnotationError(
                f"{what}: gene {gene} has no transcript {transcript}; its transcripts: {shown}"
            )
        selection = f"transcript {chosen.transcript_id} as requested ({transcript})"
    else:
        chosen, selection = _choose(all_tx, gene)
    return _to_model(chosen, scan, label, selection)


def _to_model(tx: _Transcript, scan: _GtfScan, label: str, selection: str) -> GeneModel:
    what = f"{scan.kind} {label}"
    if len(tx.places) > 1:
        places = ", ".join(
            f"{contig} {strand} (line {line})" for (contig, strand), line in tx.places.items()
        )
        raise AnnotationError(
            f"{what}: transcript {tx.transcript_id} has features on several "
            f"contigs/strands: {places}"
        )
    if not tx.exons:
        raise AnnotationError(
            f"{what}: transcript {tx.transcript_id} (line {tx.first_line}) has no exon lines"
        )
    ((contig, strand),) = tx.places
    if strand not in ("+", "-"):
        raise AnnotationError(
            f"{what}: transcript {tx.transcript_id} has strand {strand!r}; need + or -"
        )
    ordered = sorted(tx.exons)
    for (s1, e1), (s2, e2) in itertools.pairwise(ordered):
        if s2 <= e1 + 1:
            raise AnnotationError(
                f"{what}: transcript {tx.transcript_id} has overlapping or abutting exons "
                f"{s1}-{e1} and {s2}-{e2}"
            )
    if strand == "-":
        ordered.reverse()
    exons = tuple(Exon(i, s, e) for i, (s, e) in enumerate(ordered, start=1))
    gene_ids = sorted(scan.gene_ids)
    if len(gene_ids) > 1:
        selection += f"; gene name matched several gene_ids: {', '.join(gene_ids)}"
    lo, hi = min(s for s, _ in ordered), max(e for _, e in ordered)
    if tx.cds_lo is not None and tx.cds_hi is not None and not lo <= tx.cds_lo <= tx.cds_hi <= hi:
        raise AnnotationError(
            f"{what}: transcript {tx.transcript_id} has CDS {tx.cds_lo}-{tx.cds_hi} "
            f"outside its exons {lo}-{hi}"
        )
    return GeneModel(
        annotated_junctions=_transcript_introns(scan.transcripts.values(), contig, strand),
        gene=tx.gene_name,
        transcript=tx.transcript_id,
        contig=contig,
        strand=strand,
        build=scan.build,
        exons=exons,
        cds_start=tx.cds_lo,
        cds_end=tx.cds_hi,
        source=f"{what} (gene_id {tx.gene_id or '?'})",
        selection=selection,
        known_events=(),
    )


def _transcript_introns(
    transcripts: Iterable[_Transcript], contig: str, strand: str
) -> tuple[tuple[int, int, tuple[str, ...]], ...]:
    """(start, end, transcript ids) of every intron of the transcripts on ``contig``/``strand``
    (1-based inclusive, the GTF's system); transcripts elsewhere or with bad exons are left out."""
    by_intron: dict[tuple[int, int], list[str]] = {}
    for tx in transcripts:
        if set(tx.places) != {(contig, strand)}:
            continue
        for (_, e1), (s2, _) in itertools.pairwise(sorted(tx.exons)):
            if s2 > e1 + 1:
                by_intron.setdefault((e1 + 1, s2 - 1), []).append(tx.transcript_id)
    return tuple((s, e, tuple(sorted(ids))) for (s, e), ids in sorted(by_intron.items()))


# --- model vs BAM header -------------------------------------------------------------------------


def check_model_against_header(model: GeneModel, header_lengths: Mapping[str, int]) -> GeneModel:
    """The model under the header's contig name, after refusing a build or length mismatch.

    A model without a build takes the header's (when it can be told). Raises AnnotationError
    naming what the model needs and what the header has.
    """
    build = contigs.normalize_build(model.build)
    who = f"model {model.gene} ({build or 'build unknown'})"
    try:
        match = contigs.resolve_contig(header_lengths, model.contig)
    except AnnotationError as exc:
        raise AnnotationError(f"{who} needs {model.contig}: {exc}") from None
    header_build = contigs.detect_build(header_lengths)
    needed = contigs.expected_length(contigs.molecule_of(model.contig), build)
    if build is not None and match.fits and build not in match.fits:
        need = f" of length {needed}" if needed else ""
        raise AnnotationError(
            f"{who} needs {model.contig}{need}; the BAM header has {match.name} of length "
            f"{match.length} ({'/'.join(match.fits)})"
        )
    if build is not None and header_build is not None and header_build != build:
        raise AnnotationError(
            f"{who} needs a {build} BAM; the BAM header's contig lengths fit {header_build} "
            f"({match.name} has length {match.length})"
        )
    last = model.span[1]
    if last > match.length:
        raise AnnotationError(
            f"{who} has exons up to {model.contig}:{last}; the BAM header's {match.name} "
            f"is only {match.length} bp long"
        )
    resolved = model.with_contig(match.name)
    if build is None:
        build = header_build or match.build
    if build != model.build:
        resolved = dataclasses.replace(resolved, build=build)
    return resolved


# --- model vs reference and reads: an annotation of another build ---------------------------------

# Splice-site dinucleotides (donor-acceptor, transcript strand): GT-AG, GC-AG, AT-AC cover >99.9 %
# of human introns (Burset et al. 2000, Nucleic Acids Res 28:4364; Sibley et al. 2016, Nat Rev
# Genet 17:407). As read on the + strand, a - strand intron shows the reverse complements.
_CANONICAL_MOTIFS = {"+": {"GT-AG", "GC-AG", "AT-AC"}, "-": {"CT-AC", "CT-GC", "GT-AT"}}
MIN_MOTIF_INTRONS = 3  # introns with known bases at both ends before the motifs decide
MIN_SHIFTED_INTRONS = 3  # model introns found at one common offset before the reads decide


def check_splice_motifs(
    model: GeneModel, fetch: Callable[[int, int], str], annotation: str, reference: str
) -> tuple[int, int]:
    """Refuse a model whose introns do not start and end like introns in the reference.

    ``fetch(start0, end0)``: reference bases, 0-based half-open. Introns with an N at either
    end are not counted. With at least MIN_MOTIF_INTRONS counted and fewer than half of them
    canonical (GT-AG, GC-AG, AT-AC), the annotation's coordinates are of another build than the
    reference (and the BAM, which check_reference matched to it): AnnotationError. Returns
    (canonical, counted).
    """
    canonical = counted = 0
    found: list[str] = []
    for intron in model.introns():
        left = fetch(intron.start - 1, intron.start + 1)
        right = fetch(intron.end - 2, intron.end)
        motif = f"{left}-{right}"
        if len(motif) != 5 or any(base not in "ACGT" for base in left + right):
            continue
        counted += 1
        canonical += motif in _CANONICAL_MOTIFS[model.strand]
        found.append(motif)
    if counted >= MIN_MOTIF_INTRONS and 2 * canonical < counted:
        shown = ", ".join(dict.fromkeys(found[:8]))
        raise AnnotationError(
            f"{annotation}: {model.gene} {model.transcript}: {counted - canonical} of {counted} "
            f"introns lack a GT-AG/GC-AG/AT-AC splice motif in {reference} (expected nearly "
            f"all; {model.strand} strand, + strand bases found: {shown}): the annotation's "
            "coordinates are of another build than the reference and BAM; give the annotation "
            "of their build"
        )
    return canonical, counted


def check_junctions_fit_model(
    model: GeneModel, junctions: Iterable[tuple[int, int, int]], annotation: str, bam: str
) -> str | None:
    """Refuse a model whose introns the reads use only at one constant shift; warn-text when
    the reads splice inside the gene but never at its introns.

    ``junctions``: (first intron base, last intron base, reads), 1-based inclusive. A liftover
    between builds moves a gene by one offset, so a model of the other build meets reads whose
    junctions have its intron lengths, all moved by that offset: at least MIN_SHIFTED_INTRONS
    model introns found at one offset != 0 and none in place raises AnnotationError. Returns a
    warning (or None) when >= 20 spliced reads lie inside the gene and none at its introns:
    weaker evidence (an unexpressed gene beside a spliced neighbour looks the same).
    """
    introns = model.introns()
    in_place = {(i.start, i.end) for i in introns}
    lo, hi = model.span
    rows = [(s, e, n) for s, e, n in junctions if n > 0]
    if any((s, e) in in_place for s, e, _ in rows):
        return None
    by_length: dict[int, list[Intron]] = {}
    for intron in introns:
        by_length.setdefault(intron.length, []).append(intron)
    shifted: dict[int, set[int]] = {}
    reads_at: dict[int, int] = {}
    for s, e, n in rows:
        for intron in by_length.get(e - s + 1, ()):
            offset = s - intron.start
            shifted.setdefault(offset, set()).add(intron.number)
            reads_at[offset] = reads_at.get(offset, 0) + n
    if shifted:
        offset, hit = max(shifted.items(), key=lambda kv: (len(kv[1]), reads_at[kv[0]]))
        if offset != 0 and len(hit) >= MIN_SHIFTED_INTRONS:
            raise AnnotationError(
                f"{annotation}: {model.gene} {model.transcript}: the reads of {bam} splice at "
                f"none of its {len(introns)} introns in place, but at {len(hit)} of them shifted "
                f"by {offset:+d} bp ({reads_at[offset]} reads): the annotation's coordinates "
                "are of another build than the BAM; give the annotation of the BAM's build"
            )
    inside = sum(n for s, e, n in rows if lo <= s and e <= hi)
    if inside >= 20 and introns:
        return (
            f"{annotation}: none of the {inside} spliced reads of {bam} inside {model.gene} "
            f"({model.contig}:{lo}-{hi}) splices at one of its {len(introns)} introns: is the "
            "annotation of the BAM's build?"
        )
    return None
