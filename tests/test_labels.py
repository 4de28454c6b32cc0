import math

import numpy as np
import pytest

from aimonk.data.labels import LabelFileError, read_labels, summarize
from conftest import write


def test_reads_reference_format_with_na_in_any_case(tmp_path):
    path = write(tmp_path / "labels.txt", "image_0.jpg 1 NA 0 1\nimage_1.jpg 0 na 1.0 0.0\n\nimage_2.jpg Na 1 1 0\n")
    table = read_labels(path)
    assert table.filenames == ["image_0.jpg", "image_1.jpg", "image_2.jpg"]
    assert table.attributes == ["Attr1", "Attr2", "Attr3", "Attr4"]
    np.testing.assert_array_equal(table.values[0], [1, np.nan, 0, 1])
    np.testing.assert_array_equal(table.values[1], [0, np.nan, 1, 0])
    assert math.isnan(table.values[2, 0])


def test_number_of_attributes_is_inferred(tmp_path):
    path = write(tmp_path / "labels.txt", "a.jpg 1 0 1 0 1 0\nb.jpg 0 0 0 0 0 NA\n")
    assert read_labels(path).num_attributes == 6


def test_wrong_field_count_names_file_and_line(tmp_path):
    path = write(tmp_path / "labels.txt", "a.jpg 1 0 1 0\nb.jpg 1 0\n")
    with pytest.raises(LabelFileError, match=r"labels\.txt, line 2: expected 5 fields.*found 3"):
        read_labels(path)


def test_unknown_token_names_file_line_and_token(tmp_path):
    path = write(tmp_path / "labels.txt", "a.jpg 1 0 1 0\nb.jpg 1 0 1 0\nc.jpg 1mobilenet 0 1 0\n")
    with pytest.raises(LabelFileError, match=r"labels\.txt, line 3: unknown label '1mobilenet'"):
        read_labels(path)


def test_unknown_tokens_as_na_are_counted(tmp_path):
    path = write(tmp_path / "labels.txt", "a.jpg 1mobilenet 0 1 0\nb.jpg 1 x 1 ?\n")
    table = read_labels(path, unknown_as_na=True)
    assert table.replaced_tokens == 2  # '?' is a recognised NA spelling, not an unknown token
    assert math.isnan(table.values[0, 0]) and math.isnan(table.values[1, 1])
    assert "2 unknown label token(s)" in table.warnings[0]


def test_duplicate_filename_names_both_lines(tmp_path):
    path = write(tmp_path / "labels.txt", "a.jpg 1 0\nb.jpg 1 0\na.jpg 0 0\n")
    with pytest.raises(LabelFileError, match=r"line 3: duplicate filename 'a.jpg' \(first on line 1\)"):
        read_labels(path)


def test_empty_file_is_an_error(tmp_path):
    path = write(tmp_path / "labels.txt", "\n\n")
    with pytest.raises(LabelFileError, match="labels.txt: the file holds no labelled images"):
        read_labels(path)


def test_missing_label_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="label file not found"):
        read_labels(tmp_path / "nope.txt")


def test_csv_header_gives_attribute_names_and_empty_is_na(tmp_path):
    path = write(tmp_path / "labels.csv", "filename,red,long sleeves,striped\na.jpg,1,,0\nb.jpg,0,NA,1\n")
    table = read_labels(path)
    assert table.attributes == ["red", "long sleeves", "striped"]
    np.testing.assert_array_equal(table.values, [[1, np.nan, 0], [0, np.nan, 1]])


def test_csv_wrong_count_names_line(tmp_path):
    path = write(tmp_path / "labels.csv", "filename,a,b\nx.jpg,1,0\ny.jpg,1\n")
    with pytest.raises(LabelFileError, match=r"labels\.csv, line 3: expected 3 fields"):
        read_labels(path)


def test_summary_table_matches_counts():
    values = np.array([[1, 0], [1, np.nan], [0, 1], [np.nan, 1]], dtype=np.float32)
    table = summarize(values, ["A", "B"])
    assert table.loc["A"].tolist()[:3] == [2, 1, 1]
    assert table.loc["B"].tolist()[:3] == [2, 1, 1]
    assert table.loc["A", "positive_rate"] == pytest.approx(2 / 3)


def test_the_demo_names_its_attributes_in_a_header_and_can_write_the_reference_form(tmp_path):
    from aimonk.data.demo import make_demo_dataset
    from aimonk.data.folder import read_label_folder

    named, _, _ = read_label_folder(make_demo_dataset(tmp_path / "named", count=12, size=32))
    assert named.attributes == ["coloured", "long_sleeves", "striped", "emblem"] and len(named) == 12
    plain, _, _ = read_label_folder(make_demo_dataset(tmp_path / "plain", count=12, size=32, header=False))
    assert plain.attributes == ["Attr1", "Attr2", "Attr3", "Attr4"]
    assert (tmp_path / "plain" / "labels.txt").read_text().split()[0] == "image_0.jpg"
