"""Post-hoc variants the shipped fit did not take, measured on one checkpoint.

    python bench/trust_variants.py runs/so3-s1/best.pt

Prints, for the checkpoint's network (features computed once):

* the temperature fitted on validation as ``model.trust`` does, with every class weighted
  equally (the training split is dominated by chairs, sofas and beds; the test split is near
  balanced), and on the half of validation least like the training part (its nearest
  training descriptor farther than the median): the temperature and the test ECE of each;
* the novelty threshold at the 95th percentile of validation novelty, plain and class-balanced:
  the share of test shapes ``known`` and of SHREC'11 shapes (choosing and reporting halves)
  flagged;
* the knn novelty AUROC with a bank of one rotated copy per training mesh (shipped) and of
  all copies, on validation vs the choosing half and test vs the reporting half;
* test accuracy and ECE when the logits are averaged over 1..``--copies`` SO3-rotated copies of
  every test mesh (test-time augmentation; the copies are built and cached once).

Choices are made on validation and the choosing half; the test figures are only reported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model.checkpoint import build_model, read_checkpoint  # noqa: E402
from model.data import load_maps, split_validation, subset  # noqa: E402
from model.metrics import auroc, expected_calibration_error  # noqa: E402
from model.trust import (  # noqa: E402
    BINS,
    KEEP,
    OOD_DATASET,
    features_of,
    first_copies,
    fit_temperature,
    shrec_halves,
)

TTA_SEED = 7  # rotations of the test copies, other than the test split's own (seed 0)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    counts = np.bincount(labels)
    weights = 1.0 / counts[labels]
    return weights / weights.sum()


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    return float(values[order][np.searchsorted(np.cumsum(weights[order]), q)])


def balanced_temperature(logits: torch.Tensor, labels: np.ndarray) -> float:
    """argmin_T of the class-balanced NLL on a fine log grid."""
    weights = torch.as_tensor(balanced_weights(labels))
    target = torch.as_tensor(labels)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 2001))
    losses = [
        float((weights * F.cross_entropy(logits / t, target, reduction="none")).sum()) for t in grid
    ]
    return float(grid[int(np.argmin(losses))])


def knn_novelty(bank: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return 1.0 - (unit(queries) @ unit(bank).T).max(axis=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--copies", type=int, default=4, help="test-time rotated copies")
    args = parser.parse_args()
    state = read_checkpoint(args.checkpoint)
    network = build_model(state).eval()
    config = state["train_config"]
    b = int(config["bandwidth"])
    full = load_maps(
        config["dataset"], "train", b, config["train_rotation"], config["train_copies"],
        int(config.get("data_seed", 0)), progress=False,
    )  # fmt: skip
    train, val = split_validation(full, config["val_fraction"], config["val_seed"])
    test = load_maps("modelnet10", "test", b, "so3", 1, 0, progress=False)
    ood = [load_maps(OOD_DATASET, s, b, "so3", 1, 0, progress=False) for s in ("train", "test")]
    choosing, reporting = shrec_halves(ood[0].class_names)

    def shrec_half(names: list[str]) -> np.ndarray:
        parts = [
            subset(p, np.array([p.class_names[int(y)] in names for y in p.labels])) for p in ood
        ]
        return np.concatenate([features_of(network, p).numpy() for p in parts])

    features = {
        "bank": features_of(network, first_copies(train)).numpy(),
        "bank_all": features_of(network, train).numpy(),
        "val": features_of(network, val).numpy(),
        "test": features_of(network, test).numpy(),
        "choosing": shrec_half(choosing),
        "reporting": shrec_half(reporting),
    }
    y_val, y_test = val.labels.numpy(), test.labels.numpy()
    with torch.no_grad():
        logits = {
            k: network.classifier(torch.as_tensor(features[k]).float()).double()
            for k in ("val", "test")
        }

    queries = ("val", "test", "choosing", "reporting")
    scores = {
        bank: {k: knn_novelty(features[bank], features[k]) for k in queries}
        for bank in ("bank", "bank_all")
    }
    # The validation half least like the training part: its shapes' nearest training
    # descriptor is farther than the median's (ModelNet's training split holds near copies of
    # many of its shapes, which makes validation easier than unseen shapes).
    far = scores["bank"]["val"] > np.median(scores["bank"]["val"])
    print(f"{args.checkpoint}: validation {len(y_val)} maps, test {len(y_test)}")
    val_right = logits["val"].argmax(1).numpy() == y_val
    print(
        f"validation accuracy {val_right.mean():.4f}; its half least like training "
        f"{val_right[far].mean():.4f}, the other half {val_right[~far].mean():.4f}"
    )
    for name, temperature in (
        ("validation (shipped)", fit_temperature(logits["val"], val.labels)),
        ("class-balanced validation", balanced_temperature(logits["val"], y_val)),
        ("validation far half", fit_temperature(logits["val"][far], val.labels[far])),
    ):
        p = torch.softmax(logits["test"] / temperature, 1).numpy()
        ece = expected_calibration_error(p, y_test, BINS)
        print(f"temperature on {name:26s} T {temperature:.3f}  test ECE {ece:.4f}")

    novelty = scores["bank"]  # the shipped score
    for name, threshold in (
        ("plain (shipped)", float(np.quantile(novelty["val"], KEEP))),
        ("class-balanced", weighted_quantile(novelty["val"], balanced_weights(y_val), KEEP)),
    ):
        print(
            f"threshold {name:16s} {threshold:.4f}: test known "
            f"{np.mean(novelty['test'] <= threshold):.3f}, SHREC flagged choosing "
            f"{np.mean(novelty['choosing'] > threshold):.3f} / reporting "
            f"{np.mean(novelty['reporting'] > threshold):.3f}"
        )
    for bank, score in scores.items():
        print(
            f"knn with {len(features[bank]):6d} training descriptors: AUROC validation vs "
            f"choosing {auroc(score['val'], score['choosing']):.4f}, test vs reporting "
            f"{auroc(score['test'], score['reporting']):.4f}"
        )

    copies = load_maps("modelnet10", "test", b, "so3", args.copies, TTA_SEED, progress=False)
    order = np.argsort(np.array(copies.names), kind="stable")  # each mesh's copies together
    with torch.no_grad():
        per_copy = network.classifier(features_of(network, copies).float()).double().numpy()
    n = len(copies) // args.copies
    grouped = per_copy[order].reshape(n, args.copies, -1)
    labels = copies.labels.numpy()[order].reshape(n, args.copies)[:, 0]
    temperature = fit_temperature(logits["val"], val.labels)
    for k in range(1, args.copies + 1):
        mean_logits = torch.as_tensor(grouped[:, :k].mean(axis=1))
        p = torch.softmax(mean_logits / temperature, 1).numpy()
        ece = expected_calibration_error(p, labels, BINS)
        print(
            f"logits averaged over {k} rotated copies: test accuracy "
            f"{np.mean(p.argmax(1) == labels):.4f}, ECE {ece:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
