"""What each command does: it calls a workflow (or a predictor, the exporter, the cache) and reports."""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

from aimonk.cli.parser import config_from_args, option_flag
from aimonk.config import TrainConfig
from aimonk.files import check_output_folder, csv_text
from aimonk.progress import progress_bar

INTERRUPTED, TERMINATED = 130, 143  # the shell's codes for SIGINT and SIGTERM


def cmd_summary(args) -> int:
    from aimonk.data.folder import read_label_folder
    from aimonk.data.labels import short_name, summarize

    table, image_dir, missing = read_label_folder(args.data, args.unknown_as_na)
    summary = summarize(table.values, table.attributes)
    if args.format == "csv":
        print(csv_text(summary), end="")
    elif args.format == "json":
        print(summary.reset_index().to_json(orient="records", indent=2))
    else:
        print(f"{table.source}: {len(table)} labelled images, {len(table.attributes)} attributes, "
              f"{len(missing)} missing in {image_dir}")
        print(summary.rename(index=short_name).to_string(formatters={"positive_rate": "{:.1%}".format}))
    return 0


def training_options_given(args, used=()) -> list[str]:
    """The training options typed on the command line (a preset other than the default counts), less `used`."""
    given = [option_flag(f.name) for f in dataclasses.fields(TrainConfig)
             if f.name not in used and getattr(args, f.name) is not None]
    return given + (["--preset"] if args.preset != "default" else [])


def cmd_train(args) -> int:
    from aimonk.training.loop import TrainingInterrupted
    from aimonk.workflows import train

    if args.resume and (given := training_options_given(args)):
        raise ValueError(f"--resume continues the run with its own configuration; leave out {given[0]}")
    config = None if args.resume else config_from_args(args)
    started = time.perf_counter()
    try:
        trained = train(args.data, config, args.out, resume=args.resume, overwrite=args.overwrite)
    except TrainingInterrupted as stopped:
        print(f"\n{stopped}", flush=True)
        return INTERRUPTED
    if trained.path is None:  # a worker process: the main one saved and reports
        return 0
    print(f"kept {trained.kept()}; {(time.perf_counter() - started) / 60:.1f} min; checkpoint {trained.path}; "
          f"scores in {Path(args.out) / 'metrics.json'}; figures in {args.out}"
          + (f"; tracked in {trained.tracked}" if trained.tracked else ""))
    return 0


def cmd_evaluate(args) -> int:
    if args.cv is not None:
        return evaluate_cross_validated(args)
    if not args.model:
        raise ValueError("give --model CHECKPOINT to score, or --cv K to cross-validate a training recipe")
    if ignored := training_options_given(args, used=("device",)) + (["--final"] if args.final != "retrain" else []):
        raise ValueError(f"{ignored[0]} is an option of training (--cv): --model scores the checkpoint as it was "
                         "trained; leave it out")
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
        print(f"written {out / 'cv_metrics.csv'} and {out / 'metrics.json'}")
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


def cmd_label(args) -> int:
    from aimonk.data.folder import find_label_file
    from aimonk.labelling.labelfile import LabelFile

    if args.model and args.queue is None:
        raise ValueError("--model ranks the questions of --queue; answers and undo need no model")
    if args.queue is not None:
        return print_queue(args)
    labels = LabelFile.open(find_label_file(args.data))
    if args.undo:
        batch = labels.undo(source="aimonk label --undo")
        print(f"took back batch {batch.undoes} ({len(batch.changes)} cell(s)) in {labels.path}" if batch else
              f"nothing to undo in {labels.path}")
        return 0
    from aimonk.labelling.answers import read_answers

    batch = labels.apply(read_answers(args.answers), source=f"aimonk label --answers {args.answers}")
    print(f"wrote {len(batch.changes)} answer(s) to {labels.path} as batch {batch.id} ({len(batch.skipped)} skipped; "
          f"the original is kept as {labels.original_path.name}, every change in {labels.journal_path.name}); take "
          "it back with --undo")
    return 0


def print_queue(args) -> int:
    from aimonk.label_session import LabelSession

    if args.queue < 1:
        raise ValueError(f"--queue must be at least 1, not {args.queue}")
    session = LabelSession(args.data, args.model, score=args.score, source="aimonk label")
    sys.stdout.write(csv_text(session.questions_frame(args.queue), index=False))
    return 0


def cmd_predict(args) -> int:
    from aimonk.serve import load_predictor
    from aimonk.serve.predictions import parse_thresholds

    if sys.stdout is None:  # started with >&-
        raise ValueError("standard output is closed: nowhere to write the predictions (redirect it to a file)")
    predictor = load_predictor(args.model, args.device)
    thresholds = None
    if args.threshold is not None or args.thresholds is not None:  # "" too: an error, never ignored
        thresholds = parse_thresholds(args.thresholds if args.thresholds is not None else str(args.threshold),
                                      len(predictor.attributes))
    predictions = predictor.predict_paths(args.path, thresholds, progress=Path(args.path).is_dir())
    write_result(predictions.format(args.format))
    return 0


def write_result(text: str) -> None:
    """A command's result on stdout, flushed now so that a full disk (/dev/full) is one error line; what could not
    be written is dropped (stdout pointed at /dev/null), not tried again when Python exits."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as error:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise ValueError(f"cannot write to standard output: {error.strerror or error}") from None


def cmd_explain(args) -> int:
    from aimonk.data.images import load_image_folder
    from aimonk.plots import plot_explanation, save_figure
    from aimonk.serve.predictor import Predictor

    predictor = Predictor.load(args.model, args.device)
    images, paths = load_image_folder(args.path, predictor.image_size)
    names = explanation_names(paths)
    out = check_output_folder(args.out, args.overwrite, names=names)
    for start in progress_bar(range(0, len(images), 8), desc="explaining", disable=len(images) <= 8, leave=False):
        heatmaps, probabilities = predictor.explain(images[start:start + 8])
        for offset, (heatmap, probability) in enumerate(zip(heatmaps, probabilities)):
            index = start + offset
            save_figure(plot_explanation(images[index], heatmap, predictor.attributes, probability,
                                         predictor.thresholds, str(paths[index])), out / names[index], show=False)
    print(f"wrote {len(names)} explanation(s) (Grad-CAM per attribute) to {out}")
    return 0


def explanation_names(paths) -> list[str]:
    """One PNG name per image, all different: STEM_explained.png, or STEM_N_explained.png with the first N that no
    other image's name has taken (a.jpg, a.png and a_2.png give three files)."""
    names, taken = [], set()
    for path in paths:
        stem, number = Path(path).stem, 1
        name = f"{stem}_explained.png"
        while name in taken:
            number += 1
            name = f"{stem}_{number}_explained.png"
        taken.add(name)
        names.append(name)
    return names


def cmd_export(args) -> int:
    from aimonk.files import file_lock

    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"--out {out} must end in .onnx")
    check_output_folder(out.parent if str(out.parent) else ".", True, "--out")
    with file_lock(out):  # a second export to the same file at once stops here, naming this one
        if out.exists() and not args.overwrite:
            raise ValueError(f"--out {out} already exists; choose another name or add --overwrite to replace it")
        return export_checked(args, out)


def export_checked(args, out: Path) -> int:
    from aimonk.data.labels import printable, short_name
    from aimonk.serve.export import export_onnx, largest_difference
    from aimonk.serve.predictor import Predictor

    predictor = Predictor.load(args.model, "cpu")
    path = export_onnx(predictor, out, overwrite=args.overwrite)
    print(f"wrote {printable(path)} ({path.stat().st_size / 1e6:.1f} MB): uint8 images (N, {predictor.image_size}, "
          f"{predictor.image_size}, 3) in, probabilities of {', '.join(map(short_name, predictor.attributes))} out")
    difference = largest_difference(predictor, path)
    print(f"checked: its probabilities and {printable(args.model)}'s differ by at most {difference:.1e} on 4 test "
          "images" + ("" if difference <= 1e-4 else " (more than the 1e-4 they should agree within: please report it)"))
    return 0


def cmd_demo(args) -> int:
    from aimonk.data.demo import make_demo_dataset

    out = make_demo_dataset(args.out, count=args.count, size=args.size, seed=args.seed)
    written = sum(1 for path in (Path(out) / "images").iterdir() if path.is_file())
    print(f"wrote labels.txt listing {args.count} synthetic images and {written} of them to {out}"
          + (f" (the {args.count - written} missing on purpose: aimonk skips and names listed images that are "
             "not there)" if written < args.count else ""))
    return 0


def cmd_notebooks(args) -> int:
    from aimonk.notebooks import run_notebook_job

    started = time.perf_counter()
    executed, out, figures = run_notebook_job(args.data, args.out, args.figures, args.parameter or [], args.only,
                                              args.notebooks, args.overwrite)
    print(f"executed {len(executed)} notebook(s) into {out} in {(time.perf_counter() - started) / 60:.1f} min; "
          f"figures in {figures}")
    return 0


def cmd_tune(args) -> int:
    from aimonk.tuning import tune
    from aimonk.tuning.space import load_space

    space = load_space(args.space) if args.space else None
    started, out = time.perf_counter(), Path(args.out)
    run = tune(args.data, args.trials, out, config_from_args(args), space, args.preset, args.folds)
    print(f"best of {len(run.study.trials)} trials: out-of-fold macro F1 {run.best_score:.3f} (optimistic: the best "
          "of many on the same folds; score it on images the search never saw); "
          f"{(time.perf_counter() - started) / 60:.1f} min")
    print(f"written {', '.join(str(path) for path in run.written)}; train it with: aimonk train DATA --config "
          f"{out / 'config.json'} --out RUN")
    return 0


def cmd_backbones(args) -> int:
    from aimonk.model.registry import available_backbones

    ours, theirs = available_backbones(args.pattern)
    for name in ours + (theirs or []):
        print(name)
    if theirs is None:
        print("(timm's models are not listed: timm is not installed; pip install timm)", file=sys.stderr)
    elif not ours and not theirs:
        print(f"no backbone matches {args.pattern!r}", file=sys.stderr)
        return 1
    return 0


def cmd_cache(args) -> int:
    from aimonk.cache import cache_entries, cache_root, clear_cache
    from aimonk.data.labels import printable

    root = cache_root()
    if root is None:
        print("the aimonk cache is off (AIMONK_CACHE=off)")
        return 0
    if args.older_than is not None and not args.clear:
        raise ValueError("--older-than goes with --clear")
    if args.clear:
        removed = clear_cache(args.older_than)
        print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} ({megabytes(removed)}) from "
              f"{printable(str(root))}" + ("" if removed else ": nothing to remove"
                                           + (f" older than {args.older_than:g} days" if args.older_than else "")))
        return 0
    entries = cache_entries()
    print(f"{printable(str(root))}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, {megabytes(entries)}")
    for entry in entries:
        print(f"  {entry.kind:<9} {entry.size / 2**20:>8.1f} MB  {entry.age_days:>5.1f} days  "
              f"{printable(entry.what)}  ({describe_source(entry.source)})")
    return 0


def describe_source(source: str) -> str:
    """The folder an entry was made from, escaped, marked when it is gone."""
    from aimonk.data.labels import printable

    gone = source.startswith("/") and not Path(source).exists()
    return printable(source) + (", gone" if gone else "")


def megabytes(entries) -> str:
    return f"{sum(entry.size for entry in entries) / 2**20:.1f} MB"


COMMANDS = {"summary": cmd_summary, "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "notebooks": cmd_notebooks, "explain": cmd_explain, "export": cmd_export, "cache": cmd_cache,
            "demo": cmd_demo, "tune": cmd_tune, "label": cmd_label, "backbones": cmd_backbones}
