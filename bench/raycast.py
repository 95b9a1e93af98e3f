"""Benchmark of the mesh -> spherical map stage on real ModelNet meshes.

Goals (issue "Mesh to spherical map"): cast + features <= 5 ms median for a ~10k-face mesh at
b = 32 (64 x 64 rays), and the ModelNet10 build with one SO3 copy per mesh under 5 minutes
on 2 cores.

    python bench/raycast.py                      # ModelNet10 test split, b = 32, + full build
    python bench/raycast.py --limit 100 --no-build

Per mesh, in one process: parse (bytes -> validated mesh), normalize (validation + centre and
scale), hull (raymap.hull, with a small hull's planes), cast (the embree scenes built + the ray
bundles with their features, a small hull's by its planes: "cast + features", the goal's
figure, which raymap/_kernels.c computes in one pass). Then the real dataset build
(``raymap.datasets.build_split``, process pool, fresh temporary cache). One BLAS thread, as
in the service and the build's workers (the hull's planes are a matrix product).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from raymap import load_mesh, spherical_map_timed  # noqa: E402
from raymap.datasets import DATASETS, build_split, dataset_root, list_meshes  # noqa: E402
from raymap.mesh import file_type_of  # noqa: E402

COLUMNS = (
    "parse",
    "normalize",
    "hull",
    "cast",
    "cast_build",  # part of cast: both embree scenes (shared buffers + BVH build)
    "cast_rays",  # part of cast: the two ray bundles and their features
    "total",
)
Clock = Callable[[], float]
TEN_K = (8_000, 12_000)  # the "10k-face" band


def time_meshes(
    paths: list[Path], bandwidth: int, repeat: int, clock: Clock
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Stage times (ms) per mesh, each the minimum of ``repeat`` runs, and face counts.

    The minimum over repeats filters out bursts from other processes on a shared machine; the
    first mesh is run once more as a warm-up (embree device, caches).
    """
    rows: dict[str, list[float]] = {stage: [] for stage in COLUMNS}
    faces: list[int] = []
    for index, path in enumerate(paths):
        data = path.read_bytes()
        parse_ms = np.inf
        for _ in range(repeat):
            start = clock()
            mesh = load_mesh(data, file_type_of(path.name), max_faces=5_000_000)
            parse_ms = min(parse_ms, 1e3 * (clock() - start))
        if index == 0:
            spherical_map_timed(mesh, bandwidth)
        runs = [spherical_map_timed(mesh, bandwidth, clock=clock)[1] for _ in range(repeat)]
        for run in runs:
            run["parse"] = parse_ms
            run["total"] += parse_ms
        for stage in COLUMNS:
            rows[stage].append(min(run[stage] for run in runs))
        faces.append(len(mesh.faces))
        if (index + 1) % 100 == 0:
            print(f"  timed {index + 1}/{len(paths)} meshes", file=sys.stderr)
    return {k: np.asarray(v) for k, v in rows.items()}, np.asarray(faces)


def print_stage_table(
    wall: dict[str, np.ndarray], cpu: dict[str, np.ndarray], faces: np.ndarray, bandwidth: int
) -> None:
    band = (faces >= TEN_K[0]) & (faces <= TEN_K[1])
    n_band = int(band.sum())
    print(f"\n### Stage times, b = {bandwidth} ({2 * bandwidth} x {2 * bandwidth} rays), ms\n")
    print(
        f"Median over meshes of the minimum of the repeats. wall = perf_counter, cpu = "
        f"process_time (all threads of the process). '10k' = the {n_band} meshes with "
        f"{TEN_K[0]}-{TEN_K[1]} faces.\n"
    )
    print("| stage | wall, all | cpu, all | wall p90, all | wall, 10k | cpu, 10k |")
    print("|---|---:|---:|---:|---:|---:|")
    for stage in COLUMNS:
        w, c = wall[stage], cpu[stage]
        w10 = f"{np.median(w[band]):.2f}" if n_band else "n/a"
        c10 = f"{np.median(c[band]):.2f}" if n_band else "n/a"
        bold = "**" if stage == "cast" else ""
        print(
            f"| {bold}{stage}{bold} | {np.median(w):.2f} | {np.median(c):.2f} | "
            f"{np.percentile(w, 90):.2f} | {bold}{w10}{bold} | {c10} |"
        )
    print(
        f"\nfaces per mesh: median {np.median(faces):.0f}, p90 {np.percentile(faces, 90):.0f}, "
        f"max {faces.max()}; one process, parse to map: "
        f"{len(faces) / (wall['total'].sum() / 1e3):.1f} meshes/s (wall)"
    )


def time_build(dataset: str, split: str, bandwidth: int, workers: int) -> None:
    with tempfile.TemporaryDirectory(prefix="raycast-bench-") as cache:
        # The raw meshes are already extracted in the default cache; only the maps are fresh.
        root = dataset_root(dataset)
        start = time.perf_counter()
        out = build_split(
            dataset,
            split,
            bandwidth,
            "so3",
            copies=1,
            seed=0,
            root=root,
            cache_dir=Path(cache),
            workers=workers,
        )
        elapsed = time.perf_counter() - start
    n = out.maps.shape[0]
    print(f"\n### Dataset build: {dataset} {split}, so3 x 1, b = {bandwidth}, {workers} workers\n")
    print("| meshes | seconds | meshes/s |")
    print("|---:|---:|---:|")
    print(f"| {n} | {elapsed:.1f} | {n / elapsed:.1f} |")
    print(f"\nload average after the build: {os.getloadavg()[0]:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dataset", default="modelnet10", choices=sorted(DATASETS))
    parser.add_argument("--split", default="test")
    parser.add_argument("--bandwidth", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="time only the first N meshes")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3, help="runs per mesh; the minimum counts")
    parser.add_argument("--no-build", action="store_true", help="skip the dataset build timing")
    args = parser.parse_args()

    root = dataset_root(args.dataset)
    paths, _, _ = list_meshes(root, args.split, DATASETS[args.dataset])
    if args.limit is not None:
        paths = paths[:: max(1, len(paths) // args.limit)][: args.limit]  # spread over classes
    print(
        f"{args.dataset} {args.split}: {len(paths)} meshes; {platform.processor() or 'cpu'}, "
        f"{os.cpu_count()} cores, python {platform.python_version()}"
    )
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    wall, faces = time_meshes(paths, args.bandwidth, args.repeat, time.perf_counter)
    cpu, _ = time_meshes(paths, args.bandwidth, args.repeat, time.process_time)
    print_stage_table(wall, cpu, faces, args.bandwidth)
    print(f"load average after the per-mesh timing: {os.getloadavg()[0]:.1f}")
    if not args.no_build:
        time_build(args.dataset, args.split, args.bandwidth, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
