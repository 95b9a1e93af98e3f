"""Shared helpers for the raymap tests: fixture paths and a map comparison that reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"
MODELNET_MINI = FIXTURES / "modelnet10_mini"
CHAIR = FIXTURES / "meshes" / "chair_0890.off"


def assert_maps_close(
    actual: np.ndarray, expected: np.ndarray, atol: float, max_bad_fraction: float = 0.0
) -> None:
    """All but ``max_bad_fraction`` of the entries within ``atol``; reports the largest error.

    Ray casting is exact only up to float32 rounding: a ray through a triangle edge or a
    silhouette may land on the other side of it after a rotation, so equivariance tests allow
    a small fraction of such entries.
    """
    assert actual.shape == expected.shape, f"shapes {actual.shape} != {expected.shape}"
    error = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    worst = np.unravel_index(np.argmax(error), error.shape)
    bad_fraction = float((error > atol).mean())
    assert bad_fraction <= max_bad_fraction, (
        f"{bad_fraction:.4%} of entries differ by more than {atol} "
        f"(allowed {max_bad_fraction:.4%}); largest error {error[worst]:.3e} at {worst}: "
        f"{actual[worst]} vs {expected[worst]}"
    )


def rotation_about_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
