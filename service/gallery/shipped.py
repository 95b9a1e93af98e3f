"""The shipped gallery file (``models/gallery.npz``): written and read here, nowhere else.

The ``.npz`` holds ``ids`` (N,) str (file stems, ``chair_0890``), ``labels`` (N,) str (class
names), ``descriptors`` (N, D) float32, and optionally the ``model_name`` and
``model_version`` that computed them, their ``descriptor_space`` (``ModelContract.space``;
a file without it: that model's own) and the ``dataset`` they came from, and the items'
pictures (:mod:`raymap.thumbnail`, WebP): ``thumbnails`` (B,) uint8, all of them end to end,
and ``thumbnail_offsets`` (N + 1,) int64, item ``i``'s picture being
``thumbnails[offsets[i]:offsets[i + 1]]`` (empty: none). It is the read-only base every
backend starts from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raymap.contract import own_space


@dataclass(frozen=True)
class BaseGallery:
    """The shipped read-only gallery: ``ids``, ``labels`` (N,) str, ``descriptors`` (N, D)
    of unit rows."""

    ids: np.ndarray
    labels: np.ndarray
    descriptors: np.ndarray
    space: str | None = None  # their descriptor space (ModelContract.space); None: unknown
    thumbnails: np.ndarray | None = None  # (B,) uint8: every picture, end to end
    thumbnail_offsets: np.ndarray | None = None  # (N + 1,) int64 into ``thumbnails``

    def thumbnail(self, index: int) -> bytes | None:
        """Item ``index``'s picture, None if the file has none for it."""
        if self.thumbnails is None or self.thumbnail_offsets is None:
            return None
        start, end = self.thumbnail_offsets[index], self.thumbnail_offsets[index + 1]
        return self.thumbnails[start:end].tobytes() if end > start else None

    @classmethod
    def load(cls, path: Path | None, descriptor_size: int) -> BaseGallery:
        """The file at ``path`` (None: an empty gallery), checked against the model's size."""
        if path is None:
            empty = np.zeros(0, dtype=str)
            return cls(empty, empty, np.zeros((0, descriptor_size), np.float32))
        with np.load(path, allow_pickle=False) as data:
            ids, labels = data["ids"].astype(str), data["labels"].astype(str)
            descriptors = np.asarray(data["descriptors"], dtype=np.float32)
            space = None
            if "descriptor_space" in data.files:
                space = str(data["descriptor_space"])
            elif "model_name" in data.files and "model_version" in data.files:
                space = own_space(str(data["model_name"]), str(data["model_version"]))
            thumbnails = offsets = None
            if "thumbnails" in data.files and "thumbnail_offsets" in data.files:
                thumbnails = np.asarray(data["thumbnails"], dtype=np.uint8)
                offsets = np.asarray(data["thumbnail_offsets"], dtype=np.int64)
        if descriptors.ndim != 2 or descriptors.shape[1] != descriptor_size:
            raise ValueError(
                f"{path}: descriptors have shape {descriptors.shape}, the model's descriptor "
                f"size is {descriptor_size}; rebuild it with python -m service.build_gallery"
            )
        if not (len(ids) == len(labels) == len(descriptors)):
            raise ValueError(
                f"{path}: {len(ids)} ids, {len(labels)} labels, {len(descriptors)} descriptors"
            )
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"{path}: ids are not unique")
        norms = np.linalg.norm(descriptors, axis=1, keepdims=True)
        if not (np.isfinite(norms).all() and (norms > 0).all()):
            raise ValueError(f"{path}: some descriptors are zero or not finite")
        if (
            offsets is not None
            and thumbnails is not None
            and (
                offsets.shape != (len(ids) + 1,)
                or offsets[0] != 0
                or offsets[-1] != len(thumbnails)
                or (np.diff(offsets) < 0).any()
            )
        ):
            raise ValueError(f"{path}: thumbnail_offsets do not match the ids and thumbnails")
        return cls(ids, labels, descriptors / norms, space, thumbnails, offsets)


def write_base_gallery(
    out: Path,
    ids: Sequence[str],
    labels: Sequence[str],
    descriptors: np.ndarray,
    model: tuple[str, str] | None = None,
    dataset: str | None = None,
    thumbnails: Sequence[bytes | None] | None = None,
    space: str | None = None,
) -> None:
    """Write a gallery file atomically (a killed run leaves the old file or none);
    ``thumbnails``, when given, has one picture (or None) per item; ``space``: the
    descriptors' (``ModelContract.space``; a file without it is read as in the ``model``'s
    own)."""
    if len(set(ids)) != len(ids):
        raise ValueError("gallery ids are not unique")
    if not (len(ids) == len(labels) == len(descriptors)):
        raise ValueError(f"{len(ids)} ids, {len(labels)} labels, {len(descriptors)} descriptors")
    arrays: dict[str, np.ndarray] = {
        "ids": np.asarray(list(ids), dtype=str),
        "labels": np.asarray(list(labels), dtype=str),
        "descriptors": np.asarray(descriptors, dtype=np.float32),
    }
    if model is not None:
        arrays["model_name"], arrays["model_version"] = np.asarray(model[0]), np.asarray(model[1])
    if space is not None:
        arrays["descriptor_space"] = np.asarray(space)
    if dataset is not None:
        arrays["dataset"] = np.asarray(dataset)
    if thumbnails is not None:
        if len(thumbnails) != len(ids):
            raise ValueError(f"{len(ids)} ids, {len(thumbnails)} thumbnails")
        sizes = [len(t) if t else 0 for t in thumbnails]
        arrays["thumbnails"] = np.frombuffer(b"".join(t or b"" for t in thumbnails), np.uint8)
        arrays["thumbnail_offsets"] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
