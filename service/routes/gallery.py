"""``/gallery``: add a mesh or a descriptor, list, count, get and delete items."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response

from raymap.thumbnail import MEDIA_TYPE as THUMBNAIL_MEDIA_TYPE
from service.errors import (
    BadRequest,
    DuplicateId,
    GalleryError,
    InvalidRequest,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    Unauthorized,
    responses,
)
from service.gallery import Item, parse_metadata
from service.routes.deps import MeshUpload, ReadyPipeline, require_api_key
from service.routes.inference import MESH_ERRORS
from service.schemas import (
    DescriptorItem,
    GalleryCount,
    GalleryItem,
    GalleryItemWithDescriptor,
    GalleryPage,
    ItemId,
    Label,
    LabelFilter,
)

router = APIRouter(tags=["gallery"])
WRITES: list[Any] = [Depends(require_api_key)]
READ_ERRORS = (InvalidRequest, NotReady)
WRITE_ERRORS = (Unauthorized, PayloadTooLarge, InvalidRequest, NotReady, Overloaded)
# The new item's routes, for clients and for stateful testing (OpenAPI links).
ITEM_LINKS = {
    201: {
        "description": "the item was added",
        "links": {
            "GetItem": {
                "operationId": "get_item",
                "parameters": {"item_id": "$response.body#/id"},
            },
            "DeleteItem": {
                "operationId": "delete_item",
                "parameters": {"item_id": "$response.body#/id"},
            },
        },
    }
}


@router.post(
    "/gallery",
    status_code=201,
    dependencies=WRITES,
    responses={**ITEM_LINKS, **responses(*MESH_ERRORS, Unauthorized, DuplicateId, GalleryError)},
)
async def add_mesh(
    pipeline: ReadyPipeline,
    upload: MeshUpload,
    id: Annotated[ItemId, Form(description="the new item's id, e.g. chair_0890")],
    label: Annotated[Label | None, Form(description="default: the predicted class")] = None,
    metadata: Annotated[str | None, Form(description="a JSON object of scalars")] = None,
) -> GalleryItem:
    """Add a mesh to the gallery under ``id`` (its descriptor from the model)."""
    meta = parse_metadata(metadata)
    item = await pipeline.add_mesh(upload, id, label, meta)
    return GalleryItem(id=item.id, label=item.label, metadata=meta)


@router.post(
    "/gallery/descriptors",
    status_code=201,
    dependencies=WRITES,
    responses={**ITEM_LINKS, **responses(*WRITE_ERRORS, BadRequest, DuplicateId, GalleryError)},
)
async def add_descriptor(pipeline: ReadyPipeline, body: DescriptorItem) -> GalleryItem:
    """Add a stored descriptor (from ``/classify`` of the same model) under ``id``."""
    with np.errstate(over="ignore"):  # beyond float32: inf, which the gallery rejects
        descriptor = np.asarray(body.descriptor, np.float32)
    await pipeline.add_item(Item(body.id, body.label, descriptor, body.metadata))
    return GalleryItem(id=body.id, label=body.label, metadata=body.metadata)


@router.get("/gallery", responses=responses(*READ_ERRORS))
async def list_gallery(
    pipeline: ReadyPipeline,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    label: Annotated[LabelFilter | None, Query()] = None,
) -> GalleryPage:
    """A page of gallery items, sorted by id."""
    gallery = pipeline.gallery
    items, total = await pipeline.in_thread(gallery.list_items, offset, limit, label)
    return GalleryPage(
        items=[GalleryItem(id=i.id, label=i.label, metadata=i.metadata) for i in items],
        total=total,
        offset=offset,
        limit=limit,
    )


@router.get("/gallery/count", responses=responses(*READ_ERRORS))
async def count(
    pipeline: ReadyPipeline, label: Annotated[LabelFilter | None, Query()] = None
) -> GalleryCount:
    """How many items the gallery holds (of one class, with ``label``)."""
    return GalleryCount(count=await pipeline.in_thread(pipeline.gallery.count, label))


@router.get(
    "/gallery/items/{item_id}",
    operation_id="get_item",
    responses=responses(*READ_ERRORS, NotFound),
)
async def get_item(pipeline: ReadyPipeline, item_id: str) -> GalleryItemWithDescriptor:
    """One item with its descriptor."""
    item = await pipeline.in_thread(pipeline.gallery.get, item_id)
    if item is None:
        raise NotFound(f"no gallery item with id {item_id!r}")
    return GalleryItemWithDescriptor(
        id=item.id,
        label=item.label,
        metadata=item.metadata,
        descriptor=item.descriptor.astype(float).tolist(),
    )


@router.get(
    "/gallery/items/{item_id}/thumbnail",
    response_class=Response,
    responses={
        200: {"content": {THUMBNAIL_MEDIA_TYPE: {}}, "description": "a small picture (WebP)"},
        304: {"description": "the picture the client holds (If-None-Match) is current"},
        **responses(*READ_ERRORS, NotFound),
    },
)
async def get_thumbnail(pipeline: ReadyPipeline, request: Request, item_id: str) -> Response:
    """The item's picture: its normalized shape ray cast and shaded (``raymap.thumbnail``),
    rendered when the item was added or the shipped gallery was built."""
    picture = await pipeline.thumbnail(item_id)
    if picture is None:
        raise NotFound(f"no gallery item with id {item_id!r} has a thumbnail")
    etag = '"' + hashlib.sha1(picture).hexdigest()[:20] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}  # ids can be deleted and reused
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(picture, media_type=THUMBNAIL_MEDIA_TYPE, headers=headers)


@router.delete(
    "/gallery/items/{item_id}",
    operation_id="delete_item",
    status_code=204,
    dependencies=WRITES,
    response_class=Response,
    responses=responses(*WRITE_ERRORS, NotFound),
)
async def delete_item(pipeline: ReadyPipeline, item_id: str) -> Response:
    """Remove an item (a shipped one too)."""
    if not await pipeline.delete_item(item_id):
        raise NotFound(f"no gallery item with id {item_id!r}")
    return Response(status_code=204)
