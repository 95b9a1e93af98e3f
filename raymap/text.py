"""Whitespace-separated decimal numbers -> float64 at C speed, exactly as ``strtod`` reads them.

Mesh files in text (OFF, OBJ's ``v``/``f`` lines, ASCII PLY) are mostly plain decimals:
``[+-]digits[.digits]``. Turning 60,000 such tokens into Python objects and then floats costs
more than all the ray casting of a mesh, so :func:`parse_decimals` reads them with a handful
of whole-array numpy passes instead: each token's digits are summed as an exact integer
mantissa (at most 15 significant digits, so every partial sum is exact in float64) and divided
once by an exact power of ten, which IEEE division rounds correctly: the result is
bit-identical to ``float(token)``. Anything else (exponents, ``nan``, ``inf``, longer
mantissas, stray characters) returns ``None`` and the caller takes its slower general path.
"""

from __future__ import annotations

import numpy as np

_MAX_DIGITS = 15  # 10**15 < 2**53: every mantissa and partial sum is an exact float64
_POW10 = 10.0 ** np.arange(_MAX_DIGITS + 1)
_MINUS, _PLUS, _DOT, _ZERO = ord("-"), ord("+"), ord("."), ord("0")


def parse_decimals(text: bytes | memoryview) -> np.ndarray | None:
    """The whitespace-separated plain decimals of ``text`` as float64, or ``None``.

    ``None`` when some token is not ``[+-]digits[.digits]`` / ``[+-].digits`` with 1 to 15
    digits: the caller then parses ``text`` in the general way.
    """
    chars = np.frombuffer(text, dtype=np.uint8)
    if chars.size == 0:
        return np.zeros(0)
    digit = chars - np.uint8(_ZERO)  # wraps for non-digits
    is_digit = digit < 10
    is_space = (chars == 32) | ((chars >= 9) & (chars <= 13))
    is_dot = chars == _DOT
    is_sign = (chars == _MINUS) | (chars == _PLUS)
    if not (is_digit | is_space | is_dot | is_sign).all():
        return None
    in_token = ~is_space
    is_start = in_token.copy()
    is_start[1:] &= is_space[:-1]
    is_end = in_token.copy()
    is_end[:-1] &= is_space[1:]
    starts = np.flatnonzero(is_start)
    ends = np.flatnonzero(is_end)  # the last character of each token
    if starts.size == 0:
        return np.zeros(0)
    if (is_sign & ~is_start).any():  # a sign inside a token: an exponent or garbage
        return None
    token_of = np.add.accumulate(is_start.view(np.uint8), dtype=np.int32) - 1
    digits_through = np.add.accumulate(is_digit.view(np.uint8), dtype=np.int32)
    digits_before = digits_through[starts] - is_digit[starts]
    digits_to_end = digits_through[ends]
    n_digits = digits_to_end - digits_before
    if n_digits.min() < 1 or n_digits.max() > _MAX_DIGITS:
        return None
    dots = np.flatnonzero(is_dot)
    dot_token = token_of[dots]
    if dots.size > 1 and (np.diff(dot_token) == 0).any():  # two dots in one token
        return None
    digit_at = np.flatnonzero(is_digit)
    places = digits_to_end[token_of[digit_at]] - digits_through[digit_at]  # digits to its right
    mantissa = np.add.reduceat(digit[digit_at] * _POW10[places], digits_before)
    divisor = np.ones(starts.size)
    divisor[dot_token] = _POW10[digits_to_end[dot_token] - digits_through[dots]]
    values = mantissa / divisor
    negative = chars[starts] == _MINUS
    values[negative] = -values[negative]
    return values
