"""The default recipe's numeric path against onnxruntime, side by side in one run (benchmarks/speed.py runs
it after its fine-tuning rows; `--default-only` runs only this).

    python benchmarks/speed.py --data DIR --default-only [--folder-images 256]

Trains the default recipe on DIR in a fresh process with a cold cache, exports it to ONNX, then measures:
the backbones' features per image (PyTorch as it was, our engine, the exported graph), the engine's time
per image by batch size, `aimonk predict` of a folder with the .pt and with the .onnx as whole processes,
one image and one widget upload in a warm process, and how far the two routes' probabilities are apart (on every
image of DIR, in one process).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from aimonk.config import preset
from aimonk.data.images import list_images
from aimonk.model.engine import feature_engine
from aimonk.model.features import backbone_features
from aimonk.model.inference import place_model
from aimonk.model.registry import build_model
from aimonk.runtime import autocast, mixed_precision_dtype
from aimonk.serve.onnx_predictor import OnnxPredictor
from aimonk.serve.predictor import Predictor

CPU = torch.device("cpu")


def aimonk(*arguments, cache, stdout=subprocess.DEVNULL) -> float:
    """Wall seconds of one `aimonk ...` process with AIMONK_CACHE=cache."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aimonk", *map(str, arguments)], check=True, stdout=stdout,
                   stderr=subprocess.DEVNULL, env={**os.environ, "AIMONK_CACHE": str(cache)})
    return time.perf_counter() - started


def best_of(runs: int, measure) -> float:
    return min(measure() for _ in range(runs))


def per_image_ms(compute, images: np.ndarray, repeats: int = 2) -> float:
    compute(images[:2])  # warm-up
    return best_of(repeats, lambda: timed(compute, images)) / len(images) * 1000


def timed(compute, *arguments) -> float:
    started = time.perf_counter()
    compute(*arguments)
    return time.perf_counter() - started


def features_rows(config, images: np.ndarray, exported: OnnxPredictor) -> dict:
    """ms per image (the image and its mirror image) of the default's backbones, four ways."""
    model = place_model(build_model(config.replace(freeze="all"), exported.attributes), CPU)

    def pytorch(batch, amp):
        with torch.no_grad(), autocast(CPU, amp):
            for start in range(0, len(batch), 32):
                tensor = torch.from_numpy(batch[start:start + 32])
                model.features(tensor), model.features(tensor.flip(2))

    rows = {"PyTorch eager, float32 (before)": per_image_ms(lambda b: pytorch(b, False), images)}
    if mixed_precision_dtype(CPU, True):
        rows["PyTorch eager, bfloat16 autocast (the previous default)"] = per_image_ms(
            lambda b: pytorch(b, True), images)
    rows["ours: aimonk.model.engine (onnxruntime, float32)"] = per_image_ms(
        lambda b: backbone_features(model, b, CPU), images)
    rows["bound: the exported model in onnxruntime"] = per_image_ms(exported.probabilities, images)
    return rows


def engine_batch_rows(config, images: np.ndarray, attributes: int) -> dict:
    model = place_model(build_model(config.replace(freeze="all"), attributes), CPU)
    engine = feature_engine(model, CPU, config.image_size)

    def in_batches(batch_size):
        return lambda batch: [engine(batch[s:s + batch_size]) for s in range(0, len(batch), batch_size)]

    return {size: per_image_ms(in_batches(size), images) for size in (1, 4, 8, 16, 32, 64)}


def warm_rows(predictor: Predictor, exported: OnnxPredictor, image_file: Path) -> dict:
    """Median ms of one image in a warm process, and of one widget upload (decode, predict, render)."""
    from aimonk.widgets import PredictionApp, decode_upload

    content = image_file.read_bytes()
    image = predictor.model_input(decode_upload(content))[None]
    app = PredictionApp(predictor)
    upload = {"new": [{"name": image_file.name, "content": memoryview(content)}]}

    def median_ms(compute, repeats=15):
        compute()
        return statistics.median(timed(compute) for _ in range(repeats)) * 1000

    return {"one image, model.pt (Predictor)": median_ms(lambda: predictor.probabilities(image)),
            "one image, model.onnx (OnnxPredictor)": median_ms(lambda: exported.probabilities(image)),
            "one widget upload, model.pt (decode, predict, render)": median_ms(lambda: app._on_upload(upload))}


def parity(pt_json: Path, onnx_json: Path) -> tuple[float, int, int]:
    """(largest probability difference, decisions that differ, decisions) of two `--format json` outputs."""
    first, second = json.loads(pt_json.read_text()), json.loads(onnx_json.read_text())
    differences, flips, decisions = [0.0], 0, 0
    for a, b in zip(first, second):
        for name, answer in a["attributes"].items():
            other = b["attributes"][name]
            differences.append(abs(answer["probability"] - other["probability"]))
            flips += answer["present"] != other["present"]
            decisions += 1
    return max(differences), flips, decisions


def run(data: Path, folder_images: int = 256) -> None:
    config = preset("default")
    work = Path(tempfile.mkdtemp(prefix="aimonk_serving_"))
    try:
        cache, model_file, onnx_file = work / "cache", work / "run" / "model.pt", work / "model.onnx"
        folder = work / "folder"
        folder.mkdir()
        for image in list_images(data / "images")[:folder_images]:
            (folder / image.name).symlink_to(image.resolve())
        print(f"\nthe default recipe ({config.backbone} at {config.image_size}px, flip TTA) on {data}, "
              f"{torch.get_num_threads()} threads")
        train_s, pass_s = [], []
        for attempt in range(2):  # in turn, the best of two each: this machine's speed drifts by minutes
            if attempt:  # cold again
                shutil.rmtree(cache)
                shutil.rmtree(work / "run")
            train_s.append(aimonk("train", data, "--out", work / "run", cache=cache))
            if not attempt:
                aimonk("export", "--model", model_file, "--format", "onnx", "--out", onnx_file, cache=cache)
            pass_s.append(aimonk("predict", data / "images", "--model", onnx_file, "--format", "csv", cache="off"))
        train_s, pass_s = min(train_s), min(pass_s)
        count = len(list_images(data / "images"))
        print(f"\n{'whole processes':<66}{'seconds':>9}{'ratio':>8}")
        print(f"{'aimonk train, cold cache (decoding included)':<66}{train_s:>9.1f}{train_s / pass_s:>8.2f}")
        print(f"{f'one onnxruntime prediction pass over the {count} images (cache off)':<66}{pass_s:>9.1f}"
              f"{1.0:>8.2f}")

        outputs = {route: work / f"{route}.json" for route in ("pt", "onnx")}
        for label, setting in (("cache as training left it", cache), ("cache off", "off")):
            seconds = {"pt": [], "onnx": []}
            for _ in range(3):  # the two routes in turn, the best of three each: this machine's noise is shared
                for route, model in (("pt", model_file), ("onnx", onnx_file)):
                    with open(outputs[route], "w") as out:
                        seconds[route].append(aimonk("predict", folder, "--model", model, "--format", "json",
                                                     cache=setting, stdout=out))
            pt_s, onnx_s = min(seconds["pt"]), min(seconds["onnx"])
            print(f"{f'aimonk predict {folder_images} images, model.pt ({label})':<66}{pt_s:>9.1f}{pt_s / onnx_s:>8.2f}")
            print(f"{f'aimonk predict {folder_images} images, model.onnx ({label})':<66}{onnx_s:>9.1f}{1.0:>8.2f}")
        difference, flips, decisions = parity(outputs["pt"], outputs["onnx"])
        print(f"model.pt against model.onnx: largest probability difference {difference:.1e} (outputs rounded to "
              f"1e-4), {flips} of {decisions} decisions differ")

        os.environ["AIMONK_CACHE"] = str(cache)  # this process's own cache too: the run's folder
        predictor, exported = Predictor.load(model_file, "cpu"), OnnxPredictor(onnx_file)
        everything = list_images(data / "images")
        answers = [route.predict_paths(everything, progress=False) for route in (predictor, exported)]
        difference = np.abs(answers[0].probabilities - answers[1].probabilities).max()
        flips = int((answers[0].present != answers[1].present).sum())
        print(f"model.pt against model.onnx on all {len(everything)} images, unrounded: largest probability "
              f"difference {difference:.1e}, {flips} of {answers[0].present.size} decisions differ")
        sample = np.stack([predictor.model_input(np.asarray(Image.open(p).convert("RGB")))
                           for p in sorted(folder.iterdir())[:32]])
        print(f"\n{'backbone features, image and mirror image, 32 images':<66}{'ms/image':>9}{'ratio':>8}")
        rows = features_rows(config, sample, exported)
        bound = rows["bound: the exported model in onnxruntime"]
        for name, value in rows.items():
            print(f"{name:<66}{value:>9.1f}{value / bound:>8.2f}")
        print(f"\n{'engine batch size (images per call, no mirror)':<66}{'ms/image':>9}")
        for size, value in engine_batch_rows(config, sample, len(exported.attributes)).items():
            print(f"{size:<66}{value:>9.1f}")
        print(f"\n{'in a warm process':<66}{'ms':>9}{'ratio':>8}")
        warm = warm_rows(predictor, exported, sorted(folder.iterdir())[0])
        onnx_ms = warm["one image, model.onnx (OnnxPredictor)"]
        for name, value in warm.items():
            print(f"{name:<66}{value:>9.1f}{value / onnx_ms:>8.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

