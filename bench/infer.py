"""Time the network on this CPU: onnxruntime vs PyTorch eager on the same weights, in one run.

Goals: onnxruntime >= 2x faster than PyTorch eager at batch 1, and <= 5 ms per sample at
batch 1.

    PYTHONPATH=. python bench/infer.py [--checkpoint runs/modelnet10-so3-c5/checkpoint.pt]
    PYTHONPATH=. python bench/infer.py --threads 1 --profile   # + onnxruntime's profile

The network is the checkpoint's (default ``runs/modelnet10-so3-c5/checkpoint.pt``, what
``make train`` writes, when it exists)
or, without one, an untrained network of ``--architecture`` (default ``paper``); the table
says which. It is exported afresh with ``export.onnx.to_onnx`` (the graph ``python -m
export.onnx`` ships, without metadata) so both sides hold the same weights.

Timing: both sides get ``--threads`` threads (default: the cores this process may use);
onnxruntime with all graph optimizations, PyTorch eager under ``torch.inference_mode``. Each
cell is the median (and the minimum) of ``--repeats`` calls after warm-up; the two run
interleaved, one call each per round, so load from other processes hits them alike, and the
speed-up is the median of the per-round ratios. The load average is printed with the table.

"CPU ms/call" is the median CPU time of the process during a call, all its threads: with one
thread it is what a call costs on an idle core, a figure the load from other processes barely
moves; with more it also counts threads spin-waiting for work.

Multiply-adds per sample are ``model.net.multiply_adds`` (the longitude DFT and Legendre
products the graph computes, channel mixing, dense layers). The matrix-multiply throughput of
this CPU is measured by onnxruntime on one (1024 x 1024) @ (1024 x 1024) float32 MatMul with
the same threads; the model's fraction of it is 2 x multiply-adds / time / that throughput, by wall
time and by CPU time (x threads: the rate if the threads never waited for a core).

``--profile`` adds where onnxruntime's time goes at batch 1: its own profiler's kernel time per
op type, per call, and the wall time of a whole call with the profiler on (the profiler adds
to both; the gap is binding, allocation and Python, plus the profiler's own cost).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

from export.onnx import INPUT_NAME, ProbabilityModel, input_shape, to_onnx
from model.checkpoint import load_model
from model.net import SphericalCNN, multiply_adds, parameter_count, preset_config

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "runs/modelnet10-so3-c5/checkpoint.pt"
GOAL_SPEEDUP = 2.0
GOAL_MS_PER_SAMPLE = 5.0


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def ort_session(
    path: str | Path, threads: int, profile_prefix: str | None = None
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def interleaved(
    calls: dict[str, Callable[[], object]], repeats: int, warmup: int = 3
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds (this process, all threads) of each call, one of each per round."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            call()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def matmul_throughput(threads: int, size: int = 1024, repeats: int = 20) -> float:
    """FLOP/s of onnxruntime on one (size x size) @ (size x size) float32 MatMul.

    The best evidence of what the cores can do: the fastest call by wall time, or the median
    CPU time per thread when that is shorter (a call that waited for a core).
    """
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])
    b = onnx.numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((size, size), dtype=np.float32), "b"
    )
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm", [a], [c], [b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "matmul.onnx"
        onnx.save(model, path)
        session = ort_session(path, threads)
    x = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    wall, cpu = interleaved({"mm": lambda: session.run(None, {"a": x})}, repeats)
    return 2.0 * size**3 / min(min(wall["mm"]), statistics.median(cpu["mm"]) / threads)


def profile_ops(path: Path, threads: int, maps: np.ndarray, calls: int = 200) -> list[str]:
    """Markdown rows: kernel microseconds per call by op type, all kernels, the whole call."""
    with tempfile.TemporaryDirectory() as folder:
        session = ort_session(path, threads, profile_prefix=str(Path(folder) / "ort"))
        for _ in range(10):
            session.run(None, {INPUT_NAME: maps})
        start = time.perf_counter()
        for _ in range(calls):
            session.run(None, {INPUT_NAME: maps})
        wall_us = 1e6 * (time.perf_counter() - start) / calls
        events = json.loads(Path(session.end_profiling()).read_text())
    kernel_us: dict[str, float] = {}
    nodes: dict[str, int] = {}
    runs = calls + 10
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            kernel_us[op] = kernel_us.get(op, 0.0) + event["dur"] / runs
            nodes[op] = nodes.get(op, 0) + 1
    total = sum(kernel_us.values())
    rows = [
        f"| {op} | {nodes[op] // runs} | {us:.1f} | {us / total:.1%} |"
        for op, us in sorted(kernel_us.items(), key=lambda item: -item[1])
    ]
    all_nodes = sum(nodes.values()) // runs
    rows.append(f"| all kernels | {all_nodes} | {total:.1f} | 100% |")
    rows.append(f"| the whole call, profiler on | | {wall_us:.1f} | |")
    return rows


def build_network(checkpoint: Path | None, architecture: str) -> tuple[SphericalCNN, str]:
    if checkpoint is not None and checkpoint.is_file():
        network, state = load_model(checkpoint)
        history = state.get("history") or []
        epochs = len(history) if isinstance(history, list) else "?"
        return network, f"trained: {checkpoint} ({epochs} epochs)"
    torch.manual_seed(0)
    network = SphericalCNN(preset_config(architecture)).eval()
    missing = f" ({checkpoint} does not exist)" if checkpoint is not None else ""
    return network, f"UNTRAINED '{architecture}' network, random weights{missing}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--architecture", default="paper", help="when there is no checkpoint")
    parser.add_argument("--threads", type=int, default=cores())
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--profile", action="store_true", help="onnxruntime's time by op type")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    network, source = build_network(args.checkpoint, args.architecture)
    reference = ProbabilityModel(network).eval()
    macs = multiply_adds(network)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        onnx.save(to_onnx(network), path)
        session = ort_session(path, args.threads)
        profile = (
            profile_ops(
                path,
                args.threads,
                np.random.default_rng(0).standard_normal(
                    (1, *input_shape(network)), dtype=np.float32
                ),
            )
            if args.profile
            else []
        )
    peak = matmul_throughput(args.threads)

    rows = []
    generator = np.random.default_rng(0)
    for batch in (int(b) for b in args.batches.split(",") if b):
        maps = generator.standard_normal((batch, *input_shape(network)), dtype=np.float32)
        tensor = torch.from_numpy(maps)

        def run_torch(x: torch.Tensor = tensor) -> object:
            with torch.inference_mode():
                return reference(x)

        def run_ort(x: np.ndarray = maps) -> object:
            return session.run(None, {INPUT_NAME: x})

        repeats = max(5, args.repeats if batch <= 8 else args.repeats // 3)
        times, cpu = interleaved({"onnxruntime": run_ort, "torch": run_torch}, repeats)
        ratios = [t / o for t, o in zip(times["torch"], times["onnxruntime"], strict=True)]
        rows.append((batch, repeats, times, cpu, statistics.median(ratios)))

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"model: {source}")
    print(
        f"{network.config.bandwidth=}, {parameter_count(network):,} parameters, "
        f"{macs / 1e6:.1f} M multiply-adds per sample"
    )
    print(
        f"CPU: {platform.processor() or platform.machine()}, {cores()} cores, "
        f"{args.threads} threads each side; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"torch {torch.__version__}, onnxruntime {ort.__version__}"
    )
    print(f"onnxruntime MatMul 1024^3 throughput: {peak / 1e9:.1f} GFLOP/s\n")
    print(
        "| batch | calls | onnxruntime ms/call median (min) | ms/sample | CPU ms/call | "
        "torch eager ms/call median (min) | ms/sample | CPU ms/call | speed-up (median of ratios) "
        "| ORT GFLOP/s by wall (by CPU) | of MatMul peak by wall (by CPU) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    verdicts = []
    for batch, repeats, times, cpu, speedup in rows:
        ort_median, ort_min = statistics.median(times["onnxruntime"]), min(times["onnxruntime"])
        t_median, t_min = statistics.median(times["torch"]), min(times["torch"])
        flops = 2.0 * macs * batch / ort_median
        flops_cpu = 2.0 * macs * batch * args.threads / statistics.median(cpu["onnxruntime"])
        print(
            f"| {batch} | {repeats} | {1e3 * ort_median:.2f} ({1e3 * ort_min:.2f}) | "
            f"{1e3 * ort_median / batch:.2f} | {1e3 * statistics.median(cpu['onnxruntime']):.2f} | "
            f"{1e3 * t_median:.2f} ({1e3 * t_min:.2f}) | {1e3 * t_median / batch:.2f} | "
            f"{1e3 * statistics.median(cpu['torch']):.2f} | {speedup:.2f}x | "
            f"{flops / 1e9:.1f} ({flops_cpu / 1e9:.1f}) | "
            f"{flops / peak:.1%} ({flops_cpu / peak:.1%}) |"
        )
        if batch == 1:
            cpu_ms = 1e3 * statistics.median(cpu["onnxruntime"])
            verdicts.append(
                f"goal speed-up >= {GOAL_SPEEDUP:g}x at batch 1: {speedup:.2f}x "
                f"{'PASS' if speedup >= GOAL_SPEEDUP else 'FAIL'}"
            )
            verdicts.append(
                f"goal <= {GOAL_MS_PER_SAMPLE:g} ms/sample at batch 1: wall median "
                f"{1e3 * ort_median:.2f} ms "
                f"{'PASS' if 1e3 * ort_median <= GOAL_MS_PER_SAMPLE else 'FAIL'}"
                f" (min {1e3 * ort_min:.2f} ms, CPU {cpu_ms:.2f} ms per call; with the load average"
                f" at {load[0]:.1f} on {cores()} cores the median includes waiting for a core)"
            )
    if profile:
        print(f"\nonnxruntime at batch 1, {args.threads} thread(s), profiler on, per call:\n")
        print("| op type | nodes | kernel us | of all kernels |")
        print("|---|---:|---:|---:|")
        print("\n".join(profile))
    print()
    print("\n".join(verdicts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
