"""The gallery on a Qdrant collection (cosine distance), for several replicas sharing one
gallery; ``qdrant-client``'s local mode runs it without a server in tests."""

from __future__ import annotations

import base64
import logging
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from service.gallery.interface import (
    DuplicateId,
    Hit,
    Item,
    check_metadata,
    check_thumbnail,
    hit,
    normalize_descriptor,
)
from service.gallery.shipped import BaseGallery

log = logging.getLogger("service.gallery")

_ID_NAMESPACE = uuid.UUID("6f1c3e5a-8d2b-4c8e-9a57-3b1f0e2d4c6a")


def _payload(
    item_id: str, label: str, metadata: dict[str, Any] | None, thumbnail: bytes | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"id": item_id, "label": label}
    if metadata is not None:
        payload["metadata"] = metadata
    if thumbnail is not None:  # base64: payloads are JSON
        payload["thumbnail"] = base64.b64encode(thumbnail).decode("ascii")
    return payload


def point_id(item_id: str) -> str:
    """Qdrant wants UUIDs or integers as point ids: a UUID5 of ours; ours is in the payload."""
    return str(uuid.uuid5(_ID_NAMESPACE, item_id))


class QdrantGallery:
    """The gallery on a Qdrant collection (cosine). Several service replicas can share it.

    The collection is created on first use and seeded with the base gallery when empty;
    a second replica starting at the same time finds it created and seeded (the seeding is an
    idempotent upsert). Writes wait for Qdrant's acknowledgement (``wait=True``).
    """

    def __init__(
        self,
        base: BaseGallery,
        collection: str,
        url: str | None = None,
        path: Path | None = None,
        api_key: str | None = None,
    ) -> None:
        from qdrant_client import QdrantClient, models

        self._models = models
        # Pictures stay out of get, list and search answers: Gallery.thumbnail fetches one.
        self._without_thumbnail = models.PayloadSelectorExclude(exclude=["thumbnail"])
        self.descriptor_size = int(base.descriptors.shape[1])
        self.collection = collection
        if url is not None:
            self._client = QdrantClient(url=url, api_key=api_key)
        elif path is not None:
            self._client = QdrantClient(path=str(path))
        else:
            raise ValueError("QdrantGallery needs a url (server) or a path (local mode)")
        self._ensure_collection()
        if self._client.count(collection, exact=True).count == 0 and len(base.ids):
            self._seed(base)

    def _ensure_collection(self) -> None:
        models = self._models
        if not self._client.collection_exists(self.collection):
            try:
                self._client.create_collection(
                    self.collection,
                    vectors_config=models.VectorParams(
                        size=self.descriptor_size, distance=models.Distance.COSINE
                    ),
                )
                with warnings.catch_warnings():  # local mode: indexes have no effect
                    warnings.simplefilter("ignore", UserWarning)
                    self._client.create_payload_index(
                        self.collection, "label", models.PayloadSchemaType.KEYWORD
                    )
            except Exception:
                if not self._client.collection_exists(self.collection):
                    raise  # not a replica that created it first
        info = self._client.get_collection(self.collection)
        vectors = info.config.params.vectors
        size = getattr(vectors, "size", None)
        if size != self.descriptor_size:
            raise RuntimeError(
                f"Qdrant collection {self.collection!r} holds vectors of size {size}, the "
                f"model's descriptors have {self.descriptor_size}"
            )

    def _seed(self, base: BaseGallery, chunk: int = 512) -> None:
        models = self._models
        for start in range(0, len(base.ids), chunk):
            points = [
                models.PointStruct(
                    id=point_id(str(item_id)),
                    vector=base.descriptors[start + i].tolist(),
                    payload=_payload(
                        str(item_id), str(base.labels[start + i]), None, base.thumbnail(start + i)
                    ),
                )
                for i, item_id in enumerate(base.ids[start : start + chunk])
            ]
            self._client.upsert(self.collection, points=points, wait=True)
        log.info("seeded Qdrant collection %s with %d items", self.collection, len(base.ids))

    def _label_filter(self, label: str | None) -> Any:
        if label is None:
            return None
        models = self._models
        return models.Filter(
            must=[models.FieldCondition(key="label", match=models.MatchValue(value=label))]
        )

    def _item(self, point: Any) -> Item:
        payload = point.payload or {}
        vector = point.vector if point.vector is not None else []
        return Item(
            str(payload["id"]),
            str(payload["label"]),
            np.asarray(vector, dtype=np.float32),
            payload.get("metadata"),
        )

    def count(self, label: str | None = None) -> int:
        return int(
            self._client.count(
                self.collection, count_filter=self._label_filter(label), exact=True
            ).count
        )

    def add(self, item: Item) -> None:
        descriptor = normalize_descriptor(item.descriptor, self.descriptor_size)
        check_metadata(item.metadata)
        payload = _payload(item.id, item.label, item.metadata, check_thumbnail(item.thumbnail))
        if self.get(item.id) is not None:
            raise DuplicateId(f"id {item.id!r} is already in the gallery")
        self._client.upsert(
            self.collection,
            points=[
                self._models.PointStruct(
                    id=point_id(item.id), vector=descriptor.tolist(), payload=payload
                )
            ],
            wait=True,
        )

    def delete(self, item_id: str) -> bool:
        if self.get(item_id) is None:
            return False
        self._client.delete(
            self.collection,
            points_selector=self._models.PointIdsList(points=[point_id(item_id)]),
            wait=True,
        )
        return True

    def get(self, item_id: str) -> Item | None:
        points = self._client.retrieve(
            self.collection,
            ids=[point_id(item_id)],
            with_vectors=True,
            with_payload=self._without_thumbnail,
        )
        return self._item(points[0]) if points else None

    def list_items(
        self, offset: int, limit: int, label: str | None = None
    ) -> tuple[list[Item], int]:
        # Qdrant pages by point id, not by position: scroll to ``offset + limit`` and sort by
        # our id for a stable order (fine for pages near the start; use cursors past that).
        flt = self._label_filter(label)
        total = self.count(label)
        points: list[Any] = []
        cursor = None
        while True:
            batch, cursor = self._client.scroll(
                self.collection,
                scroll_filter=flt,
                limit=1024,
                offset=cursor,
                with_payload=self._without_thumbnail,
                with_vectors=True,
            )
            points += batch
            if cursor is None:
                break
        items = sorted((self._item(p) for p in points), key=lambda item: item.id)
        return items[offset : offset + limit], total

    def search(self, descriptor: np.ndarray, k: int, label: str | None = None) -> list[Hit]:
        query = normalize_descriptor(descriptor, self.descriptor_size)
        response = self._client.query_points(
            self.collection,
            query=query.tolist(),
            query_filter=self._label_filter(label),
            limit=k,
            with_payload=self._without_thumbnail,
        )
        return [
            hit(
                str(p.payload["id"]),
                str(p.payload["label"]),
                float(p.score),
                p.payload.get("metadata"),
            )
            for p in response.points
            if p.payload is not None
        ]

    def thumbnail(self, item_id: str) -> bytes | None:
        points = self._client.retrieve(
            self.collection, ids=[point_id(item_id)], with_payload=["thumbnail"]
        )
        text = (points[0].payload or {}).get("thumbnail") if points else None
        return base64.b64decode(text) if text else None

    def close(self) -> None:
        self._client.close()
