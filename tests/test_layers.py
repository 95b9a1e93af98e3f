"""Spectral convolution, pooling and the pooled descriptor: equivariance and invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.harmonics import synthesize
from model.layers import (
    SpectralConv,
    SpectralPool,
    SphericalMean,
    anchor_interpolation_matrix,
    zonal_convolution_factor,
)
from model.sht import SHT, coefficient_mask
from raymap import grid
from tests.spherical import (
    assert_equivariant,
    random_coefficients,
    random_rotation,
    relative_error,
    rotate_samples,
    sample_rotated,
)

EQUIVARIANCE_RTOL = 1e-4


def make_conv(dtype: torch.dtype, b_in: int = 16, b_out: int = 8) -> SpectralConv:
    torch.manual_seed(0)
    return SpectralConv(3, 4, b_in, b_out, n_anchors=4, dtype=dtype)


def run(module: torch.nn.Module, x: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    with torch.no_grad():
        return module(torch.tensor(x, dtype=dtype)).double().numpy()


def test_anchor_interpolation_is_linear_and_hits_anchors() -> None:
    a = anchor_interpolation_matrix(9, 5)  # anchors at 0, 2, 4, 6, 8
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    np.testing.assert_allclose(a[[0, 2, 4, 6, 8]], np.eye(5))
    np.testing.assert_allclose(a[3], [0, 0.5, 0.5, 0, 0])


def test_convolution_matches_the_spectral_formula(dtype_name: str) -> None:
    # (f * h)^(l, m) = 2 pi sqrt(4 pi / (2l+1)) sum_i f_i^(l, m) h_io^(l, 0), computed by hand.
    dtype = getattr(torch, dtype_name)
    b = 8
    conv = make_conv(dtype, b, b)
    f = random_coefficients(np.random.default_rng(0), (2, 3), b)
    x = synthesize(f, grid.colatitudes(b)[:, None], grid.longitudes(b)[None, :])
    anchors = conv.anchor_spectra.detach().double().numpy().reshape(4, -1)
    h = (anchor_interpolation_matrix(b, 4) @ anchors).reshape(b, 3, 4)  # (L, I, O)
    expected = np.einsum("bilm,lio,l->bolm", f, h, zonal_convolution_factor(b))
    got = run(torch.nn.Sequential(conv, SHT(b, dtype=dtype)), x, dtype)
    rtol = 1e-5 if dtype == torch.float32 else 1e-10
    assert relative_error(got, expected) < rtol


@pytest.mark.parametrize(("b_in", "b_out", "shift"), [(16, 16, 3), (16, 8, 6)])
def test_polar_rotation_by_grid_steps_is_exact(b_in: int, b_out: int, shift: int) -> None:
    # Any input, not only band-limited ones: a shift of columns commutes with the layer.
    conv = make_conv(torch.float64, b_in, b_out)
    x = np.random.default_rng(5).standard_normal((2, 3, 2 * b_in, 2 * b_in))
    out_shift = shift * b_out // b_in
    assert_equivariant(
        lambda v: run(conv, v, torch.float64),
        lambda v: np.roll(v, shift, axis=-1),
        lambda v: np.roll(v, out_shift, axis=-1),
        x,
        rtol=1e-12,
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_convolution_commutes_with_arbitrary_rotations(dtype_name: str, seed: int) -> None:
    dtype = getattr(torch, dtype_name)
    b_in, b_out = 16, 8
    conv = make_conv(dtype, b_in, b_out)
    rng = np.random.default_rng(seed)
    rotation = random_rotation(rng)
    x = sample_rotated(random_coefficients(rng, (2, 3), b_in), b_in, np.eye(3))
    assert_equivariant(
        lambda v: run(conv, v, dtype),
        lambda v: rotate_samples(v, rotation),
        lambda v: rotate_samples(v, rotation),
        x,
        rtol=EQUIVARIANCE_RTOL,
    )


def test_pooled_descriptor_is_rotation_invariant(dtype_name: str) -> None:
    dtype = getattr(torch, dtype_name)
    b = 16
    conv = make_conv(dtype, b, 8)
    mean = SphericalMean(8, dtype=dtype)
    rng = np.random.default_rng(7)
    f = random_coefficients(rng, (2, 3), b)
    f[..., 0, :] = 0.0  # no mean in the input: the descriptor comes from the filters
    f[..., 0, b - 1] = 1.0

    def descriptor(samples: np.ndarray) -> np.ndarray:
        return run(torch.nn.Sequential(conv, mean), samples, dtype)

    reference = descriptor(sample_rotated(f, b, np.eye(3)))
    assert np.abs(reference).max() > 1e-3
    for _ in range(3):
        rotated = descriptor(sample_rotated(f, b, random_rotation(rng)))
        assert relative_error(rotated, reference) < EQUIVARIANCE_RTOL


def test_spherical_mean_is_exact_for_band_limited_functions() -> None:
    b = 8
    f = random_coefficients(np.random.default_rng(9), (4,), b)
    x = synthesize(f, grid.colatitudes(b)[:, None], grid.longitudes(b)[None, :])
    got = run(SphericalMean(b, dtype=torch.float64), x, torch.float64)
    # mean = f(0,0) Y_0^0 = f(0,0) / sqrt(4 pi)
    np.testing.assert_allclose(got, f[:, 0, b - 1] / np.sqrt(4 * np.pi), atol=1e-13)


def test_spectral_pool_keeps_low_degrees_only() -> None:
    b_in, b_out = 16, 4
    f = random_coefficients(np.random.default_rng(4), (2,), b_in)
    x = synthesize(f, grid.colatitudes(b_in)[:, None], grid.longitudes(b_in)[None, :])
    pooled = run(SpectralPool(b_in, b_out, dtype=torch.float64), x, torch.float64)
    assert pooled.shape == (2, 2 * b_out, 2 * b_out)
    low = f[:, :b_out, b_in - b_out : b_in + b_out - 1]
    expected = synthesize(low, grid.colatitudes(b_out)[:, None], grid.longitudes(b_out)[None, :])
    np.testing.assert_allclose(pooled, expected, atol=1e-12)
    assert coefficient_mask(b_out).shape == low.shape[-2:]


def test_convolution_gradients_match_finite_differences() -> None:
    torch.manual_seed(0)
    conv = SpectralConv(2, 2, 4, 3, n_anchors=2, dtype=torch.float64)
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(conv, (x,))

    def of_weights(w: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(conv, {"anchor_spectra": w}, (x.detach(),))

    w = conv.anchor_spectra.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(of_weights, (w,))


def test_out_bandwidth_above_in_bandwidth_is_refused() -> None:
    with pytest.raises(ValueError, match="out_bandwidth 16 > in_bandwidth 8"):
        SpectralConv(1, 1, 8, 16)
