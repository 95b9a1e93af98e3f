"""Routes, the app's lifespan and the error mapping. Inference lives in :mod:`service.runtime`.

Request path of an upload: the body is capped (413) while it streams in; the file name gives
the format (415 if unknown) and is never used for anything else; parsing and ray casting run
in a thread pool under a time limit; the map joins a micro-batch for one onnxruntime call;
retrieval searches the gallery in a thread. Admission is bounded: past ``max_pending``
requests in flight the service answers 503 with ``Retry-After``.

Errors: a bad mesh is 422 with the reason, a bad request 4xx with its message, anything else a
generic 500 whose traceback goes to the log only. The model loads in the background after
start-up: ``/livez`` answers at once, ``/readyz`` once the model is warmed up and the gallery
is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any, Protocol, TypeVar

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Query, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from raymap.errors import MeshError
from raymap.mesh import SUPPORTED_FORMATS, file_type_of
from service import page
from service.batching import MicroBatcher, Overloaded, ShuttingDown
from service.gallery import (
    DuplicateId,
    Gallery,
    GalleryError,
    GalleryUnavailable,
    Item,
    open_gallery,
    parse_metadata,
)
from service.logs import request_id
from service.metrics import Metrics
from service.schemas import (
    ClassifyResponse,
    ClassProbability,
    DescriptorItem,
    ErrorResponse,
    GalleryCount,
    GalleryItem,
    GalleryItemWithDescriptor,
    GalleryPage,
    Health,
    ItemId,
    Label,
    ModelRef,
    ModelResponse,
    Neighbor,
    RetrieveResponse,
)
from service.settings import Settings, get_settings

log = logging.getLogger("service.app")
T = TypeVar("T")

# A tiny octahedron: warms up parsing, hull, embree and the model before /readyz says ready.
_WARMUP_OFF = (
    b"OFF\n6 8 0\n1 0 0\n-1 0 0\n0 1 0\n0 -1 0\n0 0 1\n0 0 -1\n"
    b"3 0 2 4\n3 2 1 4\n3 1 3 4\n3 3 0 4\n3 2 0 5\n3 1 2 5\n3 3 1 5\n3 0 3 5\n"
)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Multipart framing and the small form fields around the file.
_BODY_SLACK = 64 * 1024


class RuntimeLike(Protocol):
    """What the app uses of :class:`service.runtime.Runtime` (tests wrap the real one)."""

    info: Any
    provider: str

    def run(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def mesh_to_map(
        self, data: bytes, file_type: str, max_faces: int
    ) -> tuple[np.ndarray, dict[str, float]]: ...


RuntimeFactory = Callable[[Settings], RuntimeLike]


def load_runtime(settings: Settings) -> RuntimeLike:
    from service.runtime import Runtime

    return Runtime(
        settings.model_path,
        device=settings.device,
        intra_op_threads=settings.intra_op_threads,
        warmup=settings.warmup,
    )


# ----------------------------------------------------------------------------- errors


class ServiceError(Exception):
    """An error with its HTTP status and a message for the client."""

    status = 400
    kind = "bad_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnsupportedFormat(ServiceError):
    status, kind = 415, "unsupported_format"


class PayloadTooLarge(ServiceError):
    status, kind = 413, "too_large"


class NotReady(ServiceError):
    status, kind = 503, "not_ready"


class NotFound(ServiceError):
    status, kind = 404, "not_found"


class Unauthorized(ServiceError):
    status, kind = 401, "unauthorized"


class MeshTimeout(ServiceError):
    status, kind = 422, "mesh_timeout"


def _error(
    request: Request,
    status: int,
    kind: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is not None:
        services.metrics.errors.labels(kind=kind).inc()
    body = ErrorResponse(detail=detail, kind=kind, request_id=request_id.get())
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI, settings: Settings) -> None:
    retry = {"Retry-After": str(settings.retry_after_s)}

    async def service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        headers = retry if exc.status == 503 else None
        return _error(request, exc.status, exc.kind, exc.detail, headers)

    async def mesh_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MeshError)
        return _error(request, 422, "mesh", exc.reason)

    async def gallery_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, GalleryError)
        status, kind = (409, "duplicate_id") if isinstance(exc, DuplicateId) else (422, "gallery")
        return _error(request, status, kind, exc.reason)

    async def gallery_unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("gallery unavailable: %s", exc)
        detail = "the gallery's database is unavailable; retry later"
        return _error(request, 503, "gallery_unavailable", detail, retry)

    async def overloaded(request: Request, exc: Exception) -> JSONResponse:
        return _error(request, 503, "overloaded", f"overloaded: {exc}; retry later", retry)

    async def shutting_down(request: Request, exc: Exception) -> JSONResponse:
        return _error(request, 503, "shutting_down", str(exc), retry)

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        parts = []
        for error in exc.errors():
            where = ".".join(str(x) for x in error.get("loc", ()))
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
        return _error(request, 422, "validation", "; ".join(parts) or "invalid request")

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        kind = "too_large" if exc.status_code == 413 else f"http_{exc.status_code}"
        return _error(request, exc.status_code, kind, str(exc.detail), exc.headers)

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return _error(request, 500, "internal", "internal server error")

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(MeshError, mesh_error)
    app.add_exception_handler(GalleryError, gallery_error)
    app.add_exception_handler(GalleryUnavailable, gallery_unavailable)
    app.add_exception_handler(Overloaded, overloaded)
    app.add_exception_handler(ShuttingDown, shutting_down)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal)


# ----------------------------------------------------------------------------- state


class Services:
    """Everything the routes need; built by :func:`create_app`, loaded in the lifespan."""

    def __init__(self, settings: Settings, runtime_factory: RuntimeFactory) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self._runtime_factory = runtime_factory
        self.runtime: RuntimeLike | None = None
        self.gallery: Gallery | None = None
        self.batcher: MicroBatcher | None = None
        self.cast_pool: ThreadPoolExecutor | None = None
        self.ready = False
        self.load_error: str | None = None
        self.pending = 0  # admitted requests holding a slot
        self.casting = 0  # uploads being parsed or ray cast

    async def load(self) -> None:
        """Model, gallery, batcher and a warm-up through the whole pipeline."""
        settings = self.settings
        try:
            start = time.perf_counter()
            runtime = await asyncio.to_thread(self._runtime_factory, settings)
            self.runtime = runtime
            self.gallery = await asyncio.to_thread(
                open_gallery,
                settings,
                int(runtime.info.descriptor_size),
                (str(runtime.info.name), str(runtime.info.version)),
            )
            self.batcher = MicroBatcher(
                runtime.run,
                max_batch_size=settings.max_batch_size,
                max_wait_ms=settings.max_wait_ms,
                max_queue=settings.max_pending,
                metrics=self.metrics,
                upstream=lambda: self.casting,
            )
            self.batcher.start()
            map_, _ = await self.mesh_to_map(_WARMUP_OFF, "off")
            await self.batcher.submit(map_)
            count = await asyncio.to_thread(self.gallery.count)
            self.metrics.gallery_items.set(count)
            self.ready = True
            self.metrics.ready.set(1)
            log.info(
                "ready",
                extra={
                    "model": f"{runtime.info.name} {runtime.info.version}",
                    "provider": runtime.provider,
                    "gallery_items": count,
                    "gallery_backend": settings.gallery_backend,
                    "load_s": round(time.perf_counter() - start, 2),
                },
            )
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("loading the model or the gallery failed")

    async def close(self) -> None:
        self.ready = False
        if self.batcher is not None:
            await self.batcher.stop()
        if self.cast_pool is not None:
            self.cast_pool.shutdown(wait=False, cancel_futures=True)
        if self.gallery is not None:
            await asyncio.to_thread(self.gallery.close)

    # -- admission

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Hold one of ``max_pending`` slots, or raise :class:`Overloaded`."""
        if self.pending >= self.settings.max_pending:
            raise Overloaded(f"{self.pending} requests in flight")
        self.pending += 1
        self.metrics.pending.set(self.pending)
        try:
            yield
        finally:
            self.pending -= 1
            self.metrics.pending.set(self.pending)

    # -- pipeline stages

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` in the default pool with this request's context (its id in the logs)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(None, context.run, fn, *args)

    async def mesh_to_map(self, data: bytes, file_type: str) -> tuple[np.ndarray, dict[str, float]]:
        """Parse and ray cast in the cast pool under ``mesh_timeout_s``.

        A thread cannot be stopped: on a timeout the request fails at once, and the admission
        slot stays taken until the thread really finishes, so slow meshes cannot pile up.
        """
        assert self.runtime is not None and self.cast_pool is not None
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        future: Future[tuple[np.ndarray, dict[str, float]]] = self.cast_pool.submit(
            context.run,
            self.runtime.mesh_to_map,
            data,
            file_type,
            self.settings.max_faces,
        )
        self.casting += 1
        state = {"done": False, "timed_out": False}  # read and written on the loop only

        def finished(_: Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while the thread ran
                loop.call_soon_threadsafe(self._cast_finished, state)

        future.add_done_callback(finished)
        try:
            return await asyncio.wait_for(
                asyncio.wrap_future(future), timeout=self.settings.mesh_timeout_s
            )
        except TimeoutError:
            if not state["done"]:  # the thread keeps a slot of its own until it ends
                state["timed_out"] = True
                self.pending += 1
            raise MeshTimeout(
                f"parsing and ray casting took longer than {self.settings.mesh_timeout_s:g} s"
            ) from None

    def _cast_finished(self, state: dict[str, bool]) -> None:
        self.casting -= 1
        state["done"] = True
        if state["timed_out"]:
            self.pending -= 1
            self.metrics.pending.set(self.pending)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def ready_services(request: Request) -> Services:
    services = get_services(request)
    if not services.ready:
        raise NotReady(services.load_error or "the model is still loading")
    return services


ReadyServices = Annotated[Services, Depends(ready_services)]
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def require_api_key(
    request: Request, api_key: Annotated[str | None, Depends(api_key_header)]
) -> None:
    """Writes need ``X-API-Key`` when ``SHAPES_API_KEY`` is set; reads stay open."""
    expected = get_services(request).settings.api_key
    if expected is None:
        return
    if api_key is None or not secrets.compare_digest(
        api_key.encode(), expected.get_secret_value().encode()
    ):
        raise Unauthorized("this endpoint needs a valid X-API-Key header")


# ----------------------------------------------------------------------------- uploads


async def read_upload(file: UploadFile, settings: Settings) -> tuple[bytes, str]:
    """The upload's bytes and format; the file name is only looked at for its suffix."""
    name = file.filename or ""
    fmt = file_type_of(name) if "." in name else ""
    if fmt not in SUPPORTED_FORMATS:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise UnsupportedFormat(
            f"unknown mesh format of file {shown!r}: the name must end in one of "
            + ", ".join(f".{f}" for f in SUPPORTED_FORMATS)
        )
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"the upload is larger than {settings.max_upload_bytes} bytes")
    return data, fmt


class Inference:
    """One upload through the pipeline: its probabilities, descriptor and stage times."""

    def __init__(
        self,
        probabilities: np.ndarray,
        descriptor: np.ndarray,
        label: str,
        timings_ms: dict[str, float],
        batch_size: int,
    ) -> None:
        self.probabilities = probabilities
        self.descriptor = descriptor
        self.label = label
        self.timings_ms = timings_ms
        self.batch_size = batch_size


async def infer(services: Services, file: UploadFile) -> Inference:
    start = time.perf_counter()
    async with services.admitted():
        data, fmt = await read_upload(file, services.settings)
        timings = {"read": 1e3 * (time.perf_counter() - start)}
        map_, cast_timings = await services.mesh_to_map(data, fmt)
        timings.update({k: v for k, v in cast_timings.items() if k != "total"})
        assert services.batcher is not None and services.runtime is not None
        result = await services.batcher.submit(map_)
    timings["queue"] = result.queue_ms
    timings["inference"] = result.inference_ms
    class_names = services.runtime.info.class_names
    label = class_names[int(np.argmax(result.probabilities))]
    return Inference(result.probabilities, result.descriptor, label, timings, result.batch_size)


def _finish(timings: dict[str, float], start: float) -> dict[str, float]:
    timings["total"] = 1e3 * (time.perf_counter() - start)
    return {k: round(v, 3) for k, v in timings.items()}


def _model_ref(services: Services) -> ModelRef:
    assert services.runtime is not None
    return ModelRef(name=services.runtime.info.name, version=services.runtime.info.version)


# ----------------------------------------------------------------------------- middleware


class RequestMiddleware:
    """Request ids, the body-size cap, one structured log line and metrics per request."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        status = 500
        limit = self.services.settings.max_upload_bytes + _BODY_SLACK

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"the request body is larger than {limit} bytes")
            return message

        try:
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                response = JSONResponse(
                    ErrorResponse(
                        detail=f"the request body is larger than {limit} bytes",
                        kind="too_large",
                        request_id=rid,
                    ).model_dump(),
                    status_code=413,
                )
                self.services.metrics.errors.labels(kind="too_large").inc()
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, capped_receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            metrics = self.services.metrics
            metrics.requests.labels(endpoint=endpoint, method=scope["method"], status=status).inc()
            metrics.latency.labels(endpoint=endpoint).observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(1e3 * elapsed, 2),
                },
            )
            request_id.reset(token)


# ----------------------------------------------------------------------------- the app


def create_app(
    settings: Settings | None = None, runtime_factory: RuntimeFactory | None = None
) -> FastAPI:
    """The service; ``settings`` default to the environment's, the runtime to onnxruntime."""
    settings = settings or get_settings()
    services = Services(settings, runtime_factory or load_runtime)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services.cast_pool = ThreadPoolExecutor(
            max_workers=settings.cast_workers, thread_name_prefix="cast"
        )
        loading = asyncio.create_task(services.load(), name="load")
        yield
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        await services.close()

    app = FastAPI(
        title="spherical-shapes",
        summary="Rotation-invariant 3D shape classification and retrieval (spherical CNN)",
        version="1",
        lifespan=lifespan,
        responses={
            413: {"model": ErrorResponse, "description": "upload too large"},
            422: {"model": ErrorResponse, "description": "invalid request or unreadable mesh"},
            503: {"model": ErrorResponse, "description": "overloaded or not ready; retry"},
        },
    )
    app.state.services = services
    _install_error_handlers(app, settings)
    app.add_middleware(RequestMiddleware, services=services)
    _add_health_routes(app)
    _add_inference_routes(app)
    _add_gallery_routes(app)
    app.include_router(page.router)  # GET / (the page), /static/*, POST /spherical-map
    return app


def _add_health_routes(app: FastAPI) -> None:
    @app.get("/livez", tags=["health"])
    async def livez() -> Health:
        """The process is up and serving HTTP."""
        return Health(status="ok")

    @app.get(
        "/readyz", tags=["health"], responses={503: {"model": Health, "description": "not ready"}}
    )
    async def readyz(request: Request) -> Response:
        """The model is loaded and warmed up and the gallery is open."""
        services = get_services(request)
        if services.ready:
            return JSONResponse(Health(status="ready").model_dump())
        detail = services.load_error or "loading"
        body = Health(status="failed" if services.load_error else "loading", detail=detail)
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def metrics(request: Request) -> Response:
        """Prometheus metrics."""
        services = get_services(request)
        services.metrics.queue_depth.set(services.batcher.depth if services.batcher else 0)
        return Response(
            services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/model", tags=["model"])
    async def model(services: ReadyServices) -> ModelResponse:
        """The model's metadata (from the ONNX file)."""
        assert services.runtime is not None
        info = services.runtime.info
        return ModelResponse(
            name=info.name,
            version=info.version,
            class_names=list(info.class_names),
            bandwidth=info.bandwidth,
            grid=info.grid,
            feature_names=list(info.feature_names),
            features_version=info.features_version,
            descriptor_size=info.descriptor_size,
            provider=services.runtime.provider,
            metadata=dict(info.metadata),
        )


UploadField = Annotated[
    UploadFile, File(description="a mesh: " + ", ".join(f".{f}" for f in SUPPORTED_FORMATS))
]


def _add_inference_routes(app: FastAPI) -> None:
    @app.post("/classify", tags=["inference"], responses={415: {"model": ErrorResponse}})
    async def classify(
        services: ReadyServices,
        file: UploadField,
        top_k: Annotated[int | None, Form(ge=1, description="also list the top k classes")] = None,
    ) -> ClassifyResponse:
        """Classify a mesh in any orientation."""
        start = time.perf_counter()
        result = await infer(services, file)
        services.metrics.observe_stages("/classify", result.timings_ms)
        class_names = services.runtime.info.class_names if services.runtime else ()
        probabilities = {
            name: float(p) for name, p in zip(class_names, result.probabilities, strict=True)
        }
        ranked = None
        if top_k is not None:
            order = np.argsort(-result.probabilities, kind="stable")[:top_k]
            ranked = [
                ClassProbability(label=class_names[i], probability=float(result.probabilities[i]))
                for i in order
            ]
        return ClassifyResponse(
            label=result.label,
            probabilities=probabilities,
            top_k=ranked,
            descriptor=result.descriptor.astype(float).tolist(),
            timings_ms=_finish(result.timings_ms, start),
            batch_size=result.batch_size,
            model=_model_ref(services),
        )

    @app.post("/retrieve", tags=["inference"], responses={415: {"model": ErrorResponse}})
    async def retrieve(
        services: ReadyServices,
        file: UploadField,
        k: Annotated[int, Form(ge=1, description="how many neighbours")] = 10,
        label: Annotated[str | None, Form(description="only neighbours of this class")] = None,
    ) -> RetrieveResponse:
        """The gallery shapes most similar to a mesh (cosine of descriptors)."""
        if k > services.settings.max_k:
            raise GalleryError(f"k must be at most {services.settings.max_k}, got {k}")
        start = time.perf_counter()
        result = await infer(services, file)
        assert services.gallery is not None
        search_start = time.perf_counter()
        hits = await services.in_thread(services.gallery.search, result.descriptor, k, label)
        result.timings_ms["search"] = 1e3 * (time.perf_counter() - search_start)
        services.metrics.observe_stages("/retrieve", result.timings_ms)
        return RetrieveResponse(
            label=result.label,
            neighbors=[
                Neighbor(id=h.id, label=h.label, score=h.score, metadata=h.metadata) for h in hits
            ],
            timings_ms=_finish(result.timings_ms, start),
            batch_size=result.batch_size,
            model=_model_ref(services),
        )


def _add_gallery_routes(app: FastAPI) -> None:
    writes: list[Any] = [Depends(require_api_key)]

    async def write(services: Services, fn: Callable[[], T]) -> T:
        """Gallery writes are blocking (fsync); they count against admission too."""
        async with services.admitted():
            return await services.in_thread(fn)

    async def refresh_count(services: Services) -> None:
        assert services.gallery is not None
        services.metrics.gallery_items.set(await services.in_thread(services.gallery.count))

    @app.post(
        "/gallery",
        tags=["gallery"],
        status_code=201,
        dependencies=writes,
        responses={409: {"model": ErrorResponse}, 415: {"model": ErrorResponse}},
    )
    async def add_mesh(
        services: ReadyServices,
        file: UploadField,
        id: Annotated[ItemId, Form(description="the new item's id, e.g. chair_0890")],
        label: Annotated[Label | None, Form(description="default: the predicted class")] = None,
        metadata: Annotated[str | None, Form(description="a JSON object of scalars")] = None,
    ) -> GalleryItem:
        """Add a mesh to the gallery under ``id`` (its descriptor from the model)."""
        meta = parse_metadata(metadata)
        result = await infer(services, file)
        item = Item(id, label or result.label, result.descriptor, meta)
        assert services.gallery is not None
        await write(services, lambda: services.gallery.add(item))  # type: ignore[union-attr]
        await refresh_count(services)
        return GalleryItem(id=item.id, label=item.label, metadata=meta)

    @app.post(
        "/gallery/descriptors",
        tags=["gallery"],
        status_code=201,
        dependencies=writes,
        responses={409: {"model": ErrorResponse}},
    )
    async def add_descriptor(services: ReadyServices, body: DescriptorItem) -> GalleryItem:
        """Add a stored descriptor (from ``/classify`` of the same model) under ``id``."""
        with np.errstate(over="ignore"):  # beyond float32: inf, which the gallery rejects
            descriptor = np.asarray(body.descriptor, np.float32)
        item = Item(body.id, body.label, descriptor, body.metadata)
        assert services.gallery is not None
        await write(services, lambda: services.gallery.add(item))  # type: ignore[union-attr]
        await refresh_count(services)
        return GalleryItem(id=item.id, label=item.label, metadata=body.metadata)

    @app.get("/gallery", tags=["gallery"])
    async def list_gallery(
        services: ReadyServices,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        label: Annotated[str | None, Query(max_length=128)] = None,
    ) -> GalleryPage:
        """A page of gallery items, sorted by id."""
        assert services.gallery is not None
        items, total = await services.in_thread(services.gallery.list_items, offset, limit, label)
        return GalleryPage(
            items=[GalleryItem(id=i.id, label=i.label, metadata=i.metadata) for i in items],
            total=total,
            offset=offset,
            limit=limit,
        )

    @app.get("/gallery/count", tags=["gallery"])
    async def count(
        services: ReadyServices, label: Annotated[str | None, Query(max_length=128)] = None
    ) -> GalleryCount:
        """How many items the gallery holds (of one class, with ``label``)."""
        assert services.gallery is not None
        return GalleryCount(count=await services.in_thread(services.gallery.count, label))

    @app.get(
        "/gallery/items/{item_id}", tags=["gallery"], responses={404: {"model": ErrorResponse}}
    )
    async def get_item(services: ReadyServices, item_id: str) -> GalleryItemWithDescriptor:
        """One item with its descriptor."""
        assert services.gallery is not None
        item = await services.in_thread(services.gallery.get, item_id)
        if item is None:
            raise NotFound(f"no gallery item with id {item_id!r}")
        return GalleryItemWithDescriptor(
            id=item.id,
            label=item.label,
            metadata=item.metadata,
            descriptor=item.descriptor.astype(float).tolist(),
        )

    @app.delete(
        "/gallery/items/{item_id}",
        tags=["gallery"],
        status_code=204,
        dependencies=writes,
        responses={404: {"model": ErrorResponse}},
    )
    async def delete_item(services: ReadyServices, item_id: str) -> Response:
        """Remove an item (a shipped one too)."""
        assert services.gallery is not None
        gallery = services.gallery
        if not await write(services, lambda: gallery.delete(item_id)):
            raise NotFound(f"no gallery item with id {item_id!r}")
        await refresh_count(services)
        return Response(status_code=204)
