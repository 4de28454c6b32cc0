"""ONNX (onnxruntime) against PyTorch prediction latency for one checkpoint, side by side in one run.

    python benchmarks/onnx_latency.py --model runs/r1/model.pt [--folder 64] [--repeats 20]

Both compute the same thing: uint8 images at the model's size in, calibrated probabilities out (flip
averaging included when the model uses it), float32 on the CPU, where the checkpoint's backbone runs in
onnxruntime too (aimonk.model.engine). Prints the median latency for one image
and for a folder of --folder images, and the largest probability difference.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aimonk.serve.export import export_onnx
from aimonk.serve.onnx_predictor import OnnxPredictor
from aimonk.serve.predictor import Predictor


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--folder", type=int, default=64, help="images in the folder case")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    predictor = Predictor.load(args.model, "cpu")
    with tempfile.TemporaryDirectory() as folder:
        exported = OnnxPredictor(export_onnx(predictor, Path(folder) / "model.onnx"))
        size = predictor.image_size
        images = np.random.default_rng(0).integers(0, 256, (args.folder, size, size, 3), dtype=np.uint8)
        difference = np.abs(exported.probabilities(images) - predictor.probabilities(images)).max()
        print(f"{args.model}: {predictor.config.backbone} at {size}px, tta={predictor.config.tta}, "
              f"{torch.get_num_threads()} torch threads; max |ONNX - PyTorch| = {difference:.2e}")
        print(f"{'case':<22}{'PyTorch ms':>12}{'ONNX ms':>10}{'speed-up':>10}")
        for label, batch, repeats in (("one image", images[:1], args.repeats),
                                      (f"folder of {args.folder}", images, max(3, args.repeats // 5))):
            torch_s = median_seconds(lambda: predictor.probabilities(batch), repeats)
            onnx_s = median_seconds(lambda: exported.probabilities(batch), repeats)
            print(f"{label:<22}{torch_s * 1e3:>12.1f}{onnx_s * 1e3:>10.1f}{torch_s / onnx_s:>9.2f}x")


if __name__ == "__main__":
    main()
