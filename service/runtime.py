"""The inference runtime: ``model.onnx`` on onnxruntime, mesh bytes in, prediction out.

numpy + onnxruntime + :mod:`raymap` only; never torch (a test imports this module in a fresh
interpreter and checks). The model's contract (:class:`raymap.contract.ModelContract`: class
names, bandwidth, grid, input features, input and output names and sizes), read from its
``metadata_props`` where ``export.onnx`` wrote it, is the only source of those facts; a model
whose metadata lacks one, whose graph disagrees with it, or made for other input features
than this :mod:`raymap`, is refused at load.

Execution provider: ``device="auto"`` takes CUDA when onnxruntime offers it, else the CPU.
onnxruntime-gpu falls back to the CPU silently when CUDA cannot start, so the provider
reported (and logged) is the one the session really holds, ``session.get_providers()[0]``;
``device="cuda"`` refuses such a fallback.

Threads: ``intra_op_threads`` defaults to ``max(1, cores // WEB_CONCURRENCY)`` (cores this
process may run on), so several server workers do not oversubscribe the machine. The intra-op
threads never spin-wait for work between calls: a request's model call is ~2 ms among ~25 ms
of ray casting on the same cores, and spinning threads took those cores from it (one worker
with two spinning threads: 60 ms of CPU per 10k-face request against 30 ms without).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime as ort

import raymap
from raymap.contract import CORE_OUTPUTS, NOVELTY, ContractError, ModelContract
from raymap.preview import MeshPreview, mesh_preview
from raymap.project import prepare, project

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# Full float32 matrix products on the GPU: onnxruntime's CUDA provider uses TF32 by default,
# which moved probabilities by up to 3.5e-3 from the CPU's on the ModelNet10 test maps
# (bench/gpu.py, H200), and bought no measurable time there (README, "GPU").
CUDA_OPTIONS = {"use_tf32": "0"}
ModelError = ContractError  # a model file the runtime cannot serve; the message says why


class Outputs(NamedTuple):
    """One model call: probabilities (N, K), unit descriptors (N, D), novelty (N,) or None."""

    probabilities: np.ndarray
    descriptor: np.ndarray
    novelty: np.ndarray | None


def default_threads(environ: dict[str, str] | None = None) -> int:
    """max(1, cores // WEB_CONCURRENCY): the cores this process may use, shared by the workers."""
    environ = dict(os.environ) if environ is None else environ
    workers = _workers(environ)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // workers)


def _workers(environ: dict[str, str]) -> int:
    raw = environ.get("WEB_CONCURRENCY", "1") or "1"
    try:
        workers = int(raw)
    except ValueError:
        raise ValueError(f"WEB_CONCURRENCY must be a positive integer, got {raw!r}") from None
    if workers < 1:
        raise ValueError(f"WEB_CONCURRENCY must be a positive integer, got {raw!r}")
    return workers


def choose_providers(device: str) -> list[str]:
    """The providers to ask for, best first; the session may still end up on the CPU."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    available = ort.get_available_providers()
    if device == "cuda" and CUDA not in available:
        raise RuntimeError(
            f"device='cuda' but this onnxruntime offers {available}; install onnxruntime-gpu"
        )
    if device in ("auto", "cuda") and CUDA in available:
        load_cuda_libraries()
        return [CUDA, CPU]
    return [CPU]


def with_options(providers: list[str]) -> list[str | tuple[str, dict[str, str]]]:
    """``providers`` as onnxruntime takes them, the CUDA provider with ``CUDA_OPTIONS``."""
    return [(name, CUDA_OPTIONS) if name == CUDA else name for name in providers]


def load_cuda_libraries() -> None:
    """Load the CUDA and cuDNN libraries that pip put beside onnxruntime-gpu (the ``gpu``
    extra's ``nvidia-*`` wheels): the CUDA provider finds them only on the loader's path
    otherwise, and without them the session quietly runs on the CPU. Libraries on the
    loader's path (a CUDA base image) are taken as they are; onnxruntime before 1.21 has no
    ``preload_dlls`` and relies on that path alone."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        preload()


def session_options(intra_op_threads: int | None) -> ort.SessionOptions:
    threads = default_threads() if intra_op_threads is None else int(intra_op_threads)
    if threads < 1:
        raise ValueError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Spinning threads would burn the cores the ray casting and the other workers need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class Runtime:
    """One onnxruntime session of ``model.onnx`` plus the mesh -> map stage for its grid.

    Thread-safe: ``run`` may be called from several threads (onnxruntime sessions are), and
    ``mesh_to_map`` holds no state.
    """

    def __init__(
        self,
        model_path: str | Path,
        device: str = "auto",
        intra_op_threads: int | None = None,
        warmup: bool = True,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"no model at {path}")
        providers = choose_providers(device)
        options = session_options(intra_op_threads)
        self.session = ort.InferenceSession(str(path), options, providers=with_options(providers))
        self.provider: str = self.session.get_providers()[0]
        self.intra_op_threads = options.intra_op_num_threads
        if device == "cuda" and self.provider != CUDA:
            raise RuntimeError(f"asked for CUDA, onnxruntime gave {self.session.get_providers()}")
        if providers[0] == CUDA and self.provider != CUDA:
            log.warning("CUDA is installed but the session fell back to %s", self.provider)
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.info = ModelContract.from_metadata(self.metadata)
        self.info.check_inputs()
        self.info.check_signature(
            {i.name: list(i.shape) for i in self.session.get_inputs()},
            {o.name: list(o.shape) for o in self.session.get_outputs()},
        )
        self.warmup_ms: float | None = None
        if warmup:
            start = time.perf_counter()
            self.run(np.zeros((1, *self.info.input_shape), dtype=np.float32))
            self.warmup_ms = 1e3 * (time.perf_counter() - start)
        log.info(
            "loaded model %s %s from %s on %s (providers %s, %d intra-op threads, warm-up %s ms)",
            self.info.name,
            self.info.version,
            path,
            self.provider,
            self.session.get_providers(),
            self.intra_op_threads,
            "off" if self.warmup_ms is None else f"{self.warmup_ms:.1f}",
        )

    def run(self, maps: np.ndarray) -> Outputs:
        """Maps (N, C, 2b, 2b) -> probabilities (N, K), unit descriptors (N, D) and novelty
        (N,), float32; novelty is None for a model without that output."""
        maps = np.asarray(maps)
        if maps.ndim != 4 or maps.shape[0] < 1 or maps.shape[1:] != self.info.input_shape:
            raise ValueError(
                f"maps must have shape (N >= 1, {', '.join(map(str, self.info.input_shape))}), "
                f"got {maps.shape}"
            )
        maps = np.ascontiguousarray(maps, dtype=np.float32)
        if NOVELTY not in self.info.outputs:
            probabilities, descriptor = self.session.run(
                list(CORE_OUTPUTS), {self.info.input_name: maps}
            )
            return Outputs(probabilities, descriptor, None)
        probabilities, descriptor, novelty = self.session.run(
            [*CORE_OUTPUTS, NOVELTY], {self.info.input_name: maps}
        )
        return Outputs(probabilities, descriptor, novelty.reshape(-1))

    def mesh_to_map(
        self, data: bytes, file_type: str, max_faces: int
    ) -> tuple[np.ndarray, dict[str, float]]:
        """Mesh bytes -> the (C, 2b, 2b) map on the model's grid and stage times (ms).

        Keys: ``parse`` and raymap's ``normalize``, ``hull``, ``cast`` (``cast_build`` +
        ``cast_rays``: the rays with their features). Raises :class:`raymap.MeshError` for a
        bad mesh.
        """
        spherical_map, timings, _ = self._cast(data, file_type, max_faces, None)
        return spherical_map, timings

    def mesh_to_map_with_preview(
        self, data: bytes, file_type: str, max_faces: int, preview_faces: int
    ) -> tuple[np.ndarray, dict[str, float], MeshPreview]:
        """:meth:`mesh_to_map` and a preview of the same parsed mesh, normalized as the
        network sees it and decimated to ``preview_faces`` triangles (stage ``preview``)."""
        spherical_map, timings, preview = self._cast(data, file_type, max_faces, preview_faces)
        assert preview is not None
        return spherical_map, timings, preview

    def _cast(
        self, data: bytes, file_type: str, max_faces: int, preview_faces: int | None
    ) -> tuple[np.ndarray, dict[str, float], MeshPreview | None]:
        start = time.perf_counter()
        mesh = raymap.load_mesh(data, file_type, max_faces=max_faces)
        timings = {"parse": 1e3 * (time.perf_counter() - start)}
        prepared = prepare(mesh, timings, validated=True)  # load_mesh validated it
        spherical_map = project(prepared, self.info.bandwidth, None, timings)
        timings["cast"] = timings["cast_build"] + timings["cast_rays"]
        if preview_faces is None:
            return spherical_map, timings, None
        start = time.perf_counter()
        preview = mesh_preview(prepared.normalized, preview_faces)
        timings["preview"] = 1e3 * (time.perf_counter() - start)
        return spherical_map, timings, preview
