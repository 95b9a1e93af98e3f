"""``/livez``, ``/readyz`` and ``/metrics``: the process, the model's readiness, Prometheus."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from service.routes.deps import State
from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/livez")
async def livez() -> Health:
    """The process is up and serving HTTP."""
    return Health(status="ok")


@router.get("/readyz", responses={503: {"model": Health, "description": "not ready"}})
async def readyz(state: State) -> Response:
    """The model is loaded and warmed up, the gallery is open, and a mesh worker is free of
    uploads past their time limit."""
    pipeline = state.pipeline
    if pipeline is not None and pipeline.stalled:
        detail = (
            f"all {pipeline.settings.cast_workers} mesh workers are still busy with uploads "
            "past the time limit"
        )
        body = Health(status="busy", detail=detail)
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})
    if pipeline is not None:
        return JSONResponse(Health(status="ready").model_dump())
    detail = state.load_error or "loading"
    body = Health(status="failed" if state.load_error else "loading", detail=detail)
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(state: State) -> Response:
    """Prometheus metrics."""
    pipeline = state.pipeline
    state.metrics.queue_depth.set(pipeline.batcher.depth if pipeline is not None else 0)
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
