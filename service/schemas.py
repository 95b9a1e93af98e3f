"""Typed request and response bodies; FastAPI turns them into the OpenAPI schema."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints, field_validator

from service.gallery.interface import Metadata

# Gallery ids: what a file stem looks like; nothing that could be a path.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
ItemId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
# Labels are compared exactly; whitespace around one is dropped, stored or asked for (" chair"
# was stored as sent, and a filter for "chair" missed it).
# (The pattern says in the OpenAPI schema that blanks alone are no label.)
Label = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"\S")
]
LabelFilter = Annotated[str, StringConstraints(strip_whitespace=True, max_length=128)]


class ModelRef(BaseModel):
    name: str
    version: str


KNOWN = (
    "whether the shape looks like one of the model's classes (novelty at most the threshold); "
    "when false, the label is only the closest class"
)
NOVELTY = (
    "how unlike the model's classes the shape is (higher = less like them); "
    "null for a model without a novelty output"
)


class ClassProbability(BaseModel):
    label: str
    probability: float


class MeshPreviewBody(BaseModel):
    """The classified mesh as the page draws it (asked for with ``preview=true``)."""

    media_type: str = Field(description="the format of ``mesh``: see raymap.preview")
    mesh: str = Field(
        description="base64 of the normalized mesh, decimated by vertex clustering: int16 "
        "positions and uint16/uint32 triangle indices after a 20-byte header"
    )
    vertices: int
    faces: int = Field(description="triangles in the preview")
    source_faces: int = Field(description="triangles in the uploaded mesh")
    thumbnail_media_type: str
    thumbnail: str = Field(description="base64 of a small shaded picture, as the gallery's")


class ClassifyResponse(BaseModel):
    label: str = Field(description="the most probable class")
    probabilities: dict[str, float] = Field(description="every class's probability")
    top_k: list[ClassProbability] | None = Field(
        None, description="the top_k most probable classes, when top_k was asked for"
    )
    descriptor: list[float] = Field(description="L2-normalized rotation-invariant descriptor")
    known: bool = Field(description=KNOWN)
    novelty: float | None = Field(description=NOVELTY)
    timings_ms: dict[str, float] = Field(description="per-stage wall times in milliseconds")
    batch_size: int = Field(description="how many maps shared this request's model call")
    model: ModelRef
    preview: MeshPreviewBody | None = Field(None, description="when preview=true was asked for")


class Neighbor(BaseModel):
    id: str
    label: str
    score: float = Field(description="cosine similarity to the query, in [-1, 1]")
    metadata: Metadata | None = None


class RetrieveResponse(BaseModel):
    label: str = Field(description="the query's own predicted class")
    known: bool = Field(description=KNOWN)
    novelty: float | None = Field(description=NOVELTY)
    neighbors: list[Neighbor]
    timings_ms: dict[str, float]
    batch_size: int = Field(description="how many maps shared this request's model call")
    model: ModelRef


class GalleryItem(BaseModel):
    id: str
    label: str
    metadata: Metadata | None = None


class GalleryItemWithDescriptor(GalleryItem):
    descriptor: list[float]


class DescriptorItem(BaseModel):
    """A gallery entry given by its descriptor (computed elsewhere by the same model)."""

    id: ItemId
    label: Label
    descriptor: list[float] = Field(min_length=1, max_length=65536)
    metadata: Metadata | None = None

    @field_validator("descriptor")
    @classmethod
    def _finite_nonzero(cls, values: list[float]) -> list[float]:
        if not all(math.isfinite(v) for v in values):
            raise ValueError("descriptor has non-finite values (NaN or infinity)")
        if not any(values):
            raise ValueError("descriptor is all zeros; it has no direction for cosine")
        return values


class GalleryPage(BaseModel):
    items: list[GalleryItem]
    total: int = Field(description="items matching the filter")
    offset: int
    limit: int


class GalleryCount(BaseModel):
    count: int


class ModelResponse(BaseModel):
    name: str
    version: str
    class_names: list[str]
    bandwidth: int
    grid: str
    feature_names: list[str]
    features_version: str
    descriptor_size: int
    provider: str
    metadata: dict[str, str]


class Health(BaseModel):
    status: str
    detail: str | None = None


class ErrorResponse(BaseModel):
    detail: str
    kind: str = Field(description="machine-readable error kind, also a metrics label")
    request_id: str | None = None
