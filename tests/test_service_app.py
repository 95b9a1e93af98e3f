"""The app's routes, limits and error mapping through TestClient, in process, on the real
runtime and the small exported test model (``small_runtime`` in tests/conftest.py). The
overload, batching and time-limit tests wrap that runtime in
:class:`tests.service_testing.InstrumentedRuntime`, which adds a delay and records batch sizes
before calling it; tests/test_service_server.py runs the same model in a real server."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trimesh
from fastapi.testclient import TestClient

from service.app import create_app
from service.runtime import Runtime
from service.settings import Settings
from tests.service_testing import (
    CHAIR,
    CLASS_NAMES,
    REPO,
    InstrumentedRuntime,
    expected_prediction,
    make_client,
    malformed_files,
    mesh_bytes,
    mini_meshes,
    upload,
    wait_ready,
)

FORMATS = ("off", "obj", "stl", "ply", "glb")


@pytest.fixture
def client(tmp_path: Path, small_runtime: Runtime) -> Iterator[TestClient]:
    with make_client(tmp_path, small_runtime) as client:
        wait_ready(client)
        yield client


def unit_vector(size: int, index: int = 0) -> list[float]:
    vector = [0.0] * size
    vector[index] = 1.0
    return vector


def test_health_model_and_openapi(client: TestClient, small_runtime: Runtime) -> None:
    assert client.get("/livez").json() == {"status": "ok", "detail": None}
    assert client.get("/readyz").json()["status"] == "ready"
    model = client.get("/model").json()
    info = small_runtime.info
    outputs = {o.name: o.shape[-1] for o in small_runtime.session.get_outputs()}
    assert tuple(model["class_names"]) == CLASS_NAMES  # what the test model was exported with
    assert model["descriptor_size"] == info.descriptor_size == outputs["descriptor"]
    assert len(model["class_names"]) == outputs["probabilities"]
    assert (model["name"], model["version"]) == (info.name, info.version)
    assert model["bandwidth"] == info.bandwidth
    assert tuple(model["feature_names"]) == info.feature_names
    assert model["provider"] == "CPUExecutionProvider"
    assert model["metadata"] == small_runtime.metadata
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/classify", "/retrieve", "/gallery", "/gallery/count", "/metrics"):
        assert path in paths
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("fmt", FORMATS)
def test_classify_every_format(client: TestClient, small_runtime: Runtime, fmt: str) -> None:
    data = mesh_bytes(fmt)
    response = client.post("/classify", files=upload(f"chair.{fmt.upper()}", data))
    assert response.status_code == 200, response.text
    body = response.json()
    info = small_runtime.info
    assert list(body["probabilities"]) == list(info.class_names)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    assert len(body["descriptor"]) == info.descriptor_size
    assert np.linalg.norm(body["descriptor"]) == pytest.approx(1.0, abs=1e-5)
    # The runtime's own answer for the same bytes: the app passes it through unchanged.
    expected = expected_prediction(small_runtime, data, fmt, Settings().max_faces)
    assert body["label"] == expected.label
    np.testing.assert_allclose(
        list(body["probabilities"].values()), expected.probabilities, atol=1e-6
    )
    np.testing.assert_allclose(body["descriptor"], expected.descriptor, atol=1e-6)
    for stage in ("read", "parse", "normalize", "hull", "cast", "queue", "inference", "total"):
        assert body["timings_ms"][stage] >= 0
    assert body["model"] == {"name": info.name, "version": info.version}
    assert body["top_k"] is None
    assert response.headers["x-request-id"]


def test_every_format_gives_the_same_map(client: TestClient) -> None:
    """The same chair as OFF, OBJ, STL, PLY and GLB (Y-up) gets the same descriptor."""
    descriptors = [
        client.post("/classify", files=upload(f"c.{f}", mesh_bytes(f))).json()["descriptor"]
        for f in FORMATS
    ]
    for descriptor in descriptors[1:]:
        np.testing.assert_allclose(descriptor, descriptors[0], atol=1e-5)


def test_classify_top_k(client: TestClient) -> None:
    body = client.post(
        "/classify", files=upload("c.off", mesh_bytes("off")), data={"top_k": "2"}
    ).json()
    assert len(body["top_k"]) == 2
    assert body["top_k"][0]["label"] == body["label"]
    assert body["top_k"][0]["probability"] >= body["top_k"][1]["probability"]
    bad = client.post("/classify", files=upload("c.off", mesh_bytes("off")), data={"top_k": "0"})
    assert bad.status_code == 422 and bad.json()["kind"] == "validation"


@pytest.mark.parametrize("name", sorted(malformed_files()))
def test_malformed_files_are_422_with_a_reason(client: TestClient, name: str) -> None:
    response = client.post("/classify", files=upload(name, malformed_files()[name]))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["kind"] == "mesh" and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize("name", ["chair.abc", "chair", "", "../../etc/passwd", "x.off.exe"])
def test_unknown_formats_are_415(client: TestClient, name: str) -> None:
    response = client.post("/classify", files=upload(name, mesh_bytes("off")))
    assert response.status_code in (415, 422), response.text  # no file name: a 422
    if name:
        assert response.status_code == 415
        assert response.json()["kind"] == "unsupported_format"


def test_a_large_upload_is_parsed_in_memory(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A multi-megabyte upload is classified without going through a temporary file."""
    rollovers: list[int] = []
    real_rollover = tempfile.SpooledTemporaryFile.rollover

    def recorded_rollover(self: tempfile.SpooledTemporaryFile[bytes]) -> None:
        rollovers.append(1)
        real_rollover(self)

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", recorded_rollover)
    padded = mesh_bytes("off") + b"# " + b"x" * (3 * 1024 * 1024) + b"\n"  # a 3 MiB comment
    response = client.post("/classify", files=upload("chair.off", padded))
    assert response.status_code == 200, response.text
    assert (
        response.json()["label"]
        == client.post("/classify", files=upload("chair.off", mesh_bytes("off"))).json()["label"]
    )
    assert rollovers == []


def test_missing_file_is_422(client: TestClient) -> None:
    response = client.post("/classify", data={"top_k": "1"})
    assert response.status_code == 422
    assert "file" in response.json()["detail"]


def test_upload_limits(tmp_path: Path, small_runtime: Runtime) -> None:
    off = CHAIR.read_bytes()
    with make_client(
        tmp_path, small_runtime, max_upload_bytes=len(off) - 1, max_faces=100_000
    ) as client:
        wait_ready(client)
        response = client.post("/classify", files=upload("c.off", off))
        assert response.status_code == 413 and response.json()["kind"] == "too_large"
        huge = client.post("/classify", files=upload("c.off", off * 40))  # over the body cap
        assert huge.status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the streaming cap
            yield b"--b\r\nContent-Disposition: form-data; name=file; filename=c.off\r\n\r\n"
            for _ in range(40):
                yield off
            yield b"\r\n--b--\r\n"

        streamed = client.post(
            "/classify",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert streamed.status_code == 413
    with make_client(tmp_path, small_runtime, max_faces=1000) as client:
        wait_ready(client)
        response = client.post("/classify", files=upload("c.off", off))
        assert response.status_code == 422
        assert "more than the limit of 1000" in response.json()["detail"]


def test_retrieve_and_gallery_round_trip(client: TestClient) -> None:
    chair = mesh_bytes("off")
    assert client.get("/gallery/count").json() == {"count": 0}
    added = client.post(
        "/gallery",
        files=upload("chair.off", chair),
        data={"id": "chair_0890", "metadata": json.dumps({"source": "fixture"})},
    )
    assert added.status_code == 201, added.text
    label = added.json()["label"]
    descriptor = client.post("/classify", files=upload("c.stl", mesh_bytes("stl"))).json()[
        "descriptor"
    ]
    other = -np.asarray(descriptor)
    stored = client.post(
        "/gallery/descriptors",
        json={"id": "opposite", "label": "toilet", "descriptor": other.tolist()},
    )
    assert stored.status_code == 201, stored.text
    assert client.get("/gallery/count").json() == {"count": 2}
    assert client.get("/gallery/count", params={"label": "toilet"}).json() == {"count": 1}

    body = client.post("/retrieve", files=upload("c.ply", mesh_bytes("ply")), data={"k": 5}).json()
    assert body["label"] == label
    assert [n["id"] for n in body["neighbors"]] == ["chair_0890", "opposite"]
    assert body["neighbors"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert body["neighbors"][0]["metadata"] == {"source": "fixture"}
    assert body["neighbors"][1]["score"] == pytest.approx(-1.0, abs=1e-4)
    assert body["timings_ms"]["search"] >= 0
    filtered = client.post(
        "/retrieve", files=upload("c.off", chair), data={"k": 5, "label": "toilet"}
    ).json()
    assert [n["id"] for n in filtered["neighbors"]] == ["opposite"]

    page = client.get("/gallery", params={"limit": 1}).json()
    assert page["total"] == 2 and [i["id"] for i in page["items"]] == ["chair_0890"]
    page = client.get("/gallery", params={"limit": 1, "offset": 1}).json()
    assert [i["id"] for i in page["items"]] == ["opposite"]
    item = client.get("/gallery/items/opposite").json()
    np.testing.assert_allclose(item["descriptor"], other / np.linalg.norm(other), atol=1e-6)

    duplicate = client.post("/gallery", files=upload("c.off", chair), data={"id": "chair_0890"})
    assert duplicate.status_code == 409 and duplicate.json()["kind"] == "duplicate_id"
    assert client.delete("/gallery/items/opposite").status_code == 204
    assert client.delete("/gallery/items/opposite").status_code == 404
    assert client.get("/gallery/items/opposite").status_code == 404
    assert client.get("/gallery/count").json() == {"count": 1}


def test_labels_are_stored_and_asked_for_without_surrounding_whitespace(
    client: TestClient,
) -> None:
    """ " chair " was stored as sent, so asking for the class "chair" missed it."""
    added = client.post(
        "/gallery", files=upload("c.off", mesh_bytes("off")), data={"id": "a", "label": " chair "}
    )
    assert added.status_code == 201, added.text
    assert added.json()["label"] == "chair"
    ones = [1.0] * len(client.get("/gallery/items/a").json()["descriptor"])
    item = {"id": "b", "label": "\tchair\n", "descriptor": ones}
    assert client.post("/gallery/descriptors", json=item).json()["label"] == "chair"
    assert client.get("/gallery/count", params={"label": "chair"}).json() == {"count": 2}
    assert client.get("/gallery/count", params={"label": " chair "}).json() == {"count": 2}
    listed = client.get("/gallery", params={"label": "chair "}).json()
    assert [i["label"] for i in listed["items"]] == ["chair", "chair"]
    found = client.post(
        "/retrieve", files=upload("c.off", mesh_bytes("off")), data={"label": " chair"}
    ).json()
    assert sorted(n["id"] for n in found["neighbors"]) == ["a", "b"]


# Bad items for POST /gallery/descriptors: (id, label, descriptor, metadata), where a
# descriptor of ("ones" | "zeros" | "huge") has the model's descriptor size, and the fragment
# the 422's detail must name.
BAD_ITEMS: list[tuple[str, str, object, object, str]] = [
    ("x", "a", [1.0, 2.0], None, "descriptor has 2 values"),
    ("x", "a", "zeros", None, "all zeros"),
    ("../x", "a", "ones", None, "id"),
    ("", "a", "ones", None, "id"),
    ("x", "", "ones", None, "label"),
    ("x", " \t ", "ones", None, "label"),
    ("x", "a", [], None, "descriptor"),
    ("x", "a", "huge", None, "finite"),
    ("x", "a", "ones", {"a": float("nan")}, "metadata"),
    ("x", "a", "ones", {"a": "x" * 5000}, "metadata"),
]


@pytest.mark.parametrize(
    ("item_id", "label", "descriptor", "metadata", "fragment"),
    BAD_ITEMS,
    ids=[f"{i}-{row[-1]}" for i, row in enumerate(BAD_ITEMS)],
)
def test_bad_descriptor_items_are_422(
    client: TestClient,
    small_runtime: Runtime,
    item_id: str,
    label: str,
    descriptor: object,
    metadata: object,
    fragment: str,
) -> None:
    size = small_runtime.info.descriptor_size
    filled = {"ones": [1.0] * size, "zeros": [0.0] * size, "huge": [1e300] * size}
    if isinstance(descriptor, str):
        descriptor = filled[descriptor]
    body: dict[str, object] = {"id": item_id, "label": label, "descriptor": descriptor}
    if metadata is not None:
        body["metadata"] = metadata
    response = client.post(
        "/gallery/descriptors",
        content=json.dumps(body),  # allows NaN, as a careless client might send
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"]


@pytest.mark.parametrize("value", [1e38, 1e-30])
def test_descriptors_of_any_finite_scale_are_stored_as_directions(
    client: TestClient, small_runtime: Runtime, value: float
) -> None:
    """Finite float32 values whose sum of squares overflows (1e38) or underflows (1e-30) in
    float32 are a direction all the same (they were refused as "not finite and non-zero")."""
    size = small_runtime.info.descriptor_size
    item = {"id": f"scaled_{value > 1}", "label": "a", "descriptor": [value] * size}
    stored = client.post("/gallery/descriptors", json=item)
    assert stored.status_code == 201, stored.text
    got = client.get(f"/gallery/items/{item['id']}").json()["descriptor"]
    np.testing.assert_allclose(got, np.full(size, 1 / np.sqrt(size)), rtol=1e-6)


def test_request_errors_say_what_is_wrong_briefly(client: TestClient) -> None:
    """An undecodable JSON body is a 400 (the error table's), a descriptor of strings names
    the first few bad values (not one line for each of hundreds), and a form with two files
    is refused (the framework kept the last, silently)."""
    broken = client.post(
        "/gallery/descriptors", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400 and broken.json()["kind"] == "bad_request", broken.text
    strings = client.post(
        "/gallery/descriptors", json={"id": "x", "label": "a", "descriptor": ["x"] * 513}
    )
    assert strings.status_code == 422
    assert len(strings.json()["detail"]) < 600 and "and 508 more" in strings.json()["detail"]
    chair, box = mesh_bytes("off"), trimesh.creation.box().export(file_type="off").encode()
    two = client.post("/classify", files=[("file", ("a.off", chair)), ("file", ("b.off", box))])
    assert two.status_code == 422 and "one mesh per request" in two.json()["detail"], two.text


def test_bad_gallery_uploads(client: TestClient) -> None:
    chair = mesh_bytes("off")
    for data in (
        {"id": "a/b"},
        {"id": "x", "metadata": "{not json"},
        {"id": "x", "metadata": "[1]"},
        {"id": "x", "metadata": '{"a": NaN}'},
        {"id": "x", "metadata": '{"a": {"nested": 1}}'},
    ):
        response = client.post("/gallery", files=upload("c.off", chair), data=data)
        assert response.status_code == 422, response.text
    response = client.post("/retrieve", files=upload("c.off", chair), data={"k": 10_000})
    assert response.status_code == 422 and "at most 100" in response.json()["detail"]


def test_null_metadata_in_a_form_is_none(client: TestClient) -> None:
    """``-F metadata=null`` means no metadata, as ``"metadata": null`` does in JSON (it was
    refused as not an object)."""
    added = client.post(
        "/gallery", files=upload("c.off", mesh_bytes("off")), data={"id": "x", "metadata": "null"}
    )
    assert added.status_code == 201, added.text
    assert client.get("/gallery/items/x").json()["metadata"] is None


def test_writes_need_the_api_key_when_set(tmp_path: Path, small_runtime: Runtime) -> None:
    with make_client(tmp_path, small_runtime, api_key="s3cret") as client:
        wait_ready(client)
        item = {"id": "x", "label": "a", "descriptor": [1.0] * small_runtime.info.descriptor_size}
        assert client.post("/gallery/descriptors", json=item).status_code == 401
        wrong = {"X-API-Key": "nope"}
        assert client.post("/gallery/descriptors", json=item, headers=wrong).status_code == 401
        good = {"X-API-Key": "s3cret"}
        assert client.post("/gallery/descriptors", json=item, headers=good).status_code == 201
        assert client.delete("/gallery/items/x").status_code == 401
        assert client.get("/gallery/count").json() == {"count": 1}  # reads stay open
        assert client.post("/classify", files=upload("c.off", mesh_bytes("off"))).is_success
        assert client.delete("/gallery/items/x", headers=good).status_code == 204


def test_not_ready_is_503_and_livez_still_answers(tmp_path: Path, small_runtime: Runtime) -> None:
    gate = threading.Event()

    def slow_factory(_: Settings) -> Runtime:
        gate.wait(10)
        return small_runtime

    settings = Settings(gallery_path=None, gallery_dir=tmp_path / "g")
    with TestClient(create_app(settings, runtime_factory=slow_factory)) as client:
        assert client.get("/livez").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["retry-after"]
        response = client.post("/classify", files=upload("c.off", mesh_bytes("off")))
        assert response.status_code == 503 and response.json()["kind"] == "not_ready"
        gate.set()
        wait_ready(client)


def test_a_failed_load_is_reported(tmp_path: Path) -> None:
    """The default factory (the real Runtime) on a model file that is not there."""
    missing = tmp_path / "missing.onnx"
    settings = Settings(model_path=missing, gallery_path=None, gallery_dir=tmp_path / "g")
    with TestClient(create_app(settings)) as client:
        for _ in range(500):
            body = client.get("/readyz").json()
            if body["status"] == "failed":
                break
            time.sleep(0.02)
        assert body["status"] == "failed", body
        assert "FileNotFoundError" in body["detail"] and str(missing) in body["detail"]
        response = client.post("/classify", files=upload("c.off", mesh_bytes("off")))
        assert response.status_code == 503 and response.json()["kind"] == "not_ready"


def test_overload_is_503_with_retry_after(tmp_path: Path, small_runtime: Runtime) -> None:
    runtime = InstrumentedRuntime(small_runtime, delay_s=0.3)
    with make_client(tmp_path, runtime, max_pending=2, max_batch_size=1) as client:
        wait_ready(client)
        chair = mesh_bytes("off")
        results: list[int] = []
        headers: list[str | None] = []

        def call() -> None:
            response = client.post("/classify", files=upload("c.off", chair))
            results.append(response.status_code)
            headers.append(response.headers.get("retry-after"))

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert set(results) <= {200, 503}
        assert results.count(200) >= 2 and results.count(503) >= 1
        assert all(h == "1" for s, h in zip(results, headers, strict=True) if s == 503)
        metrics = client.get("/metrics").text
        assert 'shapes_errors_total{kind="overloaded"}' in metrics


def test_concurrent_requests_are_batched(tmp_path: Path, small_runtime: Runtime) -> None:
    """12 different meshes at once share model calls, and each gets its own mesh's answer."""
    runtime = InstrumentedRuntime(small_runtime, delay_s=0.05)
    meshes = mini_meshes("train") + mini_meshes("test")
    assert len(meshes) == 12
    with make_client(tmp_path, runtime, max_batch_size=8, max_wait_ms=20) as client:
        wait_ready(client)
        bodies: dict[Path, dict[str, Any]] = {}

        def call(path: Path) -> None:
            response = client.post("/classify", files=upload(path.name, path.read_bytes()))
            bodies[path] = response.json()

        threads = [threading.Thread(target=call, args=(path,)) for path in meshes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(bodies) == 12
        assert runtime.batch_sizes[0] == 1  # the app's warm-up
        assert max(runtime.batch_sizes) > 1, runtime.batch_sizes
        assert sum(runtime.batch_sizes[1:]) == 12
        assert max(b["batch_size"] for b in bodies.values()) > 1
    max_faces = Settings().max_faces
    for path, body in bodies.items():
        expected = expected_prediction(small_runtime, path.read_bytes(), "off", max_faces)
        np.testing.assert_allclose(body["descriptor"], expected.descriptor, atol=1e-5)
        assert body["label"] == expected.label


def test_slow_meshes_hit_the_time_limit(tmp_path: Path, small_runtime: Runtime) -> None:
    runtime = InstrumentedRuntime(small_runtime, cast_delay_s=0.0)
    with make_client(tmp_path, runtime, mesh_timeout_s=0.2) as client:
        wait_ready(client)
        runtime.cast_delay_s = 1.0
        response = client.post("/classify", files=upload("c.off", mesh_bytes("off")))
        assert response.status_code == 422
        assert response.json()["kind"] == "mesh_timeout"
        assert "longer than 0.2 s" in response.json()["detail"]


def test_unexpected_errors_are_a_generic_500(
    tmp_path: Path, small_runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = InstrumentedRuntime(small_runtime)
    with make_client(tmp_path, runtime) as client:
        wait_ready(client)
        runtime.fail_with = RuntimeError("secret internals")  # a fault from here on
        with caplog.at_level("ERROR", logger="service.app"):
            response = client.post("/classify", files=upload("c.off", mesh_bytes("off")))
        assert response.status_code == 500
        assert response.json()["detail"] == "internal server error"
        assert response.json()["kind"] == "internal"
        assert "secret" not in response.text
        assert any("secret internals" in str(r.exc_info) for r in caplog.records)  # logged
        runtime.fail_with = None
        response = client.post("/classify", files=upload("c.off", mesh_bytes("off")))
        assert response.status_code == 200, response.text  # the service goes on


def test_metrics_cover_endpoints_stages_batches_and_errors(client: TestClient) -> None:
    client.post("/classify", files=upload("c.off", mesh_bytes("off")))
    client.post("/classify", files=upload("c.off", b"junk"))
    text = client.get("/metrics").text
    for needle in (
        'shapes_requests_total{endpoint="/classify",method="POST",status="200"}',
        'shapes_request_duration_seconds_bucket{endpoint="/classify"',
        'shapes_stage_duration_seconds_count{endpoint="/classify",stage="cast"}',
        'shapes_stage_duration_seconds_count{endpoint="/classify",stage="inference"}',
        "shapes_batch_size_bucket",
        "shapes_queue_depth",
        'shapes_errors_total{kind="mesh"}',
        "shapes_gallery_items",
    ):
        assert needle in text, needle


def test_request_ids_are_kept_and_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="service.app"):
        response = client.get("/livez", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    records = [r for r in caplog.records if getattr(r, "path", None) == "/livez"]
    assert records and records[-1].status == 200  # type: ignore[attr-defined]
    evil = client.get("/livez", headers={"X-Request-ID": "a\nb" * 50}).headers["x-request-id"]
    assert evil != "a\nb" * 50 and len(evil) == 32


def test_json_log_lines() -> None:
    import logging

    from service.logs import JsonFormatter, request_id

    token = request_id.set("rid-1")
    try:
        record = logging.LogRecord("service.app", logging.INFO, "", 0, "hello %s", ("x",), None)
        record.request_id = request_id.get()
        record.status = 200
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["msg"] == "hello x" and line["request_id"] == "rid-1" and line["status"] == 200


def test_the_service_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "import service.app, service.gallery, service.__main__, service.build_gallery\n"
        "service.app.create_app()\n"
        "import service.runtime\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.split('.')[0] == 'model')\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_upload_names_never_touch_the_file_system(client: TestClient, tmp_path: Path) -> None:
    target = tmp_path / "pwned.off"
    name = "../" * 12 + str(target).lstrip("/")
    response = client.post("/classify", files=upload(name, mesh_bytes("off")))
    assert response.status_code == 200  # only the suffix is looked at
    assert not target.exists()
