"""The grid, the harmonics and the transforms against independent float64 references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp
import torch

from model import sht
from model.harmonics import real_sph_harm
from raymap import grid
from tests.conftest import TRANSFORM_RTOL
from tests.spherical import random_coefficients, relative_error


def scipy_real_sph_harm(l: int, m: int, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Real harmonic from scipy's complex one, removing its Condon-Shortley phase."""
    y = sp.sph_harm_y(l, abs(m), theta, phi) * (-1.0) ** abs(m)
    if m > 0:
        return np.sqrt(2.0) * y.real
    if m < 0:
        return np.sqrt(2.0) * y.imag
    return y.real


@pytest.mark.parametrize("bandwidth", [2, 3, 8, 16])
def test_colatitude_weights_match_legendre_moment_equations(bandwidth: int) -> None:
    # Independent reference: the unique weights with sum_j w_j P_l(cos t_j) = 2 delta_l0, l < 2b.
    theta = grid.colatitudes(bandwidth)
    degrees = np.arange(2 * bandwidth)
    system = sp.eval_legendre(degrees[:, None], np.cos(theta)[None, :])
    rhs = np.where(degrees == 0, 2.0, 0.0)
    expected = np.linalg.solve(system, rhs)
    np.testing.assert_allclose(grid.colatitude_weights(bandwidth), expected, rtol=1e-10, atol=1e-13)


def test_area_weights_integrate_the_sphere() -> None:
    b = 16
    assert grid.area_weights(b).sum() == pytest.approx(4 * np.pi, rel=1e-13)
    z = grid.directions(b)[..., 2]
    # int z^2 dA = 4 pi / 3
    assert (grid.area_weights(b) * z**2).sum() == pytest.approx(4 * np.pi / 3, rel=1e-12)


@pytest.mark.parametrize("bad", [0, 1, -3, 2.5])
def test_bad_bandwidth_is_refused_with_its_value(bad: object) -> None:
    with pytest.raises(ValueError, match=str(bad)):
        grid.colatitudes(bad)  # type: ignore[arg-type]


def test_real_harmonics_match_scipy() -> None:
    rng = np.random.default_rng(0)
    theta = rng.uniform(0, np.pi, 50)
    phi = rng.uniform(0, 2 * np.pi, 50)
    max_degree = 10
    ours = real_sph_harm(max_degree, theta, phi)
    for l in range(max_degree + 1):
        for m in range(-l, l + 1):
            expected = scipy_real_sph_harm(l, m, theta, phi)
            np.testing.assert_allclose(ours[l, m + max_degree], expected, atol=1e-12, rtol=1e-10)


def test_real_harmonics_stay_orthonormal_at_bandwidth_128() -> None:
    # The recurrence must not lose accuracy at high degree: check the quadrature Gram matrix of
    # the m = 0 and m = 100 columns.
    b = 128
    for m in (0, 100):
        table = sht._legendre_table(b, b)[m + b - 1]  # (T, L)
        gram = table.T @ (table * grid.colatitude_weights(b)[:, None]) * 2 * np.pi
        if m:
            gram /= 2.0  # cos^2 integrates to pi, not 2 pi
        keep = np.arange(b) >= m
        np.testing.assert_allclose(gram[np.ix_(keep, keep)], np.eye(keep.sum()), atol=1e-10)


@pytest.mark.parametrize("bandwidth", [4, 8])
def test_dense_analysis_matrix_matches_scipy_quadrature(bandwidth: int) -> None:
    theta = grid.colatitudes(bandwidth)[:, None]
    phi = grid.longitudes(bandwidth)[None, :]
    weights = grid.area_weights(bandwidth)
    expected = np.zeros((4 * bandwidth**2, bandwidth, 2 * bandwidth - 1))
    for l in range(bandwidth):
        for m in range(-l, l + 1):
            y = scipy_real_sph_harm(l, m, theta, phi)
            expected[:, l, m + bandwidth - 1] = (y * weights).reshape(-1)
    ours = sht.dense_analysis_matrix(bandwidth).reshape(expected.shape)
    np.testing.assert_allclose(ours, expected, atol=1e-13)


@pytest.mark.parametrize("bandwidth", [4, 8])
def test_dense_synthesis_matrix_matches_scipy(bandwidth: int) -> None:
    theta = grid.colatitudes(bandwidth)[:, None]
    phi = grid.longitudes(bandwidth)[None, :]
    ours = sht.dense_synthesis_matrix(bandwidth).reshape(bandwidth, 2 * bandwidth - 1, -1)
    for l in range(bandwidth):
        for m in range(-bandwidth + 1, bandwidth):
            expected = scipy_real_sph_harm(l, m, theta, phi) if abs(m) <= l else 0 * theta * phi
            np.testing.assert_allclose(ours[l, m + bandwidth - 1], expected.reshape(-1), atol=1e-12)


def test_longitude_matrices_match_numpy_fft() -> None:
    b = 8
    x = np.random.default_rng(3).standard_normal((5, 2 * b))
    spectrum = np.fft.rfft(x, axis=-1)[:, :b] * (np.pi / b)
    ours = x @ sht.longitude_analysis_matrix(b)  # (5, 2b-1), orders -(b-1)..b-1
    np.testing.assert_allclose(ours[:, b - 1 :], spectrum.real, atol=1e-12)
    np.testing.assert_allclose(ours[:, : b - 1][:, ::-1], -spectrum.imag[:, 1:], atol=1e-12)
    # Synthesis of a single order reproduces the trig function on the grid.
    phi = grid.longitudes(b)
    np.testing.assert_allclose(sht.longitude_synthesis_matrix(b)[b - 1 + 3], np.cos(3 * phi))
    np.testing.assert_allclose(sht.longitude_synthesis_matrix(b)[b - 1 - 2], np.sin(2 * phi))


def test_builders_are_cached_and_read_only() -> None:
    a = sht.legendre_analysis_matrices(8)
    assert a is sht.legendre_analysis_matrices(8)
    with pytest.raises(ValueError):
        a[0, 0, 0] = 1.0


@pytest.mark.parametrize("bandwidth", [8, 16, 32, 64])
def test_round_trip_recovers_coefficients(bandwidth: int, dtype_name: str) -> None:
    dtype = getattr(torch, dtype_name)
    rng = np.random.default_rng(bandwidth)
    coefficients = random_coefficients(rng, (3, 2), bandwidth)
    c = torch.tensor(coefficients, dtype=dtype)
    forward, inverse = sht.SHT(bandwidth, dtype=dtype), sht.InverseSHT(bandwidth, dtype=dtype)
    samples = inverse(c)
    assert samples.shape == (3, 2, 2 * bandwidth, 2 * bandwidth)
    recovered = forward(samples)
    err = relative_error(recovered.double().numpy(), coefficients)
    assert err < TRANSFORM_RTOL[dtype_name], f"round trip error {err:.3e} at b={bandwidth}"


def test_inverse_matches_pointwise_synthesis() -> None:
    from model.harmonics import synthesize

    b = 8
    coefficients = random_coefficients(np.random.default_rng(1), (2,), b)
    theta = grid.colatitudes(b)[:, None]
    phi = grid.longitudes(b)[None, :]
    expected = synthesize(coefficients, theta, phi)
    ours = sht.InverseSHT(b, dtype=torch.float64)(torch.tensor(coefficients)).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-12)


def test_analysis_to_fewer_degrees_truncates_exactly() -> None:
    b, keep = 16, 6
    coefficients = random_coefficients(np.random.default_rng(2), (4,), b)
    samples = sht.InverseSHT(b, dtype=torch.float64)(torch.tensor(coefficients))
    truncated = sht.SHT(b, n_degrees=keep, dtype=torch.float64)(samples).numpy()
    expected = coefficients[:, :keep, b - keep : b + keep - 1]
    np.testing.assert_allclose(truncated, expected, atol=1e-12)


def test_modules_hold_no_persistent_state() -> None:
    assert sht.SHT(8).state_dict() == {}
    assert sht.InverseSHT(8).state_dict() == {}
