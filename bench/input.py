"""The input stage (upload bytes -> spherical map) against what a user would write instead.

    python bench/input.py                                  # 6 formats, ~1k to 500k faces
    python bench/input.py --formats off --sizes 10000 --repeats 20
    python bench/input.py --plot docs/perf-input-stage.png   # also the log-log plot

Ours: what the service runs, ``raymap.load_mesh`` then ``raymap.project.prepare`` (with
``validated=True``: ``load_mesh`` has validated the mesh) and ``project`` (both the mesh and
its convex hull, at the shipped model's bandwidth). Theirs, the same work in trimesh:
``trimesh.load(file, file_type=..., force="mesh")`` (its defaults otherwise), the same
area-centroid and unit-sphere normalization written with trimesh, ``mesh.convex_hull``, and
trimesh's embree ray query (``mesh.ray.intersects_id``, first hits, with locations) for the
same rays on the mesh and the hull, plus the face normals of the hits. The meshes are one
real ModelNet10 shape per size (subdivided above 12k faces; made here, never stored), written
by trimesh's exporters (OFF in ModelNet's own layout; ``ply`` binary, ``ply_ascii`` as text).
The two are timed alternately, in turns of ``--block`` calls each (the order flips each round),
each call's wall and CPU time; the table gives medians and the ratio theirs / ours, twice: for
the first call of each turn, which runs right after the other side's calls ("cold": its caches
hold the other process's data, as for a request that finds the server idle or busy with other
work), and for the turn's other calls, each right after one of its own ("warm": as a server
busy with uploads runs them back to back). At 1k faces ours pays ~0.3-0.4 ms for the cold
caches, a fifth to a third of its time; trimesh ~0.8-0.9 ms, about an eighth of its.

Each side runs in its own process, as the service runs only ours: in one process, trimesh's
Embree device starts a TBB worker thread that then spins through every one of our calls too
(our scenes' builds wake it), which doubled our CPU time and added ~10 % to our wall time at 1k
faces. Our process is set up as a serving process is
(:func:`service.allocator.keep_large_blocks`: large blocks from the heap, freed ones kept),
trimesh's as a user's script (glibc's defaults) unless ``--tuned-allocator-for-trimesh``.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

# As the service does (service/__main__.py): one BLAS thread. OpenBLAS's idle threads spin
# after each call and were counted as CPU time of both sides (up to twice the wall time).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import trimesh  # noqa: E402

import raymap  # noqa: E402
from bench.meshgen import FORMATS, SIZES, encode, mesh_of_size, upload_type  # noqa: E402
from raymap.features import ORIGIN_RADIUS  # noqa: E402
from raymap.grid import directions  # noqa: E402
from raymap.project import prepare, project  # noqa: E402

MAX_FACES = 10**7


def ours(data: bytes, file_type: str, bandwidth: int) -> np.ndarray:
    """The service's input stage (``service.runtime.Runtime.mesh_to_map``)."""
    mesh = raymap.load_mesh(data, upload_type(file_type), MAX_FACES)
    return project(prepare(mesh, validated=True), bandwidth)


def theirs(data: bytes, file_type: str, bandwidth: int) -> list[np.ndarray]:
    """The same mesh -> first hits on mesh and hull, as a trimesh user would write it."""
    mesh = trimesh.load(io.BytesIO(data), file_type=upload_type(file_type), force="mesh")
    centre = (mesh.area_faces @ mesh.triangles_center) / mesh.area
    mesh.apply_translation(-centre)
    mesh.apply_scale(1.0 / np.linalg.norm(mesh.vertices, axis=1).max())
    outward = directions(bandwidth).reshape(-1, 3)
    origins, inward = ORIGIN_RADIUS * outward, -outward
    out = []
    for target in (mesh, mesh.convex_hull):
        faces, rays, locations = target.ray.intersects_id(
            origins, inward, multiple_hits=False, return_locations=True
        )
        distance = np.linalg.norm(locations - origins[rays], axis=1)
        out += [distance, target.face_normals[faces]]
    return out


def timed(function, *args) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    function(*args)
    return 1e3 * (time.perf_counter() - wall), 1e3 * (time.process_time() - cpu)


SIDES = {"ours": ours, "theirs": theirs}


def _serve_side(name: str, connection: Any, tuned_allocator: bool) -> None:
    """A side's process: keeps the last mesh it was sent, times a call on request."""
    if tuned_allocator:
        from service.allocator import keep_large_blocks

        keep_large_blocks()
    function = SIDES[name]
    mesh: tuple[bytes, str, int] | None = None
    while (message := connection.recv()) is not None:
        if isinstance(message, tuple):
            mesh = message
            function(*mesh)  # warm-up: imports, caches
            connection.send(None)
        else:
            assert mesh is not None
            connection.send(timed(function, *mesh))


class Side:
    """One side of the comparison in its own process (``spawn``: nothing inherited)."""

    def __init__(self, name: str, tuned_allocator: bool) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_serve_side, args=(name, child, tuned_allocator), daemon=True
        )
        self._process.start()

    def load(self, data: bytes, file_type: str, bandwidth: int) -> None:
        self._connection.send((data, file_type, bandwidth))
        self._connection.recv()

    def time(self) -> tuple[float, float]:
        self._connection.send("time")
        return self._connection.recv()

    def close(self) -> None:
        self._connection.send(None)
        self._process.join(timeout=10)


def model_bandwidth(model: Path) -> int:
    import onnxruntime as ort

    meta = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_modelmeta()
    return int(json.loads(meta.custom_metadata_map["bandwidth"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=None, help="turns; default: by size")
    parser.add_argument(
        "--block",
        type=int,
        default=None,
        help="calls per side per turn (the first cold, the others warm); default: by size",
    )
    parser.add_argument("--bandwidth", type=int, default=None, help="default: the model's")
    parser.add_argument("--model", type=Path, default=REPO / "models" / "model.onnx")
    parser.add_argument("--mesh-root", type=Path, default=None)
    parser.add_argument(
        "--tuned-allocator-for-trimesh",
        action="store_true",
        help="give trimesh's process the service's allocator settings too",
    )
    parser.add_argument("--plot", type=Path, default=None, help="log-log plot (PNG)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--replot", type=Path, default=None, help="plot a --json file; no run")
    args = parser.parse_args(argv)
    if args.replot:
        plot(json.loads(args.replot.read_text()), args.plot or Path("docs/perf-input-stage.png"))
        return 0
    if args.mesh_root is None:
        from raymap.datasets import dataset_root

        args.mesh_root = dataset_root("modelnet10")
    bandwidth = args.bandwidth or model_bandwidth(args.model)
    print(
        f"b = {bandwidth}; trimesh {trimesh.__version__}; {os.cpu_count()} cores; load average "
        f"at the start {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    head = (
        f"{'format':<7}{'faces':>8}{'KiB':>8}{'ours ms':>9}{'ours cpu':>10}{'trimesh ms':>12}"
        f"{'trimesh cpu':>13}{'ratio wall':>12}{'ratio cpu':>11} |{'ours warm':>11}"
        f"{'trimesh warm':>14}{'ratio warm':>12}{'ratio cpu':>11}"
    )
    print("cold: the first call of each side's turn, after the other side's; warm: the others")
    print(head)
    print("-" * len(head))
    rows = []
    tuned = {"ours": True, "theirs": args.tuned_allocator_for_trimesh}
    sides = {name: Side(name, tuned[name]) for name in SIDES}
    for size in args.sizes:
        name, mesh = mesh_of_size(args.mesh_root, size)
        repeats = args.repeats or (15 if size <= 20_000 else 5 if size <= 200_000 else 3)
        block = max(2, args.block or (4 if size <= 20_000 else 2))
        for file_type in args.formats:
            data = encode(mesh, file_type)
            for side in sides.values():
                side.load(data, file_type, bandwidth)
            cold: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
            warm: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
            for round_ in range(repeats):
                # The order flips each round: each side follows the other as often (right
                # after trimesh's ray query, Embree's TBB threads are still running down).
                order = list(sides) if round_ % 2 == 0 else list(sides)[::-1]
                for side_name in order:
                    cold[side_name].append(sides[side_name].time())
                    warm[side_name] += [sides[side_name].time() for _ in range(block - 1)]
            (ow, oc), (tw, tc) = (np.median(cold[n], axis=0) for n in ("ours", "theirs"))
            (oww, owc), (tww, twc) = (np.median(warm[n], axis=0) for n in ("ours", "theirs"))
            row = {
                "format": file_type,
                "bandwidth": bandwidth,
                "mesh": name,
                "faces": len(mesh.faces),
                "bytes": len(data),
                "ours_ms": ow,
                "ours_cpu_ms": oc,
                "trimesh_ms": tw,
                "trimesh_cpu_ms": tc,
                "ours_warm_ms": oww,
                "ours_warm_cpu_ms": owc,
                "trimesh_warm_ms": tww,
                "trimesh_warm_cpu_ms": twc,
            }
            rows.append(row)
            print(
                f"{file_type:<7}{len(mesh.faces):>8}{len(data) / 1024:>8.0f}{ow:>9.1f}{oc:>10.1f}"
                f"{tw:>12.1f}{tc:>13.1f}{tw / ow:>12.2f}{tc / oc:>11.2f} |{oww:>11.1f}"
                f"{tww:>14.1f}{tww / oww:>12.2f}{twc / owc:>11.2f}",
                flush=True,
            )
    for side in sides.values():
        side.close()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average at the end (1, 5, 15 min): {load}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.plot:
        plot(rows, args.plot)
    return 0


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110, sharey=True)
    colours = dict(zip(FORMATS, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    panels = (
        (axes[0], "ms", "cold: after the other side's calls"),
        (axes[1], "warm_ms", "warm: right after its own"),
    )
    for ax, key, title in panels:
        for file_type in dict.fromkeys(r["format"] for r in rows):
            mine = [r for r in rows if r["format"] == file_type]
            faces = [r["faces"] for r in mine]
            ax.plot(faces, [r[f"ours_{key}"] for r in mine], "o-", color=colours[file_type],
                    label=f"{file_type.upper()} ours")  # fmt: skip
            ax.plot(faces, [r[f"trimesh_{key}"] for r in mine], "x--", color=colours[file_type],
                    alpha=0.6, label=f"{file_type.upper()} trimesh + embree")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("faces")
        ax.set_ylabel("bytes -> spherical map, ms (wall, median)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    bandwidth = rows[0].get("bandwidth", "?") if rows else "?"
    fig.suptitle(
        f"Input stage: raymap vs trimesh.load + trimesh's embree ray query (b = {bandwidth})"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
