"""The page at ``GET /``: its routes through TestClient, then the whole page in a real browser.

The browser tests drive Debian's Chromium (``/usr/bin/chromium``, apt package ``chromium``)
headless with Playwright for Python against a real uvicorn server in a subprocess, on
``models/model.onnx`` when it exists (else a small untrained network exported for the tests)
and a gallery of the mini ModelNet10 fixture built with thumbnails by ``service.build_gallery``.
They upload the chair in each of the six formats and check that the service's preview is drawn,
the label, the bars, the query's picture and every neighbour's thumbnail; upload several files
and check the table, its sorting and the CSV and JSON downloads; run axe-core (from the npm
registry: ``npm ci --prefix tests/browser``) on desktop and phone viewports and fail on any
serious or critical violation; and save screenshots of both layouts (``docs/screenshot.png``
and ``docs/screenshot-phone.png``, or ``$SHAPES_SCREENSHOT`` and ``$SHAPES_PHONE_SCREENSHOT``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
PHONE_SCREENSHOT = Path(
    os.environ.get("SHAPES_PHONE_SCREENSHOT", REPO / "docs" / "screenshot-phone.png")
)
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
FORMATS = ("obj", "off", "stl", "ply", "glb", "gltf")
AXE = REPO / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"width": 1180, "height": 900}
PHONE = {"width": 390, "height": 844}  # a phone in portrait, CSS pixels


def _model() -> Path:
    shipped = REPO / "models" / "model.onnx"
    if shipped.is_file():
        return shipped
    from tests.service_testing import small_model_path

    return small_model_path()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server on the shipped model (else the small test one) and a gallery of the mini
    ModelNet10 fixture built by ``service.build_gallery``, thumbnails included."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    from service.build_gallery import build_gallery
    from tests.service_testing import MINI, free_port

    model = _model()
    folder = tmp_path_factory.mktemp("page-server")
    gallery = folder / "gallery.npz"
    build_gallery(model, gallery, root=MINI, cache_dir=folder / "cache", workers=1, progress=False)
    port = free_port()
    env = {
        **os.environ,
        "SHAPES_HOST": "127.0.0.1",
        "SHAPES_PORT": str(port),
        "SHAPES_MODEL_PATH": str(model),
        "SHAPES_GALLERY_PATH": str(gallery),
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
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def tab(server: str, browser: Any) -> Iterator[Any]:
    """A fresh desktop-sized page on the service, failing the test on any script error."""
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page_ = context.new_page()
    errors: list[str] = []
    page_.on("pageerror", lambda exc: errors.append(str(exc)))
    # Console errors, less the browser's own line for each HTTP error the page shows.
    page_.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    page_.goto(server + "/")
    page_.wait_for_selector("#model.ready", timeout=30_000)
    yield page_
    context.close()
    assert not errors, errors


def _mesh(name: str, fmt: str) -> dict[str, Any]:
    from tests.service_testing import mesh_bytes

    return {"name": name, "mimeType": "application/octet-stream", "buffer": mesh_bytes(fmt)}


def _classify(server: str, name: str, data: bytes) -> dict[str, Any]:
    response = httpx.post(f"{server}/classify", files={"file": (name, data)}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


# Distinct colours in the turning view (WebGL or canvas 2D): a flat canvas has one.
_VIEW_COLOURS = """() => {
  const c = document.getElementById('view');
  const copy = document.createElement('canvas');
  copy.width = c.width; copy.height = c.height;
  copy.getContext('2d').drawImage(c, 0, 0);
  const d = copy.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const seen = new Set();
  for (let i = 0; i < d.length; i += 4 * 7) seen.add(d[i] << 16 | d[i + 1] << 8 | d[i + 2]);
  return seen.size;
}"""
_IMAGES_LOADED = """selector => [...document.querySelectorAll(selector)].map(
  img => img.complete && img.naturalWidth > 0)"""


def _wait_for_details(tab: Any, label: str) -> None:
    tab.wait_for_function(
        "label => document.getElementById('label').textContent === label",
        arg=label,
        timeout=60_000,
    )
    tab.wait_for_function(
        "() => document.getElementById('view-note').textContent.includes('triangles drawn')",
        timeout=60_000,
    )
    tab.wait_for_function(
        "() => { const m = document.getElementById('map');"
        " return !m.hidden && m.complete && m.naturalWidth > 0; }",
        timeout=60_000,
    )
    tab.wait_for_function(
        "() => document.querySelectorAll('#neighbors li img').length > 0"
        " && [...document.querySelectorAll('#neighbors li img')].every("
        "   i => i.complete && (i.naturalWidth > 0 || i.classList.contains('missing')))",
        timeout=60_000,
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_is_classified_and_its_preview_drawn(server: str, tab: Any, fmt: str) -> None:
    from tests.service_testing import mesh_bytes

    name = f"chair.{fmt}"
    expected = _classify(server, name, mesh_bytes(fmt))
    tab.set_input_files("#file", files=[_mesh(name, fmt)])
    _wait_for_details(tab, expected["label"])
    note = tab.locator("#view-note").inner_text()
    assert "triangles drawn" in note and "normalized" in note, note
    assert tab.get_attribute("#view", "data-mode") == "webgl"  # Chromium's software WebGL
    colours = tab.evaluate(_VIEW_COLOURS)
    assert colours > 10, f"the {fmt} preview looks empty ({colours} colours)"
    assert tab.locator("#error").is_hidden()
    assert tab.locator("#bars li").first.locator(".name").inner_text() == expected["label"]
    # The query's picture and every neighbour's thumbnail are real images.
    assert tab.evaluate(_IMAGES_LOADED, "#query-thumb") == [True]
    loaded = tab.evaluate(_IMAGES_LOADED, "#neighbors li img")
    assert len(loaded) == 5 and all(loaded), loaded
    if fmt == "off":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(SCREENSHOT), full_page=True)
        assert SCREENSHOT.stat().st_size > 10_000


@pytest.mark.timeout(300)
def test_without_webgl_the_canvas_2d_view_draws_the_preview(server: str, browser: Any) -> None:
    context = browser.new_context(viewport=DESKTOP)
    tab = context.new_page()
    # A browser without WebGL: getContext("webgl") answers null, as where it is disabled.
    tab.add_init_script(
        """(() => {
          const real = HTMLCanvasElement.prototype.getContext;
          HTMLCanvasElement.prototype.getContext = function (kind, ...rest) {
            return /webgl/.test(kind) ? null : real.call(this, kind, ...rest);
          };
        })()"""
    )
    tab.goto(server + "/")
    tab.wait_for_selector("#model.ready", timeout=30_000)
    assert tab.get_attribute("#view", "data-mode") == "2d"
    tab.set_input_files("#file", files=[_mesh("chair.ply", "ply")])
    tab.wait_for_function(
        "() => document.getElementById('view-note').textContent.includes('canvas preview')",
        timeout=60_000,
    )
    tab.wait_for_timeout(300)  # a few animation frames
    colours = tab.evaluate(_VIEW_COLOURS)
    assert colours > 10, f"the canvas-2D preview looks empty ({colours} colours)"
    context.close()


@pytest.mark.timeout(300)
def test_several_files_fill_a_sortable_table_and_download(server: str, tab: Any) -> None:
    from tests.service_testing import mini_meshes

    meshes = mini_meshes("test")[:4]
    files = [
        {"name": p.name, "mimeType": "application/octet-stream", "buffer": p.read_bytes()}
        for p in meshes
    ]
    files.append({"name": "broken.off", "mimeType": "text/plain", "buffer": b"OFF\n"})
    expected = {p.name: _classify(server, p.name, p.read_bytes()) for p in meshes}

    tab.set_input_files("#file", files=files)
    tab.wait_for_function(
        "() => document.getElementById('progress-text').textContent.startsWith('5 of 5 done')",
        timeout=120_000,
    )
    assert tab.locator("#progress").get_attribute("value") == "5"
    rows = tab.locator("#results tbody tr")
    assert rows.count() == 5
    for path in meshes:
        row = tab.locator(f'#results tbody tr[data-file="{path.name}"]')
        assert expected[path.name]["label"] in row.locator("td.label-cell").inner_text()
        assert row.locator(".neighbor-cell img").count() == 1
    # The error is in the broken file's own row, with the service's reason.
    broken = tab.locator('#results tbody tr[data-file="broken.off"]')
    assert "vertex and face counts" in broken.locator("td.row-error").inner_text()
    assert tab.locator("#error").is_hidden()

    # Sorting: by probability, descending on a second click.
    header = tab.locator('#results th[data-key="probability"] button')
    header.click()
    assert tab.locator('#results th[data-key="probability"]').get_attribute("aria-sort") == (
        "ascending"
    )
    header.click()
    assert tab.locator('#results th[data-key="probability"]').get_attribute("aria-sort") == (
        "descending"
    )
    order = tab.eval_on_selector_all("#results tbody tr", "rows => rows.map(r => r.dataset.file)")
    probability = {n: max(r["probabilities"].values()) for n, r in expected.items()}
    ranked = sorted(probability, key=lambda n: -probability[n])
    assert order == [*ranked, "broken.off"], (order, probability)  # no value: last
    header.click()
    order = tab.eval_on_selector_all("#results tbody tr", "rows => rows.map(r => r.dataset.file)")
    assert order == [*ranked[::-1], "broken.off"], order

    with tab.expect_download() as csv_download:
        tab.click("#download-csv")
    csv_rows = list(csv.DictReader(io.StringIO(Path(csv_download.value.path()).read_text())))
    with tab.expect_download() as json_download:
        tab.click("#download-json")
    json_rows = json.loads(Path(json_download.value.path()).read_text())
    assert csv_download.value.suggested_filename.endswith(".csv")
    assert json_download.value.suggested_filename.endswith(".json")
    assert [r["file"] for r in csv_rows] == [r["file"] for r in json_rows]
    assert len(json_rows) == 5
    by_file = {r["file"]: r for r in json_rows}
    for name, result in expected.items():
        assert by_file[name]["label"] == result["label"]
        assert abs(by_file[name]["probability"] - result["probabilities"][result["label"]]) < 1e-6
        assert by_file[name]["neighbor_id"]
        assert {r["file"]: r for r in csv_rows}[name]["label"] == result["label"]
    assert "vertex and face counts" in by_file["broken.off"]["error"]
    assert by_file["broken.off"]["label"] is None

    # Details of one row: the single-file view of that file.
    tab.locator('#results tbody tr[data-file="' + meshes[0].name + '"] button').click()
    _wait_for_details(tab, expected[meshes[0].name]["label"])


@pytest.mark.timeout(300)
def test_a_folder_classifies_its_meshes_and_skips_other_files(tab: Any, tmp_path: Path) -> None:
    from tests.service_testing import mini_meshes

    folder = tmp_path / "my meshes"
    (folder / "inner").mkdir(parents=True)
    first, second = mini_meshes("train")[:2]
    (folder / first.name).write_bytes(first.read_bytes())
    (folder / "inner" / second.name).write_bytes(second.read_bytes())
    (folder / "notes.txt").write_text("not a mesh")
    tab.set_input_files("#folder", str(folder))
    tab.wait_for_function(
        "() => document.getElementById('progress-text').textContent.startsWith('2 of 2 done')",
        timeout=120_000,
    )
    files = tab.eval_on_selector_all("#results tbody tr", "rows => rows.map(r => r.dataset.file)")
    assert sorted(files) == sorted([f"my meshes/{first.name}", f"my meshes/inner/{second.name}"]), (
        files
    )
    assert "1 of other types skipped" in tab.locator("#filename").inner_text()
    assert tab.locator("#results td.row-error").count() == 0


@pytest.mark.timeout(120)
def test_an_unknown_shape_is_said_plainly(server: str, tab: Any) -> None:
    """When /classify says ``known: false`` (issue 11's novelty check), no big label."""

    # The real answer with ``known`` set to false, in the page itself (Playwright's request
    # interception drops multipart file bodies).
    tab.evaluate(
        """() => {
          const real = window.fetch;
          window.fetch = async (url, options) => {
            const response = await real(url, options);
            if (!String(url).endsWith('/classify') || !response.ok) return response;
            const body = await response.json();
            body.known = false;
            return new Response(JSON.stringify(body), {status: 200,
              headers: {'content-type': 'application/json'}});
          };
        }"""
    )
    expected = _classify(server, CHAIR.name, CHAIR.read_bytes())
    tab.set_input_files("#file", str(CHAIR))
    n_classes = len(expected["probabilities"])
    text = f"not one of the {n_classes} classes; closest: {expected['label']}"
    tab.wait_for_function(
        "text => document.getElementById('label').textContent === text",
        arg=text,
        timeout=60_000,
    )
    assert "unknown" in (tab.locator("#label").get_attribute("class") or "")


@pytest.mark.timeout(120)
def test_a_broken_mesh_shows_the_reason(tab: Any) -> None:
    tab.set_input_files(
        "#file", files=[{"name": "broken.off", "mimeType": "text/plain", "buffer": b"OFF\n"}]
    )
    error = tab.locator("#error")
    error.wait_for(state="visible", timeout=30_000)
    assert "broken.off" in error.inner_text() and "422" in error.inner_text()
    assert "vertex and face counts" in error.inner_text()
    assert "no preview" in tab.locator("#view-note").inner_text()


@pytest.mark.timeout(120)
def test_the_controls_are_reachable_by_keyboard(tab: Any) -> None:
    focused = []
    for _ in range(6):
        tab.keyboard.press("Tab")
        focused.append(tab.evaluate("() => document.activeElement.id"))
    assert "pick-files" in focused and "pick-folder" in focused, focused
    with tab.expect_file_chooser() as chooser:
        tab.locator("#pick-files").press("Enter")
    assert chooser.value.is_multiple()
    chooser.value.set_files(str(CHAIR))
    tab.wait_for_function(
        "() => document.getElementById('view-note').textContent.includes('triangles drawn')",
        timeout=60_000,
    )


def _axe(tab: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    tab.add_script_tag(path=str(AXE))
    result = tab.evaluate("async () => await axe.run(document)")
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.timeout(300)
def test_accessibility_and_the_phone_layout(server: str, browser: Any) -> None:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: npm ci --prefix tests/browser")
    from tests.service_testing import mini_meshes

    for viewport, shot in ((DESKTOP, None), (PHONE, PHONE_SCREENSHOT)):
        context = browser.new_context(viewport=viewport, is_mobile=viewport is PHONE)
        tab = context.new_page()
        tab.goto(server + "/")
        tab.wait_for_selector("#model.ready", timeout=30_000)
        assert not _axe(tab), "empty page"
        # Several files, then one file's details: the page with everything on it.
        files = [
            {"name": p.name, "mimeType": "application/octet-stream", "buffer": p.read_bytes()}
            for p in mini_meshes("test")[:3]
        ]
        tab.set_input_files("#file", files=files)
        tab.wait_for_function(
            "() => document.getElementById('progress-text').textContent.startsWith('3 of 3')",
            timeout=120_000,
        )
        tab.locator("#results tbody tr button").first.click()
        tab.wait_for_function(
            "() => document.getElementById('view-note').textContent.includes('triangles drawn')"
            " && !document.getElementById('map').hidden",
            timeout=60_000,
        )
        violations = _axe(tab)
        assert not violations, [
            (v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"][:3]])
            for v in violations
        ]
        # Readable without sideways scrolling (the table scrolls in its own focusable box).
        overflow = tab.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow} px wider than the {viewport} viewport"
        if shot is not None:
            shot.parent.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        context.close()
