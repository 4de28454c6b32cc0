"""The label parsers, fuzzed: any bytes, lines or encoding either parse or raise the project's LabelFileError."""
import math
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aimonk.data.labels import LabelFileError, LabelTable, read_labels

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TOKENS = st.sampled_from(["1", "0", "NA", "na", "1.0", "yes", "?", "", "maybe", "#", "x.jpg", "../a.jpg", "/etc/x",
                          "a b", '"', ",", "\t", "é.jpg", "\x00", "filename", "Attr1"])
LINE = st.lists(TOKENS, min_size=0, max_size=7)


def parse(data: bytes, suffix: str):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"labels{suffix}"
        path.write_bytes(data)
        try:
            table = read_labels(path)
        except LabelFileError as error:
            assert str(path) in str(error) and "\n" not in str(error)
            return None
    assert isinstance(table, LabelTable) and len(table) == len(table.filenames) == table.values.shape[0]
    assert table.values.shape[1] == len(table.attributes) >= 1
    assert all(v in (0.0, 1.0) or math.isnan(v) for v in np.unique(table.values))
    assert len(set(table.filenames)) == len(table.filenames)
    assert not any(name.startswith("/") or ".." in name.split("/") for name in table.filenames)
    return table


@SETTINGS
@given(st.binary(max_size=400), st.sampled_from([".txt", ".csv"]))
def test_random_bytes(data, suffix):
    parse(data, suffix)


@SETTINGS
@given(st.lists(LINE, max_size=8), st.sampled_from([" ", "\t", ","]), st.sampled_from([".txt", ".csv"]),
       st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]), st.sampled_from(["\n", "\r\n", "\r"]))
def test_random_lines_separators_and_encodings(lines, separator, suffix, encoding, newline):
    text = newline.join(separator.join(line) for line in lines)
    parse(text.encode(encoding, errors="replace"), suffix)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["1", "0", "NA"]), st.sampled_from(["1", "0", "NA"])), min_size=1,
                max_size=6))
def test_well_formed_files_always_parse(rows):
    text = "".join(f"image_{i}.jpg {a} {b}\n" for i, (a, b) in enumerate(rows))
    table = parse(text.encode(), ".txt")
    assert table is not None and len(table) == len(rows) and table.attributes == ["Attr1", "Attr2"]
