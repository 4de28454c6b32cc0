"""Command line: `aimonk summary|train|evaluate|predict|explain|export|notebooks|demo` (also `python -m aimonk`).
It parses options and reports; what a command does lives in aimonk.workflows and the layers below."""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
import warnings
from pathlib import Path

from tqdm.auto import tqdm

from aimonk.config import FINAL_MODELS, PRESETS, TrainConfig, preset
from aimonk.files import check_output_folder
from aimonk.version import __version__



def freeze_value(text: str) -> int | str:
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of stages, -1 or all, not {text!r}") from None


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
    """The preset with the given options; a bad value is a one-line error naming its --option."""
    try:
        return preset(args.preset, **{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    except ValueError as error:
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        name = str(error).split(" ", 1)[0]
        if name in names:  # the option named as it is typed: the first word, and every field_name with a "_"
            text = option_flag(name) + str(error)[len(name):]
            raise ValueError(re.sub(r"\b[a-z]+(?:_[a-z]+)+\b", lambda m: option_flag(m[0]) if m[0] in names else m[0],
                                    text)) from None
        raise


def cmd_summary(args) -> int:
    from aimonk.data.folder import read_label_folder
    from aimonk.data.labels import summarize

    table, image_dir, missing = read_label_folder(args.data, args.unknown_as_na)
    summary = summarize(table.values, table.attributes)
    if args.format == "csv":
        print(summary.to_csv(), end="")
    elif args.format == "json":
        print(summary.reset_index().to_json(orient="records", indent=2))
    else:
        print(f"{table.source}: {len(table)} labelled images, {len(table.attributes)} attributes, "
              f"{len(missing)} missing in {image_dir}")
        print(summary.to_string(formatters={"positive_rate": "{:.1%}".format}))
    return 0


def cmd_train(args) -> int:
    from aimonk.training.loop import TrainingInterrupted
    from aimonk.workflows import train

    if args.resume:
        given = [option_flag(f.name) for f in dataclasses.fields(TrainConfig) if getattr(args, f.name) is not None]
        if given or args.preset != "default":
            raise ValueError("--resume continues the run with its own configuration; leave out "
                             f"{(given or ['--preset'])[0]}")
    config = None if args.resume else config_from_args(args)
    started = time.perf_counter()
    try:
        trained = train(args.data, config, args.out, resume=args.resume, overwrite=args.overwrite)
    except TrainingInterrupted as stopped:
        print(f"\n{stopped}", flush=True)
        return 130
    if trained.path is None:  # a worker process: the main one saved and reports
        return 0
    chosen = trained.result.validated and trained.checkpoint.config.keep == "best"
    epoch = trained.result.best_epoch
    kept = f"best epoch {epoch}" if chosen else f"kept the last epoch ({epoch})"
    print(f"{kept}; {(time.perf_counter() - started) / 60:.1f} min; checkpoint {trained.path}; "
          f"figures in {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    if args.cv is not None:
        return evaluate_cross_validated(args)
    if not args.model:
        raise ValueError("give --model CHECKPOINT to score, or --cv K to cross-validate a training recipe")
    from aimonk.workflows import evaluate

    evaluation = evaluate(args.data, args.model, subset=args.subset, thresholds=args.thresholds, out=args.out,
                          overwrite=args.overwrite, device=args.device or "auto")
    print(f"scored {len(evaluation.names)} images ({evaluation.subset} rows) with {args.model}; thresholds "
          f"{evaluation.thresholds_source}")
    for note in evaluation.notes:
        print(f"note: {note}")
    print(evaluation.table.to_string(float_format="{:.3f}".format))
    if args.out:
        print(f"written {Path(args.out) / 'metrics.csv'} and {Path(args.out) / 'metrics.json'}")
    return 0


def evaluate_cross_validated(args) -> int:
    from aimonk.workflows import cross_validate

    config = config_from_args(args)
    if not args.out:
        raise ValueError("--cv needs --out FOLDER for its tables and final model")
    out, started = Path(args.out), time.perf_counter()

    def report(run) -> None:
        print(f"\nout-of-fold metrics, thresholds tuned on the other folds ({config.threshold_strategy}); F1 with 95% "
              "bootstrap CI:")
        print(run.table.to_string(float_format="{:.3f}".format))
        print(f"written {out / 'cv_metrics.csv'} and {out / 'cv_metrics.json'}")
        print(f"\n{len(run.label_issues)} known labels the out-of-fold predictions confidently contradict "
              f"({out / 'label_issues.csv'}; the most doubtful first):")
        print(run.label_issues.sort_values("self_confidence").head(5).to_string(index=False,
                                                                                 float_format="{:.3f}".format))
        print(f"{len(run.na_suggestions)} NA cells predicted with >= 95% confidence: {out / 'na_suggestions.csv'}",
              flush=True)

    run = cross_validate(args.data, config, args.cv, out, final=args.final, overwrite=args.overwrite,
                         on_report=report)
    if run is None:  # a worker process
        return 0
    if run.checkpoint is not None:
        print(f"final model ({args.final}) with thresholds {[round(t, 3) for t in run.rule.thresholds]}: "
              f"{out / 'model.pt'}")
    print(f"{(time.perf_counter() - started) / 60:.1f} min")
    return 0


def cmd_predict(args) -> int:
    from aimonk.serve.load import load_predictor
    from aimonk.serve.predictions import parse_thresholds

    predictor = load_predictor(args.model, args.device)
    thresholds = None
    if args.threshold is not None or args.thresholds:
        thresholds = parse_thresholds(args.thresholds or str(args.threshold), len(predictor.attributes))
    predictions = predictor.predict_paths(args.path, thresholds, progress=Path(args.path).is_dir())
    sys.stdout.write(predictions.format(args.format))
    return 0


def cmd_explain(args) -> int:
    from aimonk.data.images import load_image_folder
    from aimonk.plots import plot_explanation, save_figure
    from aimonk.serve.predictor import Predictor

    predictor = Predictor.load(args.model, args.device)
    images, paths = load_image_folder(args.path, predictor.image_size, progress=False)
    names = explanation_names(paths)
    out = check_output_folder(args.out, args.overwrite, names=names)
    for start in tqdm(range(0, len(images), 8), desc="explaining", disable=len(images) <= 8, leave=False):
        heatmaps, probabilities = predictor.explain(images[start:start + 8])
        for offset, (heatmap, probability) in enumerate(zip(heatmaps, probabilities)):
            index = start + offset
            save_figure(plot_explanation(images[index], heatmap, predictor.attributes, probability,
                                         predictor.thresholds, str(paths[index])), out / names[index])
    print(f"wrote {len(names)} explanation(s) (Grad-CAM per attribute) to {out}")
    return 0


def explanation_names(paths) -> list[str]:
    """One PNG name per image: its stem, made unique when two images share one."""
    names, seen = [], {}
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}_explained.png" if seen[stem] == 1 else f"{stem}_{seen[stem]}_explained.png")
    return names


def cmd_export(args) -> int:
    from aimonk.serve.export import export_onnx
    from aimonk.serve.predictor import Predictor

    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"--out {out} must end in .onnx")
    if out.exists() and not args.overwrite:
        raise ValueError(f"--out {out} already exists; choose another name or add --overwrite to replace it")
    check_output_folder(out.parent if str(out.parent) else ".", True, "--out")
    predictor = Predictor.load(args.model, "cpu")
    path = export_onnx(predictor, out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): uint8 images (N, {predictor.image_size}, "
          f"{predictor.image_size}, 3) in, probabilities of {', '.join(predictor.attributes)} out")
    return 0


def cmd_demo(args) -> int:
    from aimonk.data.demo import make_demo_dataset

    out = make_demo_dataset(args.out, count=args.count, size=args.size, seed=args.seed)
    print(f"wrote {args.count} synthetic images and labels.txt to {out}")
    return 0


def cmd_notebooks(args) -> int:
    from aimonk.notebooks import run_notebook_job

    started = time.perf_counter()
    executed, out, figures = run_notebook_job(args.data, args.out, args.figures, args.parameter or [], args.only,
                                              args.notebooks, args.overwrite)
    print(f"executed {len(executed)} notebook(s) into {out} in {(time.perf_counter() - started) / 60:.1f} min; "
          f"figures in {figures}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aimonk", description=__doc__)
    parser.add_argument("--version", action="version", version=f"aimonk {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    summary = commands.add_parser("summary", help="the imbalance table of a labelled folder")
    summary.add_argument("data", help="folder with labels.txt/labels.csv (and images/), or the label file")
    summary.add_argument("--format", choices=("text", "csv", "json"), default="text")
    summary.add_argument("--unknown-as-na", action="store_true", help=TrainConfig.__dataclass_fields__["unknown_as_na"].metadata["help"])
    summary.set_defaults(run=cmd_summary)

    train = commands.add_parser("train", help="train a model; keeps the best checkpoint in OUT/model.pt")
    train.add_argument("data")
    train.add_argument("--out", required=True, help="output folder for model.pt, history and figures")
    train.add_argument("--preset", choices=sorted(PRESETS), default="default")
    train.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run in OUT")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in OUT from its last.pt "
                                                             "(same data; its own configuration)")
    add_config_options(train)
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("evaluate", help="score a checkpoint on a labelled folder, or cross-validate")
    evaluate.add_argument("data")
    evaluate.add_argument("--model", help="the checkpoint to score (not with --cv)")
    evaluate.add_argument("--cv", type=int, metavar="K", help="K-fold cross-validation of the training recipe")
    evaluate.add_argument("--final", choices=FINAL_MODELS, default="retrain",
                          help="with --cv: the model saved as OUT/model.pt (default: retrained on all images)")
    evaluate.add_argument("--preset", choices=sorted(PRESETS), default="default")
    evaluate.add_argument("--subset", choices=("auto", "val", "all"), default="auto",
                          help="auto: the validation split if DATA is the training folder, else all images")
    evaluate.add_argument("--thresholds", help="override the stored thresholds: one value or one per attribute")
    evaluate.add_argument("--out", help="folder for the metrics tables (and with --cv the final model)")
    evaluate.add_argument("--overwrite", action="store_true", help="replace earlier outputs of the same names in OUT")
    add_config_options(evaluate)
    evaluate.set_defaults(run=cmd_evaluate)

    predict = commands.add_parser("predict", help="predict attributes of an image or a folder of images")
    predict.add_argument("path", help="an image file or a folder")
    predict.add_argument("--model", required=True, help="a checkpoint (.pt) or an exported model (.onnx)")
    choice = predict.add_mutually_exclusive_group()
    choice.add_argument("--threshold", type=float, help="one threshold for every attribute")
    choice.add_argument("--thresholds", help="comma-separated thresholds, one per attribute")
    predict.add_argument("--format", choices=("text", "json", "csv"), default="text")
    predict.add_argument("--device", default="auto")
    predict.set_defaults(run=cmd_predict)

    notebooks = commands.add_parser("notebooks", help="run the numbered notebooks headless with papermill")
    notebooks.add_argument("--data", required=True, help="the labelled folder")
    notebooks.add_argument("--out", required=True, help="folder for the executed notebooks and the run")
    notebooks.add_argument("--figures", help="folder for the PNG figures (default OUT/figures)")
    notebooks.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                           help="a notebook parameter, e.g. -p epochs 3 -p backbone resnet34 (JSON values)")
    notebooks.add_argument("--only", help="comma-separated prefixes of the notebooks to run, e.g. 01,02")
    notebooks.add_argument("--notebooks", help="folder holding the notebooks (default: the repository's)")
    notebooks.add_argument("--overwrite", action="store_true", help="replace the executed notebooks, run and figures "
                                                                     "of an earlier run")
    notebooks.set_defaults(run=cmd_notebooks)

    explain = commands.add_parser("explain", help="Grad-CAM heatmaps: where the model sees each attribute")
    explain.add_argument("path", help="an image file or a folder")
    explain.add_argument("--model", required=True)
    explain.add_argument("--out", required=True, help="folder for one PNG per image")
    explain.add_argument("--overwrite", action="store_true", help="replace earlier explanations of the same names")
    explain.add_argument("--device", default="auto")
    explain.set_defaults(run=cmd_explain)

    export = commands.add_parser("export", help="export a checkpoint for deployment (ONNX, run by onnxruntime)")
    export.add_argument("--model", required=True, help="the checkpoint to export")
    export.add_argument("--format", choices=("onnx",), default="onnx")
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.add_argument("--overwrite", action="store_true", help="replace an existing file")
    export.set_defaults(run=cmd_export)

    demo = commands.add_parser("demo", help="generate the synthetic demo dataset into a new or empty folder")
    demo.add_argument("--out", default="data/demo")
    demo.add_argument("--count", type=int, default=400)
    demo.add_argument("--size", type=int, default=128)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    warnings.simplefilter("always", UserWarning)
    warnings.formatwarning = lambda message, category, *rest: f"warning: {message}\n"
    try:
        return args.run(args)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"aimonk {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # training says what it kept; anything else stops without a traceback
        print(f"aimonk {args.command}: interrupted", file=sys.stderr)
        return 130


def one_line(error: Exception) -> str:
    """An error as one line; OS errors name their file."""
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError) and error.filename:
        return f"{error.filename}: {error.strerror or type(error).__name__}"
    return " ".join(str(error).split()) or type(error).__name__
