"""Whitespace-separated decimal numbers in bytes -> float64, at C speed without Python tokens.

``parse_numbers(text)`` gives the same array as ``np.array(text.split(), dtype=np.float64)``
(and ``np.loadtxt``: all round correctly), bit for bit, or ``None``: for a byte that is
neither ASCII whitespace (space, tab, CR, LF) nor part of a number (``0-9 . - + e E``), or a
token that is not a JSON number or past 64 bits (``+1``, ``.5``, ``5.``, ``007``, ``1e999``,
``1.2.3``, a whole number of 2**64 or more).
The caller then asks numpy, whose values and errors it knows.

How: the whitespace becomes commas (runs squeezed to one), the text a JSON array, and
simdjson (``pysimdjson``: SIMD parsing, correctly rounded numbers) reads it into a float64
buffer, with no Python object per number. JSON reads ``-0`` as the integer 0 (numpy: -0.0),
so such a token is written ``-0.0`` first.

``parse_lettered_rows(block, letter)`` reads lines of a letter and three numbers (an OBJ's
``v`` and ``f`` blocks) the same way without rewriting the text: their layout is proven from
where the spaces and line ends are, and the letters become JSON whitespace in place.
"""

from __future__ import annotations

import itertools

import numpy as np
import simdjson

from raymap.errors import MeshError

_NUMBER_BYTES = b"0123456789.-+eE"
_WHITESPACE = b" \t\r\n"
# One pass: whitespace -> ",", a number's bytes kept, any other byte -> "x", which no JSON
# number, literal or structure has (so simdjson refuses the text).
_AS_JSON = bytes(
    ord(",") if byte in _WHITESPACE else byte if byte in _NUMBER_BYTES else ord("x")
    for byte in range(256)
)


# simdjson holds the GIL while it parses: a megabyte at a time lets the service's event loop
# and other threads in between on a file of many megabytes.
_PIECE_BYTES = 1 << 20


def parse_numbers(text: bytes) -> np.ndarray | None:
    """The numbers in ``text`` as a float64 array, or ``None`` (see the module docstring)."""
    commas = text.translate(_AS_JSON)
    while b",," in commas:  # runs of whitespace: each pass halves them
        commas = commas.replace(b",,", b",")
    commas = commas.strip(b",")
    if not commas:
        return np.zeros(0)
    if commas.startswith(b"-0,") or commas.endswith(b"-0") or b",-0," in commas:
        commas = _negative_zeros_as_floats(commas)
    pieces = []
    start = 0
    while start < len(commas):
        stop = commas.find(b",", start + _PIECE_BYTES)
        stop = len(commas) if stop < 0 else stop
        values = _json_numbers(commas[start:stop])
        if values is None:
            return None
        pieces.append(values)
        start = stop + 1
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def _json_numbers(commas: bytes) -> np.ndarray | None:
    """Comma-separated numbers (no empty field) read by simdjson, or ``None``."""
    return _json_array(b"[" + commas + b"]")


def _json_array(document: bytes | memoryview) -> np.ndarray | None:
    """A JSON array of numbers read by simdjson, or ``None``."""
    try:
        parsed = simdjson.Parser().parse(document)
        return np.frombuffer(parsed.as_buffer(of_type="d"), dtype=np.float64)
    except (ValueError, RuntimeError):  # no JSON number, or one past 64 bits (simdjson says)
        return None


def _negative_zeros_as_floats(commas: bytes) -> bytes:
    """Each ``-0`` token as ``-0.0``: JSON reads ``-0`` as the integer 0, numpy as -0.0."""
    framed = b"," + commas + b","
    while b",-0," in framed:  # a pass skips a token right after one it replaced
        framed = framed.replace(b",-0,", b",-0.0,")
    return framed[1:-1]


def counted_triangles(values: np.ndarray, file_kind: str) -> np.ndarray | None:
    """``values`` read as rows of ``3 a b c`` (OFF's and PLY's face lists; the size a multiple
    of 4): the (F, 3) int64 indices, ``None`` when a row counts other than three corners
    (polygons: trimesh triangulates them), :class:`MeshError` for an index that is no whole
    number."""
    rows = values.reshape(-1, 4)
    if not (rows[:, 0] == 3).all():
        return None
    faces = rows[:, 1:].astype(np.int64)
    if not (faces == rows[:, 1:]).all():
        raise MeshError(f"cannot read the {file_kind} file: a face index is not a whole number")
    return faces


def _rows_as_json() -> bytes:
    """For :func:`parse_lettered_rows`: a space or LF -> ",", CR -> JSON whitespace, a
    number's bytes kept, any other byte (tab, a letter) -> "x", which JSON refuses."""
    table = bytearray(b"x" * 256)
    for byte in _NUMBER_BYTES:
        table[byte] = byte
    table[ord(" ")] = table[ord("\n")] = ord(",")
    table[ord("\r")] = ord(" ")
    return bytes(table)


_ROWS_AS_JSON = _rows_as_json()
_SPACE, _NEWLINE = ord(" "), ord("\n")


def parse_lettered_rows(block: bytes, letter: bytes, width: int = 3) -> np.ndarray | None:
    """Lines ``<letter> a b c`` (``width`` numbers, one space before each, LF or CRLF ends,
    the last line ended too) as a (lines, width) float64 array, numpy's values bit for bit
    as :func:`parse_numbers`; ``None`` for any other layout or token.

    An OBJ's ``v`` and ``f`` blocks without rewriting the text: one ``translate`` makes
    every space and line end a comma, the positions of the spaces and line ends (numpy)
    prove the layout, the letters and the space after each become JSON whitespace, and
    simdjson reads the numbers in place.
    """
    if len(letter) != 1 or not block.endswith(b"\n"):
        return None
    if b"\r" in block and block.count(b"\r") != block.count(b"\r\n"):
        return None  # a CR inside a line: readers that split lines at CRs read it otherwise
    chars = np.frombuffer(block, dtype=np.uint8)
    line_ends = np.flatnonzero(chars == _NEWLINE)
    spaces = np.flatnonzero(chars == _SPACE)
    lines = len(line_ends)
    if len(spaces) != width * lines:
        return None
    starts = np.empty(lines, dtype=np.intp)
    starts[0], starts[1:] = 0, line_ends[:-1] + 1
    per_line = spaces.reshape(lines, width)
    # Each line's first space right after its letter, its last one before its end: with
    # ``width`` spaces per line in all, every line holds exactly ``width``.
    if not (
        (per_line[:, 0] == starts + 1).all()
        and (per_line[:, -1] < line_ends).all()
        and (chars[starts] == letter[0]).all()
    ):
        return None
    text = bytearray(block.translate(_ROWS_AS_JSON))
    writable = np.frombuffer(text, dtype=np.uint8)
    writable[starts] = _SPACE  # the letter
    writable[starts + 1] = _SPACE  # the space after it: no field before the first number
    # A JSON array per megabyte or so (simdjson holds the GIL while it parses): a piece ends
    # at a line's end, "]", and the next begins at the next line's letter, "[".
    cut_lines = np.unique(
        np.searchsorted(line_ends, np.arange(_PIECE_BYTES, len(block), _PIECE_BYTES))
    )
    cuts = line_ends[cut_lines[cut_lines < lines - 1]]
    writable[0], writable[-1] = ord("["), ord("]")
    writable[cuts], writable[cuts + 1] = ord("]"), ord("[")
    bounds = [0, *(cuts + 1).tolist(), len(text)]
    pieces = [_json_array(memoryview(text)[a:b]) for a, b in itertools.pairwise(bounds)]
    if any(piece is None for piece in pieces):
        return None
    values = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    if values.size != width * lines:
        return None
    zeros = np.flatnonzero(values == 0)
    if zeros.size:  # JSON reads the token -0 as the integer 0, numpy as -0.0
        negative = chars[spaces[zeros] + 1] == ord("-")  # each number follows its space
        values = values if values.flags.writeable else values.copy()
        values[zeros[negative]] = -0.0
    return values.reshape(lines, width)
