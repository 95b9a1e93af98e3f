"""Open the configured gallery store over the shipped base: the one place that knows the
backends by name (``SHAPES_GALLERY_BACKEND``). A new backend is a module in this package and
one entry in :data:`BACKENDS`."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from service.gallery.interface import Gallery
from service.gallery.shipped import BaseGallery
from service.settings import Settings

log = logging.getLogger("service.gallery")


def _embedded(base: BaseGallery, settings: Settings, space: str | None) -> Gallery:
    from service.gallery.embedded import EmbeddedGallery

    return EmbeddedGallery(base, Path(os.path.expanduser(settings.gallery_dir)), space=space)


def _postgres(base: BaseGallery, settings: Settings, space: str | None) -> Gallery:
    if settings.database_url is None:
        raise ValueError("SHAPES_GALLERY_BACKEND=postgres needs SHAPES_DATABASE_URL")
    from service.gallery.postgres import PostgresGallery

    return PostgresGallery(
        base,
        settings.database_url.get_secret_value(),
        pool_size=settings.database_pool_size,
        connect_timeout_s=settings.database_wait_s,
        space=space,
    )


BACKENDS: dict[str, Callable[[BaseGallery, Settings, str | None], Gallery]] = {
    "embedded": _embedded,
    "postgres": _postgres,
}


def open_gallery(settings: Settings, descriptor_size: int, space: str | None = None) -> Gallery:
    """The configured store, seeded with (embedded: layered over) the base gallery.

    ``space`` is the served model's descriptor space (``ModelContract.space``): a base gallery
    of another space is logged as a warning, a store changed in another is refused.
    """
    opener = BACKENDS.get(settings.gallery_backend)
    if opener is None:
        raise ValueError(
            f"gallery backend must be one of {sorted(BACKENDS)}, got {settings.gallery_backend!r}"
        )
    base_path = settings.gallery_path
    if base_path is not None and not Path(base_path).is_file():
        log.warning("no base gallery at %s; starting with an empty gallery", base_path)
        base_path = None
    base = BaseGallery.load(base_path, descriptor_size)
    if space is not None and base.space is not None and base.space != space:
        log.warning(
            "the base gallery %s holds descriptors of model %s, the service's are of model "
            "%s: rebuild it with python -m service.build_gallery",
            base_path,
            base.space,
            space,
        )
    return opener(base, settings, space)
