"""SHREC'11 as "your own data": fine-tuned from a ModelNet10 checkpoint vs trained from scratch.

    python bench/finetune_shrec.py --source models/modelnet10.pt            # 3 seeds each
    python bench/finetune_shrec.py --source X.pt --seeds 0 --jobs 1 --out runs/shrec-compare

SHREC'11 is read through the folder path (``--data=<the extracted archive>``, not its named
layout): 30 classes, 16 train / 4 test meshes each; the validation split is 10 % of the
training meshes per class (``val_fraction``), which chooses the epoch (``best.pt``). Every
run is ``python -m model.train`` in its own process (one thread, ``nice``), ``--jobs`` at a
time; each is then evaluated on the test meshes in uniformly random 3D rotations (SO3) by
``model.evaluate``. Prints one row per run and mean +- sample std over the seeds of the
accuracy and of the training time (wall and CPU seconds, from the checkpoint's history).
Re-running resumes: finished runs are only evaluated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def train(args: argparse.Namespace, mode: str, seed: int, folder: Path) -> Path:
    out = args.out / f"{mode}-s{seed}"
    settings = [
        f"--data={folder}",
        f"--bandwidth={args.bandwidth}",
        f"--train_copies={args.copies}",
        f"--seed={seed}",
        "--threads=1",
        "--progress=false",
        f"--out={out}",
    ]
    if mode == "finetuned":
        settings += [f"--init_from={args.source}", f"--epochs={args.finetune_epochs}"]
    else:
        settings += [
            "--init_from=none",
            f"--architecture={args.architecture}",
            f"--epochs={args.epochs}",
        ]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.log", "a") as log:
        subprocess.run(
            ["nice", "-n", "5", sys.executable, "-m", "model.train", *settings],
            cwd=REPO,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="the ModelNet10 checkpoint")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20, help="from scratch")
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--architecture", default="paper", help="from scratch (as the source)")
    parser.add_argument("--bandwidth", type=int, default=32)
    parser.add_argument("--copies", type=int, default=1, help="SO3 copies per training mesh")
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "shrec11-compare")
    args = parser.parse_args()
    from raymap.datasets import dataset_root

    folder = dataset_root("shrec11")  # the archive extracted once: a plain folder of folders
    runs = [(mode, seed) for seed in args.seeds for mode in ("finetuned", "scratch")]
    with ThreadPoolExecutor(args.jobs) as pool:
        outs = list(pool.map(lambda run: train(args, *run, folder), runs))

    from model.checkpoint import best_path, checkpoint_path, read_checkpoint
    from model.evaluate import evaluate_protocol

    rows: dict[str, list[tuple[float, float, float]]] = {"finetuned": [], "scratch": []}
    print("| run | seed | epochs | chosen epoch | SO3 test accuracy | wall s | CPU s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (mode, seed), out in zip(runs, outs, strict=True):
        result, _, _ = evaluate_protocol(best_path(out), "so3")
        chosen = read_checkpoint(best_path(out))["selection"]["epoch"]
        history = read_checkpoint(checkpoint_path(out))["history"]  # the whole run
        wall = float(history[-1]["train_seconds"])
        cpu = float(sum(h["epoch_cpu_seconds"] for h in history))
        rows[mode].append((float(result["accuracy"]), wall, cpu))  # type: ignore[arg-type]
        print(
            f"| {mode} | {seed} | {len(history)} | {chosen} | "
            f"{result['accuracy']:.4f} | {wall:.0f} | {cpu:.0f} |"
        )
        (out / "evaluation.json").write_text(json.dumps(result, indent=1))
    print()
    print("| | SO3 test accuracy | training wall s | training CPU s |")
    print("|---|---|---|---|")
    for mode, values in rows.items():
        array = np.asarray(values)  # (seeds, 3)
        std = array.std(axis=0, ddof=1) if len(array) > 1 else np.zeros(3)
        mean = array.mean(axis=0)
        print(
            f"| {mode} ({len(array)} seeds) | {mean[0]:.3f} ± {std[0]:.3f} | "
            f"{mean[1]:.0f} ± {std[1]:.0f} | {mean[2]:.0f} ± {std[2]:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
