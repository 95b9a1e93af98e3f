"""GPU inference in one call: install, prove CUDA, check it against the CPU, time it, serve it.

    python bench/gpu.py            # on a fresh machine with an NVIDIA GPU (about 5-8 minutes)
    python bench/gpu.py --cpu      # the smoke test CI runs: every step, on the CPU, quickly

Steps, each printed as it ends, then one table:

1. ``pip install .[gpu]`` (onnxruntime-gpu with its CUDA and cuDNN wheels) into the running
   interpreter's environment, replacing the CPU onnxruntime (the two wheels overwrite each
   other). Skipped with ``--cpu`` and ``--no-install``.
2. Prove the provider: the session must report ``CUDAExecutionProvider`` first, and one
   profiled call must show every matrix product (MatMul, Gemm and their fused forms) run by
   it; the table of where each op ran is printed; anything else exits non-zero.
   (onnxruntime-gpu otherwise falls back to the CPU quietly, e.g. when a CUDA library is
   missing; it keeps shape arithmetic on the CPU by design.)
3. Parity: the maps of the ModelNet10 test meshes (all 899 unless ``--limit``, at the model's
   bandwidth) through the device session and a CPU session: max |Δp| <= 1e-4 and no top-1
   change, else non-zero exit. ``--maps FILE.npy`` reads the maps from a file (written here
   when it does not exist yet), for a machine without the dataset.
4. Inference time at batch 1, 32 and 256: plain ``run`` and, on CUDA, with I/O binding
   (input copied once per call, outputs left on the device until read).
5. ``bench/serve.py`` with ``SHAPES_DEVICE=cuda`` (``cpu`` with ``--cpu``) and one worker
   process per core (``--workers``, ``WEB_CONCURRENCY``), its table printed; ``--mesh-root``
   names the ModelNet10 folder it draws its uploads from.

With ``--cpu`` the "device" is the CPU provider: the same code runs end to end on a few maps
and a short serving load, so CI knows the script works; its figures are not GPU figures.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
MAX_DP, BATCHES = 1e-4, (1, 32, 256)
# The ops that carry the model's arithmetic (the SHT and the layers as matrix products):
# each must run on the device under test. Shape arithmetic may stay on the CPU.
COMPUTE_OPS = frozenset({"MatMul", "FusedMatMul", "Gemm", "FusedGemm", "Einsum", "Conv"})


def step(name: str, start: float) -> None:
    print(f"[{time.perf_counter() - start:6.1f} s] {name}", flush=True)


def install_gpu_extra() -> None:
    """onnxruntime-gpu in place of onnxruntime, in this interpreter's environment."""
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip[:3], "uninstall", "--yes", "--quiet", "onnxruntime"], check=False)
    subprocess.run([*pip, f"{REPO}[gpu]"], check=True)


def session(model: Path, provider: str, threads: int | None = None, profile: bool = False):
    import onnxruntime as ort  # here, not above: install_gpu_extra may replace it first

    from service.runtime import choose_providers, with_options

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_profiling = profile
    if threads:
        options.intra_op_num_threads = threads
    # CUDA with the CPU after it (onnxruntime keeps shape arithmetic there by design), as the
    # service asks for it: its CUDA libraries loaded first, its provider options.
    providers = choose_providers("cuda" if provider == CUDA else "cpu")
    return ort.InferenceSession(str(model), options, providers=with_options(providers))


def prove_provider(model: Path, provider: str) -> tuple[str, str]:
    """The provider the session really holds and where its nodes ran, from one profiled call;
    exits if the session is not on ``provider`` or any compute node ran elsewhere."""
    import onnxruntime as ort

    if provider == CUDA and CUDA not in ort.get_available_providers():
        raise SystemExit(
            f"FAIL: onnxruntime {ort.__version__} has no CUDA provider "
            f"(available: {ort.get_available_providers()}); is onnxruntime-gpu installed?"
        )
    try:
        profiled = session(model, provider, profile=True)
    except Exception as exc:
        raise SystemExit(f"FAIL: no {provider} session: {exc}") from exc
    held = profiled.get_providers()
    if held[0] != provider:
        raise SystemExit(f"FAIL: asked for {provider}, onnxruntime gave {held} (a CPU fallback)")
    spec = profiled.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in spec.shape]
    profiled.run(None, {spec.name: np.zeros(shape, np.float32)})
    trace = Path(profiled.end_profiling())
    ran = collections.Counter(
        (event["args"]["op_name"], event["args"]["provider"])
        for event in json.loads(trace.read_text())
        if event.get("cat") == "Node"
        and event["name"].endswith("_kernel_time")
        and "provider" in event.get("args", {})
    )
    trace.unlink()
    elsewhere = sorted(op for op, where in ran if where != provider and op in COMPUTE_OPS)
    placed = ", ".join(f"{op} {where.removesuffix('ExecutionProvider')} x{n}"
                       for (op, where), n in sorted(ran.items()))  # fmt: skip
    if not ran or elsewhere:
        raise SystemExit(f"FAIL: compute nodes not on {provider}: {elsewhere or 'no trace'}")
    return held[0], placed


def test_maps(bandwidth: int, limit: int | None, saved: Path | None) -> np.ndarray:
    """(N, C, 2b, 2b) float32: the ModelNet10 test meshes through raymap, or the maps saved
    in ``saved`` (written there first when it does not exist)."""
    import raymap
    from raymap.datasets import dataset_root

    if saved is not None and saved.is_file():
        maps = np.load(saved)
        if maps.shape[-1] != 2 * bandwidth:
            raise SystemExit(f"FAIL: {saved} holds maps of {maps.shape}, the model b = {bandwidth}")
        return maps[:limit]
    paths = sorted(dataset_root("modelnet10").glob("*/test/*.off"))[:limit]
    maps = np.stack([raymap.spherical_map(raymap.load_mesh_file(p), bandwidth) for p in paths])
    if saved is not None:
        np.save(saved, maps)
    return maps


def probabilities(sess, maps: np.ndarray, batch: int = 32) -> np.ndarray:
    name = sess.get_inputs()[0].name
    out = [
        sess.run(["probabilities"], {name: maps[i : i + batch]})[0]
        for i in range(0, len(maps), batch)
    ]
    return np.concatenate(out)


def time_calls(call, repeats: int) -> float:
    """Median ms of ``call`` after 3 warm-up calls."""
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(1e3 * (time.perf_counter() - start))
    return float(np.median(times))


def timings(sess, maps: np.ndarray, device: str, repeats: int) -> list[dict[str, object]]:
    import onnxruntime as ort

    name = sess.get_inputs()[0].name
    rows: list[dict[str, object]] = []
    for batch in BATCHES:
        x = np.ascontiguousarray(np.resize(maps, (batch, *maps.shape[1:])), dtype=np.float32)
        plain = time_calls(lambda x=x: sess.run(None, {name: x}), repeats)
        bound = None
        if device == CUDA:
            binding = sess.io_binding()

            def run_bound(x: np.ndarray = x, binding=binding) -> None:
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
                for output in ("probabilities", "descriptor"):
                    binding.bind_output(output, "cuda", 0)
                sess.run_with_iobinding(binding)
                binding.copy_outputs_to_cpu()

            bound = time_calls(run_bound, repeats)
        rows.append({"batch": batch, "ms_per_call": plain, "ms_per_call_iobinding": bound})
    return rows


def model_bandwidth(model: Path) -> int:
    meta = session(model, CPU).get_modelmeta()
    return int(json.loads(meta.custom_metadata_map["bandwidth"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="smoke test on the CPU provider")
    parser.add_argument("--no-install", action="store_true", help="onnxruntime-gpu is there")
    parser.add_argument("--model", type=Path, default=REPO / "models" / "model.onnx")
    parser.add_argument("--limit", type=int, default=None, help="test maps (default all)")
    parser.add_argument("--maps", type=Path, default=None, help="test maps saved as .npy")
    parser.add_argument("--mesh-root", type=Path, default=None, help="bench/serve.py's")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--serve-requests", type=int, default=None)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="service worker processes"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    device = CPU if args.cpu else CUDA
    limit = args.limit if args.limit is not None else (16 if args.cpu else None)
    repeats = args.repeats or (1 if args.cpu else 50)

    if not (args.cpu or args.no_install):
        install_gpu_extra()
        step("installed the gpu extra", start)
    import onnxruntime as ort

    provider, placed = prove_provider(args.model, device)
    step(f"onnxruntime {ort.__version__}: the session holds {provider}; nodes ran: {placed}", start)

    bandwidth = model_bandwidth(args.model)
    maps = test_maps(bandwidth, limit, args.maps)
    step(f"{len(maps)} ModelNet10 test maps at b = {bandwidth}", start)
    on_device = probabilities(session(args.model, device), maps)
    on_cpu = probabilities(session(args.model, CPU), maps)
    max_dp = float(np.abs(on_device - on_cpu).max())
    top1_changes = int((on_device.argmax(1) != on_cpu.argmax(1)).sum())
    step(f"parity {device} vs CPU: max |dp| {max_dp:.2e}, top-1 changes {top1_changes}", start)
    if max_dp > MAX_DP or top1_changes:
        raise SystemExit(f"FAIL: parity: max |dp| {max_dp:.2e} (<= {MAX_DP}), {top1_changes}")

    rows = timings(session(args.model, device), maps, device, repeats)
    step("inference timed", start)

    serve = [
        sys.executable, str(REPO / "bench" / "serve.py"), "--model", str(args.model), "--sizes",
    ]  # fmt: skip
    if args.workers > 1:
        serve += ["--workers", str(args.workers)]
    if args.mesh_root is not None:
        serve += ["--mesh-root", str(args.mesh_root)]
    if args.cpu:
        n = args.serve_requests or 8
        serve += ["--concurrency", "1", "4", "--requests", str(n), "--single-requests", str(n)]
        serve += ["--rounds", "1", "--meshes", "8"]
    else:
        n = args.serve_requests or 200
        serve += ["--concurrency", "1", "32", "--requests", str(n)]
    env = {**os.environ, "SHAPES_DEVICE": "cpu" if args.cpu else "cuda"}
    served = subprocess.run(serve, env=env, cwd=REPO, capture_output=True, text=True)
    print(served.stdout[-4000:], served.stderr[-2000:], sep="\n")
    step(f"bench/serve.py, SHAPES_DEVICE={env['SHAPES_DEVICE']}, {args.workers} worker(s)", start)

    print(f"\ndevice: {device_name(device)}; onnxruntime {ort.__version__}; {provider}")
    print(f"parity on {len(maps)} test maps: max |dp| {max_dp:.2e}, top-1 changes {top1_changes}")
    print(f"{'batch':>6}{'ms/call':>10}{'ms/map':>10}{'ms/call, I/O binding':>23}")
    for row in rows:
        batch, ms, bound = row["batch"], float(row["ms_per_call"]), row["ms_per_call_iobinding"]
        shown = f"{bound:.2f}" if bound is not None else "-"
        print(f"{batch:>6}{ms:>10.2f}{ms / int(batch):>10.3f}{shown:>23}")  # type: ignore[call-overload]
    print(f"serving: exit {served.returncode}; total {time.perf_counter() - start:.0f} s")
    if args.cpu:
        print("(--cpu smoke test: CPU figures, not GPU figures)")
    return served.returncode


def device_name(device: str) -> str:
    if device != CUDA:
        import platform

        return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    try:
        return subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "an NVIDIA GPU (nvidia-smi unavailable)"


if __name__ == "__main__":
    sys.exit(main())
