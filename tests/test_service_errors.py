"""Errors leave the service one way: the same bad input gets the same status and kind from
every mesh route; a 500 carries the request id in body, header and log line and leaves the
connection usable; the schema documents the 4xx/5xx the service gives; a 405 lists every
method of the path. On the real runtime and the small exported test model."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from service.app import create_app
from service.errors import ERRORS
from service.logs import RequestIdFilter
from service.runtime import Runtime
from service.settings import Settings
from tests.service_testing import (
    CHAIR,
    InstrumentedRuntime,
    free_port,
    make_client,
    malformed_files,
    mesh_bytes,
    wait_ready,
)

MAX_UPLOAD = 256 * 1024  # the deep JSON (200 kB) fits; 300 kB does not
GLTF = b'{"asset":{"version":"2.0"},"buffers":%s}'
TETRA_OFF = "OFF\n4 4 0\n0 0 0\n{x} 0 0\n0 {x} 0\n0 0 {x}\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n"
TRIANGLE_OBJ = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"


def bad_inputs() -> dict[str, tuple[str, bytes, int, str]]:
    """case -> (file name, bytes, the status and kind every mesh route must answer)."""
    cases = {f"malformed-{n}": (n, data, 422, "mesh") for n, data in malformed_files().items()}
    cases.update(
        {
            # issue 10's loader defects 1, 2, 6, 7: each was a 500 or a wrong reason on main.
            "2d-vertices.obj": ("v.obj", b"v 0 0\nv 1 0\nv 0 1\nf 1 2 3\n", 422, "mesh"),
            "buffers-number.gltf": (
                "b.gltf",
                b'{"asset":{"version":"2.0"},"buffers":3}',
                422,
                "mesh",
            ),
            "buffers-null.gltf": (
                "b.gltf",
                b'{"asset":{"version":"2.0"},"buffers":null}',
                422,
                "mesh",
            ),
            "deep-json.gltf": ("d.gltf", b"[" * 100_000 + b"]" * 100_000, 422, "mesh"),
            "underscore-counts.off": (
                "u.off",
                b"OFF\n4_0 1 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n",
                422,
                "mesh",
            ),
            "beyond-float64.off": ("f.off", TETRA_OFF.format(x="1e400").encode(), 422, "mesh"),
            "file-uri.gltf": ("u.gltf", _gltf_with_buffer_uri("file:///etc/passwd"), 422, "mesh"),
            # the file name gives the format
            "unknown-suffix": ("chair.abc", CHAIR.read_bytes(), 415, "unsupported_format"),
            "double-suffix": ("chair.off.exe", CHAIR.read_bytes(), 415, "unsupported_format"),
            "no-suffix": ("chair", CHAIR.read_bytes(), 415, "unsupported_format"),
            # over the upload limit: caught by the route (within the body slack) ...
            "upload-over-limit": ("big.off", b"x" * 300_000, 413, "too_large"),
            # ... and by the middleware (the whole body over the cap)
            "body-over-limit": ("huge.off", b"x" * 1_000_000, 413, "too_large"),
        }
    )
    return cases


def _gltf_with_buffer_uri(uri: str) -> bytes:
    document = {
        "asset": {"version": "2.0"},
        "buffers": [{"uri": uri, "byteLength": 36}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"},
        ],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
    }
    return json.dumps(document).encode()


BAD_INPUTS = bad_inputs()
# Every route that takes a mesh, with the form fields it needs besides the file.
MESH_ROUTES = {
    "/classify": {},
    "/retrieve": {"k": "3"},
    "/gallery": {"id": "new_item"},
    "/spherical-map": {},
}


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, small_runtime: Runtime
) -> Iterator[TestClient]:
    settings = Settings(
        gallery_path=None,
        gallery_dir=tmp_path_factory.mktemp("errors") / "gallery",
        max_upload_bytes=MAX_UPLOAD,
    )
    app = create_app(settings, runtime_factory=lambda _: small_runtime)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        yield test_client


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_every_mesh_route_answers_a_bad_input_alike(client: TestClient, case: str) -> None:
    name, data, status, kind = BAD_INPUTS[case]
    for path, fields in MESH_ROUTES.items():
        files = {"file": (name, io.BytesIO(data), "application/octet-stream")}
        response = client.post(path, files=files, data=fields)
        assert (response.status_code, response.json()["kind"]) == (status, kind), (
            path,
            response.text[:300],
        )
        body = response.json()
        assert body["detail"] and body["request_id"] == response.headers["x-request-id"]


def test_the_error_table_gives_each_kind_one_status() -> None:
    statuses: dict[str, int] = {}
    for spec in ERRORS.values():
        assert statuses.setdefault(spec.kind, spec.status) == spec.status, spec
        assert 400 <= spec.status < 600


# ----------------------------------------------------------------------------- defect 3


def test_a_500_carries_the_request_id_in_body_header_and_log(
    tmp_path: Path, small_runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = InstrumentedRuntime(small_runtime)
    caplog.handler.addFilter(RequestIdFilter())  # what configure_logging puts on the handler
    with make_client(tmp_path, runtime) as client:
        wait_ready(client)
        runtime.fail_with = RuntimeError("secret internals")  # a fault from here on
        with caplog.at_level("ERROR"):
            files = {"file": ("c.off", io.BytesIO(CHAIR.read_bytes()))}
            response = client.post("/classify", files=files, headers={"X-Request-ID": "rid-500"})
    assert response.status_code == 500
    assert response.json() == {
        "detail": "internal server error",
        "kind": "internal",
        "request_id": "rid-500",
    }
    assert response.headers["x-request-id"] == "rid-500"
    logged = [r for r in caplog.records if r.exc_info and "secret internals" in str(r.exc_info)]
    assert logged, caplog.records
    assert all(getattr(r, "request_id", None) == "rid-500" for r in logged)


# ----------------------------------------------------------------------------- defect 4


class ThreadedServer:
    """The app in a real uvicorn server in this process (so a test can inject a fault)."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, access_log=False
        )  # type: ignore[arg-type]
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside a body")
        body += chunk
    return status, headers, body


def multipart_request(path: str, name: str, data: bytes) -> bytes:
    boundary = "b0undary"
    body = (
        (
            f"--{boundary}\r\nContent-Disposition: form-data; name=file; filename={name}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    )
    return head.encode() + body


def test_a_500_leaves_the_keep_alive_connection_usable(
    tmp_path: Path, small_runtime: Runtime
) -> None:
    """After a 500 the next two requests on the same connection are answered (or the 500
    said ``Connection: close``)."""
    runtime = InstrumentedRuntime(small_runtime)
    settings = Settings(gallery_path=None, gallery_dir=tmp_path / "g", log_json=True)
    app = create_app(settings, runtime_factory=lambda _: runtime)
    with (
        ThreadedServer(app) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock,
    ):
        deadline = time.monotonic() + 30
        while True:
            sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: test\r\n\r\n")
            if read_response(sock)[0] == 200:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        runtime.fail_with = RuntimeError("a fault")
        sock.sendall(multipart_request("/classify", "c.off", mesh_bytes("off")))
        status, headers, _ = read_response(sock)
        assert status == 500
        if headers.get("connection", "").lower() == "close":
            return  # said so: the client knows to reconnect
        runtime.fail_with = None
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: test\r\n\r\n")
        assert read_response(sock)[0] == 200
        sock.sendall(multipart_request("/classify", "c.off", mesh_bytes("off")))
        assert read_response(sock)[0] == 200


# ----------------------------------------------------------------------------- defect 5


def test_a_405_allows_every_method_of_the_path(client: TestClient) -> None:
    for method, path, allowed in (
        ("OPTIONS", "/gallery/items/x", {"GET", "HEAD", "DELETE"}),
        ("PUT", "/gallery", {"GET", "HEAD", "POST"}),
        ("GET", "/classify", {"POST"}),
        ("HEAD", "/classify", {"POST"}),
    ):
        response = client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert set(response.headers["allow"].replace(" ", "").split(",")) == allowed
        if method != "HEAD":
            assert response.json()["kind"] == "method_not_allowed"


def test_head_is_served_wherever_get_is(client: TestClient) -> None:
    """``curl -I`` and load balancers' checks: HEAD answers GET's status and headers, no body
    (a 405 before)."""
    for path in ("/livez", "/model", "/gallery/count", "/", "/gallery/items/nope"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers["content-length"] == str(len(got.content)), path


def test_the_schema_documents_the_errors_the_service_gives(
    client: TestClient, tmp_path: Path, small_runtime: Runtime
) -> None:
    """Each (request -> status) the service really gives is in that operation's responses."""
    paths = client.get("/openapi.json").json()["paths"]

    def documented(method: str, path: str, status: int) -> None:
        assert str(status) in paths[path][method.lower()]["responses"], (method, path, status)

    broken = client.post(
        "/classify",
        content=b"--b\r\nnot a header\r\n\r\nOFF\r\n--b--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )  # a part header without a colon
    assert broken.status_code == 400 and broken.json()["kind"] == "bad_request"
    documented("POST", "/classify", 400)
    for status, method, path in ((413, "POST", p) for p in MESH_ROUTES):
        documented(method, path, status)
    too_large = client.post("/gallery/descriptors", content=b"[" + b"0," * 300_000 + b"0]")
    assert too_large.status_code == 413
    documented("POST", "/gallery/descriptors", 413)

    with make_client(tmp_path, small_runtime, api_key="k") as keyed:
        wait_ready(keyed)
        for method, path in (
            ("POST", "/gallery"),
            ("POST", "/gallery/descriptors"),
            ("DELETE", "/gallery/items/{item_id}"),
        ):
            response = keyed.request(method, path.replace("{item_id}", "x"))
            assert response.status_code == 401, (method, path, response.text)
            documented(method, path, 401)

    gate = threading.Event()

    def slow_factory(_: Settings) -> Runtime:
        gate.wait(30)
        return small_runtime

    settings = Settings(gallery_path=None, gallery_dir=tmp_path / "slow")
    with TestClient(create_app(settings, runtime_factory=slow_factory)) as loading:
        for path, methods in paths.items():
            for method in methods:
                if path in ("/livez", "/metrics"):
                    continue
                url = path.replace("{item_id}", "x")
                response = loading.request(method.upper(), url)
                if response.status_code == 503:
                    documented(method, path, 503)
                else:  # the body is checked before readiness: a 422 for the missing fields
                    assert response.status_code == 422, (method, path, response.status_code)
                    documented(method, path, 422)
        gate.set()


def test_the_json_log_of_a_500_has_the_request_id(tmp_path: Path, small_runtime: Runtime) -> None:
    """The log line of the traceback, formatted as the server writes it, carries the id."""
    from service.logs import JsonFormatter

    runtime = InstrumentedRuntime(small_runtime)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("service")
    logger.addHandler(handler)
    try:
        with make_client(tmp_path, runtime) as client:
            wait_ready(client)
            runtime.fail_with = RuntimeError("boom")
            files = {"file": ("c.off", io.BytesIO(CHAIR.read_bytes()))}
            client.post("/classify", files=files, headers={"X-Request-ID": "rid-log"})
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    errors = [line for line in lines if line["level"] == "error" and "exc" in line]
    assert errors and all(line.get("request_id") == "rid-log" for line in errors), lines
