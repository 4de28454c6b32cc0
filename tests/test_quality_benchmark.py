"""benchmarks/quality.py end to end on small synthetic folders: one recipe, one seed, trained once and reused."""
import importlib.util
from pathlib import Path

import pandas as pd

from aimonk.data.demo import make_demo_dataset

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quality_reports_f1_below_its_ceiling_and_reuses_runs(tmp_path, capsys):
    train = make_demo_dataset(tmp_path / "train", count=60, size=48, seed=11, header=False)
    for index, name in enumerate(("part2", "part3")):
        make_demo_dataset(tmp_path / "parts" / name, count=40, size=48, seed=20 + index, header=False)
    quality, out = load_benchmark(), tmp_path / "out"
    argv = [str(train), "--parts", str(tmp_path / "parts"), "--choose", "part2", "--report", "part3",
            "--seeds", "1", "--recipes", "lite0-probe", "--rounds", "50", "--out", str(out)]
    quality.main(argv)
    printed = capsys.readouterr().out
    assert "choose on part2" in printed and "report on part3" in printed
    table = pd.read_csv(out / "quality_part3.csv", index_col=[0, 1])
    assert set(table.index.get_level_values(0)) == {"Attr1", "Attr2", "Attr3", "Attr4", "macro"}
    # thresholds tuned on the scored images themselves can only do as well as the stored ones, or better
    assert (table["F1 ceiling"] >= table["F1"] - 1e-9).all()
    assert (table["F1 ceiling"] > table["F1"]).any() or (table["F1"] == 1).all()
    model = out / "lite0-probe" / "seed1" / "model.pt"
    stamp = model.stat().st_mtime_ns
    quality.main(argv)
    assert model.stat().st_mtime_ns == stamp  # the finished run was reused, not trained again
