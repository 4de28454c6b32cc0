"""Running the numbered notebooks headless with papermill, in order, with shared parameters."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from aimonk.config import TrainConfig
from aimonk.data.demo import demo_folder
from aimonk.data.folder import find_label_file
from aimonk.files import check_output_folder
from aimonk.workflows import TRAIN_OUTPUTS

NOTEBOOKS = ("01_eda.ipynb", "02_train.ipynb", "03_evaluate.ipynb", "04_predict.ipynb")
FIGURES = ("imbalance.png", "na_per_image.png", "cooccurrence.png", "label_patterns.png", "image_sizes.png",
           "samples.png", "loss_curve.png", "epoch_curves.png", "confusion_matrices.png", "cv_f1_intervals.png",
           "f1_comparison.png", "precision_recall.png", "sample_predictions.png", "worst_mistakes.png", "reliability.png", "cv_reliability.png",
           "label_issues.png", "explanation.png")


class NotebookError(RuntimeError):
    """A notebook cell failed; the message names the notebook and the cell."""


def notebook_folder() -> Path:
    """The repository's notebooks/ (beside the package in a checkout), else ./notebooks."""
    beside_package = Path(__file__).resolve().parents[1] / "notebooks"
    return beside_package if beside_package.is_dir() else Path.cwd() / "notebooks"


def run_notebooks(parameters: dict, out_dir, notebooks_dir=None, names=NOTEBOOKS, progress: bool = True,
                  kernel_name: str | None = None) -> list[Path]:
    """Execute each notebook into out_dir, passing the parameters it declares; stop at the first failure."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebooks_dir = Path(notebooks_dir) if notebooks_dir else notebook_folder()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = []
    for name in names:
        source = notebooks_dir / name
        if not source.is_file():
            raise FileNotFoundError(f"notebook not found: {source}")
        passed = declared_parameters(parameters, papermill.inspect_notebook(str(source)))
        target = out_dir / name
        try:
            papermill.execute_notebook(str(source), str(target), parameters=passed, cwd=str(notebooks_dir),
                                       kernel_name=kernel_name, progress_bar=progress)
        except PapermillExecutionError as error:
            first_line = error.source.strip().splitlines()[0] if error.source.strip() else ""
            raise NotebookError(
                f"{name}: cell In [{error.exec_count}] ({first_line!r}) failed with {error.ename}: {error.evalue} "
                f"(the executed copy with the traceback is {target})"
            ) from error
        executed.append(target)
    return executed


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
        find_label_file(data)  # only the package's own demo location is filled with generated data
    out = check_output_folder(out, overwrite, names=NOTEBOOKS + TRAIN_OUTPUTS + ("model.onnx",)).resolve()
    figures = Path(figures).resolve() if figures else out / "figures"
    check_output_folder(figures, overwrite, "--figures", names=FIGURES)
    # the folders were checked above: the notebooks may write there
    given = {"data_dir": str(Path(data).resolve()), "out_dir": str(out), "figures_dir": str(figures),
             "overwrite": True}
    for name, value in parameters:
        try:
            given[name] = json.loads(value)
        except json.JSONDecodeError:
            given[name] = value
    names = [n for n in NOTEBOOKS if not only or any(n.startswith(p) for p in only.split(","))]
    return run_notebooks(given, out, notebooks_dir, names), out, figures
