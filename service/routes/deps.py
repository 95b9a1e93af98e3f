"""What routes receive through ``Depends``: the state, the ready pipeline (typed, never None),
the write guard and the uploaded mesh.

Every dependency is ``async def``, though none awaits: FastAPI runs a plain ``def``
dependency in its thread pool, a thread hand-off per dependency per request.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated

from fastapi import Depends, File, Request, UploadFile
from fastapi.security import APIKeyHeader
from starlette.formparsers import MultiPartParser

from raymap.mesh import SUPPORTED_FORMATS, file_type_of
from service.errors import (
    InvalidRequest,
    NotReady,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedFormat,
)
from service.pipeline import Pipeline, Upload
from service.state import ServiceState


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(get_state)]


async def ready_pipeline(state: State) -> Pipeline:
    """The loaded pipeline, or :class:`NotReady` (503) while loading or after a failed load."""
    if state.pipeline is None:
        raise NotReady(state.load_error or "the model is still loading")
    return state.pipeline


ReadyPipeline = Annotated[Pipeline, Depends(ready_pipeline)]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def require_api_key(
    state: State, api_key: Annotated[str | None, Depends(api_key_header)]
) -> None:
    """Writes need ``X-API-Key`` when ``SHAPES_API_KEY`` is set; reads stay open."""
    expected = state.settings.api_key
    if expected is None:
        return
    if api_key is None or not secrets.compare_digest(
        api_key.encode(), expected.get_secret_value().encode()
    ):
        raise Unauthorized("this endpoint needs a valid X-API-Key header")


FORMATS_TEXT = ", ".join(f".{f}" for f in SUPPORTED_FORMATS)


async def read_upload(
    state: State,
    request: Request,
    file: Annotated[UploadFile, File(description=f"a mesh: {FORMATS_TEXT}")],
) -> Upload:
    """The upload's bytes and format; the file name is only looked at for its suffix. One
    file a request: of two, the framework would keep the last without a word."""
    start = time.perf_counter()
    files = (await request.form()).getlist("file")  # the form FastAPI has parsed already
    if len(files) > 1:
        raise InvalidRequest(f"one mesh per request: the form has {len(files)} 'file' parts")
    name = file.filename or ""
    fmt = file_type_of(name) if "." in name else ""
    if fmt not in SUPPORTED_FORMATS:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise UnsupportedFormat(
            f"unknown mesh format of file {shown!r}: the name must end in one of {FORMATS_TEXT}"
        )
    limit = state.settings.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"the upload is larger than {limit} bytes")
    return Upload(data, fmt, 1e3 * (time.perf_counter() - start))


MeshUpload = Annotated[Upload, Depends(read_upload)]


def keep_uploads_in_memory(max_upload_bytes: int) -> None:
    """Parse multipart files up to ``max_upload_bytes`` in memory, not in a temporary file.

    Starlette spools a form's file to disk past 1 MiB; :func:`read_upload` then reads it all
    back into memory anyway, so the disk only added a write and a read (an 18 MB OFF upload:
    86 ms of CPU in the multipart parser with the spool, 48 ms without). Starlette keeps the
    threshold on the parser class, for every app of the process.
    """
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, max_upload_bytes)
