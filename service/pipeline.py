"""One request pipeline for every route that touches a mesh; no FastAPI in here.

An upload (its bytes and format) goes through

1. **admission**: a :class:`Permit`, one of ``max_pending`` slots, or :class:`Overloaded`
   (503). The permit travels with the work and frees its slot only when the work really
   ends: a ray cast that outlives its time limit keeps holding it until its thread returns,
   so slow meshes cannot pile up threads behind the limit;
2. **mesh -> map** in the cast pool (``cast_workers`` threads) under ``mesh_timeout_s``,
   counted from when a thread starts it (:class:`MeshTimeout`, 422; an upload that waits
   that long for a thread is dropped: :class:`Overloaded`, 503);
3. the **micro-batcher**: the map joins other requests' maps in one model call;
4. for retrieval, the **gallery search** in a thread,

and comes back as one result with its stage timings in milliseconds, whose ``total`` is
computed once, at the end (:class:`Timings`). ``/spherical-map`` takes the same admission, the
same pool and the same time limit; only its last stage (drawing a PNG) differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import io
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from raymap.contract import ModelContract
from raymap.mesh import load_mesh
from raymap.preview import DEFAULT_PREVIEW_FACES, MeshPreview
from raymap.project import spherical_map
from raymap.render import render_map
from raymap.thumbnail import encode_thumbnail, render_thumbnail
from service.batching import MicroBatcher, Overloaded
from service.errors import MeshTimeout
from service.gallery import Gallery, Hit, Item
from service.metrics import Metrics
from service.runtime import Outputs
from service.settings import Settings

log = logging.getLogger("service.pipeline")
T = TypeVar("T")

# A tiny octahedron: warms up parsing, hull, embree and the model before /readyz says ready.
WARMUP_OFF = (
    b"OFF\n6 8 0\n1 0 0\n-1 0 0\n0 1 0\n0 -1 0\n0 0 1\n0 0 -1\n"
    b"3 0 2 4\n3 2 1 4\n3 1 3 4\n3 3 0 4\n3 2 0 5\n3 1 2 5\n3 3 1 5\n3 0 3 5\n"
)
PANEL_PIXELS = 128  # each channel's panel of a drawn map is about this wide


class RuntimeLike(Protocol):
    """What the pipeline uses of :class:`service.runtime.Runtime` (tests wrap the real one)."""

    info: ModelContract
    provider: str
    metadata: dict[str, str]  # all of the model's metadata (the contract and provenance)

    def run(self, maps: np.ndarray) -> Outputs: ...

    def mesh_to_map(
        self, data: bytes, file_type: str, max_faces: int
    ) -> tuple[np.ndarray, dict[str, float]]: ...

    def mesh_to_map_with_preview(
        self, data: bytes, file_type: str, max_faces: int, preview_faces: int
    ) -> tuple[np.ndarray, dict[str, float], MeshPreview]: ...


@dataclass(frozen=True)
class UploadPreview:
    """What the page draws of an upload: the mesh as classified (normalized, decimated) and
    its picture, rendered as the gallery's are."""

    mesh: MeshPreview
    thumbnail: bytes  # raymap.thumbnail's WebP


def mesh_to_map_and_preview(
    runtime: RuntimeLike, data: bytes, file_type: str, max_faces: int, preview_faces: int
) -> tuple[np.ndarray, dict[str, float], UploadPreview]:
    """The runtime's map and preview of one parse, and the preview's picture (in a thread)."""
    map_, timings, mesh = runtime.mesh_to_map_with_preview(
        data, file_type, max_faces, preview_faces
    )
    start = time.perf_counter()
    thumbnail = encode_thumbnail(render_thumbnail(mesh.vertices, mesh.faces))
    timings["thumbnail"] = 1e3 * (time.perf_counter() - start)
    return map_, timings, UploadPreview(mesh, thumbnail)


@dataclass(frozen=True)
class Upload:
    """A mesh as it arrived: its bytes, its format (from the file name) and how long reading
    it took."""

    data: bytes
    file_type: str
    read_ms: float = 0.0


class Timings:
    """Stage wall times (ms) of one request; ``total`` is added once, by :meth:`finish`."""

    def __init__(self, read_ms: float = 0.0) -> None:
        self._start = time.perf_counter()
        self._read_ms = read_ms
        self.stages: dict[str, float] = {"read": read_ms}

    @contextlib.contextmanager
    def stage(self, name: str) -> Any:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = 1e3 * (time.perf_counter() - start)

    def finish(self) -> dict[str, float]:
        """The stages and their ``total`` (reading the upload plus everything since)."""
        total = self._read_ms + 1e3 * (time.perf_counter() - self._start)
        return {k: round(v, 3) for k, v in {**self.stages, "total": total}.items()}


@dataclass(frozen=True)
class Inference:
    """One mesh through the model."""

    probabilities: np.ndarray  # (K,) float32
    descriptor: np.ndarray  # (D,) float32, unit length
    label: str  # the most probable class
    batch_size: int  # how many maps shared the model call
    novelty: float | None  # higher = less like the model's classes; None: the model has none
    known: bool  # novelty at most the threshold: the shape looks like one of the classes
    timings_ms: dict[str, float] = field(default_factory=dict)
    preview: UploadPreview | None = None  # when asked for


@dataclass(frozen=True)
class Retrieval:
    """One mesh through the model and the gallery search."""

    inference: Inference
    hits: list[Hit]


@dataclass(frozen=True)
class MapImage:
    png: bytes
    timings_ms: dict[str, float]


class Admission:
    """At most ``limit`` admitted requests at once; :meth:`admit` hands out a :class:`Permit`.

    Used from the event loop only (threads release through ``call_soon_threadsafe``)."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.in_flight = 0
        self._metrics = metrics

    def admit(self) -> Permit:
        if self.in_flight >= self.limit:
            raise Overloaded(f"{self.in_flight} requests in flight")
        self._set(self.in_flight + 1)
        return Permit(self)

    def _set(self, value: int) -> None:
        self.in_flight = value
        self._metrics.pending.set(value)


class Permit:
    """One admitted request's slot, freed when the request and every thread it started have
    ended (each holder calls :meth:`release` once)."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._holders = 1

    def hold(self) -> None:
        """One more holder (a thread that may outlive the request)."""
        self._holders += 1

    def release(self) -> None:
        self._holders -= 1
        if self._holders == 0:
            self._admission._set(self._admission.in_flight - 1)

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def render_map_png(data: bytes, file_type: str, bandwidth: int, max_faces: int) -> bytes:
    """Mesh bytes -> its spherical map at ``bandwidth`` drawn as a PNG (one panel a channel)."""
    drawn = spherical_map(load_mesh(data, file_type, max_faces=max_faces), bandwidth)
    scale = max(1, PANEL_PIXELS // (2 * bandwidth))  # drawn: (C, 2b, 2b)
    out = io.BytesIO()
    render_map(drawn, scale=scale).save(out, format="PNG", optimize=True)
    return out.getvalue()


class Pipeline:
    """The ready service: model runtime, gallery, cast pool, batcher and admission."""

    def __init__(
        self, runtime: RuntimeLike, gallery: Gallery, settings: Settings, metrics: Metrics
    ) -> None:
        self.runtime = runtime
        self.gallery = gallery
        self.settings = settings
        self.metrics = metrics
        self.admission = Admission(settings.max_pending, metrics)
        self.casting = 0  # uploads being parsed or ray cast
        self.overdue = 0  # of them, those whose request gave up at the time limit
        self._cast_pool = ThreadPoolExecutor(settings.cast_workers, thread_name_prefix="cast")
        self.batcher = MicroBatcher(
            runtime.run,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_pending,
            metrics=metrics,
            upstream=lambda: self.casting,
        )

    @property
    def info(self) -> ModelContract:
        return self.runtime.info

    @property
    def threshold(self) -> float | None:
        """The novelty threshold: ``settings.novelty_threshold``, else the model's own."""
        if self.settings.novelty_threshold is not None:
            return self.settings.novelty_threshold
        return self.info.novelty_threshold

    async def start(self) -> None:
        """Start the batcher and warm up every stage with a tiny mesh (no time limit: the first
        cast also builds what later ones reuse)."""
        self.batcher.start()
        with self.admission.admit() as permit:
            await self._infer(
                permit, Upload(WARMUP_OFF, "off"), Timings(), timeout_s=None, preview_faces=100
            )
        self.metrics.gallery_items.set(await self.in_thread(self.gallery.count))

    async def close(self) -> None:
        await self.batcher.stop()
        self._cast_pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.gallery.close)

    # -- the operations (one per route that touches a mesh or the gallery)

    async def classify(self, upload: Upload, preview_faces: int | None = None) -> Inference:
        """With ``preview_faces``, also the mesh as classified and its picture (``preview``)."""
        timings = Timings(upload.read_ms)
        with self.admission.admit() as permit:
            result = await self._infer(permit, upload, timings, preview_faces=preview_faces)
        return self._finish("/classify", result, timings)

    async def retrieve(self, upload: Upload, k: int, label: str | None) -> Retrieval:
        timings = Timings(upload.read_ms)
        with self.admission.admit() as permit:
            result = await self._infer(permit, upload, timings)
            with timings.stage("search"):
                hits = await self.in_thread(self.gallery.search, result.descriptor, k, label)
        return Retrieval(self._finish("/retrieve", result, timings), hits)

    async def add_mesh(
        self, upload: Upload, item_id: str, label: str | None, metadata: dict[str, Any] | None
    ) -> Item:
        """The mesh's descriptor into the gallery under ``item_id`` (default label: the
        predicted class), stored with its picture (rendered from the preview)."""
        timings = Timings(upload.read_ms)
        with self.admission.admit() as permit:
            result = await self._infer(permit, upload, timings, preview_faces=DEFAULT_PREVIEW_FACES)
            thumbnail = result.preview.thumbnail if result.preview else None
            item = Item(item_id, label or result.label, result.descriptor, metadata, thumbnail)
            with timings.stage("store"):
                await self.in_thread(self.gallery.add, item)
        self._finish("/gallery", result, timings)
        await self._count_items()
        return item

    async def add_item(self, item: Item) -> None:
        """A descriptor computed elsewhere into the gallery (blocking fsync: admitted too)."""
        with self.admission.admit():
            await self.in_thread(self.gallery.add, item)
        await self._count_items()

    async def thumbnail(self, item_id: str) -> bytes | None:
        """The item's stored picture (None: no such item, or it has none)."""
        return await self.in_thread(self.gallery.thumbnail, item_id)

    async def delete_item(self, item_id: str) -> bool:
        with self.admission.admit():
            deleted = await self.in_thread(self.gallery.delete, item_id)
        await self._count_items()
        return deleted

    async def map_image(self, upload: Upload, bandwidth: int) -> MapImage:
        """The mesh's spherical map at ``bandwidth`` as a PNG: admission, cast pool and time
        limit as for :meth:`classify`."""
        timings = Timings(upload.read_ms)
        with self.admission.admit() as permit, timings.stage("render"):
            png = await self._cast(
                permit,
                self.settings.mesh_timeout_s,
                render_map_png,
                upload.data,
                upload.file_type,
                bandwidth,
                self.settings.max_faces,
            )
        finished = timings.finish()
        self.metrics.observe_stages("/spherical-map", finished)
        return MapImage(png, finished)

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the default pool with this request's context (its id in the logs)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(None, context.run, fn, *args)

    # -- stages

    async def _infer(
        self,
        permit: Permit,
        upload: Upload,
        timings: Timings,
        timeout_s: float | None = -1.0,
        preview_faces: int | None = None,
    ) -> Inference:
        """Mesh -> map -> model; ``timeout_s`` of the cast: -1 the settings', None none; with
        ``preview_faces`` the same parse also gives the preview (same thread, same limit)."""
        limit = self.settings.mesh_timeout_s if timeout_s == -1.0 else timeout_s
        preview = None
        if preview_faces is None:
            map_, cast_timings = await self._cast(
                permit,
                limit,
                self.runtime.mesh_to_map,
                upload.data,
                upload.file_type,
                self.settings.max_faces,
            )
        else:
            map_, cast_timings, preview = await self._cast(
                permit,
                limit,
                mesh_to_map_and_preview,
                self.runtime,
                upload.data,
                upload.file_type,
                self.settings.max_faces,
                preview_faces,
            )
        timings.stages.update({k: v for k, v in cast_timings.items() if k != "total"})
        batch = await self.batcher.submit(map_)
        timings.stages["queue"] = batch.queue_ms
        timings.stages["inference"] = batch.inference_ms
        label = self.info.class_names[int(np.argmax(batch.probabilities))]
        threshold, novelty = self.threshold, batch.novelty
        known = threshold is None or novelty is None or novelty <= threshold
        return Inference(
            batch.probabilities,
            batch.descriptor,
            label,
            batch.batch_size,
            novelty,
            known,
            preview=preview,
        )

    def _finish(self, operation: str, result: Inference, timings: Timings) -> Inference:
        finished = timings.finish()
        self.metrics.observe_stages(operation, finished)
        return dataclasses.replace(result, timings_ms=finished)

    async def _cast(
        self, permit: Permit, timeout_s: float | None, fn: Callable[..., T], *args: Any
    ) -> T:
        """``fn(*args)`` in the cast pool under ``timeout_s`` (None: no limit).

        The limit counts from when a thread starts the work, not from when it was queued: an
        upload that waits behind others' slow casts is not blamed for them. One that waits the
        whole limit for a thread is dropped from the queue and answered :class:`Overloaded`
        (503, retry). A thread cannot be stopped: on a timeout the request fails at once, and
        the thread holds the request's permit until it really returns.
        """
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        started: list[float] = []  # the thread's start time, once it starts

        def run() -> T:
            started.append(time.monotonic())
            return context.run(fn, *args)

        future: Future[T] = self._cast_pool.submit(run)
        permit.hold()
        self.casting += 1
        overdue = False  # set once the request gives up on a thread that runs on

        def finished() -> None:
            self.casting -= 1
            if overdue:
                self.overdue -= 1
            permit.release()

        def on_done(_: Future[T]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while the thread ran
                loop.call_soon_threadsafe(finished)

        future.add_done_callback(on_done)
        result = asyncio.wrap_future(future)
        if timeout_s is None:
            return await result
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(result), timeout=timeout_s)
        if not started and future.cancel():
            raise Overloaded(
                f"all {self.settings.cast_workers} mesh workers stayed busy with earlier "
                f"uploads for {timeout_s:g} s"
            )
        with contextlib.suppress(TimeoutError):  # started while queued: its own full limit
            start = started[0] if started else time.monotonic()  # (a thread about to start)
            remaining = start + timeout_s - time.monotonic()
            return await asyncio.wait_for(asyncio.shield(result), timeout=max(remaining, 0.0))
        result.cancel()  # nobody waits for the thread's answer any more
        if not future.done():  # (else finished() is already on its way)
            overdue = True
            self.overdue += 1
        raise MeshTimeout(f"parsing and ray casting took longer than {timeout_s:g} s")

    @property
    def stalled(self) -> bool:
        """Every mesh worker holds an upload past its time limit: nothing new can be cast
        until one returns (``/readyz`` says so, and a load balancer sends uploads elsewhere)."""
        return self.overdue >= self.settings.cast_workers

    async def _count_items(self) -> None:
        self.metrics.gallery_items.set(await self.in_thread(self.gallery.count))
