"""Post-hoc variants the shipped fit did not take, measured on one checkpoint.

    python bench/trust_variants.py runs/so3-s1/best.pt

Prints, for the checkpoint's network (features computed once per set):

* the temperature fitted on the half of validation least like the training part (its nearest
  training descriptor farther than the median) as ``model.trust`` does (the mean top
  probability equal to the accuracy), on the same half by two other criteria (the least NLL,
  version 5's rule; the least ECE), by NLL on all of validation and on validation with every
  class weighted equally (the training split is dominated by chairs, sofas and beds; the test
  split is near balanced): the temperature and the test ECE of each, and the lowest test ECE
  any one temperature reaches (a bound, chosen on test); how well the top probability tells
  right answers from wrong ones (AUROC) on the far half and on test; how much the shipped
  rule's temperature moves over bootstrap draws of the validation meshes;
* the novelty threshold at the 95th percentile of validation novelty, plain and class-balanced:
  the share of test shapes ``known`` and of SHREC'11 shapes (choosing and reporting halves)
  flagged;
* the knn novelty AUROC with a bank of one rotated copy per training mesh (shipped) and of
  all copies, on validation vs the choosing half and test vs the reporting half;
* test accuracy and ECE when the logits are averaged over 1..``--copies`` SO3-rotated copies of
  every test mesh (test-time augmentation; the copies are built and cached once);
* the temperature fitted on the validation meshes stretched as the training copies are
  (``train_stretch``: harder shapes than the plain validation maps);
* the logits corrected for the training split's class shares (``logits - tau log prior``:
  ``tau = 1`` assumes every class equally likely), the temperature fitted by NLL on the far
  half (version 5's rule), for fixed ``tau`` and for the ``tau`` of least class-balanced
  validation NLL; and for ``tau = 1`` the temperature fitted as the shipped one;
* what ECE means at this size: the ECE of labels drawn from the shipped temperature's
  probabilities themselves (a perfectly calibrated model by construction) on as many shapes
  as the test split, and the bootstrap spread of the test ECE;

and, for a checkpoint with its post-hoc fit (``models/modelnet10.pt``):

* a temperature that depends on the novelty, ``T(n) = exp(a + b z)`` with ``z`` the novelty
  standardized on validation (``a``, ``b`` by validation NLL), and accuracy by novelty quarter
  on validation and test;
* the familiarity coordinate's front: for each weight ``w``, width and centre (the novelty
  threshold, or 0.5 or 1 standard deviations of validation novelty above it), and for two forms
  (the shipped ``[sqrt(1 - w^2) d, w k]`` and ``[sqrt(1 - w^2) d, w k, w (1 - k)]``, where a
  stranger also differs from familiar shapes in a coordinate of its own), the validation
  figures the fit chooses by and the test figures ``model.trust report`` gives (strangers'
  best matches below the 5th percentile of test queries', pair AUROC, mAP; the gallery is
  the shipped one's maps, upright ModelNet10 train and test).

Choices are made on validation and the choosing half; the test figures are only reported.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize
from torch.nn import functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model.checkpoint import build_model, read_checkpoint  # noqa: E402
from model.data import MapSet, load_maps, split_validation, subset  # noqa: E402
from model.metrics import (  # noqa: E402
    auroc,
    expected_calibration_error,
    pair_auroc,
    retrieval_metrics,
)
from model.net import SphericalCNN  # noqa: E402
from model.trust import (  # noqa: E402
    BINS,
    KEEP,
    OOD_DATASET,
    CalibrationSet,
    Invariants,
    TrustedModel,
    best_match,
    bootstrap_temperatures,
    concatenated,
    confidence_matching_temperature,
    features_of,
    first_copies,
    first_copy_mask,
    fit_temperature,
    invariants_of,
    least_like_training,
    retrieval_figures,
    shrec_halves,
    stranger_share,
    training_and_validation,
)

SPLITS = ("train", "test")
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


def class_balanced_nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The mean NLL of each class's shapes, averaged over the classes."""
    weights = torch.as_tensor(balanced_weights(labels.numpy()))
    return float((weights * F.cross_entropy(logits, labels, reduction="none")).sum())


def balanced_temperature(logits: torch.Tensor, labels: np.ndarray) -> float:
    """argmin_T of the class-balanced NLL on a fine log grid."""
    target = torch.as_tensor(labels)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 2001))
    losses = [class_balanced_nll(logits / t, target) for t in grid]
    return float(grid[int(np.argmin(losses))])


def least_ece_temperature(logits: torch.Tensor, labels: np.ndarray) -> float:
    """argmin_T of the ECE (``BINS`` bins) on a log grid."""
    grid = np.exp(np.linspace(np.log(0.3), np.log(2.0), 400))
    eces = [
        expected_calibration_error(torch.softmax(logits / t, 1).numpy(), labels, BINS) for t in grid
    ]
    return float(grid[int(np.argmin(eces))])


# Strengths of the prior correction tried (0: the training split's class mix; 1: every class
# equally likely).
PRIOR_TAUS = tuple(np.round(np.linspace(0.0, 1.0, 101), 2))


def prior_corrected(
    logits: dict[str, torch.Tensor],
    y_val: np.ndarray,
    far: np.ndarray,
    train_labels: torch.Tensor,
    y_test: np.ndarray,
) -> None:
    """Test accuracy and ECE of ``logits - tau log prior`` (``prior``: the training split's
    class shares), each ``tau``'s temperature fitted by NLL on the far half of validation
    (version 5's rule), for fixed ``tau`` and for the ``tau`` whose probabilities have the
    least class-balanced NLL on all of validation (the loss under equally likely classes); and
    ``tau = 1`` with the temperature fitted as the shipped one (mean top probability =
    accuracy on the far half)."""
    target = torch.as_tensor(y_val)
    counts = torch.bincount(train_labels, minlength=logits["val"].shape[1]).double()
    log_prior = torch.log(counts / counts.sum())

    def fitted(tau: float) -> tuple[float, float]:
        adjusted = logits["val"] - tau * log_prior
        temperature = fit_temperature(adjusted[far], target[far])
        return temperature, class_balanced_nll(adjusted / temperature, target)

    fits = {tau: fitted(tau) for tau in PRIOR_TAUS}
    chosen = min(fits, key=lambda tau: fits[tau][1])
    for name, tau in (
        ("tau 0 (version 5)", 0.0),
        ("tau 0.5", 0.5),
        ("tau 1 (uniform prior)", 1.0),
        ("tau by balanced val NLL", chosen),
    ):
        temperature, nll = fits[tau]
        p = torch.softmax((logits["test"] - tau * log_prior) / temperature, 1).numpy()
        print(
            f"prior-corrected logits, {name:23s} tau {tau:.2f} T {temperature:.3f} (balanced "
            f"val NLL {nll:.4f}): test accuracy {np.mean(p.argmax(1) == y_test):.4f}, ECE "
            f"{expected_calibration_error(p, y_test, BINS):.4f}"
        )
    # The uniform prior with the shipped rule's T (the question asked before seeds 12-14 were
    # trained; README, "Answers to trust").
    adjusted = logits["val"] - log_prior
    temperature = confidence_matching_temperature(adjusted[far], target[far])
    p = torch.softmax((logits["test"] - log_prior) / temperature, 1).numpy()
    print(
        f"prior-corrected logits, tau 1, confidence = accuracy  T {temperature:.3f}: test "
        f"accuracy {np.mean(p.argmax(1) == y_test):.4f}, ECE "
        f"{expected_calibration_error(p, y_test, BINS):.4f}"
    )


def ece_at_this_size(probabilities: np.ndarray, labels: np.ndarray, draws: int = 400) -> None:
    """The ECE a perfectly calibrated model with these probabilities shows on this many shapes
    (labels drawn from the probabilities themselves), and the test ECE's bootstrap spread."""
    rng = np.random.default_rng(0)
    cumulative = probabilities.cumsum(axis=1)
    n = len(labels)
    floor = []
    for _ in range(draws):
        drawn = (rng.random((n, 1)) > cumulative).sum(axis=1).clip(max=probabilities.shape[1] - 1)
        floor.append(expected_calibration_error(probabilities, drawn, BINS))
    boot = []
    for _ in range(draws):
        i = rng.integers(0, n, n)
        boot.append(expected_calibration_error(probabilities[i], labels[i], BINS))
    print(
        f"ECE of a perfectly calibrated model with the shipped temperature's probabilities on "
        f"{n} shapes: mean {np.mean(floor):.4f}, 95th percentile {np.percentile(floor, 95):.4f}; "
        f"test ECE {expected_calibration_error(probabilities, labels, BINS):.4f}, bootstrap "
        f"std {np.std(boot):.4f}"
    )


def temperature_spread(
    val_logits: torch.Tensor, y_val: np.ndarray, far: np.ndarray, names: list[str],
    test_logits: torch.Tensor, y_test: np.ndarray, draws: int = 200,
) -> None:  # fmt: skip
    """How far the shipped rule's temperature moves with the validation meshes drawn
    (``model.trust.bootstrap_temperatures``), and the test ECE at its 5th and 95th percentiles."""
    temperatures = bootstrap_temperatures([CalibrationSet(val_logits, y_val, names, far)], draws)
    low, high = np.percentile(temperatures, [5, 95])
    eces = [
        expected_calibration_error(torch.softmax(test_logits / t, 1).numpy(), y_test, BINS)
        for t in (low, high)
    ]
    print(
        f"shipped rule's temperature over {draws} draws of the {len(set(names))} validation "
        f"meshes: mean {np.mean(temperatures):.3f}, std {np.std(temperatures):.3f}, 5th-95th "
        f"percentile {low:.3f}-{high:.3f} (test ECE there {eces[0]:.4f}, {eces[1]:.4f})"
    )


def shrec_parts(ood: list[MapSet], names: list[str]) -> list[MapSet]:
    """The shapes of these SHREC'11 classes, from each of its splits."""
    return [subset(p, np.array([p.class_names[int(y)] in names for y in p.labels])) for p in ood]


def invariants_of_all(network: SphericalCNN, parts: list[MapSet]) -> Invariants:
    return concatenated([invariants_of(network, part) for part in parts])


def knn_novelty(bank: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return 1.0 - (unit(queries) @ unit(bank).T).max(axis=1)


def stretched_temperature(
    network: SphericalCNN,
    config: dict,
    bandwidth: int,
    test_logits: torch.Tensor,
    y_test: np.ndarray,
) -> None:
    """The temperature fitted on the validation meshes' copies stretched as in training."""
    stretch = float(config.get("train_stretch") or 0.0)
    if not stretch:
        return
    full = load_maps(
        config["dataset"], "train", bandwidth, config["train_rotation"], config["train_copies"],
        int(config.get("data_seed", 0)), progress=False, stretch=stretch,
    )  # fmt: skip
    _, stretched = split_validation(full, config["val_fraction"], config["val_seed"])
    with torch.no_grad():
        logits = network.classifier(features_of(network, stretched).float()).double()
    temperature = fit_temperature(logits, stretched.labels)
    accuracy = float((logits.argmax(1) == stretched.labels).double().mean())
    p = torch.softmax(test_logits / temperature, 1).numpy()
    print(
        f"temperature on validation stretched by up to {1 + stretch:g}: accuracy there "
        f"{accuracy:.4f}, T {temperature:.3f}, test ECE "
        f"{expected_calibration_error(p, y_test, BINS):.4f}"
    )


def logits_and_outputs(
    model: TrustedModel, shapes: Invariants
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(logits, descriptors, novelty) of ``shapes`` through ``model`` (float64)."""
    with torch.no_grad():
        logits = model.network.classifier(shapes.features)
        _, descriptors, novelty = model.head(shapes.features, shapes.summaries)
    return logits, descriptors.numpy(), novelty.numpy()


def novelty_temperature(
    val: tuple[torch.Tensor, np.ndarray], y_val: np.ndarray,
    test: tuple[torch.Tensor, np.ndarray], y_test: np.ndarray,
) -> None:  # fmt: skip
    """T(n) = exp(a + b z), z the novelty standardized on validation; fitted by NLL there."""
    centre, spread = float(np.median(val[1])), float(np.std(val[1]))

    def temperatures(novelty: np.ndarray, params: np.ndarray) -> torch.Tensor:
        z = torch.as_tensor((novelty - centre) / spread)
        return torch.exp(params[0] + params[1] * z).unsqueeze(1)

    def nll(params: np.ndarray) -> float:
        return float(F.cross_entropy(val[0] / temperatures(val[1], params), torch.as_tensor(y_val)))

    start = np.array([math.log(fit_temperature(val[0], torch.as_tensor(y_val))), 0.0])
    params = minimize(nll, start, method="Nelder-Mead").x
    eces = [
        expected_calibration_error(
            torch.softmax(logits / temperatures(novelty, params), 1).numpy(), labels, BINS
        )
        for (logits, novelty), labels in ((val, y_val), (test, y_test))
    ]
    print(
        f"novelty temperature T = exp({params[0]:.3f} + {params[1]:.3f} z): validation ECE "
        f"{eces[0]:.4f}, test ECE {eces[1]:.4f} (validation NLL {nll(params):.4f} against "
        f"{nll(start):.4f} with one T); novelty median validation {centre:.2f}, test "
        f"{np.median(test[1]):.2f}"
    )
    edges = np.quantile(val[1], [0.25, 0.5, 0.75])
    for name, (logits, novelty), labels in (("validation", val, y_val), ("test", test, y_test)):
        quarter = np.digitize(novelty, edges)
        right = logits.argmax(1).numpy() == labels
        shares = ", ".join(f"{right[quarter == q].mean():.3f}" for q in range(4))
        print(f"  {name} accuracy by quarter of validation novelty (most familiar first): {shares}")


def with_familiarity(
    descriptors: np.ndarray, familiarity: np.ndarray, weight: float, own_coordinate: bool
) -> np.ndarray:
    """``[sqrt(1 - w^2) d, w k]`` (the shipped form) or ``[..., w k, w (1 - k)]``, unit rows."""
    extra = [familiarity, 1.0 - familiarity] if own_coordinate else [familiarity]
    rows = np.column_stack([math.sqrt(1.0 - weight**2) * descriptors, *(weight * e for e in extra)])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def familiarity_front(
    plain: TrustedModel, threshold: float, shapes: dict[str, Invariants],
    val_first: np.ndarray, val_labels: np.ndarray, test_labels: np.ndarray,
    test_names: list[str], gallery_ids: list[str],
) -> None:  # fmt: skip
    """Validation figures (the fit's criteria) and test figures of the familiarity forms."""
    outputs = {name: logits_and_outputs(plain, part) for name, part in shapes.items()}
    spread = float(np.std(outputs["val"][2]))
    val_predictions = outputs["val"][0].argmax(1).numpy()[val_first]
    test_predictions = outputs["test"][0].argmax(1).numpy()
    for own, offset, weight, width in itertools.product(
        (False, True), (0.0, 0.5, 1.0), (0.2, 0.3, 0.35, 0.4, 0.45, 0.5), (0.1, 0.25)
    ):
        centre = threshold + offset * spread
        d = {
            name: with_familiarity(
                out[1], 1.0 / (1.0 + np.exp((out[2] - centre) / (width * spread))), weight, own
            )
            for name, out in outputs.items()
        }
        val = d["val"][val_first]
        strangers = stranger_share(best_match(val, d["bank"]), best_match(d["choosing"], d["bank"]))
        test = retrieval_figures(
            d["test"], test_labels, test_predictions, test_names, d["reporting"],
            d["gallery"], gallery_ids,
        )  # fmt: skip
        print(
            f"familiarity {'[w k, w (1-k)]' if own else '[w k]':14s} centre +{offset:.1f} std, "
            f"w {weight:.2f} width {width:.2f} std | validation: strangers below p05 "
            f"{strangers:.3f}, mAP "
            f"{retrieval_metrics(val, val_labels, val_predictions)['mAP']:.4f}, pair AUROC "
            f"{pair_auroc(val, val_labels):.4f} | test: strangers below p05 "
            f"{test['ood_best_match_below_test_p05']:.3f}, pair AUROC {test['pair_auroc']:.4f}, "
            f"mAP {test['retrieval']['mAP']:.4f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--copies", type=int, default=4, help="test-time rotated copies")
    args = parser.parse_args()
    state = read_checkpoint(args.checkpoint)
    network = build_model(state).eval()
    config = state["train_config"]
    b = int(config["bandwidth"])
    train, val = training_and_validation(config, progress=False)
    test = load_maps("modelnet10", "test", b, "so3", 1, 0, progress=False)
    ood = [load_maps(OOD_DATASET, s, b, "so3", 1, 0, progress=False) for s in ("train", "test")]
    choosing, reporting = shrec_halves(ood[0].class_names)

    # One pass of the network over each set: its features and block summaries.
    shapes = {
        "bank": invariants_of(network, first_copies(train)),
        "val": invariants_of(network, val),
        "test": invariants_of(network, test),
        "choosing": invariants_of_all(network, shrec_parts(ood, choosing)),
        "reporting": invariants_of_all(network, shrec_parts(ood, reporting)),
    }
    features = {name: part.features.numpy() for name, part in shapes.items()}
    features["bank_all"] = features_of(network, train).numpy()
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
    far = least_like_training(torch.as_tensor(features["val"]), torch.as_tensor(features["bank"]))
    print(f"{args.checkpoint}: validation {len(y_val)} maps, test {len(y_test)}")
    val_right = logits["val"].argmax(1).numpy() == y_val
    print(
        f"validation accuracy {val_right.mean():.4f}; its half least like training "
        f"{val_right[far].mean():.4f}, the other half {val_right[~far].mean():.4f}"
    )
    far_logits, y_far = logits["val"][far], y_val[far]
    shipped_t = confidence_matching_temperature(far_logits, torch.as_tensor(y_far))
    for name, temperature in (
        ("far half, confidence = accuracy (shipped)", shipped_t),
        ("far half, NLL (version 5)", fit_temperature(far_logits, val.labels[far])),
        ("far half, least ECE", least_ece_temperature(far_logits, y_far)),
        ("all of validation, NLL", fit_temperature(logits["val"], val.labels)),
        ("class-balanced validation, NLL", balanced_temperature(logits["val"], y_val)),
    ):
        p = torch.softmax(logits["test"] / temperature, 1).numpy()
        ece = expected_calibration_error(p, y_test, BINS)
        print(f"temperature on {name:41s} T {temperature:.3f}  test ECE {ece:.4f}")
    for name, (split_logits, labels) in (
        ("far half", (far_logits, y_far)),
        ("test", (logits["test"], y_test)),
    ):
        top = torch.softmax(split_logits / shipped_t, 1).numpy()
        right = top.argmax(1) == labels
        print(
            f"top probability tells right from wrong on the {name}: AUROC "
            f"{auroc(top.max(1)[~right], top.max(1)[right]):.4f} ({(~right).sum()} wrong); mean "
            f"top probability {top.max(1).mean():.4f}, accuracy {right.mean():.4f}"
        )
    best = least_ece_temperature(logits["test"], y_test)
    lowest = expected_calibration_error(
        torch.softmax(logits["test"] / best, 1).numpy(), y_test, BINS
    )
    print(
        f"lowest test ECE of any one temperature (chosen on test: a bound, not a fit): "
        f"{lowest:.4f} at T {best:.3f}"
    )

    temperature_spread(logits["val"], y_val, far, list(val.names), logits["test"], y_test)
    prior_corrected(logits, y_val, far, train.labels, y_test)
    ece_at_this_size(torch.softmax(logits["test"] / shipped_t, 1).numpy(), y_test)

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
    for k in range(1, args.copies + 1):
        mean_logits = torch.as_tensor(grouped[:, :k].mean(axis=1))
        p = torch.softmax(mean_logits / shipped_t, 1).numpy()
        ece = expected_calibration_error(p, labels, BINS)
        print(
            f"logits averaged over {k} rotated copies: test accuracy "
            f"{np.mean(p.argmax(1) == labels):.4f}, ECE {ece:.4f}"
        )
    stretched_temperature(network, config, b, logits["test"], y_test)

    post_hoc = state.get("post_hoc")
    if not (post_hoc and post_hoc.get("fitted")):
        return 0
    double = copy.deepcopy(network).double().eval()
    fitted = TrustedModel(double, post_hoc).double().eval()
    val_out, test_out = (logits_and_outputs(fitted, shapes[k]) for k in ("val", "test"))
    novelty_temperature((val_out[0], val_out[2]), y_val, (test_out[0], test_out[2]), y_test)

    # The shipped gallery's shapes: ModelNet10's training and test meshes, upright.
    gallery = [load_maps("modelnet10", s, b, "none", 1, 0, progress=False) for s in SPLITS]
    shapes["gallery"] = invariants_of_all(network, gallery)
    plain_descriptor = {**post_hoc["descriptor"], "familiarity": {"weight": 0.0}}
    plain = TrustedModel(double, {**post_hoc, "descriptor": plain_descriptor}).double().eval()
    first = first_copy_mask(val.names)
    familiarity_front(
        plain, float(post_hoc["novelty"]["threshold"]), shapes, first, y_val[first], y_test,
        list(test.names), [n for part in gallery for n in part.names],
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
