"""The scale-out gallery on a real PostgreSQL + pgvector server (``postgres`` in conftest.py):
the routes on it, 503 while the database is away and recovery when it is back, two service
processes on one database, ``kill -9`` of a service during writes, the database restarted
under a running service."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.runtime import Runtime
from service.settings import Settings
from tests.postgres_testing import PostgresServer
from tests.service_testing import (
    ServerProcess,
    mesh_bytes,
    mini_meshes,
    small_gallery_path,
    small_model_path,
    upload,
    wait_ready,
)

pytest.importorskip("onnxruntime")
pytest.importorskip("psycopg_pool")


def unit_vector(size: int, index: int = 0) -> list[float]:
    vector = [0.0] * size
    vector[index] = 1.0
    return vector


def app_client(runtime: Runtime, url: str, **overrides: object) -> TestClient:
    settings = Settings(
        gallery_backend="postgres",
        database_url=url,
        gallery_path=None,
        log_json=True,
        **overrides,  # type: ignore[arg-type]
    )
    return TestClient(create_app(settings, runtime_factory=lambda _: runtime))


def test_the_app_on_postgres(postgres: PostgresServer, small_runtime: Runtime) -> None:
    """The gallery routes with SHAPES_GALLERY_BACKEND=postgres."""
    with app_client(small_runtime, postgres.create_database()) as client:
        wait_ready(client)
        chair = mesh_bytes("off")
        added = client.post("/gallery", files=upload("c.off", chair), data={"id": "chair_1"})
        assert added.status_code == 201, added.text
        size = small_runtime.info.descriptor_size
        item = {
            "id": "other",
            "label": "toilet",
            "descriptor": unit_vector(size),
            "metadata": {"z": 1, "a": "b"},
        }
        assert client.post("/gallery/descriptors", json=item).status_code == 201
        assert client.post("/gallery/descriptors", json=item).status_code == 409
        body = client.post("/retrieve", files=upload("c.stl", mesh_bytes("stl"))).json()
        assert body["neighbors"][0]["id"] == "chair_1"
        assert body["neighbors"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert client.get("/gallery/count").json() == {"count": 2}
        page = client.get("/gallery", params={"label": "toilet"}).json()
        assert page["total"] == 1
        assert list(page["items"][0]["metadata"]) == ["z", "a"]  # kept as written
        assert client.delete("/gallery/items/other").status_code == 204
        assert client.get("/gallery/items/other").status_code == 404


def test_503_while_the_database_is_away_then_recovery(
    small_runtime: Runtime, tmp_path: Path
) -> None:
    server = PostgresServer()
    try:
        server.start()
        size = small_runtime.info.descriptor_size
        with app_client(small_runtime, server.url(), database_wait_s=5.0) as client:
            wait_ready(client)
            item = {"id": "kept", "label": "chair", "descriptor": unit_vector(size)}
            assert client.post("/gallery/descriptors", json=item).status_code == 201

            server.stop()
            for response in (
                client.get("/gallery/items/kept"),
                client.get("/gallery/count"),
                client.post("/retrieve", files=upload("c.off", mesh_bytes("off"))),
                client.post(
                    "/gallery/descriptors",
                    json={"id": "new", "label": "chair", "descriptor": unit_vector(size, 1)},
                ),
            ):
                assert response.status_code == 503, response.text
                assert response.json()["kind"] == "gallery_unavailable"
                assert "Retry-After" in response.headers
            # what does not need the gallery still answers
            assert client.post("/classify", files=upload("c.off", mesh_bytes("off"))).is_success

            server.start()
            deadline = time.monotonic() + 15
            while (status := client.get("/gallery/items/kept").status_code) != 200:
                assert status == 503 and time.monotonic() < deadline, status
                time.sleep(0.2)
            assert client.get("/gallery/count").json() == {"count": 1}
    finally:
        server.close()


# ----------------------------------------------------------------------------- processes


def service_env(url: str) -> dict[str, str]:
    return {
        "SHAPES_MODEL_PATH": str(small_model_path()),
        "SHAPES_GALLERY_PATH": str(small_gallery_path()),
        "SHAPES_GALLERY_BACKEND": "postgres",
        "SHAPES_DATABASE_URL": url,
        "SHAPES_INTRA_OP_THREADS": "1",
        "SHAPES_CAST_WORKERS": "1",
        "SHAPES_LOG_JSON": "false",
    }


@pytest.fixture(scope="module")
def pair(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess, str]]:
    """Two service processes started together on one new database seeded with the small
    gallery; and the database's URL."""
    url = postgres.create_database()
    folder = tmp_path_factory.mktemp("pair")
    first = ServerProcess(service_env(url), folder / "a.log")
    second = ServerProcess(service_env(url), folder / "b.log")
    try:
        first.wait_ready()
        second.wait_ready()
        yield first, second, url
    finally:
        first.stop()
        second.stop()


def test_replicas_started_together_seed_once(
    pair: tuple[ServerProcess, ServerProcess, str], postgres: PostgresServer
) -> None:
    first, second, url = pair
    with np.load(small_gallery_path()) as shipped:
        n_shipped = len(shipped["ids"])
    assert n_shipped > 0
    logs = [first.log(), second.log()]
    assert sum("seeded the gallery database" in log for log in logs) == 1, logs
    rows = postgres.query(url, "SELECT count(*), count(DISTINCT id) FROM gallery_items")
    assert rows == [(n_shipped, n_shipped)]
    assert httpx.get(f"{second.url}/gallery/count", timeout=30).json() == {"count": n_shipped}
    index = postgres.query(
        url, "SELECT indexdef FROM pg_indexes WHERE indexname = 'gallery_items_descriptor'"
    )
    assert re.search(r"USING hnsw \(descriptor vector_cosine_ops\)", index[0][0])


def test_added_through_one_found_and_deleted_through_the_other(
    pair: tuple[ServerProcess, ServerProcess, str],
) -> None:
    first, second, _ = pair
    mesh = mini_meshes()[0]
    added = httpx.post(
        f"{first.url}/gallery",
        timeout=60,
        files=upload(mesh.name, mesh.read_bytes()),
        data={"id": "shared_1", "label": "mine", "metadata": '{"by": "first"}'},
    )
    assert added.status_code == 201, added.text
    neighbors = httpx.post(
        f"{second.url}/retrieve",
        files=upload(mesh.name, mesh.read_bytes()),
        data={"k": "3"},
        timeout=60,
    ).json()["neighbors"]
    # the shipped gallery holds this mesh too: the two tie at the top
    found = next(n for n in neighbors if n["id"] == "shared_1")
    assert (found["label"], found["metadata"]) == ("mine", {"by": "first"})
    assert found["score"] == pytest.approx(1.0, abs=1e-4)
    assert neighbors[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert httpx.delete(f"{second.url}/gallery/items/shared_1", timeout=30).status_code == 204
    assert httpx.get(f"{first.url}/gallery/items/shared_1", timeout=30).status_code == 404
    assert httpx.delete(f"{first.url}/gallery/items/shared_1", timeout=30).status_code == 404


def write_until(
    url: str, size: int, stop: threading.Event, acked: dict[str, list[float]], worker: int
) -> list[tuple[float, float, int]]:
    """Adds items through ``url`` until ``stop``; (start, end, status) of each request, status 0
    for no answer; an acknowledged (201) item goes into ``acked``."""
    rng = np.random.default_rng(worker)
    results: list[tuple[float, float, int]] = []
    with httpx.Client(base_url=url, timeout=10) as client:
        i = 0
        while not stop.is_set():
            item_id = f"w{worker}_{i}"
            vector = rng.standard_normal(size).tolist()
            start = time.monotonic()
            try:
                status = client.post(
                    "/gallery/descriptors",
                    json={"id": item_id, "label": "x", "descriptor": vector},
                ).status_code
            except httpx.HTTPError:
                status = 0
            results.append((start, time.monotonic(), status))
            if status == 201:
                acked[item_id] = vector
            i += 1
    return results


def check_acked(url: str, acked: dict[str, list[float]]) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for item_id, vector in acked.items():
            response = client.get(f"/gallery/items/{item_id}")
            assert response.status_code == 200, f"acknowledged {item_id} was lost"
            expected = np.asarray(vector) / np.linalg.norm(vector)
            np.testing.assert_allclose(response.json()["descriptor"], expected, atol=1e-6)


def test_kill_9_during_writes_loses_no_acknowledged_item(
    pair: tuple[ServerProcess, ServerProcess, str], tmp_path: Path
) -> None:
    """A third process on the same database takes writes and is killed with SIGKILL among
    them; every item it acknowledged is found through another process."""
    _, reader, url = pair
    victim = ServerProcess(service_env(url), tmp_path / "victim.log")
    victim.wait_ready()
    size = httpx.get(f"{victim.url}/model", timeout=30).json()["descriptor_size"]
    acked: dict[str, list[float]] = {}
    stop = threading.Event()
    threads = [
        threading.Thread(target=write_until, args=(victim.url, size, stop, acked, w))
        for w in range(4)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acked) < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    victim.kill()  # SIGKILL in the middle of writes
    stop.set()
    for thread in threads:
        thread.join()
    assert len(acked) >= 50, f"only {len(acked)} writes acknowledged: {victim.log()}"
    check_acked(reader.url, acked)


def test_database_restart_costs_errors_during_the_gap_only(tmp_path: Path) -> None:
    """Writers keep adding through a service while its database is stopped and started again:
    the requests that fail are 503s within the gap (plus a short reconnection), every other
    one succeeds, and no acknowledged item is lost."""
    server = PostgresServer()
    service: ServerProcess | None = None
    try:
        server.start()
        service = ServerProcess(
            {**service_env(server.url()), "SHAPES_GALLERY_PATH": "none"},
            tmp_path / "service.log",
        )
        service.wait_ready()
        size = httpx.get(f"{service.url}/model", timeout=30).json()["descriptor_size"]
        acked: dict[str, list[float]] = {}
        stop = threading.Event()
        results: list[list[tuple[float, float, int]]] = [[], []]

        def run(worker: int) -> None:
            results[worker] = write_until(service.url, size, stop, acked, worker)

        threads = [threading.Thread(target=run, args=(w,)) for w in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        gap_start = time.monotonic()
        server.stop()
        time.sleep(3.0)
        server.start()
        gap_end = time.monotonic()
        time.sleep(8.0)
        stop.set()
        for thread in threads:
            thread.join()

        calls = [call for worker in results for call in worker]
        failed = [call for call in calls if call[2] != 201]
        assert failed, "no request fell in the gap: the database was not restarted"
        assert {status for *_, status in failed} == {503}, failed
        recovery_s = 5.0  # the pool's check and reconnection after the restart
        assert all(gap_start <= end and start <= gap_end + recovery_s for start, end, _ in failed)
        before = [c for c in calls if c[1] < gap_start]
        after = [c for c in calls if c[0] > gap_end + recovery_s]
        assert before and after and all(c[2] == 201 for c in before + after)
        check_acked(service.url, acked)
    finally:
        if service is not None:
            service.stop()
        server.close()
