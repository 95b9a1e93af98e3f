"""Answers to trust, fitted post hoc on the validation split: ``python -m model.trust fit|report``.

``fit CHECKPOINT... --out FILE`` (torch) takes the checkpoint best on validation (one
checkpoint: that one, an ensemble's too; with ``--ensemble``: all of them as one network,
``model.ensemble``) and fits, on the run's own validation split
(``model.data.split_validation`` with the run's ``val_fraction``/``val_seed``), and writes the
checkpoint again with a ``post_hoc`` entry that ``export.onnx`` bakes into the graph:

* a temperature ``T``, the one at which the mean top probability equals the accuracy on the
  validation half least like the training part (``least_like_training``; ModelNet's training
  split holds near copies of many of its shapes, so the other half is right more often than a
  new shape is): probabilities are ``softmax(logits / T)``;
* a descriptor transform applied before the L2 normalization, one of ``none``, ``centre``
  (subtract the training mean) or ``whiten`` (then multiply by ``(cov + eps I)^(-1/2)``),
  statistics from the training part of the split; chosen by how far below in-class queries an
  out-of-class query's best match lands (validation queries against the training part, SHREC'11
  choosing half as strangers), among those that keep validation mAP;
* a novelty score (higher = less like the training classes), chosen by AUROC of validation
  shapes against the choosing half of SHREC'11 (rotated) among: ``msp`` (1 - max calibrated
  probability), ``max_logit``, ``energy`` (-T logsumexp(logits / T)), ``mahalanobis`` (squared
  distance of the features to the nearest class mean, shared within-class covariance),
  ``knn`` (1 - cosine to the nearest training descriptor), sums of two of them, and
  ``layers``: ``knn`` plus the same distance for every block's rotation-invariant summary
  (``knn:<block>``: the channels' spherical means and RMS, ``SphericalBlock.summary``; one bank
  per block), each standardized on validation; the threshold is the ``keep`` quantile
  (default 0.95) of the validation scores, so that share of in-class shapes stays ``known``;
* block summaries appended to the retrieval descriptor (``TrustedModel.with_summaries``: the
  first block's, the first branch's or every block's, with weight ``a``), chosen by retrieval
  mAP among the SHREC'11 choosing half's shapes (classes the network never saw, as a user's
  own are), among those that keep validation mAP (within 0.01) and pair AUROC (within 0.001)
  of the descriptor without them;
* a familiarity coordinate appended to the descriptor (``TrustedModel.with_familiarity``:
  ``w * sigmoid((threshold - novelty) / width)``, then normalized), so that a stranger's best
  match scores below a known shape's: weight and width chosen like the transform, by the share
  of strangers' best matches below the 5th percentile of validation queries', among those that
  keep validation mAP (within 0.01) and pair AUROC (within 0.001) of the descriptor without it.

``report --model ONNX --gallery NPZ`` (onnxruntime, the shipped files) prints the test-split
figures: accuracy, ECE before/after the temperature, novelty AUROC and the shares at the
threshold (ModelNet10 test, SO3, against the SHREC'11 reporting half, rotated), the retrieval
separation against the gallery, pair AUROC and mAP; writes ``trust.json`` and the reliability
diagram into ``--out``.

SHREC'11's 30 classes are split into a choosing and a reporting half by :func:`shrec_halves`.
"""

from __future__ import annotations

import argparse
import collections
import copy
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import brentq
from torch import nn
from torch.nn import functional as F

from model.checkpoint import build_model, read_checkpoint, save_checkpoint
from model.data import MapSet, batches, load_maps, split_validation, subset
from model.ensemble import ensemble_state
from model.metrics import auroc, expected_calibration_error, pair_auroc, retrieval_metrics
from model.net import SphericalCNN

OOD_DATASET = "shrec11"
OOD_SEED = 11
SCORES = ("msp", "max_logit", "energy", "mahalanobis", "knn")
# "knn:<block>": 1 - cosine of a block's summary (SphericalBlock.summary) to the nearest training
# shape's; the "layers" candidate sums it over every block with the descriptor's knn.
LAYER_KNN = "knn:"
# The descriptor's familiarity coordinate tried by the fit: weights (0 = none) and the width of
# its step from familiar to stranger, in standard deviations of validation novelty.
FAMILIARITY_WEIGHTS = (0.0, 0.2, 0.3, 0.4, 0.5)
FAMILIARITY_WIDTHS = (1.0, 0.5, 0.25, 0.1)
# How much validation mAP and pair AUROC a retrieval choice (transform, block summaries,
# familiarity coordinate) may cost against the descriptor without it.
MAP_TOLERANCE = 0.01
PAIR_AUROC_TOLERANCE = 0.001
# Block summaries in the retrieval descriptor tried by the fit: the weight a of each block's
# cosine against the descriptor's (``TrustedModel.with_summaries``), for three sets of blocks.
SUMMARY_WEIGHTS = (0.1, 0.2, 0.4, 1.0)
KEEP = 0.95
BINS = 15
# The temperature is fitted on this share of validation: the shapes least like the training part.
CALIBRATION_SHARE = 0.5
# Eigenvalue floor of the whitening and Mahalanobis covariances, relative to their mean.
SHRINKAGE = (0.01, 0.1)


def shrec_halves(class_names: Sequence[str], seed: int = OOD_SEED) -> tuple[list[str], list[str]]:
    """(choosing, reporting) halves of the out-of-class classes, drawn once with ``seed``."""
    names = sorted(class_names)
    order = np.random.default_rng(seed).permutation(len(names))
    half = len(names) // 2
    return sorted(names[i] for i in order[:half]), sorted(names[i] for i in order[half:])


class TrustedModel(nn.Module):
    """The network with its post-hoc fit: (calibrated probabilities, descriptor, novelty).

    This is the module ``export.onnx`` traces. With ``post_hoc=None`` it is the plain network:
    temperature 1, no descriptor transform, novelty = energy with no threshold.
    """

    def __init__(self, network: SphericalCNN, post_hoc: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.network = network
        d = network.config.descriptor_size
        post_hoc = post_hoc or identity_post_hoc(d)
        self.post_hoc = post_hoc
        self.temperature = float(post_hoc["temperature"])
        descriptor = post_hoc["descriptor"]
        self.register_buffer("mean", _tensor(descriptor["mean"]))
        self.register_buffer("matrix", _tensor(descriptor["matrix"]))
        # Blocks whose summaries join the retrieval descriptor (``with_summaries``).
        summaries = descriptor.get("summaries") or {"blocks": [], "weight": 0.0}
        self.retrieval_blocks = list(summaries["blocks"])
        self.retrieval_weight = float(summaries["weight"])
        familiarity = descriptor.get("familiarity") or {"weight": 0.0}
        self.familiarity_weight = float(familiarity["weight"])
        self.familiarity_centre = float(familiarity.get("centre", 0.0))
        self.familiarity_scale = float(familiarity.get("scale", 1.0))
        novelty = post_hoc["novelty"]
        self.components = list(novelty["components"])
        self.register_buffer("loc", _tensor(novelty["loc"]))
        self.register_buffer("scale", _tensor(novelty["scale"]))
        empty = torch.zeros(0, d)
        self.register_buffer("projection", _tensor(novelty.get("projection", empty)))
        self.register_buffer("class_means", _tensor(novelty.get("class_means", empty)))
        self.register_buffer("bank", _tensor(novelty.get("bank", empty)))
        # One bank per block summary a "knn:<block>" component reads (buffers layer_bank_<i>);
        # a fit's other banks are not copied into the module.
        self.summary_index = {name: i for i, name in enumerate(network.summary_names())}
        unknown = [b for b in self.retrieval_blocks if b not in self.summary_index]
        if unknown:
            raise ValueError(f"no block {unknown}; the network has {list(self.summary_index)}")
        self.layer_bank_index: dict[str, int] = {}
        banks = novelty.get("layer_banks", {})
        for name in self.components:
            if not name.startswith(LAYER_KNN):
                continue
            block = name[len(LAYER_KNN) :]
            if block not in self.summary_index or block not in banks:
                raise ValueError(
                    f"no bank for block {block!r}; the network has {list(self.summary_index)}, "
                    f"the fit {list(banks)}"
                )
            self.layer_bank_index[block] = len(self.layer_bank_index)
            self.register_buffer(
                f"layer_bank_{self.layer_bank_index[block]}", _tensor(banks[block])
            )
        self.needs_summaries = bool(self.retrieval_blocks) or any(
            c.startswith(LAYER_KNN) for c in self.components
        )

    @property
    def descriptor_size(self) -> int:
        return descriptor_size(self.network.config.descriptor_size, self.post_hoc)

    def head(
        self, features: torch.Tensor, summaries: Sequence[torch.Tensor] = ()
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features (N, D) before normalization and the block summaries -> the three outputs."""
        logits = self.network.classifier(features)
        probabilities = torch.softmax(logits / self.temperature, dim=1)
        descriptor = F.normalize((features - self.mean) @ self.matrix.T, dim=1)
        parts = [
            self.score(name, logits, features, descriptor, summaries) for name in self.components
        ]
        novelty = ((torch.stack(parts, dim=1) - self.loc) / self.scale).sum(dim=1)
        retrieval = self.with_summaries(descriptor, summaries)
        return probabilities, self.with_familiarity(retrieval, novelty), novelty

    def with_summaries(
        self, descriptor: torch.Tensor, summaries: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """The unit descriptor followed by ``sqrt(a)`` times each retrieval block's unit
        summary, normalized: the cosine of two shapes becomes ``(cos_d + a * sum_b cos_b) /
        (1 + a B)``. The early blocks describe local geometry that the classes do not absorb,
        so shapes of classes the network never saw are told apart where their descriptors
        all look like some furniture class. No blocks: the descriptor as it is."""
        if not self.retrieval_blocks:
            return descriptor
        scale = math.sqrt(self.retrieval_weight)
        parts = [descriptor] + [
            scale * F.normalize(summaries[self.summary_index[block]], dim=1)
            for block in self.retrieval_blocks
        ]
        return F.normalize(torch.cat(parts, dim=1), dim=1)

    def with_familiarity(self, descriptor: torch.Tensor, novelty: torch.Tensor) -> torch.Tensor:
        """The unit descriptor with one more coordinate, ``w * k``, where the familiarity
        ``k = sigmoid((centre - novelty) / scale)`` is ~1 for a shape like the training classes
        and ~0 for a stranger (the rest scaled by ``sqrt(1 - w^2)``), normalized again. Two
        familiar shapes score ``(1 - w^2) cos + w^2``; a stranger against a familiar shape
        ``sqrt(1 - w^2) cos``: its best match scores below a known shape's. ``w = 0``: no
        coordinate."""
        w = self.familiarity_weight
        if not w:
            return descriptor
        known = torch.sigmoid((self.familiarity_centre - novelty) / self.familiarity_scale)
        extended = torch.cat([math.sqrt(1.0 - w * w) * descriptor, w * known.unsqueeze(1)], dim=1)
        return F.normalize(extended, dim=1)

    def score(
        self,
        name: str,
        logits: torch.Tensor,
        features: torch.Tensor,
        descriptor: torch.Tensor,
        summaries: Sequence[torch.Tensor] = (),
    ) -> torch.Tensor:
        t = self.temperature
        if name == "msp":
            return 1.0 - torch.softmax(logits / t, dim=1).amax(dim=1)
        if name == "max_logit":
            return -logits.amax(dim=1)
        if name == "energy":
            return -t * torch.logsumexp(logits / t, dim=1)
        if name == "mahalanobis":
            projected = features @ self.projection.T  # (N, D)
            gaps = projected.unsqueeze(1) - self.class_means.unsqueeze(0)  # (N, K, D)
            return gaps.pow(2).sum(dim=2).amin(dim=1)
        if name == "knn":
            return 1.0 - (descriptor @ self.bank.T).amax(dim=1)
        if name.startswith(LAYER_KNN):
            block = name[len(LAYER_KNN) :]
            summary = F.normalize(summaries[self.summary_index[block]], dim=1)
            bank = getattr(self, f"layer_bank_{self.layer_bank_index[block]}")
            return 1.0 - (summary @ bank.T).amax(dim=1)
        raise ValueError(f"unknown novelty score {name!r}; known: {SCORES}, {LAYER_KNN}<block>")

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.needs_summaries:
            return self.head(*self.network.features_and_summaries(maps))
        return self.head(self.network.features(maps))


def descriptor_size(network_size: int, post_hoc: dict[str, Any] | None) -> int:
    """The exported descriptor's length: the network's, the retrieval blocks' summaries, and
    the familiarity coordinate."""
    descriptor = (post_hoc or {}).get("descriptor", {})
    familiarity = descriptor.get("familiarity") or {}
    summaries = descriptor.get("summaries") or {}
    return network_size + int(summaries.get("size", 0)) + (1 if familiarity.get("weight") else 0)


def _tensor(values: object) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


def identity_post_hoc(descriptor_size: int) -> dict[str, Any]:
    """No fit: temperature 1, the plain descriptor, energy as novelty, no threshold."""
    return {
        "temperature": 1.0,
        "descriptor": {
            "kind": "none",
            "mean": np.zeros(descriptor_size),
            "matrix": np.eye(descriptor_size),
        },
        "novelty": {"components": ["energy"], "loc": [0.0], "scale": [1.0], "threshold": None},
        "fitted": False,
    }


def trust_threshold(post_hoc: dict[str, Any] | None) -> float | None:
    """The novelty threshold of a fit (the contract's ``novelty_threshold``), None without."""
    if post_hoc is None or post_hoc["novelty"].get("threshold") is None:
        return None
    return float(post_hoc["novelty"]["threshold"])


def trust_metadata(post_hoc: dict[str, Any] | None) -> dict[str, Any]:
    """A summary of the fit for people and ``report`` (the ONNX ``trust`` metadata)."""
    if post_hoc is None:
        return {
            "fitted": False,
            "temperature": 1.0,
            "descriptor_transform": "none",
            "novelty_score": "energy",
        }
    novelty = post_hoc["novelty"]
    fitted_on = post_hoc.get("fitted_on", {})
    report = post_hoc.get("report", {})
    return {
        "fitted": bool(post_hoc.get("fitted", False)),
        "temperature": float(post_hoc["temperature"]),
        "descriptor_transform": post_hoc["descriptor"]["kind"],
        "descriptor_summaries": {
            k: v for k, v in (post_hoc["descriptor"].get("summaries") or {}).items() if k != "size"
        },
        "familiarity_weight": float(
            (post_hoc["descriptor"].get("familiarity") or {}).get("weight", 0.0)
        ),
        "novelty_score": "+".join(novelty["components"]),
        "novelty_keep": novelty.get("keep"),
        "fitted_on": {k: v for k, v in fitted_on.items() if k != "ood_choosing_classes"},
        "ood_reporting_classes": fitted_on.get("ood_reporting_classes", []),
        "validation": {
            "temperature_fitted_on": report.get("temperature", {}).get("fitted_on"),
            "ece_before": report.get("temperature", {}).get("val_ece_before"),
            "ece_after": report.get("temperature", {}).get("val_ece_after"),
            "novelty_auroc": report.get("novelty", {})
            .get("candidates", {})
            .get(report.get("novelty", {}).get("chosen"), {})
            .get("auroc"),
        },
    }


@dataclasses.dataclass
class Invariants:
    """What the head reads, for N shapes: features (N, D) and each block's summary (N, d_b)."""

    features: torch.Tensor
    summaries: list[torch.Tensor]

    def __len__(self) -> int:
        return len(self.features)


def invariants_of(network: SphericalCNN, data: MapSet, batch_size: int = 256) -> Invariants:
    """The network's features and block summaries of ``data``, in float64."""
    network.eval()
    parts = []
    with torch.no_grad():
        for index in batches(len(data), batch_size) or [torch.arange(0)]:
            features, summaries = network.features_and_summaries(data.maps[index])
            parts.append(Invariants(features.double(), [s.double() for s in summaries]))
    return concatenated(parts)


def concatenated(parts: Sequence[Invariants]) -> Invariants:
    return Invariants(
        torch.cat([p.features for p in parts]),
        [torch.cat(layer) for layer in zip(*(p.summaries for p in parts), strict=True)],
    )


def features_of(network: SphericalCNN, data: MapSet, batch_size: int = 256) -> torch.Tensor:
    network.eval()
    out = []
    with torch.no_grad():
        for index in batches(len(data), batch_size):
            out.append(network.features(data.maps[index]))
    return torch.cat(out).double() if out else torch.zeros(0, network.config.descriptor_size)


def first_copy_mask(names: Sequence[str]) -> np.ndarray:
    """(N,) bool: True at the first row of each name (a mesh's first rotated copy)."""
    seen: set[str] = set()
    mask = np.zeros(len(names), dtype=bool)
    for i, name in enumerate(names):
        if name not in seen:
            seen.add(name)
            mask[i] = True
    return mask


def first_copies(data: MapSet) -> MapSet:
    """One row per mesh (the first of its rotated copies)."""
    return subset(data, first_copy_mask(data.names))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """argmin_T NLL(softmax(logits / T)) on a log grid, refined by golden-section search."""

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(logits / math.exp(log_t), labels))

    grid = np.linspace(math.log(0.05), math.log(20.0), 121)
    best = grid[int(np.argmin([nll(x) for x in grid]))]
    lo, hi = best - 0.06, best + 0.06
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return math.exp((lo + hi) / 2)


def confidence_matching_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T at which the mean top probability of ``softmax(logits / T)`` equals the accuracy:
    calibrated on average (the mean top probability falls as T grows). On five ensembles it
    left the test split less over-confident than the T of least NLL on the same shapes (the
    NLL favours a smaller T for the many shapes the networks get right with near certainty;
    README, "Answers to trust")."""
    accuracy = float((logits.argmax(1) == labels).double().mean())

    def excess(log_t: float) -> float:
        return float(torch.softmax(logits / math.exp(log_t), 1).amax(1).mean()) - accuracy

    return math.exp(brentq(excess, math.log(0.05), math.log(20.0)))


@dataclasses.dataclass(frozen=True)
class CalibrationSet:
    """Shapes a temperature is fitted on: ``logits`` (N, K) and ``labels`` (N,) of one
    validation split's maps, ``meshes`` (N,) the mesh of each map (its rotated copies share
    it), ``used`` (N,) bool the maps the rule calibrates on (the half least like training)."""

    logits: torch.Tensor
    labels: np.ndarray
    meshes: Sequence[str]
    used: np.ndarray


def _matching_temperature_on(parts: Iterable[tuple[torch.Tensor, np.ndarray]]) -> float:
    """``confidence_matching_temperature`` on (logits, labels) parts taken together."""
    logits, labels = zip(*parts, strict=True)
    return confidence_matching_temperature(
        torch.cat(logits), torch.as_tensor(np.concatenate(labels))
    )


def pooled_temperature(sets: Sequence[CalibrationSet]) -> float:
    """The shipped rule's T (``confidence_matching_temperature``) on the used maps of every set."""
    return _matching_temperature_on(
        (s.logits[torch.as_tensor(s.used)], s.labels[s.used]) for s in sets
    )


def bootstrap_temperatures(sets: Sequence[CalibrationSet], draws: int, seed: int = 0) -> np.ndarray:
    """``pooled_temperature`` on ``draws`` bootstrap draws: in each set its meshes drawn with
    replacement, every rotated copy of a drawn mesh with it (copies of one mesh are not
    independent shapes), each copy used as on the real split."""
    rng = np.random.default_rng(seed)
    copies = []
    for s in sets:
        _, mesh_index = np.unique(np.asarray(s.meshes), return_inverse=True)
        copies.append([np.flatnonzero(mesh_index == m) for m in range(mesh_index.max() + 1)])
    out = []
    for _ in range(draws):
        parts = []
        for s, rows_of in zip(sets, copies, strict=True):
            rows = np.concatenate([rows_of[m] for m in rng.integers(0, len(rows_of), len(rows_of))])
            kept = rows[s.used[rows]]
            parts.append((s.logits[torch.as_tensor(kept)], s.labels[kept]))
        out.append(_matching_temperature_on(parts))
    return np.array(out)


def least_like_training(
    queries: torch.Tensor, bank: torch.Tensor, share: float = CALIBRATION_SHARE
) -> np.ndarray:
    """(N,) bool: the ``share`` of ``queries`` whose nearest ``bank`` row (cosine of the
    features) is least similar: the shapes with no near copy among the training shapes."""
    similarity = F.normalize(queries, dim=1) @ F.normalize(bank, dim=1).T
    nearest = similarity.amax(dim=1).numpy()
    return nearest < np.quantile(nearest, share)


def inverse_sqrt(covariance: np.ndarray, shrinkage: float) -> np.ndarray:
    values, vectors = np.linalg.eigh(covariance)
    floor = shrinkage * max(float(values.mean()), 1e-12)
    return (vectors / np.sqrt(np.maximum(values, 0.0) + floor)) @ vectors.T


def descriptor_candidates(train_features: np.ndarray) -> dict[str, dict[str, Any]]:
    d = train_features.shape[1]
    mean = train_features.mean(axis=0)
    covariance = np.cov(train_features, rowvar=False)
    out: dict[str, dict[str, Any]] = {
        "none": {"kind": "none", "mean": np.zeros(d), "matrix": np.eye(d)},
        "centre": {"kind": "centre", "mean": mean, "matrix": np.eye(d)},
    }
    for s in SHRINKAGE:
        matrix = inverse_sqrt(covariance, s)
        out[f"whiten-{s:g}"] = {"kind": "whiten", "mean": mean, "matrix": matrix, "shrinkage": s}
    return out


def best_match(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    return (queries @ gallery.T).max(axis=1)


def stranger_share(inside: np.ndarray, strangers: np.ndarray, quantile: float = 0.05) -> float:
    """Share of strangers' best-match scores below the ``quantile`` of in-class ones."""
    return float(np.mean(strangers < np.quantile(inside, quantile)))


@dataclasses.dataclass
class FitData:
    train: Invariants  # training part: statistics of the transforms and scores
    bank: Invariants  # training part, one copy per mesh: the retrieval gallery, the knn banks
    train_labels: torch.Tensor  # of train
    val: Invariants  # every copy
    val_labels: torch.Tensor
    val_first: np.ndarray  # rows of the first copy of each validation mesh
    val_meshes: list[str]  # the mesh of each validation row
    ood: Invariants  # SHREC'11 choosing half, rotated
    ood_labels: np.ndarray  # of ood: its classes, for retrieval among shapes of no class
    class_names: list[str]
    choosing: list[str]
    reporting: list[str]


def training_and_validation(config: dict[str, Any], progress: bool) -> tuple[MapSet, MapSet]:
    """The training maps a checkpoint's ``train_config`` names, split as its training split
    them: (the part it trained on, its validation split)."""
    data_seed = int(config.get("data_seed", config.get("seed", 0)))
    full = load_maps(
        config["dataset"],
        "train",
        config["bandwidth"],
        config["train_rotation"],
        config["train_copies"],
        data_seed,
        limit_per_class=config.get("limit_per_class"),
        progress=progress,
    )
    return split_validation(full, config["val_fraction"], config["val_seed"])


def load_fit_data(network: SphericalCNN, state: dict[str, Any], progress: bool) -> FitData:
    config = state["train_config"]
    train_part, val = training_and_validation(config, progress)
    bank = first_copies(train_part)  # one rotated copy of each training mesh
    del train_part
    val_first = first_copy_mask(val.names)
    ood = [
        load_maps(OOD_DATASET, split, config["bandwidth"], "so3", 1, 0, progress=progress)
        for split in ("train", "test")
    ]
    choosing, reporting = shrec_halves(ood[0].class_names)
    keep = [
        subset(part, np.array([part.class_names[int(y)] in choosing for y in part.labels]))
        for part in ood
    ]
    ood_names = [part.class_names[int(y)] for part in keep for y in part.labels]
    ood_labels = np.unique(ood_names, return_inverse=True)[1]
    ood = concatenated([invariants_of(network, part) for part in keep])
    bank_invariants = invariants_of(network, bank)
    return FitData(
        train=bank_invariants,
        bank=bank_invariants,
        train_labels=bank.labels,
        val=invariants_of(network, val),
        val_labels=val.labels,
        val_first=val_first,
        val_meshes=list(val.names),
        ood=ood,
        ood_labels=ood_labels,
        class_names=bank.class_names,
        choosing=choosing,
        reporting=reporting,
    )


def _outputs(
    network: SphericalCNN, post_hoc: dict[str, Any], shapes: Invariants
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    model = TrustedModel(network, post_hoc).double().eval()
    with torch.no_grad():
        p, d, n = model.head(shapes.features.double(), [s.double() for s in shapes.summaries])
    return p.numpy(), d.numpy(), n.numpy()


def _retrieval_row(
    network: SphericalCNN, trial: dict[str, Any], data: FitData, predictions: np.ndarray
) -> dict[str, float]:
    """How ``trial``'s descriptor separates strangers and ranks validation shapes (queries: one
    copy per validation mesh; gallery: the training part, one copy per mesh), and how it ranks
    the strangers among themselves (``ood_mAP``: retrieval of classes the network never saw)."""
    first = data.val_first
    labels = data.val_labels.numpy()[first]
    _, bank, _ = _outputs(network, trial, data.bank)
    _, val_d, _ = _outputs(network, trial, data.val)
    _, ood_d, _ = _outputs(network, trial, data.ood)
    inside, strangers = best_match(val_d[first], bank), best_match(ood_d, bank)
    return {
        "stranger_share": stranger_share(inside, strangers),
        "val_mAP": retrieval_metrics(val_d[first], labels, predictions)["mAP"],
        "val_pair_auroc": pair_auroc(val_d[first], labels),
        "ood_mAP": retrieval_metrics(ood_d, data.ood_labels, data.ood_labels)["mAP"],
    }


def _choose_descriptor_part(
    network: SphericalCNN,
    trial: dict[str, Any],
    key: str,
    options: dict[str, Any],
    by: str,
    data: FitData,
    predictions: np.ndarray,
    report: dict[str, Any],
) -> dict[str, Any]:
    """``trial``'s descriptor with its ``key`` set to the option best by ``by`` (a
    ``_retrieval_row`` figure) among those ``keeping_ranking`` of the first option (the one
    without the part); the rows go into ``report[key]``."""
    rows = {}
    for name, option in options.items():
        descriptor = {**trial["descriptor"], key: option}
        rows[name] = _retrieval_row(network, {**trial, "descriptor": descriptor}, data, predictions)
    chosen = max(keeping_ranking(rows, next(iter(options))), key=lambda name: rows[name][by])
    report[key] = {"candidates": rows, "chosen": chosen}
    return {**trial["descriptor"], key: options[chosen]}


def keeping_ranking(
    rows: dict[str, dict[str, float]], plain: str, pair_auroc: bool = True
) -> list[str]:
    """The candidates (``_retrieval_row`` rows) that keep validation mAP and pair AUROC (unless
    ``pair_auroc=False``) within their tolerances of the ``plain`` row's: what the retrieval
    choices choose among."""
    floor_map = rows[plain]["val_mAP"] - MAP_TOLERANCE
    floor_pairs = rows[plain]["val_pair_auroc"] - PAIR_AUROC_TOLERANCE
    return [
        name
        for name, row in rows.items()
        if row["val_mAP"] >= floor_map and (not pair_auroc or row["val_pair_auroc"] >= floor_pairs)
    ]


def fit(
    network: SphericalCNN,
    data: FitData,
    keep: float = KEEP,
    calibrate_also: Sequence[CalibrationSet] = (),
) -> dict[str, Any]:
    """The post-hoc entry of a checkpoint, with the measurements behind each choice. The
    temperature is fitted on the half of its validation split least like training, pooled with
    ``calibrate_also``: the same recipe's networks on validation splits of their own."""
    network = copy.deepcopy(network).double().eval()  # the caller's network stays as it is
    report: dict[str, Any] = {}
    with torch.no_grad():
        val_logits = network.classifier(data.val.features)
    far = least_like_training(data.val.features, data.bank.features)
    labels = data.val_labels.numpy()
    own = CalibrationSet(val_logits, labels, data.val_meshes, far)
    own_temperature = pooled_temperature([own])
    temperature = pooled_temperature([own, *calibrate_also]) if calibrate_also else own_temperature
    before = torch.softmax(val_logits, 1).numpy()
    after = torch.softmax(val_logits / temperature, 1).numpy()
    report["temperature"] = {
        "T": temperature,
        "fitted_on": f"the {CALIBRATION_SHARE:g} of validation least like the training part "
        "(mean top probability = accuracy)"
        + (
            f", pooled with {len(calibrate_also)} other validation splits" if calibrate_also else ""
        ),
        "splits": 1 + len(calibrate_also),
        "own_split_T": own_temperature,
        "val_ece_before": expected_calibration_error(before[far], labels[far], BINS),
        "val_ece_after": expected_calibration_error(after[far], labels[far], BINS),
        "val_accuracy": float(np.mean(after[far].argmax(1) == labels[far])),
        "val_all_ece_after": expected_calibration_error(after, labels, BINS),
        "val_all_accuracy": float(np.mean(after.argmax(1) == labels)),
    }
    predictions = after[data.val_first].argmax(1)

    # Descriptor transform.
    plain = identity_post_hoc(network.config.descriptor_size)
    plain["temperature"] = temperature
    candidates = descriptor_candidates(data.train.features.numpy())
    rows = {
        name: _retrieval_row(network, {**plain, "descriptor": descriptor}, data, predictions)
        for name, descriptor in candidates.items()
    }
    allowed = keeping_ranking(rows, "none", pair_auroc=False)
    chosen = max(allowed, key=lambda n: rows[n]["stranger_share"])
    report["descriptor"] = {"candidates": rows, "chosen": chosen}
    descriptor = candidates[chosen]

    # Novelty score parameters.
    features = data.train.features.numpy()
    train_labels = data.train_labels.numpy()
    k = len(data.class_names)
    means = np.stack([features[train_labels == c].mean(axis=0) for c in range(k)])
    within = np.cov(features - means[train_labels], rowvar=False)
    projection = inverse_sqrt(within, SHRINKAGE[0])
    base = {**plain, "descriptor": descriptor}
    _, bank, _ = _outputs(network, base, data.bank)
    blocks = network.summary_names()
    layer_banks = {  # float32, as in the graph (3,535 x 832 numbers for the small network)
        name: F.normalize(summary, dim=1).numpy().astype(np.float32)
        for name, summary in zip(blocks, data.bank.summaries, strict=True)
    }
    params = {
        "projection": projection,
        "class_means": means @ projection.T,
        "bank": bank,
        "layer_banks": layer_banks,
    }

    def novelty_of(components: list[str], loc: list[float], scale: list[float]) -> dict[str, Any]:
        return {"components": components, "loc": loc, "scale": scale, **params}

    singles: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in (*SCORES, *(LAYER_KNN + block for block in blocks)):
        trial = {**base, "novelty": novelty_of([name], [0.0], [1.0])}
        singles[name] = (
            _outputs(network, trial, data.val)[2],
            _outputs(network, trial, data.ood)[2],
        )

    def standardized(names: list[str]) -> tuple[list[str], list[float], list[float]]:
        loc = [float(singles[x][0].mean()) for x in names]
        scale = [float(singles[x][0].std()) or 1.0 for x in names]
        return names, loc, scale

    options: dict[str, tuple[list[str], list[float], list[float]]] = {
        name: ([name], [0.0], [1.0]) for name in SCORES
    }
    for i, a in enumerate(SCORES):
        for b in SCORES[i + 1 :]:
            options[f"{a}+{b}"] = standardized([a, b])
    # Every block's knn with the descriptor's: the early blocks summarize local geometry before
    # the network maps everything onto the training classes.
    options["layers"] = standardized(["knn", *(LAYER_KNN + block for block in blocks)])
    scores = {}
    for name, (components, loc, scale) in options.items():
        trial = {**base, "novelty": novelty_of(components, loc, scale)}
        inside = _outputs(network, trial, data.val)[2]
        outside = _outputs(network, trial, data.ood)[2]
        threshold = float(np.quantile(inside, keep))
        scores[name] = {
            "auroc": auroc(inside, outside),
            "ood_flagged": float(np.mean(outside > threshold)),
            "threshold": threshold,
            "val_std": float(inside.std()),
        }
    chosen_score = max(scores, key=lambda n: scores[n]["auroc"])
    components, loc, scale = options[chosen_score]
    novelty = novelty_of(components, loc, scale)
    needed = {"projection": "mahalanobis", "class_means": "mahalanobis", "bank": "knn"}
    for unused, user in needed.items():
        if user not in components:
            novelty.pop(unused)
    novelty["layer_banks"] = {
        block: bank for block, bank in layer_banks.items() if LAYER_KNN + block in components
    }
    novelty["threshold"] = scores[chosen_score]["threshold"]
    novelty["keep"] = keep
    report["novelty"] = {"candidates": scores, "chosen": chosen_score}

    # Block summaries in the retrieval descriptor, chosen by retrieval among the strangers
    # (each shape of the SHREC'11 choosing half against the others: how well a user's own
    # classes, which the network never saw, are retrieved), among those that keep validation
    # mAP (within 0.01) and pair AUROC (within 0.001) of the descriptor without them.
    sizes = {b: int(s.shape[1]) for b, s in zip(blocks, data.bank.summaries, strict=True)}
    first_branch = [b for b in blocks if b.split(".")[0] == blocks[0].split(".")[0]]
    groups = {"first block": blocks[:1], "first branch": first_branch, "every block": blocks}
    summary_options: dict[str, dict[str, Any] | None] = {"none": None} | {
        f"{group} x {weight:g}": {
            "blocks": members,
            "weight": weight,
            "size": sum(sizes[b] for b in members),
        }
        for group, members in groups.items()
        for weight in SUMMARY_WEIGHTS
    }
    trial = {**base, "descriptor": descriptor, "novelty": novelty}
    descriptor = _choose_descriptor_part(
        network, trial, "summaries", summary_options, "ood_mAP", data, predictions, report
    )

    # The descriptor's familiarity coordinate: k = 1/2 at the threshold, ~1 inside, ~0 outside.
    std = scores[chosen_score]["val_std"] or 1.0
    familiarities = {"0": {"weight": 0.0}} | {
        f"{weight:g} / {width:g} std": {
            "weight": weight,
            "centre": novelty["threshold"],
            "scale": width * std,
        }
        for weight in FAMILIARITY_WEIGHTS[1:]
        for width in FAMILIARITY_WIDTHS
    }
    trial = {**base, "descriptor": descriptor, "novelty": novelty}
    descriptor = _choose_descriptor_part(
        network, trial, "familiarity", familiarities, "stranger_share", data, predictions, report
    )
    return {
        "temperature": temperature,
        "descriptor": descriptor,
        "novelty": novelty,
        "fitted": True,
        "fitted_on": {
            "validation": "model.data.split_validation of the run's training split",
            "n_validation": len(labels),
            "ood": f"{OOD_DATASET} choosing half (so3)",
            "ood_choosing_classes": data.choosing,
            "ood_reporting_classes": data.reporting,
            "n_ood": len(data.ood),
        },
        "report": report,
    }


def _print_fit(post_hoc: dict[str, Any]) -> None:
    report = post_hoc["report"]
    t = report["temperature"]
    print(
        f"temperature {t['T']:.3f}, fitted on {t['fitted_on']} (accuracy {t['val_accuracy']:.4f} "
        f"there, {t['val_all_accuracy']:.4f} on all of it): ECE there {t['val_ece_before']:.4f} "
        f"-> {t['val_ece_after']:.4f}; on all of validation {t['val_all_ece_after']:.4f}"
    )
    if t.get("splits", 1) > 1:
        print(f"  (its own validation split alone: T {t['own_split_T']:.3f})")
    print("descriptor transform (validation queries vs training part; SHREC'11 choosing half):")
    _print_retrieval_rows(report["descriptor"], "{:12s}")
    print("block summaries in the descriptor (SHREC'11 choosing half: mAP among themselves):")
    _print_retrieval_rows(report["summaries"], "{:20s}")
    print("familiarity coordinate of the descriptor (weight w / width of its step):")
    _print_retrieval_rows(report["familiarity"], "w = {:16s}")
    print("novelty score (validation vs SHREC'11 choosing half):")
    for name, row in sorted(report["novelty"]["candidates"].items(), key=lambda x: -x[1]["auroc"]):
        mark = "*" if name == report["novelty"]["chosen"] else " "
        print(
            f" {mark} {name:22s} AUROC {row['auroc']:.4f}  flagged at the 95 % threshold "
            f"{row['ood_flagged']:.3f}"
        )


def _print_retrieval_rows(section: dict[str, Any], name_format: str) -> None:
    """One line per candidate of a retrieval choice (``_retrieval_row``), the chosen marked."""
    for name, row in section["candidates"].items():
        mark = "*" if name == section["chosen"] else " "
        strangers_map = f"  strangers' mAP {row['ood_mAP']:.4f}" if "ood_mAP" in row else ""
        print(
            f" {mark} {name_format.format(name)} strangers below 5th pct "
            f"{row['stranger_share']:.3f}  val mAP {row['val_mAP']:.4f}  "
            f"pair AUROC {row['val_pair_auroc']:.4f}{strangers_map}"
        )


def _say_selection(path: Path, selection: dict[str, Any]) -> None:
    print(f"{path}: validation {selection['val_acc']:.4f} (epoch {selection['epoch']})")


def best_on_validation(checkpoints: Sequence[Path]) -> Path:
    """The checkpoint whose chosen epoch scored best on validation (accuracy, then loss)."""

    def key(path: Path) -> tuple[float, float]:
        selection = read_checkpoint(path)["selection"]
        _say_selection(path, selection)
        return (selection["val_acc"], -selection["val_loss"])

    return max(checkpoints, key=key)


def ensemble_of(checkpoints: Sequence[Path]) -> dict[str, Any]:
    """The checkpoints as one ensemble checkpoint dict (``model.ensemble``)."""
    states = [read_checkpoint(path) for path in checkpoints]
    for path, state in zip(checkpoints, states, strict=True):
        _say_selection(path, state["selection"])
    return ensemble_state(states, checkpoints)


def read_group(group: str) -> dict[str, Any]:
    """A checkpoint, or comma-separated checkpoints of one recipe as one ensemble
    (``ensemble_of``): one validation split's networks, as ``--calibrate-with`` names them."""
    paths = [Path(part) for part in group.split(",") if part]
    if not paths:
        raise ValueError(f"no checkpoint in {group!r}")
    return read_checkpoint(paths[0]) if len(paths) == 1 else ensemble_of(paths)


def calibration_set_of(state: dict[str, Any], progress: bool) -> CalibrationSet:
    """A checkpoint's logits on its own validation split, the half least like its training
    part used: what its temperature would be fitted on."""
    network = build_model(state).eval()
    train_part, val = training_and_validation(state["train_config"], progress)
    val_features = features_of(network, val)
    used = least_like_training(val_features, features_of(network, first_copies(train_part)))
    with torch.no_grad():
        logits = network.classifier(val_features.float()).double()
    return CalibrationSet(logits, val.labels.numpy(), list(val.names), used)


def run_fit(
    state: dict[str, Any],
    source: str,
    out: Path,
    keep: float,
    progress: bool,
    calibrate_with: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Fit on a checkpoint dict (``source`` says which, for the log) and write it to ``out``;
    the temperature pooled with ``calibrate_with``'s validation splits (checkpoint dicts of the
    same recipe trained on other splits)."""
    print(f"fitting on {source}")
    own_seed = state["train_config"]["val_seed"]
    for other in calibrate_with:
        if other["train_config"]["val_seed"] == own_seed:
            raise SystemExit(
                f"a checkpoint to calibrate with has val_seed {own_seed}, the fitted one's: its "
                "validation split is the same meshes, not new ones"
            )
    network = build_model(state)
    data = load_fit_data(network, state, progress)
    also = [calibration_set_of(other, progress) for other in calibrate_with]
    post_hoc = fit(network, data, keep, also)
    _print_fit(post_hoc)
    save_checkpoint({**state, "post_hoc": post_hoc}, out)
    print(f"wrote {out}")
    return post_hoc


# --- The report on the shipped files (onnxruntime; no torch in the measured path) ----------


def run_onnx(model: Path, maps: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    input_name = session.get_inputs()[0].name
    for start in range(0, len(maps), batch_size):
        batch = np.ascontiguousarray(maps[start : start + batch_size], np.float32)
        for name, value in zip(names, session.run(names, {input_name: batch}), strict=True):
            parts[name].append(np.asarray(value))
    return {n: np.concatenate(v) for n, v in parts.items()}


def report(model: Path, gallery: Path, out: Path | None, progress: bool) -> dict[str, Any]:
    import onnx

    from raymap.datasets import build_split

    meta = {p.key: json.loads(p.value) for p in onnx.load(str(model)).metadata_props}
    trust = meta["trust"]
    bandwidth = int(meta["bandwidth"])
    test = build_split("modelnet10", "test", bandwidth, "so3", seed=0, progress=progress)
    outputs = run_onnx(model, test.maps)
    probabilities, descriptors = outputs["probabilities"], outputs["descriptor"]
    novelty = outputs["novelty"].reshape(-1)
    labels = np.asarray(test.labels)
    temperature = float(trust["temperature"])
    raw = np.exp(temperature * np.log(np.maximum(probabilities, 1e-30)))
    raw /= raw.sum(axis=1, keepdims=True)  # softmax(logits): the probabilities before T
    ood_parts = [
        build_split(OOD_DATASET, split, bandwidth, "so3", seed=0, progress=progress)
        for split in ("train", "test")
    ]
    reporting = set(trust["ood_reporting_classes"])
    part_names = [[p.class_names[int(y)] for y in p.labels] for p in ood_parts]
    kept = [np.array([name in reporting for name in names]) for names in part_names]
    ood_maps = np.concatenate([p.maps[mask] for p, mask in zip(ood_parts, kept, strict=True)])
    ood_names = [name for names in part_names for name in names if name in reporting]
    ood = run_onnx(model, ood_maps)
    ood_novelty = ood["novelty"].reshape(-1)
    threshold = float(meta["novelty_threshold"])
    flagged = novelty > threshold
    predictions = probabilities.argmax(1)
    wrong = predictions != labels
    store = np.load(gallery)
    ids = [str(x) for x in store["ids"]]
    gallery_d = np.asarray(store["descriptors"], np.float64)
    queries = descriptors.astype(np.float64)
    strangers = ood["descriptor"].astype(np.float64)
    ood_classes = np.unique(ood_names, return_inverse=True)[1]

    def retrieval_of(transform: Callable[[np.ndarray], np.ndarray]) -> dict[str, Any]:
        return retrieval_figures(
            transform(queries), labels, predictions, test.names,
            transform(strangers), transform(gallery_d), ids,
        )  # fmt: skip

    retrieval = retrieval_of(lambda d: d)
    # The same without the familiarity coordinate, when the descriptor has one.
    with_coordinate = float(trust.get("familiarity_weight") or 0.0)
    without = retrieval_of(_without_last) if with_coordinate else None
    figures = {
        "model": str(model),
        "gallery": str(gallery),
        "n_test": len(labels),
        "n_ood_reporting": len(ood_maps),
        "accuracy": float(np.mean(predictions == labels)),
        "temperature": temperature,
        "ece_before": expected_calibration_error(raw, labels, BINS),
        "ece_after": expected_calibration_error(probabilities, labels, BINS),
        "mean_confidence_before": float(raw.max(1).mean()),
        "mean_confidence_after": float(probabilities.max(1).mean()),
        "novelty_score": trust["novelty_score"],
        "novelty_threshold": threshold,
        "novelty_auroc": auroc(novelty, ood_novelty),
        "test_known": float(np.mean(novelty <= threshold)),
        "ood_not_known": float(np.mean(ood_novelty > threshold)),
        "msp_auroc": auroc(-probabilities.max(1), -ood["probabilities"].max(1)),
        # Where "known" fails: flagged test shapes and accepted strangers, by class.
        "test_flagged_by_class": _counts(test.class_names[int(y)] for y in labels[flagged]),
        "test_flagged_among_wrong": float(flagged[wrong].mean()) if wrong.any() else None,
        "test_flagged_among_right": float(flagged[~wrong].mean()),
        "ood_known_by_class": _counts(
            name for name, value in zip(ood_names, ood_novelty, strict=True) if value <= threshold
        ),
        **retrieval,
        # Retrieval among shapes of classes the network never saw (a user's own classes): each
        # SHREC'11 reporting-half shape against the others.
        "ood_retrieval": retrieval_metrics(strangers, ood_classes, ood_classes),
        "without_familiarity": without,
    }
    if out is not None:
        from model.plots import plot_reliability

        out.mkdir(parents=True, exist_ok=True)
        (out / "trust.json").write_text(json.dumps(figures, indent=1))
        plot_reliability(
            {"before (T = 1)": raw, f"after (T = {temperature:.2f})": probabilities},
            labels,
            BINS,
            out / "reliability-so3-so3.png",
        )
    return figures


def _counts(names: Iterable[str]) -> dict[str, int]:
    """How often each name occurs, most frequent first."""
    return dict(collections.Counter(names).most_common())


def _without_last(descriptors: np.ndarray) -> np.ndarray:
    """Unit descriptors without their last (familiarity) coordinate."""
    kept = descriptors[:, :-1]
    return kept / np.linalg.norm(kept, axis=1, keepdims=True)


def retrieval_figures(
    queries: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    names: Sequence[str],
    strangers: np.ndarray,
    gallery: np.ndarray,
    ids: Sequence[str],
) -> dict[str, Any]:
    """Best-match separation against the gallery (each query's own item excluded), pair AUROC
    and retrieval among the queries."""
    similarity = queries @ gallery.T
    position = {name: i for i, name in enumerate(ids)}
    for row, name in enumerate(names):
        if name in position:
            similarity[row, position[name]] = -np.inf  # the query itself
    inside = similarity.max(axis=1)
    outside = best_match(strangers, gallery)
    return {
        "best_match_test_p05": float(np.quantile(inside, 0.05)),
        "best_match_test_median": float(np.median(inside)),
        "best_match_ood_median": float(np.median(outside)),
        "ood_best_match_below_test_p05": stranger_share(inside, outside),
        "pair_auroc": pair_auroc(queries, labels),
        "retrieval": retrieval_metrics(queries, labels, predictions),
    }


def _print_report(f: dict[str, Any]) -> None:
    print(f"ModelNet10 test SO3 ({f['n_test']}), SHREC'11 reporting half ({f['n_ood_reporting']})")
    print(f"accuracy                         {f['accuracy']:.4f}")
    print(
        f"ECE (15 bins)                    {f['ece_before']:.4f} -> {f['ece_after']:.4f} "
        f"(T = {f['temperature']:.3f}; mean confidence {f['mean_confidence_before']:.3f} -> "
        f"{f['mean_confidence_after']:.3f})"
    )
    print(f"novelty ({f['novelty_score']}) AUROC   {f['novelty_auroc']:.4f}")
    print(f"  (max probability AUROC          {f['msp_auroc']:.4f})")
    print(f"test known at threshold          {f['test_known']:.4f}")
    print(f"SHREC reporting half not known   {f['ood_not_known']:.4f}")
    print(f"  test flagged, by class         {f['test_flagged_by_class']}")
    print(f"  strangers known, by class      {f['ood_known_by_class']}")
    print(
        f"SHREC best match below test p05  {f['ood_best_match_below_test_p05']:.4f} "
        f"(test p05 {f['best_match_test_p05']:.4f}, medians test "
        f"{f['best_match_test_median']:.4f} / SHREC {f['best_match_ood_median']:.4f})"
    )
    print(f"pair AUROC (test)                {f['pair_auroc']:.4f}")
    print(f"mAP (test)                       {f['retrieval']['mAP']:.4f}")
    print(f"mAP among SHREC reporting half   {f['ood_retrieval']['mAP']:.4f}")
    without = f.get("without_familiarity")
    if without:
        print(
            f"without the familiarity coordinate: SHREC below test p05 "
            f"{without['ood_best_match_below_test_p05']:.4f}, pair AUROC "
            f"{without['pair_auroc']:.4f}, mAP {without['retrieval']['mAP']:.4f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.trust", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    fit_parser = commands.add_parser(
        "fit",
        help="fit on validation (the checkpoint best on validation of those given, or with "
        "--ensemble all of them as one network)",
    )
    fit_parser.add_argument("checkpoints", type=Path, nargs="+")
    fit_parser.add_argument(
        "--ensemble",
        action="store_true",
        help="one network of all the checkpoints (one recipe, other seeds): mean logits, "
        "features side by side (model.ensemble)",
    )
    fit_parser.add_argument("--out", type=Path, required=True)
    fit_parser.add_argument("--keep", type=float, default=KEEP)
    fit_parser.add_argument(
        "--calibrate-with",
        nargs="+",
        default=[],
        metavar="CHECKPOINT[,CHECKPOINT...]",
        help="checkpoints of the same recipe trained with other validation splits (--val_seed), "
        "each an ensemble file or comma-joined runs of one split taken as one ensemble: the "
        "temperature is fitted on their splits too (cross-fitting; "
        "bench/cross_fit_temperature.py)",
    )
    report_parser = commands.add_parser("report", help="the test-split figures of the export")
    report_parser.add_argument("--model", type=Path, default=Path("models/model.onnx"))
    report_parser.add_argument("--gallery", type=Path, default=Path("models/gallery.npz"))
    report_parser.add_argument("--out", type=Path, default=None)
    for sub in (fit_parser, report_parser):
        sub.add_argument("--threads", type=int, default=1)
        sub.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.command == "fit":
        if args.ensemble:
            state = ensemble_of(args.checkpoints)
            members = [m["source"] for m in state["ensemble"]["members"]]
            source = f"the ensemble of {', '.join(members)}"
        else:
            # One checkpoint is fitted as it is (an ensemble's too: a re-fit of the shipped one).
            one = len(args.checkpoints) == 1
            path = args.checkpoints[0] if one else best_on_validation(args.checkpoints)
            state, source = read_checkpoint(path), str(path)
        others = [read_group(group) for group in args.calibrate_with]
        run_fit(state, source, args.out, args.keep, args.progress, others)
    else:
        _print_report(report(args.model, args.gallery, args.out, args.progress))
    return 0


if __name__ == "__main__":
    sys.exit(main())
