"""Ray casting with embreex, called directly on float32 arrays.

One :class:`RayScene` per triangle set: the BVH is built once and any number of ray bundles
are cast against it (one bundle per rotated copy). trimesh's own ray engines are never used.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from embreex import rtcore, rtcore_scene
from embreex.mesh_construction import TriangleMesh


@lru_cache(maxsize=1)
def _device() -> rtcore.EmbreeDevice:
    """One embree device per process (creating one per scene starts a thread pool each time)."""
    return rtcore.EmbreeDevice()


@dataclass(frozen=True)
class Hits:
    """First hits of a ray bundle: ``hit[i]`` False means ray ``i`` missed."""

    hit: np.ndarray  # (R,) bool
    distance: np.ndarray  # (R,) float32, ray parameter of the hit (unit directions); inf if missed
    normal: np.ndarray  # (R, 3) float32, unnormalized geometric normal; undefined if missed


class RayScene:
    """An embree scene over one triangle mesh (float32 vertices, int32 faces)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        self._scene = rtcore_scene.EmbreeScene(device=_device(), robust=True)
        TriangleMesh(
            self._scene,
            np.ascontiguousarray(vertices, dtype=np.float32),
            np.ascontiguousarray(faces, dtype=np.int32),
        )
        self.n_faces = len(faces)
        # embreex builds the BVH on the first query: do it now, so that casting is only casting.
        self._scene.run(np.zeros((1, 3), np.float32), np.ones((1, 3), np.float32))

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> Hits:
        """First hit along each ray ``origins[i] + t directions[i]``, ``t >= 0``."""
        out = self._scene.run(
            np.ascontiguousarray(origins, dtype=np.float32),
            np.ascontiguousarray(directions, dtype=np.float32),
            output=1,
        )
        hit = out["geomID"] != -1
        distance = np.where(hit, out["tfar"], np.float32(np.inf))
        return Hits(hit=hit, distance=distance, normal=out["Ng"])
