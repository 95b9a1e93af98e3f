"""What a gallery store is and the rules every store applies, written once.

Every backend takes and gives :class:`Item` and :class:`Hit`, raises :class:`GalleryError`
(:class:`DuplicateId`) for a request it cannot carry out, normalizes descriptors with
:func:`normalize_descriptor`, checks metadata with :func:`check_metadata` and makes its hits
with :func:`hit`, so a score means the same thing whichever store computed it: the cosine
similarity, a float in [-1, 1].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

MAX_METADATA_BYTES = 4096
MAX_THUMBNAIL_BYTES = 64 * 1024  # a stored picture (raymap.thumbnail's are about 0.5 KB)
# What metadata may hold: a flat JSON object of scalars.
Metadata = dict[str, str | int | float | bool | None]


class GalleryError(ValueError):
    """A request the gallery cannot carry out; ``reason`` is for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DuplicateId(GalleryError):
    """An item's id is already in the gallery."""


class GalleryUnavailable(RuntimeError):
    """The gallery's store cannot be reached now (its database is away); retry later."""


@dataclass(frozen=True)
class Item:
    id: str
    label: str
    descriptor: np.ndarray  # (D,) float32, unit norm
    metadata: dict[str, Any] | None = None
    # A small picture (raymap.thumbnail: WebP), stored with the item; not returned by
    # get/list/search (ask Gallery.thumbnail for it).
    thumbnail: bytes | None = None


@dataclass(frozen=True)
class Hit:
    id: str
    label: str
    score: float  # cosine similarity in [-1, 1]
    metadata: dict[str, Any] | None = None


@runtime_checkable
class Gallery(Protocol):
    """What the service needs from a gallery store; every method is blocking (call it in a
    thread from async code)."""

    descriptor_size: int

    def count(self, label: str | None = None) -> int: ...

    def add(self, item: Item) -> None:
        """Store ``item`` durably; raises :class:`DuplicateId` if its id is taken."""

    def delete(self, item_id: str) -> bool:
        """Remove durably; False if there was no such id."""

    def get(self, item_id: str) -> Item | None: ...

    def list_items(
        self, offset: int, limit: int, label: str | None = None
    ) -> tuple[list[Item], int]:
        """A page of items sorted by id, and the number of items matching ``label``."""

    def search(self, descriptor: np.ndarray, k: int, label: str | None = None) -> list[Hit]:
        """The ``k`` items most cosine-similar to ``descriptor``, best first."""

    def thumbnail(self, item_id: str) -> bytes | None:
        """The item's stored picture; None if there is no such item or it has none."""

    def close(self) -> None: ...


def same_descriptors(
    stored_size: str | None, stored_space: str | None, size: int, space: str | None
) -> bool:
    """Whether the descriptors a store recorded (size, space: ``ModelContract.space``) are the
    served model's. An unrecorded space (a store from before spaces were recorded, or a caller
    that names none) is checked by the size alone."""
    same_size = stored_size in (None, str(size))
    return same_size and (space is None or stored_space in (None, space))


def another_model(
    store: str,
    stored_size: str | None,
    stored_space: str | None,
    size: int,
    space: str | None,
    remedy: str,
) -> str:
    """Why a store changed under another model is refused, and what to do (``remedy``)."""
    return (
        f"{store} holds items added or deleted with {_model(stored_space)}, whose descriptors "
        f"have {stored_size} numbers; this model ({_model(space)}) computes other descriptors "
        f"({size} numbers), so they cannot be compared: {remedy}"
    )


def _model(space: str | None) -> str:
    return f"model {space}" if space else "an earlier model"


def normalize_descriptor(descriptor: np.ndarray, size: int) -> np.ndarray:
    """(D,) float32 unit vector; :class:`GalleryError` for a wrong size or no direction."""
    vector = np.asarray(descriptor, dtype=np.float32).reshape(-1)
    if vector.shape != (size,):
        raise GalleryError(f"descriptor has {vector.size} values, the model's has {size}")
    if not np.isfinite(vector).all():
        raise GalleryError("descriptor must be finite (no NaN or infinity)")
    with np.errstate(over="ignore", under="ignore"):  # handled below
        norm = float(np.linalg.norm(vector))
    if not 0.0 < norm < np.inf:  # float32's sum of squares overflowed, or underflowed
        wide = vector.astype(np.float64)
        norm = float(np.linalg.norm(wide))
        if norm == 0.0:
            raise GalleryError("descriptor must be non-zero")
        return (wide / norm).astype(np.float32)
    return vector / np.float32(norm)


def check_metadata(metadata: dict[str, Any] | None) -> str | None:
    """Metadata as JSON text, or :class:`GalleryError` if it cannot be stored or is too big."""
    if metadata is None:
        return None
    if not all(isinstance(v, str | int | float | bool) or v is None for v in metadata.values()):
        raise GalleryError("metadata must be a JSON object of strings, numbers, booleans or null")
    try:
        text = json.dumps(metadata, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"metadata cannot be stored as JSON: {exc}") from None
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise GalleryError(f"metadata is {len(text.encode())} bytes, over {MAX_METADATA_BYTES}")
    return text


def check_thumbnail(thumbnail: bytes | None) -> bytes | None:
    """A thumbnail to store, or :class:`GalleryError` if it is empty or too big."""
    if thumbnail is None:
        return None
    if not thumbnail or len(thumbnail) > MAX_THUMBNAIL_BYTES:
        raise GalleryError(f"a thumbnail must be 1 to {MAX_THUMBNAIL_BYTES} bytes")
    return bytes(thumbnail)


def parse_metadata(text: str | None) -> dict[str, Any] | None:
    """Metadata sent as JSON text (a form field); empty or ``null`` means none (as ``null``
    does in a JSON body). Checked like any other."""
    if text is None or text == "":
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise GalleryError(f"metadata is not valid JSON: {exc}") from None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise GalleryError("metadata must be a JSON object of strings, numbers, booleans or null")
    check_metadata(value)
    return value


def hit(item_id: str, label: str, score: float, metadata: dict[str, Any] | None) -> Hit:
    """A search result; the score clipped to [-1, 1] (float32 rounding can step past 1)."""
    return Hit(item_id, label, float(np.clip(score, -1.0, 1.0)), metadata)
