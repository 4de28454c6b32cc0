"""`aimonk summary` on a folder of many tiny files: wall time and peak RSS (the labels file is read, every
listed file is looked for; no image is decoded).

    python benchmarks/summary_many_files.py --files 50000 [--attributes 4] [--folder runs/many]

The folder (1x1-pixel PNGs, a labels.txt with a header, 9% NA, 3 listed files missing) is written once and
kept for later runs; /usr/bin/time -v measures peak RSS. Prints one line per run (the first run may meet a
cold file-system cache, the second a warm one).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def write_folder(folder: Path, files: int, attributes: int, seed: int = 0) -> None:
    """files listed images, all but the last three written (the same 1x1 PNG), random 0/1/NA labels."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    pixel = folder / "pixel.png"
    Image.new("RGB", (1, 1), (200, 120, 40)).save(pixel)
    data = pixel.read_bytes()
    rng = np.random.default_rng(seed)
    values = rng.choice(["0", "1", "NA"], size=(files, attributes), p=[0.455, 0.455, 0.09])
    lines = ["filename " + " ".join(f"attr_{k}" for k in range(attributes))]
    for index, row in enumerate(values):
        name = f"image_{index}.png"
        if index < files - 3:
            (images / name).write_bytes(data)
        lines.append(f"{name} {' '.join(row)}")
    (folder / "labels.txt").write_text("\n".join(lines) + "\n")


def timed_summary(folder: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, the summary's first line)."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "aimonk", "summary", str(folder)],
                          capture_output=True, text=True, env=environment)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"aimonk summary failed:\n{done.stderr[-3000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return seconds, peak_kb / 1024, done.stdout.splitlines()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=50000)
    parser.add_argument("--attributes", type=int, default=4)
    parser.add_argument("--folder", default="runs/many")
    args = parser.parse_args()
    folder = Path(args.folder) / f"files_{args.files}_{args.attributes}"
    if not (folder / "labels.txt").is_file():
        started = time.perf_counter()
        write_folder(folder, args.files, args.attributes)
        print(f"wrote {args.files} files in {time.perf_counter() - started:.0f} s: {folder}")
    for run in ("first", "second"):
        seconds, peak, said = timed_summary(folder)
        print(f"{run} run: {seconds:5.1f} s  peak RSS {peak:4.0f} MB   ({said})", flush=True)


if __name__ == "__main__":
    main()
