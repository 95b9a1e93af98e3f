"""Serving benchmark: start ``python -m service`` and drive it over HTTP with real ModelNet10
meshes at several concurrencies, with micro-batching on and then off, in the same run.

    python bench/serve.py                       # models/model.onnx, models/gallery.npz
    python bench/serve.py --model X.onnx --requests 100 --concurrency 1 8 32
    python bench/serve.py --gallery-sizes 5000 50000 500000   # only the gallery store

Prints per (batching, concurrency): requests, errors, p50/p99 latency, throughput and the mean
per-stage split reported by the server (``timings_ms``); first, the p50 of one mesh close to
10k faces at concurrency 1. Goals (2-core CPU): p50 <= 30 ms for a 10k-face mesh at
concurrency 1; >= 50 meshes/s at concurrency 32; no errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# As the service does (service/__main__.py): no BLAS thread pools in the gallery benchmark.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import httpx  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

STAGES = ("read", "parse", "normalize", "hull", "cast", "features", "queue", "inference", "search")
_OFF_COUNTS = re.compile(rb"\A\s*OFF\s*(\d+)\s+(\d+)")


# ----------------------------------------------------------------------------- meshes


def off_faces(path: Path) -> int:
    with open(path, "rb") as f:
        match = _OFF_COUNTS.match(f.read(256))
    return int(match.group(2)) if match else -1


def pick_meshes(root: Path, n: int, seed: int) -> tuple[list[Path], Path]:
    """``n`` random ModelNet10 test meshes, and the test mesh with faces closest to 10,000."""
    paths = sorted(root.glob("*/test/*.off"))
    if not paths:
        raise SystemExit(f"no ModelNet10 test meshes under {root}")
    rng = np.random.default_rng(seed)
    sample = [paths[i] for i in rng.choice(len(paths), size=min(n, len(paths)), replace=False)]
    ten_k = min(paths, key=lambda p: abs(off_faces(p) - 10_000))
    return sample, ten_k


# ----------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=REPO,
            env={**os.environ, "SHAPES_PORT": str(self.port), **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server did not become ready")

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server process so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


# ----------------------------------------------------------------------------- the load


@dataclass
class Run:
    label: str
    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    batch_sizes: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    server_cpu_s: float = 0.0

    def row(self) -> dict[str, object]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        n = len(self.latencies_ms)
        return {
            "run": self.label,
            "concurrency": self.concurrency,
            "requests": n + sum(self.errors.values()),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)),
            "throughput": n / self.wall_s if self.wall_s else 0.0,
            "mean_batch": float(np.mean(self.batch_sizes)) if self.batch_sizes else 0.0,
            # CPU the server spent per answered mesh: what 2 idle cores would allow is
            # about 2000 / cpu_ms_per_mesh meshes/s, whatever else runs on the machine.
            "cpu_ms_per_mesh": 1e3 * self.server_cpu_s / n if n else 0.0,
            "stages_ms": {k: float(np.mean(v)) for k, v in self.stages.items()},
        }


async def drive(
    url: str,
    endpoint: str,
    uploads: list[tuple[str, bytes]],
    n_requests: int,
    concurrency: int,
    label: str,
) -> Run:
    run = Run(label, concurrency)
    counter = iter(range(n_requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            name, data = uploads[i % len(uploads)]
            start = time.perf_counter()
            try:
                response = await client.post(
                    endpoint, files={"file": (name, data)}, data={"k": "10"}
                )
            except httpx.HTTPError as exc:
                run.errors[type(exc).__name__] = run.errors.get(type(exc).__name__, 0) + 1
                continue
            elapsed = 1e3 * (time.perf_counter() - start)
            if response.status_code != 200:
                key = str(response.status_code)
                run.errors[key] = run.errors.get(key, 0) + 1
                continue
            body = response.json()
            run.latencies_ms.append(elapsed)
            run.batch_sizes.append(int(body.get("batch_size", 0)))
            timings = body["timings_ms"]
            for stage in STAGES:
                if stage in timings:
                    run.stages.setdefault(stage, []).append(timings[stage])

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        run.wall_s = time.perf_counter() - start
    return run


def measured(server: Server, coroutine: Any) -> Run:
    """Run one load phase and attach the server's CPU seconds spent during it."""
    before = server.cpu_s()
    run: Run = asyncio.run(coroutine)
    run.server_cpu_s = server.cpu_s() - before
    return run


def print_table(rows: list[dict[str, object]]) -> None:
    stages = [s for s in STAGES if any(s in r["stages_ms"] for r in rows)]  # type: ignore[operator]
    head = (
        f"{'run':<26}{'conc':>5}{'n':>6}{'err':>5}{'p50 ms':>9}{'p99 ms':>9}{'mesh/s':>8}"
        f"{'batch':>7}{'cpu ms':>8}" + "".join(f"{s[:9]:>10}" for s in stages)
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        split = r["stages_ms"]
        print(
            f"{r['run']:<26}{r['concurrency']:>5}{r['requests']:>6}{r['errors']:>5}"
            f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['throughput']:>8.1f}{r['mean_batch']:>7.2f}"
            f"{r['cpu_ms_per_mesh']:>8.1f}"
            + "".join(f"{split.get(s, float('nan')):>10.2f}" for s in stages)  # type: ignore[union-attr]
        )


# ----------------------------------------------------------------------------- gallery store


def bench_gallery(sizes: list[int], dim: int, queries: int = 100) -> None:
    """Exact search latency and durable add latency of the embedded store at several sizes."""
    from service.gallery import BaseGallery, Item, write_base_gallery
    from service.gallery.embedded import EmbeddedGallery

    print(f"\nembedded gallery, D={dim}: exact cosine top-10 (numpy) and durable adds (SQLite)")
    print(f"{'items':>9}{'open s':>9}{'search p50 ms':>15}{'search p99 ms':>15}{'add p50 ms':>12}")
    rng = np.random.default_rng(0)
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            base_path = Path(tmp) / "base.npz"
            write_base_gallery(
                base_path,
                [f"item_{i}" for i in range(n)],
                [f"class_{i % 10}" for i in range(n)],
                rng.standard_normal((n, dim)).astype(np.float32),
            )
            start = time.perf_counter()
            gallery = EmbeddedGallery(BaseGallery.load(base_path, dim), Path(tmp) / "store")
            open_s = time.perf_counter() - start
            times = []
            for _ in range(queries):
                q = rng.standard_normal(dim).astype(np.float32)
                t = time.perf_counter()
                gallery.search(q, 10)
                times.append(1e3 * (time.perf_counter() - t))
            adds = []
            for i in range(30):
                t = time.perf_counter()
                gallery.add(Item(f"new_{i}", "x", rng.standard_normal(dim).astype(np.float32)))
                adds.append(1e3 * (time.perf_counter() - t))
            gallery.close()
        print(
            f"{n:>9}{open_s:>9.2f}{np.percentile(times, 50):>15.2f}"
            f"{np.percentile(times, 99):>15.2f}{np.percentile(adds, 50):>12.2f}"
        )


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "model.onnx")
    parser.add_argument("--gallery", type=Path, default=REPO / "models" / "gallery.npz")
    parser.add_argument("--mesh-root", type=Path, default=None, help="ModelNet10 folder")
    parser.add_argument("--endpoint", default="/classify", choices=["/classify", "/retrieve"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=200, help="per concurrency")
    parser.add_argument("--single-requests", type=int, default=50, help="10k-face mesh, c=1")
    parser.add_argument("--meshes", type=int, default=64)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--no-compare", action="store_true", help="skip batching off")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gallery-sizes", type=int, nargs="*", default=None)
    parser.add_argument("--gallery-dim", type=int, default=128)
    args = parser.parse_args(argv)

    if args.gallery_sizes:
        bench_gallery(args.gallery_sizes, args.gallery_dim)
        return 0
    if not args.model.is_file():
        raise SystemExit(f"no model at {args.model}")
    if args.mesh_root is None:
        from raymap.datasets import dataset_root

        args.mesh_root = dataset_root("modelnet10")
    sample, ten_k = pick_meshes(args.mesh_root, args.meshes, args.seed)
    uploads = [(p.name, p.read_bytes()) for p in sample]
    single = [(ten_k.name, ten_k.read_bytes())]
    faces = [off_faces(p) for p in sample]
    print(
        f"model {args.model}; {len(sample)} ModelNet10 test meshes "
        f"(faces: median {int(np.median(faces))}, max {max(faces)}); "
        f"10k-face mesh: {ten_k.name} ({off_faces(ten_k)} faces); cpu count {os.cpu_count()}"
    )
    configs = [("batching on", args.max_batch_size)]
    if not args.no_compare:
        configs.append(("batching off", 1))
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, max_batch in configs:
            env = {
                "SHAPES_MODEL_PATH": str(args.model),
                "SHAPES_GALLERY_PATH": str(args.gallery) if args.gallery.is_file() else "none",
                "SHAPES_GALLERY_DIR": str(Path(tmp) / f"gallery-{max_batch}"),
                "SHAPES_MAX_BATCH_SIZE": str(max_batch),
                "SHAPES_MAX_WAIT_MS": str(args.max_wait_ms),
                "SHAPES_MAX_PENDING": str(max(256, 2 * max(args.concurrency))),
                "SHAPES_LOG_LEVEL": "warning",
            }
            server = Server(env, Path(tmp) / f"server-{max_batch}.log")
            try:
                server.wait_ready()
                model = httpx.get(f"{server.url}/model").json()
                if not rows:
                    print(
                        f"model {model['name']} v{model['version']}, b={model['bandwidth']}, "
                        f"{model['provider']}"
                    )
                asyncio.run(drive(server.url, args.endpoint, uploads, 16, 4, "warm-up"))
                if name == "batching on":
                    run = measured(
                        server,
                        drive(
                            server.url,
                            args.endpoint,
                            single,
                            args.single_requests,
                            1,
                            f"10k faces, {name}",
                        ),
                    )
                    rows.append(run.row())
                for concurrency in args.concurrency:
                    run = measured(
                        server,
                        drive(
                            server.url,
                            args.endpoint,
                            uploads,
                            args.requests,
                            concurrency,
                            f"ModelNet10, {name}",
                        ),
                    )
                    rows.append(run.row())
            finally:
                server.stop()
    print()
    print_table(rows)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nload average at the end (1, 5, 15 min): {load} on {os.cpu_count()} cores")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
