"""The Driscoll-Healy equiangular grid on the sphere and its exact quadrature.

For bandwidth ``b`` the grid has ``2b`` colatitudes (rows) and ``2b`` longitudes (columns):

    theta_j = pi (2j + 1) / (4b),   j = 0 .. 2b-1   (poles excluded, as in SOFT / s2cnn)
    phi_k   = 2 pi k / (2b),        k = 0 .. 2b-1

The quadrature weights make ``sum_jk w_j dphi f(theta_j, phi_k)`` equal to the surface
integral of ``f`` for every ``f`` of bandwidth ``2b`` (Driscoll & Healy 1994; Kostelec &
Rockmore 2008), which is what makes the spherical-harmonic transform exact.

Every function is pure, float64 and cached; callers must not modify the returned arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

GRID_NAME = "driscoll-healy-soft"


def check_bandwidth(bandwidth: int) -> int:
    if not isinstance(bandwidth, int | np.integer) or bandwidth < 2:
        raise ValueError(f"bandwidth must be an integer >= 2, got {bandwidth!r}")
    return int(bandwidth)


@cache
def colatitudes(bandwidth: int) -> np.ndarray:
    """theta_j = pi (2j+1) / (4b), shape (2b,), float64."""
    b = check_bandwidth(bandwidth)
    out = np.pi * (2 * np.arange(2 * b) + 1) / (4 * b)
    out.setflags(write=False)
    return out


@cache
def longitudes(bandwidth: int) -> np.ndarray:
    """phi_k = 2 pi k / (2b), shape (2b,), float64."""
    b = check_bandwidth(bandwidth)
    out = 2 * np.pi * np.arange(2 * b) / (2 * b)
    out.setflags(write=False)
    return out


@cache
def colatitude_weights(bandwidth: int) -> np.ndarray:
    """Weights w_j with sum_j w_j g(theta_j) = int_0^pi g(theta) sin(theta) dtheta.

    Exact for g a polynomial of degree < 2b in cos(theta); the weights sum to 2.
    w_j = (2/b) sin(theta_j) sum_{k<b} sin((2k+1) theta_j) / (2k+1).
    """
    b = check_bandwidth(bandwidth)
    theta = colatitudes(b)
    k = np.arange(b)
    series = np.sin(np.outer(theta, 2 * k + 1)) / (2 * k + 1)  # (2b, b)
    out = (2.0 / b) * np.sin(theta) * series.sum(axis=1)
    out.setflags(write=False)
    return out


@cache
def area_weights(bandwidth: int) -> np.ndarray:
    """Quadrature weight of each grid point, shape (2b, 2b); sums to 4 pi."""
    b = check_bandwidth(bandwidth)
    out = np.outer(colatitude_weights(b), np.full(2 * b, 2 * np.pi / (2 * b)))
    out.setflags(write=False)
    return out


@cache
def directions(bandwidth: int) -> np.ndarray:
    """Unit vectors of the grid points, shape (2b, 2b, 3): rows = colatitude, cols = longitude.

    The polar axis is +z: (sin t cos p, sin t sin p, cos t).
    """
    b = check_bandwidth(bandwidth)
    theta = colatitudes(b)[:, None]
    phi = longitudes(b)[None, :]
    out = np.stack(
        [
            np.sin(theta) * np.cos(phi),
            np.sin(theta) * np.sin(phi),
            np.broadcast_to(np.cos(theta), (2 * b, 2 * b)),
        ],
        axis=-1,
    )
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class GridSpec:
    """What a spherical map is sampled on; written into checkpoints and ONNX metadata."""

    bandwidth: int
    name: str = GRID_NAME

    def __post_init__(self) -> None:
        check_bandwidth(self.bandwidth)
        if self.name != GRID_NAME:
            raise ValueError(f"unknown grid {self.name!r}; this code samples {GRID_NAME!r}")

    @property
    def n_lat(self) -> int:
        return 2 * self.bandwidth

    @property
    def n_lon(self) -> int:
        return 2 * self.bandwidth

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_lat, self.n_lon)

    @property
    def step_radians(self) -> float:
        """The longitude step: a rotation about +z by this angle shifts a map by one column."""
        return float(np.pi / self.bandwidth)
