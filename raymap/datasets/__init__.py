"""Dataset builds: mesh folders -> cached arrays of spherical maps, one module per job.

* :mod:`~raymap.datasets.sources`: where the files come from (the shared archives, the named
  layouts ``modelnet10``/``modelnet40``/``shrec11``, any folder of class folders);
* :mod:`~raymap.datasets.rotations`: the ``none``/``z``/``so3`` protocols;
* :mod:`~raymap.datasets.stretch`: anisotropic scaling of each copy (training augmentation);
* :mod:`~raymap.datasets.cache`: :class:`BuildSettings`, the one settings object that is the
  cache key, and loading a built split;
* :mod:`~raymap.datasets.build`: the resumable, parallel build with a progress bar;
* ``python -m raymap.datasets``: the command line.
"""

from __future__ import annotations

from pathlib import Path

from raymap.datasets.cache import (
    BuildSettings,
    SplitArrays,
    default_cache_dir,
    load_or_build,
    load_split,
)
from raymap.datasets.rotations import ROTATIONS, sample_rotation
from raymap.datasets.sources import (
    DATASETS,
    FOLDER,
    FOLDER_SPLITS,
    SPLITS,
    FolderSplit,
    dataset_root,
    default_data_dir,
    list_meshes,
)

__all__ = [
    "DATASETS",
    "FOLDER",
    "FOLDER_SPLITS",
    "ROTATIONS",
    "SPLITS",
    "BuildSettings",
    "FolderSplit",
    "SplitArrays",
    "build_split",
    "dataset_root",
    "default_cache_dir",
    "default_data_dir",
    "list_meshes",
    "load_or_build",
    "load_split",
    "sample_rotation",
]


def build_split(
    dataset: str,
    split: str,
    bandwidth: int,
    rotation: str,
    copies: int = 1,
    seed: int = 0,
    root: Path | None = None,
    cache_dir: Path | None = None,
    workers: int | None = None,
    limit_per_class: int | None = None,
    progress: bool = True,
    mmap: bool = False,
    folder_split: FolderSplit | None = None,
    stretch: float = 0.0,
) -> SplitArrays:
    """:func:`load_or_build` of the :class:`BuildSettings` these arguments make."""
    settings = BuildSettings(
        dataset,
        split,
        bandwidth,
        rotation,
        copies,
        seed,
        limit_per_class,
        None if root is None else str(root),
        folder_split or FolderSplit(),
        stretch=stretch,
    )
    return load_or_build(settings, cache_dir, workers, progress, mmap)
