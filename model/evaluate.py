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
from model.data import MapSet, batches, dataset_of, load_maps
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
    dataset, root = dataset_of(config)
    data = load_maps(
        dataset, "test", config["bandwidth"], test_rotation, 1, seed, progress=False, root=root
    )
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


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def pick(history: list[dict[str, float]], prefix: str = "") -> dict[str, float]:
    """The epoch a validation split picks (highest accuracy, then lowest loss) and its test
    accuracy; ``prefix='raw_'`` for the raw weights of an averaged run."""
    rows = [h for h in history if f"{prefix}val_acc" in h]
    best = max(rows, key=lambda h: (h[f"{prefix}val_acc"], -h[f"{prefix}val_loss"]))
    return {
        "epoch": best["epoch"],
        "val_acc": best[f"{prefix}val_acc"],
        "test_acc": best[f"{prefix}test_acc"],
    }


def summarize(runs: list[dict[str, object]]) -> dict[str, object]:
    """Mean and std over runs (seeds) of each figure of ``evaluate_protocol``."""
    figures: dict[str, list[float]] = {"accuracy": [], "class_mean_accuracy": []}
    for run in runs:
        figures["accuracy"].append(float(run["accuracy"]))  # type: ignore[arg-type]
        figures["class_mean_accuracy"].append(float(run["class_mean_accuracy"]))  # type: ignore[arg-type]
        retrieval = run["retrieval"]
        assert isinstance(retrieval, dict)
        for key, value in retrieval.items():
            figures.setdefault(key, []).append(float(value))
    return {key: mean_std(values) for key, values in figures.items()}


def markdown_table(summaries: dict[str, dict[str, object]], n_runs: dict[str, int]) -> str:
    keys = ("accuracy", "class_mean_accuracy", "mAP", "P@N", "R@N", "F1@N", "NDCG")
    lines = [
        "| protocol (train/test) | seeds | accuracy | class-mean acc. | mAP | P@N | R@N | F1@N "
        "| NDCG |",
        "|---|---:|---|---|---|---|---|---|---|",
    ]
    for name, summary in summaries.items():
        cells = []
        for key in keys:
            mean, std = summary[key]  # type: ignore[misc]
            cells.append(f"{mean:.4f} ± {std:.4f}")
        lines.append(f"| {name} | {n_runs[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def averaging_table(histories: dict[str, list[list[dict[str, float]]]]) -> str:
    """Test accuracy at the validation-picked epoch, averaged weights against raw ones."""
    lines = [
        "| protocol | weights | picked epoch | validation acc. | test acc. |",
        "|---|---|---|---|---|",
    ]
    for name, runs in histories.items():
        for label, prefix in (("EMA", ""), ("raw", "raw_")):
            picks = [pick(h, prefix) for h in runs if any(f"{prefix}val_acc" in r for r in h)]
            if not picks:
                continue
            cells = [mean_std([p[k] for p in picks]) for k in ("epoch", "val_acc", "test_acc")]
            lines.append(
                f"| {name} | {label} | {cells[0][0]:.1f} | {cells[1][0]:.4f} ± {cells[1][1]:.4f} "
                f"| {cells[2][0]:.4f} ± {cells[2][1]:.4f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--z", type=Path, nargs="+", default=[], help="checkpoints trained with rotation z"
    )
    parser.add_argument(
        "--so3", type=Path, nargs="+", default=[], help="checkpoints trained with rotation so3"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/evaluation"))
    args = parser.parse_args(argv)
    if not args.z and not args.so3:
        parser.error("give --z and/or --so3")
    args.out.mkdir(parents=True, exist_ok=True)
    protocols = []
    if args.z:
        protocols += [("z/z", args.z, "z"), ("z/SO3", args.z, "so3")]
    if args.so3:
        protocols += [("SO3/SO3", args.so3, "so3")]
    results: dict[str, list[dict[str, object]]] = {}
    summaries: dict[str, dict[str, object]] = {}
    curves: dict[str, list[dict[str, float]]] = {}
    histories: dict[str, list[list[dict[str, float]]]] = {}
    for name, checkpoints, test_rotation in protocols:
        results[name] = []
        for index, checkpoint in enumerate(checkpoints):
            result, matrix, class_names = evaluate_protocol(checkpoint, test_rotation)
            results[name].append(result)
            print(f"{name} {checkpoint}: accuracy {result['accuracy']:.4f}, {result['retrieval']}")
            if index == 0:
                slug = name.replace("/", "-").lower()
                plot_confusion(
                    matrix,
                    class_names,
                    f"{name}: accuracy {result['accuracy']:.3f} ({checkpoint.parent.name})",
                    args.out / f"confusion-{slug}.png",
                )
            if test_rotation == result["train_rotation"]:
                state = torch.load(checkpoint, map_location="cpu", weights_only=False)
                history = state.get("history", [])
                curves[f"{name} {checkpoint.parent.name}"] = history
                histories.setdefault(name, []).append(history)
        summaries[name] = summarize(results[name])
    plot_training_curves(curves, args.out / "training-curves.png")
    (args.out / "results.json").write_text(
        json.dumps({"runs": results, "mean_std": summaries}, indent=1)
    )
    table = markdown_table(summaries, {k: len(v) for k, v in results.items()})
    table += "\n" + averaging_table(histories)
    (args.out / "results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
