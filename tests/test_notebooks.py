"""The numbered notebooks executed headless by papermill on tiny data, and their committed form."""
import contextlib
import json
import os
import shutil
import re
from pathlib import Path

import nbformat
import pytest

from aimonk.model.checkpoint import Checkpoint
from aimonk.notebooks import FIGURES, NOTEBOOKS, NotebookError, notebook_folder, run_notebooks

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_have_no_outputs_and_a_parameters_cell(name):
    notebook = json.loads((NOTEBOOK_DIR / name).read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)
    assert sum("parameters" in c["metadata"].get("tags", []) for c in notebook["cells"]) == 1
    assert notebook["cells"][0]["cell_type"] == "markdown"
    ids = [c.get("id") for c in notebook["cells"]]
    assert None not in ids and len(set(ids)) == len(ids)  # nbformat 4.5: every cell has its own id
    nbformat.validate(nbformat.reads(json.dumps(notebook), as_version=4))


@pytest.mark.slow
def test_all_notebooks_run_end_to_end(executed_notebooks):
    """As `aimonk notebooks` runs them (the executed_notebooks fixture, shared with the docs build): each named by
    its progress line, the training cell's lines shown as it runs; notebook 05 writes the answers it is given
    (conftest.NOTEBOOK_ANSWERS) into the labels file (of a copy of the demo folder)."""
    tmp_path, executed, out, err, original = executed_notebooks
    figures, data = tmp_path / "figures", tmp_path / "data"
    assert [p.name for p in executed] == list(NOTEBOOKS)
    assert "[2/5] 02_train.ipynb" in err and "[5/5] 05_label.ipynb" in err
    assert "\n  linear probe solved (" in out and "\n  note: 3 image(s) listed in " in out and "\n  thresholds " in out
    assert "Executing Cell" not in out + err and "without encryption" not in out + err  # no kernel-transport warning
    evaluation = nbformat.read(tmp_path / "03_evaluate.ipynb", as_version=4)
    printed = "".join(str(output.get("text", "")) + str(output.get("data", {}).get("text/html", ""))
                      for cell in evaluation.cells if cell.cell_type == "code" for output in cell.outputs)
    assert "f1@stored" in printed and "out-of-fold predictions" in printed  # the stored thresholds, explained
    assert Checkpoint.load(tmp_path / "model.pt").rule.source_.startswith("tuned")
    expected = {"imbalance", "na_per_image", "cooccurrence", "label_patterns", "image_sizes", "samples",
                "loss_curve", "out_of_fold", "f1_comparison", "precision_recall", "confusion_matrices",
                "sample_predictions", "worst_mistakes", "cv_f1_intervals", "reliability", "cv_reliability", "label_issues",
                "explanation"}
    assert {p.stem for p in figures.glob("*.png")} == expected
    assert {p.name for p in figures.glob("*.png")} <= set(FIGURES)  # what `aimonk notebooks` protects
    for name in ("model.pt", "evaluation/metrics.csv", "evaluation/metrics.json", "cv/cv_metrics.csv",
                 "cv/label_issues.csv"):  # written by aimonk.evaluate and aimonk.cross_validate themselves
        assert (tmp_path / name).is_file(), name
    assert len((tmp_path / "predictions.csv").read_text().splitlines()) == 58  # header + 57 images
    labels = (data / "labels.txt").read_text().splitlines()
    assert labels[0].split()[1] == "0" and labels[1].split()[2] == "NA" and labels[2:] == original[2:]
    assert (data / "labels.txt.orig").read_text().splitlines() == original
    # 04: the Grad-CAM figure and the app's static picture (what a saved notebook shows where the widget cannot run)
    shown = {"01_eda.ipynb": 6, "02_train.ipynb": 2, "03_evaluate.ipynb": 9, "04_predict.ipynb": 2, "05_label.ipynb": 0}
    for name in NOTEBOOKS:  # every figure shows inline, once, where it is computed
        outputs = [output for cell in nbformat.read(tmp_path / name, as_version=4).cells if cell.cell_type == "code"
                   for output in cell.outputs]
        assert sum("image/png" in output.get("data", {}) for output in outputs) == shown[name], name
        texts = [str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", "")) for output in outputs]
        assert not any("PosixPath(" in text for text in texts), name
        assert not any(output.output_type == "error" for output in outputs), name
        assert not any(output.get("name") == "stderr" for output in outputs), name  # no red box: no warning
        assert not any(re.search(r"Warning\b", text) for text in texts), name
        assert not any(re.search(r"\b0%\|", text) for text in texts), name  # no progress bar frozen at its start


def test_a_failing_cell_names_the_notebook_and_the_cell(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell("value = 1")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0")]
    nbformat.write(notebook, tmp_path / "99_broken.ipynb")
    with pytest.raises(NotebookError, match=r"99_broken.ipynb: cell In \[4\] \('1 / 0'\) failed with ZeroDivisionError"):
        run_notebooks({"value": 2}, tmp_path / "out", tmp_path, names=["99_broken.ipynb"], progress=False)


def test_the_repository_notebooks_are_found():
    assert notebook_folder() == NOTEBOOK_DIR


@pytest.mark.slow
def test_a_wheel_ships_the_notebooks(tmp_path):
    """`pip install .` (not editable) then `aimonk notebooks` needs them inside the package."""
    import subprocess
    import sys
    import zipfile

    source = tmp_path / "source"  # a copy: setuptools builds in the source tree
    root = NOTEBOOK_DIR.parent
    left_out = {".git", ".venv", "build", "runs", "data", "figures", "benchmarks", "tests"}  # of the root alone
    shutil.copytree(root, source, symlinks=True, ignore=lambda folder, names: [
        name for name in names if (Path(folder) == root and name in left_out) or name == "__pycache__"
        or name.endswith(".egg-info")])
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("aimonk-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n for n in names if n.endswith(".ipynb")) == [f"aimonk/_notebooks/{n}" for n in NOTEBOOKS]
    assert "aimonk/data/folder.py" in names and "aimonk/cli/commands.py" in names  # the whole package


def test_notebook_parameters_are_data_typed_by_the_notebooks_default(demo_dir, tmp_path, capsys):
    """A text parameter keeps quotes, newlines and code as text; `-p options '[1,2]'` is one line naming it."""
    from aimonk.cli import main

    hostile = "\"; import os; os.system('touch X') #\nsecond line"
    from aimonk.notebooks import declared_defaults, typed_value
    defaults = declared_defaults(NOTEBOOKS, NOTEBOOK_DIR)
    assert typed_value("data_dir", hostile, defaults["data_dir"]) == hostile
    assert typed_value("data_dir", "[1, 2]", defaults["data_dir"]) == "[1, 2]"
    assert typed_value("overwrite", "true", defaults["overwrite"]) is True
    for name, value in (("options", "[1,2]"), ("overwrite", "1"), ("samples", "many")):
        code = main(["notebooks", "--data", str(demo_dir), "--out", str(tmp_path / name), "-p", name, value])
        said = capsys.readouterr().err
        assert code == 2 and "Traceback" not in said, said
        assert f"-p {name} {value}: expected" in said and len(said.strip().splitlines()) == 1
    assert not (tmp_path / "X").exists()


# ---- faults: a kernel that dies, a stop (Ctrl-C, SIGTERM) -------------------------------------------------------

def tiny_notebook(path: Path, code: str) -> None:
    """A notebook of two cells: its parameters, and `code`."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell("value = 1")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell(code)]
    nbformat.write(notebook, path)


def notebooks_command(demo_dir, tmp_path, only: str) -> list[str]:
    """`aimonk notebooks` on the notebooks in tmp_path/notebooks (--notebooks), into tmp_path/out."""
    import sys
    return [sys.executable, "-m", "aimonk", "notebooks", "--data", str(demo_dir), "--out", str(tmp_path / "out"),
            "--notebooks", str(tmp_path / "notebooks"), "--only", only]


def test_a_kernel_that_dies_is_said_at_once_naming_the_notebook_the_cell_and_what_is_left(demo_dir, tmp_path):
    """Its kernel killed (as the out-of-memory killer does), `aimonk notebooks` says so in one line within seconds,
    exit code 2, where it waited on the dead kernel's silence before."""
    import subprocess
    (tmp_path / "notebooks").mkdir()
    tiny_notebook(tmp_path / "notebooks" / "01_eda.ipynb", "print('fine')")
    tiny_notebook(tmp_path / "notebooks" / "02_train.ipynb", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    result = subprocess.run(notebooks_command(demo_dir, tmp_path, "01,02"), capture_output=True, text=True,
                            timeout=90)  # kernels started, each in a few seconds; the death seen within one
    out = tmp_path / "out"
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    first, second, error = result.stderr.strip().splitlines()  # a log file gets each notebook's line once, at its end
    assert re.fullmatch(r"\[1/2\] 01_eda.ipynb: cell 2/2 \[00:\d\d\]", first), result.stderr
    assert re.fullmatch(r"\[2/2\] 02_train.ipynb: cell 2/2 \[00:\d\d\]", second), result.stderr
    said = re.escape("aimonk notebooks: error: 02_train.ipynb: cell 2/2 ('import os, signal'): the kernel was "
                     "killed by SIGKILL (by another process, or the system's out-of-memory killer)")
    left = re.escape(f"; the executed copy up to that cell is {out / '02_train.ipynb'}; the notebooks before it ran "
                     f"to completion (01_eda.ipynb in {out})")
    assert re.fullmatch(said + r"( \(its last line: .*\))?" + left, error), error  # what the kernel wrote, if any
    assert "fine" in str(nbformat.read(out / "01_eda.ipynb", as_version=4).cells[1].outputs)
    assert nbformat.read(out / "02_train.ipynb", as_version=4).cells[1].source.startswith("import os, signal")


def ended(pid: int, within: float = 10) -> bool:
    """Whether the process ends within `within` seconds (gone, or a zombie whose parent is gone)."""
    import time

    import psutil
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("stop, code", [pytest.param("SIGINT", 130, marks=pytest.mark.slow),
                                         pytest.param("SIGTERM", 143, marks=pytest.mark.slow)])
def test_a_stop_says_which_notebook_and_cell_it_stopped_and_leaves_no_kernel_running(demo_dir, tmp_path, stop,
                                                                                       code):
    import signal
    import subprocess
    import time
    started = tmp_path / "started"
    (tmp_path / "notebooks").mkdir()
    tiny_notebook(tmp_path / "notebooks" / "01_eda.ipynb", f"import os, pathlib, time\n"
                  f"pathlib.Path({str(started)!r}).write_text(str(os.getpid()))\ntime.sleep(300)")
    process = subprocess.Popen(notebooks_command(demo_dir, tmp_path, "01"), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not (started.is_file() and started.read_text()) and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(getattr(signal, stop))
        _, err = process.communicate(timeout=60)
        assert process.returncode == code and "Traceback" not in err, err
        assert err.strip().splitlines()[-1] == (
            "aimonk notebooks: stopped 01_eda.ipynb and its kernel in cell 2/2 ('import os, pathlib, time'); the "
            f"executed copy up to that cell is {tmp_path / 'out' / '01_eda.ipynb'}")
        assert (tmp_path / "out" / "01_eda.ipynb").is_file()
        assert ended(int(started.read_text())), "the kernel is left running"
    finally:  # a failed test leaves nothing running
        process.kill()
        if started.is_file() and started.read_text():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(started.read_text()), signal.SIGKILL)


@pytest.mark.slow
def test_in_a_terminal_each_notebook_shows_its_running_cell_and_time_and_the_kernels_lines_whole_above(demo_dir,
                                                                                                      tmp_path):
    """`[i/N] name: cell k/M [elapsed]` redrawn each second (no estimate of the time left, which a long cell
    made absurd), the kernel's lines each whole above it."""
    import fcntl
    import struct
    import subprocess
    import termios
    (tmp_path / "notebooks").mkdir()
    tiny_notebook(tmp_path / "notebooks" / "01_eda.ipynb",
                  "import sys, time\nprint('a line from the kernel', file=sys.stderr)\ntime.sleep(3)")
    terminal, side = os.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 120 columns, as a window has
    process = subprocess.Popen(notebooks_command(demo_dir, tmp_path, "01"), stdout=side, stderr=side,
                               stdin=subprocess.DEVNULL)
    os.close(side)
    shown = b""
    with contextlib.suppress(OSError):  # the terminal closes with the process
        while chunk := os.read(terminal, 65536):
            shown += chunk
    os.close(terminal)
    assert process.wait(timeout=60) == 0, shown
    frames = shown.decode().replace("\r\n", "\n").replace("\r", "\n").splitlines()
    lines = [frame for frame in frames if frame.strip()]
    assert "  a line from the kernel" in lines, lines
    times = {frame for frame in lines if re.fullmatch(r"\[1/1\] 01_eda.ipynb: cell 2/2 \[00:0\d\]", frame)}
    assert len(times) >= 3, lines  # the time moves while the cell runs
    assert lines[-1].startswith("executed 1 notebook(s) into "), lines


def test_a_kernel_that_fails_at_its_start_is_said_with_its_exit_code_and_last_line(tmp_path, monkeypatch):
    import sys
    spec = tmp_path / "kernels" / "kernels" / "exits"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-c", "raise SystemExit('no kernel here')", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "exits", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "kernels"))
    tiny_notebook(tmp_path / "01_x.ipynb", "x = 1")
    said = "01_x.ipynb: before its first cell: the kernel exited with code 1 (its last line: 'no kernel here'); "
    with pytest.raises(NotebookError, match=re.escape(said)):
        run_notebooks({}, tmp_path / "out", tmp_path, names=["01_x.ipynb"], progress=False, kernel_name="exits")
