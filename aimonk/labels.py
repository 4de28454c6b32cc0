"""Reading label files: the reference `labels.txt` format and CSV with a header.

A label table is a list of filenames and a float matrix of shape (N, K) whose
entries are 1.0, 0.0 or NaN (unknown). K is whatever the file says it is.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

POSITIVE_TOKENS = {"1", "1.0", "true", "yes"}
NEGATIVE_TOKENS = {"0", "0.0", "false", "no"}
MISSING_TOKENS = {"na", "nan", "n/a", "none", "null", "", "?", "-"}


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
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.filenames)

    @property
    def num_attributes(self) -> int:
        return self.values.shape[1]

    def subset(self, rows) -> "LabelTable":
        rows = np.asarray(rows)
        return LabelTable([self.filenames[i] for i in rows], self.values[rows], list(self.attributes), self.source)

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
    """Read a label file; `.csv` files have a header naming the attributes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    if path.suffix.lower() == ".csv":
        rows, attributes = _csv_rows(path)
    else:
        rows, attributes = _whitespace_rows(path), None
    if not rows:
        raise LabelFileError(path, None, "the file holds no labelled images")
    return _build_table(path, rows, attributes, unknown_as_na)


def _whitespace_rows(path: Path) -> list[tuple[int, list[str]]]:
    rows = []
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                rows.append((number, line.split()))
    return rows


def _csv_rows(path: Path) -> tuple[list[tuple[int, list[str]]], list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or len(header) < 2:
            raise LabelFileError(path, 1, "a CSV label file needs a header: filename,<attribute names...>")
        attributes = [name.strip() for name in header[1:]]
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    return rows, attributes


def _build_table(path, rows, attributes, unknown_as_na) -> LabelTable:
    expected = len(attributes) + 1 if attributes else len(rows[0][1])
    if expected < 2:
        raise LabelFileError(path, rows[0][0], "expected a filename followed by at least one label")
    filenames, values, seen, replaced = [], [], {}, 0
    for number, fields in rows:
        if len(fields) != expected:
            raise LabelFileError(
                path, number, f"expected {expected} fields (filename and {expected - 1} labels), found {len(fields)}"
            )
        name = fields[0].strip()
        if name in seen:
            raise LabelFileError(path, number, f"duplicate filename {name!r} (first on line {seen[name]})")
        seen[name] = number
        parsed = []
        for column, token in enumerate(fields[1:], start=1):
            value = parse_token(token)
            if value is None:
                if not unknown_as_na:
                    raise LabelFileError(
                        path, number,
                        f"unknown label {token!r} in column {column + 1}; expected 1, 0 or NA "
                        "(use --unknown-as-na to read it as missing)",
                    )
                value, replaced = math.nan, replaced + 1
            parsed.append(value)
        filenames.append(name)
        values.append(parsed)
    table = LabelTable(
        filenames, np.asarray(values, dtype=np.float32),
        attributes or default_attribute_names(expected - 1), path, replaced,
    )
    if replaced:
        table.warnings.append(f"{path}: {replaced} unknown label token(s) read as NA")
    return table


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
