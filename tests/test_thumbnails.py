"""Gallery items' pictures: stored with the item by every backend, in the shipped file,
rendered by the gallery build, served by ``GET /gallery/items/{id}/thumbnail``."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from raymap.thumbnail import THUMBNAIL_SIZE
from service.gallery import BaseGallery, GalleryError, Item, write_base_gallery
from service.runtime import Runtime
from tests.service_testing import CHAIR, MINI, make_client, upload, wait_ready
from tests.test_service_gallery import D, Opener, opener  # noqa: F401 (the fixture)

PICTURES = [b"RIFF-first", None, b"RIFF-third-picture"]


def _base(tmp_path: Path, thumbnails: list[bytes | None] | None = PICTURES) -> Path:
    path = tmp_path / "base.npz"
    rng = np.random.default_rng(0)
    write_base_gallery(
        path,
        ["a_0001", "b_0002", "c_0003"],
        ["a", "b", "c"],
        rng.standard_normal((3, D)).astype(np.float32),
        thumbnails=thumbnails,
    )
    return path


def test_the_shipped_file_holds_one_picture_per_item(tmp_path: Path) -> None:
    base = BaseGallery.load(_base(tmp_path), D)
    assert [base.thumbnail(i) for i in range(3)] == PICTURES
    with np.load(tmp_path / "base.npz") as data:
        assert data["thumbnails"].dtype == np.uint8
        assert data["thumbnails"].nbytes == sum(len(p or b"") for p in PICTURES)
    without = BaseGallery.load(_base(tmp_path, None), D)
    assert without.thumbnail(0) is None
    with pytest.raises(ValueError, match="thumbnails"):
        _base(tmp_path, PICTURES[:2])


def test_a_file_with_inconsistent_offsets_is_refused(tmp_path: Path) -> None:
    path = _base(tmp_path)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["thumbnail_offsets"] = arrays["thumbnail_offsets"][:-1]
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="thumbnail_offsets"):
        BaseGallery.load(path, D)


def test_every_backend_stores_the_picture_with_the_item(
    opener: Opener,  # noqa: F811
    tmp_path: Path,
) -> None:
    base = _base(tmp_path)
    gallery = opener(base)
    assert gallery.thumbnail("a_0001") == PICTURES[0]
    assert gallery.thumbnail("b_0002") is None
    assert gallery.thumbnail("nobody") is None
    vector = np.ones(D, np.float32)
    gallery.add(Item("d_0004", "d", vector, None, b"new picture"))
    gallery.add(Item("e_0005", "e", vector))
    assert gallery.thumbnail("d_0004") == b"new picture"
    assert gallery.thumbnail("e_0005") is None
    # Pictures stay out of search answers and items.
    assert gallery.get("d_0004") is not None
    assert gallery.get("d_0004").thumbnail is None  # type: ignore[union-attr]
    # A base item deleted and added again carries its new picture; a deleted one has none.
    assert gallery.delete("a_0001")
    assert gallery.thumbnail("a_0001") is None
    gallery.add(Item("a_0001", "a", vector, None, b"replacement"))
    assert gallery.delete("c_0003")
    gallery = opener(base)  # reopened: durable
    assert gallery.thumbnail("a_0001") == b"replacement"
    assert gallery.thumbnail("d_0004") == b"new picture"
    assert gallery.thumbnail("c_0003") is None
    with pytest.raises(GalleryError, match="thumbnail"):
        gallery.add(Item("f_0006", "f", vector, None, b"x" * (64 * 1024 + 1)))
    assert gallery.get("f_0006") is None


def test_a_store_from_before_pictures_opens(tmp_path: Path) -> None:
    from service.gallery.embedded import EmbeddedGallery

    store = tmp_path / "store"
    store.mkdir()
    db = sqlite3.connect(store / "gallery.sqlite3")
    db.execute(
        "CREATE TABLE changes (id TEXT PRIMARY KEY, label TEXT, descriptor BLOB, metadata TEXT)"
    )
    db.execute("INSERT INTO changes VALUES ('old', 'x', ?, NULL)", (np.ones(D, "<f4").tobytes(),))
    db.commit()
    db.close()
    gallery = EmbeddedGallery(BaseGallery.load(None, D), store)
    try:
        assert gallery.get("old") is not None and gallery.thumbnail("old") is None
        gallery.add(Item("new", "x", np.ones(D, np.float32), None, b"picture"))
        assert gallery.thumbnail("new") == b"picture"
    finally:
        gallery.close()


# ----------------------------------------------------------------------------- API and build


@pytest.fixture
def client(tmp_path: Path, small_runtime: Runtime) -> Iterator[TestClient]:
    with make_client(tmp_path, small_runtime) as client:
        wait_ready(client)
        yield client


def test_an_added_mesh_gets_a_picture_served_by_the_api(client: TestClient) -> None:
    added = client.post(
        "/gallery", files=upload("chair.off", CHAIR.read_bytes()), data={"id": "my_chair"}
    )
    assert added.status_code == 201, added.text
    response = client.get("/gallery/items/my_chair/thumbnail")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp"
    picture = Image.open(io.BytesIO(response.content))
    assert picture.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    assert len(set(picture.convert("RGB").getdata())) > 20  # a shaded shape, not a blank
    etag = response.headers["etag"]
    again = client.get("/gallery/items/my_chair/thumbnail", headers={"If-None-Match": etag})
    assert again.status_code == 304
    # An item added by descriptor has no picture; an unknown id has none either.
    descriptor = client.get("/gallery/items/my_chair").json()["descriptor"]
    body = {"id": "by_descriptor", "label": "chair", "descriptor": descriptor}
    assert client.post("/gallery/descriptors", json=body).status_code == 201
    assert client.get("/gallery/items/by_descriptor/thumbnail").status_code == 404
    missing = client.get("/gallery/items/nobody/thumbnail")
    assert missing.status_code == 404 and "thumbnail" in missing.json()["detail"]
    assert "/gallery/items/{item_id}/thumbnail" in client.get("/openapi.json").json()["paths"]


def test_the_gallery_build_renders_every_items_picture(tmp_path: Path) -> None:
    from service.build_gallery import build_gallery
    from tests.service_testing import small_model_path

    out = tmp_path / "gallery.npz"
    n = build_gallery(
        small_model_path(),
        out,
        root=MINI,
        cache_dir=tmp_path / "cache",
        workers=1,
        progress=False,
    )
    base = BaseGallery.load(out, int(np.load(out)["descriptors"].shape[1]))
    assert n == len(base.ids) == 12
    sizes = []
    for i, item_id in enumerate(base.ids):
        picture = base.thumbnail(i)
        assert picture is not None, item_id
        image = Image.open(io.BytesIO(picture))
        assert image.format == "WEBP" and image.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        sizes.append(len(picture))
    assert max(sizes) < 1500, sizes
    bare = tmp_path / "bare.npz"
    build_gallery(
        small_model_path(),
        bare,
        root=MINI,
        cache_dir=tmp_path / "cache",
        workers=1,
        progress=False,
        thumbnails=False,
    )
    assert "thumbnails" not in np.load(bare).files


def test_a_folder_gallery_gets_pictures_too(tmp_path: Path) -> None:
    from raymap.datasets import FOLDER, FOLDER_SPLITS
    from service.build_gallery import build_gallery
    from tests.service_testing import small_model_path

    out = tmp_path / "gallery.npz"
    n = build_gallery(
        small_model_path(),
        out,
        dataset=FOLDER,
        splits=FOLDER_SPLITS,
        root=MINI,
        cache_dir=tmp_path / "cache",
        workers=1,
        progress=False,
    )
    base = BaseGallery.load(out, int(np.load(out)["descriptors"].shape[1]))
    assert n == 12 and all(base.thumbnail(i) for i in range(n))
