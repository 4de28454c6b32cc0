"""Degenerate input: infinite numbers in a --config refused in one line; every JSON aimonk writes is strict JSON."""
import json
import math
import re

import pytest

from aimonk.config import TrainConfig
from aimonk.files import json_text


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_a_configuration_number_that_is_not_finite_is_one_line_naming_the_field(value):
    with pytest.raises(ValueError, match=r"^head_c must be a number") as error:
        TrainConfig(head_c=value)
    assert "\n" not in str(error.value)


def test_json_text_writes_nan_and_infinity_as_null_so_strict_parsers_read_it():
    written = json_text({"a": math.nan, "b": [math.inf, 1.5, {"c": -math.inf}], "d": "x"})
    assert _strict(written) == {"a": None, "b": [None, 1.5, {"c": None}], "d": "x"}


def test_a_run_folders_json_files_are_strict(tmp_path):
    from aimonk.run_folder import RunFolder
    import pandas as pd
    with RunFolder(tmp_path / "run") as folder:
        folder.write_config(TrainConfig())
        table = pd.DataFrame({"f1": [math.nan, 0.5], "auc": [math.inf, 0.7]}, index=["only_negatives", "ok"])
        folder.write_metrics("held out", table, notes=["only_negatives: threshold left at 0.5"])
    for name in ("config.json", "metrics.json"):
        _strict((tmp_path / "run" / name).read_text())
    assert '"f1": null' in (tmp_path / "run" / "metrics.json").read_text()


@pytest.mark.parametrize("text", ['{"head_c": Infinity}', '{"lr": NaN}', '{"dropout": -Infinity}'])
def test_train_config_with_a_non_finite_number_stops_in_one_line_naming_field_and_file(tmp_path, text):
    import subprocess
    import sys
    config = tmp_path / "config.json"
    config.write_text(text)
    done = subprocess.run([sys.executable, "-m", "aimonk", "train", str(tmp_path / "no-data"), "--config", str(config),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    field = text.split('"')[1]
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(config) in lines[0] and field in lines[0], done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("separator, said", [(";", "semicolons"), ("\t", "tabs"), ("|", "'|'")])
def test_a_labels_csv_with_another_separator_is_refused_naming_it(tmp_path, separator, said):
    from aimonk.data.labels import read_labels
    path = tmp_path / "labels.csv"
    path.write_text(separator.join(["filename", "red", "blue"]) + "\n" + separator.join(["a.jpg", "1", "0"]) + "\n")
    with pytest.raises(ValueError, match=f"separated by {re.escape(said)}") as error:
        read_labels(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_text_cell_or_label_holding_a_carriage_return_reads_back_from_the_csv():
    import csv
    import io

    import pandas as pd
    from aimonk.files import csv_text
    text = csv_text(pd.DataFrame({"name": ["a\rb", "c"], "score": [1.5, 2.0]}, index=pd.Index(["x\ry", "z"], name="f")))
    assert list(csv.reader(io.StringIO(text, newline=""))) == [["f", "name", "score"], ["x\ry", "a\rb", "1.5"],
                                                               ["z", "c", "2.0"]]
