"""Any OBJ -> (vertices, faces) in time linear in its size: only ``v`` and ``f`` statements count.

The map depends on the surface only, so of an OBJ's statements :func:`read_obj` takes the
``v`` positions (the first three numbers of each; a ``w`` or colours after them are dropped)
and the ``f`` faces (``a``, ``a/t``, ``a//n`` or ``a/t/n``: the vertex index ``a``), polygons
split as trimesh splits them (a quad ``abcd`` into ``abc`` and ``cda``, larger ones into a fan
from their first corner; a line of fewer than three corners is skipped, as there). Every other
statement (``vt vn vp``, ``g o s``, ``usemtl mtllib``, ``l p``, free-form geometry...) is
skipped unread. trimesh's reader made a mesh per material and named each by trying
``name_1``, ``name_2``... in turn: quadratic in the ``usemtl`` lines (20k of them, 429 KB:
78 s), then merged the meshes (another ~0.25 ms each).

A negative index counts back from the newest vertex defined above its line (``-1`` is that
vertex), as the OBJ specification says; trimesh counted back from the file's last vertex.
Index 0 is refused (indices start at 1). Comments (``#`` to the line's end), ``\\`` at a
line's end (the next line continues it), CR LF, tabs and leading spaces are accepted;
:func:`obj_text` takes a UTF-8 byte order mark off and turns UTF-16 (marked) into UTF-8.

Whole arrays throughout (numpy, C-speed regular expressions, and
:func:`~raymap.text_numbers.parse_numbers` for the numbers, numpy's values bit for bit), no
Python per line; an error names the line, counted in the file as uploaded.
"""

from __future__ import annotations

import codecs
import re

import numpy as np

from raymap.errors import MeshError
from raymap.text_numbers import parse_numbers

_BLANKS = bytes.maketrans(b"\t\r\v\f", b"    ")  # one separator within a line: the space
_COMMENT = re.compile(rb"#[^\n]*")
_CONTINUATION = re.compile(rb"\\ *\n")
_LEADING_SPACES = re.compile(rb"^ +", re.MULTILINE)
# Bytes that are no part of a JSON number: then each token is checked before float() reads it
# (float() also takes "1_0" and "infinity", which OBJ writers do not mean).
_NOT_NUMBER_BYTES = re.compile(rb"[^0-9.eE+\- \n]")
_FLOAT_TOKEN = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|nan|inf)", re.IGNORECASE
)
_SPACE, _NEWLINE = ord(" "), ord("\n")


def obj_text(data: bytes) -> bytes:
    """``data`` without a leading UTF-8 byte order mark; UTF-16 text (with its mark) as UTF-8."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :]
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError as exc:
            raise MeshError(
                f"cannot read the OBJ file: it starts with a UTF-16 mark but is no UTF-16 "
                f"text ({exc.reason} at byte {exc.start})"
            ) from exc
    return data


def read_obj(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3) float64, faces (F, 3) int64, 0-based) of the OBJ text ``data`` (as
    :func:`obj_text` gives it); :class:`MeshError` for a token that is no number, a face
    index that is 0, not whole, or out of range. Vertices of other widths than 3 (all the
    same) come as they are, for :func:`raymap.mesh.validate_mesh` to name."""
    text = _statements(data)
    chars = np.frombuffer(text, dtype=np.uint8)
    line_ends = np.flatnonzero(chars == _NEWLINE)  # text ends with one: a line each
    line_starts = np.concatenate(([0], line_ends[:-1] + 1))
    keyword = chars[line_starts]
    after = chars[np.minimum(line_starts + 1, len(chars) - 1)]
    alone = (after == _SPACE) | (after == _NEWLINE)  # "v", not "vt" or "vn"
    v_lines = np.flatnonzero((keyword == ord("v")) & alone)
    f_lines = np.flatnonzero((keyword == ord("f")) & alone)
    lines = _Lines(text, line_starts)
    vertices = _vertices(chars, line_ends, v_lines, lines)
    faces = _faces(chars, line_ends, f_lines, v_lines, len(vertices), lines)
    return vertices, faces


class _Lines:
    """Line numbers of statements, as the uploaded file counts them, for error messages."""

    def __init__(self, text: bytes, line_starts: np.ndarray) -> None:
        self.text, self.line_starts = text, line_starts

    def number(self, line: int) -> int:
        return self.text.count(b"\n", 0, int(self.line_starts[line])) + 1


def _statements(data: bytes) -> bytes:
    """One statement a line, its keyword first, single spaces for whitespace, no comments,
    ending with a line end; as many line ends as ``data`` (a continued line's move to the
    end of the statement), so a statement's line number is the one it starts on."""
    text = data.translate(_BLANKS)
    if b"#" in text:
        text = _COMMENT.sub(b"", text)
    if not text.endswith(b"\n"):
        text += b"\n"
    if b"\\" in text:
        text = _join_continued_lines(text)
    if text.startswith(b" ") or b"\n " in text:
        text = _LEADING_SPACES.sub(b"", text)
    return text


def _join_continued_lines(text: bytes) -> bytes:
    """``a \\`` then ``b`` -> ``a  b`` and an empty line after it (rare: a loop per join)."""
    pieces = _CONTINUATION.split(text)
    joined, pending = [pieces[0]], 0
    for piece in pieces[1:]:
        pending += 1
        end = piece.find(b"\n")
        if end < 0:  # continued again (or the file ends)
            joined.append(b" " + piece)
            continue
        joined.append(b" " + piece[: end + 1] + b"\n" * pending + piece[end + 1 :])
        pending = 0
    return b"".join(joined) + b"\n" * pending


def _bodies(chars: np.ndarray, line_ends: np.ndarray, lines: np.ndarray) -> bytes:
    """The text of ``lines`` after their one-letter keyword, line ends included."""
    starts = np.concatenate(([0], line_ends[:-1] + 1))[lines]
    inside = np.zeros(len(chars) + 1, dtype=np.int8)
    inside[starts + 1] = 1  # the byte after the keyword: a space or the line end
    inside[line_ends[lines] + 1] = -1
    return chars[np.cumsum(inside[:-1], dtype=np.int8).view(bool)].tobytes()


def _without_slashed(body: bytes) -> bytes:
    """Each ``a/t/n`` as ``a``: from a slash after a digit to the token's end (a regular
    expression took 0.3 s on 500k faces; this ~0.05 s)."""
    chars = np.frombuffer(body, dtype=np.uint8)
    slashes = np.flatnonzero(chars == ord("/"))
    slashes = slashes[(chars[slashes - 1] >= ord("0")) & (chars[slashes - 1] <= ord("9"))]
    if slashes.size == 0:  # "/1": no index before the slash, which the number parser refuses
        return body
    separators = np.flatnonzero((chars == _SPACE) | (chars == _NEWLINE))
    ends = separators[np.searchsorted(separators, slashes)]  # body ends with a line end
    first = np.concatenate(([True], ends[1:] != ends[:-1]))  # a token's first such slash
    cut = np.zeros(len(chars) + 1, dtype=np.int8)
    cut[slashes[first]], cut[ends[first]] = 1, -1
    return chars[~np.cumsum(cut[:-1], dtype=np.int8).view(bool)].tobytes()


def _token_counts(body: bytes, n_lines: int) -> np.ndarray:
    """Tokens on each line of ``body`` (which starts with a space or a line end)."""
    chars = np.frombuffer(body, dtype=np.uint8)
    separator = (chars == _SPACE) | (chars == _NEWLINE)
    token_starts = np.flatnonzero(separator[:-1] & ~separator[1:]) + 1
    line_of_token = np.searchsorted(np.flatnonzero(chars == _NEWLINE), token_starts)
    return np.bincount(line_of_token, minlength=n_lines)


def _numbers(body: bytes, counts: np.ndarray, lines: np.ndarray, where: _Lines) -> np.ndarray:
    """The numbers in ``body`` (``counts`` a line), by simdjson, or float() for the tokens it
    does not take (``nan``, ``+1``, ``.5``...); :class:`MeshError` for a token that is none."""
    values = parse_numbers(body)
    if values is not None:
        return values
    tokens = body.split()
    if _NOT_NUMBER_BYTES.search(body) is not None:
        for k, token in enumerate(tokens):
            if _FLOAT_TOKEN.fullmatch(token) is None:
                _refuse_token(token, k, counts, lines, where)
    try:
        return np.array(tokens, dtype=np.float64)
    except ValueError:  # "1-2", "1e", "+-1": find which
        for k, token in enumerate(tokens):
            try:
                float(token)
            except ValueError:
                _refuse_token(token, k, counts, lines, where)
        raise


def _refuse_token(token: bytes, k: int, counts: np.ndarray, lines: np.ndarray, where: _Lines):
    line = lines[np.searchsorted(np.cumsum(counts), k, side="right")]
    shown = token.decode("utf-8", "replace")[:40]
    raise MeshError(
        f"cannot read the OBJ file: line {where.number(line)} has {shown!r}, which is not a number"
    )


def _vertices(
    chars: np.ndarray, line_ends: np.ndarray, v_lines: np.ndarray, where: _Lines
) -> np.ndarray:
    if len(v_lines) == 0:
        return np.zeros((0, 3))
    body = _bodies(chars, line_ends, v_lines)
    counts = _token_counts(body, len(v_lines))
    values = _numbers(body, counts, v_lines, where)
    if (counts == 3).all():
        return values.reshape(-1, 3)
    width = int(counts.min())
    if width < 3:
        if (counts == width).all():  # "v x y" throughout: validate_mesh names the width
            return values.reshape(len(counts), width)
        line = where.number(v_lines[np.argmin(counts)])
        raise MeshError(
            f"line {line} of the OBJ file has a vertex of {width} coordinates; a 3D mesh needs 3"
        )
    first = np.cumsum(counts) - counts
    return values[first[:, None] + np.arange(3)]  # (V, 3): x y z, then w or colours dropped


def _faces(
    chars: np.ndarray,
    line_ends: np.ndarray,
    f_lines: np.ndarray,
    v_lines: np.ndarray,
    n_vertices: int,
    where: _Lines,
) -> np.ndarray:
    if len(f_lines) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    body = _bodies(chars, line_ends, f_lines)
    if b"/" in body:
        body = _without_slashed(body)
    counts = _token_counts(body, len(f_lines))
    values = _numbers(body, counts, f_lines, where)
    line_of_corner = np.repeat(np.arange(len(f_lines)), counts)

    def first_of(bad: np.ndarray) -> tuple[int, str]:
        """The line number and the index of the first corner in ``bad``."""
        k = int(np.flatnonzero(bad)[0])
        value = values[k]
        shown = (
            str(int(value)) if np.isfinite(value) and value == int(value) else repr(float(value))
        )
        return where.number(f_lines[line_of_corner[k]]), shown

    whole = np.isfinite(values) & (values == np.trunc(values))
    if not whole.all():
        line, shown = first_of(~whole)
        raise MeshError(
            f"cannot read the OBJ file: line {line} has the face index {shown}, not a whole number"
        )
    if (values == 0).any():
        line, _ = first_of(values == 0)
        raise MeshError(f"OBJ face indices start at 1; line {line} has 0")
    # A relative index counts back from the newest vertex above its line.
    defined = np.searchsorted(v_lines, f_lines)[line_of_corner]  # vertices above each corner
    resolved = np.where(values < 0, defined + values, values - 1)
    if (resolved < 0).any():
        line, shown = first_of(resolved < 0)
        above = int(defined[np.flatnonzero(resolved < 0)[0]])
        raise MeshError(
            f"face indices out of range: line {line} of the OBJ file has {shown}, but only "
            f"{above} vertices are defined above it"
        )
    if (resolved >= n_vertices).any():
        line, shown = first_of(resolved >= n_vertices)
        raise MeshError(
            f"face indices out of range: line {line} of the OBJ file has {shown}, but there "
            f"are {n_vertices} vertices"
        )
    corners = resolved.astype(np.int64)
    if (counts == 3).all():
        return corners.reshape(-1, 3)
    return corners[_triangle_corners(counts)]


def _triangle_corners(counts: np.ndarray) -> np.ndarray:
    """(T, 3) positions in the flat corner list of each polygon's triangles, as trimesh splits
    them: ``abc`` and ``cda`` for a quad, a fan ``abc acd ade...`` for more corners."""
    first = np.cumsum(counts) - counts
    polygon = counts >= 3
    first, sides = first[polygon], counts[polygon]
    n_triangles = sides - 2
    start = np.repeat(first, n_triangles)
    k = np.arange(int(n_triangles.sum())) - np.repeat(
        np.cumsum(n_triangles) - n_triangles, n_triangles
    )
    triangles = np.stack([start, start + k + 1, start + k + 2], axis=1)  # (T, 3)
    quad_second = (np.repeat(sides, n_triangles) == 4) & (k == 1)
    triangles[quad_second] = triangles[quad_second][:, [1, 2, 0]]  # acd -> cda
    return triangles
