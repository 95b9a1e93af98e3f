"""The OFF reader's number parser (simdjson) against numpy's readers, on every ModelNet10 mesh.

    python bench/off_reader.py                       # all test and train meshes
    python bench/off_reader.py --split test --limit 100

For each file, the numbers after the OFF counts are read twice: by
``raymap.text_numbers.parse_numbers`` (what ``raymap.load_mesh`` uses) and by the numpy
readers it replaced (``np.loadtxt`` per block, else ``np.array(tokens, dtype=float64)``),
and the vertex and face arrays must be equal bit for bit. Prints how many files agree, how
many the parser left to numpy (a token that is no JSON number), and each side's CPU time
(alternating, summed).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from raymap.datasets import dataset_root  # noqa: E402
from raymap.mesh import _OFF_HEADER, _off_blocks, _off_blocks_by_numpy  # noqa: E402
from raymap.text_numbers import parse_numbers  # noqa: E402

T = TypeVar("T")


def counts_and_rest(data: bytes) -> tuple[int, int, bytes]:
    """The vertex and face counts and the text after them (ModelNet has no comments)."""
    match = _OFF_HEADER.match(data)
    if match is None:
        raise ValueError("no OFF header")
    n_vertices, n_faces, *rest = data[match.end() :].split(maxsplit=3)
    return int(n_vertices), int(n_faces), rest[1] if len(rest) > 1 else b""


def same_bits(
    a: tuple[np.ndarray, np.ndarray] | None, b: tuple[np.ndarray, np.ndarray] | None
) -> bool:
    if a is None or b is None:
        return a is b
    (vertices_a, faces_a), (vertices_b, faces_b) = a, b
    return (
        vertices_a.shape == vertices_b.shape
        and np.array_equal(vertices_a.view(np.uint64), vertices_b.view(np.uint64))
        and np.array_equal(faces_a, faces_b)
    )


def parsed(
    rest: bytes, n_vertices: int, n_faces: int
) -> tuple[np.ndarray | None, tuple[np.ndarray, np.ndarray] | None]:
    """The numbers by ``parse_numbers`` and the blocks made of them (``None``, ``None`` when
    the parser leaves the text to numpy)."""
    values = parse_numbers(rest)
    return values, None if values is None else _off_blocks(values, n_vertices, n_faces)


def modelnet10_files(description: str, argv: list[str] | None) -> tuple[Path, list[Path], str]:
    """The ModelNet10 OFF files the command line asks for (``--split``, ``--limit``): the
    dataset's root, the files, and the splits' names."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--split", choices=("test", "train", "both"), default="both")
    parser.add_argument("--limit", type=int, default=None, help="only the first N files")
    args = parser.parse_args(argv)
    splits = ("test", "train") if args.split == "both" else (args.split,)
    root = dataset_root("modelnet10")
    files = sorted(p for split in splits for p in root.glob(f"*/{split}/*.off"))[: args.limit]
    return root, files, ", ".join(splits)


def print_comparison(
    headline: str, root: Path, files: list[Path], differ: list[Path], seconds: dict[str, float]
) -> None:
    """How many files differ, each reader's CPU time per file, the first files that differ."""
    print(f"{headline}: {len(differ)} differ")
    for name, total in seconds.items():
        print(f"  {name:17s} {total:7.2f} s CPU, {1e3 * total / max(len(files), 1):6.2f} ms/file")
    for path in differ[:10]:
        print(f"  differs: {path.relative_to(root)}")


def timed(seconds: dict[str, float], name: str, function: Callable[..., T], *args: Any) -> T:
    """``function(*args)``, its CPU time added to ``seconds[name]``."""
    start = time.process_time()
    result = function(*args)
    seconds[name] += time.process_time() - start
    return result


def main(argv: list[str] | None = None) -> int:
    root, files, splits = modelnet10_files(__doc__.split("\n\n")[0], argv)
    seconds = {"parse_numbers": 0.0, "numpy": 0.0}
    differ: list[Path] = []
    fallback = 0
    for path in files:
        n_vertices, n_faces, rest = counts_and_rest(path.read_bytes())
        values, ours = timed(seconds, "parse_numbers", parsed, rest, n_vertices, n_faces)
        reference = timed(seconds, "numpy", _off_blocks_by_numpy, rest, n_vertices, n_faces)
        fallback += values is None
        if values is not None and not same_bits(ours, reference):
            differ.append(path)
    print_comparison(f"{len(files)} ModelNet10 OFF files ({splits})", root, files, differ, seconds)
    print(f"  parsed by numpy instead (a token that is no JSON number): {fallback}")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
