"""Running the numbered notebooks headless with papermill, in order, with shared parameters."""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import difflib
import json
import logging
from pathlib import Path

from aimonk.config import TrainConfig, preset
from aimonk.data.demo import demo_folder
from aimonk.data.folder import read_label_folder
from aimonk.files import check_output_folder
from aimonk.notebook_kernel import (KernelWatch, LinesAboveBar, code_cells, out_of_memory_kills,
                                    run_lines_shown)
from aimonk.plots import TRAINING_FIGURES
from aimonk.progress import logger_level
from aimonk.run_folder import TRAIN_OUTPUTS

NOTEBOOKS = ("01_eda.ipynb", "02_train.ipynb", "03_evaluate.ipynb", "04_predict.ipynb", "05_label.ipynb")
FIGURES = ("imbalance.png", "na_per_image.png", "cooccurrence.png", "label_patterns.png", "image_sizes.png",
           "samples.png", "loss_curve.png", *TRAINING_FIGURES, "confusion_matrices.png", "cv_f1_intervals.png",
           "f1_comparison.png", "precision_recall.png", "sample_predictions.png", "worst_mistakes.png", "reliability.png", "cv_reliability.png",
           "label_issues.png", "explanation.png")


class NotebookError(RuntimeError):
    """A notebook cell failed; the message names the notebook and the cell."""


def notebook_folder() -> Path:
    """The repository's notebooks/ (beside the package in a checkout), else the copies an installed package
    ships (aimonk/_notebooks)."""
    beside_package = Path(__file__).resolve().parents[1] / "notebooks"
    return beside_package if beside_package.is_dir() else Path(__file__).resolve().parent / "_notebooks"


def run_notebooks(parameters: dict, out_dir, notebooks_dir=None, names=NOTEBOOKS, progress: bool = True,
                  kernel_name: str | None = None) -> list[Path]:
    """Execute each notebook into out_dir, passing the parameters it declares; stop at the first failure (a cell's
    error, or its kernel dying: NotebookError) or at a stop (KeyboardInterrupt), each saying what is left."""
    import nbformat
    import papermill

    notebooks_dir = Path(notebooks_dir) if notebooks_dir else notebook_folder()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = []
    missing = [name for name in names if not (notebooks_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"notebook not found: {notebooks_dir / missing[0]}")
    for index, name in enumerate(names, start=1):
        source, target = notebooks_dir / name, out_dir / name
        passed = declared_parameters(parameters, papermill.inspect_notebook(str(source)))
        cells = code_cells(nbformat.read(source, as_version=4), passed)
        watch = KernelWatch(f"[{index}/{len(names)}] {name}", cells, progress)
        with run_lines_shown(progress), stopped_said(name, watch, target, executed):
            papermill.execute_notebook(str(source), str(target), parameters=passed, cwd=str(notebooks_dir),
                                       kernel_name=kernel_name, stderr_file=LinesAboveBar() if progress else None,
                                       **watch.execute_options())
        executed.append(target)
    return executed


@contextlib.contextmanager
def stopped_said(name: str, watch: KernelWatch, target: Path, executed: list[Path]):
    """Around one notebook's run: a failed cell, a kernel that died, or a stop (Ctrl-C, SIGTERM) said in one line
    naming the notebook, the cell, and what is left; the kernel never left running."""
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    left = (f"; the notebooks before it ran to completion ({', '.join(p.name for p in executed)} in "
            f"{executed[-1].parent})" if executed else "")
    kills = out_of_memory_kills()
    try:
        with logger_level(logging.getLogger("papermill"), logging.CRITICAL):  # said once, in the line below
            yield
    except PapermillExecutionError as error:
        first_line = error.source.strip().splitlines()[0] if error.source.strip() else ""
        raise NotebookError(
            f"{name}: cell In [{error.exec_count}] ({first_line!r}) failed with {error.ename}: {error.evalue} "
            f"(the executed copy with the traceback is {target})"
        ) from error
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"stopped {name} and its kernel {'in ' if watch.cell is not None else ''}"
                                f"{watch.where()}; {executed_copy(target)}{left}") from None
    except RuntimeError as error:  # DeadKernelError, or jupyter_client's: a kernel that would not start or answer
        if not isinstance(error, DeadKernelError) and not watch.ended():
            raise NotebookError(f"{name}: {error}{left}") from None
        died = f"{name}: {watch.where()}: {watch.how_the_kernel_ended(kills)}; {executed_copy(target)}{left}"
        raise NotebookError(died) from None
    finally:
        watch.close()


def executed_copy(target: Path) -> str:
    return f"the executed copy up to that cell is {target}" if target.is_file() else "no executed copy written"


def declared_parameters(parameters: dict, declared) -> dict:
    """The parameters a notebook declares; one that declares `options` (a dict of TrainConfig fields, notebook
    02) gets there every given parameter that names a TrainConfig field it does not declare itself."""
    passed = {key: value for key, value in parameters.items() if key in declared}
    if "options" in declared:
        fields = {item.name for item in dataclasses.fields(TrainConfig)}
        passed["options"] = {**parameters.get("options", {}),
                             **{key: value for key, value in parameters.items() if key in fields and key not in declared}}
    return passed


def run_notebook_job(data, out, figures=None, parameters=(), only: str | None = None, notebooks_dir=None,
                     overwrite: bool = False) -> tuple[list[Path], Path, Path]:
    """`aimonk notebooks`: check the data and the output folders before any work, then run the notebooks
    (`only`: comma-separated prefixes) with the shared folders and the (NAME, VALUE) parameters (JSON values,
    else text). Returns (the executed copies, the output folder, the figures folder)."""
    if Path(data).resolve() != demo_folder().resolve():
        read_label_folder(data)  # its labels readable before any notebook runs (the demo's is generated)
    out = check_output_folder(out, overwrite, names=NOTEBOOKS + TRAIN_OUTPUTS + ("model.onnx",)).resolve()
    figures = Path(figures).resolve() if figures else out / "figures"
    check_output_folder(figures, overwrite, "--figures", names=FIGURES)
    # the folders were checked above: the notebooks may write there
    given = {"data_dir": str(Path(data).resolve()), "out_dir": str(out), "figures_dir": str(figures),
             "overwrite": overwrite}
    names = [n for n in NOTEBOOKS if not only or any(n.startswith(p) for p in only.split(","))]
    if not names:
        raise ValueError(f"--only {only}: no notebook starts with it (the notebooks: {', '.join(NOTEBOOKS)})")
    defaults = declared_defaults(names, Path(notebooks_dir) if notebooks_dir else notebook_folder())
    for name, value in parameters:
        given[name] = typed_value(name, value, defaults.get(name))
    check_parameters(given, [name for name, _ in parameters], names,
                     Path(notebooks_dir) if notebooks_dir else notebook_folder())
    return run_notebooks(given, out, notebooks_dir, names), out, figures


def declared_defaults(names, notebooks_dir: Path) -> dict:
    """Each parameter the selected notebooks declare, with the value of its default (None where it is not a
    literal)."""
    import papermill

    defaults = {}
    for name in names:
        for parameter, found in papermill.inspect_notebook(str(notebooks_dir / name)).items():
            with contextlib.suppress(ValueError, SyntaxError):
                defaults.setdefault(parameter, ast.literal_eval(found["default"]))
    return defaults


def typed_value(name: str, value: str, default):
    """A -p value as data of its parameter's type (the type of the notebook's default): a text parameter takes
    the text as it is (quotes, newlines or code stay text); numbers, booleans, lists and dicts are read as JSON
    and must be of that type; a parameter without a typed default (a TrainConfig field) takes JSON, else text."""
    if isinstance(default, str):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    if default is None:
        return parsed
    wanted = (float, int) if isinstance(default, float) else type(default)
    if isinstance(parsed, bool) != isinstance(default, bool) or not isinstance(parsed, wanted):
        raise ValueError(f"-p {name} {value}: expected {type(default).__name__} like {json.dumps(default)}")
    return parsed


def check_parameters(given: dict, named, names, notebooks_dir: Path) -> None:
    """Before any notebook runs: every -p NAME is a parameter of a selected notebook (or, with notebook 02, a
    TrainConfig field its options take), and the training options build a valid configuration."""
    import papermill

    declared = {name: papermill.inspect_notebook(str(notebooks_dir / name)) for name in names}
    known = set().union(*declared.values())
    takes_options = [name for name, parameters in declared.items() if "options" in parameters]
    if takes_options:
        known |= {item.name for item in dataclasses.fields(TrainConfig)}
    for name in named:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            raise ValueError(f"-p {name}: no parameter of {', '.join(names)} has that name"
                             + (f" (did you mean {close[0]}?)" if close else
                                f"; they take {', '.join(sorted(known - {'options'}))}"))
    for name in takes_options:
        passed = declared_parameters(given, declared[name])
        try:
            preset(passed.get("preset_name", "default"), **passed.get("options", {}))
        except ValueError as error:  # it names the field: as `-p FIELD ...`
            raise ValueError(f"-p {'preset_name: ' if str(error).startswith('unknown preset') else ''}{error}") from None
