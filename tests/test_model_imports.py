"""The network and its training step import with numpy and torch alone (a GPU machine with no
mesh stack can train and time them: bench/train_speed.py), while ``raymap``'s public names still
resolve on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import raymap

MESH_STACK = ("trimesh", "embreex", "manifold3d", "simdjson", "raymap._kernels", "raymap.mesh")


def test_network_training_step_and_checkpoints_import_without_the_mesh_stack() -> None:
    code = (
        "import sys\n"
        "import model.net, model.step, model.checkpoint, model.ensemble\n"
        f"print(sorted(m for m in {MESH_STACK!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_raymap_lists_its_public_names_before_they_load() -> None:
    assert set(raymap.__all__) <= set(dir(raymap))


@pytest.mark.parametrize("name", raymap.__all__)
def test_raymap_public_names_resolve(name: str) -> None:
    assert getattr(raymap, name) is not None


def test_raymap_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'spherical_maps'"):
        raymap.spherical_maps  # noqa: B018
