"""One optimization step of training, and the weight average it feeds: torch and the network only.

``model.train`` runs these over its epochs; ``bench/train_speed.py`` times the same step on any
device (with no dataset: it needs neither the mesh stack nor the cached maps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel

AVERAGES = ("none", "ema", "swa")


def ema_with_warmup(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor | int], None]:
    """EMA whose decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates, so that the
    average does not carry the initial weights for thousands of steps (a short run's EMA
    would otherwise be mostly the random initialization)."""

    def update(averaged: list[Tensor], current: list[Tensor], n: Tensor | int) -> None:
        steps = float(n)
        weight = 1.0 - min(decay, (1.0 + steps) / (10.0 + steps))
        floating = [(a, c) for a, c in zip(averaged, current, strict=True) if a.is_floating_point()]
        if floating:
            torch._foreach_lerp_([a for a, _ in floating], [c for _, c in floating], weight)
        for a, c in zip(averaged, current, strict=True):
            if not a.is_floating_point():
                a.copy_(c)  # counters such as num_batches_tracked

    return update


def make_average(model: nn.Module, kind: str, ema_decay: float) -> AveragedModel | None:
    """The weight average (parameters and batch-norm statistics alike) of ``kind``, or None."""
    if kind == "none":
        return None
    if kind == "ema":
        return AveragedModel(model, multi_avg_fn=ema_with_warmup(ema_decay), use_buffers=True)
    if kind == "swa":
        return AveragedModel(model, use_buffers=True)
    raise ValueError(f"average must be one of {', '.join(AVERAGES)}, got {kind!r}")


def training_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    maps: Tensor,
    labels: Tensor,
    *,
    label_smoothing: float,
    branch_loss: float = 0.0,
    autocast: bool = False,
    frozen: Sequence[nn.Parameter] = (),
) -> tuple[Tensor, Tensor]:
    """Forward (bfloat16 autocast when ``autocast``), loss, backward, optimizer step.

    ``net`` is the network, or its wrapper for several processes; ``frozen`` parameters keep
    their values (fine-tuning's first epochs). Returns (loss, logits), both still on the
    device: the caller reads them when it needs to (reading forces a device sync).
    """
    with torch.autocast(maps.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits, _, *branch_outputs = net(maps)
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    if branch_outputs:  # a network with branch heads, in training
        branch_logits = branch_outputs[0].float()  # (branches, B, K)
        loss = loss + branch_loss * F.cross_entropy(
            branch_logits.flatten(0, 1), labels.repeat(len(branch_logits)),
            label_smoothing=label_smoothing,
        )  # fmt: skip
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for parameter in frozen:  # only the new head learns (the same in every process)
        parameter.grad = None
    optimizer.step()
    return loss, logits
