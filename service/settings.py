"""Service settings from the environment (prefix ``SHAPES_``); see the README's table.

``get_settings()`` is cached; tests build their own :class:`Settings` and hand it to
:func:`service.app.create_app` (or override the ``get_settings`` dependency).

``SHAPES_DATA_DIR`` and ``SHAPES_CACHE_DIR`` belong to :mod:`raymap.datasets` (the dataset
archives and caches), so the gallery's folder is ``SHAPES_GALLERY_DIR``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "models" / "model.onnx"
DEFAULT_GALLERY = REPO_ROOT / "models" / "gallery.npz"
DEFAULT_GALLERY_DIR = Path.home() / ".local" / "share" / "spherical-shapes" / "gallery"


class Settings(BaseSettings):
    """Every knob of the service; each field is ``SHAPES_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SHAPES_", extra="ignore")

    # Where to listen: ``HOST``/``PORT`` or ``SHAPES_HOST``/``SHAPES_PORT``.
    host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("SHAPES_HOST", "HOST"))
    port: int = Field(
        default=8000, ge=0, le=65535, validation_alias=AliasChoices("SHAPES_PORT", "PORT")
    )

    # The model and the inference runtime.
    model_path: Path = DEFAULT_MODEL
    device: Literal["auto", "cpu", "cuda"] = "auto"
    intra_op_threads: int | None = Field(default=None, ge=1)
    warmup: bool = True

    # Micro-batching: at most ``max_batch_size`` maps per onnxruntime call, waiting at most
    # ``max_wait_ms`` for a batch to fill. ``max_batch_size=1`` turns batching off.
    max_batch_size: int = Field(default=16, ge=1, le=1024)
    max_wait_ms: float = Field(default=2.0, ge=0.0, le=1000.0)
    # Requests admitted at once (parsing, ray casting or waiting for the model); past it: 503.
    max_pending: int = Field(default=64, ge=1)
    retry_after_s: int = Field(default=1, ge=1)
    # Threads that parse uploads and cast rays (off the event loop).
    cast_workers: int = Field(default=2, ge=1, le=64)

    # Limits on uploads.
    max_upload_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_faces: int = Field(default=500_000, ge=1)
    mesh_timeout_s: float = Field(default=20.0, gt=0.0)  # parse + ray cast of one upload
    max_k: int = Field(default=100, ge=1)
    # Novelty above this -> ``known: false``; None: the threshold in the model's metadata
    # (fitted so that 95 % of in-class validation shapes stay known).
    novelty_threshold: float | None = None

    # The gallery.
    gallery_backend: Literal["embedded", "postgres"] = "embedded"
    gallery_path: Path | None = DEFAULT_GALLERY  # the shipped, read-only base (None: empty)
    gallery_dir: Path = DEFAULT_GALLERY_DIR  # embedded: the durable store of user changes
    # postgres: e.g. postgresql://shapes:secret@db:5432/shapes (libpq URL or key=value string)
    database_url: SecretStr | None = None
    database_pool_size: int = Field(default=4, ge=1, le=100)  # connections per process
    database_wait_s: float = Field(default=60.0, ge=0.0)  # at start-up, for the database

    # Writes (gallery add/delete) need ``X-API-Key`` equal to this when it is set.
    api_key: SecretStr | None = None

    # Logging: one JSON object per line (``log_json=false``: plain text).
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True

    @field_validator("api_key", "database_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("gallery_path", mode="before")
    @classmethod
    def _none_gallery(cls, value: object) -> object:
        return None if value in ("", "none", "None") else value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
