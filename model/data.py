"""Datasets for training: the cached spherical maps of ``raymap.datasets`` as tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from raymap.datasets import SplitArrays, build_split


@dataclass
class MapSet:
    """One split in memory: maps (N, C, 2b, 2b) float32, labels (N,), names, class names."""

    maps: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    class_names: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def from_arrays(cls, arrays: SplitArrays) -> MapSet:
        return cls(
            maps=torch.from_numpy(np.ascontiguousarray(arrays.maps, dtype=np.float32)),
            labels=torch.from_numpy(np.asarray(arrays.labels, dtype=np.int64)),
            names=list(arrays.names),
            class_names=list(arrays.class_names),
        )


def load_maps(
    dataset: str,
    split: str,
    bandwidth: int,
    rotation: str,
    copies: int = 1,
    seed: int = 0,
    limit_per_class: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> MapSet:
    """Build (or read from the cache) one split's spherical maps; see ``raymap.datasets``."""
    arrays = build_split(
        dataset,
        split,
        bandwidth,
        rotation,
        copies=copies,
        seed=seed,
        limit_per_class=limit_per_class,
        workers=workers,
        progress=progress,
    )
    return MapSet.from_arrays(arrays)


def batches(
    n: int, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False
) -> list[torch.Tensor]:
    """Index batches over ``n`` items, shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]
