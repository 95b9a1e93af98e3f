"""The scale-out gallery: the gallery interface on PostgreSQL with pgvector, shared by replicas.

Every replica of the service opens a :class:`PostgresGallery` on the same database
(``SHAPES_DATABASE_URL``). What it keeps, as the embedded store keeps it:

* ``gallery_items``: ``id`` (text, byte order: pages sort as Python sorts), ``label``,
  ``descriptor`` (``vector(D)``, unit norm), ``metadata`` (``json``: the text as written,
  keys in their order), ``thumbnail`` (``bytea``: the item's picture); an HNSW index with
  ``vector_cosine_ops`` serves the searches;
* ``gallery_meta``: the descriptor size and space (the model whose descriptors the table
  holds: ``ModelContract.space``) and the fingerprint of the shipped gallery that seeded it.

The shipped gallery is copied in once, in one transaction, by the first replica to take a
session advisory lock; replicas starting together wait on the lock and find it seeded.
A shipped item deleted by a user stays deleted (it is a row like any other).

Writes run in autocommit: a 2xx means PostgreSQL committed it (``synchronous_commit``), so
an acknowledged item survives a ``kill -9`` of the service. Connections come from a pool
that checks each one before use; while the database is away every call raises
:class:`GalleryUnavailable` (the service answers 503 with ``Retry-After``) and the pool
reconnects when it is back.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool, PoolTimeout

from service.gallery.interface import (
    DuplicateId,
    GalleryUnavailable,
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

# pg_advisory_lock's key for schema creation and seeding ("SHAPES" in ASCII).
SEED_LOCK_KEY = 0x534841504553
# Candidates the HNSW graph search keeps; iterative scans go on past it (in distance order)
# until ``k`` rows pass a label filter.
EF_SEARCH = 100


def vector_text(vector: np.ndarray) -> str:
    """pgvector's text form of a float32 vector; ``repr`` of each value round-trips exactly."""
    return "[" + ",".join(map(repr, np.asarray(vector, np.float32).tolist())) + "]"


def parse_vector(text: str) -> np.ndarray:
    return np.asarray(text[1:-1].split(","), dtype=np.float32)


def base_fingerprint(base: BaseGallery) -> str:
    """What identifies a shipped gallery: its ids, labels and descriptors."""
    digest = hashlib.sha256()
    for item_id, label in zip(base.ids, base.labels, strict=True):
        digest.update(f"{item_id}\0{label}\0".encode())
    digest.update(np.ascontiguousarray(base.descriptors, np.float32).tobytes())
    return f"{len(base.ids)}:{digest.hexdigest()[:32]}"


class PostgresGallery:
    """The gallery on one PostgreSQL database with pgvector; safe for several processes."""

    def __init__(
        self,
        base: BaseGallery,
        url: str,
        *,
        pool_size: int = 4,
        connect_timeout_s: float = 60.0,
        wait_s: float = 3.0,
        space: str | None = None,
    ) -> None:
        """``space``: the served model's descriptor space (``ModelContract.space``); a
        database changed in another space is refused. None: only the size is checked."""
        self.descriptor_size = int(base.descriptors.shape[1])
        self.space = space
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "connect_timeout": max(1, round(wait_s))},
            configure=self._configure,
            check=ConnectionPool.check_connection,
            timeout=wait_s,  # how long a call waits for a connection before it is a 503
            reconnect_timeout=float("inf"),  # keep trying while the database is away
            name="gallery",
            open=False,
        )
        self._pool.open(wait=False)
        deadline = time.monotonic() + connect_timeout_s
        while True:
            try:
                self._set_up(base)
                break
            except GalleryUnavailable as exc:
                if time.monotonic() > deadline:
                    self._pool.close()
                    raise RuntimeError(
                        f"the gallery database is unreachable after {connect_timeout_s:.0f} s: "
                        f"{exc.__cause__ or exc}"
                    ) from exc
                log.warning("waiting for the gallery database: %s", exc.__cause__ or exc)
                time.sleep(1.0)
            except BaseException:
                self._pool.close()
                raise

    @staticmethod
    def _configure(connection: psycopg.Connection[Any]) -> None:
        # Set before pgvector is loaded, these are placeholders it takes over when it loads.
        connection.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
        connection.execute("SET hnsw.iterative_scan = strict_order")

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as connection:
                yield connection
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise GalleryUnavailable(f"the gallery database is unavailable: {exc}") from exc

    # -- schema and seeding

    def _set_up(self, base: BaseGallery) -> None:
        size = self.descriptor_size
        with self._connection() as connection:
            connection.execute("SELECT pg_advisory_lock(%s)", (SEED_LOCK_KEY,))
            try:
                with connection.transaction():
                    connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
                    connection.execute(
                        "CREATE TABLE IF NOT EXISTS gallery_meta "
                        "(key text PRIMARY KEY, value text NOT NULL)"
                    )
                    stored = dict(
                        connection.execute(
                            "SELECT key, value FROM gallery_meta "
                            "WHERE key IN ('descriptor_size', 'descriptor_space')"
                        ).fetchall()
                    )
                    old_size, old_space = (
                        stored.get("descriptor_size"),
                        stored.get("descriptor_space"),
                    )
                    if not same_descriptors(old_size, old_space, size, self.space):
                        self._reseed_for_another_model(connection, base, old_size, old_space)
                    connection.execute(
                        "INSERT INTO gallery_meta VALUES ('descriptor_size', %s) "
                        "ON CONFLICT (key) DO NOTHING",
                        (str(size),),
                    )
                    if self.space is not None:
                        connection.execute(
                            "INSERT INTO gallery_meta VALUES ('descriptor_space', %s) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            (self.space,),
                        )
                    connection.execute(
                        "CREATE TABLE IF NOT EXISTS gallery_items ("
                        ' id text COLLATE "C" PRIMARY KEY,'
                        ' label text COLLATE "C" NOT NULL,'
                        f" descriptor vector({size}) NOT NULL,"
                        " metadata json,"
                        " thumbnail bytea)"
                    )
                    self._seed(connection, base)
                    # After the seeding: one bulk build of the graph, not one insert per item.
                    connection.execute(
                        "CREATE INDEX IF NOT EXISTS gallery_items_descriptor ON gallery_items "
                        "USING hnsw (descriptor vector_cosine_ops)"
                    )
                    connection.execute(
                        "CREATE INDEX IF NOT EXISTS gallery_items_label "
                        "ON gallery_items (label, id)"
                    )
            finally:
                if not connection.closed:
                    connection.execute("SELECT pg_advisory_unlock(%s)", (SEED_LOCK_KEY,))

    def _reseed_for_another_model(
        self,
        connection: psycopg.Connection[Any],
        base: BaseGallery,
        old_size: str | None,
        old_space: str | None,
    ) -> None:
        """The database was seeded by a model with other descriptors (``old_size`` numbers, in
        ``old_space``). If it holds just the shipped gallery's items (nothing added or
        deleted: what a service made before the model was upgraded), its tables are emptied
        to be seeded again; otherwise it is refused (another model's descriptors cannot be
        compared)."""
        rows = connection.execute("SELECT id, label FROM gallery_items").fetchall()
        shipped = {(str(i), str(label)) for i, label in zip(base.ids, base.labels, strict=True)}
        if {(str(i), str(label)) for i, label in rows} != shipped:
            raise RuntimeError(
                another_model(
                    "the gallery database",
                    old_size,
                    old_space,
                    self.descriptor_size,
                    self.space,
                    "point SHAPES_DATABASE_URL at a new database",
                )
            )
        log.info(
            "the gallery database held the shipped items of %s (%s-number descriptors) and "
            "nothing else; seeding it again for %s (%d)",
            old_space,
            old_size,
            self.space,
            self.descriptor_size,
        )
        connection.execute("DROP TABLE gallery_items")
        connection.execute("DELETE FROM gallery_meta")

    def _seed(self, connection: psycopg.Connection[Any], base: BaseGallery) -> None:
        fingerprint = base_fingerprint(base)
        row = connection.execute(
            "SELECT value FROM gallery_meta WHERE key = 'seeded_from'"
        ).fetchone()
        if row is not None:
            if row[0] != fingerprint:
                log.warning(
                    "the gallery database was seeded from another shipped gallery (%s, this "
                    "one is %s); its items are kept as they are",
                    row[0],
                    fingerprint,
                )
            return
        copy_sql = "COPY gallery_items (id, label, descriptor, thumbnail) FROM STDIN"
        with connection.cursor() as cursor, cursor.copy(copy_sql) as copy:
            for i, (item_id, label) in enumerate(zip(base.ids, base.labels, strict=True)):
                row = (str(item_id), str(label), vector_text(base.descriptors[i]))
                copy.write_row((*row, base.thumbnail(i)))
        connection.execute("INSERT INTO gallery_meta VALUES ('seeded_from', %s)", (fingerprint,))
        log.info("seeded the gallery database with %d shipped items", len(base.ids))

    # -- the Gallery interface

    def count(self, label: str | None = None) -> int:
        with self._connection() as connection:
            if label is None:
                row = connection.execute("SELECT count(*) FROM gallery_items").fetchone()
            else:
                row = connection.execute(
                    "SELECT count(*) FROM gallery_items WHERE label = %s", (label,)
                ).fetchone()
        return int(row[0]) if row else 0

    def add(self, item: Item) -> None:
        descriptor = normalize_descriptor(item.descriptor, self.descriptor_size)
        metadata = check_metadata(item.metadata)
        thumbnail = check_thumbnail(item.thumbnail)
        with self._connection() as connection:
            try:
                connection.execute(
                    "INSERT INTO gallery_items VALUES (%s, %s, %s::vector, %s::json, %s)",
                    (item.id, item.label, vector_text(descriptor), metadata, thumbnail),
                )  # autocommit: committed when this returns
            except errors.UniqueViolation:
                raise DuplicateId(f"id {item.id!r} is already in the gallery") from None

    def delete(self, item_id: str) -> bool:
        with self._connection() as connection:
            cursor = connection.execute("DELETE FROM gallery_items WHERE id = %s", (item_id,))
            return cursor.rowcount > 0

    def get(self, item_id: str) -> Item | None:
        with self._connection() as connection:
            row = connection.execute(
                "SELECT id, label, descriptor::text, metadata FROM gallery_items WHERE id = %s",
                (item_id,),
            ).fetchone()
        return None if row is None else Item(row[0], row[1], parse_vector(row[2]), row[3])

    def list_items(
        self, offset: int, limit: int, label: str | None = None
    ) -> tuple[list[Item], int]:
        where, params = ("WHERE label = %s", [label]) if label is not None else ("", [])
        with self._connection() as connection, connection.transaction():
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            total = connection.execute(
                f"SELECT count(*) FROM gallery_items {where}", params
            ).fetchone()
            rows = connection.execute(
                "SELECT id, label, descriptor::text, metadata FROM gallery_items "
                f"{where} ORDER BY id OFFSET %s LIMIT %s",
                [*params, offset, limit],
            ).fetchall()
        items = [Item(r[0], r[1], parse_vector(r[2]), r[3]) for r in rows]
        return items, int(total[0]) if total else 0

    def search(self, descriptor: np.ndarray, k: int, label: str | None = None) -> list[Hit]:
        query = vector_text(normalize_descriptor(descriptor, self.descriptor_size))
        where, params = ("WHERE label = %s", [label]) if label is not None else ("", [])
        with self._connection() as connection:
            rows = connection.execute(
                "SELECT id, label, descriptor <=> %s::vector AS distance, metadata "
                f"FROM gallery_items {where} ORDER BY distance LIMIT %s",
                [query, *params, k],
            ).fetchall()
        return [
            hit(item_id, item_label, 1.0 - distance, metadata)
            for item_id, item_label, distance, metadata in rows
        ]

    def thumbnail(self, item_id: str) -> bytes | None:
        with self._connection() as connection:
            row = connection.execute(
                "SELECT thumbnail FROM gallery_items WHERE id = %s", (item_id,)
            ).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def close(self) -> None:
        self._pool.close()
