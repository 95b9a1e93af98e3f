"""Whitespace-separated decimal numbers in bytes -> float64, at C speed without Python tokens.

``parse_numbers(text)`` gives the same array as ``np.array(text.split(), dtype=np.float64)``
(and ``np.loadtxt``: both round correctly), bit for bit, or ``None`` when ``text`` holds a byte
that is neither ASCII whitespace (space, tab, CR, LF) nor part of a number (``0-9 . - + e E``),
or a token numpy would not read as a number: the caller then asks numpy, whose error it knows.

How, all in numpy: a token's last 16 bytes are two unaligned little-endian 8-byte words, each
read as eight ASCII digits with three multiplications (the SWAR trick of simdjson and
fast_float), the bytes before the token and its ``-`` sign masked to ``'0'`` and its dot
(found with the zero-byte test) counted as a ``'0'`` digit and removed afterwards. A token
with at most 15 digits and no exponent has an integer mantissa ``m < 10**15 < 2**53`` and a
scale ``k <= 15``, so ``m / 10**k`` is one correctly rounded division of two exact doubles
(Clinger's fast path): the value strtod gives. Any other token (an exponent, a ``+``, more
digits, two dots) is converted by numpy itself; a file of such tokens costs what it did.
"""

from __future__ import annotations

import re

import numpy as np

from raymap.errors import MeshError

_WORD = 8  # bytes per uint64 word
_MAX_BODY = 2 * _WORD  # digits and dot of a fast token: two words
_MAX_DIGITS = 15  # 10**15 < 2**53: the mantissa is an exact double
_PAD = b" " * (_MAX_BODY + 1)  # words ending at the first token start inside the buffer

_ONES = np.uint64(0x0101010101010101)
_ONES_BIT = np.uint64(1)
_HIGH_BITS = np.uint64(0x8080808080808080)
_ASCII_ZEROS = np.uint64(0x3030303030303030)
_ASCII_DOTS = np.uint64(0x2E2E2E2E2E2E2E2E)
_ABOVE_NINE = np.uint64(0x4646464646464646)  # + 0x46 sets bit 7 of a byte > '9'
_LOW_BYTES = np.uint64(0x000000FF000000FF)
_TIMES_100_AND_1E6 = np.uint64(100 + (1_000_000 << 32))
_TIMES_1_AND_1E4 = np.uint64(1 + (10_000 << 32))
# _KEEP_LAST_BYTES[n]: the bits of a word's last n bytes (the highest, little-endian)
_KEEP_LAST_BYTES = np.array([(1 << 64) - (1 << (64 - 8 * n)) for n in range(_WORD + 1)], np.uint64)
_POW10_INT = 10 ** np.arange(_MAX_BODY + 1, dtype=np.uint64)  # (17,)
_POW10_FLOAT = 10.0 ** np.arange(_MAX_BODY + 1)  # (17,) exact doubles up to 1e22
_NUMBER_BYTES = b"0123456789.-+eE"
_WHITESPACE = b" \t\r\n"
_IS_WHITESPACE = bytes(byte in _WHITESPACE for byte in range(256))  # a bytes.translate table
_ONE_WHITESPACE = re.compile(b"[" + re.escape(_WHITESPACE) + b"]")
# Parsed in pieces of about 64 KiB: every temporary array stays under glibc's mmap threshold
# (128 KiB) and comes from the heap, not from fresh pages that fault on first touch. The whole
# 371 KiB text of a 10k-face OFF at once took 1,600-2,800 page faults a call, and was slower
# than np.loadtxt; in pieces, 10-200 (pieces of 16 KiB: no faults, but 4x the numpy calls).
_PIECE_BYTES = 1 << 16


def parse_numbers(text: bytes) -> np.ndarray | None:
    """The numbers in ``text`` as a float64 array, or ``None`` (see the module docstring)."""
    if text.translate(None, _NUMBER_BYTES + _WHITESPACE):  # a byte no number has
        return None
    pieces = []
    start = 0
    while start < len(text):
        stop = _piece_end(text, start + _PIECE_BYTES)
        values = _parse_piece(text[start:stop])
        if values is None:
            return None
        pieces.append(values)
        start = stop
    return np.concatenate(pieces) if pieces else np.zeros(0)


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


def _piece_end(text: bytes, at: int) -> int:
    """The first whitespace at or after ``at``: a token boundary (``len(text)`` if none)."""
    found = _ONE_WHITESPACE.search(text, at)
    return len(text) if found is None else found.start()


def _parse_piece(piece: bytes) -> np.ndarray | None:
    """:func:`parse_numbers` of a piece of text that holds whole tokens."""
    padded = _PAD + piece + b" "
    chars = np.frombuffer(padded, dtype=np.uint8)
    space = np.frombuffer(padded.translate(_IS_WHITESPACE), dtype=np.bool_)
    inside = ~space
    starts = np.flatnonzero(space[:-1] & inside[1:]) + 1  # (T,)
    ends = np.flatnonzero(inside[:-1] & space[1:]) + 1  # (T,) exclusive
    words = np.ndarray((chars.size - _WORD + 1,), dtype="<u8", buffer=chars, strides=(1,))
    if b"." not in piece and b"-" not in piece:  # an OFF's faces: counts and indices
        whole = _short_whole_numbers(words, starts, ends)
        if whole is not None:
            return whole
    negative = chars[starts] == ord("-")  # (T,)
    body = ends - starts - negative  # (T,) bytes of digits and dot
    digits = _TokenDigits.of_words(words.take(ends - _WORD), body)
    long = np.flatnonzero(body > _WORD)  # coordinates, mostly; no face index
    if long.size:
        high = _TokenDigits.of_words(words.take(ends[long] - 2 * _WORD), body[long] - _WORD)
        digits.prepend(long, high)
    dots = _flagged_bytes(digits.dot_flags)  # (T,) in the low word
    dots[long] += _flagged_bytes(digits.high_dot_flags)
    has_dot = dots != 0
    fast = digits.valid & (dots <= 1) & (body <= _MAX_BODY)
    fast &= (body - has_dot >= 1) & (body - has_dot <= _MAX_DIGITS)
    values = digits.number.astype(np.float64)
    dotted = np.flatnonzero(has_dot & fast)
    if dotted.size:
        after_dot = digits.digits_after_dot(dotted)
        values[dotted] = _drop_dot_digit(digits.number[dotted], after_dot) / _POW10_FLOAT[after_dot]
    np.negative(values, out=values, where=negative)
    if not fast.all():
        slow = np.flatnonzero(~fast)
        converted = _numpy_conversion(piece, starts[slow] - len(_PAD), ends[slow] - len(_PAD))
        if converted is None:
            return None
        values[slow] = converted
    return values


def _short_whole_numbers(
    words: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray | None:
    """The tokens as numbers when every one is at most eight digits (no sign, no dot), else
    ``None``: one word per token, none of the dot and sign bookkeeping of the general path
    (an OFF's face lines are two thirds of its tokens)."""
    body = ends - starts
    if body.max(initial=0) > _WORD:
        return None
    digits, not_digits = _digit_bytes(_zeros_before(words.take(ends - _WORD), body))
    if not_digits.any():
        return None
    return _eight_digits(digits).astype(np.float64)


def _zeros_before(words: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """``words`` (T,) uint64 with all but their last ``inside`` bytes (``<= 0``: none) read as
    ``'0'``: what precedes a token, or its sign."""
    keep = _KEEP_LAST_BYTES.take(inside, mode="clip")
    return ((words ^ _ASCII_ZEROS) & keep) ^ _ASCII_ZEROS


def _digit_bytes(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(digit values per byte, a nonzero flag where a byte is no ASCII digit) of ``words``."""
    digits = words - _ASCII_ZEROS
    return digits, ((words + _ABOVE_NINE) | digits) & _HIGH_BITS


class _TokenDigits:
    """The last digits of each token read as one integer, its dot counted as a ``'0'``."""

    def __init__(self, number: np.ndarray, valid: np.ndarray, dot_flags: np.ndarray) -> None:
        self.number = number  # (T,) uint64
        self.valid = valid  # (T,) bool: only digits and dots, once the sign was masked
        self.dot_flags = dot_flags  # (T,) uint64: bit 8j + 7 where byte j is a dot
        self.high_rows = np.zeros(0, dtype=np.intp)  # rows with a high word, and its flags:
        self.high_dot_flags = np.zeros(0, dtype=np.uint64)

    @classmethod
    def of_words(cls, words: np.ndarray, inside: np.ndarray) -> _TokenDigits:
        """``words`` (T,) uint64 end at the token ends; the last ``inside`` bytes of each
        belong to the token's body (``<= 0``: none): the rest, the sign and what precedes
        the token, read as ``'0'``; a dot too, and it is flagged."""
        words = _zeros_before(words, inside)
        not_dot = words ^ _ASCII_DOTS  # a zero byte where the dot is
        dot_flags = (not_dot - _ONES) & ~not_dot & _HIGH_BITS  # exact: no byte is '/'
        words += dot_flags >> np.uint64(6)  # '.' + 2 == '0'
        digits, not_digits = _digit_bytes(words)
        return cls(_eight_digits(digits), not_digits == 0, dot_flags)

    def prepend(self, rows: np.ndarray, high: _TokenDigits) -> None:
        """Put ``high``, the eight digits before these at ``rows``, in front of them."""
        self.number[rows] += high.number * _POW10_INT[_WORD]
        self.valid[rows] &= high.valid
        self.high_rows, self.high_dot_flags = rows, high.dot_flags

    def digits_after_dot(self, rows: np.ndarray) -> np.ndarray:
        """(R,) intp: how many digits follow the one dot of each of these tokens."""
        after = _flagged_bytes(_bytes_after_flag(self.dot_flags[rows]))
        in_high = self.high_dot_flags != 0
        high_after = _WORD + _flagged_bytes(_bytes_after_flag(self.high_dot_flags))
        full = np.zeros(len(self.number), dtype=np.uint64)
        full[rows] = after
        full[self.high_rows[in_high]] = high_after[in_high]
        return full[rows].astype(np.intp)


def _eight_digits(digits: np.ndarray) -> np.ndarray:
    """(T,) uint64 words of eight byte digits 0-9, the first in the lowest byte -> their
    value: pairs, then quadruples, then the eight (fast_float's parse_eight_digits)."""
    pairs = digits * np.uint64(10) + (digits >> np.uint64(8))
    low_pairs = pairs & _LOW_BYTES
    high_pairs = (pairs >> np.uint64(16)) & _LOW_BYTES
    return (low_pairs * _TIMES_100_AND_1E6 + high_pairs * _TIMES_1_AND_1E4) >> np.uint64(32)


def _flagged_bytes(flags: np.ndarray) -> np.ndarray:
    """(T,) uint64 with bit 7 set in some bytes -> how many (np.bitwise_count needs numpy 2):
    one per flagged byte, summed into the top byte by one multiplication."""
    return ((flags >> np.uint64(7)) * _ONES) >> np.uint64(56)


def _bytes_after_flag(flags: np.ndarray) -> np.ndarray:
    """(T,) uint64 with bit 7 of one byte set -> bit 7 set in every byte after it instead."""
    return ~((flags << _ONES_BIT) - _ONES_BIT) & _HIGH_BITS


def _drop_dot_digit(number: np.ndarray, after_dot: np.ndarray) -> np.ndarray:
    """The digits without the ``'0'`` that stood for the dot: those left of it shift right."""
    right = number % _POW10_INT[after_dot]
    return right + (number - right) // np.uint64(10)


def _numpy_conversion(text: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray | None:
    """The tokens off the fast path, converted as ``np.array(tokens, dtype=float64)`` would."""
    tokens = [text[start:end] for start, end in zip(starts.tolist(), ends.tolist(), strict=True)]
    try:
        return np.array(tokens, dtype=np.float64)
    except ValueError:
        return None
