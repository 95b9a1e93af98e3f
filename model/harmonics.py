"""Real spherical harmonics in float64, by the stable recurrence for normalized Legendre functions.

Convention (orthonormal on the unit sphere, no Condon-Shortley phase):

    Y_l^0       = Pbar_l^0(cos t)
    Y_l^m       = sqrt(2) Pbar_l^m(cos t) cos(m p)     for m > 0
    Y_l^{-m}    = sqrt(2) Pbar_l^m(cos t) sin(m p)     for m > 0

where Pbar_l^m is the associated Legendre function scaled so that Pbar_l^m(cos t) e^{i m p}
has unit norm on the sphere. The recurrence runs in l at fixed m and never forms a
factorial, so it stays accurate at bandwidth 128 and beyond.
"""

from __future__ import annotations

import numpy as np


def normalized_legendre(max_degree: int, theta: np.ndarray) -> np.ndarray:
    """Pbar_l^m(cos theta) for 0 <= m <= l <= max_degree.

    Returns shape (max_degree+1, max_degree+1, *theta.shape) indexed [l, m]; zero where m > l.
    """
    if max_degree < 0:
        raise ValueError(f"max_degree must be >= 0, got {max_degree}")
    theta = np.asarray(theta, dtype=np.float64)
    x, s = np.cos(theta), np.sin(theta)
    n = max_degree + 1
    p = np.zeros((n, n, *theta.shape), dtype=np.float64)
    # Sectoral terms Pbar_m^m = sqrt((2m+1)/(2m)) sin(t) Pbar_{m-1}^{m-1}.
    p[0, 0] = np.sqrt(1.0 / (4.0 * np.pi))
    for m in range(1, n):
        p[m, m] = np.sqrt((2.0 * m + 1.0) / (2.0 * m)) * s * p[m - 1, m - 1]
    # Three-term recurrence in l at fixed m.
    for m in range(n):
        if m + 1 < n:
            p[m + 1, m] = np.sqrt(2.0 * m + 3.0) * x * p[m, m]
        for l in range(m + 2, n):
            a = np.sqrt((4.0 * l * l - 1.0) / (l * l - m * m))
            b = np.sqrt(((l - 1.0) ** 2 - m * m) / (4.0 * (l - 1.0) ** 2 - 1.0))
            p[l, m] = a * (x * p[l - 1, m] - b * p[l - 2, m])
    return p


def real_sph_harm(max_degree: int, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Real spherical harmonics Y_l^m(theta, phi) for all l <= max_degree, |m| <= l.

    ``theta`` (colatitude) and ``phi`` (longitude) broadcast together. Returns shape
    (max_degree+1, 2*max_degree+1, *shape), indexed [l, m + max_degree]; zero where |m| > l.
    """
    theta, phi = np.broadcast_arrays(np.asarray(theta, np.float64), np.asarray(phi, np.float64))
    p = normalized_legendre(max_degree, theta)
    n = max_degree + 1
    out = np.zeros((n, 2 * n - 1, *theta.shape), dtype=np.float64)
    out[:, max_degree] = p[:, 0]
    for m in range(1, n):
        out[:, max_degree + m] = np.sqrt(2.0) * p[:, m] * np.cos(m * phi)
        out[:, max_degree - m] = np.sqrt(2.0) * p[:, m] * np.sin(m * phi)
    return out


def synthesize(coefficients: np.ndarray, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Evaluate sum_{l,m} c[..., l, m] Y_l^m at arbitrary points, in float64.

    ``coefficients`` has shape (..., L, 2L-1) in the [l, m + L - 1] layout of the SHT.
    Used as the reference for rotations: f(R^-1 x) is evaluated at rotated points.
    """
    coefficients = np.asarray(coefficients, dtype=np.float64)
    n_degrees = coefficients.shape[-2]
    y = real_sph_harm(n_degrees - 1, theta, phi)  # (L, 2L-1, *points)
    points_shape = y.shape[2:]
    y = y.reshape(n_degrees * (2 * n_degrees - 1), -1)
    c = coefficients.reshape(*coefficients.shape[:-2], n_degrees * (2 * n_degrees - 1))
    return (c @ y).reshape(*coefficients.shape[:-2], *points_shape)
