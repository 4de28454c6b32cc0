"""What the notebooks compute, reached through `aimonk` and `aimonk.plots` alone: the names they use exist and
are documented, and each computation gives, on small hand-made inputs, what was worked out by hand."""
import ast
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import aimonk
from aimonk import plots
from aimonk.data.folder import present_rows
from aimonk.data.eda import sample_rows

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = re.search(r'\nRepository = "(.+?)"', (ROOT / "pyproject.toml").read_text()).group(1)
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def code_cells(path: Path) -> list[str]:
    return ["".join(cell["source"]) for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]


def labelled_folder(root: Path) -> Path:
    """labels.txt naming four images (b.png missing) and images/ with a.png 30x20, c.png 30x20, d.png 10x10."""
    (root / "images").mkdir(parents=True)
    (root / "labels.txt").write_text("a.png 1 0 NA\nb.png 1 1 1\nc.png 0 NA NA\nd.png 1 1 0\n")
    for name, size in (("a.png", (30, 20)), ("c.png", (30, 20)), ("d.png", (10, 10))):
        Image.new("RGB", size, (200, 10, 10)).save(root / "images" / name)
    return root


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_notebook_imports_aimonk_and_aimonk_plots_only(path):
    for source in code_cells(path):
        for node in ast.walk(ast.parse(re.sub(r"^(\s*)%.*$", r"\1pass", source, flags=re.M))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aimonk"):
                assert node.module == "aimonk" and [a.name for a in node.names] == ["plots"], (path.name, source)
            if isinstance(node, ast.Import):
                assert all(a.name == "aimonk" or not a.name.startswith("aimonk") for a in node.names), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_notebook_uses_only_public_names_and_sets_up_in_three_lines(path):
    cells = code_cells(path)
    assert len(cells[0].strip().splitlines()) <= 3 and "%pip install" in cells[0]
    assert f"git+{REPOSITORY}" in cells[0]  # pyproject.toml's [project.urls], for Colab without a checkout
    text = "\n".join(cells)
    for name in {*re.findall(r"\baimonk\.([A-Za-z_]+)\b", text)} - {"plots"}:
        assert name in aimonk.__all__, (path.name, name)
    for name in set(re.findall(r"\bplots\.([A-Za-z_]+)\b", text)):
        assert name in plots.__all__, (path.name, name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_code_line_of_a_notebook_fits_100_characters(path):
    """Longer lines are cut off where the notebook is read: JupyterLab's default width, the docs' pages."""
    long = [(number, line) for number, source in enumerate(code_cells(path), 1)
            for line in source.splitlines() if len(line) > 100]
    assert not long, f"{path.name}: code cell, line over 100 characters: {long}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_table_a_notebook_displays_is_styled(path):
    """Through aimonk.plots.styled (numbers rounded by kind, no index of row numbers) or a Styler of its own:
    never a raw frame's floats (0.203905) or a pandas index beside an epoch column."""
    shown = [line.strip() for source in code_cells(path) for line in source.splitlines() if "display(" in line]
    assert all(line.startswith(("display(plots.styled(", "display(patterns.style.")) for line in shown), shown


def test_every_public_name_is_documented_and_import_aimonk_stays_light():
    for name in aimonk.__all__:
        assert name == "__version__" or inspect.getdoc(getattr(aimonk, name)), name
    done = subprocess.run([sys.executable, "-c", "import sys, aimonk; print(sorted(m for m in ('torch', 'pandas', "
                           "'numpy', 'matplotlib') if m in sys.modules))"], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"


def run_in_a_fresh_kernel(cwd, *sources) -> list[str]:
    """Each source run in a new IPython kernel started in `cwd`; the text each printed (stdout)."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(cwd=str(cwd))
    try:
        printed = []
        for source in sources:
            reply = client.execute_interactive(source, timeout=120, output_hook=lambda m: printed.append(
                m["content"].get("text", "")) if m["msg_type"] == "stream" else None)
            assert reply["content"]["status"] == "ok", reply["content"]
        return printed
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_the_set_up_cell_installs_nothing_where_aimonk_imports_and_names_the_checkout_or_github(tmp_path):
    """Notebook 02's set-up cell in a fresh kernel outside the repository: aimonk importable, so no pip; the
    source it would install is the checkout beside the notebook, else the repository's URL."""
    set_up = code_cells(ROOT / "notebooks" / "02_train.ipynb")[0]
    pip_line = set_up.splitlines()[-1].strip()
    (tmp_path / "checkout" / "notebooks").mkdir(parents=True)
    (tmp_path / "checkout" / "pyproject.toml").write_text("")
    printed = run_in_a_fresh_kernel(tmp_path, set_up, "import aimonk; print('imported', aimonk.__version__)",
                                    f"print(get_ipython().var_expand({pip_line!r}))", "import os; "
                                    "os.chdir('checkout/notebooks')", f"print(get_ipython().var_expand({pip_line!r}))")
    assert printed == [f"imported {aimonk.__version__}\n", f"%pip install -q git+{REPOSITORY}\n",
                       "%pip install -q ..\n"]

def test_present_rows_leave_out_the_missing_files():
    assert present_rows(["a", "b", "c", "d"], ["d", "b"]) == [0, 2]
    assert present_rows(["a", "b"], []) == [0, 1]
    assert present_rows(["a"], ["a", "z"]) == []


def test_sample_rows_draw_distinct_rows_reproducibly():
    rows = [10, 20, 30, 40, 50]
    drawn = sample_rows(rows, 3, seed=4)
    assert len(drawn) == 3 == len(set(drawn)) and set(drawn) <= set(rows)
    assert sample_rows(rows, 3, seed=4) == drawn
    assert sorted(sample_rows(rows, 99)) == rows and sample_rows(rows, 0) == []


def test_common_sizes_count_each_size_and_mode():
    sizes = pd.DataFrame({"width": [100, 100, 50, 100, 50, 30], "height": [80, 80, 50, 80, 50, 20],
                          "mode": ["RGB", "RGB", "L", "RGB", "L", "RGB"]})
    common = aimonk.common_sizes(sizes, top=2)
    assert list(common.index) == [(100, 80, "RGB"), (50, 50, "L")] and common["images"].tolist() == [3, 2]


def test_explore_folder_reads_labels_and_present_images(tmp_path):
    folder = aimonk.explore_folder(labelled_folder(tmp_path / "data"))
    assert folder.missing == ["b.png"] and folder.present == [0, 2, 3]
    assert folder.present_names == ["a.png", "c.png", "d.png"]
    assert folder.image_dir == tmp_path / "data" / "images"
    summary = folder.summary()  # the four listed rows: Attr1 1,1,0,1; Attr2 0,1,NA,1; Attr3 NA,1,NA,0
    assert summary["positive"].tolist() == [3, 2, 1] and summary["NA"].tolist() == [0, 1, 2]
    assert folder.na_per_image().to_dict() == {0: 2, 1: 1, 2: 1}  # b and d none, a one, c two
    sizes = folder.image_sizes()
    assert sizes[["width", "height"]].values.tolist() == [[30, 20], [30, 20], [10, 10]]
    assert sorted(folder.sample(10)) == [0, 2, 3] and "4 labelled images" in str(folder)


def test_image_folder_of_a_labelled_folder_and_of_a_plain_one(tmp_path):
    data = labelled_folder(tmp_path / "data")
    assert aimonk.image_folder(data) == data / "images"
    assert aimonk.image_folder(data / "images") == data / "images"  # no label file there: the folder itself
    assert [p.name for p in aimonk.list_images(data / "images")] == ["a.png", "c.png", "d.png"]
    with pytest.raises(FileNotFoundError):
        aimonk.image_folder(tmp_path / "nowhere")


def test_the_exploring_figures_draw_their_tables(tmp_path):
    per_image = pd.Series([5, 2], index=pd.Index([0, 1], name="NA labels per image"), name="images")
    figure = plots.plot_na_per_image(per_image)
    assert [bar.get_height() for bar in figure.axes[0].patches] == [5, 2]
    patterns = pd.DataFrame({"pattern": ["[11]", "[1-]"], "images": [7, 3], "share": [0.7, 0.3]})
    ax = plots.plot_label_patterns(patterns).axes[0]
    assert [bar.get_width() for bar in ax.patches] == [7, 3] and ax.yaxis_inverted()
    sizes = pd.DataFrame({"width": [30, np.nan, 10], "height": [20, np.nan, 10], "mode": ["RGB", "unreadable", "L"]})
    points = plots.plot_image_sizes(sizes).axes[0].collections[0].get_offsets()
    assert np.asarray(points).tolist() == [[30, 20], [10, 10]]
    folder = aimonk.explore_folder(labelled_folder(tmp_path / "data"))
    figure = plots.plot_folder_samples(folder, [0, 3], size=16)
    shown = [image.get_array().shape for ax in figure.axes for image in ax.get_images()]
    assert shown == [(16, 16, 3), (16, 16, 3)]
    plots.save_figure(plots.plot_image_sizes(sizes), tmp_path / "sizes.png", show=False)
    assert (tmp_path / "sizes.png").stat().st_size > 0


@pytest.mark.filterwarnings("ignore::aimonk.data.images.DataWarning")
def test_an_evaluation_keeps_the_rows_it_scored(trained_run, demo_dir):
    out, _ = trained_run
    data = aimonk.load_labelled_folder(demo_dir, 48, progress=False)
    evaluation = aimonk.evaluate(data, out / "model.pt", subset="val", device="cpu", progress=False)
    rows = evaluation.rows
    assert evaluation.subset == "val" and 0 < len(rows) < len(data) and (np.diff(rows) > 0).all()
    assert evaluation.names == [data.filenames[row] for row in rows]
    np.testing.assert_array_equal(evaluation.targets, data.values[rows])
