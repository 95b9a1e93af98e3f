"""The application: wiring only.

:mod:`service.state` holds the settings, metrics and the pipeline (loaded in the background
by the lifespan); :mod:`service.pipeline` does the work (no FastAPI); :mod:`service.routes`
has one router per resource; :mod:`service.errors` is the one table from exception to
(status, kind, message), rendered by :mod:`service.handlers`; :mod:`service.middleware` adds
request ids, the body cap, the last-resort 500, the log line and metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.errors import INTERNAL
from service.handlers import install_error_handlers
from service.middleware import HeadAsGet, RequestMiddleware
from service.routes import ROUTERS
from service.routes.deps import keep_uploads_in_memory
from service.schemas import ErrorResponse
from service.settings import Settings, get_settings
from service.state import RuntimeFactory, ServiceState, load_runtime


def create_app(
    settings: Settings | None = None, runtime_factory: RuntimeFactory | None = None
) -> FastAPI:
    """The service; ``settings`` default to the environment's, the runtime to onnxruntime."""
    settings = settings or get_settings()
    state = ServiceState(settings, runtime_factory or load_runtime)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = asyncio.create_task(state.load(), name="load")
        yield
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        await state.close()

    app = FastAPI(
        title="spherical-shapes",
        summary="Rotation-invariant 3D shape classification and retrieval (spherical CNN)",
        version="1",
        lifespan=lifespan,
        responses={INTERNAL.status: {"model": ErrorResponse, "description": INTERNAL.description}},
    )
    app.state.service = state
    keep_uploads_in_memory(settings.max_upload_bytes)
    install_error_handlers(app, settings.retry_after_s, state.metrics)
    app.add_middleware(HeadAsGet)  # inside the request middleware: its log says HEAD
    app.add_middleware(RequestMiddleware, settings=settings, metrics=state.metrics)
    for router in ROUTERS:
        app.include_router(router)
    return app
