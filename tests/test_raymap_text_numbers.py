"""The number parser: bit for bit what numpy reads, or ``None`` for numpy to decide."""

from __future__ import annotations

import numpy as np
import pytest

import raymap
import raymap.text_numbers as text_numbers
from raymap.mesh import _off_blocks, _off_blocks_by_numpy, _read_off
from raymap.text_numbers import parse_numbers

# Notations files write, each read as numpy reads it (never None).
TRICKY = [
    "1 -2 3.5 0 -0.0 -0.000 1e5 1E-5 -1e+05 2.5e-320 -1e-400 1.7976931348623157e308 5e-324",
    "0.1 0.2 0.30000000000000004 9007199254740993 9007199254740992.5 123456789012345",
    "1234567890123456 12345678901234567890 0.000000000000000000012345 1234567.89012345",
    "99999999.9999999 9999999.99999999 999999999999999.9 0.999999999999999 0.123456789012345",
    "17.539210 26.959750 11.751925\r\n18.336960\t25.775750 12.122225  \r\n\r\n\t 3 4 2 5 ",
    "1.0000000000000002 2.2250738585072014e-308 4.9406564584124654e-324 8.98846567431158e307",
    "7 70 700 7000 70000 700000 7000000 70000000 700000000 7000000000 70000000000 0.7 -0.07",
    "96.48064786969077 943.4607133838363 91128735.31840813 -96.48064786969077",
    "3 0 1 2\n3 2 1 0\r\n3 7 99999999 0\n",
    # JSON reads -0 as the integer 0; numpy as -0.0: first, last, alone, twice in a row
    "-0 1 -0 -0 2 -0.0 -0e0 1e-0 -0",
    "-0",
    "18446744073709551615 -9223372036854775808",  # the largest whole numbers JSON reads here
]
# Tokens that are no JSON number, or a whole number past 64 bits: numpy decides, so the
# parser gives None.
NUMPYS = ["+3", ".5", "5.", "-.5", "00012", "-000.000", "1e400", "18446744073709551616"]
MALFORMED = ["1.2.3", "--1", "1-", "-", ".", "-.", "e5", "1e", "+-1", "1..", "1e5e5", "1.e", "+"]
# Bytes no number has: left to numpy at once.
FOREIGN = ["nan", "inf", "-infinity", "1_0", "0x10", "\u0661", "1,5", "1\x0b2", "1\x002", "#1"]


def numpy_reads(text: bytes) -> np.ndarray:
    return np.array(text.split(), dtype=np.float64)


def assert_same_bits(actual: np.ndarray | None, expected: np.ndarray) -> None:
    assert actual is not None
    assert actual.dtype == np.float64 and actual.shape == expected.shape
    differ = np.flatnonzero(actual.view(np.uint64) != expected.view(np.uint64))
    assert differ.size == 0, (
        f"{differ.size} differ, first: {actual[differ[:3]]} vs {expected[differ[:3]]}"
    )


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_numbers_read_as_numpy_reads_them(text: str) -> None:
    data = text.encode()
    assert_same_bits(parse_numbers(data), numpy_reads(data))


@pytest.mark.parametrize("token", NUMPYS + MALFORMED + FOREIGN)
@pytest.mark.parametrize("place", ["{} 1.5 2", "1.5 {} 2", "1.5 2 {}", "{}"])
def test_what_the_parser_cannot_vouch_for_is_left_to_numpy(token: str, place: str) -> None:
    assert parse_numbers(place.format(token).encode()) is None


@pytest.mark.parametrize("text", ["", " ", "\r\n\t ", "\n\n"])
def test_no_tokens_no_numbers(text: str) -> None:
    values = parse_numbers(text.encode())
    assert values is not None and values.shape == (0,)


def random_tokens(rng: np.random.Generator, n: int) -> list[str]:
    """Numbers as files write them: fixed and general formats, signs, exponents, 17
    significant digits, ties and halfway cases of the last digit, integers."""
    magnitudes = 10.0 ** rng.uniform(-25, 25, n) * rng.choice([-1, 1], n)
    tokens = []
    for value, form in zip(magnitudes.tolist(), rng.integers(0, 6, n), strict=True):
        digits = int(rng.integers(0, 18))
        if form == 0:  # whole numbers past 64 bits are left to numpy (tested above)
            tokens.append(f"{value:.{digits}f}" if abs(value) < 1e18 else repr(value))
        elif form == 1:
            tokens.append(f"{value:.{digits}g}")
        elif form == 2:
            tokens.append(repr(value))
        elif form == 3:
            tokens.append(f"{value:.{digits}e}".replace("e+", "E"))
        elif form == 4:
            tokens.append(str(int(rng.integers(1, 10 ** int(rng.integers(1, 19))))))
        else:  # the decimal halfway between two neighbouring doubles
            low = abs(value) % 1e6
            tokens.append(f"{(low + np.nextafter(low, np.inf)) / 2:.17g}")
    return tokens


@pytest.mark.parametrize("seed", range(4))
def test_random_numbers_read_as_numpy_reads_them(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tokens = random_tokens(rng, 4000)
    separators = rng.choice([" ", "\n", "\t", "\r\n", "  ", " \n", "   \t\n"], len(tokens))
    data = "".join(t + s for t, s in zip(tokens, separators, strict=True)).encode()
    assert_same_bits(parse_numbers(data), numpy_reads(data))


def test_pieces_cut_only_between_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Text longer than a piece is parsed a piece at a time, cut at a comma: tiny pieces put a
    cut in every place, "-0" tokens and runs of whitespace included."""
    rng = np.random.default_rng(7)
    tokens = random_tokens(rng, 3000) + ["-0"] * 5
    rng.shuffle(tokens)
    data = "  ".join(tokens).encode()
    for piece_bytes in (1, 7, 16, 17, 100):
        monkeypatch.setattr(text_numbers, "_PIECE_BYTES", piece_bytes)
        assert_same_bits(parse_numbers(data), numpy_reads(data))
    monkeypatch.setattr(text_numbers, "_PIECE_BYTES", 16)
    assert parse_numbers(data + b" 1.2.3") is None  # a bad token in the last piece


def test_hypothesis_floats_in_every_notation() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    strategies = pytest.importorskip("hypothesis.strategies")

    @hypothesis.settings(max_examples=300, deadline=None)
    @hypothesis.given(
        strategies.lists(strategies.floats(allow_nan=False, allow_infinity=False), max_size=30),
        strategies.integers(0, 20),
    )
    def check(values: list[float], digits: int) -> None:
        tokens = [f"{v:.{digits}f} {v:.{digits}g} {v!r} {v:.{digits}e}" for v in values]
        data = "\n".join(tokens).encode()
        parsed = parse_numbers(data)
        if parsed is not None:  # None (numpy decides): whole numbers past 64 bits, or
            assert_same_bits(parsed, numpy_reads(data))  # hundreds of digits ("%.1f" % 1e308)

    check()


TETRA = "OFF\n4 4 0\n{v}\n3 0 1 2\n3 0 1 3\n3 0 2 3\n3 1 2 3\n"


@pytest.mark.parametrize(
    "vertices",
    [
        "0 0 0\n1 0 0\n0 1 0\n0 0 1",
        "0 0 0\r\n1. -0 +0\r\n.0 1e0 0\r\n0\t0\t1  ",
        "0 0 0 1 0 0 0 1 0 0 0 1",  # one line
        "0.000000000000000000001 0 0\n1 0 0\n0 1 0\n0 0 12345678901234567890",
    ],
)
def test_off_reader_gives_numpys_arrays(vertices: str) -> None:
    data = TETRA.format(v=vertices).encode()
    rest = data.split(maxsplit=4)[4]  # after OFF and the three counts
    expected = _off_blocks_by_numpy(rest, 4, 4)
    assert expected is not None
    parsed = parse_numbers(rest)
    if parsed is not None:  # None: notations only numpy reads ("1.", "+0", ".0")
        ours = _off_blocks(parsed, 4, 4)
        assert ours is not None
        for actual, reference in zip(ours, expected, strict=True):
            np.testing.assert_array_equal(actual, reference)
    np.testing.assert_array_equal(_read_off(data, 10)[0], expected[0])


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")
def test_off_face_index_beyond_int64_is_refused_as_before() -> None:
    """A face index past 64 bits goes to numpy's readers, as it always did."""
    data = TETRA.format(v="0 0 0\n1 0 0\n0 1 0\n0 0 1").replace(
        "3 1 2 3", "3 1 2 99999999999999999999"
    )
    with pytest.raises(raymap.MeshError, match="a face index is not a whole number"):
        raymap.load_mesh(data.encode(), "off")


MALFORMED_OFF_BODIES = [
    ("0 0 0\n1 0 0\n0 1 0\n0 0 1", "3 0 1 2.5"),  # not a whole number
    ("0 0 0\n1 0 0\n0 1 0\n0 0 1", "3 0 1 -1"),  # out of range
    ("0 0 0\n1 0 0\n0 1 0\n0 0 1", "3 0 1 99"),
    ("0 0 0\n1 0 0\n0 1 0\n0 0 1", "4 0 1 2 3"),  # a quad: trimesh's reader
    ("0 0 0\n1 0 0\n0 1 0\n0 0 1", "3 0 1"),  # a number short
    ("0 0 0\n1 0 0\n0 1 0\n0 0 1", "3 0 1 2 7"),  # one too many
    ("0 0 0\n1 0 0\n0 1 0\n0 0 1.2.3", "3 0 1 2"),
    ("0 0 0\n1 0 0\n0 1 0\n0 0 nan", "3 0 1 2"),
    ("0 0 0\n1 0 0\n0 1 0\n0 0 1e999", "3 0 1 2"),  # beyond float64
    ("0 0 0\n1 0 0\n0 1 0\n0 0 --1", "3 0 1 2"),
    ("0 0 0\n1 0 0\n0 1 0\n0 0 0x1", "3 0 1 2"),
    ("0 0 0\n1 0 0\n0 1 0\n0 0 abc", "3 0 1 2"),
    ("0 0 0\n1 0 0\n0 1 0\n0 0 -", "3 0 1 2"),
    ("0 0 0\r\n1 0 0\r\n0 1 0\r\n0 0 1e0", "3\t0\t1\t2"),
    ("0 0 0\n1 0 0\n0 1 0\n0 0 1", "3 0 1 99999999999999999999"),
    ("0 0 0\n1 0 0\n0 1 0\n0 0 1", "3.0 0 1 2"),
    ("0 0 0\n1 0 0\n0 1 0\n0 0 1", "3 0 1 +2"),
]


def outcome(data: bytes) -> object:
    """What reading ``data`` gives: the arrays, or the error's type and message."""
    try:
        vertices, faces = _read_off(data, 10)
    except Exception as exc:  # the outcome is what is compared
        return type(exc).__name__, str(exc)
    return repr(vertices.tolist()), repr(np.asarray(faces).tolist())  # repr: nan == nan


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")
@pytest.mark.parametrize(("vertices", "last_face"), MALFORMED_OFF_BODIES)
def test_off_outcomes_are_those_of_numpys_readers(
    vertices: str, last_face: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arrays and error messages alike: the reader with the parser, then with numpy's readers
    only (the reader before the parser: ``parse_numbers`` always declining)."""
    data = TETRA.format(v=vertices).replace("3 1 2 3", last_face).encode()
    with_parser = outcome(data)
    monkeypatch.setattr("raymap.mesh.parse_numbers", lambda text: None)
    assert with_parser == outcome(data)


def _rows(numbers: list[str], letter: str = "v", end: str = "\n") -> bytes:
    lines = [f"{letter} {' '.join(numbers[i : i + 3])}{end}" for i in range(0, len(numbers), 3)]
    return "".join(lines).encode()


@pytest.mark.parametrize("text", TRICKY)
@pytest.mark.parametrize("end", ["\n", "\r\n"])
def test_lettered_rows_read_as_numpy_reads_them(text: str, end: str) -> None:
    """An OBJ block read in place: numpy's values bit for bit, -0 included."""
    tokens = text.split()
    tokens = tokens[: len(tokens) // 3 * 3] or ["0", "0", "0"]
    data = _rows(tokens, end=end)
    rows = text_numbers.parse_lettered_rows(data, b"v")
    assert rows is not None and rows.shape == (len(tokens) // 3, 3)
    assert_same_bits(rows.ravel(), numpy_reads(" ".join(tokens).encode()))


# Blocks that are not "<letter> a b c" lines: the row parser declines (the OBJ readers after
# it decide). The first was read before as vertices (0, 0, 0), (1, 1, 0): a coordinate moved.
NOT_ROWS = [
    b"v 0 0 0 1\nv 1 0\n",  # four numbers, then two
    b"v 1 2 3\nv 4 5 6",  # the last line not ended
    b"v 1v 2 3\nv 4 5 6\n",  # a letter inside a line
    b"v 1 2 3\nf 4 5 6\n",  # another line type
    b"vn 1 2 3\n",
    b"v  1 2 3\n",  # two spaces
    b"v 1 2  3\n",
    b"v 1 2 3 \n",  # a trailing space
    b"v 1\t2 3\n",  # a tab
    b"v 1 2 3\n\n",  # a blank line
    b" v 1 2 3\n",
    b"v 1 2 nan\n",
    b"v 1 2 +3\n",  # a token numpy reads its own way
    b"v 1 2 3\rv 4 5 6\n",
    b"v \r1 2 3\n",  # a CR inside a line
    b"v 1 2\r 3\r\n",
]


@pytest.mark.parametrize("data", NOT_ROWS)
def test_lettered_rows_decline_any_other_layout(data: bytes) -> None:
    assert text_numbers.parse_lettered_rows(data, b"v") is None


def test_an_obj_vertex_line_of_four_numbers_then_two_is_not_shifted() -> None:
    """Regression: the plain OBJ reader counted spaces per block, not per line, and read
    ``v 0 0 0 1`` / ``v 1 0`` as (0, 0, 0), (1, 1, 0). It is refused now, as trimesh's reader
    reads two coordinates."""
    data = b"v 0 0 0 1\nv 1 0\nv 0 1 0\nv 0 0 1\nf 1 3 4\nf 2 3 4\n"
    with pytest.raises(raymap.MeshError, match="coordinates"):
        raymap.load_mesh(data, "obj")


@pytest.mark.parametrize("piece_bytes", [1, 16, 40, 1 << 20])
@pytest.mark.parametrize("end", ["\n", "\r\n"])
def test_lettered_rows_in_pieces_read_the_same(
    piece_bytes: int, end: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block parsed a piece at a time (simdjson holds the GIL: a megabyte each in the
    service) gives the same numbers, signs of zeros included; a bad token in the last piece
    still declines."""
    tokens = " ".join([*TRICKY[:3], "-0 1 -0 -0 2 -0.0 -0e0 1e-0 -0"]).split()
    tokens = tokens[: len(tokens) // 3 * 3]
    data = _rows(tokens, end=end)
    monkeypatch.setattr(text_numbers, "_PIECE_BYTES", piece_bytes)
    rows = text_numbers.parse_lettered_rows(data, b"v")
    assert rows is not None
    assert_same_bits(rows.ravel(), numpy_reads(" ".join(tokens).encode()))
    assert text_numbers.parse_lettered_rows(data + b"v 1 2 1.2.3" + end.encode(), b"v") is None


def test_hypothesis_lettered_rows_in_every_notation() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    strategies = pytest.importorskip("hypothesis.strategies")

    @hypothesis.settings(max_examples=200, deadline=None)
    @hypothesis.given(
        strategies.lists(
            strategies.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=30
        ),
        strategies.integers(0, 20),
        strategies.sampled_from(["\n", "\r\n"]),
    )
    def check(values: list[float], digits: int, end: str) -> None:
        tokens = [t for v in values for t in (f"{v:.{digits}f}", f"{v!r}", f"{v:.{digits}e}")]
        data = _rows(tokens, end=end)
        rows = text_numbers.parse_lettered_rows(data, b"v")
        if rows is not None:  # None (numpy decides): whole numbers past 64 bits, and the like
            assert_same_bits(rows.ravel(), numpy_reads(" ".join(tokens).encode()))

    check()
