"""Training on a folder larger than memory would like: peak RSS of `aimonk train`, and a second run that
reuses the disk cache (no decoding, no feature extraction). Prints both runs' wall time and peak RSS.

    python benchmarks/large_dataset.py --images 20000 --size 128 [--folder runs/large] [--backbone efficientnet_lite0]

The synthetic demo generator writes the folder once (kept for later runs). Both runs use a fresh cache folder
(`--folder`/cache), the first filling it, the second reading it; /usr/bin/time -v measures peak RSS.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aimonk.data.demo import make_demo_dataset


def timed_run(command: list[str], environment: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in GB) of a command run under /usr/bin/time -v."""
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, env=environment)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return seconds, peak_kb / 1024 ** 2


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--folder", default="runs/large")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args()
    folder = Path(args.folder)
    data = folder / f"data_{args.images}_{args.size}"
    if not (data / "labels.txt").is_file():
        started = time.perf_counter()
        make_demo_dataset(data, count=args.images, size=args.size, seed=0)
        print(f"generated {args.images} images at {args.size} px in {time.perf_counter() - started:.0f} s: {data}")
    cache = folder / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    environment = {**os.environ, "AIMONK_CACHE": str(cache.resolve())}
    for run in ("first (decodes, computes features, fills the cache)", "second (reads the cache)"):
        out = folder / "run"
        shutil.rmtree(out, ignore_errors=True)
        seconds, peak = timed_run([sys.executable, "-m", "aimonk", "train", str(data), "--out", str(out),
                                   "--backbone", args.backbone, "--image-size", str(args.size)], environment)
        print(f"{run:<52} {seconds / 60:5.1f} min  peak RSS {peak:.2f} GB", flush=True)


if __name__ == "__main__":
    main()
