"""Mesh previews (raymap.preview), thumbnails (raymap.thumbnail) and ``/classify``'s
``preview=true``: the page draws what the service parsed and normalized, for every format."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import trimesh
from fastapi.testclient import TestClient
from PIL import Image

from raymap.mesh import load_mesh
from raymap.normalize import normalize
from raymap.preview import DEFAULT_PREVIEW_FACES, MEDIA_TYPE, decode, mesh_preview
from raymap.thumbnail import BACKGROUND, THUMBNAIL_SIZE, render_thumbnail, thumbnail_of
from service.runtime import Runtime
from tests.service_testing import CHAIR, make_client, mesh_bytes, mini_meshes, upload, wait_ready

FORMATS = ("off", "obj", "stl", "ply", "glb", "gltf")


def _chair() -> trimesh.Trimesh:
    return load_mesh(CHAIR.read_bytes(), "off")


def _sphere_soup(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """An icosphere as an STL-like soup: three unshared vertices per triangle."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    soup = sphere.vertices[sphere.faces].reshape(-1, 3)
    return soup, np.arange(len(soup)).reshape(-1, 3)


# ----------------------------------------------------------------------------- preview


def test_a_small_mesh_is_kept_whole_and_round_trips() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=2)  # 320 triangles, none repeated
    normalized = normalize(sphere.vertices, sphere.faces)
    preview = mesh_preview(normalized, max_faces=320)
    assert preview.source_faces == 320
    decoded = decode(preview.encode())
    np.testing.assert_array_equal(decoded.faces, preview.faces)
    np.testing.assert_allclose(decoded.vertices, preview.vertices, atol=1 / 32767)
    # The same triangles as the normalized mesh (the network's view), corner for corner.
    np.testing.assert_allclose(
        decoded.vertices[decoded.faces], normalized.vertices[normalized.faces], atol=2e-5
    )


def test_repeated_triangles_are_drawn_once() -> None:
    mesh = _chair()  # ModelNet's chair has each triangle twice (both windings)
    preview = mesh_preview(normalize(mesh.vertices, mesh.faces))
    assert len(preview.faces) == len(mesh.faces) // 2
    assert preview.source_faces == len(mesh.faces)


def test_a_soup_is_merged_into_shared_vertices() -> None:
    soup, faces = _sphere_soup(2)  # 320 triangles, 960 corners, 162 distinct points
    preview = mesh_preview(normalize(soup, faces))
    assert len(preview.faces) == 320
    assert len(preview.vertices) == 162


@pytest.mark.parametrize("max_faces", [500, 5_000])
def test_a_large_mesh_is_decimated_within_the_budget(max_faces: int) -> None:
    soup, faces = _sphere_soup(5)  # 20,480 triangles
    preview = mesh_preview(normalize(soup, faces), max_faces=max_faces)
    assert 0.3 * max_faces <= len(preview.faces) <= max_faces
    assert preview.source_faces == 20_480
    radius = np.linalg.norm(preview.vertices, axis=1)
    assert radius.max() <= 1.0 + 1e-6 and radius.min() > 0.97  # still the unit sphere
    data = preview.encode()
    assert len(data) == 20 + 6 * len(preview.vertices) + (len(preview.vertices) % 2) * 2 + 6 * len(
        preview.faces
    )


def test_decode_refuses_what_is_not_a_preview() -> None:
    data = mesh_preview(normalize(*_sphere_soup(1))).encode()
    with pytest.raises(ValueError, match="version"):
        decode(b"GLTF" + data[4:])
    with pytest.raises(ValueError, match="length"):
        decode(data[:-2])


# ----------------------------------------------------------------------------- thumbnail


def test_thumbnail_draws_the_shape_in_the_middle() -> None:
    mesh = _chair()
    normalized = normalize(mesh.vertices, mesh.faces)
    pixels = render_thumbnail(normalized.vertices, normalized.faces)
    assert pixels.shape == (THUMBNAIL_SIZE, THUMBNAIL_SIZE, 3) and pixels.dtype == np.uint8
    shape = np.abs(pixels.astype(float) - BACKGROUND).sum(axis=2) > 6
    assert 0.05 < shape.mean() < 0.8, shape.mean()
    assert not shape[0].any() and not shape[-1].any()  # a margin: the whole shape is in frame
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # shaded, not a silhouette


def test_thumbnail_of_any_scale_or_position_is_the_same_picture() -> None:
    mesh = _chair()
    moved = mesh.vertices * 37.0 + np.array([5.0, -3.0, 100.0])
    a = Image.open(io.BytesIO(thumbnail_of(mesh.vertices, mesh.faces))).convert("RGB")
    b = Image.open(io.BytesIO(thumbnail_of(moved, mesh.faces))).convert("RGB")
    assert a.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    difference = np.abs(np.asarray(a, float) - np.asarray(b, float)).mean()
    assert difference < 2.0, difference


def test_thumbnails_are_small() -> None:
    sizes = []
    for path in mini_meshes("train") + mini_meshes("test"):
        mesh = load_mesh(path.read_bytes(), "off")
        sizes.append(len(thumbnail_of(mesh.vertices, mesh.faces)))
    assert max(sizes) < 1500, sizes


def test_the_renderers_do_not_import_torch() -> None:
    code = (
        "import sys, raymap.thumbnail, raymap.preview; sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


# ----------------------------------------------------------------------------- the API


@pytest.fixture
def client(tmp_path: Path, small_runtime: Runtime) -> Iterator[TestClient]:
    with make_client(tmp_path, small_runtime) as client:
        wait_ready(client)
        yield client


def test_classify_has_no_preview_unless_asked(client: TestClient) -> None:
    response = client.post("/classify", files=upload("chair.off", CHAIR.read_bytes()))
    assert response.status_code == 200, response.text
    assert response.json()["preview"] is None
    assert "preview" not in response.json()["timings_ms"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_classify_previews_every_format_as_the_network_sees_it(
    client: TestClient, fmt: str
) -> None:
    response = client.post(
        "/classify", files=upload(f"chair.{fmt}", mesh_bytes(fmt)), data={"preview": "true"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    preview = body["preview"]
    assert preview["media_type"] == MEDIA_TYPE
    mesh = decode(base64.b64decode(preview["mesh"]))
    assert (len(mesh.vertices), len(mesh.faces)) == (preview["vertices"], preview["faces"])
    assert 0 < preview["faces"] <= DEFAULT_PREVIEW_FACES
    radius = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(radius.max() - 1.0) < 1e-4  # normalized: the farthest vertex on the unit sphere
    # The same shape whatever the format, upright (glTF turned to +Z up), as normalized.
    chair = _chair()
    expected = normalize(chair.vertices, chair.faces).vertices
    extent = np.ptp(mesh.vertices, axis=0)
    np.testing.assert_allclose(extent, np.ptp(expected, axis=0), atol=1e-3)
    np.testing.assert_allclose(mesh.vertices.min(axis=0), expected.min(axis=0), atol=1e-3)
    thumbnail = Image.open(io.BytesIO(base64.b64decode(preview["thumbnail"])))
    assert thumbnail.format == "WEBP" and thumbnail.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    assert {"preview", "thumbnail"} <= set(body["timings_ms"])


def test_preview_faces_bounds_the_preview(client: TestClient) -> None:
    response = client.post(
        "/classify",
        files=upload("chair.off", CHAIR.read_bytes()),
        data={"preview": "true", "preview_faces": "200"},
    )
    assert response.status_code == 200, response.text
    assert 0 < response.json()["preview"]["faces"] <= 200
    too_many = client.post(
        "/classify",
        files=upload("chair.off", CHAIR.read_bytes()),
        data={"preview": "true", "preview_faces": "1000000"},
    )
    assert too_many.status_code == 422


def test_the_preview_path_casts_the_same_map(small_runtime: Runtime) -> None:
    data = CHAIR.read_bytes()
    plain, plain_timings = small_runtime.mesh_to_map(data, "off", 100_000)
    with_preview, timings, preview = small_runtime.mesh_to_map_with_preview(
        data, "off", 100_000, 500
    )
    np.testing.assert_array_equal(plain, with_preview)
    assert set(plain_timings) < set(timings) and "preview" in timings
    assert 0 < len(preview.faces) <= 500
