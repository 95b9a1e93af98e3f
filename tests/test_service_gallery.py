"""The gallery stores: exact cosine search against brute force, durability, paging, filters.

Both backends run the same tests: the embedded store, and PostgreSQL + pgvector on a real
server the tests start (``postgres`` in conftest.py), a new database per test.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from service.gallery import (
    BaseGallery,
    DuplicateId,
    Gallery,
    GalleryError,
    Item,
    open_gallery,
    write_base_gallery,
)
from service.gallery.embedded import EmbeddedGallery
from service.settings import Settings

D = 16
LABELS = ("chair", "desk", "sofa")


def make_base(tmp_path: Path, n: int = 50, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path = tmp_path / "base.npz"
    write_base_gallery(
        path,
        [f"{LABELS[i % 3]}_{i:04d}" for i in range(n)],
        [LABELS[i % 3] for i in range(n)],
        rng.standard_normal((n, D)).astype(np.float32),
    )
    return path


Opener = Callable[[Path | None], Gallery]


@pytest.fixture(params=["embedded", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens (and reopens) a gallery over a base file in a folder (a database) owned by the
    test."""
    opened: list[Gallery] = []
    database: list[str] = []

    def open_(base: Path | None) -> Gallery:
        for gallery in opened:
            gallery.close()
        opened.clear()
        loaded = BaseGallery.load(base, D)
        if request.param == "embedded":
            gallery: Gallery = EmbeddedGallery(loaded, tmp_path / "store")
        else:
            from service.gallery.postgres import PostgresGallery

            if not database:
                database.append(request.getfixturevalue("postgres").create_database())
            gallery = PostgresGallery(loaded, database[0])
        opened.append(gallery)
        return gallery

    yield open_
    for gallery in opened:
        gallery.close()


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_search_is_exact_cosine(opener: Opener, tmp_path: Path) -> None:
    base = make_base(tmp_path)
    gallery = opener(base)
    with np.load(base) as data:
        ids, labels, descriptors = data["ids"], data["labels"], data["descriptors"]
    query = np.random.default_rng(1).standard_normal(D).astype(np.float32)
    expected = unit(descriptors) @ unit(query)  # (N,) brute-force cosine
    order = np.argsort(-expected)
    hits = gallery.search(query, 7)
    assert [h.id for h in hits] == list(ids[order[:7]])
    np.testing.assert_allclose([h.score for h in hits], expected[order[:7]], atol=1e-5)
    chair = labels == "chair"
    hits = gallery.search(query, 100, label="chair")
    assert len(hits) == int(chair.sum())
    assert [h.id for h in hits] == list(ids[chair][np.argsort(-expected[chair])])
    assert gallery.search(query, 5, label="no-such-class") == []


def test_add_delete_count_and_list(opener: Opener, tmp_path: Path) -> None:
    gallery = opener(make_base(tmp_path, n=10))
    assert gallery.count() == 10
    assert gallery.count("chair") == 4
    vector = np.arange(1, D + 1, dtype=np.float32)
    gallery.add(Item("zz_new", "lamp", vector, {"source": "test", "n": 3}))
    with pytest.raises(DuplicateId):
        gallery.add(Item("zz_new", "lamp", vector))
    with pytest.raises(GalleryError, match="descriptor has 3 values"):
        gallery.add(Item("bad", "lamp", np.ones(3, np.float32)))
    with pytest.raises(GalleryError, match="non-zero"):
        gallery.add(Item("zero", "lamp", np.zeros(D, np.float32)))
    assert gallery.count() == 11
    hit = gallery.search(vector, 1)[0]
    assert (hit.id, hit.label, hit.metadata) == ("zz_new", "lamp", {"source": "test", "n": 3})
    assert hit.score == pytest.approx(1.0, abs=1e-6)
    item = gallery.get("zz_new")
    assert item is not None
    np.testing.assert_allclose(item.descriptor, unit(vector), atol=1e-6)

    page, total = gallery.list_items(offset=0, limit=4)
    assert total == 11
    everything, _ = gallery.list_items(offset=0, limit=100)
    ids = [i.id for i in everything]
    assert ids == sorted(ids) and len(ids) == 11
    assert [i.id for i in page] == ids[:4]
    assert [i.id for i in gallery.list_items(offset=8, limit=4)[0]] == ids[8:]
    chairs, n_chairs = gallery.list_items(offset=0, limit=100, label="chair")
    assert n_chairs == 4 and all(i.label == "chair" for i in chairs)

    assert gallery.delete("chair_0000")  # a shipped item
    assert gallery.delete("zz_new")  # a user's item
    assert not gallery.delete("zz_new")
    assert gallery.get("chair_0000") is None
    assert gallery.count() == 9
    assert "chair_0000" not in {h.id for h in gallery.search(vector, 100)}


def test_thumbnails_are_kept_with_their_items(opener: Opener, tmp_path: Path) -> None:
    """Pictures of shipped items (from the base file) and of added ones, across reopening;
    none for an item without one or a deleted item."""
    rng = np.random.default_rng(4)
    base = tmp_path / "pictures.npz"
    pictures = [b"RIFF-a", None, b"RIFF-c" * 50]
    write_base_gallery(
        base,
        ["a", "b", "c"],
        ["chair", "desk", "sofa"],
        rng.standard_normal((3, D)).astype(np.float32),
        thumbnails=pictures,
    )
    gallery = opener(base)
    assert [gallery.thumbnail(i) for i in ("a", "b", "c")] == pictures
    vector = rng.standard_normal(D).astype(np.float32)
    gallery.add(Item("new", "lamp", vector, thumbnail=b"\x00webp\xff"))
    gallery.add(Item("bare", "lamp", vector))
    gallery.delete("c")
    reopened = opener(base)
    assert reopened.thumbnail("new") == b"\x00webp\xff"
    assert reopened.thumbnail("a") == b"RIFF-a"
    assert reopened.thumbnail("bare") is None
    assert reopened.thumbnail("c") is None
    assert reopened.thumbnail("no-such-id") is None


def test_changes_survive_reopening(opener: Opener, tmp_path: Path) -> None:
    base = make_base(tmp_path, n=10)
    gallery = opener(base)
    rng = np.random.default_rng(2)
    added = {f"user_{i}": rng.standard_normal(D).astype(np.float32) for i in range(5)}
    for item_id, vector in added.items():
        gallery.add(Item(item_id, "lamp", vector, {"i": item_id}))
    gallery.delete("user_3")
    gallery.delete("desk_0001")
    # a deleted shipped item can come back with new content
    gallery.delete("sofa_0002")
    gallery.add(Item("sofa_0002", "bed", added["user_0"]))

    reopened = opener(base)
    assert reopened.count() == 10 + 5 - 1 - 1
    assert reopened.get("user_3") is None and reopened.get("desk_0001") is None
    item = reopened.get("user_4")
    assert item is not None and item.metadata == {"i": "user_4"}
    np.testing.assert_allclose(item.descriptor, unit(added["user_4"]), atol=1e-6)
    sofa = reopened.get("sofa_0002")
    assert sofa is not None and sofa.label == "bed"


def test_embedded_store_is_shared_by_worker_processes(tmp_path: Path) -> None:
    """Two openers of one store (two server workers): each sees the other's writes at its
    next call, and an id added through one is a duplicate through the other."""
    base = BaseGallery.load(make_base(tmp_path), D)
    first = EmbeddedGallery(base, tmp_path / "store")
    second = EmbeddedGallery(base, tmp_path / "store")
    try:
        vector = np.random.default_rng(5).standard_normal(D).astype(np.float32)
        first.add(Item("user_a", "lamp", vector, {"by": "first"}))
        assert second.count() == 51
        assert second.search(vector, 1)[0].id == "user_a"
        item = second.get("user_a")
        assert item is not None and item.metadata == {"by": "first"}
        with pytest.raises(DuplicateId):
            second.add(Item("user_a", "lamp", vector))
        assert second.delete("chair_0000") and second.delete("user_a")
        assert first.get("chair_0000") is None and first.get("user_a") is None
        assert first.count() == 49
        assert [i.id for i in first.list_items(0, 100)[0]] == [
            i.id for i in second.list_items(0, 100)[0]
        ]
    finally:
        first.close()
        second.close()


def _add_from_a_process(store: str, base_path: str, worker: int) -> int:
    """Adds 20 ids of its own and the one shared id; how many adds succeeded."""
    gallery = EmbeddedGallery(BaseGallery.load(Path(base_path), D), Path(store))
    rng = np.random.default_rng(worker)
    done = 0
    try:
        for i in range(20):
            gallery.add(Item(f"w{worker}_{i}", "x", rng.standard_normal(D).astype(np.float32)))
            done += 1
            if i == 10:
                try:
                    gallery.add(Item("shared", "x", rng.standard_normal(D).astype(np.float32)))
                    done += 1
                except DuplicateId:
                    pass
    finally:
        gallery.close()
    return done


def test_concurrent_worker_processes_write_safely(tmp_path: Path) -> None:
    """Four processes adding at once: every add lands, the shared id exactly once."""
    import multiprocessing

    base_path = make_base(tmp_path)
    store = tmp_path / "store"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        done = pool.starmap(
            _add_from_a_process, [(str(store), str(base_path), w) for w in range(4)]
        )
    assert sum(done) == 4 * 20 + 1
    reopened = EmbeddedGallery(BaseGallery.load(base_path, D), store)
    try:
        assert reopened.count() == 50 + 4 * 20 + 1
        assert reopened.get("shared") is not None
    finally:
        reopened.close()


def test_embedded_store_with_changes_rejects_another_descriptor_size(tmp_path: Path) -> None:
    gallery = EmbeddedGallery(BaseGallery.load(None, D), tmp_path / "store")
    gallery.add(Item("mine", "lamp", np.ones(D, np.float32)))
    gallery.close()
    with pytest.raises(RuntimeError, match=f"1 change.*descriptors have {D} numbers"):
        EmbeddedGallery(BaseGallery.load(None, 8), tmp_path / "store")
    reopened = EmbeddedGallery(BaseGallery.load(None, D), tmp_path / "store")  # nothing lost
    try:
        assert reopened.get("mine") is not None
    finally:
        reopened.close()


@pytest.mark.parametrize("backend", ["embedded", "postgres"])
def test_an_unchanged_gallery_follows_an_upgraded_model(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A service run with the old model left its store (database) with the shipped items
    only: the new model, whose descriptors have another size, opens it with its own shipped
    descriptors (an upgrade must not leave the service unready); once a user has added an
    item, another model is refused."""
    old, new = make_base(tmp_path), tmp_path / "new.npz"
    with np.load(old) as data:
        ids, labels = list(data["ids"]), list(data["labels"])
    descriptors = np.random.default_rng(1).standard_normal((len(ids), 8)).astype(np.float32)
    write_base_gallery(new, ids, labels, descriptors)
    if backend == "embedded":

        def open_(base: Path, size: int) -> Gallery:
            return EmbeddedGallery(BaseGallery.load(base, size), tmp_path / "store")
    else:
        from service.gallery.postgres import PostgresGallery

        url = request.getfixturevalue("postgres").create_database()

        def open_(base: Path, size: int) -> Gallery:
            return PostgresGallery(BaseGallery.load(base, size), url)

    open_(old, D).close()
    upgraded = open_(new, 8)
    try:
        assert upgraded.count() == len(ids)
        item = upgraded.get(str(ids[0]))
        assert item is not None
        np.testing.assert_allclose(item.descriptor, unit(descriptors[0]), atol=1e-6)
        upgraded.add(Item("mine", "lamp", np.ones(8, np.float32)))
    finally:
        upgraded.close()
    with pytest.raises(RuntimeError, match="descriptors have 8 numbers"):
        open_(old, D)


@pytest.mark.parametrize("backend", ["embedded", "postgres"])
def test_a_gallery_changed_by_another_model_of_the_same_size_is_refused(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two models whose descriptors have the same size but live in other spaces (another
    training run, say): the second must not search the first one's items with its own
    queries. A store holding only the shipped items follows the new model; once a user has
    added an item, a model of another space is refused, and the item's own space reopens it
    with nothing lost."""
    base = make_base(tmp_path)
    if backend == "embedded":

        def open_(space: str) -> Gallery:
            return EmbeddedGallery(BaseGallery.load(base, D), tmp_path / "store", space=space)
    else:
        from service.gallery.postgres import PostgresGallery

        url = request.getfixturevalue("postgres").create_database()

        def open_(space: str) -> Gallery:
            return PostgresGallery(BaseGallery.load(base, D), url, space=space)

    open_("shapes 1").close()
    upgraded = open_("shapes 2")  # nothing added: the store follows
    try:
        upgraded.add(Item("mine", "lamp", np.ones(D, np.float32)))
    finally:
        upgraded.close()
    with pytest.raises(RuntimeError, match=r"with model shapes 2, .*this model \(model shapes 3\)"):
        open_("shapes 3")
    reopened = open_("shapes 2")
    try:
        assert reopened.get("mine") is not None and reopened.count() == 51
    finally:
        reopened.close()


def test_a_base_gallery_of_another_descriptor_space_is_flagged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A gallery file records the descriptor space it was computed in (the model's own name
    and version unless the model declared an older one's): a file of another space than the
    served model's is logged with what to do; one of the same space, even from another model
    version (a new temperature on the same networks), is not."""
    rng = np.random.default_rng(0)
    ids, labels = ["a_0001", "b_0002"], ["a", "b"]
    descriptors = rng.standard_normal((2, D)).astype(np.float32)
    path = tmp_path / "gallery.npz"
    settings = Settings(gallery_backend="embedded", gallery_path=path, gallery_dir=tmp_path / "s")
    warned = "holds descriptors of model shapes 5, the service's are of model shapes 7"
    for model, space, served, warns in [
        (("shapes", "5"), None, "shapes 5", False),
        (("shapes", "6"), "shapes 5", "shapes 5", False),
        (("shapes", "5"), None, "shapes 7", True),
        (("shapes", "6"), "shapes 5", "shapes 7", True),
    ]:
        write_base_gallery(path, ids, labels, descriptors, model, space=space)
        assert BaseGallery.load(path, D).space == (space or " ".join(model))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="service.gallery"):
            open_gallery(settings, D, served).close()
        assert (warned in caplog.text) == warns, (model, space, served, caplog.text)


def test_base_gallery_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="descriptor size is 8"):
        BaseGallery.load(make_base(tmp_path), 8)
    path = tmp_path / "dup.npz"
    np.savez(path, ids=["a", "a"], labels=["x", "x"], descriptors=np.ones((2, D), np.float32))
    with pytest.raises(ValueError, match="not unique"):
        BaseGallery.load(path, D)


def test_embedded_grows_past_its_capacity(tmp_path: Path) -> None:
    gallery = EmbeddedGallery(BaseGallery.load(None, D), tmp_path / "store", capacity=4)
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((70, D)).astype(np.float32)
    for i, vector in enumerate(vectors):
        gallery.add(Item(f"x{i}", "a" if i % 2 else "b", vector))
    for i in range(0, 70, 3):
        gallery.delete(f"x{i}")
    kept = [i for i in range(70) if i % 3]
    query = rng.standard_normal(D).astype(np.float32)
    expected = unit(vectors[kept]) @ unit(query)
    best = [f"x{kept[j]}" for j in np.argsort(-expected)[:10]]
    assert [h.id for h in gallery.search(query, 10)] == best
    assert gallery.count() == len(kept)
    gallery.close()
