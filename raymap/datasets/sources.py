"""Where a split's mesh files come from: the shared archives, a named layout, or any folder.

Named layouts (``<root>/<class>/<split>/<mesh>``, splits ``train`` and ``test``):

* ``modelnet10`` / ``modelnet40``: ``*.off``. The meshes are upright with +Z up (checked on
  ModelNet10: chairs and monitors are tallest along z), which is the grid's polar axis, so no
  reorientation is needed and the ``z`` protocol rotates about the real vertical axis.
* ``shrec11``: ``*.obj`` (MeshCNN's split, 16 train / 4 test per class); non-rigid shapes in
  arbitrary poses, used as they are.

With no root, ModelNet10 and SHREC'11 come from the archives in the shared data folder
(``$SHAPES_DATA_DIR``, default ``<repo>/../shared/data``), extracted once into
``<cache>/raw``; each archive goes to a temporary folder first and is renamed into place, so
an interrupted extraction never leaves a half folder behind. ModelNet40 needs a root.

A **folder dataset** (``dataset="folder"``) is any folder of class folders, in one of two
layouts, told apart by whether any class folder holds a split folder:

* ``<root>/<class>/<split>/...`` with ``<split>`` one of ``train``, ``validation`` (or
  ``val``), ``test``: the split is the folder. Files directly in a class folder are reported.
* ``<root>/<class>/...``: each class's files are split into train / validation / test by a
  seeded, stratified draw (:class:`FolderSplit`); the assignment is written to a JSON record
  beside the cache so it can be read and reused.

Every file below a split (or class) folder counts, in any sub-folder, whatever its format;
hidden files (``.name``) are left out. A file that is no mesh of a format the service reads
fails in the build and is listed with its reason, like any unreadable mesh. Class names are
the sorted class folder names.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATASETS: dict[str, str] = {"modelnet10": ".off", "modelnet40": ".off", "shrec11": ".obj"}
FOLDER = "folder"
SPLITS = ("train", "test")  # of the named layouts
FOLDER_SPLITS = ("train", "validation", "test")
_SPLIT_FOLDERS = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
LOOSE_FILE = "not inside a train/validation/test folder of its class"


@dataclass(frozen=True)
class FolderSplit:
    """How a ``<root>/<class>/*`` folder is split: fractions of each class, and the seed."""

    validation: float = 0.15
    test: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        if not (
            0 <= self.validation < 1 and 0 <= self.test < 1 and self.validation + self.test < 1
        ):
            raise ValueError(
                "validation and test fractions must be in [0, 1) with a sum below 1, got "
                f"{self.validation} and {self.test}"
            )


@dataclass
class MeshList:
    """The files of one split: sorted by class then path, with labels into ``class_names``."""

    root: Path
    paths: list[Path]
    labels: list[int]
    class_names: list[str]
    skipped: dict[str, str] = field(default_factory=dict)  # relative path -> reason, unbuilt

    @property
    def relative(self) -> list[str]:
        return [p.relative_to(self.root).as_posix() for p in self.paths]

    def digest(self) -> str:
        """Names, sizes and modification times of the files: changes when the folder does."""
        h = hashlib.sha1()
        for path in self.paths:
            stat = path.stat()
            h.update(f"{path.relative_to(self.root).as_posix()}\0{stat.st_size}\0".encode())
            h.update(f"{stat.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]


def default_data_dir() -> Path:
    """The shared archives: ``$SHAPES_DATA_DIR`` or ``<repo>/../shared/data``."""
    env = os.environ.get("SHAPES_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[3] / "shared" / "data"


# ----------------------------------------------------------------------------- named layouts


def dataset_root(dataset: str, root: Path | None = None, cache: Path | None = None) -> Path:
    """The folder with ``<class>/<split>/`` for ``dataset``, extracting archives if needed."""
    check_choice("dataset", dataset, tuple(DATASETS))
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset root {root} is not a folder")
        return root
    if cache is None:
        from raymap.datasets.cache import default_cache_dir

        cache = default_cache_dir()
    raw = cache / "raw"
    if dataset == "modelnet10":
        folder = default_data_dir() / "modelnet10"
        archives = sorted(folder.glob("*.tar.xz"))
        if not archives:
            raise FileNotFoundError(f"no ModelNet10 archives in {folder}")
        for archive in archives:
            class_name, split = archive.name.removesuffix(".tar.xz").rsplit("-", 1)
            extract_once(archive, Path("ModelNet10") / class_name / split, raw)
        return raw / "ModelNet10"
    if dataset == "shrec11":
        archive = default_data_dir() / "shrec11" / "shrec11.tar.xz"
        if not archive.is_file():
            raise FileNotFoundError(f"no SHREC'11 archive at {archive}")
        extract_once(archive, Path("shrec11"), raw)
        return raw / "shrec11"
    raise ValueError(f"{dataset} has no bundled archive: pass root=<folder with <class>/<split>>")


def extract_once(archive: Path, member: Path, raw: Path) -> None:
    """Extract ``member`` (a folder inside ``archive``) to ``raw/member`` unless it is there."""
    target = raw / member
    if target.is_dir():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=raw, prefix=".extract-") as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        source = Path(tmp) / member
        if not source.is_dir():
            raise FileNotFoundError(f"{archive.name} has no folder {member}")
        try:
            source.rename(target)
        except OSError:
            if not target.is_dir():  # not a concurrent extraction that won the race
                raise


def list_meshes(
    root: Path, split: str, suffix: str, limit_per_class: int | None = None
) -> tuple[list[Path], list[int], list[str]]:
    """Mesh files of ``split`` sorted by class then name, their labels, and the class names."""
    class_names = sorted(p.name for p in root.iterdir() if (p / split).is_dir())
    if not class_names:
        raise FileNotFoundError(f"no <class>/{split}/ folders under {root}")
    paths: list[Path] = []
    labels: list[int] = []
    for label, class_name in enumerate(class_names):
        files = sorted((root / class_name / split).glob(f"*{suffix}"))
        if limit_per_class is not None:
            files = files[:limit_per_class]
        paths += files
        labels += [label] * len(files)
    return paths, labels, class_names


def named_split(
    dataset: str, split: str, root: Path | None, cache: Path, limit_per_class: int | None
) -> MeshList:
    check_choice("split", split, SPLITS)
    mesh_root = dataset_root(dataset, root, cache)
    paths, labels, class_names = list_meshes(mesh_root, split, DATASETS[dataset], limit_per_class)
    return MeshList(mesh_root, paths, labels, class_names)


# ----------------------------------------------------------------------------- folders


def folder_split(
    root: Path,
    split: str,
    how: FolderSplit,
    record: Path,
    limit_per_class: int | None = None,
) -> MeshList:
    """The files of ``split`` of a folder dataset (see the module doc).

    For a folder without split folders, the assignment of every file is written to ``record``
    (JSON) and read back from it while the folder's files stay the same.
    """
    check_choice("split", split, FOLDER_SPLITS)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} is not a folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    class_names = [p.name for p in class_dirs]
    if not class_names:
        raise FileNotFoundError(f"no class folders under {root} (expected <root>/<class>/...)")
    has_split_folders = any((d / name).is_dir() for d in class_dirs for name in _SPLIT_FOLDERS)
    paths: list[Path] = []
    labels: list[int] = []
    skipped: dict[str, str] = {}
    if has_split_folders:
        for label, class_dir in enumerate(class_dirs):
            files: list[Path] = []
            for entry in sorted(class_dir.iterdir()):
                if entry.name.startswith("."):
                    continue
                if entry.is_dir() and _SPLIT_FOLDERS.get(entry.name) == split:
                    files += files_below(entry)
                elif entry.is_file():
                    skipped[entry.relative_to(root).as_posix()] = LOOSE_FILE
            files = sorted(files)[:limit_per_class]
            paths += files
            labels += [label] * len(files)
    else:
        assignment = _flat_assignment(root, class_dirs, how, record)
        for label, class_dir in enumerate(class_dirs):
            files = [
                p
                for p in files_below(class_dir)
                if assignment[p.relative_to(root).as_posix()] == split
            ][:limit_per_class]
            paths += files
            labels += [label] * len(files)
    return MeshList(root, paths, labels, class_names, skipped)


def files_below(folder: Path) -> list[Path]:
    """Every non-hidden file below ``folder``, sorted; hidden folders are not entered."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if not f.startswith(".")]
    return sorted(found)


def _flat_assignment(
    root: Path, class_dirs: list[Path], how: FolderSplit, record: Path
) -> dict[str, str]:
    """relative path -> split, stratified by class; reused from ``record`` when it matches."""
    per_class = {
        d.name: [p.relative_to(root).as_posix() for p in files_below(d)] for d in class_dirs
    }
    settings = {"validation": how.validation, "test": how.test, "seed": how.seed}
    if record.is_file():
        saved = json.loads(record.read_text())
        files = sorted(f for names in per_class.values() for f in names)
        if saved.get("settings") == settings and sorted(saved.get("files", {})) == files:
            return dict(saved["files"])
    assignment: dict[str, str] = {}
    for class_name, names in per_class.items():
        # One generator per class (seeded by its name), so adding a class moves no other file.
        rng = np.random.default_rng([how.seed, zlib.crc32(class_name.encode())])
        order = rng.permutation(len(names))
        n_test = round(how.test * len(names))
        n_validation = round(how.validation * len(names))
        for rank, index in enumerate(order):
            split = (
                "test"
                if rank < n_test
                else "validation"
                if rank < n_test + n_validation
                else "train"
            )
            assignment[names[index]] = split
    record.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"root": str(root), "settings": settings, "files": assignment}, indent=1)
    tmp = record.with_name(record.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, record)
    return assignment


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")
