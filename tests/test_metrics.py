"""Retrieval and classification metrics on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from model.metrics import accuracy, confusion_matrix, retrieval_metrics


def unit(rows: list[list[float]]) -> np.ndarray:
    a = np.asarray(rows, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_perfect_descriptors_score_one() -> None:
    d = unit([[1, 0], [1, 0.01], [0, 1], [0.01, 1]])
    labels = np.array([0, 0, 1, 1])
    m = retrieval_metrics(d, labels, labels)
    assert m == pytest.approx({"mAP": 1, "NDCG": 1, "P@N": 1, "R@N": 1, "F1@N": 1})


def test_average_precision_of_a_known_ranking() -> None:
    # Query 0 ranks: 2 (class 1, sim .8), 1 (class 0, sim .6), 3 (class 1): AP = 1/2.
    d = unit([[1, 0], [0.6, 0.8], [0.8, 0.6], [0, 1]])
    labels = np.array([0, 0, 1, 1])
    m = retrieval_metrics(d, labels, labels)
    similarity = d @ d.T
    assert similarity[0, 2] > similarity[0, 1] > similarity[0, 3]
    # Rankings: q0 -> 2, 1, 3 (hit at 2); q1 -> 2, 3, 0 (hit at 3); q2 -> 1, 0, 3 (hit at 3);
    # q3 -> 1, 2, 0 (hit at 2). APs 1/2, 1/3, 1/3, 1/2; DCGs 1/log2(3), 1/2, 1/2, 1/log2(3).
    assert m["mAP"] == pytest.approx(5 / 12)
    assert m["NDCG"] == pytest.approx((2 / np.log2(3) + 1) / 4)


def test_retrieved_list_follows_predictions() -> None:
    d = unit([[1, 0], [1, 0.1], [0, 1], [0.1, 1]])
    labels = np.array([0, 0, 1, 1])
    predictions = np.array([0, 0, 0, 1])  # shape 2 is misclassified
    m = retrieval_metrics(d, labels, predictions)
    # Query precisions: q0 1/2, q1 1/2, q2 0/2, q3 0/0 -> 0; recalls: 1, 1, 0, 0.
    assert m["P@N"] == pytest.approx(0.25)
    assert m["R@N"] == pytest.approx(0.5)


def test_confusion_and_accuracy() -> None:
    labels = np.array([0, 1, 1, 2])
    predictions = np.array([0, 1, 2, 2])
    c = confusion_matrix(labels, predictions, 3)
    assert c.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert accuracy(labels, predictions) == 0.75


def test_retrieval_needs_two_shapes() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        retrieval_metrics(unit([[1, 0]]), np.array([0]), np.array([0]))
