"""The command line's options: one --option per TrainConfig field, and every command's arguments."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import re
import textwrap
from pathlib import Path

from aimonk.config import (DEFAULT_LABEL_SCORE, DEVICES, FINAL_MODELS, LABEL_SCORES, PRESETS, TrainConfig,
                           freeze_from_text, preset)
from aimonk.version import __version__


def freeze_value(text: str) -> int | str:
    try:
        return freeze_from_text(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


FIELD_TYPES = {"freeze": freeze_value}


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One --option per TrainConfig field; unset options keep the preset's value."""
    group = parser.add_argument_group("training configuration (defaults: the chosen preset)")
    for field in dataclasses.fields(TrainConfig):
        flag, default, meta = option_flag(field.name), field.default, field.metadata
        if isinstance(default, bool) or default is None:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=meta["help"])
        else:
            allowed = (f" ({', '.join(meta['choices'])})" if meta["choices"] else "")
            group.add_argument(flag, type=FIELD_TYPES.get(field.name, type(default)), default=None,
                               metavar=field.name.upper(), help=f"{meta['help']}{allowed}; default {default}")


def option_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def config_from_args(args) -> TrainConfig:
    """The preset (or the --config file) with the given options; a bad value is a one-line error naming its
    --option."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    try:
        if getattr(args, "config", None):
            return config_file(args.config).replace(**{k: v for k, v in given.items() if v is not None})
        return preset(args.preset, **given)
    except ValueError as error:
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        name = str(error).split(" ", 1)[0]
        if name in names:  # the option named as it is typed: the first word, and every field_name with a "_"
            text = option_flag(name) + str(error)[len(name):]
            raise ValueError(re.sub(r"\b[a-z]+(?:_[a-z]+)+\b", lambda m: option_flag(m[0]) if m[0] in names else m[0],
                                    text)) from None
        raise


def config_file(path) -> TrainConfig:
    """A configuration saved as JSON (a run's or `aimonk tune`'s config.json); one-line errors naming it."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"--config {path}: no such file") from None
    except (OSError, ValueError) as error:
        raise ValueError(f"--config {path} is not a JSON configuration ({type(error).__name__})") from None
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names) if isinstance(values, dict) else ["(not a mapping)"]
    if unknown:
        raise ValueError(f"--config {path}: {unknown[0]!r} is not a configuration field")
    try:
        return TrainConfig.from_dict(values)
    except (ValueError, TypeError) as error:
        raise ValueError(f"--config {path}: {error}") from None


PRESET_HELP = ("the recipe the options change: default (frozen EfficientNet-Lite0/1/2 features, a linear probe), "
               "finetune (Lite0 trained from its third stage) or reference (the first public solution)")


class WholeWords(argparse.HelpFormatter):
    """Help wrapped between words only: a long name (efficientnet_lite0+efficientnet_lite1) is never cut."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_long_words=False, break_on_hyphens=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aimonk", formatter_class=WholeWords,
        description="Multilabel image classification with missing labels and imbalanced classes: "
                    "`aimonk summary|train|evaluate|tune|label|predict|explain|export|notebooks|backbones|cache|demo`.")
    parser.add_argument("--version", action="version", version=f"aimonk {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    command = functools.partial(commands.add_parser, formatter_class=WholeWords)

    summary = command("summary", help="the imbalance table of a labelled folder")
    summary.add_argument("data", help="folder with labels.txt/labels.csv (and images/), or the label file")
    summary.add_argument("--format", choices=("text", "csv", "json"), default="text",
                         help="a table to read (text), or csv / json to process")
    summary.add_argument("--unknown-as-na", action="store_true",
                         help=TrainConfig.__dataclass_fields__["unknown_as_na"].metadata["help"])
    summary.set_defaults(run="summary")

    train = command("train", help="train a model; keeps the best checkpoint in OUT/model.pt")
    train.add_argument("data", help="the labelled folder (labels.txt or labels.csv, and images/), or its label file")
    train.add_argument("--out", required=True, help="output folder for model.pt, history and figures")
    train.add_argument("--preset", choices=sorted(PRESETS), default="default", help=PRESET_HELP)
    train.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run in OUT")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in OUT from its last.pt "
                                                             "(same data; its own configuration)")
    train.add_argument("--config", metavar="FILE", help="start from this configuration instead of the preset: a "
                                                        "run's config.json, or the one `aimonk tune` chose")
    add_config_options(train)
    train.set_defaults(run="train")

    tune = command("tune", help="search a recipe's hyperparameters with Optuna, by cross-validated F1")
    tune.add_argument("data", help="the labelled folder (labels.txt or labels.csv, and images/), or its label file")
    tune.add_argument("--trials", type=int, required=True, help="trials in all (an interrupted study continues)")
    tune.add_argument("--out", required=True, help="folder for study.db, config.json, trials.csv and the figures")
    tune.add_argument("--preset", choices=sorted(PRESETS), default="default", help=PRESET_HELP)
    tune.add_argument("--space", metavar="SPACE.yaml", help="the fields to search and their ranges (default: the "
                                                            "preset's space, see aimonk.tuning.SPACES)")
    tune.add_argument("--folds", type=int, default=5, help="cross-validation folds that score each trial")
    add_config_options(tune)
    tune.set_defaults(run="tune")

    evaluate = command("evaluate", help="score a checkpoint on a labelled folder, or cross-validate")
    evaluate.add_argument("data", help="the labelled folder (labels.txt or labels.csv, and images/), or its label file")
    evaluate.add_argument("--model", help="the checkpoint to score (not with --cv)")
    evaluate.add_argument("--cv", type=int, metavar="K", help="K-fold cross-validation of the training recipe")
    evaluate.add_argument("--final", choices=FINAL_MODELS, default="retrain",
                          help="with --cv: the model saved as OUT/model.pt (default: retrained on all images)")
    evaluate.add_argument("--preset", choices=sorted(PRESETS), default="default", help=PRESET_HELP)
    evaluate.add_argument("--subset", choices=("auto", "val", "all"), default="auto",
                          help="auto: the validation split if DATA is the training folder, else all images")
    evaluate.add_argument("--thresholds", help="override the stored thresholds: one value or one per attribute")
    evaluate.add_argument("--out", help="folder for the metrics tables (and with --cv the final model)")
    evaluate.add_argument("--overwrite", action="store_true", help="replace earlier outputs of the same names in OUT")
    add_config_options(evaluate)
    evaluate.set_defaults(run="evaluate")

    predict = command("predict", help="predict attributes of an image or a folder of images")
    predict.add_argument("path", help="an image file or a folder")
    predict.add_argument("--model", required=True, help="a checkpoint (.pt) or an exported model (.onnx)")
    choice = predict.add_mutually_exclusive_group()
    choice.add_argument("--threshold", type=float, help="one threshold for every attribute")
    choice.add_argument("--thresholds", help="comma-separated thresholds, one per attribute")
    predict.add_argument("--format", choices=("text", "json", "csv"), default="text",
                         help="text (a report per image), json or csv")
    predict.add_argument("--device", default="auto", choices=DEVICES, help="where the model runs (auto: a GPU if any)")
    predict.set_defaults(run="predict")

    label = command("label", help="fill the gaps: the next questions about NA and doubtful labels, or apply answers",
        description="The labelling queue of a folder: NA cells whose answer should help most and known labels the "
                    "out-of-fold predictions confidently contradict (--queue N prints the next N as CSV); a CSV of "
                    "answers written into the folder's own labels file in one atomic batch, the original kept as "
                    ".orig and every change in a journal beside it (--answers); the last batch taken back (--undo).")
    label.add_argument("data", help="the labelled folder (labels.txt or labels.csv, and images/), or its label file")
    label.add_argument("--model", help="with --queue: the checkpoint whose predictions rank the questions (default: "
                                       "the default recipe trained on DATA first)")
    task = label.add_mutually_exclusive_group(required=True)
    task.add_argument("--queue", type=int, metavar="N", help="print the next N questions as CSV")
    task.add_argument("--answers", metavar="ANSWERS.csv", help="apply a CSV of answers (columns filename, "
                                                               "attribute, answer: 1, 0, unknown or skip)")
    task.add_argument("--undo", action="store_true", help="take back the last batch of answers")
    label.add_argument("--score", choices=LABEL_SCORES, default=DEFAULT_LABEL_SCORE, help="how NA cells are ranked (see "
                                                                              "aimonk.labelling.queue)")
    label.set_defaults(run="label")

    notebooks = command("notebooks", help="run the numbered notebooks headless with papermill")
    notebooks.add_argument("--data", required=True, help="the labelled folder")
    notebooks.add_argument("--out", required=True, help="folder for the executed notebooks and the run")
    notebooks.add_argument("--figures", help="folder for the PNG figures (default OUT/figures)")
    notebooks.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                           help="a notebook parameter, e.g. -p epochs 3 -p backbone resnet34 (JSON values)")
    notebooks.add_argument("--only", help="comma-separated prefixes of the notebooks to run, e.g. 01,02")
    notebooks.add_argument("--notebooks", help="folder holding the notebooks (default: the repository's)")
    notebooks.add_argument("--overwrite", action="store_true", help="replace the executed notebooks, run and figures "
                                                                     "of an earlier run")
    notebooks.set_defaults(run="notebooks")

    explain = command("explain", help="Grad-CAM heatmaps: where the model sees each attribute")
    explain.add_argument("path", help="an image file or a folder")
    explain.add_argument("--model", required=True, help="the checkpoint (.pt) to explain")
    explain.add_argument("--out", required=True, help="folder for one PNG per image")
    explain.add_argument("--overwrite", action="store_true", help="replace earlier explanations of the same names")
    explain.add_argument("--device", default="auto", choices=DEVICES, help="where the model runs (auto: a GPU if any)")
    explain.set_defaults(run="explain")

    export = command("export", help="export a checkpoint for deployment (ONNX, run by onnxruntime)")
    export.add_argument("--model", required=True, help="the checkpoint to export")
    export.add_argument("--format", choices=("onnx",), default="onnx", help="onnx (the one format)")
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.add_argument("--overwrite", action="store_true", help="replace an existing file")
    export.set_defaults(run="export")

    backbones = command("backbones", help="list the backbones --backbone takes: ours and timm's pretrained models",
        description="The backbones --backbone takes: ours, and timm:NAME for each of timm's pretrained models "
                    "(NAME with its pretrained tag, as timm.list_models(pretrained=True) names them).")
    backbones.add_argument("pattern", nargs="?", default="*",
                           help="a shell-style pattern (convnext means *convnext*; default: all)")
    backbones.set_defaults(run="backbones")

    cache = command("cache", help="list or clear the cache of decoded images, backbone features and graphs",
        description="The cache of decoded images, backbone features and the backbones' onnxruntime graphs that later "
                    "runs reuse: in $AIMONK_CACHE, else "
                    "$XDG_CACHE_HOME/aimonk, else ~/.cache/aimonk; AIMONK_CACHE=off turns it off.")
    cache.add_argument("--clear", action="store_true", help="remove the entries (all, or with --older-than)")
    cache.add_argument("--older-than", type=float, metavar="DAYS", help="with --clear: only entries unused for DAYS")
    cache.set_defaults(run="cache")

    demo = command("demo", help="generate the synthetic demo dataset into a new or empty folder")
    demo.add_argument("--out", default="data/demo", help="a new or empty folder (default data/demo)")
    demo.add_argument("--count", type=int, default=400, help="labelled images (3 of them left missing, as in the "
                                                              "reference data; default 400)")
    demo.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the images and labels (default 0)")
    demo.set_defaults(run="demo")
    return parser


