"""A CSV of answers, as `aimonk label DATA --answers ANSWERS.csv` reads it: a header naming the columns filename,
attribute and answer (any order, other columns ignored), one answer a line: 1 / yes / present, 0 / no / absent,
unknown / NA (NA is written), or skip (nothing is written)."""
from __future__ import annotations

import csv
from pathlib import Path

from aimonk.data.labels import LabelFileError, shown
from aimonk.labelling.labelfile import SKIP, Answer

COLUMNS = ("filename", "attribute", "answer")
VALUES = {**dict.fromkeys(("1", "1.0", "yes", "present", "true"), 1.0),
          **dict.fromkeys(("0", "0.0", "no", "absent", "false"), 0.0),
          **dict.fromkeys(("unknown", "na", "nan", "?"), None), SKIP: SKIP}


def read_answers(path) -> list[Answer]:
    """The answers of a CSV file; a line that cannot be read is a one-line error naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"answers file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise LabelFileError(path, None, "is not UTF-8 text") from None
    lines = text.splitlines()
    reader = csv.reader(lines)
    header = [name.strip().lower() for name in next(reader, [])]
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise LabelFileError(path, 1, f"the header must name the columns {', '.join(COLUMNS)}; it lacks "
                                      f"{', '.join(missing)}")
    where = [header.index(name) for name in COLUMNS]
    answers = []
    for line, fields in enumerate(reader, start=2):
        if not any(field.strip() for field in fields):
            continue
        if len(fields) <= max(where):
            raise LabelFileError(path, line, f"{len(fields)} fields, fewer than the header's {len(header)}")
        filename, attribute, answer = (fields[i].strip() for i in where)
        if answer.lower() not in VALUES:
            raise LabelFileError(path, line, f"the answer {shown(answer)} is not one of 1, 0, yes, no, present, "
                                             "absent, unknown, NA or skip")
        answers.append(Answer(filename, attribute, VALUES[answer.lower()]))
    return answers
