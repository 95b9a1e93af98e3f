"""Anisotropic scaling, an augmentation that rotations cannot give: copy ``c`` of mesh ``i`` is
stretched along the mesh file's own x, y and z axes before it is rotated and ray-cast.

Each axis's factor is log-uniform in ``[1 / (1 + amount), 1 + amount]`` (stretching and
squashing equally likely), drawn from ``default_rng([seed, i, c, STREAM])``: the rotation of the
same copy (``raymap.datasets.rotations``) is drawn from its own generator, so a stretched build
rotates each copy exactly as the unstretched build of the same seed does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raymap.mesh import Triangles

MAX_STRETCH = 1.0  # factors within [1/2, 2]
STREAM = 1  # the stretch generator's extra seed word (the rotation's has none)


@dataclass(frozen=True)
class StretchedMesh:
    """A mesh's faces with its vertices scaled per axis."""

    vertices: np.ndarray
    faces: np.ndarray


def check_stretch(amount: float) -> None:
    if not 0.0 <= amount <= MAX_STRETCH:
        raise ValueError(f"stretch must be in [0, {MAX_STRETCH}], got {amount}")


def sample_stretch(amount: float, seed: int, mesh_index: int, copy: int) -> np.ndarray:
    """The three axis factors of copy ``copy`` of mesh ``mesh_index`` (ones for ``amount=0``)."""
    check_stretch(amount)
    if amount == 0.0:
        return np.ones(3)
    rng = np.random.default_rng([seed, mesh_index, copy, STREAM])
    return np.exp(rng.uniform(-np.log1p(amount), np.log1p(amount), size=3))


def stretched(mesh: Triangles, factors: np.ndarray) -> StretchedMesh:
    """``mesh`` with its vertex coordinates multiplied by ``factors`` (3,)."""
    return StretchedMesh(vertices=np.asarray(mesh.vertices) * factors, faces=np.asarray(mesh.faces))
