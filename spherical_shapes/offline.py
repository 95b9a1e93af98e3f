"""Offline inference on the service's runtime: files in, one row per file out; no server.

Torch-free: the maps come from :meth:`service.runtime.Runtime.mesh_to_map` and the
predictions from :meth:`~service.runtime.Runtime.run`, the two calls the service's pipeline
makes for ``/classify``, so a file gets the label the service gives it. Files are read and
ray cast by a pool of threads (as the service's cast pool does), their maps run through the
model in batches, and the rows come back in the order of the files. A file that cannot be
read or cast becomes a row with its error; it never stops the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raymap.errors import MeshError
from raymap.mesh import file_type_of
from service.runtime import Runtime


@dataclass
class Row:
    """The result for one file: a prediction or the error that prevented it."""

    file: str
    label: str | None = None
    probabilities: np.ndarray | None = None  # (K,) float32
    descriptor: np.ndarray | None = None  # (D,) float32, unit length
    error: str | None = None

    @property
    def probability(self) -> float | None:
        return None if self.probabilities is None else float(self.probabilities.max())


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; a folder stands for every non-hidden file below it, sorted."""
    from raymap.datasets.sources import files_below

    out: list[Path] = []
    for path in map(Path, paths):
        out += files_below(path) if path.is_dir() else [path]
    return out


def mesh_map(runtime: Runtime, path: Path, max_faces: int) -> np.ndarray | str:
    """The file's map on the model's grid, or why there is none."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or exc}"
    try:
        spherical_map, _ = runtime.mesh_to_map(data, file_type_of(path.name), max_faces)
    except MeshError as exc:
        return exc.reason
    except Exception as exc:  # one odd file must not end a run over thousands
        return f"{type(exc).__name__}: {exc}"
    return spherical_map


def predict_files(
    runtime: Runtime,
    paths: Sequence[Path],
    max_faces: int,
    workers: int | None = None,
    batch_size: int = 32,
) -> Iterator[Row]:
    """One :class:`Row` per path, in order; casting in ``workers`` threads, inference batched."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_workers = workers or len(os.sched_getaffinity(0))
    class_names = runtime.info.class_names
    with ThreadPoolExecutor(n_workers, thread_name_prefix="cast") as pool:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            results = list(pool.map(lambda p: mesh_map(runtime, p, max_faces), chunk))
            maps = [r for r in results if isinstance(r, np.ndarray)]
            if maps:
                probabilities, descriptors, _ = runtime.run(np.stack(maps))  # (B, K), (B, D)
            done = 0
            for path, result in zip(chunk, results, strict=True):
                if isinstance(result, str):
                    yield Row(str(path), error=result)
                    continue
                p = probabilities[done]
                yield Row(str(path), class_names[int(np.argmax(p))], p, descriptors[done])
                done += 1
