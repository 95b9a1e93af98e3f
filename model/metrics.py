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
