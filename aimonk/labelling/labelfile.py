"""Answers to labelling questions written into the user's own label file, safely.

labels.txt stays txt and labels.csv stays CSV: only the answered cells' tokens change, every other byte
(separators, line endings, header, quoting, delimiter, BOM, the spelling of untouched NA) is kept. A batch of
answers is one atomic write (a temporary file beside it, fsync, rename; the file's permissions kept); the
first write keeps the original as `<name>.orig`, and each changed cell is a line of the journal beside it,
`<name>.aimonk-journal.jsonl` (time, source, batch, filename, attribute, old and new token and field text),
from which `undo` restores the last batch exactly. A file changed on disk since it was read is never overwritten.
"""
from __future__ import annotations

import codecs
import hashlib
import math
import numbers
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Literal

from aimonk.data.labels import LabelFileError, clean_filename, read_labels, shown
from aimonk.files import folder_lock
from aimonk.labelling.cells import csv_spans, same_value, spelling, token_value, txt_spans
from aimonk.labelling.disk import Hook, append_journal, keep_original, read_journal, replace_file

SKIP = "skip"  # an answer's value: nothing is written, the question is asked again later
UNKNOWN = None  # an answer's value: NA is written
JOURNAL_SUFFIX = ".aimonk-journal.jsonl"
ORIGINAL_SUFFIX = ".orig"


@dataclass(frozen=True)
class Answer:
    """One answer: the image `filename`, the `attribute`, and `value` 1.0 / 0.0 (present / absent), None
    (unknown: NA is written) or SKIP (nothing is written; the question comes back later)."""
    filename: str
    attribute: str
    value: float | None | Literal["skip"]


@dataclass(frozen=True)
class Change:
    """One cell a batch changed: its token before and after, as the file spells them."""
    filename: str
    attribute: str
    old: str
    new: str


@dataclass
class Batch:
    """What one apply (or undo) did: the cells changed (none when every answer was a skip or already in the
    file), the answers skipped, and for an undo the id of the batch it undid."""
    id: str
    source: str
    time: str
    changes: list[Change] = field(default_factory=list)
    skipped: list[Answer] = field(default_factory=list)
    undoes: str | None = None


class LabelFileChanged(ValueError):
    """The file on disk is no longer the one read: nothing was written; the answers are kept in `.answers`."""

    def __init__(self, path, answers=(), what: str | None = None):
        what = what or "the answers were not written and are kept: open the file again and apply them"
        self.path, self.answers = Path(path), list(answers)
        super().__init__(f"{path} changed on disk since it was read (another program or window wrote it): {what}")


class LabelFileWriteError(ValueError):
    """The file could not be written (read-only file or folder, full disk...): it is unchanged byte for byte;
    the answers are kept in `.answers`."""

    def __init__(self, path, error: OSError, answers=()):
        self.path, self.answers = Path(path), list(answers)
        reason = error.strerror or type(error).__name__
        super().__init__(f"{path}: the answers cannot be written ({reason}); the file is unchanged and the "
                         f"{len(self.answers)} answer(s) are kept")


class LabelFile:
    """A label file opened for answers: `value`, `apply` (one atomic write a batch) and `undo`."""

    def __init__(self, path: Path, target: Path, table, data: bytes):
        self.path, self.target, self.table = path, target, table
        self.csv = target.suffix.lower() == ".csv"
        self.journal_path = target.with_name(target.name + JOURNAL_SUFFIX)
        self.original_path = target.with_name(target.name + ORIGINAL_SUFFIX)
        self._columns = {name: column for column, name in enumerate(table.attributes)}
        self._skipped: dict[tuple[int, int], None] = {}  # in the order skipped
        self._unknown: set[tuple[int, int]] = set()
        self._load(data)
        self._rows = {name: row for row, name in enumerate(table.filenames)}
        self._rows.update({self._token(row, -1): row for row in range(len(table))})  # './a.jpg' as written too

    @classmethod
    def open(cls, path, unknown_as_na: bool = False) -> "LabelFile":
        """Read `path` (labels.txt or labels.csv, as aimonk.data.labels reads them) and remember its digest."""
        path = Path(path)
        target = path.resolve()
        for _ in range(3):
            data = _read(target, path)
            table = read_labels(target, unknown_as_na)
            if _read(target, path) == data:
                return cls(path, target, table, data)
        raise LabelFileError(path, None, "keeps changing while it is read; open it when the other writer is done")

    @property
    def filenames(self) -> list[str]:
        return list(self.table.filenames)

    @property
    def attributes(self) -> list[str]:
        return list(self.table.attributes)

    def value(self, filename: str, attribute: str) -> float:
        """The cell as the file now holds it: 1.0, 0.0 or nan (NA, or a token read as NA)."""
        return token_value(self._token(*self._locate(filename, attribute)))

    def missing(self) -> list[tuple[str, str]]:
        """(filename, attribute) of the NA cells still to ask, in file order, the skipped ones last; a cell
        answered 'unknown' in this session is not asked again."""
        cells = [(row, column) for row in range(len(self.table)) for column in range(len(self._columns))
                 if (row, column) not in self._unknown and math.isnan(self.value(*self._names(row, column)))]
        cells.sort(key=lambda cell: cell in self._skipped)
        return [self._names(*cell) for cell in cells]

    def apply(self, answers: Iterable[Answer], source: str = "widget", *,
              on_before_replace: Hook | None = None) -> Batch:
        """Write a batch of answers in one atomic write. Every answer is checked first (an unknown filename or
        attribute, or a value other than 1, 0, None/'unknown' or 'skip', is a one-line ValueError naming it
        and the file); a file changed on disk since it was read raises LabelFileChanged and writes nothing.
        `on_before_replace(temporary)` runs once the new bytes are on disk, before they replace the file."""
        answers = [answer if isinstance(answer, Answer) else Answer(*answer) for answer in answers]
        wanted, skipped = {}, []
        for answer in answers:
            cell = self._locate(answer.filename, answer.attribute)
            value = self._checked(answer)
            if value == SKIP:
                skipped.append(answer)
            elif cell in wanted and not same_value(wanted[cell], value):
                raise ValueError(f"{self.path}: {answer.filename} / {answer.attribute} is answered twice in one "
                                 "batch, differently")
            else:
                wanted[cell] = value
        changed = {cell: self._spell(value) for cell, value in wanted.items()
                   if not same_value(token_value(self._token(*cell)), value)}
        batch = self._batch(source, changed)
        batch.skipped = skipped
        if changed:
            self._commit(batch, changed, answers, on_before_replace)
        for answer in skipped:
            self._skipped[self._locate(answer.filename, answer.attribute)] = None
        for cell, value in wanted.items():
            self._skipped.pop(cell, None)
            (self._unknown.add if math.isnan(value) else self._unknown.discard)(cell)
        return batch

    def undo(self, source: str = "undo", *, on_before_replace: Hook | None = None) -> Batch | None:
        """Restore the cells of the last batch of the journal not yet undone (None when there is none); the
        undo is itself a batch of the journal. Refused, writing nothing, when the file changed on disk since
        it was read or a cell no longer holds what that batch wrote."""
        records = read_journal(self.journal_path)
        undone = {record.get("undoes") for record in records}
        last = next((record["batch"] for record in reversed(records)
                     if record.get("action") == "apply" and record["batch"] not in undone), None)
        if last is None:
            return None
        changed, raw = {}, {}  # raw: the fields' text as they were, spaces and quotes included
        for record in [record for record in records if record["batch"] == last]:
            cell = self._locate(record["filename"], record["attribute"])
            start, end, _ = self._cells[cell[0]][cell[1] + 1]
            if record.get("new_text", self._text[start:end]) != self._text[start:end] or \
                    self._token(*cell) != record["new"]:
                raise ValueError(f"{self.path}: cannot undo batch {last}: {record['filename']} / "
                                 f"{record['attribute']} holds {self._token(*cell)!r}, not the {record['new']!r} "
                                 "it wrote (changed since); nothing was undone")
            changed[cell] = record["old"]
            if isinstance(record.get("old_text"), str):
                raw[cell] = record["old_text"]
        batch = self._batch(source, changed)
        batch.undoes = last
        self._commit(batch, changed, [], on_before_replace, "nothing was undone: open the file again to undo", raw)
        return batch

    # -- the file's cells ---------------------------------------------------------------------------------

    def _load(self, data: bytes) -> None:
        self.data, self.digest = data, hashlib.sha256(data).hexdigest()
        self._bom = codecs.BOM_UTF8 if data.startswith(codecs.BOM_UTF8) else b""
        self._text = data[len(self._bom):].decode("utf-8")
        spans = csv_spans(self._text, self.table) if self.csv else txt_spans(self._text, self.table)
        if len(spans) != len(self.table):
            raise LabelFileError(self.path, None, "its rows cannot be located for writing; nothing is written")
        self._cells = spans
        for row, (fields, name) in enumerate(zip(spans, self.table.filenames)):
            if len(fields) != len(self._columns) + 1 or clean_filename(self.path, 0, self._token(row, -1)) != name:
                raise LabelFileError(self.path, self.table.lines[row], "this row cannot be located for writing; "
                                                                      "nothing is written")
        self._spelling = spelling([self._token(row, column) for row in range(len(self.table))
                                    for column in range(len(self._columns))], csv_file=self.csv)

    def _token(self, row: int, column: int) -> str:
        """A cell's token (column -1: the filename), without a CSV field's quotes and surrounding spaces."""
        start, end, kind = self._cells[row][column + 1]
        raw = self._text[start:end]
        return (raw[1:-1].replace('""', '"') if kind == "quoted" else raw).strip()

    def _field(self, row: int, column: int, token: str, raw: str | None = None) -> tuple[int, int, str]:
        """(start, end, text) replacing a cell by `token`, keeping its quotes and the spaces around it (or by the
        field's `raw` text, as an undo restores it)."""
        start, end, kind = self._cells[row][column + 1]
        if raw is not None:
            return start, end, raw
        if kind == "mixed":
            raise LabelFileError(self.path, self.table.lines[row], f"the field of {self.table.attributes[column]!r}"
                                                                   " mixes quoted and unquoted text; edit it by hand")
        inner = self._text[start + 1:end - 1] if kind == "quoted" else self._text[start:end]
        lead, trail = inner[:len(inner) - len(inner.lstrip())], inner[len(inner.rstrip()):]
        text = lead + token + trail if inner.strip() else token
        return start, end, f'"{text}"' if kind == "quoted" else text

    def _render(self, fields) -> bytes:
        pieces, at = [], 0
        for start, end, text in sorted(fields):
            pieces += [self._text[at:start], text]
            at = end
        return self._bom + ("".join(pieces) + self._text[at:]).encode("utf-8")

    def _locate(self, filename: str, attribute: str) -> tuple[int, int]:
        row = self._rows.get(filename)
        if row is None:
            raise ValueError(f"{self.path}: no image {shown(str(filename))} in this label file")
        column = self._columns.get(attribute)
        if column is None:
            names = ", ".join(self.table.attributes[:8]) + (", ..." if len(self._columns) > 8 else "")
            raise ValueError(f"{self.path}: no attribute {shown(str(attribute))} in this label file (it has {names})")
        return row, column

    def _names(self, row: int, column: int) -> tuple[str, str]:
        return self.table.filenames[row], self.table.attributes[column]

    def _checked(self, answer: Answer):
        value = answer.value
        if isinstance(value, str) and value.strip().lower() in (SKIP, "unknown"):
            return SKIP if value.strip().lower() == SKIP else math.nan
        if value is None or isinstance(value, numbers.Real) and (value in (0, 1) or math.isnan(value)):
            return math.nan if value is None or math.isnan(value) else float(value)
        raise ValueError(f"{self.path}: the answer for {answer.filename} / {answer.attribute} is {repr(value)[:80]};"
                         " expected 1, 0, None (unknown) or 'skip'")

    def _spell(self, value: float) -> str:
        return self._spelling["na" if math.isnan(value) else value]

    # -- writing ------------------------------------------------------------------------------------------

    def _batch(self, source: str, changed: dict) -> Batch:
        now = datetime.now().astimezone()
        batch = Batch(f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}", source, now.isoformat(timespec="seconds"))
        batch.changes = [Change(*self._names(*cell), self._token(*cell), token) for cell, token in changed.items()]
        return batch

    def _commit(self, batch: Batch, changed: dict, answers: list, hook: Hook | None,
                what: str | None = None, raw: dict | None = None) -> None:
        fields = [self._field(*cell, token, (raw or {}).get(cell)) for cell, token in changed.items()]
        texts = [(self._text[start:end], text) for start, end, text in fields]  # in the order of batch.changes
        data = self._render(fields)
        try:
            with folder_lock(self.target.parent, option="the label file's folder"):
                try:
                    on_disk = self.target.read_bytes()
                except FileNotFoundError:  # removed or renamed since read: changed too
                    on_disk = None
                if on_disk is None or hashlib.sha256(on_disk).hexdigest() != self.digest:
                    raise LabelFileChanged(self.path, answers, what)
                status = os.stat(self.target)
                if not self.original_path.exists() and not self.journal_path.exists():
                    keep_original(self.original_path, self.data, status)
                replace_file(self.target, data, status, hook)
        except OSError as error:
            raise LabelFileWriteError(self.path, error, answers) from None
        self._load(data)
        lines = {name: line for name, line in zip(self.table.filenames, self.table.lines)}
        records = [{"time": batch.time, "source": batch.source, "batch": batch.id,
                    "action": "undo" if batch.undoes else "apply", **({"undoes": batch.undoes} if batch.undoes else {}),
                    "filename": change.filename, "attribute": change.attribute, "line": lines.get(change.filename),
                    "old": change.old, "new": change.new, "old_text": old, "new_text": new}
                   for change, (old, new) in zip(batch.changes, texts)]
        try:
            append_journal(self.journal_path, records)
        except OSError as error:
            raise OSError(error.errno, f"the answers were written to {self.path}, but its journal could not be "
                                       f"({error.strerror}): undo cannot reach this batch", str(self.journal_path))


def _read(target: Path, path: Path) -> bytes:
    try:
        return target.read_bytes()
    except OSError as error:
        raise LabelFileError(path, None, f"cannot be read ({error.strerror or type(error).__name__})") from None
