"""Answers written into the user's own label file: only the answered tokens change (every other byte kept),
one atomic write a batch, the original kept once, a journal and undo, and never over a file changed since read.
Every expected file content below is written by hand."""
import errno
import json
import math
import os
import stat

import pytest

from aimonk.data.labels import read_labels
from aimonk.labelling.labelfile import (SKIP, Answer, LabelFile, LabelFileChanged, LabelFileWriteError)


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def cell(table, filename, attribute):
    return float(table.values[table.filenames.index(filename), table.attributes.index(attribute)])


def test_txt_with_a_header_changes_only_the_answered_tokens(tmp_path):
    path = write(tmp_path / "labels.txt", b"filename  red   big\n"
                                          b"image_0.jpg 1 NA\n"
                                          b"image_1.jpg   NA    0\n"
                                          b"\n"
                                          b"image_2.jpg 0 1\n")
    labels = LabelFile.open(path)
    assert labels.attributes == ["red", "big"] and math.isnan(labels.value("image_0.jpg", "big"))
    batch = labels.apply([Answer("image_0.jpg", "big", 1.0), Answer("image_1.jpg", "red", 0.0)], source="test")
    assert path.read_bytes() == (b"filename  red   big\n"
                                 b"image_0.jpg 1 1\n"
                                 b"image_1.jpg   0    0\n"
                                 b"\n"
                                 b"image_2.jpg 0 1\n")
    assert [(c.filename, c.attribute, c.old, c.new) for c in batch.changes] == [
        ("image_0.jpg", "big", "NA", "1"), ("image_1.jpg", "red", "NA", "0")]
    table = read_labels(path)
    assert table.named and cell(table, "image_0.jpg", "big") == 1.0 and cell(table, "image_1.jpg", "red") == 0.0
    assert labels.value("image_0.jpg", "big") == 1.0


def test_txt_without_header_tabs_crlf_trailing_spaces_and_mixed_na_case(tmp_path):
    original = (b"a.jpg\t1\tna\t0\r\n"
                b"b.jpg\tNA\tNa\t1  \r\n"
                b"c.jpg\tna\t1\tna\r\n"
                b"d.jpg\tna\tna\tNA\r\n")
    path = write(tmp_path / "labels.txt", original)
    labels = LabelFile.open(path)
    assert labels.attributes == ["Attr1", "Attr2", "Attr3"]
    labels.apply([Answer("a.jpg", "Attr2", 0.0), Answer("b.jpg", "Attr1", 1.0), Answer("c.jpg", "Attr3", 1)])
    assert path.read_bytes() == (b"a.jpg\t1\t0\t0\r\n"
                                 b"b.jpg\t1\tNa\t1  \r\n"
                                 b"c.jpg\tna\t1\t1\r\n"
                                 b"d.jpg\tna\tna\tNA\r\n")
    labels.apply([Answer("a.jpg", "Attr1", None)])  # unknown: NA in the file's most used spelling, 'na'
    assert path.read_bytes() == (b"a.jpg\tna\t0\t0\r\n"
                                 b"b.jpg\t1\tNa\t1  \r\n"
                                 b"c.jpg\tna\t1\t1\r\n"
                                 b"d.jpg\tna\tna\tNA\r\n")
    table = read_labels(path)
    assert not table.named and math.isnan(cell(table, "a.jpg", "Attr1")) and cell(table, "b.jpg", "Attr1") == 1


def test_txt_keeps_a_bom_a_last_line_without_newline_and_its_spelling_of_1_and_0(tmp_path):
    path = write(tmp_path / "labels.txt", b"\xef\xbb\xbfx.jpg 1.0 NA\ny.jpg NA NA")
    labels = LabelFile.open(path)
    labels.apply([Answer("y.jpg", "Attr1", 1.0), Answer("y.jpg", "Attr2", 0.0)])
    assert path.read_bytes() == b"\xef\xbb\xbfx.jpg 1.0 NA\ny.jpg 1.0 0.0"
    assert read_labels(path).values.tolist()[1] == [1.0, 0.0]


def test_csv_keeps_bom_quoting_spaces_and_line_endings(tmp_path):
    path = write(tmp_path / "labels.csv", b'\xef\xbb\xbffilename,"is red",big\r\n'
                                          b'"a.jpg",1,\r\n'
                                          b' b.jpg ,"NA", 0 \r\n'
                                          b'"c, d.jpg",0,1\r\n')
    labels = LabelFile.open(path)
    assert labels.filenames == ["a.jpg", "b.jpg", "c, d.jpg"]
    labels.apply([Answer("a.jpg", "big", 1.0), Answer("b.jpg", "is red", 0.0), Answer("b.jpg", "big", 1.0),
                  Answer("c, d.jpg", "is red", None)])
    assert path.read_bytes() == (b'\xef\xbb\xbffilename,"is red",big\r\n'
                                 b'"a.jpg",1,1\r\n'
                                 b' b.jpg ,"0", 1 \r\n'
                                 b'"c, d.jpg",NA,1\r\n')
    table = read_labels(path)
    assert table.attributes == ["is red", "big"]
    assert cell(table, "a.jpg", "big") == 1.0 and cell(table, "b.jpg", "is red") == 0.0
    assert math.isnan(cell(table, "c, d.jpg", "is red")) and cell(table, "c, d.jpg", "big") == 1.0


def test_csv_with_a_quoted_comma_and_empty_fields_as_its_na(tmp_path):
    # (a quoted newline in a filename is refused when the file is read: tests/test_untrusted_names.py)
    path = write(tmp_path / "labels.csv", b'filename,red,note\n"a,b.jpg",,\nc.jpg,,1\nd.jpg,1,0\n')
    labels = LabelFile.open(path)
    labels.apply([Answer("c.jpg", "red", 0.0), Answer("d.jpg", "note", None)])
    assert path.read_bytes() == b'filename,red,note\n"a,b.jpg",,\nc.jpg,0,1\nd.jpg,1,\n'
    assert cell(read_labels(path), "c.jpg", "red") == 0.0


def test_csv_with_semicolons_when_the_reader_reads_them(tmp_path):
    path = write(tmp_path / "labels.csv", b"filename;red;big\na.jpg;1;NA\nb.jpg;0;1\n")
    try:
        read_labels(path)
    except ValueError:
        pytest.skip("aimonk.data.labels reads comma-separated CSV only; LabelFile follows the reader")
    LabelFile.open(path).apply([Answer("a.jpg", "big", 0.0)])
    assert path.read_bytes() == b"filename;red;big\na.jpg;1;0\nb.jpg;0;1\n"


def test_skip_writes_nothing_and_is_asked_last(tmp_path):
    original = b"a.jpg NA NA\nb.jpg NA 1\n"
    path = write(tmp_path / "labels.txt", original)
    labels = LabelFile.open(path)
    batch = labels.apply([Answer("a.jpg", "Attr1", SKIP), Answer("a.jpg", "Attr2", "skip")])
    assert batch.changes == [] and len(batch.skipped) == 2
    assert path.read_bytes() == original and sorted(os.listdir(tmp_path)) == ["labels.txt"]  # no .orig, no journal
    assert labels.missing() == [("b.jpg", "Attr1"), ("a.jpg", "Attr1"), ("a.jpg", "Attr2")]
    labels.apply([Answer("b.jpg", "Attr1", "unknown")])  # already NA: nothing to write, and not asked again
    assert path.read_bytes() == original and labels.missing() == [("a.jpg", "Attr1"), ("a.jpg", "Attr2")]


def test_the_first_write_keeps_the_original_once_and_the_journal_has_a_line_a_cell(tmp_path):
    original = b"filename red big\na.jpg NA NA\nb.jpg 1 0\n"
    path = write(tmp_path / "labels.txt", original)
    labels = LabelFile.open(path)
    first = labels.apply([Answer("a.jpg", "red", 1.0), Answer("a.jpg", "big", 0.0)], source="widget")
    labels.apply([Answer("b.jpg", "red", 0.0)], source="cli")
    assert (tmp_path / "labels.txt.orig").read_bytes() == original
    records = [json.loads(line) for line in (tmp_path / "labels.txt.aimonk-journal.jsonl").read_text().splitlines()]
    assert [(r["source"], r["action"], r["filename"], r["attribute"], r["line"], r["old"], r["new"])
            for r in records] == [("widget", "apply", "a.jpg", "red", 2, "NA", "1"),
                                  ("widget", "apply", "a.jpg", "big", 2, "NA", "0"),
                                  ("cli", "apply", "b.jpg", "red", 3, "1", "0")]
    assert records[0]["batch"] == records[1]["batch"] == first.id != records[2]["batch"]
    assert records[0]["time"][:2] == "20" and "T" in records[0]["time"]
    (tmp_path / "labels.txt.aimonk-journal.jsonl").unlink()
    LabelFile.open(path).apply([Answer("b.jpg", "big", 1.0)])
    assert (tmp_path / "labels.txt.orig").read_bytes() == original  # an existing .orig is never overwritten


def test_undo_restores_each_batch_exactly_and_is_journalled(tmp_path):
    original = b'filename,red,big\r\n"a.jpg","NA",na\r\nb.jpg,1,0\r\n'
    path = write(tmp_path / "labels.csv", original)
    labels = LabelFile.open(path)
    labels.apply([Answer("a.jpg", "red", 1.0), Answer("a.jpg", "big", 1.0)])
    after_first = b'filename,red,big\r\n"a.jpg","1",1\r\nb.jpg,1,0\r\n'
    assert path.read_bytes() == after_first
    labels.apply([Answer("b.jpg", "big", None)])
    assert path.read_bytes() == b'filename,red,big\r\n"a.jpg","1",1\r\nb.jpg,1,NA\r\n'
    undone = labels.undo()
    assert path.read_bytes() == after_first and [(c.old, c.new) for c in undone.changes] == [("NA", "0")]
    assert LabelFile.open(path).undo() is not None  # a new session undoes from the journal
    assert path.read_bytes() == original
    assert LabelFile.open(path).undo() is None and path.read_bytes() == original
    records = [json.loads(line) for line in (tmp_path / "labels.csv.aimonk-journal.jsonl").read_text().splitlines()]
    assert [r["action"] for r in records] == ["apply", "apply", "apply", "undo", "undo", "undo"]
    assert records[3]["undoes"] == records[2]["batch"] and records[4]["undoes"] == records[0]["batch"]


def test_a_file_changed_on_disk_is_never_overwritten(tmp_path):
    path = write(tmp_path / "labels.txt", b"a.jpg NA 1\nb.jpg 0 NA\n")
    labels = LabelFile.open(path)
    theirs = b"a.jpg 0 1\nb.jpg 0 1\nc.jpg 1 1\n"
    path.write_bytes(theirs)  # another writer, after we read
    answers = [Answer("a.jpg", "Attr1", 1.0), Answer("b.jpg", "Attr2", SKIP)]
    with pytest.raises(LabelFileChanged, match=r"labels.txt changed on disk since it was read .* not written and "
                                               "are kept") as caught:
        labels.apply(answers)
    assert caught.value.answers == answers and isinstance(caught.value, ValueError)
    assert path.read_bytes() == theirs and "\n" not in str(caught.value)
    assert sorted(os.listdir(tmp_path)) == ["labels.txt"]
    fresh = LabelFile.open(path)
    fresh.apply(caught.value.answers)  # the kept answers, on the file as it now is
    assert path.read_bytes() == b"a.jpg 1 1\nb.jpg 0 1\nc.jpg 1 1\n"
    path.write_bytes(theirs)
    with pytest.raises(LabelFileChanged, match="nothing was undone"):
        fresh.undo()
    assert path.read_bytes() == theirs


def test_undo_refuses_a_cell_changed_since_its_batch(tmp_path):
    path = write(tmp_path / "labels.txt", b"a.jpg NA 1\n")
    LabelFile.open(path).apply([Answer("a.jpg", "Attr1", 1.0)])
    path.write_bytes(b"a.jpg 0 1\n")  # edited by hand afterwards
    with pytest.raises(ValueError, match=r"cannot undo batch .*a.jpg / Attr1 holds '0', not the '1' it wrote"):
        LabelFile.open(path).undo()
    assert path.read_bytes() == b"a.jpg 0 1\n"


def test_bad_answers_are_refused_before_anything_is_written(tmp_path):
    original = b"filename red\na.jpg NA\n"
    path = write(tmp_path / "labels.txt", original)
    labels = LabelFile.open(path)
    cases = [(Answer("nope.jpg", "red", 1.0), r"labels.txt: no image 'nope.jpg' in this label file"),
             (Answer("a.jpg", "blue", 1.0), r"labels.txt: no attribute 'blue' in this label file \(it has red\)"),
             (Answer("a.jpg", "red", 2), r"labels.txt: the answer for a.jpg / red is 2; expected 1, 0, None"),
             (Answer("a.jpg", "red", "maybe"), r"the answer for a.jpg / red is 'maybe'")]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message) as caught:
            labels.apply([Answer("a.jpg", "red", 1.0), bad])  # a good answer first: not written either
        assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="answered twice in one batch"):
        labels.apply([Answer("a.jpg", "red", 1.0), Answer("a.jpg", "red", 0.0)])
    assert path.read_bytes() == original and sorted(os.listdir(tmp_path)) == ["labels.txt"]


def test_ctrl_c_before_the_rename_leaves_the_file_whole_and_no_temporary(tmp_path):
    original = b"a.jpg NA 1\nb.jpg 0 NA\n"
    path = write(tmp_path / "labels.txt", original)
    labels = LabelFile.open(path)
    seen = []

    def interrupted(temporary):
        seen.append(temporary.read_bytes())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        labels.apply([Answer("a.jpg", "Attr1", 1.0), Answer("b.jpg", "Attr2", 0.0)], on_before_replace=interrupted)
    assert seen == [b"a.jpg 1 1\nb.jpg 0 0\n"]  # the whole batch was in the temporary, never in the file
    assert path.read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == ["labels.txt", "labels.txt.orig"]  # the backup may be kept: same bytes
    assert (tmp_path / "labels.txt.orig").read_bytes() == original
    labels.apply([Answer("a.jpg", "Attr1", 1.0)])  # the session goes on
    assert path.read_bytes() == b"a.jpg 1 1\nb.jpg 0 NA\n"


def test_a_write_error_is_one_line_naming_the_file_which_stays_unchanged(tmp_path):
    original = b"a.jpg NA 1\n"
    path = write(tmp_path / "labels.txt", original)
    labels = LabelFile.open(path)

    def read_only_disk(temporary):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(temporary))

    answers = [Answer("a.jpg", "Attr1", 1.0)]
    with pytest.raises(LabelFileWriteError, match=r"labels.txt: the answers cannot be written \(Read-only file "
                                                  r"system\); the file is unchanged and the 1 answer\(s\) are kept"
                       ) as caught:
        labels.apply(answers, on_before_replace=read_only_disk)
    assert caught.value.answers == answers and "\n" not in str(caught.value)
    assert path.read_bytes() == original and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_folder_is_a_one_line_error(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    original = b"a.jpg NA 1\n"
    path = write(folder / "labels.txt", original)
    labels = LabelFile.open(path)
    folder.chmod(0o500)
    try:
        with pytest.raises(LabelFileWriteError, match=r"labels.txt: the answers cannot be written \(Permission"):
            labels.apply([Answer("a.jpg", "Attr1", 1.0)])
    finally:
        folder.chmod(0o700)
    assert path.read_bytes() == original and os.listdir(folder) == ["labels.txt"]


def test_the_files_permissions_are_kept(tmp_path):
    path = write(tmp_path / "labels.txt", b"a.jpg NA 1\n")
    path.chmod(0o640)
    LabelFile.open(path).apply([Answer("a.jpg", "Attr1", 0.0)])
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_bytes() == b"a.jpg 0 1\n"


def test_a_journal_line_cut_short_by_a_crash_is_passed_over(tmp_path):
    path = write(tmp_path / "labels.txt", b"a.jpg NA 1\n")
    labels = LabelFile.open(path)
    labels.apply([Answer("a.jpg", "Attr1", 1.0)])
    with open(tmp_path / "labels.txt.aimonk-journal.jsonl", "a") as journal:
        journal.write('{"time": "2026-')  # a crash mid-append
    labels.apply([Answer("a.jpg", "Attr2", 0.0)])
    assert labels.undo().undoes and path.read_bytes() == b"a.jpg 1 1\n"
    assert labels.undo().undoes and path.read_bytes() == b"a.jpg NA 1\n"


def test_a_975_line_file_takes_ten_answers(tmp_path):
    lines = [f"image_{i}.jpg {i % 2} NA {1 - i % 2} NA" for i in range(975)]
    path = write(tmp_path / "labels.txt", ("\n".join(lines) + "\n").encode())
    labels = LabelFile.open(path)
    answers = [Answer(f"image_{i}.jpg", "Attr2", 1.0) for i in range(0, 975, 100)]
    assert len(answers) == 10
    labels.apply(answers)
    written = path.read_bytes().decode().split("\n")
    assert written[0] == "image_0.jpg 0 1 1 NA" and written[100] == "image_100.jpg 0 1 1 NA"
    assert written[1] == "image_1.jpg 1 NA 0 NA" and written[974] == "image_974.jpg 0 NA 1 NA"
    assert sum(a != b for a, b in zip(written, lines)) == 10


def test_a_file_removed_since_read_is_changed_too(tmp_path):
    path = write(tmp_path / "labels.txt", b"a.jpg NA 1\n")
    labels = LabelFile.open(path)
    path.rename(tmp_path / "moved.txt")
    with pytest.raises(LabelFileChanged, match="labels.txt changed on disk since it was read"):
        labels.apply([Answer("a.jpg", "Attr1", 1.0)])
    assert sorted(os.listdir(tmp_path)) == ["moved.txt"]


def test_a_symlinked_label_file_stays_a_link_and_its_target_is_written(tmp_path):
    (tmp_path / "real").mkdir()
    real = write(tmp_path / "real" / "labels.txt", b"a.jpg NA 1\n")
    (tmp_path / "labels.txt").symlink_to(real)
    LabelFile.open(tmp_path / "labels.txt").apply([Answer("a.jpg", "Attr1", 0.0)])
    assert (tmp_path / "labels.txt").is_symlink() and real.read_bytes() == b"a.jpg 0 1\n"
    assert (tmp_path / "real" / "labels.txt.orig").read_bytes() == b"a.jpg NA 1\n"


def test_undo_restores_a_fields_spaces_and_quotes_exactly(tmp_path):
    original = b'filename,red,big\na.jpg, 1 ,"0"\nb.jpg,,\nc.jpg,,1\n'
    path = write(tmp_path / "labels.csv", original)
    labels = LabelFile.open(path)
    labels.apply([Answer("a.jpg", "red", None), Answer("a.jpg", "big", None)])  # NA here is an empty field
    assert path.read_bytes() == b'filename,red,big\na.jpg,  ,""\nb.jpg,,\nc.jpg,,1\n'
    journal = (tmp_path / "labels.csv.aimonk-journal.jsonl").read_text().splitlines()
    assert [(json.loads(line)["old_text"], json.loads(line)["new_text"]) for line in journal] == [
        (" 1 ", "  "), ('"0"', '""')]
    labels.undo()
    assert path.read_bytes() == original
