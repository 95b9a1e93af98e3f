"""The gallery: labelled descriptors to retrieve from, behind one interface.

* :mod:`.interface`: :class:`Gallery`, :class:`Item`, :class:`Hit`, the errors and the rules
  every store applies (descriptor normalization, metadata, scores);
* :mod:`.shipped`: the shipped ``gallery.npz`` (the read-only base), written and read;
* :mod:`.embedded`: the default store (the base plus a durable SQLite overlay, exact search);
* :mod:`.postgres`: the same interface on PostgreSQL with pgvector, for several replicas;
* :mod:`.factory`: :func:`open_gallery`, the configured backend over the base.

Descriptors are L2-normalized on the way in, so a score is the cosine similarity.
"""

from service.gallery.factory import BACKENDS, open_gallery
from service.gallery.interface import (
    MAX_METADATA_BYTES,
    DuplicateId,
    Gallery,
    GalleryError,
    GalleryUnavailable,
    Hit,
    Item,
    Metadata,
    check_metadata,
    normalize_descriptor,
    parse_metadata,
)
from service.gallery.shipped import BaseGallery, write_base_gallery

__all__ = [
    "BACKENDS",
    "MAX_METADATA_BYTES",
    "BaseGallery",
    "DuplicateId",
    "Gallery",
    "GalleryError",
    "GalleryUnavailable",
    "Hit",
    "Item",
    "Metadata",
    "check_metadata",
    "normalize_descriptor",
    "open_gallery",
    "parse_metadata",
    "write_base_gallery",
]
