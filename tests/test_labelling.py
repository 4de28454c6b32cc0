"""The labelling queue and the labelling loop: questions ranked as documented, answers written into the labels file,
the model retrained after each batch, undo; `aimonk label`. Expected values are worked out by hand."""
import math
import shutil

import numpy as np
import pytest

import aimonk
from aimonk.cli import main
from aimonk.config import preset
from aimonk.labelling.labelfile import LabelFileChanged
from aimonk.labelling.queue import interleave, rank_questions, rarity, uncertainty

NAN = float("nan")


def test_uncertainty_is_one_at_the_threshold_and_zero_at_either_end():
    probabilities = np.array([[0.2, 0.0, 1.0, 0.6]])
    thresholds = np.array([0.2, 0.2, 0.2, 0.2])
    # 0.6 is 0.4 above a threshold of 0.2, whose side above is 0.8 wide: 1 - 0.4 / 0.8 = 0.5
    assert uncertainty(probabilities, thresholds)[0].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.5])


def test_rarity_weighs_attributes_with_few_known_positives():
    targets = np.array([[1, 1], [1, 0], [1, 0], [1, NAN]])  # 4 known positives, and 1
    assert rarity(targets).tolist() == pytest.approx([0.5, 1.0])  # 1/sqrt(4) against 1/sqrt(1), scaled


def test_na_cells_are_asked_by_score_and_known_labels_never_as_unknown():
    targets = np.array([[NAN, 1.0], [0.0, NAN], [NAN, NAN], [1.0, 0.0]])
    probabilities = np.array([[0.5, 0.9], [0.1, 0.45], [0.9, 0.2], [0.8, 0.1]])
    questions = rank_questions(targets, probabilities, [0.5, 0.5], ["a", "b", "c", "d"], ["x", "y"],
                               score="uncertainty")
    # uncertainty: a/x 1.0, b/y 1 - 0.05/0.5 = 0.9, c/y 1 - 0.3/0.5 = 0.4, c/x 1 - 0.4/0.5 = 0.2
    assert [(q.filename, q.attribute) for q in questions] == [("a", "x"), ("b", "y"), ("c", "y"), ("c", "x")]
    assert all(q.kind == "unknown" and math.isnan(q.current) for q in questions)
    assert [q.score for q in questions] == pytest.approx([1.0, 0.9, 0.4, 0.2])


def test_rare_uncertainty_asks_the_rare_attribute_first():
    targets = np.array([[1, 0], [1, 1], [1, 0], [1, 0], [NAN, NAN]])  # x: 4 positives, y: 1
    probabilities = np.full((5, 2), 0.5)
    questions = rank_questions(targets, probabilities, [0.5, 0.5], list("abcde"), ["x", "y"],
                               score="rare_uncertainty")
    assert [(q.attribute, q.score) for q in questions] == [("y", pytest.approx(1.0)), ("x", pytest.approx(0.5))]


def test_skipped_questions_come_last():
    targets = np.array([[NAN], [NAN]])
    questions = rank_questions(targets, np.array([[0.5], [0.4]]), [0.5], ["a", "b"], ["x"], score="uncertainty",
                               skipped={("a", "x")})
    assert [q.filename for q in questions] == ["b", "a"]


def test_a_confidently_contradicted_label_is_a_marked_question():
    targets = np.array([[1.0], [1.0], [1.0], [0.0], [0.0], [0.0]])
    out_of_fold = np.array([[0.9], [0.8], [0.05], [0.1], [0.2], [0.1]])  # row 2: labelled 1, predicted 0.05
    questions = rank_questions(targets, np.full((6, 1), 0.5), [0.5], list("abcdef"), ["x"], out_of_fold=out_of_fold)
    assert [(q.filename, q.kind, q.current) for q in questions] == [("c", "contradiction", 1.0)]
    assert questions[0].probability == pytest.approx(0.05)


def test_contradictions_are_mixed_in_after_every_few_unknown_cells():
    assert interleave([1, 2, 3, 4, 5], ["a", "b", "c"], 2) == [1, 2, "a", 3, 4, "b", 5, "c"]


@pytest.fixture
def folder(demo_dir, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(demo_dir, copy)
    return copy


FAST = preset("default", backbone="efficientnet_lite0", image_size=48)


def test_a_batch_of_answers_is_written_retrained_on_and_undone(folder):
    original = (folder / "labels.txt").read_bytes()
    session = aimonk.label_queue(folder, config=FAST, batch_size=2)
    first, second = session.questions(2)
    assert first.kind == second.kind == "unknown"
    assert session.answer(first, 1.0) is None  # one answer: nothing written yet
    assert (folder / "labels.txt").read_bytes() == original
    retrained = session.answer(second, 0.0)
    assert retrained is not None and retrained.after is not None and "macro" in retrained.after.index
    reread = aimonk.load_labelled_folder(folder, 48)
    row = {name: i for i, name in enumerate(reread.filenames)}
    assert reread.values[row[first.filename], reread.attributes.index(first.attribute)] == 1.0
    assert reread.values[row[second.filename], reread.attributes.index(second.attribute)] == 0.0
    assert (folder / "labels.txt.orig").read_bytes() == original
    asked = {(q.filename, q.attribute) for q in session.questions()}
    assert (first.filename, first.attribute) not in asked  # answered: no longer asked
    assert session.undo() is not None
    assert (folder / "labels.txt").read_bytes() == original
    assert (first.filename, first.attribute) in {(q.filename, q.attribute) for q in session.questions()}


def test_unknown_writes_na_and_is_not_asked_again(folder):
    session = aimonk.label_queue(folder, config=FAST, batch_size=1)
    question = next(q for q in session.questions() if q.kind == "contradiction") if any(
        q.kind == "contradiction" for q in session.questions()) else session.questions(1)[0]
    session.answer(question, None)
    reread = aimonk.load_labelled_folder(folder, 48)
    value = reread.values[reread.filenames.index(question.filename), reread.attributes.index(question.attribute)]
    assert math.isnan(value)
    assert (question.filename, question.attribute) not in {(q.filename, q.attribute) for q in session.questions()}


def test_a_labels_file_changed_meanwhile_is_never_overwritten_and_the_answers_are_kept(folder):
    session = aimonk.label_queue(folder, config=FAST, batch_size=5)
    question = session.questions(1)[0]
    session.answer(question, 1.0)
    edited = (folder / "labels.txt").read_bytes() + b"\n"  # another program saves the file
    (folder / "labels.txt").write_bytes(edited)
    with pytest.raises(LabelFileChanged, match="changed on disk since it was read"):
        session.commit()
    assert (folder / "labels.txt").read_bytes() == edited
    assert [(a.filename, a.attribute, a.value) for a in session.pending] == [(question.filename, question.attribute,
                                                                              1.0)]


def test_a_recipe_that_learns_by_epochs_is_not_retrained_here(folder):
    config = preset("finetune", image_size=48, epochs=1, batch_size=16, num_workers=0)
    session = aimonk.label_queue(folder, config=config, batch_size=1)
    retrained = session.answer(session.questions(1)[0], 0.0)
    assert retrained.after is None and "not retrained" in retrained.describe()


def test_the_command_prints_the_queue_and_applies_answers_and_undoes_them(folder, run, capsys, tmp_path):
    original = (folder / "labels.txt").read_bytes()
    assert main(["label", str(folder), "--queue", "3", "--model", str(run / "model.pt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "filename,attribute,kind,current,probability,threshold,score" and len(lines) == 4
    assert (folder / "labels.txt").read_bytes() == original  # asking writes nothing
    answers = tmp_path / "answers.csv"
    answers.write_text("filename,attribute,answer\nimage_0.jpg,Attr1,0\nimage_1.jpg,Attr4,unknown\n"
                       "image_2.jpg,Attr2,skip\n")
    assert main(["label", str(folder), "--answers", str(answers)]) == 0
    assert "wrote 2 answer(s)" in capsys.readouterr().out
    lines = (folder / "labels.txt").read_text().splitlines()
    assert lines[0].split()[:2] == ["image_0.jpg", "0"] and lines[1].split()[4] == "NA"
    assert main(["label", str(folder), "--undo"]) == 0
    assert (folder / "labels.txt").read_bytes() == original


def test_a_model_of_other_attributes_is_refused_before_any_image_is_decoded(folder, run):
    (folder / "labels.txt").write_text("image_0.jpg 1 0\n")  # two attributes; the model knows four
    with pytest.raises(ValueError, match="names the attributes Attr1, Attr2; .* was trained on Attr1, Attr2, Attr3, Attr4"):
        aimonk.label_queue(folder, run / "model.pt")


def test_a_bad_answers_file_is_one_line_naming_its_line_and_nothing_is_written(folder, capsys, tmp_path):
    original = (folder / "labels.txt").read_bytes()
    answers = tmp_path / "answers.csv"
    answers.write_text("filename,attribute,answer\nimage_0.jpg,Attr1,1\nimage_1.jpg,Attr9,0\n")
    assert main(["label", str(folder), "--answers", str(answers)]) == 2
    assert "Attr9" in capsys.readouterr().err
    answers.write_text("filename,attribute,answer\nimage_0.jpg,Attr1,maybe\n")
    assert main(["label", str(folder), "--answers", str(answers)]) == 2
    assert "line 2" in capsys.readouterr().err
    assert (folder / "labels.txt").read_bytes() == original
