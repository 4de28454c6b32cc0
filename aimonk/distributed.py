"""Several processes training one model, with PyTorch's own engine: torchrun starts them, DistributedDataParallel
keeps their models in step.

    torchrun --nproc_per_node 2 -m aimonk train DATA --out RUN

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process; `Processes.join(device)` reads them and joins the
process group (gloo on the CPU, nccl on GPUs, one GPU per process). A single process (no torchrun) is
`Processes()`, and every method then does the plain thing, so the training code has one path for both.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import math
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    """This process's place among the processes of a run: rank (0 is the main process, the only one that
    writes and prints), world (how many) and local_rank (its GPU on this machine)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def join(cls, device: torch.device) -> "Processes":
        """The processes torchrun started, joining their group once (nccl when the run is on CUDA `device`,
        else gloo), or a single process without torchrun."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if not dist.is_initialized():
            if device.type == "cuda":
                torch.cuda.set_device(local_rank)
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                    timeout=datetime.timedelta(minutes=60))
            atexit.register(dist.destroy_process_group)
        return cls(dist.get_rank(), dist.get_world_size(), local_rank)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def device(self, device: torch.device) -> torch.device:
        """Each process's own GPU when the run is on CUDA."""
        if self.distributed and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def batch_size(self, total: int) -> int:
        """Each process's share of the configured (global) batch size."""
        if total % self.world:
            raise ValueError(f"batch_size {total} does not divide among {self.world} processes; choose a multiple "
                             f"of {self.world}")
        return total // self.world

    def block(self, count: int) -> slice:
        """This process's contiguous share of `count` rows (the first processes take one more when uneven)."""
        bounds = np.linspace(0, count, self.world + 1).round().astype(int)
        return slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))

    def batches_block(self, count: int, batch: int) -> slice:
        """This process's contiguous share of `count` rows in whole batches of `batch` rows, cut where a single
        process cuts them: convolution kernels give results that depend on the batch size, so the rows come
        out as one process computes them."""
        batches = self.block(math.ceil(count / batch))
        return slice(min(batches.start * batch, count), min(batches.stop * batch, count))

    def wrap(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """`module` as DistributedDataParallel (gradients averaged across processes), or itself alone."""
        if not self.distributed:
            return module
        if device.type == "cuda":  # per-GPU batches are small: batch-norm statistics over the whole batch
            module = sync_batchnorm(module)
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda"
                                                         else None)

    def gather_rows(self, part: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Every process's `part` (its block of rows along `dim`), concatenated in rank order, on every process."""
        if not self.distributed:
            return part
        device = self.collective_device()
        own = torch.tensor([part.shape[dim]], device=device)
        sizes = [torch.zeros_like(own) for _ in range(self.world)]
        dist.all_gather(sizes, own)
        longest = int(max(sizes).item())
        padding = list(part.shape)
        padding[dim] = longest - part.shape[dim]
        padded = torch.cat([part, part.new_zeros(padding)], dim=dim).to(device).contiguous()
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([p.narrow(dim, 0, int(n)).to(part.device) for p, n in zip(parts, sizes)], dim=dim)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise mean of `values` over the processes (float64 on the CPU), on every process."""
        values = values.double()
        if self.distributed:
            values = values.to(self.collective_device())
            dist.all_reduce(values)
            values = values.cpu() / self.world
        return values

    @staticmethod
    def collective_device() -> torch.device:
        """Where tensors must be for the group's collectives: this process's GPU with nccl, else the CPU."""
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def gather_objects(self, value) -> list:
        """Every process's `value` (any picklable object), in rank order, on every process."""
        if not self.distributed:
            return [value]
        values = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self):
        """The main process runs the block first (e.g. decoding the images into the disk cache), the others
        after it (reading what it cached)."""
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()


class ShardedSampler(torch.utils.data.Sampler):
    """One epoch's order drawn for the whole run, then dealt out to the processes like cards (this process
    takes every world-th index), so that step k of all processes together sees the batch step k of a single
    process would. With `weights`, rows are drawn with replacement in proportion to them (oversampling the
    rare attributes' positives); without, each row once, shuffled. set_epoch(e) before each epoch: the order
    depends only on the seed and the epoch, so a resumed run draws what an uninterrupted one would."""

    def __init__(self, count: int, processes: Processes, seed: int, weights: torch.Tensor | None = None):
        self.count, self.processes, self.seed, self.weights, self.epoch = count, processes, seed, weights, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.count / self.processes.world)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.count, generator=generator)
        else:
            order = torch.multinomial(self.weights, self.count, replacement=True, generator=generator)
        padded = len(self) * self.processes.world
        order = torch.cat([order, order[: padded - self.count]])  # every process gets as many
        return iter(order[self.processes.rank::self.processes.world].tolist())


def sync_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Every batch norm of `module` synchronised across processes. A timm model's fused batch norm + activation
    layers (BatchNormAct2d) need timm's own converter: PyTorch's turns them into plain SyncBatchNorm, whose
    forward skips the activation they hold. (timm is in sys.modules whenever a timm model was built.)"""
    if "timm" in sys.modules:
        from timm.layers import convert_sync_batchnorm

        return convert_sync_batchnorm(module)
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
