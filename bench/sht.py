"""Time the spherical-harmonic transform on this CPU: ours vs torch-harmonics vs one dense matrix.

Goal: forward+inverse, with and without backward, at b = 16, 32, 64 for a batch of 32 x 16
channels, no slower than NVIDIA torch-harmonics' RealSHT/InverseRealSHT at any size and at least
5x faster than the dense one-matrix form at b = 64.

Forms (each maps (32, 16, 2b, 2b) float32 samples to coefficients and back):

    ours   model.sht.SHT / InverseSHT: longitude DFT as a real matrix, one Legendre matrix per order
    th     torch_harmonics.RealSHT / InverseRealSHT(nlat=2b, nlon=2b, lmax=b, mmax=b,
           grid="equiangular"): rFFT + Legendre quadrature on its own Clenshaw-Curtis grid
           (2b x 2b samples, poles included), complex coefficients (.., b, b)
    dense  x.reshape(N, 4b^2) @ A and c.reshape(N, b(2b-1)) @ S with A, S the whole analysis and
           synthesis as single float32 matrices (model.sht.dense_analysis_matrix/_synthesis_matrix)

Timing: torch.set_num_threads(--threads, default 2). "fwd+inv" is inverse(forward(x)) under
torch.no_grad(); "+bwd" is inverse(forward(x)).sum().backward() with x requiring grad. Each form
gets --repeats calls (default 20) after warm-up, the forms interleaved one call each per round so
that load from other processes hits them alike; a form whose single call takes longer than
--budget / --repeats seconds gets fewer (at least 5; the n column says how many). The first table
gives the median, the second the fastest call of the same samples (the better estimate when
other processes share the CPU).

torch-harmonics is not a dependency of the project; it lives in a benchmark-only venv:

    python3 -m venv /work/bench-venv
    /work/bench-venv/bin/pip install torch==2.13.0   # the CPU wheel; an unpinned torch pulls CUDA
    /work/bench-venv/bin/pip install numpy scipy trimesh embreex   # what `model`/`raymap` import
    /work/bench-venv/bin/pip install --no-deps torch-harmonics==0.9.3
    # 0.9.3 declares torch>=2.14 but RealSHT/InverseRealSHT are pure PyTorch and run on 2.13;
    # --no-deps keeps pip from replacing the CPU torch with a CUDA one.

Run from the repository root:

    PYTHONPATH=. /work/bench-venv/bin/python bench/sht.py     # all three forms
    make bench                                               # project venv: th column skipped

Before timing it checks once per bandwidth that ours and the dense form agree (and stops if
not), and reports, without asserting, how far torch-harmonics' coefficients are from ours on a
band-limited function (its norm="ortho", csphase=False harmonics are ours up to a sqrt(2) and
the sign of the sine part, mapped in ``to_th`` / ``from_th``).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from model import sht
from model.harmonics import normalized_legendre

try:
    import torch_harmonics as th
except ImportError:  # the project venv: no torch-harmonics column
    th = None

AGREE_RTOL = 1e-4  # ours vs dense in float32, relative to the largest value
MIN_REPEATS = 5

Transform = Callable[[torch.Tensor], torch.Tensor]


# --- multiply-add counts per map, one direction (analysis and synthesis cost the same) ----------


def macs_ours(b: int) -> int:
    """Longitude DFT as a matrix (T=2b, P=2b, M=2b-1) + per-order Legendre (M, T, L=b)."""
    return 2 * b * 2 * b * (2 * b - 1) + (2 * b - 1) * 2 * b * b


def macs_dense(b: int) -> int:
    """One (4b^2, b(2b-1)) matrix."""
    return 4 * b * b * b * (2 * b - 1)


def macs_th(b: int) -> int:
    """2b real FFTs of length n=2b at n log2 n each + Legendre on real and imaginary (b, b, 2b)."""
    n = 2 * b
    return round(n * n * math.log2(n)) + 2 * b * b * n


MACS = {"ours": macs_ours, "th": macs_th, "dense": macs_dense}


# --- the three forms ---------------------------------------------------------------------------


def ours_form(b: int) -> tuple[Transform, Transform]:
    return sht.SHT(b), sht.InverseSHT(b)


def dense_form(b: int) -> tuple[Transform, Transform]:
    analysis = torch.tensor(sht.dense_analysis_matrix(b), dtype=torch.float32)  # (4b^2, L M)
    synthesis = torch.tensor(sht.dense_synthesis_matrix(b), dtype=torch.float32)  # (L M, 4b^2)
    n_orders = 2 * b - 1

    def forward(x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-2]
        c = x.reshape(-1, 4 * b * b) @ analysis  # (N, L M)
        return c.reshape(*lead, b, n_orders)

    def inverse(c: torch.Tensor) -> torch.Tensor:
        lead = c.shape[:-2]
        x = c.reshape(-1, b * n_orders) @ synthesis  # (N, T P)
        return x.reshape(*lead, 2 * b, 2 * b)

    return forward, inverse


def th_form(b: int) -> tuple[Transform, Transform]:
    kwargs = {"lmax": b, "mmax": b, "grid": "equiangular", "norm": "ortho", "csphase": False}
    return th.RealSHT(2 * b, 2 * b, **kwargs), th.InverseRealSHT(2 * b, 2 * b, **kwargs)


# --- correctness, once per bandwidth -----------------------------------------------------------


def random_coefficients(rng: np.random.Generator, n_maps: int, b: int) -> np.ndarray:
    """(n_maps, b, 2b-1) float64, zero outside |m| <= l: a band-limited function of bandwidth b."""
    return rng.standard_normal((n_maps, b, 2 * b - 1)) * sht.coefficient_mask(b)


def check_dense(b: int, rng: np.random.Generator) -> str:
    """Ours and the dense form, float32, on random samples and random coefficients."""
    (ours_fwd, ours_inv), (dense_fwd, dense_inv) = ours_form(b), dense_form(b)
    x = torch.tensor(rng.standard_normal((4, 2 * b, 2 * b)), dtype=torch.float32)
    c = torch.tensor(random_coefficients(rng, 4, b), dtype=torch.float32)
    with torch.no_grad():
        errors = [
            relative_max_error(ours_fwd(x), dense_fwd(x)),
            relative_max_error(ours_inv(c), dense_inv(c)),
        ]
    if max(errors) > AGREE_RTOL:
        raise SystemExit(f"b={b}: ours and dense disagree: max relative errors {errors}")
    return f"ours vs dense: analysis {errors[0]:.1e}, synthesis {errors[1]:.1e} (relative max)"


def relative_max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


def to_th(c: np.ndarray) -> np.ndarray:
    """Our real layout (.., L, 2L-1) -> torch-harmonics' complex (.., L, L).

    f = sum a_l0 P_l0 + sqrt2 P_lm (a_lm cos mp + a_l,-m sin mp)   (ours)
      = sum Re[h_l0] P_l0 + 2 P_lm (Re h_lm cos mp - Im h_lm sin mp)   (irfft, norm="forward")
    """
    n = c.shape[-1] // 2 + 1
    h = c[..., n - 1 :].astype(np.complex128)  # m >= 0: cosine part
    h[..., 1:] -= 1j * c[..., n - 2 :: -1]  # m > 0: minus the sine part, m = -1, -2, ..
    h[..., 1:] /= np.sqrt(2.0)
    return h


def from_th(h: np.ndarray) -> np.ndarray:
    """Inverse of ``to_th``."""
    n = h.shape[-1]
    c = np.zeros((*h.shape[:-1], 2 * n - 1))
    c[..., n - 1] = h[..., 0].real
    c[..., n:] = np.sqrt(2.0) * h[..., 1:].real
    c[..., : n - 1] = -np.sqrt(2.0) * h[..., :0:-1].imag
    return c


def th_grid_samples(c: np.ndarray, b: int) -> np.ndarray:
    """Our harmonics, float64, evaluated on torch-harmonics' equiangular grid (poles included)."""
    theta, _ = th.quadrature.precompute_latitudes(2 * b, grid="equiangular")
    p = normalized_legendre(b - 1, theta.numpy())  # (L, L, T) indexed [l, |m|, t]
    m = sht.orders(b)
    legendre = p[:, np.abs(m), :] * np.where(m == 0, 1.0, np.sqrt(2.0))[None, :, None]  # (L,M,T)
    trig = sht.longitude_synthesis_matrix(b)  # (M, P); same longitudes 2 pi k / 2b
    return np.einsum("nlm,lmt,mp->ntp", c, legendre, trig)


def compare_th(b: int, rng: np.random.Generator) -> str:
    """Max errors on random band-limited coefficients a, relative to max |a|.

    ours: SHT(InverseSHT(a)). th: RealSHT of sum a Y sampled in float64 on its grid, mapped back
    by ``from_th``; and InverseRealSHT(to_th(a)) against those samples.
    """
    a = random_coefficients(rng, 4, b)
    ours_fwd, ours_inv = ours_form(b)
    th_fwd, th_inv = th_form(b)
    samples = torch.tensor(th_grid_samples(a, b), dtype=torch.float32)  # (n, 2b, 2b)
    with torch.no_grad():
        a_ours = ours_fwd(ours_inv(torch.tensor(a, dtype=torch.float32))).double().numpy()
        a_th = from_th(th_fwd(samples).cdouble().numpy())
        x_th = th_inv(torch.tensor(to_th(a), dtype=torch.complex64)).double().numpy()
    scale = np.abs(a).max()
    return (
        "band-limited round trip, max |error| / max |a|: "
        f"ours {np.abs(a_ours - a).max() / scale:.1e}, th {np.abs(a_th - a).max() / scale:.1e}, "
        f"ours vs th {np.abs(a_ours - a_th).max() / scale:.1e}; "
        f"th synthesis vs our harmonics on its grid "
        f"{np.abs(x_th - samples.double().numpy()).max() / np.abs(samples).max():.1e}"
    )


# --- timing ------------------------------------------------------------------------------------


def make_step(forward: Transform, inverse: Transform, x: torch.Tensor, backward: bool):
    if not backward:

        def step() -> None:
            with torch.no_grad():
                inverse(forward(x))

        return step
    leaf = x.clone().requires_grad_(True)

    def step_backward() -> None:
        leaf.grad = None
        inverse(forward(leaf)).sum().backward()

    return step_backward


def timed(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return 1e3 * (time.perf_counter() - start)


def time_interleaved(
    steps: dict[str, Callable[[], None]], repeats: int, warmup: int, budget: float
) -> dict[str, list[float]]:
    """Milliseconds per call, the forms called in turn so that outside load hits them alike."""
    targets = {}
    for name, step in steps.items():
        first = timed(step)
        for _ in range(warmup - 1 if first < 1e3 else 0):
            first = timed(step)
        targets[name] = max(MIN_REPEATS, min(repeats, int(1e3 * budget / first)))
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(max(targets.values())):
        for name, step in steps.items():
            if round_ < targets[name]:
                samples[name].append(timed(step))
    return samples


# --- report ------------------------------------------------------------------------------------

Cells = dict[bool, dict[str, list[float]]]  # backward -> form -> milliseconds per call
STATS = {"median": statistics.median, "min": min}


def print_table(rows: list[tuple[int, Cells]], forms: list[str], stat: str) -> None:
    f = STATS[stat]
    print(
        f"| b | form | fwd+inv ms ({stat}) | fwd+inv+bwd ms ({stat}) | MACs/map (fwd+inv) "
        "| ratio vs ours (fwd+inv) | ratio vs ours (+bwd) | n |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for b, cells in rows:
        plain = {name: f(t) for name, t in cells[False].items()}
        grad = {name: f(t) for name, t in cells[True].items()}
        for name in forms:
            n = f"{len(cells[False][name])}/{len(cells[True][name])}"
            print(
                f"| {b} | {name} | {plain[name]:.1f} | {grad[name]:.1f} | {2 * MACS[name](b):,} "
                f"| {plain[name] / plain['ours']:.2f} | {grad[name] / grad['ours']:.2f} | {n} |"
            )


def print_verdicts(rows: list[tuple[int, Cells]], stat: str) -> None:
    f = STATS[stat]
    for b, cells in rows:
        verdicts = []
        for backward, label in ((False, "fwd+inv"), (True, "+bwd")):
            t = {name: f(samples) for name, samples in cells[backward].items()}
            if "th" in t:
                met = "met" if t["ours"] <= t["th"] else "NOT met"
                verdicts.append(f"{label} no slower than th {met}")
            if b == 64:
                speedup = t["dense"] / t["ours"]
                met = "met" if speedup >= 5 else "NOT met"
                verdicts.append(f"{label} {speedup:.1f}x faster than dense {met}")
        print(f"goal ({stat}) b={b}: " + "; ".join(verdicts))


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bandwidths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--budget", type=float, default=60.0, help="seconds per form and cell before capping n"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    builders = {"ours": ours_form, "th": th_form, "dense": dense_form}
    if th is None:
        del builders["th"]
    print(
        f"# SHT benchmark: {cpu_name()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, "
        + (f"torch-harmonics {th.__version__}" if th else "torch-harmonics not importable")
    )
    if th is None:
        print("# (no th rows: run in the bench venv, see the top of bench/sht.py)")
    print(
        f"# input (batch {args.batch}, channels {args.channels}, 2b, 2b) float32; "
        f"{args.repeats} interleaved calls after {args.warmup} warm-up; "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )
    for b in args.bandwidths:
        print(f"# b={b}: {check_dense(b, rng)}")
        if th is not None:
            print(f"# b={b}: {compare_th(b, rng)}")

    rows = []
    for b in args.bandwidths:
        x = torch.randn(args.batch, args.channels, 2 * b, 2 * b)
        built = {name: build(b) for name, build in builders.items()}
        cells = {}
        for backward in (False, True):
            steps = {name: make_step(*pair, x, backward) for name, pair in built.items()}
            cells[backward] = time_interleaved(steps, args.repeats, args.warmup, args.budget)
        rows.append((b, cells))
        del built

    print()
    print_table(rows, list(builders), "median")
    print()
    print(
        "MACs per map, each way: ours 2b*2b*(2b-1) + (2b-1)*2b*b; dense 4b^2*b(2b-1); "
        "th 2b*(2b*log2(2b)) [a length-n real FFT counted as n log2 n] + 2*b*b*2b [Legendre, "
        "real and imaginary]. ratio = form time / ours time (> 1: ours is faster). "
        f"n = calls timed (fwd+inv/+bwd). Load average at end {os.getloadavg()[0]:.1f}."
    )
    print()
    print("Same calls, fastest of n (less sensitive to other processes on the machine):")
    print()
    print_table(rows, list(builders), "min")
    print()
    for stat in STATS:
        print_verdicts(rows, stat)


if __name__ == "__main__":
    main()
