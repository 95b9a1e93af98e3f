"""Build cached splits of spherical maps from the command line.

python -m raymap.datasets --dataset modelnet10 --split train --bandwidth 32 --rotation so3
python -m raymap.datasets --data path/to/folder --bandwidth 16     # every split of a folder
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from raymap.datasets.cache import BuildSettings, default_cache_dir, load_or_build
from raymap.datasets.rotations import ROTATIONS
from raymap.datasets.sources import DATASETS, FOLDER, FOLDER_SPLITS, FolderSplit

SHOWN_SKIPPED = 20


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m raymap.datasets",
        description="Build (or find in the cache) splits of spherical maps; resumable.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=sorted(DATASETS), help="a named layout")
    source.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="a folder dataset: DIR/<class>/<split>/* or DIR/<class>/* (split by a seeded draw)",
    )
    p.add_argument(
        "--split",
        nargs="+",
        choices=FOLDER_SPLITS,
        default=None,
        help="default: train and test (named layouts) or all three (folders)",
    )
    p.add_argument("--bandwidth", type=int, default=32)
    p.add_argument("--rotation", default="none", choices=ROTATIONS)
    p.add_argument("--copies", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="seed of the rotations")
    p.add_argument(
        "--stretch",
        type=float,
        default=0.0,
        help="stretch each copy along its own axes by factors in [1/(1+S), 1+S] (default: 0)",
    )
    p.add_argument("--root", type=Path, default=None, help="the named layout's folder")
    p.add_argument("--validation-fraction", type=float, default=FolderSplit.validation)
    p.add_argument("--test-fraction", type=float, default=FolderSplit.test)
    p.add_argument("--split-seed", type=int, default=FolderSplit.seed)
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    p.add_argument("--limit-per-class", type=optional_int, default=None, help="an integer or none")
    p.add_argument("--no-progress", action="store_true")
    return p


def optional_int(text: str) -> int | None:
    return None if text.lower() in ("none", "null", "") else int(text)


def settings_from_args(args: argparse.Namespace, split: str) -> BuildSettings:
    """The one place the command line's options become build settings."""
    root = args.data if args.data is not None else args.root
    return BuildSettings(
        dataset=FOLDER if args.data is not None else args.dataset,
        split=split,
        bandwidth=args.bandwidth,
        rotation=args.rotation,
        copies=args.copies,
        seed=args.seed,
        stretch=args.stretch,
        limit_per_class=args.limit_per_class,
        root=None if root is None else str(root),
        folder_split=FolderSplit(args.validation_fraction, args.test_fraction, args.split_seed),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    splits = args.split or (list(FOLDER_SPLITS) if args.data is not None else ["train", "test"])
    cache = args.cache_dir or default_cache_dir()
    for split in splits:
        try:
            settings = settings_from_args(args, split)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        start = time.perf_counter()
        try:
            arrays = load_or_build(
                settings, cache, args.workers, progress=not args.no_progress, mmap=True
            )
        except FileNotFoundError as exc:
            if args.split is not None or split == "train":
                raise
            print(f"{split}: no files ({exc}); skipped", file=sys.stderr)
            continue
        folder = cache / "maps" / settings.key()
        print(
            f"{settings.key()}: {arrays.maps.shape[0]} rows, {len(arrays.class_names)} classes, "
            f"{len(arrays.skipped)} skipped, {time.perf_counter() - start:.1f} s -> {folder}"
        )
        for name, reason in list(arrays.skipped.items())[:SHOWN_SKIPPED]:
            print(f"  skipped {name}: {reason}", file=sys.stderr)
        if len(arrays.skipped) > SHOWN_SKIPPED:
            print(f"  ... every skipped file is in {folder / 'meta.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
