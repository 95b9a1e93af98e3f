"""raymap.distinct: equal positions grouped by their bits, whatever the hash does."""

from __future__ import annotations

import numpy as np
import pytest

import raymap.distinct
from raymap import _kernels
from raymap.distinct import distinct_points


def assert_groups(points: np.ndarray, first: np.ndarray, inverse: np.ndarray) -> None:
    bits = points.view(np.uint64)
    np.testing.assert_array_equal(bits[first][inverse], bits)
    assert len(first) == len(np.unique(bits, axis=0))


def test_corners_of_a_triangle_soup_are_merged_by_their_bits() -> None:
    rng = np.random.default_rng(0)
    positions = rng.normal(size=(5_000, 3)).astype(np.float32).astype(np.float64)
    points = positions[rng.integers(0, len(positions), 30_000)]
    points[:10] = -0.0  # -0.0 and 0.0 are two positions by their bits, as in the file
    points[10:20] = 0.0
    first, inverse = distinct_points(points)
    assert_groups(points, first, inverse)


def test_positions_whose_hashes_share_their_high_bits_stay_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path sorts the hash's high bits only: two positions that differ in the low
    bits of their hash are grouped there, then told apart by the whole hash."""
    monkeypatch.setattr(raymap.distinct, "_HASH_MULTIPLIERS", np.array([1, 0, 0], np.uint64))
    one, next_up = 1.0, np.nextafter(1.0, 2.0)  # one bit apart, in the hash's lowest bit
    points = np.array([[one, 0, 0], [next_up, 0, 0], [one, 0, 0], [next_up, 0, 0]])
    first, inverse = distinct_points(points)
    assert_groups(points, first, inverse)
    assert len(first) == 2 and inverse[0] == inverse[2] != inverse[1] == inverse[3]


def test_float32_positions_get_distinct_hashes() -> None:
    """An STL's coordinates are float32: as float64 bits they end in 29 zero bits, which a
    plain multiply-add hash keeps at zero (3 collisions among these 300k positions)."""
    rng = np.random.default_rng(0)
    points = rng.normal(size=(300_000, 3)).astype(np.float32).astype(np.float64)
    hashes = raymap.distinct.position_hashes(points.view(np.uint64))
    assert len(np.unique(hashes)) == len(points)


def test_the_kernel_gives_the_sorting_paths_answer() -> None:
    """The C table sorts only each position's first point, and answers exactly as sorting
    every point does: the same firsts in the same order, the same inverse."""
    rng = np.random.default_rng(1)
    positions = rng.normal(size=(3_000, 3)).astype(np.float32).astype(np.float64)
    points = positions[rng.integers(0, len(positions), 20_000)]
    points[:50] = -0.0
    bits = points.view(np.uint64)
    first, inverse = raymap.distinct._by_sorting(bits, raymap.distinct.position_hashes(bits))
    by_kernel = distinct_points(points)
    np.testing.assert_array_equal(by_kernel[0], first)
    np.testing.assert_array_equal(by_kernel[1], inverse)
    assert_groups(points, *by_kernel)


def test_the_kernel_leaves_positions_sharing_high_bits_to_the_sorting_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(raymap.distinct, "_HASH_MULTIPLIERS", np.array([1, 0, 0], np.uint64))
    points = np.array([[1.0, 0, 0], [np.nextafter(1.0, 2.0), 0, 0], [1.0, 0, 0]])
    bits = points.view(np.uint64)
    hashes = raymap.distinct.position_hashes(bits)
    first, inverse = np.empty(3, np.int64), np.empty(3, np.int64)
    assert _kernels.distinct_points(bits, hashes, 2, first, inverse) == -6
    sorted_first, sorted_inverse = raymap.distinct._by_sorting(bits, hashes)
    found = distinct_points(points)
    np.testing.assert_array_equal(found[0], sorted_first)
    np.testing.assert_array_equal(found[1], sorted_inverse)
