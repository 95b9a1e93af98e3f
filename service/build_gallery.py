"""Build the default gallery: descriptors of every ModelNet10 shape from the shipped model.

    python -m service.build_gallery --model models/model.onnx --out models/gallery.npz

The maps come from :func:`raymap.datasets.build_split` (upright meshes, no rotation, at the
model's bandwidth; cached, so a second run only runs the model), the descriptors from
onnxruntime in batches (no torch), each item's picture from :mod:`raymap.thumbnail` (the
upright mesh, normalized, ray cast and shaded; WebP, about 0.5 KB), the file from
:mod:`service.gallery.shipped`. ``--no-thumbnails`` leaves the pictures out.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from raymap.datasets import DATASETS, FOLDER, FOLDER_SPLITS, SPLITS, build_split
from raymap.thumbnail import thumbnails_of_files
from service.gallery.shipped import write_base_gallery


def build_gallery(
    model: Path,
    out: Path,
    dataset: str = "modelnet10",
    splits: Sequence[str] = SPLITS,
    root: Path | None = None,
    cache_dir: Path | None = None,
    workers: int | None = None,
    limit_per_class: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
    thumbnails: bool = True,
) -> int:
    """Write the gallery to ``out`` (atomically); returns the number of items."""
    from service.runtime import Runtime

    runtime = Runtime(model, warmup=False)  # refuses a model made for other maps
    info = runtime.info  # the model's contract, read from its metadata
    ids: list[str] = []
    labels: list[str] = []
    descriptors: list[np.ndarray] = []
    for split in splits:
        if dataset == FOLDER and not _has_files(root, split):
            continue  # a folder with split folders may lack one (say, validation)
        arrays = build_split(
            dataset,
            split,
            info.bandwidth,
            "none",
            root=root,
            cache_dir=cache_dir,
            workers=workers,
            limit_per_class=limit_per_class,
            progress=progress,
            mmap=True,
        )
        n = len(arrays.names)
        for start in tqdm(
            range(0, n, batch_size), desc=f"descriptors {split}", disable=not progress
        ):
            maps = np.ascontiguousarray(arrays.maps[start : start + batch_size], np.float32)
            batch_descriptors = runtime.run(maps).descriptor  # (B, D)
            descriptors.append(np.asarray(batch_descriptors, np.float32))
        ids += list(arrays.names)
        labels += [arrays.class_names[int(i)] for i in arrays.labels]
        if arrays.skipped:
            print(f"{split}: skipped {len(arrays.skipped)} unreadable meshes", file=sys.stderr)
    if len(set(ids)) != len(ids):
        raise SystemExit("file stems are not unique across the splits; they cannot be ids")
    matrix = np.concatenate(descriptors) if descriptors else np.zeros((0, info.descriptor_size))
    pictures = None
    if thumbnails:
        files = _mesh_files(dataset, splits, root, cache_dir, limit_per_class)
        pictures = thumbnails_of_files(
            [files[item_id] for item_id in ids], workers=workers or 1, progress=progress
        )
        sizes = [len(p) for p in pictures if p is not None]
        print(
            f"thumbnails: {len(sizes)} of {len(ids)}, {sum(sizes)} bytes "
            f"({sum(sizes) / max(len(sizes), 1):.0f} per item)",
            file=sys.stderr,
        )
    write_base_gallery(
        out,
        ids,
        labels,
        matrix,
        (info.name, info.version),
        dataset,
        thumbnails=pictures,
        space=info.space,
    )
    return len(ids)


def _mesh_files(
    dataset: str,
    splits: Sequence[str],
    root: Path | None,
    cache_dir: Path | None,
    limit_per_class: int | None,
) -> dict[str, Path]:
    """Each mesh file by its stem (the gallery id), for rendering the items' pictures."""
    from raymap.datasets import default_cache_dir
    from raymap.datasets.sources import files_below, named_split

    if dataset == FOLDER:
        assert root is not None
        return {path.stem: path for path in files_below(Path(root))}
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return {
        path.stem: path
        for split in splits
        for path in named_split(dataset, split, root, cache, limit_per_class).paths
    }


def _has_files(root: Path | None, split: str) -> bool:
    """Whether a folder dataset's ``split`` lists any file (for a folder, every split is asked)."""
    from raymap.datasets.sources import FolderSplit, folder_split

    assert root is not None
    with tempfile.TemporaryDirectory() as tmp:
        return bool(folder_split(root, split, FolderSplit(), Path(tmp) / "split.json").paths)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.build_gallery", description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/model.onnx"))
    parser.add_argument("--out", type=Path, default=Path("models/gallery.npz"))
    parser.add_argument("--dataset", default="modelnet10", choices=sorted(DATASETS))
    parser.add_argument(
        "--data", type=Path, default=None, help="a folder dataset instead: DIR/<class>/[<split>/]*"
    )
    parser.add_argument("--splits", nargs="+", default=None, choices=FOLDER_SPLITS)
    parser.add_argument("--root", type=Path, default=None, help="<class>/<split>/ mesh folders")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--limit-per-class", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--no-thumbnails", action="store_true", help="leave the items' pictures out"
    )
    args = parser.parse_args(argv)
    folder = args.data is not None
    start = time.perf_counter()
    n = build_gallery(
        args.model,
        args.out,
        dataset=FOLDER if folder else args.dataset,
        splits=args.splits or list(FOLDER_SPLITS if folder else SPLITS),
        root=args.data if folder else args.root,
        cache_dir=args.cache_dir,
        workers=args.workers,
        limit_per_class=args.limit_per_class,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        thumbnails=not args.no_thumbnails,
    )
    print(f"{args.out}: {n} items in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
