"""The plain OBJ reader (simdjson in place) against numpy's reader, on every ModelNet10 mesh.

    python bench/obj_reader.py                       # all test and train meshes
    python bench/obj_reader.py --split test --limit 100

Each mesh is written as trimesh writes an OBJ (a comment, ``v`` lines, ``f`` lines: what a
user's export of a single mesh looks like) and read twice: by
``raymap.mesh._read_plain_obj`` (what ``raymap.load_mesh`` tries first,
``raymap.text_numbers.parse_lettered_rows``) and by the ``np.loadtxt`` reader after it; the
vertex and face arrays must be equal bit for bit. Prints how many files agree, how many the
plain reader declined (left to the readers after it), and each reader's CPU time per file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.off_reader import same_bits  # noqa: E402
from raymap.datasets import dataset_root  # noqa: E402
from raymap.mesh import _read_obj_by_loadtxt, _read_plain_obj, load_mesh_file  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("test", "train", "both"), default="both")
    parser.add_argument("--limit", type=int, default=None, help="only the first N files")
    args = parser.parse_args(argv)
    splits = ("test", "train") if args.split == "both" else (args.split,)
    root = dataset_root("modelnet10")
    files = sorted(p for split in splits for p in root.glob(f"*/{split}/*.off"))[: args.limit]
    seconds = {"plain (in place)": 0.0, "np.loadtxt": 0.0}
    differ: list[Path] = []
    declined = 0
    for path in files:
        data = load_mesh_file(path).export(file_type="obj").encode()
        start = time.process_time()
        ours = _read_plain_obj(data)
        seconds["plain (in place)"] += time.process_time() - start
        start = time.process_time()
        reference = _read_obj_by_loadtxt(data)
        seconds["np.loadtxt"] += time.process_time() - start
        declined += ours is None
        if ours is not None and not same_bits(ours, reference):
            differ.append(path)
    print(f"{len(files)} ModelNet10 meshes as OBJ ({', '.join(splits)}): {len(differ)} differ")
    print(f"  declined by the plain reader (left to the readers after it): {declined}")
    for name, total in seconds.items():
        print(f"  {name:17s} {total:7.2f} s CPU, {1e3 * total / max(len(files), 1):6.2f} ms/file")
    for path in differ[:10]:
        print(f"  differs: {path.relative_to(root)}")
    return 1 if differ or declined else 0


if __name__ == "__main__":
    raise SystemExit(main())
