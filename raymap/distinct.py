"""Distinct positions among 3D points, compared by their bits (as raw bytes would compare).

An STL stores every corner of every triangle: three times the vertices of the mesh, which
the hull and the scene would otherwise carry. :func:`distinct_points` groups equal positions
by a 64-bit hash of their bits (:func:`position_hashes`).

The fast path (:func:`_by_table`) sorts only the distinct positions: a table indexed by the
hash's high bits finds each point's first occurrence (``np.minimum.at``, one pass; points
whose bucket's first is another position are grouped by sorting, below, among themselves),
then the first occurrences are sorted by the key of the sorting path, so the answer is that
path's, bit for bit. It matters where ``np.sort`` is a plain introsort (~60 ns an element:
a 10k-face STL's 30k corners took 1.2 ms to sort, more than the rest of the merge).

The sorting path sorts one integer per point, the hash's high bits with the point's index in
the low bits (``np.sort`` of integers, a SIMD sort where numpy has one for the CPU, ~4x faster
than ``np.argsort`` of the same keys): the runs of equal high bits are the groups, the low
bits the order. Every point is then checked against its group's first; a collision falls back
to the whole 64-bit hash (``argsort``), then to sorting the coordinates' bits
(``np.lexsort``), so the answer never depends on the hash.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Odd 64-bit constants (splitmix64's): the hash is sum(fold(bits_i) * C_i) modulo 2**64.
_HASH_MULTIPLIERS = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64
)
_HALF = np.uint64(32)
Groups = tuple[np.ndarray, np.ndarray]  # (order, starts): see _equal_runs
# The first-occurrence table has at least 2N buckets up to this many bits (2 ** 22 int32: 16 MB;
# beyond ~2M points more of them share a bucket and are grouped by sorting, below).
_MAX_TABLE_BITS = 22


def distinct_points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, inverse) for (N, 3) float64 ``points``, N >= 1: ``first`` (U,) indexes one
    point of each distinct position (in the order of their keys), ``inverse`` (N,) int64 the
    position of each point in ``points[first]``, so ``points[first][inverse] == points``."""
    bits = np.ascontiguousarray(points, dtype=np.float64).view(np.uint64)  # (N, 3)
    hashes = position_hashes(bits)
    found = _by_table(bits, hashes)
    return found if found is not None else _by_sorting(bits, hashes)


def _by_sorting(bits: np.ndarray, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`distinct_points` by sorting every point's key (the module's docstring)."""
    ways: list[Callable[[], Groups]] = [
        lambda: _packed_runs(hashes),
        lambda: _equal_runs(hashes),
        lambda: _equal_runs(bits, np.lexsort((bits[:, 2], bits[:, 1], bits[:, 0]))),
    ]
    for way in ways:
        order, starts = way()
        inverse = np.empty(len(order), dtype=np.int64)
        inverse[order] = np.cumsum(starts) - 1
        first = order[starts]
        if way is ways[-1] or _same_as_first(bits, first[inverse]):
            break
    return first, inverse


def _by_table(
    bits: np.ndarray, hashes: np.ndarray, table_bits: int | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_by_sorting`'s answer, sorting only the first occurrence of each position; or
    ``None`` when two positions share the high bits of their hashes (the sorting path tells
    them apart). ``table_bits``: the table's size (default: 2N buckets or more, at most
    ``2 ** _MAX_TABLE_BITS``)."""
    n = len(hashes)
    index_bits = _index_bits(n)  # as _packed_runs packs them
    table_bits = table_bits or min(_MAX_TABLE_BITS, max(1, (2 * n - 1).bit_length()))
    bucket = (hashes >> np.uint64(64 - table_bits)).astype(np.intp)
    table = np.full(1 << table_bits, n, dtype=np.int32 if n < 2**31 else np.int64)
    np.minimum.at(table, bucket, np.arange(n, dtype=table.dtype))  # each bucket's first point
    first_seen = table[bucket].astype(np.int64)
    other = ~_same_rows(bits, first_seen)  # the bucket's first is another position
    if other.any():
        # These are whole groups (a position's points share their bucket): their firsts by
        # sorting among themselves, the least index of each group.
        rows = np.flatnonzero(other)
        _, group = _by_sorting(bits[rows], hashes[rows])
        least = np.full(int(group.max()) + 1, n, dtype=np.int64)
        np.minimum.at(least, group, rows)
        first_seen[rows] = least[group]
    firsts = np.flatnonzero(first_seen == np.arange(n))  # one per position, in index order
    first, high = _sorted_packed(hashes[firsts], firsts, index_bits)
    if bool((high[1:] == high[:-1]).any()):
        return None
    rank = np.empty(n, dtype=np.int64)
    rank[first] = np.arange(len(first))
    return first, rank[first_seen]


def _same_rows(bits: np.ndarray, other: np.ndarray) -> np.ndarray:
    """(N,) bool: whether each point's bits equal those of point ``other[i]`` (column by
    column: one gather of a 1-D column each, ~6x faster than gathering (N, 3) rows)."""
    same = np.ones(len(bits), dtype=bool)
    for column in bits.T:
        same &= column[other] == column
    return same


def position_hashes(bits: np.ndarray) -> np.ndarray:
    """(N,) uint64 hashes of (N, 3) uint64 coordinate bits: each coordinate's high half is
    folded onto its low half before the multiply-add. Without the fold, the float64 bits of
    a float32 value (every STL coordinate) end in 29 zero bits, so the hash kept 35 bits and
    the corners of a 500k-face STL collided (and took the lexsort: 2.5x the time)."""
    return (bits ^ (bits >> _HALF)) @ _HASH_MULTIPLIERS


def _same_as_first(bits: np.ndarray, representative: np.ndarray) -> bool:
    """Whether every point's bits equal its representative's."""
    return bool(_same_rows(bits, representative).all())


def _index_bits(n: int) -> int:
    """The low bits that hold a point's index among ``n`` in a packed key."""
    return max(1, (n - 1).bit_length())


def _sorted_packed(
    hashes: np.ndarray, indices: np.ndarray, index_bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keys of the hashes' high bits with each point's index in the low ``index_bits``, sorted
    (one ``np.sort`` of integers): the indices (int64) and the high bits in that order."""
    low = np.uint64((1 << index_bits) - 1)
    packed = (hashes & ~low) | indices.astype(np.uint64, copy=False)
    packed.sort()
    return (packed & low).astype(np.int64), packed >> np.uint64(index_bits)


def _packed_runs(hashes: np.ndarray) -> Groups:
    """:func:`_equal_runs` of ``hashes`` by their high bits, from one ``np.sort`` of the high
    bits with each point's index in the low bits (within a run, points keep their order)."""
    n = len(hashes)
    order, high = _sorted_packed(hashes, np.arange(n, dtype=np.uint64), _index_bits(n))
    starts = np.empty(len(order), dtype=bool)
    starts[0] = True
    np.not_equal(high[1:], high[:-1], out=starts[1:])
    return order, starts


def _equal_runs(keys: np.ndarray, order: np.ndarray | None = None) -> Groups:
    """``order`` sorting ``keys`` (rows or scalars; argsort if not given) and where each run
    of equal keys starts in that order."""
    if order is None:
        order = np.argsort(keys)
    ordered = keys[order]
    starts = np.empty(len(order), dtype=bool)
    starts[0] = True
    different = ordered[1:] != ordered[:-1]
    starts[1:] = different.any(axis=1) if different.ndim == 2 else different
    return order, starts
