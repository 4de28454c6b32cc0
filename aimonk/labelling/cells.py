"""The cells of a label file's text: where each row's fields lie in labels.txt or labels.csv, and how the file
spells 1, 0 and NA. Positions are checked against how aimonk.data.labels (and the csv module) read the same
text, so that a write changes the cells meant and nothing else."""
from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter

from aimonk.data.labels import LabelFileError, parse_token

CSV_DELIMITERS = (",", ";", "\t", "|")
PAIRS = {"1": "0", "1.0": "0.0", "true": "false", "yes": "no"}
PAIRS.update({negative: positive for positive, negative in PAIRS.items()})
Span = tuple[int, int, str]  # start, end, 'plain' | 'quoted' (the quotes inside the span) | 'mixed'


def token_value(token: str) -> float:
    value = parse_token(token)
    return math.nan if value is None else value


def same_value(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def spelling(tokens: list[str], csv_file: bool) -> dict:
    """How the file writes 1, 0 and NA: its most used spelling of each (1/0 as a pair: 'yes' goes with 'no');
    NA, 1 and 0 by default."""
    counts = {1.0: Counter(), 0.0: Counter(), "na": Counter()}
    for token in tokens:
        value = parse_token(token)
        if value is not None and (token or csv_file):
            counts["na" if math.isnan(value) else value][token] += 1
    chosen = {key: max(counter, key=lambda token: (counter[token], token != "")) if counter else None  # a tie: the
              for key, counter in counts.items()}  # first seen, a visible one before an empty CSV field
    for key, other in ((1.0, 0.0), (0.0, 1.0)):
        if chosen[key] is None:
            chosen[key] = _paired(chosen[other]) if chosen[other] else "10"[int(key == 0.0)]
    chosen["na"] = "NA" if chosen["na"] is None else chosen["na"]
    return chosen


def _paired(token: str) -> str:
    paired = PAIRS.get(token.lower(), "1" if parse_token(token) == 0 else "0")
    return paired.upper() if token.isupper() else paired.title() if token.istitle() else paired


_LINE_END = re.compile(r"\r\n|\r|\n")
_TOKEN = re.compile(r"\S+")  # \s is what str.split splits at, as the reader does


def txt_spans(text: str, table) -> list[list[Span]]:
    """Each data row's fields (start, end, 'plain'): lines end at \\r\\n, \\r or \\n, as the reader's do."""
    rows, start = [], 0
    for end in [match.start() for match in _LINE_END.finditer(text)] + [len(text)]:
        fields = [(match.start(), match.end(), "plain") for match in _TOKEN.finditer(text, start, end)]
        if fields:
            rows.append(fields)
        start = _LINE_END.match(text, end).end() if end < len(text) else end
    return rows[1:] if table.named else rows


def csv_spans(text: str, table) -> list[list[Span]]:
    """Each data row's fields (start, end, 'plain' | 'quoted' | 'mixed'), checked against the csv module's
    reading of the same text; the delimiter is the one that reads the table's header."""
    for delimiter in CSV_DELIMITERS:
        header = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
        if [name.strip() for name in header[1:]] == table.attributes:
            break
    else:
        raise LabelFileError(table.source, 1, "its header cannot be located for writing; nothing is written")
    records = csv_records(text, delimiter)
    read = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    decoded = [[text[s + 1:e - 1].replace('""', '"') if kind == "quoted" else text[s:e] for s, e, kind in fields]
               for fields in records]
    if len(read) != len(records) or any(len(a) != len(b) or any(x != y for x, y, (_, _, kind) in zip(a, b, f)
                                                               if kind != "mixed")
                                        for a, b, f in zip(decoded, read, records)):
        raise LabelFileError(table.source, None, "its CSV fields cannot be located for writing; nothing is written")
    return [fields for fields, values in zip(records[1:], decoded[1:]) if any(value.strip() for value in values)]


def csv_records(text: str, delimiter: str) -> list[list[Span]]:
    records, i, n, stops = [], 0, len(text), (delimiter, "\r", "\n")
    while i < n:
        fields = []
        while text[i] not in "\r\n":  # a blank line is a record of no fields
            start, kind = i, "plain"
            if text.startswith('"', i):
                kind, i = "quoted", i + 1
                while True:
                    j = text.find('"', i)
                    if j < 0:  # unterminated: the csv module reads to the end
                        i, kind = n, "mixed"
                        break
                    i = j + 2 if text.startswith('""', j) else j + 1
                    if i == j + 1:
                        break
            if i < n and text[i] not in stops:
                kind = "plain" if kind == "plain" else "mixed"
                while i < n and text[i] not in stops:
                    i += 1
            fields.append((start, i, kind))
            if i >= n or text[i] != delimiter:
                break
            i += 1
            if i >= n or text[i] in "\r\n":  # a delimiter ends the line: one more, empty field
                fields.append((i, i, "plain"))
                break
        i += 2 if text.startswith("\r\n", i) else 1
        records.append(fields)
    return records
