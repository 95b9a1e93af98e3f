"""The page people use: ``GET /`` and its static files, and ``POST /spherical-map`` (a PNG).

The page (``service/static/``) is plain HTML, CSS and its own small WebGL / canvas code: no
CDN, no third-party file, so it works offline. It calls ``/classify``, ``/retrieve`` and
``/spherical-map`` with the dropped file. Include it with ``app.include_router(page.router)``.

``/spherical-map`` draws the map the model sees (the model's bandwidth unless ``bandwidth`` is
given) with :func:`raymap.render.render_map`: a bad mesh is 422 with the reason, an unknown
format 415, an upload over the service's limit 413.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from raymap.errors import MeshError
from raymap.mesh import DEFAULT_MAX_FACES, SUPPORTED_FORMATS, file_type_of, load_mesh
from raymap.project import spherical_map
from raymap.render import render_map

STATIC_DIR = Path(__file__).resolve().parent / "static"
# The page's files and their media types: nothing else under static/ is served.
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
DEFAULT_BANDWIDTH = 32  # when the app has no model loaded
MIN_BANDWIDTH, MAX_BANDWIDTH = 4, 64
DEFAULT_MAX_UPLOAD_BYTES = 32 * 1024 * 1024
PANEL_PIXELS = 128  # each channel's panel is about this wide
_NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(tags=["page"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The page: drop a mesh, see it turn, its class probabilities, neighbours and map."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_NO_CACHE)


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str) -> FileResponse:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise HTTPException(404, f"no static file {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=_NO_CACHE)


@router.post(
    "/spherical-map",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "the map, one panel per channel"},
        415: {"description": "unknown mesh format"},
        422: {"description": "unreadable mesh or bad bandwidth"},
    },
)
async def spherical_map_png(
    request: Request,
    file: Annotated[UploadFile, File(description="a mesh")],
    bandwidth: Annotated[
        int | None,
        Form(
            ge=MIN_BANDWIDTH,
            le=MAX_BANDWIDTH,
            description="grid bandwidth b (2b x 2b points); default: the model's",
        ),
    ] = None,
) -> Response:
    """The mesh's spherical map as a PNG: rows mesh / convex hull, columns distance, cos, sin."""
    settings = _settings(request)
    name = file.filename or ""
    fmt = file_type_of(name) if "." in name else ""
    if fmt not in SUPPORTED_FORMATS:
        raise HTTPException(
            415,
            f"unknown mesh format of file {name[:80]!r}: the name must end in one of "
            + ", ".join(f".{f}" for f in SUPPORTED_FORMATS),
        )
    limit = int(getattr(settings, "max_upload_bytes", DEFAULT_MAX_UPLOAD_BYTES))
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"the upload is larger than {limit} bytes")
    b = bandwidth or _model_bandwidth(request)
    max_faces = int(getattr(settings, "max_faces", DEFAULT_MAX_FACES))
    try:
        png = await run_in_threadpool(_render_png, data, fmt, b, max_faces)
    except MeshError as exc:
        raise HTTPException(422, exc.reason) from exc
    return Response(png, media_type="image/png", headers=_NO_CACHE)


def _render_png(data: bytes, fmt: str, bandwidth: int, max_faces: int) -> bytes:
    spherical = spherical_map(load_mesh(data, fmt, max_faces=max_faces), bandwidth)  # (C, 2b, 2b)
    scale = max(1, PANEL_PIXELS // (2 * bandwidth))
    out = io.BytesIO()
    render_map(spherical, scale=scale).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _services(request: Request) -> Any:
    return getattr(request.app.state, "services", None)


def _settings(request: Request) -> Any:
    services = _services(request)
    return getattr(services, "settings", None)


def _model_bandwidth(request: Request) -> int:
    """The loaded model's bandwidth (so the picture is the map the model sees), else 32."""
    runtime = getattr(_services(request), "runtime", None)
    bandwidth = getattr(getattr(runtime, "info", None), "bandwidth", None)
    if isinstance(bandwidth, int) and MIN_BANDWIDTH <= bandwidth <= MAX_BANDWIDTH:
        return bandwidth
    return DEFAULT_BANDWIDTH
