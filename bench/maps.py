"""Same maps: this tree's input stage against another revision's, on every ModelNet10 test mesh.

    python bench/maps.py --against e3d3c57                 # all 899 test meshes
    python bench/maps.py --against e3d3c57 --limit 50 --bandwidth 16
    python bench/maps.py --against e527a2e --rotate 0 --answers   # rotated; the model's answers

The other revision runs in a subprocess from a git worktree of it (its own ``raymap``), writes
its maps, and this process compares them with its own: the largest |difference| per channel,
how many meshes and entries differ by more than ``--tolerance``, and each side's time per
mesh. The bandwidth is the shipped model's (its ONNX metadata) unless ``--bandwidth`` is given.
``--rotate SEED`` turns every mesh by a uniformly random rotation first (the same one on both
sides). ``--answers`` also runs ``--model`` on both sides' maps and prints what a user would
see change: the top class (and the accuracy), ``known``, the largest change of a probability,
of the novelty and of a descriptor entry. Exit code 1 when the maps differ by more than the
tolerance, or, with ``--answers``, when an answer does (a top class or ``known``).
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
rotations = np.load(sys.argv[4]) if len(sys.argv) > 4 else [None] * len(paths)
maps, start = [], time.perf_counter()
for p, rotation in zip(paths, rotations):
    mesh = raymap.load_mesh_file(p, max_faces=10**7)
    maps.append(raymap.spherical_map(mesh, bandwidth, rotation))
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
    parser.add_argument(
        "--rotate",
        type=int,
        default=None,
        metavar="SEED",
        help="turn each mesh by a random rotation drawn from SEED",
    )
    parser.add_argument(
        "--answers",
        action="store_true",
        help="also compare the model's answers on both sides' maps",
    )
    args = parser.parse_args(argv)

    import raymap
    from raymap.features import FEATURE_NAMES

    if args.mesh_root is None:
        from raymap.datasets import dataset_root

        args.mesh_root = dataset_root("modelnet10")
    bandwidth = args.bandwidth or model_bandwidth(args.model)
    paths = sorted(args.mesh_root.glob(f"*/{args.split}/*.off"))[: args.limit]
    rotations: list[np.ndarray | None] = [None] * len(paths)
    if args.rotate is not None:
        from raymap.datasets.rotations import uniform_rotation

        rng = np.random.default_rng(args.rotate)
        rotations = [uniform_rotation(rng) for _ in paths]
    print(
        f"{len(paths)} ModelNet10 {args.split} meshes, b = {bandwidth}, against {args.against}"
        + (
            ""
            if args.rotate is None
            else f", each turned by a random rotation (seed {args.rotate})"
        )
    )
    with worktree_of(args.against) as tree, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "other.npz"
        command = [
            sys.executable,
            "-c",
            _OTHER,
            "\n".join(map(str, paths)),
            str(bandwidth),
            str(out),
        ]
        if args.rotate is not None:
            np.save(Path(tmp) / "rotations.npy", np.stack(rotations))  # type: ignore[arg-type]
            command.append(str(Path(tmp) / "rotations.npy"))
        subprocess.run(
            command,
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            check=True,
        )
        with np.load(out) as other:
            theirs, their_s = other["maps"], float(other["seconds"])
    start = time.perf_counter()
    ours = np.stack(
        [
            raymap.spherical_map(raymap.load_mesh_file(p, max_faces=10**7), bandwidth, rotation)
            for p, rotation in zip(paths, rotations, strict=True)
        ]
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
    if not args.answers:
        return 1 if bad else 0
    return 1 if compare_answers(args.model, paths, ours, theirs, args.against) else 0


def compare_answers(
    model: Path, paths: list[Path], ours: np.ndarray, theirs: np.ndarray, against: str
) -> int:
    """Print how the model's answers on our maps differ from those on ``theirs``; returns how
    many meshes changed their top class or their ``known``."""
    from service.runtime import Runtime

    runtime = Runtime(model, device="cpu", intra_op_threads=1, warmup=False)
    contract = runtime.info
    labels = np.array([contract.class_names.index(p.parent.parent.name) for p in paths])
    answers = []
    for maps in (ours, theirs):
        batches = [runtime.run(maps[i : i + 64]) for i in range(0, len(maps), 64)]
        answers.append({
            name: np.concatenate([getattr(b, name) for b in batches])
            for name in ("probabilities", "descriptor", "novelty")
            if getattr(batches[0], name) is not None
        })  # fmt: skip
    mine, other = answers
    top_changed = int((mine["probabilities"].argmax(1) != other["probabilities"].argmax(1)).sum())
    print(f"the model's answers ({model}):")
    print(f"  top class changed: {top_changed} of {len(paths)}")
    for side, side_answers in (("ours", mine), (against, other)):
        accuracy = (side_answers["probabilities"].argmax(1) == labels).mean()
        print(f"  accuracy {side}: {accuracy:.4f}")
    for name in mine:
        print(f"  max |change| of {name}: {np.abs(mine[name] - other[name]).max():.2e}")
    known_changed = 0
    if "novelty" in mine and contract.novelty_threshold is not None:
        known = [a["novelty"] <= contract.novelty_threshold for a in answers]
        known_changed = int((known[0] != known[1]).sum())
        print(f"  known changed: {known_changed} of {len(paths)}")
    return top_changed + known_changed


if __name__ == "__main__":
    sys.exit(main())
