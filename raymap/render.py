"""Spherical map -> PNG: one equirectangular panel per channel, for the README and debugging.

Panels are laid out as the feature names: a row for the mesh channels and a row for the
convex-hull channels; columns are distance, cos, sin. In each panel x is the longitude
(0 to 2 pi, left to right) and y the colatitude (north pole at the top). Every channel is
shown on its fixed range [0, 1] (no per-panel stretching), so panels of different meshes
compare.

    python -m raymap.render mesh.off out.png --bandwidth 32
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from raymap.errors import MeshError
from raymap.features import FEATURE_NAMES
from raymap.mesh import DEFAULT_MAX_FACES, load_mesh_file
from raymap.project import spherical_map

# A few stops of matplotlib's viridis, interpolated linearly: perceptually ordered, no matplotlib.
_VIRIDIS = np.array(
    [
        [68, 1, 84],
        [65, 68, 135],
        [42, 120, 142],
        [34, 168, 132],
        [122, 209, 81],
        [253, 231, 37],
    ],
    dtype=np.float64,
)
_LABEL_HEIGHT = 14
_GAP = 4
_PANELS_PER_ROW = 3


def colorize(values: np.ndarray, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """(H, W) floats -> (H, W, 3) uint8 through the viridis stops; [low, high] -> dark..yellow."""
    t = np.clip((np.asarray(values, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    position = t * (len(_VIRIDIS) - 1)  # (H, W)
    below = np.minimum(position.astype(int), len(_VIRIDIS) - 2)
    frac = (position - below)[..., None]  # (H, W, 1)
    rgb = (1 - frac) * _VIRIDIS[below] + frac * _VIRIDIS[below + 1]  # (H, W, 3)
    return np.round(rgb).astype(np.uint8)


def render_map(
    spherical: np.ndarray, names: Sequence[str] = FEATURE_NAMES, scale: int = 4
) -> Image.Image:
    """(C, H, W) map -> an RGB image with one labelled panel per channel."""
    if spherical.ndim != 3 or len(spherical) != len(names):
        raise ValueError(f"expected a ({len(names)}, H, W) map, got shape {tuple(spherical.shape)}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    n_channels, height, width = spherical.shape
    panel_w, panel_h = width * scale, height * scale
    columns = min(_PANELS_PER_ROW, n_channels)
    rows = -(-n_channels // columns)
    canvas = Image.new(
        "RGB",
        (columns * (panel_w + _GAP) + _GAP, rows * (panel_h + _LABEL_HEIGHT + _GAP) + _GAP),
        "white",
    )
    draw = ImageDraw.Draw(canvas)
    for index, (channel, name) in enumerate(zip(spherical, names, strict=True)):
        row, column = divmod(index, columns)
        x = _GAP + column * (panel_w + _GAP)
        y = _GAP + row * (panel_h + _LABEL_HEIGHT + _GAP)
        draw.text((x, y), name, fill="black")
        pixels = np.repeat(np.repeat(colorize(channel), scale, axis=0), scale, axis=1)
        canvas.paste(Image.fromarray(pixels), (x, y + _LABEL_HEIGHT))
    return canvas


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m raymap.render", description="Render a mesh's spherical map as a PNG."
    )
    parser.add_argument("mesh", type=Path, help="OBJ, OFF, STL, PLY, GLB or GLTF file")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--bandwidth", type=int, default=32)
    parser.add_argument("--scale", type=int, default=4, help="pixels per grid point")
    parser.add_argument("--max-faces", type=int, default=DEFAULT_MAX_FACES)
    args = parser.parse_args(argv)
    try:
        spherical = spherical_map(load_mesh_file(args.mesh, args.max_faces), args.bandwidth)
    except MeshError as exc:
        parser.exit(2, f"error: {args.mesh}: {exc.reason}\n")
    render_map(spherical, scale=args.scale).save(args.out)
    print(f"{args.out}: {spherical.shape[1]}x{spherical.shape[2]} grid, {len(spherical)} panels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
