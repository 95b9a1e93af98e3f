"""Serving benchmark: start ``python -m service`` and drive it over HTTP with real ModelNet10
meshes, and optionally the service of another revision beside it, with the same load.

    python bench/serve.py                        # this tree only
    python bench/serve.py --against e3d3c57      # this tree and e3d3c57's, interleaved
    python bench/serve.py --requests 100 --concurrency 1 8 32 --sizes 1000 10000 100000 499999
    python bench/serve.py --gallery-sizes 5000 50000 500000   # only the gallery store

Loads: one mesh close to 10k faces at concurrency 1; ``--meshes`` random ModelNet10 test
meshes at each ``--concurrency``; and uploads of one shape subdivided to each of ``--sizes``
faces (made here, never stored) at concurrency 1. With ``--against REV`` both services run at
once and every load is cut into ``--rounds`` chunks that alternate between them (the order
flips each round), so a busy spell on a shared machine hits both alike. Printed per load and
service: requests, errors, p50/p99 latency, meshes/s, the server's CPU per request (its
process's CPU time over the load, all threads; ``WEB_CONCURRENCY`` workers' too), the mean
per-stage split the server reports; then the ratios old / new.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
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

from bench.meshgen import SIZES, closest, encode, mesh_of_size, off_faces  # noqa: E402
from bench.trees import worktree_of  # noqa: E402

STAGES = ("read", "parse", "normalize", "hull", "cast", "features", "queue", "inference", "search")


# ----------------------------------------------------------------------------- meshes


def pick_meshes(root: Path, n: int, seed: int) -> tuple[list[Path], Path]:
    """``n`` random ModelNet10 test meshes, and the test mesh with faces closest to 10,000."""
    paths = sorted(root.glob("*/test/*.off"))
    if not paths:
        raise SystemExit(f"no ModelNet10 test meshes under {root}")
    rng = np.random.default_rng(seed)
    sample = [paths[i] for i in rng.choice(len(paths), size=min(n, len(paths)), replace=False)]
    return sample, closest(root, 10_000)


# ----------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(
        self, env: dict[str, str], log: Path, tree: Path = REPO, name: str = "new"
    ) -> None:
        self.name = name
        self.tree = tree
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log
        self._log = open(log, "wb")  # noqa: SIM115
        # The tree first; the caller's own path after it (packages installed with --target).
        path = os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service"],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": path, "SHAPES_PORT": str(self.port), **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.flush()
                tail = self._log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"the server exited with {self.process.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    self._wait_idle(deadline)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("the server did not become ready")

    def _wait_idle(self, deadline: float, window_s: float = 0.5, busy_s: float = 0.05) -> None:
        """Until the server's processes use under ``busy_s`` of CPU in ``window_s``: the first
        worker answers /readyz while the others may still be loading the model, and that
        start-up CPU must not be counted as the first load's (16 workers: ~6 s of CPU)."""
        last = self.cpu_s()
        while time.monotonic() < deadline:
            time.sleep(window_s)
            now = self.cpu_s()
            if now - last < busy_s:
                return
            last = now
        raise SystemExit("the server did not become idle after start-up")

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server and its worker processes so far (/proc)."""
        return sum(_process_cpu_s(pid) for pid in _process_tree(self.process.pid))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def _process_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's worker processes), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parts = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(parts[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


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
    faces: int = 0

    def add(self, other: Run) -> None:
        """Pool another chunk of the same load into this one."""
        self.latencies_ms += other.latencies_ms
        for stage, values in other.stages.items():
            self.stages.setdefault(stage, []).extend(values)
        self.batch_sizes += other.batch_sizes
        for kind, count in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + count
        self.wall_s += other.wall_s
        self.server_cpu_s += other.server_cpu_s

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
            "faces": self.faces,
        }


async def drive(
    url: str,
    endpoint: str,
    uploads: list[tuple[str, bytes]],
    n_requests: int,
    concurrency: int,
    label: str,
    offset: int = 0,
) -> Run:
    run = Run(label, concurrency)
    counter = iter(range(offset, offset + n_requests))
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
        f"{'server':<14}{'run':<32}{'conc':>5}{'n':>6}{'err':>5}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'mesh/s':>8}{'batch':>7}{'cpu ms':>8}" + "".join(f"{s[:9]:>10}" for s in stages)
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        split = r["stages_ms"]
        print(
            f"{str(r['server'])[:13]:<14}{str(r['run'])[:31]:<32}{r['concurrency']:>5}"
            f"{r['requests']:>6}{r['errors']:>5}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
            f"{r['throughput']:>8.1f}{r['mean_batch']:>7.2f}{r['cpu_ms_per_mesh']:>8.1f}"
            + "".join(f"{split.get(s, float('nan')):>10.2f}" for s in stages)  # type: ignore[union-attr]
        )


def print_ratios(rows: list[dict[str, object]]) -> None:
    """old / new for each load: above 1, the new tree is faster (or cheaper)."""
    print(f"{'run':<32}{'conc':>5}{'p50 old/new':>13}{'cpu old/new':>13}{'mesh/s new/old':>16}")
    olds = [r for r in rows if r["server"] != "new"]
    news = [r for r in rows if r["server"] == "new"]
    for old, new in zip(olds, news, strict=True):
        print(
            f"{str(new['run'])[:31]:<32}{new['concurrency']:>5}"
            f"{_ratio(old['p50_ms'], new['p50_ms']):>13.2f}"
            f"{_ratio(old['cpu_ms_per_mesh'], new['cpu_ms_per_mesh']):>13.2f}"
            f"{_ratio(new['throughput'], old['throughput']):>16.2f}"
        )


def print_scaling(rows: list[dict[str, object]]) -> None:
    """The new tree's cost per face at each upload size, against the size nearest 10k."""
    if not rows:
        return
    reference = min(rows, key=lambda r: abs(int(r["faces"]) - 10_000))  # type: ignore[call-overload]
    print(f"\n{'faces':>9}{'p50 ms':>9}{'cpu ms':>9}{'p50 us/face':>13}{'cpu us/face':>13}"
          f"{'p50/face vs 10k':>17}{'cpu/face vs 10k':>17}")  # fmt: skip
    for r in rows:
        n = int(r["faces"])  # type: ignore[call-overload]
        per_p50 = 1e3 * float(r["p50_ms"]) / n  # type: ignore[arg-type]
        per_cpu = 1e3 * float(r["cpu_ms_per_mesh"]) / n  # type: ignore[arg-type]
        ref_p50 = 1e3 * float(reference["p50_ms"]) / int(reference["faces"])  # type: ignore[arg-type, call-overload]
        ref_cpu = 1e3 * float(reference["cpu_ms_per_mesh"]) / int(reference["faces"])  # type: ignore[arg-type, call-overload]
        print(
            f"{n:>9}{r['p50_ms']:>9.1f}{r['cpu_ms_per_mesh']:>9.1f}{per_p50:>13.3f}"
            f"{per_cpu:>13.3f}{per_p50 / ref_p50:>17.2f}{per_cpu / ref_cpu:>17.2f}"
        )


def _ratio(a: object, b: object) -> float:
    return float(a) / float(b) if float(b) else float("nan")  # type: ignore[arg-type]


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
    parser.add_argument("--model", type=Path, default=None, help="default: each tree's own")
    parser.add_argument("--gallery", type=Path, default=None, help="default: each tree's own")
    parser.add_argument("--mesh-root", type=Path, default=None, help="ModelNet10 folder")
    parser.add_argument("--endpoint", default="/classify", choices=["/classify", "/retrieve"])
    parser.add_argument("--against", default=None, metavar="REV", help="also serve this revision")
    parser.add_argument("--rounds", type=int, default=4, help="alternating chunks per load")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=200, help="per concurrency")
    parser.add_argument("--single-requests", type=int, default=100, help="10k-face mesh, c=1")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES), help="faces")
    parser.add_argument("--size-requests", type=int, default=12, help="per size")
    parser.add_argument("--meshes", type=int, default=64)
    parser.add_argument("--max-batch-size", type=int, default=32, help="1 turns batching off")
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=None, help="WEB_CONCURRENCY of ours")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gallery-sizes", type=int, nargs="*", default=None)
    parser.add_argument("--gallery-dim", type=int, default=128)
    args = parser.parse_args(argv)
    # A terminated benchmark stops its servers and removes its worktree (the ExitStack below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    if args.gallery_sizes:
        bench_gallery(args.gallery_sizes, args.gallery_dim)
        return 0
    if args.mesh_root is None:
        from raymap.datasets import dataset_root

        args.mesh_root = dataset_root("modelnet10")
    sample, ten_k = pick_meshes(args.mesh_root, args.meshes, args.seed)
    loads: list[tuple[str, list[tuple[str, bytes]], int, int, int]] = [
        (f"10k faces ({ten_k.stem})", [(ten_k.name, ten_k.read_bytes())], 1,
         args.single_requests, off_faces(ten_k)),
    ]  # fmt: skip
    uploads = [(p.name, p.read_bytes()) for p in sample]
    faces = [off_faces(p) for p in sample]
    for concurrency in args.concurrency:
        loads.append(("ModelNet10 mix", uploads, concurrency, args.requests, 0))
    for target in args.sizes:
        name, mesh = mesh_of_size(args.mesh_root, target)
        loads.append((f"upload {name}", [(f"{name}.off", encode(mesh, "off"))], 1,
                      args.size_requests, len(mesh.faces)))  # fmt: skip
    print(
        f"{len(sample)} ModelNet10 test meshes (faces: median {int(np.median(faces))}, max "
        f"{max(faces)}); 10k-face mesh {ten_k.name} ({off_faces(ten_k)} faces); sizes "
        f"{[f for *_, f in loads[len(args.concurrency) + 1 :]]}; {os.cpu_count()} cores; load "
        f"average at the start {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        trees = [("new", REPO)]
        if args.against:
            trees.insert(0, (f"old {args.against}", stack.enter_context(worktree_of(args.against))))
        servers = []
        for name, tree in trees:
            key = name.split()[0]
            env = {
                "SHAPES_MODEL_PATH": str(args.model or tree / "models" / "model.onnx"),
                "SHAPES_GALLERY_PATH": str(args.gallery or tree / "models" / "gallery.npz"),
                "SHAPES_GALLERY_DIR": str(tmp / f"gallery-{key}"),
                "SHAPES_MAX_BATCH_SIZE": str(args.max_batch_size),
                "SHAPES_MAX_WAIT_MS": str(args.max_wait_ms),
                "SHAPES_MAX_PENDING": str(max(256, 2 * max(args.concurrency))),
                "SHAPES_LOG_LEVEL": "warning",
            }
            if key == "new" and args.workers:
                env["WEB_CONCURRENCY"] = str(args.workers)
            server = Server(env, tmp / f"server-{key}.log", tree, name)
            stack.callback(server.stop)
            servers.append(server)
        for server in servers:
            server.wait_ready()
            model = httpx.get(f"{server.url}/model").json()
            print(
                f"{server.name}: {server.tree} model {model['name']} v{model['version']}, "
                f"b={model['bandwidth']}, {model['provider']}"
            )
            asyncio.run(drive(server.url, args.endpoint, uploads, 16, 4, "warm-up"))
        rows: list[dict[str, object]] = []
        for label, load_uploads, concurrency, n_requests, n_faces in loads:
            pooled = {s.name: Run(label, concurrency, faces=n_faces) for s in servers}
            chunk = -(-n_requests // args.rounds)
            for r in range(args.rounds):
                order = servers if r % 2 == 0 else servers[::-1]
                for server in order:
                    run = measured(
                        server,
                        drive(server.url, args.endpoint, load_uploads, chunk, concurrency,
                              label, offset=r * chunk),
                    )  # fmt: skip
                    pooled[server.name].add(run)
            for server in servers:
                rows.append({"server": server.name, **pooled[server.name].row()})
            print(f"  done: {label}, c={concurrency}", flush=True)
    print()
    print_table(rows)
    if args.against:
        print()
        print_ratios(rows)
    print_scaling([r for r in rows if r["server"] == "new" and str(r["run"]).startswith("upload")])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nload average at the end (1, 5, 15 min): {load} on {os.cpu_count()} cores")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
