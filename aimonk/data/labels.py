"""Reading label files: the reference `labels.txt` format and CSV with a header.

A label table is a list of filenames and a float matrix of shape (N, K) whose
entries are 1.0, 0.0 or NaN (unknown). K is whatever the file says it is.
"""
from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd

POSITIVE_TOKENS = {"1", "1.0", "true", "yes"}
NEGATIVE_TOKENS = {"0", "0.0", "false", "no"}
MISSING_TOKENS = {"na", "nan", "n/a", "none", "null", "", "?", "-"}
MAX_ATTRIBUTES = 10_000  # far beyond any labelling effort; a runaway line of tokens stops here, not in memory
HEADER_WORDS = {"filename", "file", "image", "images", "name", "path"}  # how a header line starts
SHOWN = 80  # the most characters of a user's token an error message quotes
SHORT = 60  # the most characters of a name a report line or a figure prints
# What a terminal or a web page acts on instead of showing: control characters (C0, DEL, C1) and the Unicode
# bidi controls (marks, embeddings, overrides, isolates). A name or a file name holding one is refused.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(text: str) -> str:
    """A token as an error message quotes it: repr, cut to a readable length."""
    return repr(text) if len(text) <= SHOWN else f"{text[:SHOWN]!r}... ({len(text):,} characters)"


def printable(text: str) -> str:
    """`text` with every control or bidi character written as its escape ('\\x1b', '\\n', '\\u202e'): safe to
    print to a terminal."""
    return UNSAFE.sub(lambda match: repr(match.group())[1:-1], str(text))


def short_name(name: str, limit: int = SHORT) -> str:
    """A name (an attribute's, a file's) as a report line or a figure prints it: control and bidi characters
    escaped, and past `limit` characters cut with an ellipsis."""
    text = printable(name)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def refuse_unsafe(path, line, what: str, name: str) -> None:
    """A LabelFileError when `name` (what: e.g. 'the attribute name in column 3') holds a control or bidi
    character; the character and the name are shown escaped, on one line."""
    found = UNSAFE.search(name)
    if found:
        raise LabelFileError(path, line, f"{what} {shown(name)} holds {found.group()!r} (U+{ord(found.group()):04X}), "
                                         "a control or bidi character; names may not hold control characters (C0, C1, "
                                         "DEL) or bidi controls, which a terminal or a page acts on rather than "
                                         "shows: rename it")


class LabelFileError(ValueError):
    """A label file that cannot be read; the message names the file and line."""

    def __init__(self, path, line: int | None, message: str):
        self.path, self.line = Path(path), line
        where = f"{path}, line {line}" if line else str(path)
        super().__init__(f"{where}: {message}")


@dataclass
class LabelTable:
    filenames: list[str]
    values: np.ndarray  # (N, K) float32 in {0, 1, nan}
    attributes: list[str]
    source: Path | None = None
    replaced_tokens: int = 0  # unknown tokens turned into NA (lenient mode)
    named: bool = False  # a header named the attributes (else they are Attr1..AttrK, matched by position)
    lines: list[int] = field(default_factory=list)  # the line of each row in the source file
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.filenames)

    @property
    def num_attributes(self) -> int:
        return self.values.shape[1]

    def subset(self, rows) -> "LabelTable":
        rows = np.asarray(rows, dtype=int)
        return LabelTable([self.filenames[i] for i in rows], self.values[rows], list(self.attributes), self.source,
                          named=self.named, lines=[self.lines[i] for i in rows] if self.lines else [])

    def line_of(self, filename: str) -> int | None:
        return self.lines[self.filenames.index(filename)] if self.lines else None

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.values, columns=self.attributes)
        frame.insert(0, "filename", self.filenames)
        return frame


def parse_token(token: str) -> float | None:
    """1/0/NA (any case, `1.0`/`0.0` too) to 1.0/0.0/nan; None for anything else."""
    t = token.strip().lower()
    if t in POSITIVE_TOKENS:
        return 1.0
    if t in NEGATIVE_TOKENS:
        return 0.0
    if t in MISSING_TOKENS:
        return math.nan
    return None


def default_attribute_names(k: int) -> list[str]:
    return [f"Attr{i + 1}" for i in range(k)]


def read_labels(path, unknown_as_na: bool = False) -> LabelTable:
    """Read a label file. `.csv` files have a header naming the attributes; whitespace files may have one
    (a first line with no 1/0/NA among its labels), else their attributes are Attr1..AttrK by position."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    text = _read_text(path)
    if path.suffix.lower() == ".csv":
        rows, attributes, header_line = _csv_rows(path, text)
    else:
        rows, attributes, header_line = _whitespace_rows(path, text)
    if attributes is not None:
        _check_attribute_names(path, header_line, attributes)
    if not rows:
        raise LabelFileError(path, None, "the file holds no labelled images")
    return _build_table(path, rows, attributes, unknown_as_na)


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LabelFileError(path, None, f"cannot be read ({error.strerror or type(error).__name__})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise LabelFileError(path, line, f"not UTF-8 text (byte 0x{data[error.start]:02x}); save the file as "
                                         "UTF-8") from None


def _whitespace_rows(path: Path, text: str) -> tuple[list[tuple[int, list[str]]], list[str] | None, int]:
    """Rows of (line number, fields), the header's names (or None) and its line. Lines end at \n, \r\n or \r
    only: a form feed or U+2028 inside a line separates fields like any whitespace and never shifts the line
    numbers an error names."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    rows = [(number, line.split()) for number, line in enumerate(lines, start=1) if line.strip()]
    if rows and len(rows[0][1]) > 1 and all(parse_token(token) is None for token in rows[0][1][1:]):
        return rows[1:], [name for name in rows[0][1][1:]], rows[0][0]  # a header line: no label among its fields
    if rows and rows[0][1][0].lower() in HEADER_WORDS:
        raise LabelFileError(path, rows[0][0], f"this looks like a header (it starts with {rows[0][1][0]!r}), but "
                                               "its attribute names read as labels (1, 0, NA, yes, no, none, ...): "
                                               "name the attributes with other words, or use labels.csv")
    return rows, None, 0


def _refuse_other_separator(path: Path, line: str) -> None:
    """A one-column header split by ; tab or | is a file written with another separator: say which."""
    for separator, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'")):
        if separator in line:
            raise LabelFileError(path, 1, f"the header seems separated by {name}, not commas: a CSV label file is "
                                          "comma-separated (filename,<attribute names...>)")


def _csv_rows(path: Path, text: str) -> tuple[list[tuple[int, list[str]]], list[str], int]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header and len(header) == 1:
            _refuse_other_separator(path, header[0])
        if not header or len(header) < 2:
            raise LabelFileError(path, 1, "a CSV label file needs a header: filename,<attribute names...>")
        if all(parse_token(cell) is not None for cell in header[1:]):
            raise LabelFileError(path, 1, f"the first line {','.join(header)!r} looks like data, not a header; a CSV "
                                          "label file starts with filename,<attribute names...>")
        attributes = [name.strip() for name in header[1:]]
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as error:
        raise LabelFileError(path, reader.line_num, f"not valid CSV ({error})") from None
    return rows, attributes, 1


def _check_attribute_names(path, line, attributes: list[str]) -> None:
    empty = [i + 2 for i, name in enumerate(attributes) if not name.strip()]
    if empty:
        raise LabelFileError(path, line, f"the header's column {empty[0]} has no attribute name")
    for column, name in enumerate(attributes, start=2):
        refuse_unsafe(path, line, f"the attribute name in column {column}", name)
    repeated = sorted({name for name in attributes if attributes.count(name) > 1})
    if repeated:
        raise LabelFileError(path, line, f"the header names attribute {repeated[0]!r} more than once")


def clean_filename(path, line: int, name: str) -> str:
    """The filename as a relative POSIX path ('./a.jpg' -> 'a.jpg'); paths leaving the image folder are refused."""
    if "\x00" in name:
        raise LabelFileError(path, line, f"filename {shown(name)} holds a NUL byte, which no file name can")
    refuse_unsafe(path, line, "the filename (column 1)", name.strip())
    if len(name.encode("utf-8", "surrogateescape")) > 4096 or any(len(part.encode("utf-8", "surrogateescape")) > 255
                                                                   for part in name.replace("\\", "/").split("/")):
        raise LabelFileError(path, line, f"filename {shown(name)} is longer than a file name can be (255 bytes a "
                                         "name, 4096 a path)")
    relative = PurePosixPath(name.strip().replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts or PureWindowsPath(name.strip()).drive:
        raise LabelFileError(path, line, f"filename {shown(name)} points outside the image folder; give paths "
                                         "relative to it")
    return relative.as_posix()


def _build_table(path, rows, attributes, unknown_as_na) -> LabelTable:
    counts = Counter(len(fields) for _, fields in rows)
    expected = len(attributes) + 1 if attributes else counts.most_common(1)[0][0]
    if expected - 1 > MAX_ATTRIBUTES:
        raise LabelFileError(path, rows[0][0], f"{expected - 1:,} attributes is more than the {MAX_ATTRIBUTES:,} "
                                               "aimonk takes: is this a label file?")
    if expected < 2:
        raise LabelFileError(path, rows[0][0], "expected a filename followed by at least one label")
    filenames, values, lines, seen, replaced = [], [], [], {}, 0
    for number, fields in rows:
        if len(fields) != expected:
            spaced = len(fields) > expected and parse_token(fields[1]) is None  # 'my photo.jpg 1 0'
            raise LabelFileError(path, number, f"expected {expected} fields (filename and {expected - 1} labels"
                                               f"{'' if attributes else ', as on most lines'}), found {len(fields)}"
                                 + ("; a filename with spaces? labels.txt separates fields by whitespace: use "
                                    "labels.csv (comma-separated) for such names" if spaced else ""))
        name = clean_filename(path, number, fields[0])
        if name in seen:
            raise LabelFileError(path, number, f"duplicate filename {shown(name)} (first on line {seen[name]})")
        seen[name] = number
        parsed = []
        for column, token in enumerate(fields[1:], start=1):
            value = parse_token(token)
            if value is None:
                if not unknown_as_na:
                    raise LabelFileError(
                        path, number,
                        f"unknown label {shown(token)} in column {column + 1}; expected 1, 0 or NA "
                        "(use --unknown-as-na to read it as missing)",
                    )
                value, replaced = math.nan, replaced + 1
            parsed.append(value)
        filenames.append(name)
        values.append(parsed)
        lines.append(number)
    table = LabelTable(
        filenames, np.asarray(values, dtype=np.float32),
        attributes or default_attribute_names(expected - 1), path, replaced, named=attributes is not None,
        lines=lines,
    )
    if replaced:
        table.warnings.append(f"{path}: {replaced} unknown label token(s) read as NA")
    return table


def check_trainable(table: LabelTable, among: str = "") -> None:
    """Every attribute needs a known positive and a known negative to learn from; else an error naming it
    (among: which of the listed images `table` holds, e.g. " among the 37 listed images on disk")."""
    for column, name in enumerate(table.attributes):
        positive, negative = int((table.values[:, column] == 1).sum()), int((table.values[:, column] == 0).sum())
        if not positive or not negative:
            raise LabelFileError(table.source, None, f"attribute {name!r} has {positive} positive and {negative} "
                                                     f"negative known labels{among}; training needs at least one of "
                                                     "each (label more images or drop the column)")


def summarize(values: np.ndarray, attributes: list[str]) -> pd.DataFrame:
    """The imbalance table: positive, negative, NA and positive rate of known labels."""
    positive = np.nansum(values == 1, axis=0)
    negative = np.nansum(values == 0, axis=0)
    missing = np.isnan(values).sum(axis=0)
    known = positive + negative
    rate = np.divide(positive, known, out=np.full(len(attributes), np.nan), where=known > 0)
    return pd.DataFrame(
        {"positive": positive, "negative": negative, "NA": missing, "positive_rate": rate},
        index=pd.Index(attributes, name="attribute"),
    ).astype({"positive": int, "negative": int, "NA": int})
