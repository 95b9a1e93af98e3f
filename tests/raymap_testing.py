"""Shared helpers for the raymap tests: fixture paths, a map comparison that reports, and the
readers' comparison with trimesh."""

from __future__ import annotations

from collections.abc import Callable
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


def assert_same_arrays(ours: tuple, theirs: tuple) -> None:
    """Each of ``ours`` equal to its counterpart in ``theirs`` bit for bit, of the same dtype."""
    for mine, expected in zip(ours, theirs, strict=True):
        assert mine.dtype == np.asarray(expected).dtype
        np.testing.assert_array_equal(mine, expected)


def assert_reads_as_trimesh(
    read: Callable[[bytes], tuple | None], file_type: str, data: bytes
) -> None:
    """``read`` (one of raymap's numpy readers) takes ``data`` and gives trimesh's arrays."""
    from raymap.mesh import _read_with_trimesh

    ours = read(data)
    assert ours is not None, f"{read.__name__} left this file to trimesh"
    assert_same_arrays(ours, _read_with_trimesh(data, file_type))
