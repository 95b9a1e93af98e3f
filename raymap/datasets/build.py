"""The resumable, parallel build of one split: mesh files -> chunks -> the cached arrays.

The files are cut into chunks of :data:`CHUNK_SIZE` meshes run over a process pool; each
finished chunk is written to ``<cache>/maps/<key>.partial/`` at once, so an interrupted build
resumes from the chunks it has (the manifest there must match: same settings, same files).
A mesh that cannot be read or cast is skipped and listed with its reason; it never stops the
build. The merge writes ``maps.npy``, ``labels.npy`` and ``meta.json`` (see
:mod:`raymap.datasets.cache`) and renames the partial folder into place.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from raymap.datasets.cache import BuildSettings
from raymap.datasets.rotations import sample_rotation
from raymap.datasets.sources import MeshList
from raymap.datasets.stretch import sample_stretch, stretched
from raymap.errors import MeshError
from raymap.features import FEATURE_NAMES
from raymap.mesh import Triangles, load_mesh_file
from raymap.project import prepare, project

CHUNK_SIZE = 16
# Dataset meshes are trusted files: a cap far above any ModelNet mesh.
BUILD_MAX_FACES = 5_000_000


@dataclass(frozen=True)
class Job:
    """One chunk: its files, their labels and index of the first, and where it goes."""

    chunk: int
    paths: tuple[str, ...]
    names: tuple[str, ...]  # relative to the dataset root, for the skipped list
    labels: tuple[int, ...]
    first_index: int
    settings: BuildSettings
    out: str


def build_chunks(
    final: Path, settings: BuildSettings, listing: MeshList, workers: int | None, progress: bool
) -> None:
    """Build the split of ``listing`` into ``final`` (resuming a partial build of it)."""
    if not listing.paths:
        raise FileNotFoundError(f"no files for {final.name} under {listing.root}")
    relative = listing.relative
    digest = listing.digest()
    partial = final.with_name(final.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    manifest = {
        "settings": settings.to_json(),
        "files": relative,
        "listing": digest,
        "chunk_size": CHUNK_SIZE,
    }
    manifest_path = partial / "manifest.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()) != manifest:
        shutil.rmtree(partial)  # the files changed since the interrupted build: start over
        partial.mkdir(parents=True)
    _write_atomic(manifest_path, json.dumps(manifest).encode())

    jobs = [
        Job(
            chunk=i // CHUNK_SIZE,
            paths=tuple(str(p) for p in listing.paths[i : i + CHUNK_SIZE]),
            names=tuple(relative[i : i + CHUNK_SIZE]),
            labels=tuple(listing.labels[i : i + CHUNK_SIZE]),
            first_index=i,
            settings=settings,
            out=str(partial / f"chunk-{i // CHUNK_SIZE:05d}.npz"),
        )
        for i in range(0, len(listing.paths), CHUNK_SIZE)
    ]
    pending = [job for job in jobs if not Path(job.out).is_file()]
    done = len(listing.paths) - sum(len(job.paths) for job in pending)
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(pending) or 1))
    bar = tqdm(
        total=len(listing.paths),
        initial=done,
        unit="mesh",
        desc=final.name,
        disable=not progress,
        smoothing=0.05,
    )
    with bar:
        if n_workers == 1:
            for job in pending:
                bar.update(run_job(job))
        else:
            # spawn, not fork: embree's thread pool does not survive a fork.
            context = multiprocessing.get_context("spawn")
            with _one_blas_thread_per_worker(), context.Pool(n_workers) as pool:
                for n_done in pool.imap_unordered(run_job, pending):
                    bar.update(n_done)
    _merge(final, partial, jobs, listing, digest)


_BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def _one_blas_thread_per_worker() -> Iterator[None]:
    """Workers spawned inside start with one BLAS thread (unless the caller chose a number):
    the workers are the parallelism, and a BLAS pool per worker (a small hull's planes are a
    matrix product) oversubscribes the cores."""
    before = {name: os.environ.get(name) for name in _BLAS_THREADS}
    for name in _BLAS_THREADS:
        os.environ.setdefault(name, "1")
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def copy_maps(mesh: Triangles, settings: BuildSettings, mesh_index: int) -> list[np.ndarray]:
    """The ``settings.copies`` maps of one mesh. Rotated copies share one prepared mesh (the
    rays turn, not the mesh); a stretched copy is a new mesh, normalized and prepared again."""
    shared = None if settings.stretch else prepare(mesh)
    maps = []
    for copy in range(settings.copies):
        rotation = sample_rotation(settings.rotation, settings.seed, mesh_index, copy)
        if shared is not None:
            prepared = shared
        else:
            factors = sample_stretch(settings.stretch, settings.seed, mesh_index, copy)
            prepared = prepare(stretched(mesh, factors))
        maps.append(project(prepared, settings.bandwidth, rotation))
    return maps


def run_job(job: Job) -> int:
    """Maps of one chunk -> ``job.out`` (written atomically); returns the number of meshes."""
    settings = job.settings
    maps: list[np.ndarray] = []
    labels: list[int] = []
    names: list[str] = []
    skipped: list[str] = []
    reasons: list[str] = []
    for offset, (path, label) in enumerate(zip(job.paths, job.labels, strict=True)):
        try:
            copies = copy_maps(
                load_mesh_file(path, max_faces=BUILD_MAX_FACES), settings, job.first_index + offset
            )
        except MeshError as exc:
            skipped.append(job.names[offset])
            reasons.append(exc.reason)
            continue
        except Exception as exc:  # a user's folder: one odd file must not stop the build
            skipped.append(job.names[offset])
            reasons.append(f"{type(exc).__name__}: {exc}"[:300])
            continue
        maps += copies
        labels += [label] * len(copies)
        names += [Path(path).stem] * len(copies)
    n = 2 * settings.bandwidth
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


def _merge(final: Path, partial: Path, jobs: Sequence[Job], listing: MeshList, digest: str) -> None:
    """Chunks -> maps.npy, labels.npy, meta.json; then rename ``partial`` to ``final``."""
    settings = jobs[0].settings
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
    skipped: dict[str, str] = dict(listing.skipped)
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
        "settings": settings.to_json(),
        "names": names,
        "class_names": listing.class_names,
        "skipped": skipped,
        "n_meshes": len(listing.paths),
        "listing": digest,
    }
    for job in jobs:
        Path(job.out).unlink()
    (partial / "manifest.json").unlink()
    _write_atomic(partial / "meta.json", json.dumps(meta).encode())
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
