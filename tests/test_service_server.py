"""The real service: the exported small model through onnxruntime, in a real server process
(``python -m service``) and in TestClient; crash durability with ``kill -9``; the rotation
test on the shipped model (skipped when ``models/model.onnx`` is absent)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service_testing import (
    CHAIR,
    CLASS_NAMES,
    REPO,
    SHIPPED_GALLERY,
    SHIPPED_MODEL,
    ServerProcess,
    expected_prediction,
    free_port,
    malformed_files,
    mesh_bytes,
    mini_meshes,
    random_rotation,
    rotated_off,
    small_gallery_path,
    small_model_path,
    upload,
)

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("server")
    process = ServerProcess(
        {
            "SHAPES_MODEL_PATH": str(small_model_path()),
            "SHAPES_GALLERY_PATH": str(small_gallery_path()),
            "SHAPES_GALLERY_DIR": str(folder / "gallery"),
            "SHAPES_API_KEY": "key",
            "SHAPES_MAX_UPLOAD_BYTES": str(2 * 1024 * 1024),
            "SHAPES_INTRA_OP_THREADS": "1",
            "SHAPES_CAST_WORKERS": "1",
        },
        folder / "server.log",
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def test_health_and_model_over_http(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/livez").json()["status"] == "ok"
    assert httpx.get(f"{server.url}/readyz").json()["status"] == "ready"
    model = httpx.get(f"{server.url}/model").json()
    assert tuple(model["class_names"]) == CLASS_NAMES
    assert model["bandwidth"] == 16
    assert model["provider"] == "CPUExecutionProvider"
    assert httpx.get(f"{server.url}/openapi.json").json()["info"]["title"] == "spherical-shapes"


@pytest.mark.parametrize("fmt", ["off", "obj", "stl", "ply", "glb"])
def test_classify_over_http(server: ServerProcess, fmt: str) -> None:
    response = httpx.post(
        f"{server.url}/classify",
        files=upload(f"chair.{fmt}", mesh_bytes(fmt)),
        data={"top_k": "3"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body["probabilities"]) == set(CLASS_NAMES)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["top_k"][0]["label"] == body["label"]
    assert np.linalg.norm(body["descriptor"]) == pytest.approx(1.0, abs=1e-4)
    assert body["timings_ms"]["total"] > 0


def test_retrieve_finds_the_shape_itself(server: ServerProcess) -> None:
    """Each mini-ModelNet test mesh is in the gallery; it is its own nearest neighbour."""
    for path in mini_meshes("test")[:3]:
        response = httpx.post(
            f"{server.url}/retrieve",
            files=upload(path.name, path.read_bytes()),
            data={"k": "3"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        first = response.json()["neighbors"][0]
        assert first["id"] == path.stem
        assert first["label"] == path.parent.parent.name
        assert first["score"] == pytest.approx(1.0, abs=1e-3)


def test_failures_over_http(server: ServerProcess) -> None:
    url = server.url
    for name, data in list(malformed_files().items()):
        response = httpx.post(f"{url}/classify", files=upload(name, data), timeout=30)
        assert response.status_code == 422, (name, response.text)
        assert response.json()["kind"] == "mesh"
    assert httpx.post(f"{url}/classify", files=upload("a.xyz", b"x")).status_code == 415
    big = b"OFF\n" + b"0" * (3 * 1024 * 1024)
    assert httpx.post(f"{url}/classify", files=upload("a.off", big)).status_code == 413
    assert httpx.post(f"{url}/retrieve", data={"k": "3"}).status_code == 422
    assert httpx.get(f"{url}/gallery/items/nope").status_code == 404
    assert httpx.delete(f"{url}/gallery/items/nope").status_code == 401  # no key
    assert httpx.get(f"{url}/no-such-path").status_code == 404


def test_gallery_over_http(server: ServerProcess) -> None:
    url, key = server.url, {"X-API-Key": "key"}
    n = httpx.get(f"{url}/gallery/count").json()["count"]
    assert n == len(mini_meshes("train")) + len(mini_meshes("test"))
    denied = httpx.post(
        f"{url}/gallery", files=upload("c.off", CHAIR.read_bytes()), data={"id": "mine"}
    )
    assert denied.status_code == 401
    added = httpx.post(
        f"{url}/gallery",
        files=upload("c.off", CHAIR.read_bytes()),
        data={"id": "mine", "label": "chair", "metadata": '{"by": "test"}'},
        headers=key,
        timeout=30,
    )
    assert added.status_code == 201, added.text
    assert httpx.get(f"{url}/gallery/count").json()["count"] == n + 1
    page = httpx.get(f"{url}/gallery", params={"label": "chair", "limit": 100}).json()
    assert "mine" in [i["id"] for i in page["items"]]
    first = httpx.post(
        f"{url}/retrieve", files=upload("c.off", CHAIR.read_bytes()), data={"k": 1}, timeout=30
    ).json()["neighbors"][0]
    assert first["id"] == "mine" and first["metadata"] == {"by": "test"}
    assert httpx.delete(f"{url}/gallery/items/mine", headers=key).status_code == 204
    assert httpx.get(f"{url}/gallery/count").json()["count"] == n
    metrics = httpx.get(f"{url}/metrics").text
    assert 'shapes_requests_total{endpoint="/gallery",method="POST",status="201"}' in metrics


def test_concurrent_clients_are_batched(server: ServerProcess) -> None:
    chair = CHAIR.read_bytes()

    def call(_: int) -> tuple[int, int]:
        response = httpx.post(f"{server.url}/classify", files=upload("c.off", chair), timeout=60)
        return response.status_code, response.json().get("batch_size", 0)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(16)))
    assert all(status == 200 for status, _ in results)
    assert max(size for _, size in results) >= 1


def test_logs_are_json_lines_with_request_ids(server: ServerProcess) -> None:
    import json

    httpx.get(f"{server.url}/livez", headers={"X-Request-ID": "trace-me"})
    time.sleep(0.2)
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert any(x.get("request_id") == "trace-me" and x.get("path") == "/livez" for x in lines)


# ----------------------------------------------------------------------------- durability


def test_acknowledged_items_survive_kill_9(tmp_path: Path) -> None:
    """Writers add and delete items as fast as they can; the server is killed with SIGKILL in
    the middle; after a restart every acknowledged add is there with its descriptor and
    every acknowledged delete is gone."""
    env = {
        "SHAPES_MODEL_PATH": str(small_model_path()),
        "SHAPES_GALLERY_PATH": "none",
        "SHAPES_GALLERY_DIR": str(tmp_path / "gallery"),
        "SHAPES_INTRA_OP_THREADS": "1",
    }
    server = ServerProcess(env, tmp_path / "first.log")
    server.wait_ready()
    size = httpx.get(f"{server.url}/model").json()["descriptor_size"]
    acked: dict[str, list[float]] = {}
    deleted: set[str] = set()
    delete_sent: set[str] = set()  # a delete may be committed just before the kill, unanswered
    lock = threading.Lock()
    stop = threading.Event()

    def writer(worker: int) -> None:
        rng = np.random.default_rng(worker)
        with httpx.Client(base_url=server.url, timeout=5) as client:
            i = 0
            while not stop.is_set():
                item_id = f"w{worker}_{i}"
                vector = rng.standard_normal(size).tolist()
                try:
                    response = client.post(
                        "/gallery/descriptors",
                        json={"id": item_id, "label": "x", "descriptor": vector},
                    )
                    if response.status_code == 201:
                        with lock:
                            acked[item_id] = vector
                    if i % 5 == 4 and response.status_code == 201:
                        with lock:
                            delete_sent.add(item_id)
                        gone = client.delete(f"/gallery/items/{item_id}")
                        if gone.status_code == 204:
                            with lock:
                                deleted.add(item_id)
                except httpx.HTTPError:
                    return  # the server is gone
                i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()  # SIGKILL in the middle of writes
    stop.set()
    for thread in threads:
        thread.join()
    assert len(acked) >= 100, f"only {len(acked)} writes acknowledged: {server.log()}"

    restarted = ServerProcess(env, tmp_path / "second.log")
    try:
        restarted.wait_ready()
        with httpx.Client(base_url=restarted.url, timeout=10) as client:
            for item_id, vector in acked.items():
                response = client.get(f"/gallery/items/{item_id}")
                if item_id in deleted:
                    assert response.status_code == 404, item_id
                    continue
                if item_id in delete_sent:  # its delete was in flight at the kill: either way
                    assert response.status_code in (200, 404), item_id
                    continue
                assert response.status_code == 200, f"acknowledged {item_id} was lost"
                expected = np.asarray(vector) / np.linalg.norm(vector)
                np.testing.assert_allclose(response.json()["descriptor"], expected, atol=1e-6)
            count = client.get("/gallery/count").json()["count"]
            # items whose add was written but whose 201 never arrived may also be there
            assert count >= len(acked) - len(deleted) - len(delete_sent - deleted)
    finally:
        restarted.stop()


# ----------------------------------------------------------------------------- in-process


@pytest.fixture(scope="module")
def small_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        model_path=small_model_path(),
        gallery_path=small_gallery_path(),
        gallery_dir=tmp_path_factory.mktemp("inproc") / "gallery",
        intra_op_threads=1,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.05)
        yield client


def test_in_process_matches_the_runtime(small_client: TestClient) -> None:
    """The HTTP path gives the runtime's own prediction for the same bytes."""
    from service.runtime import Runtime

    runtime = Runtime(small_model_path(), intra_op_threads=1, warmup=False)
    expected = expected_prediction(runtime, CHAIR.read_bytes(), "off")
    body = small_client.post("/classify", files=upload("c.off", CHAIR.read_bytes())).json()
    assert body["label"] == expected.label
    np.testing.assert_allclose(body["descriptor"], expected.descriptor, atol=1e-5)
    np.testing.assert_allclose(
        [body["probabilities"][c] for c in CLASS_NAMES], expected.probabilities, atol=1e-5
    )
    assert small_client.post("/classify", files=upload("c.off", b"OFF\n")).status_code == 422


def test_default_gallery_ids_and_labels(small_client: TestClient) -> None:
    with np.load(small_gallery_path()) as data:
        ids, labels = list(data["ids"]), list(data["labels"])
    expected = {p.stem: p.parent.parent.name for p in mini_meshes("train") + mini_meshes("test")}
    assert dict(zip(ids, labels, strict=True)) == expected
    page = small_client.get("/gallery", params={"limit": 1000}).json()
    assert {i["id"]: i["label"] for i in page["items"]} == expected


@pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason="needs the trained models/model.onnx")
def test_rotated_copies_get_the_same_label_and_descriptor(tmp_path: Path) -> None:
    """A ModelNet10 test mesh and three random 3D rotations of it: same label, cosine > 0.98."""
    settings = Settings(
        model_path=SHIPPED_MODEL,
        gallery_path=SHIPPED_GALLERY if SHIPPED_GALLERY.is_file() else None,
        gallery_dir=tmp_path / "gallery",
    )
    rng = np.random.default_rng(2018)
    uploads = [CHAIR.read_bytes()] + [rotated_off(CHAIR, random_rotation(rng)) for _ in range(3)]
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        bodies = [client.post("/classify", files=upload("c.off", u)).json() for u in uploads]
    labels = [b["label"] for b in bodies]
    assert labels == [labels[0]] * 4, labels
    assert labels[0] == "chair", labels
    reference = np.asarray(bodies[0]["descriptor"])
    cosines = [float(np.dot(reference, b["descriptor"])) for b in bodies[1:]]
    assert min(cosines) > 0.98, cosines


def test_python_m_service_without_a_model_says_why(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "service"],
        env={**os.environ, "SHAPES_MODEL_PATH": str(tmp_path / "missing.onnx")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no model at" in result.stderr


def test_worker_processes_share_the_gallery(tmp_path: Path) -> None:
    """WEB_CONCURRENCY=2: two worker processes on one port; an item added through any
    connection is found through every other, and a duplicate id is refused once."""
    env = {
        "WEB_CONCURRENCY": "2",
        "SHAPES_MODEL_PATH": str(small_model_path()),
        "SHAPES_GALLERY_PATH": "none",
        "SHAPES_GALLERY_DIR": str(tmp_path / "gallery"),
        "SHAPES_CAST_WORKERS": "1",
        "SHAPES_LOG_LEVEL": "info",
    }
    server = ServerProcess(env, tmp_path / "server.log")
    try:
        server.wait_ready(timeout_s=120)
        deadline = time.monotonic() + 60
        while server.log().count('"msg": "ready"') < 2 and time.monotonic() < deadline:
            httpx.get(f"{server.url}/readyz", timeout=5)  # both workers load the model
            time.sleep(0.2)
        assert server.log().count('"msg": "ready"') == 2, server.log()
        size = httpx.get(f"{server.url}/model").json()["descriptor_size"]
        body = {"id": "shared_item", "label": "x", "descriptor": [1.0] * size}
        statuses = []
        for _ in range(2):  # two fresh connections, whichever workers they reach
            statuses.append(httpx.post(f"{server.url}/gallery/descriptors", json=body).status_code)
        assert sorted(statuses) == [201, 409]
        for _ in range(12):  # fresh connections: the kernel spreads them over the workers
            with httpx.Client(base_url=server.url, timeout=10) as client:
                assert client.get("/gallery/items/shared_item").status_code == 200
                assert client.get("/gallery/count").json()["count"] == 1
    finally:
        server.stop()


def test_python_m_service_takes_its_options(tmp_path: Path) -> None:
    """``python -m service --port P`` listens on P (the environment names another port),
    with the ``--model`` and ``--gallery`` given; ``--help`` prints the options and serves
    nothing."""
    port = free_port()
    env = {
        "SHAPES_PORT": str(free_port()),  # what --port overrides
        "SHAPES_MODEL_PATH": str(tmp_path / "missing.onnx"),  # what --model overrides
        "SHAPES_GALLERY_DIR": str(tmp_path / "gallery"),
        "SHAPES_CAST_WORKERS": "1",
    }
    options = ["--model", str(small_model_path()), "--gallery", str(small_gallery_path())]
    server = ServerProcess(env, tmp_path / "server.log", [*options, "--port", str(port)], port)
    try:
        server.wait_ready()
        model = httpx.get(f"{server.url}/model").json()
        assert model["descriptor_size"] > 0
        assert httpx.get(f"{server.url}/gallery/count").json()["count"] > 0
    finally:
        server.stop()
    shown = subprocess.run(
        [sys.executable, "-m", "service", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "--port PORT" in shown.stdout and "SHAPES_PORT" in shown.stdout
