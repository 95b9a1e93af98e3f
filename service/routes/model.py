"""``/model``: what the served model is (from its ONNX metadata)."""

from __future__ import annotations

from fastapi import APIRouter

from service.errors import NotReady, responses
from service.routes.deps import ReadyPipeline
from service.schemas import ModelResponse

router = APIRouter(tags=["model"])


@router.get("/model", responses=responses(NotReady))
async def model(pipeline: ReadyPipeline) -> ModelResponse:
    """The model's metadata (from the ONNX file)."""
    info = pipeline.info
    return ModelResponse(
        name=info.name,
        version=info.version,
        class_names=list(info.class_names),
        bandwidth=info.bandwidth,
        grid=info.grid,
        feature_names=list(info.feature_names),
        features_version=info.features_version,
        descriptor_size=info.descriptor_size,
        provider=pipeline.runtime.provider,
        metadata=dict(pipeline.runtime.metadata),
    )
