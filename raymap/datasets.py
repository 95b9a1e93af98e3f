"""Dataset builders: mesh folders -> cached arrays of spherical maps.

Layouts (``<root>/<class>/<split>/<mesh>``):

* ``modelnet10`` / ``modelnet40``: ``*.off``. The meshes are upright with +Z up (checked on
  ModelNet10: chairs and monitors are tallest along z), which is the grid's polar axis, so no
  reorientation is needed and the ``z`` protocol rotates about the real vertical axis.
* ``shrec11``: ``*.obj`` (MeshCNN's split, 16 train / 4 test per class); non-rigid shapes in
  arbitrary poses, used as they are.

With ``root=None``, ModelNet10 and SHREC'11 come from the archives in the shared data folder
(``$SHAPES_DATA_DIR``, default ``<repo>/../shared/data``), extracted once into
``<cache>/raw`` (``$SHAPES_CACHE_DIR``, default ``~/.cache/spherical-shapes``); each
archive goes to a temporary folder first and is renamed into place, so an interrupted
extraction never leaves a half folder behind. ModelNet40 needs ``root``.

Rotation protocols, applied to the mesh before ray casting: ``none``, ``z`` (uniform angle
about +Z) and ``so3`` (uniform on SO(3)). The rotation of copy ``c`` of mesh ``i`` is drawn
from ``default_rng([seed, i, c])``, so a resumed or repeated build gives the same arrays.

A build works in chunks over a process pool; each finished chunk is written to
``<cache>/maps/<key>.partial/`` at once, so an interrupted build resumes from the chunks it has.
The finished split is ``<cache>/maps/<key>/`` with ``maps.npy`` (N, 6, 2b, 2b) float32,
``labels.npy`` (N,) int64 and ``meta.json`` (names, class names, skipped meshes, settings).
Rows are mesh-major: the ``copies`` rows of a mesh are consecutive.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from raymap.errors import MeshError
from raymap.features import FEATURE_NAMES, FEATURES_VERSION
from raymap.grid import check_bandwidth
from raymap.mesh import load_mesh_file
from raymap.project import prepare, project

DATASETS: dict[str, str] = {"modelnet10": ".off", "modelnet40": ".off", "shrec11": ".obj"}
SPLITS = ("train", "test")
ROTATIONS = ("none", "z", "so3")
CHUNK_SIZE = 16
# Dataset meshes are trusted files: a cap far above any ModelNet mesh.
BUILD_MAX_FACES = 5_000_000


@dataclass
class SplitArrays:
    """One split as arrays; row ``i`` is a (possibly rotated) copy of mesh ``names[i]``."""

    maps: np.ndarray  # (N, 6, 2b, 2b) float32, channels in FEATURE_NAMES order
    labels: np.ndarray  # (N,) int64 indices into class_names
    names: list[str]  # (N,) file stems, e.g. 'chair_0890'
    class_names: list[str]  # sorted
    skipped: dict[str, str] = field(default_factory=dict)  # relative path -> MeshError reason


def default_data_dir() -> Path:
    """The shared archives: ``$SHAPES_DATA_DIR`` or ``<repo>/../shared/data``."""
    env = os.environ.get("SHAPES_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def default_cache_dir() -> Path:
    """``$SHAPES_CACHE_DIR`` or ``~/.cache/spherical-shapes``."""
    env = os.environ.get("SHAPES_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spherical-shapes"


def sample_rotation(protocol: str, seed: int, mesh_index: int, copy: int) -> np.ndarray | None:
    """The rotation of copy ``copy`` of mesh ``mesh_index``: None, about +Z, or uniform SO(3)."""
    if protocol == "none":
        return None
    rng = np.random.default_rng([seed, mesh_index, copy])
    if protocol == "z":
        angle = rng.uniform(0.0, 2.0 * np.pi)
        c, s = np.cos(angle), np.sin(angle)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    if protocol == "so3":
        return _uniform_rotation(rng)
    raise ValueError(f"rotation must be one of {ROTATIONS}, got {protocol!r}")


def _uniform_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform on SO(3): a normalized Gaussian quaternion (Shoemake 1992)."""
    quaternion = rng.standard_normal(4)
    w, x, y, z = quaternion / np.linalg.norm(quaternion)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


# ----------------------------------------------------------------------------- raw meshes


def dataset_root(dataset: str, root: Path | None = None, cache: Path | None = None) -> Path:
    """The folder with ``<class>/<split>/`` for ``dataset``, extracting archives if needed."""
    _check_choice("dataset", dataset, tuple(DATASETS))
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset root {root} is not a folder")
        return root
    raw = (cache or default_cache_dir()) / "raw"
    if dataset == "modelnet10":
        folder = default_data_dir() / "modelnet10"
        archives = sorted(folder.glob("*.tar.xz"))
        if not archives:
            raise FileNotFoundError(f"no ModelNet10 archives in {folder}")
        for archive in archives:
            class_name, split = archive.name.removesuffix(".tar.xz").rsplit("-", 1)
            _extract_once(archive, Path("ModelNet10") / class_name / split, raw)
        return raw / "ModelNet10"
    if dataset == "shrec11":
        archive = default_data_dir() / "shrec11" / "shrec11.tar.xz"
        if not archive.is_file():
            raise FileNotFoundError(f"no SHREC'11 archive at {archive}")
        _extract_once(archive, Path("shrec11"), raw)
        return raw / "shrec11"
    raise ValueError(f"{dataset} has no bundled archive: pass root=<folder with <class>/<split>>")


def _extract_once(archive: Path, member: Path, raw: Path) -> None:
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


# ----------------------------------------------------------------------------- the build


@dataclass(frozen=True)
class BuildSettings:
    """Everything that determines a split's arrays (with the mesh files); stored in meta.json."""

    dataset: str
    split: str
    bandwidth: int
    rotation: str
    copies: int
    seed: int
    limit_per_class: int | None
    features_version: str = FEATURES_VERSION
    feature_names: tuple[str, ...] = FEATURE_NAMES


@dataclass(frozen=True)
class _Job:
    chunk: int
    paths: tuple[str, ...]
    names: tuple[str, ...]  # relative to the dataset root, for the skipped list
    labels: tuple[int, ...]
    first_index: int
    bandwidth: int
    rotation: str
    copies: int
    seed: int
    out: str


def cache_key(
    dataset: str,
    split: str,
    bandwidth: int,
    rotation: str,
    copies: int,
    seed: int,
    limit_per_class: int | None = None,
    root: Path | None = None,
) -> str:
    """Folder name of a built split: every setting that changes its arrays."""
    key = f"{dataset}-{split}-b{bandwidth}-f{FEATURES_VERSION}-{rotation}-c{copies}-s{seed}"
    if limit_per_class is not None:
        key += f"-limit{limit_per_class}"
    if root is not None:
        digest = hashlib.sha1(str(Path(root).resolve()).encode()).hexdigest()[:8]
        key += f"-root{digest}"
    return key


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
) -> SplitArrays:
    """Build (or load from the cache) the spherical maps of one split; see the module doc.

    ``workers`` defaults to the number of cores; ``workers=1`` builds in this process.
    ``mmap=True`` memory-maps ``maps`` instead of reading it.
    """
    _check_choice("dataset", dataset, tuple(DATASETS))
    _check_choice("split", split, SPLITS)
    _check_choice("rotation", rotation, ROTATIONS)
    bandwidth = check_bandwidth(bandwidth)
    if copies < 1 or (rotation == "none" and copies != 1):
        raise ValueError(f"copies must be >= 1 (exactly 1 for rotation 'none'), got {copies}")
    if limit_per_class is not None and limit_per_class < 1:
        raise ValueError(f"limit_per_class must be >= 1, got {limit_per_class}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(dataset, split, bandwidth, rotation, copies, seed, limit_per_class, root)
    final = cache / "maps" / key
    if not (final / "meta.json").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        # One builder per key: a second process waits here, then finds the finished split.
        lock_path = final.with_name(final.name + ".lock")
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (final / "meta.json").is_file():
                mesh_root = dataset_root(dataset, root, cache)
                paths, labels, class_names = list_meshes(
                    mesh_root, split, DATASETS[dataset], limit_per_class
                )
                settings = BuildSettings(
                    dataset, split, bandwidth, rotation, copies, seed, limit_per_class
                )
                relative = [str(p.relative_to(mesh_root)) for p in paths]
                _build(final, settings, paths, relative, labels, class_names, workers, progress)
            # Safe: whoever takes any lock from now on finds meta.json and builds nothing.
            lock_path.unlink(missing_ok=True)
    return load_split(final, mmap=mmap)


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


def _build(
    final: Path,
    settings: BuildSettings,
    paths: list[Path],
    relative: list[str],
    labels: list[int],
    class_names: list[str],
    workers: int | None,
    progress: bool,
) -> None:
    partial = final.with_name(final.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    manifest = {"settings": _jsonable(settings), "files": relative, "chunk_size": CHUNK_SIZE}
    manifest_path = partial / "manifest.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()) != manifest:
        shutil.rmtree(partial)  # the files changed since the interrupted build: start over
        partial.mkdir(parents=True)
    _write_atomic(manifest_path, json.dumps(manifest).encode())

    jobs = [
        _Job(
            chunk=i // CHUNK_SIZE,
            paths=tuple(str(p) for p in paths[i : i + CHUNK_SIZE]),
            names=tuple(relative[i : i + CHUNK_SIZE]),
            labels=tuple(labels[i : i + CHUNK_SIZE]),
            first_index=i,
            bandwidth=settings.bandwidth,
            rotation=settings.rotation,
            copies=settings.copies,
            seed=settings.seed,
            out=str(partial / f"chunk-{i // CHUNK_SIZE:05d}.npz"),
        )
        for i in range(0, len(paths), CHUNK_SIZE)
    ]
    pending = [job for job in jobs if not Path(job.out).is_file()]
    done = len(paths) - sum(len(job.paths) for job in pending)
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(pending) or 1))
    bar = tqdm(
        total=len(paths),
        initial=done,
        unit="mesh",
        desc=final.name,
        disable=not progress,
        smoothing=0.05,
    )
    with bar:
        if n_workers == 1:
            for job in pending:
                bar.update(_run_job(job))
        else:
            # spawn, not fork: embree's thread pool does not survive a fork.
            context = multiprocessing.get_context("spawn")
            with context.Pool(n_workers) as pool:
                for n_done in pool.imap_unordered(_run_job, pending):
                    bar.update(n_done)
    _merge(final, partial, jobs, relative, class_names, settings)


def _run_job(job: _Job) -> int:
    """Maps of one chunk -> ``job.out`` (written atomically); returns the number of meshes."""
    maps: list[np.ndarray] = []
    labels: list[int] = []
    names: list[str] = []
    skipped: list[str] = []
    reasons: list[str] = []
    for offset, (path, label) in enumerate(zip(job.paths, job.labels, strict=True)):
        try:
            prepared = prepare(load_mesh_file(path, max_faces=BUILD_MAX_FACES))
        except MeshError as exc:
            skipped.append(job.names[offset])
            reasons.append(exc.reason)
            continue
        for copy in range(job.copies):
            rotation = sample_rotation(job.rotation, job.seed, job.first_index + offset, copy)
            maps.append(project(prepared, job.bandwidth, rotation))
            labels.append(label)
            names.append(Path(path).stem)
    n = 2 * job.bandwidth
    arrays = {
        "maps": np.stack(maps) if maps else np.zeros((0, len(FEATURE_NAMES), n, n), np.float32),
        "labels": np.asarray(labels, dtype=np.int64),
        "names": np.asarray(names, dtype=str),
        "skipped": np.asarray(skipped, dtype=str),
        "reasons": np.asarray(reasons, dtype=str),
    }
    tmp = job.out + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, job.out)
    return len(job.paths)


def _merge(
    final: Path,
    partial: Path,
    jobs: Sequence[_Job],
    relative: list[str],
    class_names: list[str],
    settings: BuildSettings,
) -> None:
    """Chunks -> maps.npy, labels.npy, meta.json; then rename ``partial`` to ``final``."""
    n_rows = 0
    for job in jobs:
        with np.load(job.out) as chunk:
            n_rows += len(chunk["labels"])
    if n_rows == 0:
        shutil.rmtree(partial)
        raise RuntimeError(f"every mesh of {final.name} was skipped; nothing to cache")
    n = 2 * settings.bandwidth
    maps_tmp = partial / "maps.tmp.npy"
    maps = np.lib.format.open_memmap(
        maps_tmp, mode="w+", dtype=np.float32, shape=(n_rows, len(FEATURE_NAMES), n, n)
    )
    labels: list[np.ndarray] = []
    names: list[str] = []
    skipped: dict[str, str] = {}
    row = 0
    for job in jobs:
        with np.load(job.out) as chunk:
            count = len(chunk["labels"])
            maps[row : row + count] = chunk["maps"]
            row += count
            labels.append(chunk["labels"])
            names += [str(name) for name in chunk["names"]]
            for name, reason in zip(chunk["skipped"], chunk["reasons"], strict=True):
                skipped[str(name)] = str(reason)
    maps.flush()
    del maps
    os.replace(maps_tmp, partial / "maps.npy")
    np.save(partial / "labels.npy", np.concatenate(labels).astype(np.int64))
    meta = {
        "settings": _jsonable(settings),
        "names": names,
        "class_names": class_names,
        "skipped": skipped,
        "n_meshes": len(relative),
    }
    for job in jobs:
        Path(job.out).unlink()
    (partial / "manifest.json").unlink()
    _write_atomic(partial / "meta.json", json.dumps(meta).encode())
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)


def _jsonable(settings: BuildSettings) -> dict[str, object]:
    """The settings as JSON would read them back (tuples become lists)."""
    return json.loads(json.dumps(asdict(settings)))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")


# ----------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m raymap.datasets", description="Build a cached split of spherical maps."
    )
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--split", required=True, choices=SPLITS)
    parser.add_argument("--bandwidth", type=int, default=32)
    parser.add_argument("--rotation", default="none", choices=ROTATIONS)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--limit-per-class", type=int, default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    split = build_split(
        args.dataset,
        args.split,
        args.bandwidth,
        args.rotation,
        copies=args.copies,
        seed=args.seed,
        root=args.root,
        cache_dir=args.cache_dir,
        workers=args.workers,
        limit_per_class=args.limit_per_class,
        mmap=True,
    )
    elapsed = time.perf_counter() - start
    key = cache_key(
        args.dataset,
        args.split,
        args.bandwidth,
        args.rotation,
        args.copies,
        args.seed,
        args.limit_per_class,
        args.root,
    )
    folder = (args.cache_dir or default_cache_dir()) / "maps" / key
    print(
        f"{key}: {split.maps.shape[0]} rows, {len(split.class_names)} classes, "
        f"{len(split.skipped)} skipped, {elapsed:.1f} s -> {folder}"
    )
    for name, reason in list(split.skipped.items())[:20]:
        print(f"  skipped {name}: {reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
