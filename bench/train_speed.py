"""The training step's speed on a device, and bfloat16 autocast against float32.

    python bench/train_speed.py                                  # CUDA when there, else the CPU
    python bench/train_speed.py --device cpu --bandwidths 16 --steps 10 --threads 1
    python bench/train_speed.py --maps maps.npz                  # + autocast parity

1. **Step time.** The shipped recipe's network (``--architecture``, PReLU, dropout 0.3) at each
   ``--bandwidths``, Adam, the EMA average, batch 32: ``model.step.training_step``, the step
   ``model.train`` runs, followed by the EMA update and the loss read back, as in training.
   On CUDA with and without bfloat16 autocast (training's ``--amp``, on by default there); on
   the CPU in float32 (autocast is CUDA-only in training). The maps are random, of the input's
   shape, held on the host like the training split, so each step copies its batch to the
   device as training does; a step's work does not depend on the maps' values. Prints the
   median and fastest step after ``--warmup`` steps, the process's CPU time per step (the
   host's share: on the CPU the whole step, on CUDA launching and waiting), maps per second,
   the training part of one epoch of the shipped recipe (``--epoch-maps``: ModelNet10's 3,535
   training meshes less validation, 10 copies each; the end-of-epoch evaluation not included)
   and the device's peak memory.
2. **Processes at once** (``--processes N ...``): N such processes on one device together, as
   when several seeds train side by side, each with the host's cores shared out; the maps per
   second of all of them against the first count given (``--processes 1 ...``: one process).
3. **Autocast parity** (``--maps FILE.npz``, CUDA only): the shipped model's logits
   (``--checkpoint``) on real maps in float32 and under bfloat16 autocast: top-1 agreement, the
   largest probability difference and each one's accuracy. When FILE does not exist it is
   written here from the cached ModelNet10 SO3 test maps (``model.data``, which needs the mesh
   stack), stored as float16 to travel to a machine without the dataset; both sides of the
   comparison read the same stored maps.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model.checkpoint import build_model, read_checkpoint  # noqa: E402
from model.net import SphericalCNN, parameter_count, preset_config  # noqa: E402
from model.step import make_average, training_step  # noqa: E402

BATCH = 32  # the recipe's --batch_size
EPOCH_MAPS = 35_350  # the shipped recipe's training maps per epoch (runs/*/best.pt recipe)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_times(
    device: torch.device,
    bandwidth: int,
    autocast: bool,
    steps: int,
    warmup: int,
    architecture: str,
    ready: Callable[[], object] | None = None,
) -> tuple[list[float], float, int, float]:
    """Wall seconds of each timed step, the process's CPU seconds over them all, the parameter
    count and the peak device memory in MiB; ``ready`` is called between warm-up and timing."""
    torch.manual_seed(0)
    config = preset_config(architecture, dropout=0.3, activation="prelu", bandwidth=bandwidth)
    model = SphericalCNN(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    average = make_average(model, "ema", 0.999)
    assert average is not None
    side = 2 * bandwidth
    count = (steps + warmup) * BATCH
    maps = torch.randn(count, config.in_channels, side, side)
    labels = torch.randint(0, config.n_classes, (count,))
    if device.type == "cuda":
        maps = maps.pin_memory()
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    times, cpu = [], 0.0
    for i in range(steps + warmup):
        rows = slice(i * BATCH, (i + 1) * BATCH)
        if i == warmup and ready is not None:
            ready()
        synchronize(device)
        began, began_cpu = time.perf_counter(), time.process_time()
        loss, _ = training_step(
            model,
            optimizer,
            maps[rows].to(device, non_blocking=True),
            labels[rows].to(device, non_blocking=True),
            label_smoothing=0.1,
            autocast=autocast,
        )
        average.update_parameters(model)
        loss.item()  # training reads the loss back every step
        synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - began)
            cpu += time.process_time() - began_cpu
    if device.type != "cuda":
        return times, cpu, parameter_count(model), float("nan")
    return times, cpu, parameter_count(model), torch.cuda.max_memory_allocated(device) / 2**20


def _process(
    results: Queue, ready: Callable[[], object], threads: int, args: tuple[object, ...]
) -> None:
    torch.set_num_threads(threads)
    times, cpu, _, _ = step_times(*args, ready=ready)  # type: ignore[arg-type]
    results.put((times, cpu))


def concurrent_processes(
    device: torch.device,
    bandwidth: int,
    autocast: bool,
    counts: list[int],
    args: argparse.Namespace,
) -> None:
    """N training processes on one device at once (N seeds trained side by side): each one's
    median step and the maps per second of all together, timed from a common start."""
    cores = os.cpu_count() or 1
    print(
        f"\n{'bf16 autocast' if autocast else 'float32'} at bandwidth {bandwidth}, N processes "
        f"at once on {device.type} ({cores} host cores shared, {args.steps} timed steps each):\n"
        "| processes | threads each | median ms/step (each) | maps/s (all) | against row 1 "
        "| epoch of each (train part) |\n|---:|---:|---:|---:|---:|---:|"
    )
    context = multiprocessing.get_context("spawn")
    single = None
    for count in counts:
        threads = max(1, cores // count)
        results: Queue = context.Queue()
        barrier = context.Barrier(count)
        row = (device, bandwidth, autocast, args.steps, args.warmup, args.architecture)
        workers = [
            context.Process(target=_process, args=(results, barrier.wait, threads, row))
            for _ in range(count)
        ]
        for worker in workers:
            worker.start()
        done = [results.get() for _ in workers]
        for worker in workers:
            worker.join()
        median = statistics.median(t for times, _ in done for t in times)
        rate = count * args.steps * BATCH / max(sum(times) for times, _ in done)
        single = single or rate
        print(
            f"| {count} | {threads} | {median * 1e3:.2f} | {rate:,.0f} | {rate / single:.1f}x "
            f"| {median * (args.epoch_maps // BATCH):,.0f} s |",
            flush=True,
        )


def write_maps(path: Path, limit: int | None) -> None:
    from model.data import load_maps  # the mesh stack: only where the maps are written

    test = load_maps("modelnet10", "test", 16, "so3", 1, 0, progress=False)
    rows = slice(None, limit)
    np.savez(
        path,
        maps=test.maps[rows].numpy().astype(np.float16),
        labels=test.labels[rows].numpy(),
    )
    print(f"wrote {path}: {len(test.labels[rows])} ModelNet10 SO3 test maps (float16)")


def autocast_parity(checkpoint: Path, maps_path: Path, device: torch.device) -> None:
    stored = np.load(maps_path)
    maps = torch.from_numpy(stored["maps"].astype(np.float32))
    labels = torch.from_numpy(stored["labels"])
    model = build_model(read_checkpoint(checkpoint), device)
    outputs = {}
    with torch.no_grad():
        for autocast in (False, True):
            chunks = []
            for rows in torch.arange(len(maps)).split(128):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    logits, _ = model(maps[rows].to(device))
                chunks.append(F.softmax(logits.float(), dim=1).cpu())
            outputs[autocast] = torch.cat(chunks)
    exact, autocast = outputs[False], outputs[True]
    agree = float((exact.argmax(1) == autocast.argmax(1)).float().mean())
    top_shift = float((exact.max(1).values - autocast.max(1).values).abs().mean())
    print(
        f"\nautocast parity, {checkpoint} on {len(maps)} maps ({maps_path}), {device}:\n"
        f"| | float32 | bfloat16 autocast |\n|---|---:|---:|\n"
        f"| accuracy | {float((exact.argmax(1) == labels).float().mean()):.4f} | "
        f"{float((autocast.argmax(1) == labels).float().mean()):.4f} |\n"
        f"top-1 agreement {agree:.4f}; max |dp| {float((exact - autocast).abs().max()):.4f}; "
        f"mean |dp| of the top class {top_shift:.5f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when there), cuda or cpu")
    parser.add_argument("--bandwidths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--architecture", default="small")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's choice)")
    parser.add_argument("--epoch-maps", type=int, default=EPOCH_MAPS)
    parser.add_argument("--checkpoint", type=Path, default=REPO / "models" / "modelnet10.pt")
    parser.add_argument("--maps", type=Path, help="NPZ of maps and labels for autocast parity")
    parser.add_argument("--limit", type=int, help="maps to write into --maps (default all)")
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        help="also time N training processes at once (the first bandwidth; autocast on CUDA)",
    )
    args = parser.parse_args()

    if args.maps is not None and not args.maps.exists():
        write_maps(args.maps, args.limit)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"torch {torch.__version__} on {where}; {torch.get_num_threads()} CPU threads; "
        f"batch {BATCH}; {args.steps} timed steps after {args.warmup}; one epoch = "
        f"{args.epoch_maps // BATCH} steps ({args.epoch_maps} maps)\n"
    )
    print("| bandwidth | grid | parameters | precision | median ms/step | fastest "
          "| CPU ms/step | maps/s | epoch (train part) | peak MiB |")  # fmt: skip
    print("|---:|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for bandwidth in args.bandwidths:
        for autocast in (False, True) if device.type == "cuda" else (False,):
            times, cpu, parameters, peak = step_times(
                device, bandwidth, autocast, args.steps, args.warmup, args.architecture
            )
            median = statistics.median(times)
            epoch = median * (args.epoch_maps // BATCH)
            print(
                f"| {bandwidth} | {2 * bandwidth}x{2 * bandwidth} | {parameters:,} "
                f"| {'bf16 autocast' if autocast else 'float32'} | {median * 1e3:.2f} "
                f"| {min(times) * 1e3:.2f} | {cpu / len(times) * 1e3:.2f} "
                f"| {BATCH / median:,.0f} | {epoch:,.0f} s "
                f"| {'-' if np.isnan(peak) else f'{peak:,.0f}'} |",
                flush=True,
            )
    if args.processes:
        concurrent_processes(
            device, args.bandwidths[0], device.type == "cuda", args.processes, args
        )
    if args.maps is not None and device.type == "cuda":
        autocast_parity(args.checkpoint, args.maps, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
