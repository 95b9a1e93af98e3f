"""onnxruntime vs PyTorch on real spherical maps, at several batch sizes.

    python -m export.parity CHECKPOINT MODEL.onnx --dataset modelnet10 [--batches 1,7,32]

The maps are a cached split of ``model.data.load_maps``, by default the test split the
checkpoint was evaluated on (its dataset, test rotation and seed, as in ``model.train``).
The ONNX side goes through ``service.runtime.Runtime`` on the CPU, the path the service
takes, metadata checks included.
Prints one row per batch size; exits 1 unless every row passes: max |Δprobability| <
1e-4, the same top-1 class everywhere and descriptor cosine > 0.9999.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from export.onnx import ProbabilityModel
from model.checkpoint import load_model
from model.data import load_maps
from model.net import SphericalCNN

PROBABILITY_ATOL = 1e-4
DESCRIPTOR_MIN_COSINE = 0.9999
BATCHES = (1, 7, 32)


@dataclass(frozen=True)
class Parity:
    """Agreement of onnxruntime with PyTorch over ``samples`` maps run ``batch`` at a time."""

    batch: int
    samples: int
    max_probability_error: float
    top1_disagreements: int
    min_descriptor_cosine: float
    max_descriptor_norm_error: float
    onnx_top1: np.ndarray  # (N,) class indices
    torch_top1: np.ndarray  # (N,)

    @property
    def passed(self) -> bool:
        return (
            self.max_probability_error < PROBABILITY_ATOL
            and self.top1_disagreements == 0
            and self.min_descriptor_cosine > DESCRIPTOR_MIN_COSINE
        )


def measure(
    network: SphericalCNN,
    run_onnx: Callable[[np.ndarray], tuple[np.ndarray, ...]],
    maps: np.ndarray,
    batch: int,
    post_hoc: dict[str, object] | None = None,
) -> Parity:
    """Run ``maps`` (N, C, 2b, 2b) through both, ``batch`` maps per call (the last may be fewer)."""
    reference = ProbabilityModel(network.eval(), post_hoc).eval()
    prob_error, norm_error, min_cosine = 0.0, 0.0, 1.0
    onnx_top1, torch_top1 = [], []
    for start in range(0, len(maps), batch):
        chunk = np.ascontiguousarray(maps[start : start + batch], dtype=np.float32)
        probabilities, descriptor = run_onnx(chunk)[:2]  # (B, K), (B, D)
        with torch.no_grad():
            expected_p, expected_d, _ = (t.numpy() for t in reference(torch.from_numpy(chunk)))
        prob_error = max(prob_error, float(np.abs(probabilities - expected_p).max()))
        norms = np.linalg.norm(descriptor.astype(np.float64), axis=1)
        cosine = (descriptor.astype(np.float64) * expected_d).sum(axis=1) / (
            norms * np.linalg.norm(expected_d.astype(np.float64), axis=1)
        )
        min_cosine = min(min_cosine, float(cosine.min()))
        norm_error = max(norm_error, float(np.abs(norms - 1.0).max()))
        onnx_top1.append(probabilities.argmax(axis=1))
        torch_top1.append(expected_p.argmax(axis=1))
    onnx_labels, torch_labels = np.concatenate(onnx_top1), np.concatenate(torch_top1)
    return Parity(
        batch=batch,
        samples=len(maps),
        max_probability_error=prob_error,
        top1_disagreements=int((onnx_labels != torch_labels).sum()),
        min_descriptor_cosine=min_cosine,
        max_descriptor_norm_error=norm_error,
        onnx_top1=onnx_labels,
        torch_top1=torch_labels,
    )


def format_table(rows: list[Parity], labels: np.ndarray | None = None) -> str:
    lines = [
        "| batch | maps | max abs dprob | top-1 differ | min desc cosine | max abs(|desc|-1) "
        "| top-1 acc ORT / torch | pass |",
        "|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        accuracy = "-"
        if labels is not None:
            accuracy = (
                f"{(r.onnx_top1 == labels).mean():.4f} / {(r.torch_top1 == labels).mean():.4f}"
            )
        lines.append(
            f"| {r.batch} | {r.samples} | {r.max_probability_error:.2e} | "
            f"{r.top1_disagreements} | 1 - {1.0 - r.min_descriptor_cosine:.1e} | "
            f"{r.max_descriptor_norm_error:.1e} | {accuracy} | {'yes' if r.passed else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.parity", description=__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("model", type=Path, help="the exported model.onnx")
    parser.add_argument(
        "--dataset",
        choices=("modelnet10", "shrec11"),
        default=None,
        help="default: the checkpoint's",
    )
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--rotation", default=None, help="default: the checkpoint's test rotation")
    parser.add_argument("--seed", type=int, default=None, help="default: the checkpoint's seed")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--limit", type=int, default=None, help="use the first N maps only")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    parser.add_argument("--torch-threads", type=int, default=0, help="0: PyTorch's default")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)

    from service.runtime import Runtime

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    network, state = load_model(args.checkpoint)
    train_config = state.get("train_config") or {}
    assert isinstance(train_config, dict)
    dataset = args.dataset or train_config.get("dataset", "modelnet10")
    rotation = args.rotation or train_config.get("test_rotation", "so3")
    seed = args.seed if args.seed is not None else int(train_config.get("seed", 0))
    data = load_maps(
        dataset,
        args.split,
        network.config.bandwidth,
        rotation,
        1,
        seed,
        progress=args.progress,
    )
    maps, labels = data.maps.numpy(), data.labels.numpy()
    if args.limit is not None:
        maps, labels = maps[: args.limit], labels[: args.limit]
    if list(data.class_names) != list(state["class_names"]):  # type: ignore[call-overload]
        print("warning: the dataset's classes differ from the checkpoint's", file=sys.stderr)
        labels = None
    runtime = Runtime(args.model, device="cpu", intra_op_threads=args.threads, warmup=False)
    rows = [
        measure(network, runtime.run, maps, int(batch), state.get("post_hoc"))
        for batch in args.batches.split(",")
        if batch
    ]
    print(
        f"{args.model} ({runtime.info.name} {runtime.info.version}) vs {args.checkpoint}: "
        f"{dataset} {args.split} maps, rotation {rotation}, seed {seed}, "
        f"onnxruntime {runtime.provider}"
    )
    print(format_table(rows, labels))
    passed = all(r.passed for r in rows)
    print(
        f"criteria: max abs dprob < {PROBABILITY_ATOL:g}, no top-1 difference, "
        f"cosine > {DESCRIPTOR_MIN_COSINE}: {'PASS' if passed else 'FAIL'}"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
