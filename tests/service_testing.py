"""Helpers for the service tests: a small exported model, meshes in every format, malformed
files, the real runtime with an added delay (for the overload, batching and time-limit tests)
and a real server in a subprocess."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import trimesh
from fastapi.testclient import TestClient

from raymap.datasets.rotations import uniform_rotation
from raymap.mesh import load_mesh
from service.app import create_app
from service.settings import Settings

if TYPE_CHECKING:
    from raymap.preview import MeshPreview
    from service.pipeline import RuntimeLike
    from service.runtime import Outputs, Runtime

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
MINI = FIXTURES / "modelnet10_mini"
CHAIR = FIXTURES / "meshes" / "chair_0890.off"
SHIPPED_MODEL = REPO / "models" / "model.onnx"
SHIPPED_GALLERY = REPO / "models" / "gallery.npz"
CLASS_NAMES = ("chair", "monitor", "toilet")


# ----------------------------------------------------------------------------- the small model


def _export_key() -> str:
    """Every input of the exported test model: the model and export code, torch, the classes."""
    import torch

    digest = hashlib.sha1(f"{torch.__version__} {CLASS_NAMES}".encode())
    for path in sorted([*(REPO / "model").glob("*.py"), *(REPO / "export").glob("*.py")]):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


@cache
def small_model_path() -> Path:
    """An untrained 'small' network (3 classes, b=16) exported to ONNX.

    torch is used here, in the test process, to build the fixture; the service never imports
    it. The export runs through the documented CLI, once per version of the model and export
    code: the file is cached under ``$SHAPES_CACHE_DIR/test-models/<key>/``.
    """
    import torch

    from model.checkpoint import save_model
    from model.net import SphericalCNN, preset_config
    from model.train import TrainConfig
    from raymap.datasets import default_cache_dir

    folder = default_cache_dir() / "test-models" / _export_key()
    out = folder / "model.onnx"
    if out.is_file():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="export-", dir=folder))
    torch.manual_seed(0)
    network = SphericalCNN(preset_config("small", n_classes=len(CLASS_NAMES))).eval()
    config = TrainConfig(architecture="small", bandwidth=network.config.bandwidth)
    checkpoint = work / "checkpoint.pt"
    save_model(network, list(CLASS_NAMES), config, checkpoint)
    subprocess.run(
        [sys.executable, "-m", "export.onnx", str(checkpoint), "--out", str(work / "model.onnx")],
        cwd=REPO,
        check=True,
        capture_output=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    os.replace(work / "model.onnx", out)  # atomic: a concurrent or killed run leaves no half file
    shutil.rmtree(work, ignore_errors=True)
    return out


@cache
def small_gallery_path() -> Path:
    """The mini ModelNet10 fixture (12 meshes) through the small model, as a gallery.npz."""
    from service.build_gallery import build_gallery

    folder = Path(tempfile.mkdtemp(prefix="shapes-gallery-"))
    out = folder / "gallery.npz"
    build_gallery(
        small_model_path(),
        out,
        root=MINI,
        cache_dir=folder / "cache",
        workers=1,
        progress=False,
    )
    return out


def mini_meshes(split: str = "test") -> list[Path]:
    return sorted(MINI.glob(f"*/{split}/*.off"))


# ----------------------------------------------------------------------------- meshes


def mesh_bytes(fmt: str, path: Path = CHAIR) -> bytes:
    """The fixture mesh in ``fmt`` (obj, off, stl, ply, glb, gltf with embedded buffers),
    through trimesh's exporters."""
    if fmt == "off" and path.suffix == ".off":
        return path.read_bytes()
    mesh = load_mesh(path.read_bytes(), path.suffix)
    if fmt in ("glb", "gltf"):
        # glTF is +Y up; the reader turns it to +Z up, so export the inverse.
        mesh = mesh.copy()
        mesh.vertices = mesh.vertices @ np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]]).T
    if fmt == "gltf":
        files = trimesh.exchange.gltf.export_gltf(trimesh.Scene(mesh), embed_buffers=True)
        return bytes(files["model.gltf"])
    exported = mesh.export(file_type=fmt)
    return exported.encode() if isinstance(exported, str) else bytes(exported)


def rotated_off(path: Path, rotation: np.ndarray) -> bytes:
    """The mesh rotated by ``rotation`` (about the origin) as OFF text."""
    mesh = load_mesh(path.read_bytes(), path.suffix)
    vertices = np.asarray(mesh.vertices) @ rotation.T
    rotated = trimesh.Trimesh(vertices=vertices, faces=mesh.faces, process=False)
    text = rotated.export(file_type="off")
    return text.encode() if isinstance(text, str) else bytes(text)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform on SO(3): the dataset builder's own rotations."""
    return uniform_rotation(rng)


def malformed_files() -> dict[str, bytes]:
    """Broken files of every format the input stage knows: name -> bytes. Each must be 422."""
    off = CHAIR.read_bytes()
    stl = mesh_bytes("stl")
    ply = mesh_bytes("ply")
    glb = mesh_bytes("glb")
    obj = mesh_bytes("obj")
    return {
        "empty.off": b"",
        "garbage.off": b"\x00\xff" * 100,
        "no_counts.off": b"OFF\n",
        "negative.off": b"OFF\n-3 -1 0\n",
        "truncated.off": off[: len(off) // 2],
        "bad_index.off": b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n",
        "nan.off": b"OFF\n3 1 0\nnan 0 0\n1 0 0\n0 1 0\n3 0 1 2\n",
        "points_only.off": b"OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n",
        "flat_point.off": b"OFF\n3 1 0\n1 1 1\n1 1 1\n1 1 1\n3 0 1 2\n",
        "garbage.obj": b"v 1 2\nf 1 2 3 4 5\nthis is not obj\n",
        "no_faces.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\n",
        "bad_index.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n",
        "truncated.obj": obj[: len(obj) // 3],
        "garbage.stl": b"solid x\nfacet normal 0 0 1\nouter loop\nvertex 1 2\n",
        "truncated.stl": stl[: len(stl) // 2],
        "header_only.stl": stl[:84],
        "garbage.ply": b"ply\nformat ascii 1.0\nelement vertex 3\nend_header\n1 2\n",
        "truncated.ply": ply[: len(ply) // 2],
        "garbage.glb": b"glTF" + b"\x02\x00\x00\x00" + b"\xff" * 40,
        "truncated.glb": glb[: len(glb) // 2],
        "json.gltf": b'{"asset": {"version": "2.0"}, "meshes": [{"primitives": [{}]}]}',
        "text.glb": b"hello, this is not a binary glTF",
    }


# ----------------------------------------------------------------------------- the real runtime


@dataclass(frozen=True)
class Expected:
    probabilities: np.ndarray  # (K,)
    descriptor: np.ndarray  # (D,)
    label: str


def expected_prediction(
    runtime: Runtime, data: bytes, file_type: str, max_faces: int = 500_000
) -> Expected:
    """The reference for an HTTP answer: the runtime's two stages called directly (mesh ->
    map, then the model on a batch of one), without the service's pipeline."""
    spherical_map, _ = runtime.mesh_to_map(data, file_type, max_faces)
    probabilities, descriptor, _ = runtime.run(spherical_map[None])  # (1, K), (1, D), (1,)
    label = runtime.info.class_names[int(np.argmax(probabilities[0]))]
    return Expected(probabilities[0], descriptor[0], label)


class InstrumentedRuntime:
    """The REAL :class:`service.runtime.Runtime` with an added delay and a record of its batch
    sizes; not a fake: every call goes on to the wrapped runtime (the exported test model on
    onnxruntime, the real parse and ray cast).

    ``run`` records the batch size, sleeps ``delay_s`` and returns the real runtime's
    ``run``; ``mesh_to_map`` (and ``mesh_to_map_with_preview``) sleeps ``cast_delay_s`` and
    returns the real one's answer.
    The delays let the overload, micro-batching and time-limit tests make inference or ray
    casting take a known while. ``fail_with``, when set, is an injected fault: ``run`` raises
    it (after recording the batch) instead of calling the model, for the error-mapping test.
    """

    def __init__(
        self,
        runtime: Runtime,
        delay_s: float = 0.0,
        cast_delay_s: float = 0.0,
        fail_with: Exception | None = None,
    ) -> None:
        self.runtime = runtime
        self.info = runtime.info
        self.metadata = runtime.metadata
        self.provider = runtime.provider
        self.delay_s = delay_s
        self.cast_delay_s = cast_delay_s
        self.fail_with = fail_with
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()

    def run(self, maps: np.ndarray) -> Outputs:
        with self._lock:
            self.batch_sizes.append(len(maps))
        if self.fail_with is not None:
            raise self.fail_with
        time.sleep(self.delay_s)
        return self.runtime.run(maps)

    def mesh_to_map(
        self, data: bytes, file_type: str, max_faces: int
    ) -> tuple[np.ndarray, dict[str, float]]:
        time.sleep(self.cast_delay_s)
        return self.runtime.mesh_to_map(data, file_type, max_faces)

    def mesh_to_map_with_preview(
        self, data: bytes, file_type: str, max_faces: int, preview_faces: int
    ) -> tuple[np.ndarray, dict[str, float], MeshPreview]:
        time.sleep(self.cast_delay_s)
        return self.runtime.mesh_to_map_with_preview(data, file_type, max_faces, preview_faces)


# ----------------------------------------------------------------------------- a real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m service`` in a subprocess on a free port (or ``port``), its log in a file;
    ``args``: the command's options."""

    def __init__(
        self, env: dict[str, str], log_path: Path, args: Sequence[str] = (), port: int = 0
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        full_env = {
            **os.environ,
            "SHAPES_HOST": "127.0.0.1",
            "SHAPES_PORT": str(self.port),
            "OMP_NUM_THREADS": "1",
            **env,
        }
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", *args],
            cwd=REPO,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready in {timeout_s} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def upload(name: str, data: bytes) -> dict[str, tuple[str, io.BytesIO, str]]:
    return {"file": (name, io.BytesIO(data), "application/octet-stream")}


# ----------------------------------------------------------------------------- the app in process


def make_client(tmp_path: Path, runtime: RuntimeLike, **overrides: object) -> TestClient:
    """The app on ``runtime`` (already loaded: the factory hands it over), an empty gallery."""
    settings = Settings(
        gallery_path=None,
        gallery_dir=tmp_path / "gallery",
        log_json=True,
        **overrides,  # type: ignore[arg-type]
    )
    app = create_app(settings, runtime_factory=lambda _: runtime)
    return TestClient(app, raise_server_exceptions=False)


def wait_ready(client: TestClient, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return
        time.sleep(0.02)
    raise TimeoutError(client.get("/readyz").json())
