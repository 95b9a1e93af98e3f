"""The spherical-harmonic transform and its inverse as matrix products on precomputed matrices.

Separable form on the Driscoll-Healy grid (``raymap.grid``) of bandwidth ``b``:

    analysis   f (.., T=2b, P=2b) --longitude DFT as a real matrix--> (.., T, M=2b-1)
                                  --one Legendre matrix per order m--> coefficients (.., L, M)
    synthesis  the same two steps backwards.

Coefficients use the layout [l, m + b - 1] (l = degree < b, m = order, |m| <= l; zero
elsewhere) for the real spherical harmonics of ``model.harmonics``. The order axis holds
sin(|m| p) terms for m < 0 and cos(m p) terms for m >= 0.

Every matrix is built in float64 by one pure, cached builder function of the bandwidth, then
held by the modules as a non-persistent buffer (checkpoints hold only learned weights) and cast
once to the module's dtype. ``forward`` contains only matmul/permute/reshape, so the network
exports to ONNX as plain MatMul (no FFT, no complex numbers).

Shape letters: N batch (flattened leading dims), T colatitudes, P longitudes, M orders, L degrees.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from torch import nn

from model.harmonics import normalized_legendre
from raymap import grid


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _order_scale(orders: np.ndarray) -> np.ndarray:
    """sqrt(2) for m != 0, 1 for m = 0: the real-harmonic normalization."""
    return np.where(orders == 0, 1.0, np.sqrt(2.0))


def orders(n_degrees: int) -> np.ndarray:
    """Order m of each slot of the order axis: -(L-1) .. L-1."""
    return np.arange(-(n_degrees - 1), n_degrees)


def check_degrees(bandwidth: int, n_degrees: int | None) -> int:
    """Number of degrees kept by an analysis on grid ``bandwidth``: 1 <= L <= b."""
    b = grid.check_bandwidth(bandwidth)
    n = b if n_degrees is None else int(n_degrees)
    if not 1 <= n <= b:
        raise ValueError(f"n_degrees must be in [1, bandwidth={b}], got {n_degrees}")
    return n


@cache
def longitude_analysis_matrix(bandwidth: int, n_degrees: int | None = None) -> np.ndarray:
    """(2b, 2L-1): column m holds cos(m p_k) dp for m >= 0 and sin(|m| p_k) dp for m < 0."""
    n = check_degrees(bandwidth, n_degrees)
    phi = grid.longitudes(bandwidth)[:, None]  # (P, 1)
    m = orders(n)[None, :]  # (1, M)
    trig = np.where(m >= 0, np.cos(m * phi), np.sin(-m * phi))  # (P, M)
    return _frozen(trig * (2.0 * np.pi / phi.shape[0]))


@cache
def longitude_synthesis_matrix(bandwidth: int, n_degrees: int | None = None) -> np.ndarray:
    """(2L-1, 2b): row m holds cos(m p_k) for m >= 0 and sin(|m| p_k) for m < 0."""
    n = check_degrees(bandwidth, n_degrees)
    phi = grid.longitudes(bandwidth)[None, :]  # (1, P)
    m = orders(n)[:, None]  # (M, 1)
    return _frozen(np.where(m >= 0, np.cos(m * phi), np.sin(-m * phi)))


@cache
def _legendre_table(bandwidth: int, n_degrees: int) -> np.ndarray:
    """(M, T, L): c_m Pbar_l^|m|(cos theta_j), zero where l < |m|."""
    theta = grid.colatitudes(bandwidth)
    p = normalized_legendre(n_degrees - 1, theta)  # (L, L, T) indexed [l, |m|, j]
    m = orders(n_degrees)
    table = p[:, np.abs(m), :] * _order_scale(m)[None, :, None]  # (L, M, T)
    return _frozen(np.ascontiguousarray(table.transpose(1, 2, 0)))


@cache
def legendre_analysis_matrices(bandwidth: int, n_degrees: int | None = None) -> np.ndarray:
    """(M, T, L): w_j c_m Pbar_l^|m|(cos theta_j); one (T, L) matrix per order m."""
    n = check_degrees(bandwidth, n_degrees)
    weights = grid.colatitude_weights(bandwidth)[None, :, None]
    return _frozen(_legendre_table(bandwidth, n) * weights)


@cache
def legendre_synthesis_matrices(bandwidth: int, n_degrees: int | None = None) -> np.ndarray:
    """(M, L, T): c_m Pbar_l^|m|(cos theta_j); one (L, T) matrix per order m."""
    n = check_degrees(bandwidth, n_degrees)
    return _frozen(np.ascontiguousarray(_legendre_table(bandwidth, n).transpose(0, 2, 1)))


def dense_analysis_matrix(bandwidth: int) -> np.ndarray:
    """(4b^2, b(2b-1)): the whole analysis as one matrix; for benchmarks and tests only."""
    f = longitude_analysis_matrix(bandwidth)  # (P, M)
    leg = legendre_analysis_matrices(bandwidth)  # (M, T, L)
    dense = np.einsum("pm,mtl->tplm", f, leg)  # (T, P, L, M)
    t, p, l, m = dense.shape
    return dense.reshape(t * p, l * m)


def dense_synthesis_matrix(bandwidth: int) -> np.ndarray:
    """(b(2b-1), 4b^2): the whole synthesis as one matrix; for benchmarks and tests only."""
    f = longitude_synthesis_matrix(bandwidth)  # (M, P)
    leg = legendre_synthesis_matrices(bandwidth)  # (M, L, T)
    dense = np.einsum("mp,mlt->lmtp", f, leg)  # (L, M, T, P)
    l, m, t, p = dense.shape
    return dense.reshape(l * m, t * p)


def coefficient_mask(n_degrees: int) -> np.ndarray:
    """(L, 2L-1) bool: True where |m| <= l, the slots that hold a harmonic."""
    l = np.arange(n_degrees)[:, None]
    return np.abs(orders(n_degrees))[None, :] <= l


def _buffer(module: nn.Module, name: str, array: np.ndarray, dtype: torch.dtype) -> None:
    module.register_buffer(name, torch.tensor(array, dtype=dtype), persistent=False)


class SphericalAnalysis(nn.Module):
    """Grid samples (.., 2b, 2b) -> spectral (M, N, L), the layout the spectral layers use."""

    def __init__(
        self, bandwidth: int, n_degrees: int | None = None, dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__()
        self.bandwidth = grid.check_bandwidth(bandwidth)
        self.n_degrees = check_degrees(bandwidth, n_degrees)
        _buffer(self, "dft", longitude_analysis_matrix(bandwidth, self.n_degrees), dtype)
        _buffer(self, "legendre", legendre_analysis_matrices(bandwidth, self.n_degrees), dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_lat, n_lon = x.shape[-2:]
        # One GEMM on transposed operands (free for BLAS) writes (M, N*T) contiguous, so the
        # per-order product gets a plain (M, N, T) batch, not a permuted view that bmm would
        # copy and multiply order by order.
        x = self.dft.t() @ x.reshape(-1, n_lon).t()  # (M, N*T)
        x = x.reshape(x.shape[0], -1, n_lat)  # (M, N, T)
        return x @ self.legendre  # (M, N, L)


class SphericalSynthesis(nn.Module):
    """Spectral (M, N, L) -> grid samples (N, 2b, 2b) on the grid of ``bandwidth``."""

    def __init__(
        self, bandwidth: int, n_degrees: int | None = None, dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__()
        self.bandwidth = grid.check_bandwidth(bandwidth)
        self.n_degrees = check_degrees(bandwidth, n_degrees)
        _buffer(self, "legendre", legendre_synthesis_matrices(bandwidth, self.n_degrees), dtype)
        _buffer(self, "dft", longitude_synthesis_matrix(bandwidth, self.n_degrees), dtype)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        x = c @ self.legendre  # (M, N, T), contiguous
        n_orders, n, n_lat = x.shape
        x = x.reshape(n_orders, n * n_lat).t() @ self.dft  # (N*T, P); the transpose is free
        return x.reshape(n, n_lat, -1)  # (N, T, P)


class SHT(nn.Module):
    """Forward transform: (.., 2b, 2b) grid samples -> (.., L, 2L-1) real coefficients."""

    def __init__(
        self, bandwidth: int, n_degrees: int | None = None, dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__()
        self.analysis = SphericalAnalysis(bandwidth, n_degrees, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-2]
        c = self.analysis(x)  # (M, N, L)
        c = c.permute(1, 2, 0)  # (N, L, M)
        return c.reshape(*lead, *c.shape[1:])


class InverseSHT(nn.Module):
    """Inverse transform: (.., L, 2L-1) coefficients -> (.., 2b, 2b) samples on grid b >= L."""

    def __init__(
        self, bandwidth: int, n_degrees: int | None = None, dtype: torch.dtype = torch.float32
    ) -> None:
        super().__init__()
        self.synthesis = SphericalSynthesis(bandwidth, n_degrees, dtype)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        lead = c.shape[:-2]
        n_degrees, n_orders = c.shape[-2:]
        # contiguous: bmm on the permuted view would copy and multiply order by order
        c = c.reshape(-1, n_degrees, n_orders).permute(2, 0, 1).contiguous()  # (M, N, L)
        x = self.synthesis(c)  # (N, T, P)
        return x.reshape(*lead, *x.shape[1:])
