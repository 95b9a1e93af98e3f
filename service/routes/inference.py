"""``/classify`` and ``/retrieve``: a mesh through the pipeline, the answer as JSON."""

from __future__ import annotations

import base64
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Form

from raymap.preview import DEFAULT_PREVIEW_FACES, MAX_PREVIEW_FACES
from raymap.preview import MEDIA_TYPE as PREVIEW_MEDIA_TYPE
from raymap.thumbnail import MEDIA_TYPE as THUMBNAIL_MEDIA_TYPE
from service.errors import (
    BadRequest,
    GalleryError,
    InvalidRequest,
    MeshError,
    MeshTimeout,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    ShuttingDown,
    UnsupportedFormat,
    responses,
)
from service.pipeline import Inference, Pipeline, UploadPreview
from service.routes.deps import MeshUpload, ReadyPipeline
from service.schemas import (
    ClassifyResponse,
    ClassProbability,
    LabelFilter,
    MeshPreviewBody,
    ModelRef,
    Neighbor,
    RetrieveResponse,
)

router = APIRouter(tags=["inference"])

# What any route that takes a mesh can answer besides 200 (the table's entries).
MESH_ERRORS = (
    BadRequest,
    PayloadTooLarge,
    UnsupportedFormat,
    InvalidRequest,
    MeshError,
    MeshTimeout,
    NotReady,
    Overloaded,
    ShuttingDown,
)


def model_ref(pipeline: Pipeline) -> ModelRef:
    return ModelRef(name=pipeline.info.name, version=pipeline.info.version)


def preview_body(preview: UploadPreview) -> MeshPreviewBody:
    mesh = preview.mesh
    return MeshPreviewBody(
        media_type=PREVIEW_MEDIA_TYPE,
        mesh=base64.b64encode(mesh.encode()).decode("ascii"),
        vertices=len(mesh.vertices),
        faces=len(mesh.faces),
        source_faces=mesh.source_faces,
        thumbnail_media_type=THUMBNAIL_MEDIA_TYPE,
        thumbnail=base64.b64encode(preview.thumbnail).decode("ascii"),
    )


def top_k_of(pipeline: Pipeline, result: Inference, k: int) -> list[ClassProbability]:
    order = np.argsort(-result.probabilities, kind="stable")[:k]
    names = pipeline.info.class_names
    return [
        ClassProbability(label=names[i], probability=float(result.probabilities[i])) for i in order
    ]


@router.post("/classify", responses=responses(*MESH_ERRORS))
async def classify(
    pipeline: ReadyPipeline,
    upload: MeshUpload,
    top_k: Annotated[int | None, Form(ge=1, description="also list the top k classes")] = None,
    preview: Annotated[
        bool, Form(description="also return the mesh as classified, decimated, and a picture")
    ] = False,
    preview_faces: Annotated[
        int, Form(ge=1, le=MAX_PREVIEW_FACES, description="the preview's triangle budget")
    ] = DEFAULT_PREVIEW_FACES,
) -> ClassifyResponse:
    """Classify a mesh in any orientation."""
    result = await pipeline.classify(upload, preview_faces if preview else None)
    names = pipeline.info.class_names
    return ClassifyResponse(
        label=result.label,
        probabilities={n: float(p) for n, p in zip(names, result.probabilities, strict=True)},
        top_k=None if top_k is None else top_k_of(pipeline, result, top_k),
        descriptor=result.descriptor.astype(float).tolist(),
        known=result.known,
        novelty=result.novelty,
        timings_ms=result.timings_ms,
        batch_size=result.batch_size,
        model=model_ref(pipeline),
        preview=None if result.preview is None else preview_body(result.preview),
    )


@router.post("/retrieve", responses=responses(*MESH_ERRORS, GalleryError))
async def retrieve(
    pipeline: ReadyPipeline,
    upload: MeshUpload,
    k: Annotated[int, Form(ge=1, description="how many neighbours")] = 10,
    label: Annotated[LabelFilter | None, Form(description="only neighbours of this class")] = None,
) -> RetrieveResponse:
    """The gallery shapes most similar to a mesh (cosine of descriptors)."""
    if k > pipeline.settings.max_k:
        raise GalleryError(f"k must be at most {pipeline.settings.max_k}, got {k}")
    result = await pipeline.retrieve(upload, k, label)
    return RetrieveResponse(
        label=result.inference.label,
        known=result.inference.known,
        novelty=result.inference.novelty,
        neighbors=[
            Neighbor(id=h.id, label=h.label, score=h.score, metadata=h.metadata)
            for h in result.hits
        ],
        timings_ms=result.inference.timings_ms,
        batch_size=result.inference.batch_size,
        model=model_ref(pipeline),
    )
