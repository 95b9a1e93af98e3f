"""The embedded gallery (the default; no server).

The shipped ``gallery.npz`` is a read-only base; user additions and deletions go to SQLite in
WAL mode with ``synchronous=FULL`` in ``store_dir``, committed (fsynced) before the call
returns, so an item acknowledged with a 2xx survives ``kill -9`` and power loss. Search is
exact cosine over an in-memory float32 matrix of unit rows with numpy (one matrix-vector
product).

Several processes may open one store (the server's ``WEB_CONCURRENCY`` workers): SQLite
serializes their writes, and every call first compares ``PRAGMA data_version`` (which changes
when another connection commits) with the version its in-memory view was built from, and
rebuilds the view from the base and the store when it differs. A write runs in one
``BEGIN IMMEDIATE`` transaction holding SQLite's write lock from the check to the commit,
so two workers adding the same id give one 2xx and one ``DuplicateId``, never a silent
replacement. A change made through any worker is seen by every worker's next call.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np

from service.gallery.interface import (
    DuplicateId,
    Hit,
    Item,
    another_model,
    check_metadata,
    check_thumbnail,
    hit,
    normalize_descriptor,
    same_descriptors,
)
from service.gallery.shipped import BaseGallery

log = logging.getLogger("service.gallery")


class EmbeddedGallery:
    """The base gallery plus a durable SQLite overlay; exact search in memory."""

    def __init__(
        self, base: BaseGallery, store_dir: Path, capacity: int = 1024, space: str | None = None
    ) -> None:
        """``space``: the served model's descriptor space (``ModelContract.space``); a store
        changed in another space is refused. None: only the descriptor size is checked."""
        self.descriptor_size = int(base.descriptors.shape[1])
        self.space = space
        self._lock = threading.RLock()
        self._base = base
        self._capacity = capacity
        store_dir.mkdir(parents=True, exist_ok=True)
        self._path = store_dir / "gallery.sqlite3"
        self._db = sqlite3.connect(
            self._path,
            check_same_thread=False,
            isolation_level=None,
            timeout=30.0,  # another worker's write holds the lock for one commit
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        with self._transaction():
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS changes (id TEXT PRIMARY KEY, label TEXT, "
                "descriptor BLOB, metadata TEXT, thumbnail BLOB)"
            )  # descriptor NULL: a deleted base item
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(changes)")}
            if "thumbnail" not in columns:  # a store made before items had pictures
                self._db.execute("ALTER TABLE changes ADD COLUMN thumbnail BLOB")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._check_descriptor_space()
        self._base_index = {str(item_id): i for i, item_id in enumerate(base.ids)}
        self._base_ids = set(self._base_index)
        self._version = -1
        self._sync()

    # -- loading

    def _transaction(self) -> _Immediate:
        return _Immediate(self._db)

    def _sync(self) -> None:
        """Rebuild the in-memory view if another connection committed since it was built."""
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        if version != self._version:
            self._load()
            self._version = version

    def _load(self) -> None:
        base = self._base
        n = len(base.ids)
        self._matrix = np.empty((max(self._capacity, 2 * n, 1), self.descriptor_size), np.float32)
        self._matrix[:n] = base.descriptors
        self._ids: list[str] = [str(i) for i in base.ids]
        self._labels: list[str] = [str(x) for x in base.labels]
        self._codes = np.empty(len(self._matrix), np.int32)  # label code per row
        self._label_code: dict[str, int] = {}
        for row, label in enumerate(self._labels):
            self._codes[row] = self._code(label)
        self._row = {item_id: row for row, item_id in enumerate(self._ids)}
        self._metadata: dict[str, dict[str, Any]] = {}
        self._sorted: list[str] | None = None
        self._replay()

    # -- loading

    def _check_descriptor_space(self) -> None:
        """The store's descriptors are the model's: the same size and space. A store with no
        changes, such as the one a service made before the model was upgraded, takes the new
        model's; one with changes made by another model is refused (its descriptors cannot be
        compared)."""
        stored = dict(
            self._db.execute(
                "SELECT key, value FROM meta WHERE key IN ('descriptor_size', 'descriptor_space')"
            ).fetchall()
        )
        old_size, old_space = stored.get("descriptor_size"), stored.get("descriptor_space")
        if not same_descriptors(old_size, old_space, self.descriptor_size, self.space):
            changes = int(self._db.execute("SELECT count(*) FROM changes").fetchone()[0])
            if changes:
                raise RuntimeError(
                    another_model(
                        f"the gallery store {self._path} ({changes} change(s))",
                        old_size,
                        old_space,
                        self.descriptor_size,
                        self.space,
                        "point SHAPES_GALLERY_DIR at a new folder (or remove that file to drop "
                        "them)",
                    )
                )
            log.info(
                "the gallery store %s had no changes; it now holds the descriptors of %s (%d "
                "numbers; were %s of %s)",
                self._path,
                self.space,
                self.descriptor_size,
                old_size,
                old_space,
            )
        self._db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('descriptor_size', ?)",
            (str(self.descriptor_size),),
        )
        if self.space is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('descriptor_space', ?)", (self.space,)
            )

    def _replay(self) -> None:
        n_added = n_deleted = 0
        for item_id, label, blob, metadata in self._db.execute(
            "SELECT id, label, descriptor, metadata FROM changes ORDER BY rowid"
        ):
            if item_id in self._row:
                self._remove_row(item_id)
            if blob is None:
                n_deleted += 1
                continue
            descriptor = np.frombuffer(blob, dtype=np.float32)
            self._append(item_id, label, descriptor, json.loads(metadata) if metadata else None)
            n_added += 1
        log.debug(
            "gallery view: %d items (%d base, %d added, %d base deleted)",
            len(self._ids),
            len(self._base_ids),
            n_added,
            n_deleted,
        )

    def _code(self, label: str) -> int:
        return self._label_code.setdefault(label, len(self._label_code))

    # -- in-memory rows

    def _append(
        self, item_id: str, label: str, descriptor: np.ndarray, metadata: dict[str, Any] | None
    ) -> None:
        n = len(self._ids)
        if n == len(self._matrix):
            grown = np.empty((2 * n, self.descriptor_size), np.float32)
            grown[:n] = self._matrix
            codes = np.empty(2 * n, np.int32)
            codes[:n] = self._codes
            self._matrix, self._codes = grown, codes
        self._matrix[n] = descriptor
        self._codes[n] = self._code(label)
        self._ids.append(item_id)
        self._labels.append(label)
        self._row[item_id] = n
        if metadata is not None:
            self._metadata[item_id] = metadata
        self._sorted = None

    def _remove_row(self, item_id: str) -> None:
        """Swap-remove: the last row moves into the hole."""
        row = self._row.pop(item_id)
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            self._matrix[row] = self._matrix[last]
            self._codes[row] = self._codes[last]
            self._ids[row] = moved
            self._labels[row] = self._labels[last]
            self._row[moved] = row
        self._ids.pop()
        self._labels.pop()
        self._metadata.pop(item_id, None)
        self._sorted = None

    # -- the Gallery interface

    def count(self, label: str | None = None) -> int:
        with self._lock:
            self._sync()
            if label is None:
                return len(self._ids)
            code = self._label_code.get(label)
            if code is None:
                return 0
            return int((self._codes[: len(self._ids)] == code).sum())

    def add(self, item: Item) -> None:
        descriptor = normalize_descriptor(item.descriptor, self.descriptor_size)
        metadata = check_metadata(item.metadata)
        thumbnail = check_thumbnail(item.thumbnail)
        with self._lock, self._transaction():
            self._sync()  # under the write lock: no other worker commits until we do
            if item.id in self._row:
                raise DuplicateId(f"id {item.id!r} is already in the gallery")
            self._db.execute(
                "INSERT OR REPLACE INTO changes VALUES (?, ?, ?, ?, ?)",
                (item.id, item.label, descriptor.tobytes(), metadata, thumbnail),
            )  # durable (WAL fsynced) when the transaction commits, picture and all
            self._append(item.id, item.label, descriptor, item.metadata)

    def delete(self, item_id: str) -> bool:
        with self._lock, self._transaction():
            self._sync()
            if item_id not in self._row:
                return False
            if item_id in self._base_ids:
                self._db.execute(
                    "INSERT OR REPLACE INTO changes VALUES (?, NULL, NULL, NULL, NULL)",
                    (item_id,),
                )
            else:
                self._db.execute("DELETE FROM changes WHERE id = ?", (item_id,))
            self._remove_row(item_id)
            return True

    def get(self, item_id: str) -> Item | None:
        with self._lock:
            self._sync()
            return self._get(item_id)

    def _get(self, item_id: str) -> Item | None:
        with self._lock:
            row = self._row.get(item_id)
            if row is None:
                return None
            return Item(
                item_id,
                self._labels[row],
                self._matrix[row].copy(),
                self._metadata.get(item_id),
            )

    def list_items(
        self, offset: int, limit: int, label: str | None = None
    ) -> tuple[list[Item], int]:
        with self._lock:
            self._sync()
            if self._sorted is None:
                self._sorted = sorted(self._ids)
            ids = self._sorted
            if label is not None:
                ids = [i for i in ids if self._labels[self._row[i]] == label]
            page = [self._get(i) for i in ids[offset : offset + limit]]
            return [item for item in page if item is not None], len(ids)

    def search(self, descriptor: np.ndarray, k: int, label: str | None = None) -> list[Hit]:
        query = normalize_descriptor(descriptor, self.descriptor_size)
        with self._lock:
            self._sync()
            n = len(self._ids)
            scores = self._matrix[:n] @ query  # (n,) cosine similarities
            rows = np.arange(n)
            if label is not None:
                code = self._label_code.get(label)
                rows = np.flatnonzero(self._codes[:n] == code) if code is not None else rows[:0]
                scores = scores[rows]
            k = min(k, len(rows))
            if k == 0:
                return []
            best = np.argpartition(-scores, k - 1)[:k]
            best = best[np.argsort(-scores[best], kind="stable")]
            return [
                hit(
                    self._ids[rows[i]],
                    self._labels[rows[i]],
                    float(scores[i]),
                    self._metadata.get(self._ids[rows[i]]),
                )
                for i in best
            ]

    def thumbnail(self, item_id: str) -> bytes | None:
        with self._lock:
            self._sync()
            if item_id not in self._row:
                return None
            changed = self._db.execute(
                "SELECT thumbnail FROM changes WHERE id = ?", (item_id,)
            ).fetchone()
        if changed is not None:  # added (or deleted from the base and added again)
            return bytes(changed[0]) if changed[0] is not None else None
        return self._base.thumbnail(self._base_index[item_id])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Immediate:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on an exception): one write at a time
    across every process of the store, and our own commit does not change our
    ``data_version``, so the view we updated in memory stays current."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self._db.execute("ROLLBACK" if kind is not None else "COMMIT")
