"""Test helpers for functions on the sphere: band-limited signals, rotations, equivariance."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.spatial.transform import Rotation

from model.harmonics import real_sph_harm, synthesize
from model.sht import coefficient_mask
from raymap import grid


def random_coefficients(
    rng: np.random.Generator, shape: tuple[int, ...], n_degrees: int
) -> np.ndarray:
    """Random real coefficients (*shape, L, 2L-1), zero outside |m| <= l."""
    c = rng.standard_normal((*shape, n_degrees, 2 * n_degrees - 1))
    return c * coefficient_mask(n_degrees)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix."""
    return Rotation.random(random_state=rng).as_matrix()


def rotated_grid_angles(bandwidth: int, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(theta, phi) of R^-1 x for each grid point x, so that f(R^-1 x) is f rotated by R."""
    points = grid.directions(bandwidth) @ rotation  # row-vector form of R^T x
    theta = np.arccos(np.clip(points[..., 2], -1.0, 1.0))
    phi = np.arctan2(points[..., 1], points[..., 0])
    return theta, phi


def sample_rotated(coefficients: np.ndarray, bandwidth: int, rotation: np.ndarray) -> np.ndarray:
    """Grid samples of the band-limited function with these coefficients, rotated by R."""
    theta, phi = rotated_grid_angles(bandwidth, rotation)
    return synthesize(coefficients, theta, phi)


def rotate_samples(samples: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Rotate band-limited grid samples (.., 2b, 2b) by R: exact float64 SHT, then evaluation
    of the coefficients at the rotated points (an independent path from the layers under test)."""
    bandwidth = samples.shape[-1] // 2
    weights = grid.area_weights(bandwidth)
    theta = grid.colatitudes(bandwidth)[:, None]
    phi = grid.longitudes(bandwidth)[None, :]
    harmonics = real_sph_harm(bandwidth - 1, theta, phi)  # (L, M, T, P)
    coefficients = np.einsum("...tp,lmtp->...lm", samples * weights, harmonics)
    return sample_rotated(coefficients, bandwidth, rotation)


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def assert_equivariant(
    function: Callable[[np.ndarray], np.ndarray],
    transform_in: Callable[[np.ndarray], np.ndarray],
    transform_out: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    rtol: float,
) -> float:
    """Assert function(transform_in(x)) == transform_out(function(x)); report the largest error."""
    lhs = function(transform_in(x))
    rhs = transform_out(function(x))
    err = relative_error(lhs, rhs)
    worst = float(np.max(np.abs(lhs - rhs)))
    assert err < rtol, f"not equivariant: relative error {err:.3e} (max abs {worst:.3e}) >= {rtol}"
    return err
