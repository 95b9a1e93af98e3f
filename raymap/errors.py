"""The one exception the input stage raises for bad meshes."""

from __future__ import annotations


class MeshError(ValueError):
    """A mesh that cannot be turned into a spherical map; ``reason`` is for the user.

    The service maps it to a 4xx response with ``reason`` as the message; every other
    exception out of :mod:`raymap` is a bug.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def too_many_faces(n_faces: int, max_faces: int) -> MeshError:
    """The face-limit refusal, worded once for every reader that counts faces."""
    return MeshError(f"the mesh has {n_faces} faces, more than the limit of {max_faces}")
