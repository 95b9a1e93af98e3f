"""The PNG rendering of a spherical map."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import raymap
from raymap.render import colorize, render_map
from tests.raymap_testing import CHAIR


def test_colorize_spans_the_colormap() -> None:
    rgb = colorize(np.array([[0.0, 0.5, 1.0, 2.0]]))
    assert rgb.shape == (1, 4, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], [68, 1, 84])  # viridis dark end
    np.testing.assert_array_equal(rgb[0, 2], [253, 231, 37])  # viridis bright end
    np.testing.assert_array_equal(rgb[0, 3], rgb[0, 2])  # clipped


def test_render_map_has_one_panel_per_channel() -> None:
    spherical = raymap.spherical_map(raymap.load_mesh_file(CHAIR), 8)
    image = render_map(spherical, scale=2)
    # 3 x 2 panels of 32 x 32 pixels, 4-pixel gaps, 14-pixel labels
    assert image.size == (3 * (32 + 4) + 4, 2 * (32 + 14 + 4) + 4)


def test_render_command_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "chair.png"
    command = [sys.executable, "-m", "raymap.render", str(CHAIR), str(out), "--bandwidth", "8"]
    subprocess.run(command, check=True, capture_output=True)
    assert Image.open(out).format == "PNG"


def test_render_command_reports_a_bad_mesh(tmp_path: Path) -> None:
    bad = tmp_path / "bad.off"
    bad.write_bytes(b"OFF\n3 0 0\n0 0 0\n1 0 0\n0 1 0\n")
    command = [sys.executable, "-m", "raymap.render", str(bad), str(tmp_path / "x.png")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2
    assert "no faces" in result.stderr
