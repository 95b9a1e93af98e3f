"""``spherical-shapes classify`` over the ModelNet10 test split against the service's /classify.

    python bench/classify_cli.py                      # all 899 test meshes, models/model.onnx
    python bench/classify_cli.py --limit 100 --workers 2

Runs, one after the other on the same machine: (1) the command line, ``python -m
spherical_shapes classify --json`` on every test mesh, as a user would (its own process,
model load included), timed wall and CPU; (2) ``python -m service`` started on a free port,
each mesh POSTed to ``/classify`` by one client at a time (the baseline: what a user without
the command line does), timed the same way, server start excluded. Prints both throughputs,
their ratio, and how many labels differ (the goal: none) with the largest probability
difference.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the real-server helper of the service tests

from service_testing import ServerProcess  # noqa: E402


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "model.onnx")
    parser.add_argument("--root", type=Path, default=None, help="ModelNet10/ (default: the cache)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N meshes")
    parser.add_argument("--workers", type=int, default=None, help="the CLI's casting threads")
    args = parser.parse_args()
    if args.root is None:
        from raymap.datasets import dataset_root

        args.root = dataset_root("modelnet10")
    paths = sorted(args.root.glob("*/test/*.off"))[: args.limit]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SHAPES_MODEL_PATH": str(args.model),
        "SHAPES_LOG_LEVEL": "warning",
    }
    print(f"{len(paths)} ModelNet10 test meshes, model {args.model}, {os.cpu_count()} cores")

    command = [sys.executable, "-m", "spherical_shapes", "classify", "--json", "--no-progress"]
    if args.workers:
        command += ["--workers", str(args.workers)]
    cpu0, began = children_cpu(), time.perf_counter()
    done = subprocess.run(
        [*command, *map(str, paths)], env=env, capture_output=True, text=True, check=False
    )
    cli_wall, cli_cpu = time.perf_counter() - began, children_cpu() - cpu0
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    print(done.stderr.strip().splitlines()[-1], flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(
            {
                "SHAPES_MODEL_PATH": str(args.model),
                "SHAPES_GALLERY_DIR": str(Path(tmp) / "gallery"),
                "SHAPES_LOG_LEVEL": "warning",
            },
            Path(tmp) / "server.log",
        )
        try:
            server.wait_ready(timeout_s=600)  # a loaded machine starts it slowly
            answers = []
            began = time.perf_counter()
            with httpx.Client(timeout=60) as client:
                for path in paths:
                    files = {"file": (path.name, path.read_bytes(), "application/octet-stream")}
                    answers.append(client.post(f"{server.url}/classify", files=files).json())
            http_wall = time.perf_counter() - began
        finally:
            server.stop()

    differ = [
        (row["file"], row["label"], answer.get("label"))
        for row, answer in zip(rows, answers, strict=True)
        if row["label"] != answer.get("label")
    ]
    worst = max(
        abs(row["probabilities"][name] - p)
        for row, answer in zip(rows, answers, strict=True)
        if row["error"] is None
        for name, p in answer["probabilities"].items()
    )
    errors = sum(row["error"] is not None for row in rows)
    print("| path | meshes | wall s | meshes/s | CPU s (client processes) |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| `spherical-shapes classify` (model load included) | {len(rows)} | {cli_wall:.1f} | "
        f"{len(rows) / cli_wall:.1f} | {cli_cpu:.1f} |"
    )
    print(
        f"| POST /classify, one at a time (server start excluded) | {len(answers)} | "
        f"{http_wall:.1f} | {len(answers) / http_wall:.1f} | (in the server) |"
    )
    print(f"speed-up of the command line: {http_wall / cli_wall:.2f}x")
    print(
        f"labels that differ: {len(differ)} of {len(rows)} (CLI errors: {errors}); "
        f"largest |probability difference| {worst:.2e}"
    )
    for item in differ[:10]:
        print("  differs:", item)
    return 1 if differ or errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
