"""The recipe's temperature fitted on several validation splits at once (cross-fitting).

    python bench/cross_fit_temperature.py models/modelnet10.pt E1.pt A.pt,B.pt,C.pt

Each checkpoint is a network or an ensemble (``model.ensemble``; comma-joined runs are taken
as one, ``model.trust.read_group``) of one recipe, trained with a
validation split of its own (``--val_seed``), so that together they have held out more meshes
than one split's 393. For each checkpoint: its split's seed, the accuracy on the half of its
split least like its training part (``model.trust.calibration_set_of``), the shipped rule's T
there (``model.trust.confidence_matching_temperature``) and that T's spread over bootstrap draws
of the split's meshes (``model.trust.bootstrap_temperatures``). Then the same rule on every
split's half at once (``model.trust.pooled_temperature``), its spread (meshes drawn within each
split), and each checkpoint's SO3/SO3 test accuracy and ECE (``model.trust.BINS`` bins) at its
own T and at the pooled T. The test split is only reported on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model.checkpoint import build_model  # noqa: E402
from model.data import load_maps  # noqa: E402
from model.metrics import expected_calibration_error  # noqa: E402
from model.trust import (  # noqa: E402
    BINS,
    CalibrationSet,
    bootstrap_temperatures,
    calibration_set_of,
    features_of,
    pooled_temperature,
    read_group,
)


def spread(temperatures: np.ndarray) -> str:
    low, high = np.percentile(temperatures, [5, 95])
    return f"std {np.std(temperatures):.3f} (5th-95th percentile {low:.3f}-{high:.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="CHECKPOINT or CHECKPOINT,CHECKPOINT,...")
    parser.add_argument("--draws", type=int, default=200, help="bootstrap draws")
    args = parser.parse_args()

    sets: list[CalibrationSet] = []
    test_logits: list[torch.Tensor] = []
    test_labels = np.zeros(0)
    for path in args.checkpoints:
        state = read_group(path)
        network = build_model(state).eval()
        config = state["train_config"]
        sets.append(calibration_set_of(state, progress=False))
        test = load_maps(
            "modelnet10", "test", int(config["bandwidth"]), "so3", 1, 0, progress=False
        )
        with torch.no_grad():
            test_logits.append(network.classifier(features_of(network, test).float()).double())
        test_labels = test.labels.numpy()
        half = sets[-1]
        right = half.logits.argmax(1).numpy() == half.labels
        print(
            f"{path}: val_seed {config['val_seed']}, {len(set(half.meshes))} validation meshes, "
            f"accuracy {right[half.used].mean():.4f} on the half least like training; T "
            f"{pooled_temperature([half]):.3f}, "
            f"{spread(bootstrap_temperatures([half], args.draws))}"
        )

    meshes = {m for s in sets for m in np.asarray(s.meshes)[s.used]}
    pooled = pooled_temperature(sets)
    print(
        f"pooled over {len(sets)} splits ({len(meshes)} distinct meshes in their halves): T "
        f"{pooled:.3f}, {spread(bootstrap_temperatures(sets, args.draws))}"
    )
    for path, own_set, logits in zip(args.checkpoints, sets, test_logits, strict=True):
        own = pooled_temperature([own_set])
        figures = []
        for name, temperature in (("own T", own), ("pooled T", pooled)):
            p = torch.softmax(logits / temperature, 1).numpy()
            ece = expected_calibration_error(p, test_labels, BINS)
            figures.append(f"{name} {temperature:.3f}: test ECE {ece:.4f}")
        accuracy = float(np.mean(logits.argmax(1).numpy() == test_labels))
        print(f"{path}: test accuracy {accuracy:.4f}; " + "; ".join(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
