"""Training and prediction speed: the model alone, our pipeline and the reference pipeline, side by side.

    python benchmarks/speed.py --data DIR [--backbone resnet34] [--size 224] [--epochs 2] [--limit 256]
                               [--device cuda] [--compile]

All figures come from one run on the same data, model (the reference's freezing), batch size and
augmentations, so their ratios are comparable. Add --quality-data data/demo to check that mixed
precision does not lower validation F1 (same seed, same split). On the CPU the default recipe's rows follow
(benchmarks/serving_speed.py: features, `aimonk predict` with .pt and .onnx, one image, the widget);
--default-only prints only those.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import serving_speed  # noqa: E402 (benchmarks/serving_speed.py, beside this file)

from aimonk.model.checkpoint import Checkpoint
from aimonk.model.recipe import decide_recipe
from aimonk.config import preset
from aimonk.data.folder import load_labelled_folder
from aimonk.model.inference import place_model, predict_logits
from aimonk.runtime import mixed_precision_dtype, select_device, use_channels_last
from aimonk.data.images import DataWarning
from aimonk.training.losses import make_loss
from aimonk.model.registry import build_model
from aimonk.serve.predictor import Predictor
from aimonk.training.loaders import make_train_loader
from aimonk.training.loop import fit
from aimonk.training.optim import make_scaler
from aimonk.training.state import new_history
from aimonk.training.strategies import train_one_epoch, training_step
from aimonk.data.transforms import train_transform


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def new_model(config, k, device, channels_last):
    model = build_model(config.replace(weights="none"), k)
    return place_model(model, device, channels_last)


def model_only_training(config, k, device, amp, channels_last, steps):
    """Training steps on a uint8 batch already on the device: the compute bound, in images/s."""
    model = new_model(config, k, device, channels_last).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    images = torch.randint(0, 256, (config.batch_size, config.image_size, config.image_size, 3), dtype=torch.uint8)
    images = images.to(device)
    targets = torch.randint(0, 2, (config.batch_size, k), device=device).float()
    loss_fn = make_loss("bce", np.ones((2, k)) * [[1], [0]]).to(device)
    scaler = make_scaler(device, amp)

    def step():
        training_step(model, images, targets, loss_fn, optimizer, scaler, device, amp)

    for _ in range(2):
        step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps * config.batch_size / (time.perf_counter() - started)


def model_only_forward(config, k, device, channels_last, steps):
    """Prediction of uint8 images already in memory (aimonk.model.inference: the engine, float32), images/s."""
    model = new_model(config, k, device, channels_last).eval()
    images = np.random.default_rng(0).integers(0, 256, (config.batch_size * 2 * steps, config.image_size,
                                                        config.image_size, 3), dtype=np.uint8)
    predict_logits(model, images[: config.batch_size * 2], device, tta=config.tta)
    synchronize(device)
    started = time.perf_counter()
    predict_logits(model, images, device, tta=config.tta)
    synchronize(device)
    return len(images) / (time.perf_counter() - started)


def our_pipeline(config, data, device, epochs, compile: bool = False):
    """Whole epochs from the uint8 cache: augmentation, loading, training; images/s and the model. With
    compile, the model is torch.compile'd first (its compilation is not timed: one epoch runs before)."""
    channels_last = use_channels_last(device, config.channels_last)
    model = new_model(config, len(data.attributes), device, channels_last)
    rows = np.arange(len(data))
    loss_fn = make_loss(config.loss, data.values, config.pos_weight).to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    scaler = make_scaler(device, config.amp)
    loader = make_train_loader(data, rows, config, device)
    history = new_history()
    trained = torch.compile(model) if compile else model
    if compile:
        train_one_epoch(trained, loader, loss_fn, optimizer, scaler, device, config, history, "compiling")
        history = new_history()
    synchronize(device)
    started = time.perf_counter()
    for epoch in range(epochs):
        train_one_epoch(trained, loader, loss_fn, optimizer, scaler, device, config, history, f"ours {epoch + 1}")
    synchronize(device)
    return len(history["iteration_loss"]) * config.batch_size / (time.perf_counter() - started), model


def head_only_pipeline(config, data, device):
    """A head-only run by epochs (features once, then the head for its epochs), in images/s trained. (The
    default solves its head exactly instead; benchmarks/quality.py gives its minutes per run.)"""
    head_only = preset("default", backbone=config.backbone, weights="none", image_size=config.image_size,
                       batch_size=config.batch_size, val_fraction=0.0, device=str(device), head_solver="adam")
    synchronize(device)
    started = time.perf_counter()
    fit(head_only, data)
    synchronize(device)
    return len(data) * head_only.epochs / (time.perf_counter() - started), head_only.epochs


class ReferenceDataset(torch.utils.data.Dataset):
    """The first public solution's loading: open, decode, resize and augment each JPEG every epoch."""

    def __init__(self, paths, targets, size, mean, std):
        self.paths, self.targets, self.size = paths, targets, size
        self.transform = train_transform(size, "strong")
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        image = np.array(Image.open(self.paths[index]).convert("RGB").resize((self.size, self.size)))
        image = self.transform(image=image)["image"]
        tensor = (torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255 - self.mean) / self.std
        return tensor, torch.from_numpy(self.targets[index])


def reference_pipeline(config, data, device, epochs):
    model = new_model(config, len(data.attributes), device, False).train()
    dataset = ReferenceDataset([data.image_dir / n for n in data.filenames], data.values, config.image_size,
                               model.mean.flatten().tolist(), model.std.flatten().tolist())
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=True, num_workers=2,
                                         drop_last=True, persistent_workers=True)
    loss_fn = make_loss("bce", data.values).to(device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    seen = 0
    started = time.perf_counter()
    for _ in range(epochs):
        for images, targets in loader:
            # the reference feeds normalised float NCHW tensors, so it enters the network after our preparation
            loss = loss_fn(model.head(model.pool(model.stages(images.to(device)))), targets.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(images)
    synchronize(device)
    return seen / (time.perf_counter() - started)


def prediction(config, model, data, device, folder_images):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        Checkpoint.of_model(model, config, data.attributes, new_history(), decide_recipe(config)).save(path)
        predictor = Predictor.load(path, str(device))
        files = [data.image_dir / n for n in data.filenames[:folder_images]]
        predictor.predict_paths(files[:8], progress=False)
        started = time.perf_counter()
        predictor.predict_paths(files, progress=False)
        folder_rate = len(files) / (time.perf_counter() - started)
        latencies = []
        for file in files[:20]:
            started = time.perf_counter()
            predictor.predict_paths(file, progress=False)
            latencies.append(time.perf_counter() - started)
    return folder_rate, statistics.median(latencies) * 1000


def quality(args, device):
    """Validation macro F1 with and without mixed precision: for each seed, the same data, seed and split."""
    data = load_labelled_folder(args.quality_data, args.quality_size, progress=False)
    scores = {False: [], True: []}
    seconds = {False: 0.0, True: 0.0}
    for seed in range(args.quality_seeds):
        for amp in (False, True):
            config = preset("finetune", backbone=args.quality_backbone, image_size=args.quality_size,
                            epochs=args.quality_epochs, amp=amp, device=str(device), seed=seed)
            started = time.perf_counter()
            result = fit(config, data)
            seconds[amp] += time.perf_counter() - started
            scores[amp].append(max(e["val_macro_f1"] for e in result.history["epochs"]))
    return scores, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a labelled folder (labels.txt + images/)")
    parser.add_argument("--backbone", default="resnet34")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed for each pipeline")
    parser.add_argument("--limit", type=int, default=256, help="images per epoch (0 = all)")
    parser.add_argument("--steps", type=int, default=6, help="steps timed for the model-only bound")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="also time our pipeline with torch.compile")
    parser.add_argument("--quality-data", help="a labelled folder for the float32 vs mixed-precision F1 check")
    parser.add_argument("--quality-only", action="store_true", help="run only the F1 check")
    parser.add_argument("--quality-backbone", default="efficientnet_lite0")
    parser.add_argument("--quality-size", type=int, default=128)
    parser.add_argument("--quality-epochs", type=int, default=6)
    parser.add_argument("--quality-seeds", type=int, default=3, help="seeds (each its own split) for the check")
    parser.add_argument("--default-only", action="store_true",
                        help="run only the default recipe's rows (benchmarks/serving_speed.py)")
    parser.add_argument("--folder-images", type=int, default=256, help="images predicted by the whole processes")
    args = parser.parse_args(argv)

    warnings.simplefilter("ignore", DataWarning)  # the missing files are reported by `aimonk summary`
    device = select_device(args.device)
    if args.quality_only:
        args.quality_data = args.quality_data or args.data
        return report_quality(args, device)
    if args.default_only:
        return serving_speed.run(Path(args.data), args.folder_images)
    # training through the backbone with strong augmentation, as the reference pipeline does
    config = preset("finetune", backbone=args.backbone, image_size=args.size, batch_size=args.batch_size, freeze=-1,
                    device=str(device))
    amp_dtype = mixed_precision_dtype(device, True)
    fastest = str(amp_dtype).replace("torch.", "") if amp_dtype else "float32 (no native mixed precision)"
    channels_last = use_channels_last(device, None)
    print(f"device {device} ({torch.get_num_threads()} threads), {args.backbone} at {args.size}px, batch "
          f"{args.batch_size}, reference freezing; mixed precision: {fastest}; channels_last: {channels_last}")

    started = time.perf_counter()
    data = load_labelled_folder(args.data, args.size, progress=False)
    cache_seconds, cached = time.perf_counter() - started, len(data)
    k = len(data.attributes)
    if args.limit:
        keep = np.arange(min(args.limit, len(data)))
        data.images, data.labels = data.images[keep], data.labels.subset(keep)

    results = {}
    results["model alone, float32"] = model_only_training(config, k, device, False, False, args.steps)
    if amp_dtype:
        results[f"model alone, {fastest}"] = model_only_training(config, k, device, True, channels_last, args.steps)
    results["our pipeline"], model = our_pipeline(config, data, device, args.epochs)
    if args.compile:
        results["our pipeline, torch.compile"], _ = our_pipeline(config, data, device, args.epochs, compile=True)
    results["reference pipeline (decode every epoch, 2 workers, float32)"] = reference_pipeline(
        config, data, device, args.epochs)
    rate, head_epochs = head_only_pipeline(config, data, device)
    results[f"head only, the default recipe ({head_epochs} epochs, features once)"] = rate
    forward = model_only_forward(config, k, device, channels_last, max(2, args.steps // 2))
    folder_rate, latency = prediction(config, model, data, device, len(data))

    bound = results["model alone, float32"]
    reference = results["reference pipeline (decode every epoch, 2 workers, float32)"]
    print(f"\ndecoding and caching all {cached} images once: {cache_seconds:.1f} s; epochs below use {len(data)}\n")
    print(f"{'training':<62}{'images/s':>10}{'x fp32 bound':>14}{'x reference':>13}")
    for name, rate in results.items():
        print(f"{name:<62}{rate:>10.1f}{rate / bound:>14.2f}{rate / reference:>13.2f}")
    print(f"\n{'prediction':<62}{'images/s':>10}{'x forward bound':>17}")
    print(f"{'model alone, forward (float32' + (', with the mirror image' if config.tta else '') + ')':<62}"
          f"{forward:>10.1f}{1.0:>17.2f}")
    print(f"{'a folder of ' + str(len(data)) + ' images (decode included)':<62}{folder_rate:>10.1f}"
          f"{folder_rate / forward:>17.2f}")
    print(f"one image in a warm process: {latency:.0f} ms median")
    if device.type == "cpu":
        serving_speed.run(Path(args.data), args.folder_images)

    if args.quality_data:
        report_quality(args, device)


def report_quality(args, device):
    print(f"\nquality check on {args.quality_data} ({args.quality_backbone}, {args.quality_size}px, "
          f"{args.quality_epochs} epochs; seeds 0..{args.quality_seeds - 1}, each run with and without "
          "mixed precision on the same split): best validation macro F1")
    scores, seconds = quality(args, device)
    for amp in (False, True):
        values = " ".join(f"{v:.3f}" for v in scores[amp])
        print(f"  mixed precision {'on ' if amp else 'off'}: mean {np.mean(scores[amp]):.3f}  [{values}]  "
              f"({seconds[amp]:.0f} s)")
    differences = np.subtract(scores[True], scores[False])
    print(f"  difference (on - off) per seed: {' '.join(f'{d:+.3f}' for d in differences)}; "
          f"mean {differences.mean():+.3f}")


if __name__ == "__main__":
    main()
