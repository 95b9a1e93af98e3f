"""Evaluate trained checkpoints: ``python -m model.evaluate --z=CKPT --so3=CKPT --out=DIR``.

Reports on the test split the paper's protocols, written train/test:

* z/z     the model trained with rotations about the vertical axis, tested on the same;
* z/SO3   that model tested on uniformly rotated shapes (no augmentation seen);
* SO3/SO3 the model trained on uniformly rotated shapes, tested on the same;

and retrieval with the descriptor on the SO3 test shapes (see ``model.metrics``). Writes
``results.json``, ``results.md`` (a table for the README), the training curves and the
confusion matrices as PNGs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import load_model
from model.data import MapSet, batches, load_maps
from model.metrics import accuracy, confusion_matrix, retrieval_metrics
from model.plots import plot_confusion, plot_training_curves


def predict(
    model: torch.nn.Module, data: MapSet, batch_size: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, K), descriptors (N, D)) in float64 numpy."""
    probabilities, descriptors = [], []
    with torch.no_grad():
        for index in batches(len(data), batch_size):
            logits, descriptor = model(data.maps[index])
            probabilities.append(torch.softmax(logits, dim=1).double().numpy())
            descriptors.append(descriptor.double().numpy())
    return np.concatenate(probabilities), np.concatenate(descriptors)


def evaluate_protocol(
    checkpoint: Path, test_rotation: str, seed: int = 0
) -> tuple[dict[str, object], np.ndarray, list[str]]:
    model, state = load_model(checkpoint)
    config = state["train_config"]
    data = load_maps(config["dataset"], "test", config["bandwidth"], test_rotation, 1, seed)
    began = time.perf_counter()
    probabilities, descriptors = predict(model, data)
    seconds = time.perf_counter() - began
    labels = data.labels.numpy()
    predictions = probabilities.argmax(axis=1)
    n_classes = len(data.class_names)
    matrix = confusion_matrix(labels, predictions, n_classes)
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    result: dict[str, object] = {
        "checkpoint": str(checkpoint),
        "train_rotation": config["train_rotation"],
        "test_rotation": test_rotation,
        "n_test": len(labels),
        "accuracy": accuracy(labels, predictions),
        "class_mean_accuracy": float(per_class.mean()),
        "per_class_accuracy": dict(zip(data.class_names, per_class.tolist(), strict=True)),
        "retrieval": retrieval_metrics(descriptors, labels, predictions),
        "inference_seconds": seconds,
        "train_minutes": state["seconds"] / 60 if "seconds" in state else None,
        "epochs": len(state.get("history", [])),
    }
    return result, matrix, data.class_names


def markdown_table(results: dict[str, dict[str, object]]) -> str:
    lines = [
        "| protocol (train/test) | accuracy | class-mean acc. | mAP | P@N | R@N | F1@N | NDCG |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        ret = r["retrieval"]
        assert isinstance(ret, dict)
        lines.append(
            f"| {name} | {r['accuracy']:.4f} | {r['class_mean_accuracy']:.4f} | "
            f"{ret['mAP']:.4f} | {ret['P@N']:.4f} | {ret['R@N']:.4f} | {ret['F1@N']:.4f} | "
            f"{ret['NDCG']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--z", type=Path, help="checkpoint trained with train_rotation=z")
    parser.add_argument("--so3", type=Path, help="checkpoint trained with train_rotation=so3")
    parser.add_argument("--out", type=Path, default=Path("runs/evaluation"))
    args = parser.parse_args(argv)
    if args.z is None and args.so3 is None:
        parser.error("give --z and/or --so3")
    args.out.mkdir(parents=True, exist_ok=True)
    protocols = []
    if args.z is not None:
        protocols += [("z/z", args.z, "z"), ("z/SO3", args.z, "so3")]
    if args.so3 is not None:
        protocols += [("SO3/SO3", args.so3, "so3")]
    results: dict[str, dict[str, object]] = {}
    histories = {}
    for name, checkpoint, test_rotation in protocols:
        result, matrix, class_names = evaluate_protocol(checkpoint, test_rotation)
        results[name] = result
        slug = name.replace("/", "-").lower()
        plot_confusion(
            matrix,
            class_names,
            f"{name}: accuracy {result['accuracy']:.3f}",
            args.out / f"confusion-{slug}.png",
        )
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        histories[f"trained {result['train_rotation']}"] = state.get("history", [])
        print(f"{name}: accuracy {result['accuracy']:.4f}, retrieval {result['retrieval']}")
    plot_training_curves(histories, args.out / "training-curves.png")
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    table = markdown_table(results)
    (args.out / "results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
