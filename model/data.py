"""Datasets for training: the cached spherical maps of ``raymap.datasets`` as tensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    root: str | None = None,
    stretch: float = 0.0,
) -> MapSet:
    """Build (or read from the cache) one split's spherical maps; see ``raymap.datasets``.

    ``dataset`` is a named layout or ``folder`` (then ``root`` is the folder); ``stretch``
    scales each copy along its own axes first (``raymap.datasets.stretch``).
    """
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
        root=None if root is None else Path(root),
        stretch=stretch,
    )
    return MapSet.from_arrays(arrays)


def dataset_of(train_config: dict[str, Any]) -> tuple[str, str | None]:
    """(dataset, root) a training run read: its ``data`` folder, else its named ``dataset``."""
    data = train_config.get("data")
    return ("folder", str(data)) if data else (str(train_config["dataset"]), None)


def batches(
    n: int, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False
) -> list[torch.Tensor]:
    """Index batches over ``n`` items, shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


def validation_mask(
    names: list[str], labels: torch.Tensor, fraction: float, seed: int
) -> np.ndarray:
    """Rows of held-out meshes: per class, ``round(fraction * meshes)`` meshes drawn with ``seed``
    (at least one, and never all, when ``fraction > 0``).

    Stratified and by mesh, so every rotated copy of a validation mesh is held out together;
    the draw depends only on the sorted mesh names of each class and ``seed``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    label_array = labels.numpy()
    held: set[str] = set()
    for label in np.unique(label_array):
        meshes = sorted({names[i] for i in np.flatnonzero(label_array == label)})
        count = min(len(meshes) - 1, max(1, round(fraction * len(meshes)))) if fraction else 0
        order = np.random.default_rng([seed, int(label)]).permutation(len(meshes))
        held.update(meshes[i] for i in order[:count])
    return np.array([name in held for name in names], dtype=bool)


def subset(data: MapSet, mask: np.ndarray) -> MapSet:
    index = torch.from_numpy(np.flatnonzero(mask))
    return MapSet(
        maps=data.maps[index],
        labels=data.labels[index],
        names=[data.names[i] for i in index.tolist()],
        class_names=data.class_names,
    )


def split_validation(data: MapSet, fraction: float, seed: int) -> tuple[MapSet, MapSet]:
    """(train, validation) of a training split; see ``validation_mask``."""
    mask = validation_mask(data.names, data.labels, fraction, seed)
    return subset(data, ~mask), subset(data, mask)
