"""Same maps: this tree's input stage against another revision's, on every ModelNet10 test mesh.

    python bench/maps.py --against e3d3c57                 # all 899 test meshes
    python bench/maps.py --against e3d3c57 --limit 50 --bandwidth 16

The other revision runs in a subprocess from a git worktree of it (its own ``raymap``), writes
its maps, and this process compares them with its own: the largest |difference| per channel,
how many meshes and entries differ by more than ``--tolerance``, and each side's time per
mesh. The bandwidth is the shipped model's (its ONNX metadata) unless ``--bandwidth`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.trees import worktree_of  # noqa: E402

# Run inside the other tree: only raymap's public API of every revision so far.
_OTHER = """
import sys, time, numpy as np, raymap
paths, bandwidth, out = sys.argv[1].split("\\n"), int(sys.argv[2]), sys.argv[3]
maps, start = [], time.perf_counter()
for p in paths:
    maps.append(raymap.spherical_map(raymap.load_mesh_file(p, max_faces=10**7), bandwidth))
np.savez(out, maps=np.stack(maps), seconds=time.perf_counter() - start)
"""


def model_bandwidth(model: Path) -> int:
    import onnxruntime as ort

    meta = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_modelmeta()
    return int(json.loads(meta.custom_metadata_map["bandwidth"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, metavar="REV")
    parser.add_argument("--bandwidth", type=int, default=None)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "model.onnx")
    parser.add_argument("--mesh-root", type=Path, default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="only the first N meshes")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args(argv)

    import raymap
    from raymap.features import FEATURE_NAMES

    if args.mesh_root is None:
        from raymap.datasets import dataset_root

        args.mesh_root = dataset_root("modelnet10")
    bandwidth = args.bandwidth or model_bandwidth(args.model)
    paths = sorted(args.mesh_root.glob(f"*/{args.split}/*.off"))[: args.limit]
    print(f"{len(paths)} ModelNet10 {args.split} meshes, b = {bandwidth}, against {args.against}")
    with worktree_of(args.against) as tree, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "other.npz"
        subprocess.run(
            [sys.executable, "-c", _OTHER, "\n".join(map(str, paths)), str(bandwidth), str(out)],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            check=True,
        )
        with np.load(out) as other:
            theirs, their_s = other["maps"], float(other["seconds"])
    start = time.perf_counter()
    ours = np.stack(
        [raymap.spherical_map(raymap.load_mesh_file(p, max_faces=10**7), bandwidth) for p in paths]
    )
    our_s = time.perf_counter() - start
    error = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))  # (N, C, 2b, 2b)
    per_mesh = error.reshape(len(paths), -1).max(axis=1)
    print(f"{'channel':<16}{'max |diff|':>12}{'entries > tol':>15}")
    for c, name in enumerate(FEATURE_NAMES):
        over = int((error[:, c] > args.tolerance).sum())
        print(f"{name:<16}{error[:, c].max():>12.2e}{over:>15}")
    bad = [(p.name, float(e)) for p, e in zip(paths, per_mesh, strict=True) if e > args.tolerance]
    print(
        f"max |diff| {error.max():.2e}; meshes over {args.tolerance:g}: {len(bad)} of {len(paths)}"
        f"{' ' + str(sorted(bad, key=lambda x: -x[1])[:10]) if bad else ''}"
    )
    print(
        f"time per mesh (parse + map, one process): ours {1e3 * our_s / len(paths):.2f} ms, "
        f"{args.against} {1e3 * their_s / len(paths):.2f} ms"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
