"""Spectral layers of the spherical CNN (Esteves et al., ECCV 2018).

* ``SpectralConv``: spherical convolution with zonal filters, done in the spectral domain as
  (f * h)^(l, m) = 2 pi sqrt(4 pi / (2l+1)) f^(l, m) h^(l, 0), summed over input channels.
  Each filter's spectrum h^(l, 0) is a learned value at a few anchor degrees, linearly
  interpolated to every degree: a smooth spectrum, so a filter localized on the sphere.
  Changing the bandwidth inside the layer (out_bandwidth < in_bandwidth) is spectral pooling.
* ``SpectralPool``: keep the degrees below the new bandwidth and resample on its grid.
* ``SphericalMean``: area-weighted global average (exact quadrature), rotation invariant.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
from torch import nn

from model.sht import SphericalAnalysis, SphericalSynthesis
from raymap import grid


@cache
def anchor_interpolation_matrix(n_degrees: int, n_anchors: int) -> np.ndarray:
    """(L, K) float64: linear interpolation from K anchors evenly spaced on [0, L-1] to each l."""
    if n_degrees < 1 or not 1 <= n_anchors <= n_degrees:
        raise ValueError(f"need 1 <= n_anchors <= n_degrees, got {n_anchors=} {n_degrees=}")
    if n_anchors == 1:
        out = np.ones((n_degrees, 1))
    else:
        anchors = np.linspace(0.0, n_degrees - 1.0, n_anchors)
        eye = np.eye(n_anchors)
        out = np.stack([np.interp(np.arange(n_degrees), anchors, e) for e in eye], axis=1)
    out.setflags(write=False)
    return out


@cache
def zonal_convolution_factor(n_degrees: int) -> np.ndarray:
    """(L,) float64: 2 pi sqrt(4 pi / (2l + 1)), the spectral factor of a zonal convolution."""
    l = np.arange(n_degrees)
    out = 2.0 * np.pi * np.sqrt(4.0 * np.pi / (2.0 * l + 1.0))
    out.setflags(write=False)
    return out


class SpectralConv(nn.Module):
    """Spherical convolution (B, I, 2b_in, 2b_in) -> (B, O, 2b_out, 2b_out), b_out <= b_in.

    Linear and exactly rotation-equivariant for inputs of bandwidth b_in. Bias and
    nonlinearity are left to the caller (they act pointwise in the spatial domain).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        in_bandwidth: int,
        out_bandwidth: int | None = None,
        n_anchors: int = 8,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        out_bandwidth = in_bandwidth if out_bandwidth is None else out_bandwidth
        if out_bandwidth > in_bandwidth:
            raise ValueError(f"out_bandwidth {out_bandwidth} > in_bandwidth {in_bandwidth}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_bandwidth, self.out_bandwidth = in_bandwidth, out_bandwidth
        n_degrees = out_bandwidth
        self.n_anchors = min(n_anchors, n_degrees)
        self.analysis = SphericalAnalysis(in_bandwidth, n_degrees, dtype)
        self.synthesis = SphericalSynthesis(out_bandwidth, n_degrees, dtype)
        interp = anchor_interpolation_matrix(n_degrees, self.n_anchors)  # (L, K)
        factor = zonal_convolution_factor(n_degrees)  # (L,)
        self.register_buffer(
            "degree_map", torch.tensor(interp * factor[:, None], dtype=dtype), persistent=False
        )
        # Filter spectra h^(l, 0) at the anchors, (K, I, O). Initialized so that each degree's
        # channel-mixing matrix has variance 2 / I (He), i.e. h = N(0, 2/I) / factor(l_k).
        anchors = np.linspace(0.0, n_degrees - 1.0, self.n_anchors)
        anchor_factor = np.interp(anchors, np.arange(n_degrees), factor)
        spectra = torch.randn(self.n_anchors, in_channels, out_channels, dtype=dtype)
        scale = torch.tensor(math.sqrt(2.0 / in_channels) / anchor_factor, dtype=dtype)
        self.anchor_spectra = nn.Parameter(spectra * scale[:, None, None])

    def degree_weights(self) -> torch.Tensor:
        """(L, I, O): the channel-mixing matrix of each degree, factor included."""
        k = self.n_anchors
        w = self.degree_map @ self.anchor_spectra.reshape(k, -1)  # (L, I*O)
        return w.reshape(-1, self.in_channels, self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        c = self.analysis(x)  # (M, B*I, L)
        n_orders, _, n_degrees = c.shape
        c = c.reshape(n_orders, batch, self.in_channels, n_degrees)  # (M, B, I, L)
        c = c.permute(3, 0, 1, 2).reshape(n_degrees, n_orders * batch, self.in_channels)
        c = c @ self.degree_weights()  # (L, M*B, O)
        c = c.reshape(n_degrees, n_orders, batch * self.out_channels)  # (L, M, B*O)
        c = c.permute(1, 2, 0)  # (M, B*O, L)
        y = self.synthesis(c)  # (B*O, T, P)
        return y.reshape(batch, self.out_channels, *y.shape[1:])

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, bandwidth={self.in_bandwidth}"
            f"->{self.out_bandwidth}, n_anchors={self.n_anchors}"
        )


class SpectralPool(nn.Module):
    """(.., 2b_in, 2b_in) -> (.., 2b_out, 2b_out): keep degrees < b_out, resample on grid b_out."""

    def __init__(self, in_bandwidth: int, out_bandwidth: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        if out_bandwidth > in_bandwidth:
            raise ValueError(f"out_bandwidth {out_bandwidth} > in_bandwidth {in_bandwidth}")
        self.analysis = SphericalAnalysis(in_bandwidth, out_bandwidth, dtype)
        self.synthesis = SphericalSynthesis(out_bandwidth, out_bandwidth, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-2]
        y = self.synthesis(self.analysis(x))  # (N, T', P')
        return y.reshape(*lead, *y.shape[1:])


class SphericalMean(nn.Module):
    """(.., 2b, 2b) -> (..): the area-weighted mean over the sphere, exact for bandwidth 2b."""

    def __init__(self, bandwidth: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        weights = grid.area_weights(bandwidth) / (4.0 * np.pi)
        self.register_buffer("weights", torch.tensor(weights, dtype=dtype), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weights).sum(dim=(-2, -1))
