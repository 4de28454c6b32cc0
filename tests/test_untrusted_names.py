"""Names from a user's file are untrusted text. The policy (README, "Your files are safe"): an attribute name or a
filename in a label file holding a control character (C0, DEL, C1) or a Unicode bidi control is refused when the
file is read, in one line naming the file, the line and the column, the character shown escaped; names longer
than 60 characters are read, and cut with "…" where a report line or a figure prints them; a `$` in a name is
text in a figure, never mathtext; HTML in a name is escaped in every HTML output (the prediction widget, the
notebooks' tables)."""
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from aimonk.data.labels import LabelFileError, read_labels, short_name, summarize  # noqa: E402
from aimonk.serve.predictions import Predictions  # noqa: E402

ANSI = "\x1b[31;1mRED\x1b[0m"
OSC = "\x1b]0;PWNED-TITLE\x07"
BIDI = "\u202eevil\u202c"
HTML = "<script>alert(1)</script><img src=x onerror=alert(2)>"
# Each hostile family and the first character the error must show, escaped as repr writes it
HOSTILE = {
    "ansi": (ANSI, r"'\x1b'"),
    "osc-title": (OSC, r"'\x1b'"),
    "newline": ("two\nlines", r"'\n'"),
    "carriage-return": ("over\rwritten", r"'\r'"),
    "tab": ("a\tb", r"'\t'"),
    "del": ("a\x7fb", r"'\x7f'"),
    "c1-csi": ("a\x9b31mb", r"'\x9b'"),
    "bidi-override": (BIDI, r"'\u202e'"),
    "bidi-isolate": ("a\u2066b\u2069", r"'\u2066'"),
    "bidi-mark": ("a\u200fb", r"'\u200f'"),
    "arabic-mark": ("a\u061cb", r"'\u061c'"),
}
# In labels.txt whitespace separates fields and CR/LF end lines: the families a token there can hold
TXT_FAMILIES = ["ansi", "osc-title", "del", "c1-csi", "bidi-override", "bidi-isolate", "bidi-mark", "arabic-mark"]
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def refused(path: Path, line: int, column: int, shown: str) -> str:
    with pytest.raises(LabelFileError) as caught:
        read_labels(path)
    message = str(caught.value)
    assert "\n" not in message and not RAW.search(message), repr(message)  # one line, nothing raw
    assert message.startswith(f"{path}, line {line}: "), message
    assert f"column {column}" in message and shown in message, message
    return message


@pytest.mark.parametrize("family", sorted(HOSTILE))
def test_a_hostile_attribute_name_in_a_csv_header_is_refused(tmp_path, family):
    name, shown = HOSTILE[family]
    path = tmp_path / "labels.csv"
    path.write_text(f"filename,ok,{csv_cell(name)}\na.jpg,1,0\nb.jpg,0,1\n", newline="")
    message = refused(path, 1, 3, shown)
    assert "attribute name" in message


@pytest.mark.parametrize("family", TXT_FAMILIES)
def test_a_hostile_attribute_name_in_a_labels_txt_header_is_refused(tmp_path, family):
    name, shown = HOSTILE[family]
    path = tmp_path / "labels.txt"
    path.write_text(f"\nfilename ok {name}\na.jpg 1 0\nb.jpg 0 1\n", newline="")  # the header on line 2
    message = refused(path, 2, 3, shown)
    assert "attribute name" in message


@pytest.mark.parametrize("family", sorted(HOSTILE))
def test_a_hostile_filename_in_labels_csv_is_refused(tmp_path, family):
    name, shown = HOSTILE[family]
    path = tmp_path / "labels.csv"
    path.write_text(f"filename,red\na.jpg,1\n{csv_cell('x' + name + '.jpg')},0\n", newline="")
    # a quoted newline or CR makes the row span lines 3-4: the error names the line where it ends, as other row
    # errors do
    message = refused(path, 4 if "\n" in name or "\r" in name else 3, 1, shown)
    assert "filename" in message


@pytest.mark.parametrize("family", TXT_FAMILIES)
def test_a_hostile_filename_in_labels_txt_is_refused(tmp_path, family):
    name, shown = HOSTILE[family]
    path = tmp_path / "labels.txt"
    path.write_text(f"a.jpg 1 0\nx{name}.jpg 0 1\n", newline="")
    refused(path, 2, 1, shown)


def test_whitespace_around_a_csv_filename_is_still_trimmed_not_refused(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("filename,red\n a.jpg\t,1\nb.jpg,0\n", newline="")
    assert read_labels(path).filenames == ["a.jpg", "b.jpg"]


@pytest.mark.parametrize("header, expected", [("filename,red,  \n", "column 3 has no attribute name"),
                                              ('filename,red,"\t"\n', "column 3 has no attribute name"),
                                              ("filename,red, red\n", "'red' more than once")])
def test_empty_and_repeated_attribute_names_are_refused(tmp_path, header, expected):
    path = tmp_path / "labels.csv"
    path.write_text(header + "a.jpg,1,0\nb.jpg,0,1\n", newline="")
    with pytest.raises(LabelFileError, match=re.escape(expected)):
        read_labels(path)


def test_html_dollars_and_other_printable_names_are_read_as_written(tmp_path):
    path = tmp_path / "labels.csv"
    names = [HTML, "$x$", "a$^$", "名前 ümlaut"]
    path.write_text("filename," + ",".join(csv_cell(n) for n in names) + "\na.jpg,1,0,1,0\nb.jpg,0,1,0,1\n",
                    newline="")
    assert read_labels(path).attributes == names


LONG = "long" + "x" * 290 + "tail!!"  # 300 characters


def predictions(attributes, names=("a.jpg",)):
    rng = np.random.default_rng(0)
    return Predictions(list(names), list(attributes), rng.uniform(size=(len(names), len(attributes))),
                       [0.5] * len(attributes))


def test_a_300_character_name_is_read_and_the_text_report_cuts_it(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(f"filename,red,{LONG}\na.jpg,1,0\nb.jpg,0,1\n")
    table = read_labels(path)
    assert table.attributes == ["red", LONG] and len(LONG) == 300
    text = predictions(table.attributes).to_text()
    assert LONG not in text and short_name(LONG) in text and short_name(LONG).endswith("…")
    assert len(short_name(LONG)) == 60 and max(len(line) for line in text.splitlines()) < 120
    assert json.loads(predictions(table.attributes).to_json())[0]["attributes"][LONG]  # the data keep the name


def test_summary_and_the_runs_result_lines_cut_a_300_character_name(tmp_path, capsys):
    from aimonk.cli import main
    from aimonk.decision.rule import DecisionRule
    from aimonk.training.run import describe_out_of_fold, describe_rule

    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text(f"filename,red,{LONG}\na.jpg,1,0\nb.jpg,0,1\n")
    assert main(["summary", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert LONG not in shown and short_name(LONG) in shown
    rule = DecisionRule()
    rule.thresholds_, rule.source_ = np.array([0.4, 0.6]), "tuned"
    frame = pd.DataFrame({"f1": [0.5, 0.7]}, index=["red", LONG])
    for line in (describe_rule(rule, ["red", LONG]), describe_out_of_fold(frame)):
        assert LONG not in line and short_name(LONG) in line, line


def test_the_text_report_escapes_a_file_name_from_disk():
    # Control characters in names from a label file are refused at read; a file name found on disk (predict on
    # a folder) is printed with them escaped, never raw.
    text = predictions(["red"], [f"photos/{ANSI}{BIDI}.jpg"]).to_text()
    assert not RAW.search(text) and r"Image: photos/\x1b[31;1mRED\x1b[0m\u202eevil\u202c.jpg" in text


def test_names_with_dollars_and_long_names_draw_in_every_figure_that_prints_names():
    from aimonk import plots

    hazard = plt.figure()
    hazard.text(0.1, 0.5, "a$^$")
    with pytest.raises(ValueError):  # unescaped, such a name would fail the figure at draw time
        hazard.canvas.draw()
    plt.close(hazard)

    names = ["$x$", "a$^$", LONG, HTML, LONG + "2"]
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 2, size=(40, len(names))).astype(np.float32)
    targets[0], targets[1] = 1, 0
    probabilities = rng.uniform(size=targets.shape)
    thresholds = [0.5] * len(names)
    images = rng.integers(0, 255, size=(2, 16, 16, 3), dtype=np.uint8)
    files = ["dir/$y$.jpg", "dir/b$^$.jpg"]
    table = pd.DataFrame({"f1@0.5": 0.5, "f1@stored": 0.6, "always_present_f1": 0.3, "precision": 0.5, "recall": 0.4,
                          "f1": 0.5, "f1_low": 0.3, "f1_high": 0.7}, index=names)
    history = {"epochs": [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "val_macro_f1": 0.1 * e,
                           "val_f1": {n: 0.1 * e for n in names}} for e in (1, 2)]}
    figures = [
        plots.plot_imbalance(summarize(targets, names)),
        plots.plot_heatmap(pd.DataFrame(0.5, index=names, columns=names), "co-occurrence"),
        plots.plot_labelled_samples(images, files, targets[:2], names),
        plots.plot_sample_predictions(images, files, targets[:2], probabilities[:2], thresholds, names),
        plots.plot_precision_recall(targets, probabilities, names, thresholds),
        plots.plot_reliability(targets, {"raw": probabilities}, names),
        plots.plot_explanation(images[0], rng.uniform(size=(len(names), 16, 16)), names, probabilities[0],
                               thresholds, files[0]),
        plots.plot_confusion_matrices(targets, probabilities, thresholds, names),
        plots.plot_f1_comparison(table),
        plots.plot_worst_mistakes(images, files, targets[:2], probabilities[:2], {c: [0] for c in range(5)}, names),
        plots.plot_f1_intervals(table),
        plots.plot_metrics_per_attribute(table, "F1", "per attribute"),
        plots.plot_epoch_curves(history),
    ]
    for figure in figures:
        figure.canvas.draw()  # mathtext would raise here
        texts = [t.get_text() for t in figure.findobj(matplotlib.text.Text)]
        assert not any(LONG in text for text in texts)  # cut where printed
        assert not any(re.search(r"(?<!\\)\$", text) for text in texts), texts  # every $ escaped: shown as written
        plt.close(figure)
    ticks = [t.get_text() for t in figures[0].axes[0].get_xticklabels()]
    assert ticks[:2] == [r"\$x\$", r"a\$^\$"] and len(ticks) == 5  # two long names cut alike: still two bars


def test_the_prediction_widget_escapes_html_in_names():
    from aimonk.widgets import result_html

    page = result_html(f"{HTML}.png", [HTML, "red"], np.array([0.9, 0.1]), [0.5, 0.5])
    assert "<script" not in page.lower() and "<img" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in page


def notebook_tables():
    """Each `display(<frame>.style...)` line of the notebooks, with the frame it styles."""
    for path in sorted(Path(__file__).resolve().parents[1].glob("notebooks/*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            for line in "".join(cell["source"]).splitlines():
                match = re.match(r"\s*display\(((\w+(\.\w+)?)\.style\..*)\)$", line)
                if match:
                    yield path.name, match.group(2), match.group(1)


@pytest.mark.parametrize("notebook, frame, expression", list(notebook_tables()))
def test_the_notebooks_styled_tables_escape_html_in_names(notebook, frame, expression):
    columns = ["positive", "negative", "NA", "positive_rate", "precision", "recall", "f1", "threshold", "ece",
               "always_present_f1", "lift", "f1@0.5", "f1@stored", "positives", "known", "images", "share"]
    hostile = pd.DataFrame(0.5, index=pd.Index([HTML, "red"], name="attribute"), columns=columns)
    patterns = pd.DataFrame({"pattern": ["[10-]", "[01-]"], "images": [3, 2], "share": [0.6, 0.4]},
                            index=[HTML, "red"])  # label patterns hold no names; the index is hidden

    class Evaluation:
        table = hostile

    namespace = {"summary": hostile, "patterns": patterns, "table": hostile, "cv_table": hostile,
                 "evaluation": Evaluation}
    page = eval(expression, namespace).to_html()  # noqa: S307 - the notebook's own expression
    assert "<script" not in page.lower() and "<img" not in page.lower(), (notebook, frame)


def test_the_notebooks_style_a_table_of_names_in_01_and_03():
    assert {(notebook, frame) for notebook, frame, _ in notebook_tables()} >= {("01_eda.ipynb", "patterns")}
    # 01's imbalance table and 03's tables go through aimonk.plots.styled, which escapes names (tests/test_plots.py)
    folder = Path(__file__).resolve().parents[1] / "notebooks"
    assert "plots.styled(summary)" in (folder / "01_eda.ipynb").read_text()
    text = (folder / "03_evaluate.ipynb").read_text()
    assert all(f"plots.styled({frame}" in text for frame in ("evaluation.table", "table", "cv_table", "test.table"))


@pytest.mark.slow
def test_a_script_name_is_text_in_the_prediction_widget_in_chromium(tmp_path):
    """The prediction app in JupyterLab, in chromium (as tests/test_browser.py drives it), with an attribute and
    an image named with HTML: the names are shown as text; no element and no handler comes of them."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    import nbformat
    from test_browser import CHROMIUM, lab_serving, notebook_page

    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    notebook = tmp_path / "hostile.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"""\
import types
import numpy as np
from aimonk.widgets import PredictionApp

NAME = {HTML!r}

class Predictor:  # what the app asks of a predictor, with two attributes, one named with HTML
    attributes, thresholds = [NAME, "red"], [0.5, 0.5]

    def predict_array(self, image, name=None):
        return types.SimpleNamespace(probabilities=np.array([[0.9, 0.1]]))

app = PredictionApp(Predictor(), ["photos/<b>bold</b>.png"])
app.show(np.zeros((8, 8, 3), np.uint8), NAME + ".png")
app""")], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}),
                   str(notebook))
    lab = lab_serving(notebook, {}, tmp_path)
    url, _ = next(lab)
    try:
        with notebook_page(url, notebook.name, tmp_path) as page:
            dialogs = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            result = page.locator(".widget-html-content").filter(has_text="Attributes present").first
            result.wait_for()
            page.wait_for_timeout(500)  # an onerror handler, were there an element, fires by now
            assert HTML in result.inner_text() and f"{HTML}.png" in result.inner_text()  # as text
            widget = page.locator(".jupyter-widgets.widget-vbox").first
            assert widget.locator("script").count() == 0 and widget.locator("img[src='x']").count() == 0
            assert widget.locator("b", has_text="bold").count() == 0
            assert page.locator(".widget-readout, .widget-label", has_text="<script>").count() >= 1  # slider label
            assert dialogs == []
    finally:
        lab.close()


def test_an_unreadable_image_named_with_escapes_is_named_escaped_in_the_warning(tmp_path):
    from PIL import Image

    from aimonk.data.images import DataWarning, load_image_folder

    Image.new("RGB", (8, 8)).save(tmp_path / "good.png")
    (tmp_path / f"bad{ANSI}{BIDI}.png").write_bytes(b"not an image")
    with pytest.warns(DataWarning) as caught:
        load_image_folder(tmp_path, 8)
    message = str(caught[0].message)
    assert r"bad\x1b[31;1mRED\x1b[0m\u202eevil\u202c.png" in message and not RAW.search(message)
