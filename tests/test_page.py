"""The page at ``GET /``: its routes through TestClient, then the whole page in a real browser.

The browser test drives Debian's Chromium (``/usr/bin/chromium``, apt package ``chromium``)
headless with Playwright for Python against a real uvicorn server in a subprocess: it uploads
a real ModelNet10 mesh through the file input and waits for the label, the probability bars,
the neighbours and the spherical-map image; it saves a screenshot (``docs/screenshot.png``,
or ``$SHAPES_SCREENSHOT``). The model is ``models/model.onnx`` when it exists, else a small
untrained network exported for the tests (its labels are arbitrary but deterministic).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.runtime import Runtime
from service.settings import Settings

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
CHAIR = FIXTURES / "meshes" / "chair_0890.off"  # a ModelNet10 test chair
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(os.environ.get("SHAPES_SCREENSHOT", REPO / "docs" / "screenshot.png"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# ----------------------------------------------------------------------------- routes alone


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, small_runtime: Runtime
) -> Iterator[TestClient]:
    """The app on the small test model (/spherical-map goes through its pipeline)."""
    settings = Settings(gallery_path=None, gallery_dir=tmp_path_factory.mktemp("page") / "g")
    with TestClient(create_app(settings, runtime_factory=lambda _: small_runtime)) as test_client:
        deadline = time.monotonic() + 60
        while test_client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, test_client.get("/readyz").json()
            time.sleep(0.02)
        yield test_client


def test_index_and_static_files_are_served(client: TestClient) -> None:
    index = client.get("/")
    assert index.status_code == 200, index.text
    assert index.headers["content-type"].startswith("text/html")
    assert 'id="drop"' in index.text and "/static/app.js" in index.text
    # Offline: nothing is loaded from another host.
    assert "http://" not in index.text and "https://" not in index.text
    for name, media_type in (("app.js", "text/javascript"), ("style.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith(media_type)
        assert "https://" not in response.text
    assert client.get("/static/page.py").status_code == 404
    assert client.get("/static/..%2Fpage.py").status_code == 404


def test_spherical_map_is_a_png_of_six_panels(client: TestClient) -> None:
    response = client.post(
        "/spherical-map",
        files={"file": ("chair.off", CHAIR.read_bytes())},
        data={"bandwidth": "16"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    # 3 panels of 2b * scale pixels across (scale 128 // 32 = 4), with 4-pixel gaps.
    assert image.size[0] == 3 * (32 * 4 + 4) + 4, image.size
    assert image.size[1] == 2 * (32 * 4 + 14 + 4) + 4, image.size
    # Not blank: the panels hold many colours.
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 50


@pytest.mark.parametrize(
    ("name", "data", "status", "needle"),
    [
        ("chair.xyz", b"whatever", 415, "unknown mesh format"),
        ("chair", b"OFF\n", 415, "unknown mesh format"),
        ("points.off", b"OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n", 422, "no faces"),
        ("broken.off", b"OFF\n", 422, "vertex and face counts"),
    ],
)
def test_spherical_map_errors_carry_the_reason(
    client: TestClient, name: str, data: bytes, status: int, needle: str
) -> None:
    response = client.post("/spherical-map", files={"file": (name, data)})
    assert response.status_code == status, response.text
    assert needle in response.json()["detail"]


def test_spherical_map_rejects_a_bandwidth_out_of_range(client: TestClient) -> None:
    response = client.post(
        "/spherical-map", files={"file": ("chair.off", CHAIR.read_bytes())}, data={"bandwidth": "1"}
    )
    assert response.status_code == 422


# ----------------------------------------------------------------------------- in a browser

# The service with the page's router included (a no-op once service/app.py includes it).
_SERVER = textwrap.dedent(
    """
    import uvicorn

    from service.app import create_app
    from service.routes import page
    from service.settings import Settings

    settings = Settings()
    app = create_app(settings)
    if not any(getattr(route, "path", None) == "/" for route in app.routes):
        app.include_router(page.router)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    """
)


def _model_and_gallery() -> tuple[Path, Path | None]:
    shipped = REPO / "models" / "model.onnx"
    if shipped.is_file():
        gallery = REPO / "models" / "gallery.npz"
        return shipped, gallery if gallery.is_file() else None
    from tests.service_testing import small_gallery_path, small_model_path

    return small_model_path(), small_gallery_path()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    from tests.service_testing import free_port

    model, gallery = _model_and_gallery()
    folder = tmp_path_factory.mktemp("page-server")
    port = free_port()
    env = {
        **os.environ,
        "SHAPES_HOST": "127.0.0.1",
        "SHAPES_PORT": str(port),
        "SHAPES_MODEL_PATH": str(model),
        "SHAPES_GALLERY_PATH": str(gallery) if gallery else "none",
        "SHAPES_GALLERY_DIR": str(folder / "gallery"),
        "SHAPES_LOG_JSON": "false",
        "OMP_NUM_THREADS": "1",
    }
    log_path = folder / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVER], cwd=REPO, env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited: {log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server was not ready in 120 s: {log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.mark.timeout(300)
def test_upload_shows_label_bars_neighbors_and_map(server: str, browser: object) -> None:
    expected = httpx.post(
        f"{server}/classify", files={"file": (CHAIR.name, CHAIR.read_bytes())}, timeout=60
    ).json()
    n_neighbors = len(
        httpx.post(
            f"{server}/retrieve",
            files={"file": (CHAIR.name, CHAIR.read_bytes())},
            data={"k": "5"},
            timeout=60,
        ).json()["neighbors"]
    )

    context = browser.new_context(viewport={"width": 1180, "height": 900})  # type: ignore[attr-defined]
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    tab.goto(server + "/")
    tab.wait_for_selector("#model.ready", timeout=30_000)
    tab.set_input_files("#file", str(CHAIR))

    tab.wait_for_function(
        "label => document.getElementById('label').textContent === label",
        arg=expected["label"],
        timeout=60_000,
    )
    tab.wait_for_function(
        "() => { const m = document.getElementById('map');"
        " return !m.hidden && m.complete && m.naturalWidth > 0; }",
        timeout=60_000,
    )
    tab.wait_for_function(
        "n => document.querySelectorAll('#neighbors li').length >= Math.max(n, 1)",
        arg=n_neighbors,
        timeout=60_000,
    )
    bars = tab.locator("#bars li")
    assert bars.count() == min(len(expected["probabilities"]), 9)
    assert bars.first.locator(".name").inner_text() == expected["label"]
    assert tab.locator("#error").is_hidden()
    assert "triangles" in tab.locator("#view-note").inner_text()
    map_size = tab.evaluate(
        "() => [document.getElementById('map').naturalWidth,"
        " document.getElementById('map').naturalHeight]"
    )
    assert map_size[0] > 100 and map_size[1] > 100, map_size
    # The view draws the mesh: the canvas is not one flat colour.
    colours = tab.evaluate(
        """() => {
          const c = document.getElementById('view');
          const copy = document.createElement('canvas');
          copy.width = c.width; copy.height = c.height;
          copy.getContext('2d').drawImage(c, 0, 0);
          const d = copy.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          const seen = new Set();
          for (let i = 0; i < d.length; i += 4 * 7) seen.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]);
          return seen.size;
        }"""
    )
    assert colours > 10, f"the 3D view looks empty ({colours} colours)"
    assert not errors, errors

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000
    context.close()


@pytest.mark.timeout(120)
def test_a_broken_mesh_shows_the_reason(server: str, browser: object) -> None:
    tab = browser.new_page()  # type: ignore[attr-defined]
    tab.goto(server + "/")
    tab.set_input_files(
        "#file", files=[{"name": "broken.off", "mimeType": "text/plain", "buffer": b"OFF\n"}]
    )
    error = tab.locator("#error")
    error.wait_for(state="visible", timeout=30_000)
    assert "422" in error.inner_text()
    assert "vertex and face counts" in error.inner_text()
    assert "no preview" in tab.locator("#view-note").inner_text()
    tab.close()


def _chair_as(file_type: str) -> bytes:
    from raymap.mesh import load_mesh

    exported = load_mesh(CHAIR.read_bytes(), "off").export(file_type=file_type)
    return exported.encode() if isinstance(exported, str) else bytes(exported)


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("name", "file_type", "preview"),
    [
        ("chair.stl", "stl", "2,996 triangles"),  # binary
        ("chair_ascii.stl", "stl_ascii", "2,996 triangles"),
        ("chair.obj", "obj", "2,996 triangles"),
        ("chair.ply", "ply", "no preview"),  # classified, not drawn
    ],
)
def test_every_format_is_classified_and_drawn_when_it_can_be(
    server: str, browser: object, name: str, file_type: str, preview: str
) -> None:
    tab = browser.new_page()  # type: ignore[attr-defined]
    tab.goto(server + "/")
    data = _chair_as(file_type)
    tab.set_input_files(
        "#file", files=[{"name": name, "mimeType": "application/octet-stream", "buffer": data}]
    )
    tab.wait_for_function(
        "() => document.querySelectorAll('#bars li').length > 0"
        " && !document.getElementById('map').hidden",
        timeout=60_000,
    )
    assert preview in tab.locator("#view-note").inner_text()
    assert tab.locator("#error").is_hidden()
    tab.close()
