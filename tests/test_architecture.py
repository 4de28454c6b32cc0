"""The shape of the package: layers that only import downwards and an ONNX route without torch (the import-linter
contracts in pyproject.toml), no import circle (imports inside functions counted), short modules, and the public
API at the top."""
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import aimonk

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("data", "decision", "model", "training", "serve", "evaluation", "plots", "cli")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter's verdict on the package under `root` (its cwd comes first on sys.path), by its contracts."""
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    return subprocess.run([command, "--no-cache", "--config", str(root / "pyproject.toml")], cwd=root,
                          capture_output=True, text=True)


def test_the_import_contracts_are_kept():
    """The layers, and the ONNX route without torch: every contract in pyproject.toml."""
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    contracts = (ROOT / "pyproject.toml").read_text().count("[[tool.importlinter.contracts]]")
    assert contracts == 2 and f"Contracts: {contracts} kept, 0 broken." in done.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("serve/predictions.py", "import torch", "The ONNX route"),  # on the route itself
    ("cli/parser.py", "import aimonk.serve.predictor", "The ONNX route"),  # torch through another module
    ("serve/predictor.py", "import aimonk.training.loaders", "Layers"),  # serve and training: siblings
    ("data/labels.py", "import aimonk.decision.rule", "Layers"),  # a lower layer importing a higher one
])
def test_the_import_contracts_catch_a_breach(tmp_path, module, line, broken):
    shutil.copytree(ROOT / "aimonk", tmp_path / "aimonk", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / "aimonk" / module
    path.write_text(path.read_text() + f"\n{line}\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1 and "1 kept, 1 broken" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
    assert next(row for row in done.stdout.splitlines() if row.startswith(broken)), done.stdout[-3000:]


def requires_python(pyproject: str) -> tuple[int, int]:
    """The lowest Python that pyproject.toml's requires-python allows (read without tomllib: Python 3.11)."""
    return tuple(map(int, re.search(r'^requires-python = ">=(\d+)\.(\d+)"', pyproject, re.M).groups()))


def test_requires_python_is_what_the_code_needs():
    """vermin's minimum Python for the package, its tests and benchmarks is no newer than requires-python says.
    (Its default rules: `X | Y` annotations are not counted, most sit under `from __future__ import annotations`.)"""
    command = shutil.which("vermin", path=str(Path(sys.executable).parent)) or "vermin"
    done = subprocess.run([command, "--no-tips", "--no-make-paths-absolute", "--format", "parsable", "aimonk", "tests",
                           "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = [row.split(":", 5) for row in done.stdout.splitlines()]  # file:line:column:py2:py3:feature

    def version(text: str):
        return tuple(map(int, text.split("."))) if re.fullmatch(r"\d+\.\d+", text) else None

    needed = version(rows[-1][4])  # the last row: the minimum for all of them
    claimed = requires_python((ROOT / "pyproject.toml").read_text())
    why = sorted({f"{row[0]}:{row[1]} {row[5]}" for row in rows[:-1]
                  if row[1] and version(row[4]) and version(row[4]) > claimed})
    assert needed <= claimed, f"the code needs Python {needed}, requires-python says {claimed}: " + "; ".join(why)


def cycle(graph) -> list[str] | None:
    """An import circle among the package's modules, or None (depth-first search)."""
    state, path = {}, []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if state.get(imported) == "open":
                return path[path.index(imported):] + [imported]
            if imported not in state and (found := visit(imported)):
                return found
        state[module] = "done"
        path.pop()
        return None

    return next((found for module in sorted(graph.modules) if module not in state and (found := visit(module))), None)


def test_no_import_circle_counting_imports_inside_functions():
    graph = grimp.build_graph("aimonk")  # every import statement, at module level or inside a function
    assert cycle(graph) is None, " -> ".join(cycle(graph))


def test_the_cycle_finder_finds_one():
    class Graph:
        modules = {"a", "b", "c"}

        @staticmethod
        def find_modules_directly_imported_by(module):
            return {"a": {"b"}, "b": {"c"}, "c": {"a"}}[module]

    assert cycle(Graph()) == ["a", "b", "c", "a"]


def test_layered_subpackages_and_no_module_over_350_lines():
    for name in SUBPACKAGES:
        assert (ROOT / "aimonk" / name / "__init__.py").is_file(), name
    long = {str(path.relative_to(ROOT)): n for path in (ROOT / "aimonk").rglob("*.py")
            if (n := len(path.read_text().splitlines())) > 350}
    assert not long


@pytest.mark.parametrize("name", ["train", "evaluate", "cross_validate", "load_predictor", "TrainConfig", "preset",
                                  "load_labelled_folder"])
def test_the_public_api_is_at_the_top_with_docstrings_and_types(name):
    value = getattr(aimonk, name)
    assert inspect.getdoc(value) and name in dir(aimonk)
    if inspect.isfunction(value):
        hints = inspect.get_annotations(value)
        assert "return" in hints and len(hints) > 1, name


def test_importing_aimonk_loads_no_pytorch():
    done = subprocess.run([sys.executable, "-c", "import sys, aimonk, aimonk.serve.onnx_predictor; "
                                                 "print('torch' in sys.modules)"],
                          capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "False"


@pytest.mark.slow
def test_the_readme_python_example_runs_as_written(demo_dir, tmp_path):
    """The README's "From Python" block, run as it stands in a folder whose data/my_clothes is the demo data."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## From Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    shutil.copytree(demo_dir, tmp_path / "data" / "my_clothes")
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs" / "r1" / "model.pt").is_file()
    assert done.stdout.count("Attributes present:") == 57  # every present image of the folder reported


def test_aimonk_train_reaches_the_checkpoint_write_in_six_frames_and_writes_model_pt_once(demo_dir, tmp_path):
    """The path of one run reads top to bottom: main -> run_command -> cmd_train -> workflows.train ->
    RunFolder.save_run -> Checkpoint.save, and model.pt is written once (observed with a profiler, nothing patched)."""
    from aimonk.cli import main
    from aimonk.model.checkpoint import Checkpoint

    saves, frames = [], []

    def observe(frame, event, argument):
        if event == "call" and frame.f_code is Checkpoint.save.__code__:
            saves.append(frame.f_locals["path"])
            depth, caller = 0, frame
            while caller is not None and caller.f_code is not main.__code__:
                depth, caller = depth + 1, caller.f_back
            frames.append(depth + 1)

    sys.setprofile(observe)
    try:
        code = main(["train", str(demo_dir), "--out", str(tmp_path / "run"), "--backbone", "efficientnet_lite0",
                     "--image-size", "48", "--threshold-folds", "2"])
    finally:
        sys.setprofile(None)
    assert code == 0
    assert [Path(path).name for path in saves] == ["model.pt"] and frames == [6]
