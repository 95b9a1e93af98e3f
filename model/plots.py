"""Pictures people would rather look at than read: training curves, confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def plot_training_curves(histories: dict[str, Sequence[dict[str, float]]], path: Path) -> None:
    """Per run: training loss (left); training, validation and test accuracy (right)."""
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, history in histories.items():
        epochs = [h["epoch"] for h in history]
        loss_ax.plot(epochs, [h["train_loss"] for h in history], label=name)
        acc_ax.plot(epochs, [h["train_acc"] for h in history], "--", label=f"{name} train")
        (line,) = acc_ax.plot(epochs, [h["test_acc"] for h in history], label=f"{name} test")
        if all("val_acc" in h for h in history):
            validation = [h["val_acc"] for h in history]
            acc_ax.plot(epochs, validation, ":", color=line.get_color(), label=f"{name} val")
    loss_ax.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0.0, 1.0))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], title: str, path: Path) -> None:
    """Row-normalized confusion matrix with counts in the cells."""
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 0.5 * len(class_names) + 2
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j]:
                color = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(
    probabilities: dict[str, np.ndarray], labels: np.ndarray, bins: int, path: Path
) -> None:
    """Reliability diagram: accuracy against confidence per equal-width bin, one line per set."""
    from model.metrics import expected_calibration_error, reliability

    fig, (curve_ax, count_ax) = plt.subplots(
        2, 1, figsize=(4.8, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    curve_ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":", label="perfectly calibrated")
    width = 1.0 / bins
    for offset, (name, p) in enumerate(probabilities.items()):
        count, confidence, accuracy = reliability(p, labels, bins)
        full = count > 0
        ece = expected_calibration_error(p, labels, bins)
        curve_ax.plot(confidence[full], accuracy[full], "o-", ms=3, label=f"{name}: ECE {ece:.3f}")
        centres = (np.arange(bins) + 0.25 + 0.5 * offset) * width
        count_ax.bar(centres, count, width=0.45 * width, label=name)
    curve_ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title="reliability, SO3/SO3 test")
    count_ax.set(xlabel="confidence (max probability)", ylabel="shapes", yscale="log")
    curve_ax.grid(alpha=0.3)
    curve_ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
