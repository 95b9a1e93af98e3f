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

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.off_reader import modelnet10_files, print_comparison, same_bits, timed  # noqa: E402
from raymap.mesh import _read_obj_by_loadtxt, _read_plain_obj, load_mesh_file  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    root, files, splits = modelnet10_files(__doc__.split("\n\n")[0], argv)
    seconds = {"plain (in place)": 0.0, "np.loadtxt": 0.0}
    differ: list[Path] = []
    declined = 0
    for path in files:
        data = load_mesh_file(path).export(file_type="obj").encode()
        ours = timed(seconds, "plain (in place)", _read_plain_obj, data)
        reference = timed(seconds, "np.loadtxt", _read_obj_by_loadtxt, data)
        declined += ours is None
        if ours is not None and not same_bits(ours, reference):
            differ.append(path)
    headline = f"{len(files)} ModelNet10 meshes as OBJ ({splits})"
    print_comparison(headline, root, files, differ, seconds)
    print(f"  declined by the plain reader (left to the readers after it): {declined}")
    return 1 if differ or declined else 0


if __name__ == "__main__":
    raise SystemExit(main())
