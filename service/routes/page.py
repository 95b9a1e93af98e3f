"""The page people use: ``GET /`` and its static files, and ``POST /spherical-map`` (a PNG).

The page (``service/static/``) is plain HTML, CSS and its own small WebGL / canvas code: no
CDN, no third-party file, so it works offline. It calls ``/classify``, ``/retrieve`` and
``/spherical-map`` with the dropped file.

``/spherical-map`` draws the map the model sees (the model's bandwidth unless ``bandwidth`` is
given) through the pipeline: the same admission (503), cast pool, time limit (422
``mesh_timeout``) and errors as ``/classify``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form
from fastapi.responses import FileResponse, Response

from service.errors import NotFound, responses
from service.routes.deps import MeshUpload, ReadyPipeline
from service.routes.inference import MESH_ERRORS

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# The page's files and their media types: nothing else under static/ is served.
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
MIN_BANDWIDTH, MAX_BANDWIDTH = 4, 64
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
        raise NotFound(f"no static file {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=_NO_CACHE)


@router.post(
    "/spherical-map",
    response_class=Response,
    responses={
        200: {
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "the map, one panel per channel",
        },
        **responses(*MESH_ERRORS),
    },
)
async def spherical_map_png(
    pipeline: ReadyPipeline,
    upload: MeshUpload,
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
    image = await pipeline.map_image(upload, bandwidth or pipeline.info.bandwidth)
    return Response(image.png, media_type="image/png", headers=_NO_CACHE)
