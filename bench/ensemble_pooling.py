"""Pooling an ensemble's networks: the mean of their logits (what the export does) against
the mean of their probabilities, each with its temperature fitted as ``model.trust`` fits it.

    python bench/ensemble_pooling.py models/modelnet10.pt

For an ensemble checkpoint (``model.ensemble``): every member's logits on the validation
split and on the SO3-rotated test split (one copy per mesh), the temperature at which the mean
top probability equals the accuracy on the validation half least like training
(``model.trust.confidence_matching_temperature``, the shipped rule), and for each pooling the
test accuracy, mean confidence, ECE (``model.trust.BINS`` bins) and the lowest test ECE of any
one temperature (a bound, chosen on test). The softmax of the mean log-probabilities equals the
softmax of the mean logits, so the geometric mean is the export's pooling.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import brentq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model.checkpoint import build_model, read_checkpoint  # noqa: E402
from model.data import load_maps  # noqa: E402
from model.ensemble import Ensemble  # noqa: E402
from model.metrics import expected_calibration_error  # noqa: E402
from model.trust import (  # noqa: E402
    BINS,
    features_of,
    first_copies,
    least_like_training,
    training_and_validation,
)

Pooling = Callable[[torch.Tensor, float], torch.Tensor]  # (M, N, K) logits, T -> (N, K)


def mean_logits(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.softmax(logits.mean(0) / temperature, 1)


def mean_probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.softmax(logits / temperature, 2).mean(0)


POOLINGS: dict[str, Pooling] = {
    "mean of logits (exported)": mean_logits,
    "mean of probabilities": mean_probabilities,
}


def matching_temperature(pool: Pooling, logits: torch.Tensor, labels: np.ndarray) -> float:
    """The T at which the pooled mean top probability equals the pooled accuracy."""
    accuracy = float((pool(logits, 1.0).argmax(1).numpy() == labels).mean())

    def excess(log_t: float) -> float:
        return float(pool(logits, math.exp(log_t)).amax(1).mean()) - accuracy

    return math.exp(brentq(excess, math.log(0.05), math.log(20.0)))


def member_logits(network: Ensemble, features: torch.Tensor) -> torch.Tensor:
    """(M, N, K) each member's logits from the ensemble's side-by-side features."""
    with torch.no_grad():
        parts = features.split(network.sizes, dim=1)
        return torch.stack(
            [m.classifier(p) for m, p in zip(network.members, parts, strict=True)]
        ).double()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    state = read_checkpoint(args.checkpoint)
    network = build_model(state).eval()
    if not isinstance(network, Ensemble):
        print(f"{args.checkpoint} is one network, not an ensemble: nothing to pool")
        return 2
    config = state["train_config"]
    b = int(config["bandwidth"])
    train, val = training_and_validation(config, progress=False)
    test = load_maps("modelnet10", "test", b, "so3", 1, 0, progress=False)
    features = {
        name: features_of(network, part).float()
        for name, part in (("bank", first_copies(train)), ("val", val), ("test", test))
    }
    far = least_like_training(features["val"], features["bank"])
    y_val, y_test = val.labels.numpy(), test.labels.numpy()
    val_logits = member_logits(network, features["val"])[:, far]
    test_logits = member_logits(network, features["test"])
    grid = np.exp(np.linspace(math.log(0.3), math.log(2.0), 300))
    print(f"{args.checkpoint}: {len(network.members)} networks, test {len(y_test)} maps")
    for name, pool in POOLINGS.items():
        temperature = matching_temperature(pool, val_logits, y_val[far])
        p = pool(test_logits, temperature).numpy()
        bound = min(expected_calibration_error(pool(test_logits, t).numpy(), y_test, BINS)
                    for t in grid)  # fmt: skip
        print(
            f"{name:26s} T {temperature:.3f}  test accuracy {np.mean(p.argmax(1) == y_test):.4f}"
            f"  mean confidence {p.max(1).mean():.4f}  ECE "
            f"{expected_calibration_error(p, y_test, BINS):.4f}  lowest of any T {bound:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
