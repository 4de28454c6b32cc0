"""The study folder of `aimonk tune`: its outputs, and an existing study.db read-only and checked to be this
command's study before any image is read (else one line naming it, the file left as it was)."""
from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from aimonk.config import TrainConfig
from aimonk.files import check_output_folder
from aimonk.tuning.space import Space, distribution, shown

OUTPUTS = ("config.json", "trials.csv", "optimization_history.png", "param_importances.png")


def study_folder(out) -> Path:
    """`out` for a study: new, empty, or holding an earlier study of this command (its study.db), whose outputs
    its end replaces; never a folder holding other outputs of that name (a training run's config.json)."""
    out = check_output_folder(out, True, names=OUTPUTS)
    if not (out / "study.db").is_file():
        check_output_folder(out, False, names=OUTPUTS)  # one-line error naming what is there
    return out


STUDY, METRIC = "aimonk", "out-of-fold macro F1"
OPTUNA_TABLES = {"studies", "study_directions", "study_user_attributes", "study_system_attributes", "trials",
                 "trial_params", "trial_values", "trial_intermediate_values", "trial_user_attributes",
                 "trial_system_attributes", "trial_heartbeats", "version_info", "alembic_version"}


def check_study(db: Path, space: dict) -> None:
    """`db` (DIR/study.db) absent, or Optuna's SQLite storage of this command's study: one study named aimonk that
    maximises one value, out-of-fold macro F1 between 0 and 1, whose trials searched TrainConfig fields, and the
    fields of `space` over the same kind of range. Read-only (SQLite's mode=ro): a file refused is never
    written; one-line ValueErrors naming it."""
    if not os.path.lexists(db):
        return
    advice = "move it away or choose another --out"
    if db.is_dir():
        raise ValueError(f"{db} is a folder, not the study (an SQLite file) of aimonk tune; {advice}")
    if not db.is_file():
        raise ValueError(f"{db} is not a file, not the study (an SQLite file) of aimonk tune; {advice}")
    foreign = f"{db} is not a study of aimonk tune"
    try:
        with closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise ValueError(f"{db} is damaged (SQLite: {' '.join(str(problems[0]).split())}); {advice}")
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                      if not name.startswith("sqlite_")}
            if not tables:
                raise ValueError(f"{foreign}: an SQLite database with no tables; {advice}")
            if tables - OPTUNA_TABLES or not {"studies", "study_directions", "trials", "trial_params",
                                               "trial_values", "version_info"} <= tables:
                other = sorted(tables - OPTUNA_TABLES) or sorted(tables)
                raise ValueError(f"{foreign}: an SQLite database with table(s) {', '.join(other[:3])}"
                                 f"{' and more' if len(other) > 3 else ''}, not Optuna's; {advice}")
            studies = connection.execute("SELECT study_id, study_name FROM studies").fetchall()
            if [name for _, name in studies] not in ([], [STUDY]):
                names = ", ".join(repr(name) for _, name in studies[:3])
                raise ValueError(f"{foreign}: Optuna's storage of the study(ies) {names}, not {STUDY!r}; {advice}")
            directions = [row[0] for row in connection.execute("SELECT direction FROM study_directions")]
            if studies and directions != ["MAXIMIZE"]:
                directions = ", ".join(map(str, directions)).lower() or "none"
                raise ValueError(f"{foreign}: its study's direction is {directions}, not maximize (out-of-fold "
                                 f"macro F1); {advice}")
            check_trials(connection, db, foreign, advice, space)
    except sqlite3.Error as error:
        raise ValueError(f"{foreign} (SQLite: {' '.join(str(error).split())}); {advice}") from None


def check_trials(connection, db: Path, foreign: str, advice: str, space: dict) -> None:
    """The study's trials: values that are macro F1s, parameters that are TrainConfig fields, and the space's
    fields searched over the same kind of range as before (Optuna refuses another one mid-study)."""
    import optuna

    columns = {row[1] for row in connection.execute("PRAGMA table_info(trial_values)")}
    kind = "value_type" if "value_type" in columns else "'FINITE'"
    for objective, value, value_type in connection.execute(f"SELECT objective, value, {kind} FROM trial_values"):
        if objective != 0 or value_type != "FINITE" or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{foreign}: a trial's value is {value if value_type == 'FINITE' else value_type} "
                             f"(objective {objective}), not an out-of-fold macro F1; {advice}")
    fields = TrainConfig.__dataclass_fields__
    for name, text in connection.execute("SELECT DISTINCT param_name, distribution_json FROM trial_params"):
        if name not in fields:
            raise ValueError(f"{foreign}: its trials searched {shown(name)}, not a TrainConfig field; {advice}")
        if name not in space:
            continue
        try:
            optuna.distributions.check_distribution_compatibility(optuna.distributions.json_to_distribution(text),
                                                                  distribution(name, space[name]))
        except (ValueError, TypeError, KeyError) as error:
            source = getattr(space, "source", Space.source)
            raise ValueError(f"{source}: {name}: {db} searched it over another range ({' '.join(str(error).split())}"
                             "); search it as before, or start a new study in another --out") from None


