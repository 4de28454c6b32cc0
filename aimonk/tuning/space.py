"""The search space of `aimonk tune`: the presets' spaces, a --space YAML file read and checked field by field
before any image is read (one line naming the file and the field), and the values Optuna suggests from it."""
from __future__ import annotations

import math
from pathlib import Path

from aimonk.config import (AUGMENTATIONS, LOSSES, TrainConfig, check_backbone, check_field, check_freeze,
                           parse_strategy)
from aimonk.model.registry import check_names


LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
SPACES = {  # the fields each preset's search changes, and their ranges (a --space file replaces them)
    "default": {"backbone": {"choices": ["+".join(LITES), *LITES, "+".join(LITES[:2]), "+".join(LITES[1:]),
                                         "+".join(LITES[::2])]},
                "head_c": {"low": 1e-4, "high": 0.1, "log": True},
                "tta": {"choices": [True, False]},
                "calibration": {"choices": ["platt", "temperature", "none"]}},
    "finetune": {"lr": {"low": 1e-4, "high": 3e-3, "log": True}, "epochs": {"low": 4, "high": 12},
                 "freeze": {"choices": [0, 1, 2, 3]}, "augment": {"choices": list(AUGMENTATIONS)},
                 "loss": {"choices": list(LOSSES)}, "oversample": {"low": 1.0, "high": 4.0}},
}

SPACE_BYTES = 1 << 20  # a search space is a few lines of YAML; a larger --space file is refused unread
FIELD_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "None": (type(None),)}
TYPE_WORDS = {"str": "text", "int": "an integer", "float": "a number", "bool": "true or false", "None": "null"}


class Space(dict):
    """A search space read from a file: `source` names it in the errors found later (against the recipe, or
    against a study that searched other ranges)."""

    source = "the search space"


def load_space(path) -> dict:
    """A search space from a YAML file: `field: {choices: [...]}` or `field: {low: L, high: H[, log: true]}` for
    TrainConfig fields; every field checked before any data is read, one-line errors naming the file and the
    field."""
    import yaml

    path = Path(path)
    if path.exists() and not path.is_file():
        raise ValueError(f"--space {path} is {'a folder' if path.is_dir() else 'not a file'}, not a YAML file")
    if not path.is_file():
        raise FileNotFoundError(f"--space {path}: no such file")
    size = path.stat().st_size
    if size > SPACE_BYTES:
        raise ValueError(f"--space {path} is {size / 2**20:.1f} MB; a search space is a few lines of YAML "
                         f"(at most {SPACE_BYTES // 2**20} MB)")
    try:
        space = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"--space {path} is not YAML: not UTF-8 text") from None
    except yaml.YAMLError as error:
        raise ValueError(f"--space {path} is not YAML: {str(error).splitlines()[0]}") from None
    except RecursionError:
        raise ValueError(f"--space {path} is not YAML: nested too deeply") from None
    if not isinstance(space, dict) or not space:
        raise ValueError(f"--space {path} must map TrainConfig fields to their ranges")
    space = Space(space)
    space.source = f"--space {path}"
    check_space(space)
    return space


def check_space(space: dict) -> None:
    """Every field of `space` a TrainConfig field, with a range Optuna can search and values the field allows;
    one-line ValueErrors naming the space's file (Space.source) and the field."""
    source = getattr(space, "source", Space.source)
    if not isinstance(space, dict) or not space:
        raise ValueError(f"{source} must map TrainConfig fields to their ranges")
    for name, spec in space.items():
        check_range(source, name, spec)


def check_range(source, name, spec) -> None:
    """One field's range: {choices: [non-empty list]} or {low, high[, log]} with finite numbers, low < high, a
    log range above 0, each value one the field allows."""
    if not isinstance(name, str) or name not in TrainConfig.__dataclass_fields__:
        raise ValueError(f"{source}: {shown(name)} is not a TrainConfig field")
    where = f"{source}: {name}"
    ranged = isinstance(spec, dict) and ({"choices"} == set(spec) or {"low", "high"} <= set(spec) <= {"low", "high",
                                                                                                    "log"})
    if not ranged:
        raise ValueError(f"{where} needs {{choices: [...]}} or {{low: L, high: H}} (log: true optional)")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"{where}: choices must be a non-empty list of values, not {shown(choices)}")
        for value in choices:
            check_value(where, name, value)
    else:
        low, high, log = spec["low"], spec["high"], spec.get("log", False)
        for bound, value in (("low", low), ("high", high)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{where}: {bound} must be a finite number, not {shown(value)}")
        if not isinstance(log, bool):
            raise ValueError(f"{where}: log must be true or false, not {shown(log)}")
        if not low < high:
            raise ValueError(f"{where}: low {shown(low)} must be below high {shown(high)} "
                             f"(one value: {{choices: [{shown(low)}]}})")
        if log and low <= 0:
            raise ValueError(f"{where}: a log range must lie above 0, not start at {shown(low)}")
        for value in (low, high):
            check_value(where, name, value)
        if not math.isfinite(float(high) - float(low)):  # numpy's uniform draw overflows
            raise ValueError(f"{where}: the range {shown(low)} to {shown(high)} is too wide to sample")
    try:
        distribution(name, spec)
    except ImportError:
        pass  # tune() says Optuna is missing
    except (ValueError, TypeError, OverflowError) as error:  # Optuna's own rules, should ours miss one
        raise ValueError(f"{where}: {' '.join(str(error).split())}") from None


def shown(value, quoted: bool = True, width: int = 80) -> str:
    """A value of a hostile file in a one-line message: its repr (or text), at most `width` characters."""
    text = " ".join((repr(value) if quoted else str(value)).split())
    return text if len(text) <= width else text[:width - 3] + "..."


def field_types(name: str) -> list[str]:
    """The field's type names as annotated ('int | str' -> ['int', 'str'])."""
    return [word.strip() for word in str(TrainConfig.__dataclass_fields__[name].type).split("|")]


def check_value(where: str, name: str, value) -> None:
    """One value of a field, checked as TrainConfig checks it, alone (one-line ValueError)."""
    words = field_types(name)
    types = tuple(kind for word in words for kind in FIELD_TYPES.get(word, (object,)))
    if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        raise ValueError(f"{where} {shown(value)}: {name} must be {' or '.join(TYPE_WORDS.get(w, w) for w in words)}")
    try:
        check_field(TrainConfig.__dataclass_fields__[name], value)
        if name == "freeze":
            check_freeze(value)
        elif name == "threshold_strategy":
            parse_strategy(value)
        elif name == "backbone":
            check_backbone(value)
            check_names(value)  # timm's names too, before any trial runs
    except (ValueError, TypeError, ImportError) as error:
        raise ValueError(f"{where} {shown(value)}: {shown(error, False, 300)}") from None


def is_integer_field(name: str) -> bool:
    return "int" in field_types(name) and "float" not in field_types(name)


def distribution(name: str, spec: dict):
    """The Optuna distribution that suggest() draws the field from."""
    import optuna

    if "choices" in spec:
        return optuna.distributions.CategoricalDistribution(spec["choices"])
    if is_integer_field(name):
        return optuna.distributions.IntDistribution(spec["low"], spec["high"], log=bool(spec.get("log")))
    return optuna.distributions.FloatDistribution(float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))


def check_space_for(space: dict, config: TrainConfig) -> None:
    """Each value of the space in `config` (a recipe may refuse one that the field alone allows: threshold_source
    val without a validation split); one line naming the space and the field."""
    source = getattr(space, "source", Space.source)
    for name, spec in space.items():
        for value in spec["choices"] if "choices" in spec else (spec["low"], spec["high"]):
            try:
                config.replace(**{name: value})
            except (ValueError, TypeError) as error:
                raise ValueError(f"{source}: {name} {shown(value)}: {shown(error, False, 300)}") from None


def suggest(trial, space: dict, default) -> dict:
    """The trial's values of the space's fields."""
    values = {}
    for name, spec in space.items():
        if "choices" in spec:
            values[name] = trial.suggest_categorical(name, spec["choices"])
        elif is_integer_field(name):
            values[name] = trial.suggest_int(name, spec["low"], spec["high"], log=bool(spec.get("log")))
        else:
            values[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
    return values


def starting_values(space: dict, config: TrainConfig) -> dict:
    """The preset's own values of the space's fields, where the space holds them: the first trial."""
    values = {}
    for name, spec in space.items():
        value = getattr(config, name)
        inside = value in spec["choices"] if "choices" in spec else spec["low"] <= value <= spec["high"]
        if inside:
            values[name] = value
    return values


