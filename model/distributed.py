"""Training on several processes: ``torchrun --nproc-per-node=N -m model.train ...``.

One process per device (GPU) or per group of CPU cores. torchrun sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; :func:`setup` joins the group with NCCL on CUDA and gloo on the
CPU, and without torchrun returns the single-process context (no group, nothing changes).

What makes N processes train the model one process would:

* the global batch (``batch_size``) is the same for every N: each process takes every N-th
  index of it (:meth:`Distributed.shard`), so ``batch_size`` must be divisible by N, and
  DistributedDataParallel averages the gradients of the N equal shards = the gradient of
  the global batch's mean loss;
* batch norm normalizes with the statistics of the whole global batch: PyTorch's
  ``SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm` on the CPU (``SyncBatchNorm`` refuses
  CPU tensors); the running statistics are thus the same in every process and equal to a
  single process's up to floating-point summation order;
* every process seeds and shuffles alike; only dropout masks differ (each process draws its
  own shard's), so with dropout > 0 the runs agree in distribution, not bit for bit.

Checkpoints hold the bare network's weights (never the wrapper's) and are written by rank 0
only: a checkpoint does not depend on N, and a run resumes on any number of processes.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Distributed:
    """This process's place in the group (rank 0 of 1 without torchrun)."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.world_size:
            raise ValueError(
                f"batch_size {batch_size} is not divisible by the {self.world_size} processes"
            )

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This process's part of a global batch of indices."""
        return index[self.rank :: self.world_size]

    def prepare(self, model: nn.Module) -> nn.Module:
        """Global batch norm, then the DistributedDataParallel wrapper (when N > 1)."""
        if not self.active:
            return model
        if self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index])
        model = GlobalBatchNorm.convert(model)
        return nn.parallel.DistributedDataParallel(model)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over the processes (for the epoch's loss and accuracy)."""
        if not self.active:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()


def setup(device: torch.device) -> Distributed:
    """Join torchrun's process group (if any); ``device`` is the one asked for (cpu, cuda)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(0, 1, device)
    rank = int(os.environ["RANK"])
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return Distributed(rank, world_size, device)


def bare(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the network itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


class AllReduceSum(torch.autograd.Function):
    """Sum over the processes; its gradient is the sum of every process's gradient."""

    @staticmethod
    def forward(ctx: object, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        total = grad.clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm with the statistics of the whole global batch, on any backend (gloo too).

    In training, each process sums its shard's values and squares per channel; one
    differentiable all-reduce makes the global sums, so the gradient also flows through the
    other processes' statistics, as in ``SyncBatchNorm``. In eval mode (and outside a process
    group) it is plain batch norm. Same parameters and buffers as ``BatchNorm1d/2d``: the
    state dicts are interchangeable.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        # Sums in float64: E[x^2] - E[x]^2 in float32 loses the variance of channels whose
        # mean is large against their spread.
        x64 = x.double()
        count = torch.full((1,), x.numel() // channels, dtype=torch.float64, device=x.device)
        local = torch.cat([x64.sum(dims), (x64 * x64).sum(dims), count])  # (2C + 1,)
        total = AllReduceSum.apply(local)  # (2C + 1,) summed over the processes
        n = total[-1]
        mean64 = total[:channels] / n
        var = (total[channels : 2 * channels] / n - mean64 * mean64).clamp_min(0.0).to(x.dtype)
        mean = mean64.to(x.dtype)  # biased variance above, as batch norm normalizes with
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                assert self.running_var is not None and self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 0.1
                unbiased = var * n / (n - 1).clamp_min(1.0)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(unbiased.detach(), momentum)
        shape = (1, channels) + (1,) * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """``module`` with every BatchNorm1d/2d/3d replaced, sharing its parameters and buffers."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            converted = cls(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
            )
            # The same parameter and buffer tensors (as SyncBatchNorm's conversion does): an
            # optimizer made before the conversion still steps this module's weights.
            if module.affine:
                converted.weight = module.weight
                converted.bias = module.bias
            converted.running_mean = module.running_mean
            converted.running_var = module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
            converted.train(module.training)
            return converted
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module


__all__ = ["Distributed", "GlobalBatchNorm", "bare", "setup"]
