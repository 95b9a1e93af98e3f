"""Global batch norm over gloo processes equals batch norm over the whole batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from model.distributed import GlobalBatchNorm

WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reference(x: torch.Tensor, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """BatchNorm2d on the whole batch, float64: output, input and weight gradients, stats."""
    norm = nn.BatchNorm2d(x.shape[1]).double()
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, x.shape[1]))
    x = x.clone().requires_grad_(True)
    y = norm(x)
    (y * weight).sum().backward()
    assert x.grad is not None and norm.weight.grad is not None
    return {
        "y": y.detach(),
        "dx": x.grad,
        "dweight": norm.weight.grad,
        "running_mean": norm.running_mean,
        "running_var": norm.running_var,
    }


def worker(rank: int, port: int, x: torch.Tensor, weight: torch.Tensor, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    norm = GlobalBatchNorm.convert(nn.BatchNorm2d(x.shape[1]).double())
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, x.shape[1]))
    shard = x[rank::WORLD].clone().requires_grad_(True)
    y = norm(shard)
    (y * weight[rank::WORLD]).sum().backward()
    # The parameter gradient is per process; DDP would sum (then average) them: sum here.
    dweight = norm.weight.grad.clone()
    dist.all_reduce(dweight)
    torch.save(
        {
            "y": y.detach(),
            "dx": shard.grad,
            "dweight": dweight,
            "running_mean": norm.running_mean,
            "running_var": norm.running_var,
        },
        f"{out}/rank{rank}.pt",
    )
    dist.destroy_process_group()


def test_global_batch_norm_over_two_gloo_processes_equals_one_batch(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 5, 5, generator=generator, dtype=torch.float64) * 2 + 1
    weight = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    expected = reference(x, weight)
    mp.spawn(worker, args=(free_port(), x, weight, str(tmp_path)), nprocs=WORLD, join=True)
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    y = torch.empty_like(x)
    dx = torch.empty_like(x)
    for rank, part in enumerate(parts):
        y[rank::WORLD] = part["y"]
        dx[rank::WORLD] = part["dx"]
        for key in ("dweight", "running_mean", "running_var"):
            torch.testing.assert_close(part[key], expected[key], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(y, expected["y"], rtol=1e-10, atol=1e-12)
    # The gradient through the other process's statistics is there: without it dx differs.
    torch.testing.assert_close(dx, expected["dx"], rtol=1e-9, atol=1e-12)


def test_global_batch_norm_is_plain_batch_norm_outside_a_group() -> None:
    plain = nn.BatchNorm1d(4)
    original = nn.Sequential(nn.BatchNorm1d(4))
    weight = original[0].weight
    converted = GlobalBatchNorm.convert(original)[0]
    assert isinstance(converted, GlobalBatchNorm)
    assert set(converted.state_dict()) == set(plain.state_dict())
    assert converted.weight is weight  # an optimizer made before the conversion still works
    x = torch.randn(6, 4)
    torch.testing.assert_close(converted(x), plain(x))
    with pytest.raises(ValueError, match="2D"):
        converted(torch.randn(4))
