"""Rotation protocols, applied to a mesh before ray casting: ``none``, ``z``, ``so3``.

The rotation of copy ``c`` of mesh ``i`` is drawn from ``default_rng([seed, i, c])``, so a
resumed, parallel or repeated build gives the same arrays. ``z`` is a uniform angle about +Z
(the grid's polar axis, upright for ModelNet); ``so3`` is uniform (Haar) on SO(3).
"""

from __future__ import annotations

import numpy as np

ROTATIONS = ("none", "z", "so3")


def sample_rotation(protocol: str, seed: int, mesh_index: int, copy: int) -> np.ndarray | None:
    """The rotation of copy ``copy`` of mesh ``mesh_index``: None, about +Z, or uniform SO(3)."""
    if protocol == "none":
        return None
    rng = np.random.default_rng([seed, mesh_index, copy])
    if protocol == "z":
        angle = rng.uniform(0.0, 2.0 * np.pi)
        c, s = np.cos(angle), np.sin(angle)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    if protocol == "so3":
        return uniform_rotation(rng)
    raise ValueError(f"rotation must be one of {ROTATIONS}, got {protocol!r}")


def uniform_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform on SO(3): a normalized Gaussian quaternion (Shoemake 1992)."""
    quaternion = rng.standard_normal(4)
    w, x, y, z = quaternion / np.linalg.norm(quaternion)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
