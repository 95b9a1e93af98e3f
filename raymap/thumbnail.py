"""Small shaded pictures of meshes, ray cast with embree: no display, no GPU, no torch.

The camera is the page's turning view stopped at a three-quarter angle (the same tilt, focal
length and light), so a thumbnail looks like the preview of the same shape. The mesh is the
normalized one (inside the unit ball, centred on its area centroid), so every thumbnail is at
the same scale the network sees. Each pixel averages ``supersample``² rays.

    python -m raymap.thumbnail mesh.off out.webp --size 64
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from raymap.cast import RayScene
from raymap.errors import MeshError
from raymap.mesh import DEFAULT_MAX_FACES, load_mesh_file
from raymap.normalize import normalize

THUMBNAIL_SIZE = 64  # pixels across (and down)
MEDIA_TYPE = "image/webp"
WEBP_QUALITY = 70
TILT = 0.45  # radians above the horizon, as the page's view
AZIMUTH = -0.75  # radians about +Z: a three-quarter view
FOCAL = 2.6  # the camera is 3 units from the centre; the unit ball fills ~90% of the height
CAMERA_DISTANCE = 3.0
BACKGROUND = np.array([247, 247, 250], dtype=np.float64)
BASE_COLOUR = np.array([0.36, 0.55, 0.85]) * 255
LIGHT = np.array([0.4, 0.7, 0.8]) / np.linalg.norm([0.4, 0.7, 0.8])  # camera coordinates


def camera_rotation(azimuth: float = AZIMUTH, tilt: float = TILT) -> np.ndarray:
    """Rows: the screen's right, up, and toward-the-camera axes in mesh coordinates (+Z up)."""
    c, s = np.cos(azimuth), np.sin(azimuth)
    ct, st = np.cos(tilt), np.sin(tilt)
    return np.array([[c, -s, 0.0], [st * s, st * c, ct], [-ct * s, -ct * c, st]])


def render_thumbnail(
    vertices: np.ndarray, faces: np.ndarray, size: int = THUMBNAIL_SIZE, supersample: int = 2
) -> np.ndarray:
    """(size, size, 3) uint8 RGB picture of a normalized mesh (vertices inside the unit ball)."""
    if size < 1 or supersample < 1:
        raise ValueError(f"size and supersample must be >= 1, got {size}, {supersample}")
    rotation = camera_rotation()
    n = size * supersample
    ndc = (np.arange(n) + 0.5) / n * 2.0 - 1.0  # pixel centres, -1 .. 1
    sx, sy = np.meshgrid(ndc, -ndc)  # row 0 at the top
    camera_rays = np.stack([sx / FOCAL, sy / FOCAL, -np.ones_like(sx)], axis=-1).reshape(-1, 3)
    camera_rays /= np.linalg.norm(camera_rays, axis=1, keepdims=True)
    directions = camera_rays @ rotation  # rows R^T d: into mesh coordinates
    origin = rotation[2] * CAMERA_DISTANCE
    hits = RayScene(vertices, faces).cast(np.broadcast_to(origin, directions.shape), directions)
    normals = hits.normal.astype(np.float64) @ rotation.T  # into camera coordinates
    length = np.linalg.norm(normals, axis=1)
    diffuse = np.abs(normals @ LIGHT) / np.where(length > 0, length, 1.0)  # both sides lit
    shade = (0.3 + 0.7 * diffuse)[:, None] * BASE_COLOUR
    colour = np.where(hits.hit[:, None], shade, BACKGROUND).reshape(size, supersample, size, -1, 3)
    return np.round(colour.mean(axis=(1, 3))).astype(np.uint8)


def encode_thumbnail(pixels: np.ndarray) -> bytes:
    """RGB pixels -> WebP bytes (lossy: about 1 KB for a 64 x 64 shape on a flat background)."""
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="WEBP", quality=WEBP_QUALITY, method=6)
    return out.getvalue()


def thumbnail_of(vertices: np.ndarray, faces: np.ndarray, size: int = THUMBNAIL_SIZE) -> bytes:
    """Normalize a validated mesh, render and encode it: the bytes a gallery item stores."""
    normalized = normalize(vertices, faces)
    return encode_thumbnail(render_thumbnail(normalized.vertices, normalized.faces, size))


def thumbnail_of_file(
    path: Path, size: int = THUMBNAIL_SIZE, max_faces: int | None = None
) -> bytes:
    """:func:`thumbnail_of` the mesh in ``path``; :class:`MeshError` if it cannot be read."""
    mesh = load_mesh_file(path, DEFAULT_MAX_FACES if max_faces is None else max_faces)
    return thumbnail_of(mesh.vertices, mesh.faces, size)


def _thumbnail_or_none(job: tuple[Path, int]) -> bytes | None:
    try:
        return thumbnail_of_file(*job)
    except MeshError:
        return None


def thumbnails_of_files(
    paths: Sequence[Path], size: int = THUMBNAIL_SIZE, workers: int = 1, progress: bool = False
) -> list[bytes | None]:
    """Each file's thumbnail, in order (None for a mesh that cannot be read), in ``workers``
    processes: the build step of the shipped gallery renders thousands."""
    from tqdm import tqdm

    jobs = [(Path(p), size) for p in paths]
    bar = tqdm(total=len(jobs), desc="thumbnails", disable=not progress)
    out: list[bytes | None] = []
    if workers <= 1:
        for job in jobs:
            out.append(_thumbnail_or_none(job))
            bar.update()
    else:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for result in pool.imap(_thumbnail_or_none, jobs, chunksize=8):
                out.append(result)
                bar.update()
    bar.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m raymap.thumbnail", description="Render a mesh's thumbnail (WebP)."
    )
    parser.add_argument("mesh", type=Path, help="OBJ, OFF, STL, PLY, GLB or GLTF file")
    parser.add_argument("out", type=Path, help="WebP file to write")
    parser.add_argument("--size", type=int, default=THUMBNAIL_SIZE)
    parser.add_argument("--max-faces", type=int, default=DEFAULT_MAX_FACES)
    args = parser.parse_args(argv)
    try:
        data = thumbnail_of_file(args.mesh, args.size, args.max_faces)
    except MeshError as exc:
        parser.exit(2, f"error: {args.mesh}: {exc.reason}\n")
    args.out.write_bytes(data)
    print(f"{args.out}: {args.size}x{args.size}, {len(data)} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
