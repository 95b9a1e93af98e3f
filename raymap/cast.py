"""Ray casting with Embree 4, called through ``ctypes`` on the library the embreex wheel ships.

One :class:`RayScene` per triangle set: the BVH is built once and any number of ray bundles
are cast against it (one bundle per rotated copy). The scene *shares* the caller's float32
vertex and uint32 index arrays (``rtcSetSharedGeometryBuffer``): nothing is copied element by
element, which is what embreex's own ``TriangleMesh`` constructor does (it cost more than the
BVH build itself). Rays go to Embree in packets of 8 (``rtcIntersect8``, native on AVX2).
:meth:`RayScene.features`, the maps' path, casts a whole bundle and computes its features in
one call to :mod:`raymap._kernels`, which fills the packets and calls ``rtcIntersect8`` from C
without the GIL; :meth:`RayScene.cast` gives the raw first hits, a packet per ``ctypes`` call
(the thumbnails' path, and the tests' reference for the features).

The BVH is built at Embree's low quality by default (a Morton-code build; the geometry's
setting and the scene's both: the scene's alone changes nothing): a scene serves one
request's ~2,000 rays, so a build 3x faster (10k faces: 2.9 -> 0.9 ms) is worth more than
faster traversal. A ray's hit distance is the same with either build, and its normal the
same line (the low build may flip its sign; the features take |cos|), except where a ray
meets an edge shared by two faces: each build may report another of them.

The device runs Embree's builds on the calling thread only (``threads=1`` unless
``RAYMAP_EMBREE_THREADS`` says otherwise): a server already runs one cast per core, and a
thread pool per build only adds contention (and idle-spinning CPU) under concurrency.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from raymap import _kernels

# Embree 4 enums (rtcore_common.h, rtcore_buffer.h, rtcore_geometry.h, rtcore_scene.h).
_GEOMETRY_TYPE_TRIANGLE = 0
_BUFFER_TYPE_INDEX = 0
_BUFFER_TYPE_VERTEX = 1
_FORMAT_UINT3 = 0x5003
_FORMAT_FLOAT3 = 0x9003
_SCENE_FLAG_ROBUST = 1 << 2
# RTCBuildQuality: low is a Morton-code build, medium (Embree's default) a binned SAH build.
BUILD_QUALITIES: dict[str, int] = {"low": 0, "medium": 1}
_INVALID_ID = 0xFFFFFFFF
_DEVICE_PROPERTY_VERSION_MAJOR = 1

# RTCRayHit8 (rtcore_ray.h), structure of arrays, 8 lanes each, 32-byte aligned:
# ray: org_x, org_y, org_z, tnear, dir_x, dir_y, dir_z, time, tfar, mask, id, flags;
# hit: Ng_x, Ng_y, Ng_z, u, v, primID, geomID, instID[1] (+ instPrimID[1] in some builds,
# hence one spare row: Embree writes no further).
_LANES = 8
_ROWS = 21
_ORG, _DIR, _TFAR, _MASK, _NG, _GEOM_ID, _INST_ID = 0, 4, 8, 9, 12, 18, 19
_ALIGN = 64

_void_p = ctypes.c_void_p


def _library_path() -> str:
    """The libembree4 the embreex wheel bundles (Linux, macOS), else the system's."""
    import embreex

    package = Path(embreex.__file__).resolve().parent
    for folder in (package.parent / "embreex.libs", package / ".dylibs", package):
        found = sorted(folder.glob("*embree4*")) if folder.is_dir() else []
        libraries = [p for p in found if p.suffix in (".so", ".dylib", ".dll") or ".so." in p.name]
        if libraries:
            return str(libraries[0])
    system = ctypes.util.find_library("embree4")
    if system is None:
        raise ImportError("no libembree4 found (neither in the embreex wheel nor on the system)")
    return system


@lru_cache(maxsize=1)
def _embree() -> ctypes.CDLL:
    lib = ctypes.CDLL(_library_path())
    signatures: dict[str, tuple[object, list[object]]] = {
        "rtcNewDevice": (_void_p, [ctypes.c_char_p]),
        "rtcGetDeviceProperty": (ctypes.c_ssize_t, [_void_p, ctypes.c_int]),
        "rtcGetDeviceError": (ctypes.c_int, [_void_p]),
        "rtcNewScene": (_void_p, [_void_p]),
        "rtcSetSceneFlags": (None, [_void_p, ctypes.c_int]),
        "rtcSetSceneBuildQuality": (None, [_void_p, ctypes.c_int]),
        "rtcSetGeometryBuildQuality": (None, [_void_p, ctypes.c_int]),
        "rtcNewGeometry": (_void_p, [_void_p, ctypes.c_int]),
        "rtcSetSharedGeometryBuffer": (
            None,
            [
                _void_p,
                ctypes.c_int,
                ctypes.c_uint,
                ctypes.c_int,
                _void_p,
                ctypes.c_size_t,
                ctypes.c_size_t,
                ctypes.c_size_t,
            ],
        ),
        "rtcCommitGeometry": (None, [_void_p]),
        "rtcAttachGeometry": (ctypes.c_uint, [_void_p, _void_p]),
        "rtcReleaseGeometry": (None, [_void_p]),
        "rtcCommitScene": (None, [_void_p]),
        "rtcReleaseScene": (None, [_void_p]),
        # No argtypes: the hot loop passes ready ctypes objects, and ctypes' per-call
        # conversion of four arguments was a sixth of a 1,024-ray cast (128 calls).
        "rtcIntersect8": (None, None),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    return lib


@lru_cache(maxsize=1)
def _intersect8_address() -> int:
    """Where ``rtcIntersect8`` is, for the C kernels to call it."""
    return int(ctypes.cast(_embree().rtcIntersect8, ctypes.c_void_p).value or 0)


def embree_threads() -> int:
    """Embree's build threads per process: ``RAYMAP_EMBREE_THREADS`` (default 1; 0 = all)."""
    return int(os.environ.get("RAYMAP_EMBREE_THREADS", "1"))


@lru_cache(maxsize=1)
def _device() -> int:
    """One Embree device per process (each device owns a thread pool)."""
    lib = _embree()
    threads = embree_threads()
    config = f"threads={threads}" if threads > 0 else ""
    device = lib.rtcNewDevice(config.encode())
    if not device:
        raise RuntimeError("Embree could not create a device")
    major = lib.rtcGetDeviceProperty(device, _DEVICE_PROPERTY_VERSION_MAJOR)
    if major != 4:
        raise RuntimeError(f"raymap needs Embree 4, the library is Embree {major}")
    return int(device)


_VALID = (ctypes.c_int * _LANES)(*([-1] * _LANES))


@dataclass(frozen=True)
class Hits:
    """First hits of a ray bundle: ``hit[i]`` False means ray ``i`` missed."""

    hit: np.ndarray  # (R,) bool
    distance: np.ndarray  # (R,) float32, ray parameter of the hit (unit directions); inf if missed
    # (3, R) float32: the x, y and z rows of the unnormalized geometric normals (as Embree
    # writes them: a row each is what the features read fastest); undefined if missed
    normal_rows: np.ndarray

    @property
    def normal(self) -> np.ndarray:
        """(R, 3) float32 view of the normals, one row per ray."""
        return self.normal_rows.T


class RayScene:
    """An Embree scene over one triangle mesh; the BVH is built on construction."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, build_quality: str = "low") -> None:
        quality = BUILD_QUALITIES[build_quality]
        lib = _embree()
        device = _device()
        n_vertices, n_faces = len(vertices), len(faces)
        # Embree reads vertices with 16-byte loads: one spare float3 after the last vertex.
        self._vertices = np.empty((n_vertices + 1, 3), dtype=np.float32)
        self._vertices[:n_vertices] = vertices
        self._vertices[n_vertices] = 0.0
        self._faces = np.ascontiguousarray(faces, dtype=np.uint32)
        self.n_faces = n_faces
        self._lib = lib
        self._scene = lib.rtcNewScene(device)
        if not self._scene:
            raise RuntimeError(f"Embree could not create a scene (error {_error(device)})")
        lib.rtcSetSceneFlags(self._scene, _SCENE_FLAG_ROBUST)
        lib.rtcSetSceneBuildQuality(self._scene, quality)
        geometry = lib.rtcNewGeometry(device, _GEOMETRY_TYPE_TRIANGLE)
        lib.rtcSetGeometryBuildQuality(geometry, quality)
        lib.rtcSetSharedGeometryBuffer(
            geometry,
            _BUFFER_TYPE_VERTEX,
            0,
            _FORMAT_FLOAT3,
            self._vertices.ctypes.data,
            0,
            12,
            n_vertices,
        )
        lib.rtcSetSharedGeometryBuffer(
            geometry, _BUFFER_TYPE_INDEX, 0, _FORMAT_UINT3, self._faces.ctypes.data, 0, 12, n_faces
        )
        lib.rtcCommitGeometry(geometry)
        lib.rtcAttachGeometry(self._scene, geometry)
        lib.rtcReleaseGeometry(geometry)
        lib.rtcCommitScene(self._scene)  # the BVH build, on this thread
        code = _error(device)
        if code:
            raise RuntimeError(f"Embree failed to build the scene (error {code})")

    def __del__(self) -> None:
        scene = getattr(self, "_scene", None)
        if scene:
            self._lib.rtcReleaseScene(scene)
            self._scene = None

    def features(
        self, origins: np.ndarray, directions: np.ndarray, start_offset: float, out: np.ndarray
    ) -> None:
        """Cast the rays ``origins[i] + t directions[i]`` ((R, 3) float32 each, unit
        directions) and write their features (:mod:`raymap.features`: the hit's distance past
        ``start_offset``, halved; ``|cos|``, ``sin``) into ``out`` (3, R) float32: one foreign
        call for the whole bundle, without the GIL (:func:`raymap._kernels.ray_features`)."""
        _kernels.ray_features(
            _intersect8_address(),
            self._scene,
            np.ascontiguousarray(origins, np.float32),
            np.ascontiguousarray(directions, np.float32),
            start_offset,
            out,
        )

    def cast(self, origins: np.ndarray, directions: np.ndarray) -> Hits:
        """First hit along each ray ``origins[i] + t directions[i]``, ``t >= 0``."""
        n_rays = len(origins)
        n_packets = -(-n_rays // _LANES)
        padded = n_packets * _LANES
        packets, pointers = _packet_buffer(n_packets)
        as_uint = packets.view(np.uint32)
        packets[:] = 0.0
        for first, rays in ((_ORG, origins), (_DIR, directions)):
            lanes = np.zeros((padded, 3), dtype=np.float32)
            lanes[:n_rays] = rays
            lanes[n_rays:, 2] = 1.0  # padding rays: a valid direction, never read back
            packets[:, first : first + 3] = lanes.reshape(n_packets, _LANES, 3).transpose(0, 2, 1)
        packets[:, _TFAR] = np.inf
        as_uint[:, _MASK] = _INVALID_ID
        as_uint[:, _GEOM_ID] = _INVALID_ID
        as_uint[:, _INST_ID] = _INVALID_ID
        intersect, scene, valid = self._lib.rtcIntersect8, _void_p(self._scene), _VALID
        for packet in pointers:
            intersect(valid, scene, packet, None)  # (valid mask, scene, RTCRayHit8, args)
        # Every array returned is new (reshaping these strided rows copies them): the buffer
        # serves this thread's next cast.
        hit = as_uint[:, _GEOM_ID].reshape(padded)[:n_rays] != _INVALID_ID
        tfar = packets[:, _TFAR].reshape(padded)[:n_rays]
        distance = np.where(hit, tfar, np.float32(np.inf))
        normal_rows = packets[:, _NG : _NG + 3].transpose(1, 0, 2).reshape(3, padded)[:, :n_rays]
        return Hits(hit=hit, distance=distance, normal_rows=normal_rows)


_THREAD_BUFFERS = threading.local()


def _packet_buffer(n_packets: int) -> tuple[np.ndarray, list[ctypes.c_void_p]]:
    """This thread's 64-byte aligned buffer of ``n_packets`` RTCRayHit8 packets and a pointer
    to each, made once per size and thread (making the 128 pointers of a 1,024-ray cast was a
    tenth of its Python time)."""
    buffers: dict[int, tuple[np.ndarray, list[ctypes.c_void_p]]]
    buffers = _THREAD_BUFFERS.__dict__.setdefault("by_size", {})
    if n_packets not in buffers:
        raw = np.empty(n_packets * _ROWS * _LANES + _ALIGN // 4, dtype=np.float32)
        start = (-raw.ctypes.data % _ALIGN) // 4
        packets = raw[start : start + n_packets * _ROWS * _LANES].reshape(n_packets, _ROWS, _LANES)
        stride = _ROWS * _LANES * 4
        pointers = [_void_p(packets.ctypes.data + i * stride) for i in range(n_packets)]
        buffers[n_packets] = (packets, pointers)
    return buffers[n_packets]


def _error(device: int) -> int:
    return int(_embree().rtcGetDeviceError(device))
