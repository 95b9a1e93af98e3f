"""Classification and retrieval metrics (numpy only).

Retrieval follows the SHREC'17 protocol as used for descriptor-based methods: every test
shape queries the other test shapes, ranked by cosine similarity of descriptors.

* mAP and NDCG are computed on the full ranking (relevant = same true class).
* P@N, R@N, F1@N use the retrieved list of the query: the shapes whose *predicted* class
  equals the query's predicted class, ranked by similarity (N = that list's length).
All figures are macro averages over queries ("micro" in SHREC'17's terms: each query counts once).
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (labels, predictions), 1)
    return out


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    return float(np.mean(labels == predictions))


def retrieval_metrics(
    descriptors: np.ndarray, labels: np.ndarray, predictions: np.ndarray
) -> dict[str, float]:
    """Each row queries all the others. ``descriptors`` must be L2-normalized."""
    n = len(labels)
    if n < 2:
        raise ValueError(f"retrieval needs at least 2 shapes, got {n}")
    similarity = descriptors @ descriptors.T
    np.fill_diagonal(similarity, -np.inf)
    order = np.argsort(-similarity, axis=1, kind="stable")[:, : n - 1]  # (n, n-1), self last
    relevant = labels[order] == labels[:, None]  # (n, n-1)
    n_relevant = relevant.sum(axis=1)

    ranks = np.arange(1, n)
    hits = np.cumsum(relevant, axis=1)
    precision_at_rank = hits / ranks
    average_precision = np.where(
        n_relevant > 0,
        (precision_at_rank * relevant).sum(axis=1) / np.maximum(n_relevant, 1),
        0.0,
    )
    discount = 1.0 / np.log2(ranks + 1)
    dcg = (relevant * discount).sum(axis=1)
    ideal = np.array([discount[:k].sum() for k in n_relevant])
    ndcg = np.where(ideal > 0, dcg / np.where(ideal > 0, ideal, 1.0), 0.0)

    retrieved = predictions[order] == predictions[:, None]  # the query's retrieved list
    n_retrieved = retrieved.sum(axis=1)
    true_positive = (retrieved & relevant).sum(axis=1)
    precision = np.where(n_retrieved > 0, true_positive / np.maximum(n_retrieved, 1), 0.0)
    recall = np.where(n_relevant > 0, true_positive / np.maximum(n_relevant, 1), 0.0)
    f1 = np.where(
        precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0
    )
    return {
        "mAP": float(average_precision.mean()),
        "NDCG": float(ndcg.mean()),
        "P@N": float(precision.mean()),
        "R@N": float(recall.mean()),
        "F1@N": float(f1.mean()),
    }


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney U)."""
    negatives, positives = np.asarray(negatives, float), np.asarray(positives, float)
    if not len(negatives) or not len(positives):
        raise ValueError("AUROC needs at least one negative and one positive")
    scores = np.concatenate([negatives, positives])
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    n_neg, n_pos = len(negatives), len(positives)
    u = ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_neg * n_pos))


def reliability(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: (count, mean confidence, accuracy); NaN for empty bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, bins) / count
        bin_accuracy = np.bincount(which, correct.astype(float), bins) / count
    return count, mean_confidence, bin_accuracy


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 15
) -> float:
    """Sum over equal-width confidence bins of |accuracy - confidence|, weighted by bin share."""
    count, confidence, bin_accuracy = reliability(probabilities, labels, bins)
    full = count > 0
    gaps = np.abs(bin_accuracy[full] - confidence[full])
    return float((count[full] * gaps).sum() / count.sum())


def pair_auroc(descriptors: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of cosine similarity for same-class (positive) vs different-class pairs (i < j)."""
    similarity = descriptors @ descriptors.T
    upper = np.triu_indices(len(labels), k=1)
    same = (labels[:, None] == labels[None, :])[upper]
    values = similarity[upper]
    return auroc(values[~same], values[same])
