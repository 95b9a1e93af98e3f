"""Fuzzing through HTTP against a real server on the small model.

schemathesis runs over the whole OpenAPI schema with **all** its checks and every phase
(coverage, fuzzing, stateful: valid and invalid requests, undeclared methods, missing
headers, auth, created items fetched and deleted through the schema's links) and must find
nothing: no 5xx, and every status, header, content type and body as the schema documents it.
``tests/schemathesis.toml`` holds the two facts the schema cannot express. Mutated meshes of
every format go to /classify; nothing may answer 5xx.

Seeded and bounded: ``SHAPES_SCHEMA_EXAMPLES`` sets schemathesis' examples per operation
(default 10), ``SHAPES_FUZZ_EXAMPLES`` the mutated meshes (default 40); CI can raise both.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.settings import Settings
from tests.service_testing import (
    ServerProcess,
    mesh_bytes,
    small_gallery_path,
    small_model_path,
    upload,
)

schemathesis = pytest.importorskip("schemathesis")  # brings hypothesis
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("SHAPES_FUZZ_EXAMPLES", "40"))
SCHEMA_EXAMPLES = int(os.environ.get("SHAPES_SCHEMA_EXAMPLES", "10"))
SCHEMA_CONFIG = Path(__file__).with_name("schemathesis.toml")
API_KEY = "fuzz-key"  # writes need it, so ignored_auth checks that they refuse without
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("fuzz")
    process = ServerProcess(
        {
            "SHAPES_MODEL_PATH": str(small_model_path()),
            "SHAPES_GALLERY_PATH": str(small_gallery_path()),
            "SHAPES_GALLERY_DIR": str(folder / "gallery"),
            "SHAPES_MAX_UPLOAD_BYTES": str(1024 * 1024),
            "SHAPES_MESH_TIMEOUT_S": "10",
            "SHAPES_INTRA_OP_THREADS": "1",
            "SHAPES_LOG_LEVEL": "warning",
            "SHAPES_API_KEY": API_KEY,
        },
        folder / "server.log",
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def test_schemathesis_all_checks_find_nothing(server: ServerProcess, tmp_path: Path) -> None:
    """``st run`` over the whole schema, all checks, all phases, seeded: zero failures."""
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--no-color"),
        *("--config-file", str(SCHEMA_CONFIG)),
        *("run", f"{server.url}/openapi.json"),
        *("--checks", "all", "--max-examples", str(SCHEMA_EXAMPLES), "--seed", "1"),
        *("--header", f"X-API-Key: {API_KEY}", "--workers", "1"),
        *("--report", "ndjson", "--report-dir", str(tmp_path)),
    ]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=os.environ
    )
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{server.log()[-2000:]}"
    paths = create_app(Settings(gallery_path=None)).openapi()["paths"]
    operations = sum(len(methods) for methods in paths.values())
    assert f"Tested: {operations}" in result.stdout, result.stdout[-2000:]  # every operation


FORMATS = ("off", "obj", "stl", "ply", "glb")


@st.composite
def mutated_mesh(draw: st.DrawFn) -> tuple[str, bytes]:
    """A real mesh file of some format, then truncated, bit-flipped, spliced or padded."""
    fmt = draw(st.sampled_from(FORMATS))
    data = bytearray(_VALID[fmt])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "splice", "insert", "digits"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "splice":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        else:  # huge or negative counts and indices in text formats
            data[at:at] = draw(st.sampled_from([b"99999999", b"-1", b"1e308", b"nan", b" "]))
    return fmt, bytes(data)


_VALID = {fmt: mesh_bytes(fmt) for fmt in FORMATS}


def test_mutated_meshes_of_every_format_find_no_5xx(server: ServerProcess) -> None:
    statuses: dict[int, int] = {}

    @FUZZ_SETTINGS
    @given(mesh=mutated_mesh())
    def check(mesh: tuple[str, bytes]) -> None:
        fmt, data = mesh
        response = httpx.post(f"{server.url}/classify", files=upload(f"m.{fmt}", data), timeout=30)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code in (200, 413, 422), (fmt, response.status_code, response.text)
        if response.status_code == 422:
            assert response.json()["detail"]

    check()
    assert statuses.get(422, 0) > 0, statuses
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_fuzz_log_has_no_tracebacks(server: ServerProcess) -> None:
    """Runs last in this module: nothing above reached the generic 500 handler."""
    log = Path(server.log_path).read_text(errors="replace")
    assert "unhandled error" not in log
