"""The cache of built splits, keyed by one settings object.

:class:`BuildSettings` is everything that determines a split's arrays; its ``key()`` names
the folder ``<cache>/maps/<key>/`` holding ``maps.npy`` (N, 6, 2b, 2b) float32,
``labels.npy`` (N,) int64 and ``meta.json`` (the settings, names, class names, skipped meshes
with their reasons, and a digest of the listed files). Rows are mesh-major: the ``copies``
rows of a mesh are consecutive. One builder per key at a time (a file lock); a split whose
folder changed since it was built (files added, removed or modified) is built again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from raymap.datasets.rotations import ROTATIONS
from raymap.datasets.sources import (
    DATASETS,
    FOLDER,
    FOLDER_SPLITS,
    SPLITS,
    FolderSplit,
    MeshList,
    check_choice,
    folder_split,
    named_split,
)
from raymap.datasets.stretch import check_stretch
from raymap.features import FEATURE_NAMES, FEATURES_VERSION
from raymap.grid import check_bandwidth


def default_cache_dir() -> Path:
    """``$SHAPES_CACHE_DIR`` or ``~/.cache/spherical-shapes``."""
    env = os.environ.get("SHAPES_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spherical-shapes"


@dataclass(frozen=True)
class BuildSettings:
    """Everything that determines a split's arrays (with the mesh files); the cache key.

    ``dataset`` is a named layout (``modelnet10``, ``modelnet40``, ``shrec11``) or
    ``folder`` (any folder of class folders: ``root`` is required). ``root`` is stored
    resolved; ``folder_split`` matters only for a folder without split folders.
    """

    dataset: str
    split: str
    bandwidth: int = 32
    rotation: str = "none"
    copies: int = 1
    seed: int = 0
    limit_per_class: int | None = None
    root: str | None = None
    folder_split: FolderSplit = field(default_factory=FolderSplit)
    features_version: str = FEATURES_VERSION
    feature_names: tuple[str, ...] = FEATURE_NAMES
    # Anisotropic scaling of each copy before its rotation (raymap.datasets.stretch); 0 = none.
    stretch: float = 0.0

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, (*DATASETS, FOLDER))
        check_choice("split", self.split, FOLDER_SPLITS if self.dataset == FOLDER else SPLITS)
        check_choice("rotation", self.rotation, ROTATIONS)
        check_bandwidth(self.bandwidth)
        check_stretch(self.stretch)
        if self.copies < 1 or (self.rotation == "none" and self.copies != 1):
            raise ValueError(
                f"copies must be >= 1 (exactly 1 for rotation 'none'), got {self.copies}"
            )
        if self.limit_per_class is not None and self.limit_per_class < 1:
            raise ValueError(f"limit_per_class must be >= 1, got {self.limit_per_class}")
        if self.root is None and self.dataset in (FOLDER, "modelnet40"):
            raise ValueError(f"dataset {self.dataset!r} needs a root folder")
        if self.root is not None:
            object.__setattr__(self, "root", str(Path(self.root).expanduser().resolve()))

    def key(self) -> str:
        """Folder name of the built split: every setting that changes its arrays."""
        prefix = self.dataset
        if self.dataset == FOLDER:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(self.root)).name) or "root"
            prefix = f"{FOLDER}-{name}"
        key = (
            f"{prefix}-{self.split}-b{self.bandwidth}-f{self.features_version}-"
            f"{self.rotation}-c{self.copies}-s{self.seed}"
        )
        if self.stretch:
            key += f"-stretch{self.stretch:g}"
        if self.limit_per_class is not None:
            key += f"-limit{self.limit_per_class}"
        if self.root is not None:
            key += f"-root{self.root_digest()}"
        return key

    def root_digest(self) -> str:
        """8 hex digits of the root (and, for a folder, of how it is split)."""
        text = str(self.root)
        if self.dataset == FOLDER:
            text += json.dumps(asdict(self.folder_split), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:8]

    def to_json(self) -> dict[str, object]:
        """The settings as JSON reads them back (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


@dataclass
class SplitArrays:
    """One split as arrays; row ``i`` is a (possibly rotated) copy of mesh ``names[i]``."""

    maps: np.ndarray  # (N, 6, 2b, 2b) float32, channels in FEATURE_NAMES order
    labels: np.ndarray  # (N,) int64 indices into class_names
    names: list[str]  # (N,) file stems, e.g. 'chair_0890'
    class_names: list[str]  # sorted
    skipped: dict[str, str] = field(default_factory=dict)  # relative path -> reason


def split_record(settings: BuildSettings, cache: Path) -> Path:
    """Where a folder's train/validation/test assignment is recorded, beside the maps."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(settings.root)).name) or "root"
    return cache / "splits" / f"{name}-{settings.root_digest()}.json"


def list_split(settings: BuildSettings, cache: Path) -> MeshList:
    """The mesh files of the split the settings describe."""
    if settings.dataset == FOLDER:
        return folder_split(
            Path(str(settings.root)),
            settings.split,
            settings.folder_split,
            split_record(settings, cache),
            settings.limit_per_class,
        )
    root = Path(settings.root) if settings.root is not None else None
    return named_split(settings.dataset, settings.split, root, cache, settings.limit_per_class)


def load_or_build(
    settings: BuildSettings,
    cache_dir: Path | None = None,
    workers: int | None = None,
    progress: bool = True,
    mmap: bool = False,
) -> SplitArrays:
    """The split's arrays from the cache, built first if missing or stale.

    ``workers`` defaults to the number of cores; ``workers=1`` builds in this process.
    ``mmap=True`` memory-maps ``maps`` instead of reading it.
    """
    from raymap.datasets.build import build_chunks

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / "maps" / settings.key()
    if not _fresh(final, settings, cache):
        final.parent.mkdir(parents=True, exist_ok=True)
        # One builder per key: a second process waits here, then finds the finished split.
        lock_path = final.with_name(final.name + ".lock")
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _fresh(final, settings, cache):
                build_chunks(final, settings, list_split(settings, cache), workers, progress)
            # Safe: whoever takes any lock from now on finds a fresh split and builds nothing.
            lock_path.unlink(missing_ok=True)
    return load_split(final, mmap=mmap)


def _fresh(final: Path, settings: BuildSettings, cache: Path) -> bool:
    """Built, and (for a split read from a given folder) from the files there now."""
    meta_path = final / "meta.json"
    if not meta_path.is_file():
        return False
    if settings.root is None:  # the shared archives: fixed files
        return True
    listing = json.loads(meta_path.read_text()).get("listing")
    return listing == list_split(settings, cache).digest()


def load_split(folder: Path, mmap: bool = False) -> SplitArrays:
    """A finished split folder -> :class:`SplitArrays`."""
    meta = json.loads((folder / "meta.json").read_text())
    return SplitArrays(
        maps=np.load(folder / "maps.npy", mmap_mode="r" if mmap else None),
        labels=np.load(folder / "labels.npy"),
        names=meta["names"],
        class_names=meta["class_names"],
        skipped=meta["skipped"],
    )
